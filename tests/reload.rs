//! The `psrtd` process: SIGHUP reload applied to live sessions (T16), a
//! broken reload keeping the old state (T17), SIGTERM clean-up, and the
//! Unix socket listener (T20 in part).

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{Proc, Raw, Session, TempDir, passwd, wait_count, write_config};

const WAIT: Duration = Duration::from_secs(5);

/// Starts psrtd on `acl` (and `users`, if any) in a fresh folder.
fn start(tag: &str, acl: &str, users: &[(&str, &str)]) -> (TempDir, Proc) {
    let dir = TempDir::new(tag);
    dir.write("acl.yml", acl);
    let extra_auth = if users.is_empty() {
        String::new()
    } else {
        dir.write("passwd", &passwd(users));
        "  password_file: passwd\n".to_string()
    };
    let config = write_config(&dir, "", &extra_auth);
    let p = Proc::spawn(&["-C", config.to_str().unwrap()]);
    assert!(p.addr.is_some(), "psrtd started: {}", p.log_text());
    (dir, p)
}

/// Sends SIGHUP and waits for the `n`-th log line containing `needle`.
fn sighup(p: &Proc, needle: &str, n: usize) {
    p.signal(1);
    assert!(
        wait_count(|| p.log_text(), needle, n, WAIT),
        "no {needle:?} #{n} in the log:\n{}",
        p.log_text()
    );
}

/// A valid ACL change reaches a live session on its next request: a
/// publish allowed before the reload is `FE` after it, a newly allowed one
/// works; the session itself is not dropped.
#[test]
fn acl_change_applies_to_live_sessions() {
    let (dir, p) = start("acl-live", "_:\n  pub: '#'\n  sub: '#'\n", &[]);
    let addr = p.addr.unwrap();
    let mut s = Session::anonymous(addr);
    s.sub(&["#"]);
    assert_eq!(s.ctl.publish("x", b"before"), 0x01);
    s.expect("x", b"before");

    dir.write("acl.yml", "_:\n  pub: [y]\n  sub: '#'\n");
    sighup(&p, "reload ok", 1);
    assert_eq!(s.ctl.publish("x", b"after"), 0xFE);
    assert_eq!(s.ctl.publish("y", b"allowed"), 0x01);
    s.expect("y", b"allowed");
}

/// A subscription the new ACL no longer allows is dropped (no more
/// deliveries); the others stay; the client stays connected.
#[test]
fn disallowed_subscription_is_dropped() {
    let acl = "_:\n  pub: '#'\n  sub: '#'\n";
    let (dir, p) = start("acl-sub", acl, &[]);
    let addr = p.addr.unwrap();
    let mut s = Session::anonymous(addr);
    s.sub(&["a/#", "b"]);
    let (mut publ, _) = Raw::anonymous(addr);
    assert_eq!(publ.publish("a/x", b"1"), 0x01);
    s.expect("a/x", b"1");

    dir.write("acl.yml", "_:\n  pub: '#'\n  sub: [b]\n");
    sighup(&p, "reload ok", 1);
    assert!(p.wait_log("dropped", WAIT).is_some(), "{}", p.log_text());
    assert_eq!(publ.publish("a/x", b"no longer"), 0x01);
    assert_eq!(publ.publish("b", b"still"), 0x01);
    s.expect("b", b"still");
    assert_eq!(s.ctl.subscribe(&["a/#"]), 0xFE);
    assert_eq!(s.ctl.nop(), 0x01);
}

/// A user removed from the password file is disconnected by the reload;
/// another user's session is untouched and keeps receiving.
#[test]
fn removed_user_is_disconnected() {
    let acl = "u1:\n  pub: '#'\n  sub: '#'\nu2:\n  pub: '#'\n  sub: '#'\n";
    let (dir, p) = start("passwd", acl, &[("u1", "p1"), ("u2", "p2")]);
    // u1's line stays byte for byte (a changed hash also ends a session).
    let before = std::fs::read_to_string(dir.path("passwd")).unwrap();
    let kept: String = before.lines().filter(|l| l.starts_with("u1:")).collect();
    let addr = p.addr.unwrap();
    let mut keep = Session::login(addr, "u1", "p1");
    keep.sub(&["t"]);
    let mut gone = Session::login(addr, "u2", "p2");

    dir.write("passwd", &format!("{kept}\n"));
    sighup(&p, "reload ok", 1);
    gone.ctl.expect_closed();
    gone.data.expect_closed();
    Raw::expect_login_refused(addr, "u2", "p2");
    assert_eq!(keep.ctl.publish("t", b"still here"), 0x01);
    keep.expect("t", b"still here");
}

/// A changed password hash ends the sessions that logged in with the old
/// one; the new password works afterwards.
#[test]
fn changed_password_ends_the_session() {
    let acl = "u1:\n  pub: '#'\n  sub: '#'\n";
    let (dir, p) = start("newpass", acl, &[("u1", "old")]);
    let addr = p.addr.unwrap();
    let mut s = Session::login(addr, "u1", "old");
    dir.write("passwd", &passwd(&[("u1", "new")]));
    sighup(&p, "reload ok", 1);
    s.ctl.expect_closed();
    s.data.expect_closed();
    Raw::expect_login_refused(addr, "u1", "old");
    let (mut c, _) = Raw::control(addr, "u1", "new");
    assert_eq!(c.nop(), 0x01);
}

/// A broken ACL (YAML syntax error) is refused as a whole: the error is
/// logged with the file and line, the previous ACL stays in force for live
/// and new sessions, nobody is disconnected, and the process goes on; a
/// later valid reload still works.
#[test]
fn broken_acl_keeps_the_old_one() {
    let (dir, p) = start("acl-broken", "_:\n  pub: '#'\n  sub: '#'\n", &[]);
    let addr = p.addr.unwrap();
    let mut s = Session::anonymous(addr);
    s.sub(&["t"]);

    dir.write("acl.yml", "_:\n  pub: [y\n  sub: '#'\n");
    sighup(&p, "reload failed", 1);
    let line = p.wait_log("reload failed", WAIT).unwrap();
    let at = line.find("acl.yml:").expect("file named") + "acl.yml:".len();
    assert!(
        line[at..].starts_with(|c: char| c.is_ascii_digit()),
        "line number after the file: {line}"
    );
    assert_eq!(s.ctl.publish("t", b"old ACL"), 0x01);
    s.expect("t", b"old ACL");
    let (mut fresh, _) = Raw::anonymous(addr);
    assert_eq!(fresh.publish("t", b"new session, old ACL"), 0x01);
    s.expect("t", b"new session, old ACL");

    dir.write("acl.yml", "_:\n  pub: [y]\n  sub: '#'\n");
    sighup(&p, "reload ok", 1);
    assert_eq!(s.ctl.publish("t", b"denied now"), 0xFE);
    assert_eq!(fresh.nop(), 0x01);
}

/// A valid reload that does not concern a client drops nobody: sessions
/// with subscriptions and data sockets keep working across several
/// reloads.
#[test]
fn unaffected_clients_survive_reloads() {
    let acl = "_:\n  pub: '#'\n  sub: '#'\nu1:\n  pub: '#'\n  sub: '#'\n";
    let (dir, p) = start("noop", acl, &[("u1", "p1")]);
    let addr = p.addr.unwrap();
    let mut anon = Session::anonymous(addr);
    anon.sub(&["t/#"]);
    let mut user = Session::login(addr, "u1", "p1");
    user.sub(&["t/+"]);
    for round in 1..=3 {
        // Same rules plus an unrelated new entry.
        dir.write("acl.yml", &format!("{acl}extra{round}:\n  pub: 'z'\n"));
        sighup(&p, "reload ok", round);
        let msg = format!("round {round}");
        assert_eq!(anon.ctl.publish("t/x", msg.as_bytes()), 0x01);
        anon.expect("t/x", msg.as_bytes());
        user.expect("t/x", msg.as_bytes());
        assert_eq!(user.ctl.nop(), 0x01);
    }
}

/// Writes a config binding TCP and a Unix socket in `dir`.
fn unix_config(dir: &TempDir) -> std::path::PathBuf {
    dir.write("acl.yml", "_:\n  pub: '#'\n  sub: '#'\n");
    let text = format!(
        "server:\n  pid_file: {pid}\nproto:\n  bind:\n    - 127.0.0.1:0\n    - {sock}\n  timeout: 5\nauth:\n  allow_anonymous: true\n  acl: acl.yml\n",
        pid = dir.path("psrtd.pid").display(),
        sock = dir.path("psrtd.sock").display(),
    );
    dir.write("config.yml", &text)
}

/// Reads exactly `n` bytes from a Unix stream.
fn read_n(s: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).expect("read from the unix socket");
    buf
}

fn unix_connect(path: &std::path::Path) -> UnixStream {
    let s = UnixStream::connect(path).expect("connect to the unix socket");
    s.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(common::IO_TIMEOUT)).unwrap();
    s
}

/// Clients can use the Unix socket listener (raw bytes, control and data
/// socket), and the socket file has mode 0770.
#[test]
fn unix_socket_clients() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("unix");
    let config = unix_config(&dir);
    let p = Proc::spawn(&["-C", config.to_str().unwrap()]);
    let sock = dir.path("psrtd.sock");
    assert!(p.addr.is_some(), "{}", p.log_text());
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o770);

    let mut ctl = unix_connect(&sock);
    ctl.write_all(&[0xEE, 0xAA, 0x00]).unwrap();
    assert_eq!(read_n(&mut ctl, 4), [0xEE, 0xAA, 0x01, 0x00]);
    ctl.write_all(&[0x01, 0, 0, 0, 0x00]).unwrap(); // anonymous
    let token = read_n(&mut ctl, 32);

    let mut data = unix_connect(&sock);
    data.write_all(&[0xEE, 0xAB, 0x00]).unwrap();
    assert_eq!(read_n(&mut data, 4), [0xEE, 0xAB, 0x01, 0x00]);
    data.write_all(&token).unwrap();
    data.write_all(&[30]).unwrap();
    assert_eq!(read_n(&mut data, 1), [0x01]);

    // SUBSCRIBE "u/x".
    ctl.write_all(&[0x02, 3, 0, 0, 0, b'u', b'/', b'x'])
        .unwrap();
    assert_eq!(read_n(&mut ctl, 1), [0x01]);
    // A TCP client publishes; the Unix client receives.
    let (mut tcp, _) = Raw::anonymous(p.addr.unwrap());
    assert_eq!(tcp.publish_prio(0x10, "u/x", b"xyz"), 0x01);
    assert_eq!(
        read_n(&mut data, 13),
        [
            0x01, 0x10, 7, 0, 0, 0, b'u', b'/', b'x', 0, b'x', b'y', b'z'
        ]
    );
    // NOP and BYE over the Unix socket.
    ctl.write_all(&[0x00]).unwrap();
    assert_eq!(read_n(&mut ctl, 1), [0x01]);
    ctl.write_all(&[0xFF]).unwrap();
    assert_eq!(read_n(&mut ctl, 1), [0x01]);
    let mut rest = Vec::new();
    ctl.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

/// SIGTERM: exit code 0, the pid file and the Unix socket file are
/// removed, connected clients are closed.
#[test]
fn sigterm_cleans_up() {
    let dir = TempDir::new("term");
    let config = unix_config(&dir);
    let mut p = Proc::spawn(&["-C", config.to_str().unwrap()]);
    let pid_file = dir.path("psrtd.pid");
    let sock = dir.path("psrtd.sock");
    assert!(pid_file.exists(), "pid file written: {}", p.log_text());
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(pid.trim(), p.child.id().to_string());
    assert!(sock.exists());
    let (mut c, _) = Raw::anonymous(p.addr.unwrap());

    p.signal(15);
    assert_eq!(p.wait_exit(WAIT), Some(0), "{}", p.log_text());
    assert!(!pid_file.exists(), "pid file removed");
    assert!(!sock.exists(), "unix socket removed");
    c.expect_closed();
}
