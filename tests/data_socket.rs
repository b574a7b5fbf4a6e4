//! The data socket: beacons and their clamp, binding by token (reconnect,
//! replacement, stale tokens), its lifetime tied to the control session,
//! BYE, that no message published after a client's subscribe was
//! acknowledged is lost (T13, T14), and that a half-closed data socket
//! keeps receiving (issue #12, item 9).

mod common;

use std::time::{Duration, Instant};

use common::{ACL_ANON_ALL, Proc, Raw, Session, TempDir, TestServer, write_config};
use psrt::protocol::{Request, StreamKind};

/// Reads the data socket for `span` and returns every byte received.
fn collect_for(d: &mut Raw, span: Duration) -> Vec<u8> {
    use std::io::{ErrorKind, Read};
    let end = Instant::now() + span;
    let mut got = std::mem::take(&mut d.rx);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        d.s.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 4096];
        match d.s.read(&mut buf) {
            Ok(0) => panic!("data socket closed"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    d.s.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    got
}

/// With TIMEOUT_SEC = 2 an idle data socket gets a `00` beacon about every
/// second: at least 2 in 3 s (and no storm).
#[test]
fn beacons_at_half_the_client_timeout() {
    let srv = TestServer::start();
    let (mut ctl, token) = Raw::anonymous(srv.addr);
    let mut d = Raw::data(srv.addr, token, 2);
    // Keep the control session alive past the server's 5 s idle timeout
    // is not needed: the test ends before.
    let got = collect_for(&mut d, Duration::from_secs(3));
    assert!(got.iter().all(|&b| b == 0), "only beacons: {got:02x?}");
    assert!(got.len() >= 2, "{} beacons in 3 s", got.len());
    assert!(got.len() <= 6, "{} beacons in 3 s", got.len());
    assert_eq!(ctl.nop(), 0x01);
}

/// TIMEOUT_SEC = 0 (any client timeout under 1 s) does not cause the
/// reference's ~1 kHz beacon storm: the interval is clamped.
#[test]
fn zero_timeout_byte_is_clamped() {
    let srv = TestServer::start();
    let (_ctl, token) = Raw::anonymous(srv.addr);
    let mut d = Raw::data(srv.addr, token, 0);
    let got = collect_for(&mut d, Duration::from_secs(2));
    assert!(got.iter().all(|&b| b == 0), "only beacons: {got:02x?}");
    assert!(!got.is_empty(), "beacons still flow");
    assert!(got.len() < 40, "{} beacons in 2 s: a storm", got.len());
}

/// TIMEOUT_SEC = 255 is accepted and the socket works.
#[test]
fn max_timeout_byte_is_accepted() {
    let srv = TestServer::start();
    let (mut ctl, token) = Raw::anonymous(srv.addr);
    let mut d = Raw::data(srv.addr, token, 255);
    assert_eq!(ctl.subscribe(&["t"]), 0x01);
    assert_eq!(ctl.publish("t", b"x"), 0x01);
    assert_eq!(d.next_message().2, b"x");
}

/// After the client closes its data socket it may open a new one with the
/// same token and receives on it (the reference refused this with `FF`).
#[test]
fn data_socket_reconnect_with_the_same_token() {
    let srv = TestServer::start();
    let mut s = Session::anonymous(srv.addr);
    s.sub(&["t"]);
    assert_eq!(s.ctl.publish("t", b"first"), 0x01);
    s.expect("t", b"first");
    for round in 0..3 {
        drop(std::mem::replace(
            &mut s.data,
            Raw::data(srv.addr, s.token, Session::QUIET_TIMEOUT_SEC),
        ));
        let msg = format!("after reconnect {round}");
        assert_eq!(s.ctl.publish("t", msg.as_bytes()), 0x01);
        s.expect("t", msg.as_bytes());
    }
    // Also after the server has surely seen the old socket close.
    let (mut ctl, token) = Raw::anonymous(srv.addr);
    drop(Raw::data(srv.addr, token, 60));
    assert_eq!(ctl.nop(), 0x01);
    std::thread::sleep(Duration::from_millis(200));
    let mut d = Raw::data(srv.addr, token, 60);
    assert_eq!(ctl.subscribe(&["u"]), 0x01);
    assert_eq!(ctl.publish("u", b"y"), 0x01);
    assert_eq!(d.next_message().2, b"y");
}

/// A second data socket with the same token while the first is open
/// replaces it (documented rule): the first is closed, messages go to the
/// second.
#[test]
fn second_data_socket_replaces_the_first() {
    let srv = TestServer::start();
    let mut s = Session::anonymous(srv.addr);
    s.sub(&["t"]);
    let mut second = Raw::data(srv.addr, s.token, Session::QUIET_TIMEOUT_SEC);
    s.data.expect_closed_within(Duration::from_secs(2));
    assert_eq!(s.ctl.publish("t", b"to the second"), 0x01);
    assert_eq!(second.next_message().2, b"to the second");
    assert_eq!(s.ctl.nop(), 0x01);
}

/// A token whose session has ended is refused with `FF` and a close.
#[test]
fn token_of_an_ended_session_is_refused() {
    let srv = TestServer::start();
    let (mut ctl, token) = Raw::anonymous(srv.addr);
    assert_eq!(ctl.request(&Request::Bye), 0x01);
    ctl.expect_closed();
    let mut d = Raw::connect(srv.addr);
    d.greet(StreamKind::Data);
    let mut hello = token.0.to_vec();
    hello.push(5);
    d.send(&hello);
    assert_eq!(d.expect_closed(), [0xFF]);
}

/// BYE is answered `01`, then the server closes both the control and the
/// data socket.
#[test]
fn bye_closes_both_sockets() {
    let srv = TestServer::start();
    let mut s = Session::anonymous(srv.addr);
    s.sub(&["t"]);
    assert_eq!(s.ctl.request(&Request::Bye), 0x01);
    assert!(s.ctl.expect_closed().is_empty());
    s.data.expect_closed();
    // Other clients are unaffected.
    let mut other = Session::anonymous(srv.addr);
    other.sub(&["t"]);
    assert_eq!(other.ctl.publish("t", b"x"), 0x01);
    other.expect("t", b"x");
}

/// When the client closes its control socket, the server closes the data
/// socket of that session.
#[test]
fn data_socket_closed_when_control_socket_closes() {
    let srv = TestServer::start();
    let s = Session::anonymous(srv.addr);
    let Session { ctl, mut data, .. } = s;
    drop(ctl);
    data.expect_closed();
}

/// A message published after the client got `01` on its data hello and on
/// its subscribe is never lost: 300 fresh sessions, each receives the one
/// message published right after its subscribe was acknowledged, whether
/// published by another client or by itself.
#[test]
fn no_message_lost_after_subscribe_ok() {
    let srv = TestServer::start();
    let (mut publ, _) = Raw::anonymous(srv.addr);
    for i in 0..300u32 {
        let mut s = Session::anonymous(srv.addr);
        let topic = format!("loss/{i}");
        s.sub(&[&topic]);
        let msg = i.to_le_bytes();
        if i % 2 == 0 {
            assert_eq!(publ.publish(&topic, &msg), 0x01);
        } else {
            assert_eq!(s.ctl.publish(&topic, &msg), 0x01);
        }
        s.expect(&topic, &msg);
    }
}

/// CPU time (user + system, in clock ticks) a process has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command name (which may hold spaces): state is the
    // 1st, utime the 12th and stime the 13th.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A client that shuts down the sending side of its data socket (SHUT_WR:
/// it never writes there anyway) keeps receiving messages and beacons.
/// The end of its stream only stops reading: psrtd (the binary) does not
/// spin on it — its CPU time over 1.5 s of beacons stays near idle.
#[test]
fn half_closed_data_socket_keeps_receiving() {
    let dir = TempDir::new("half-close");
    dir.write("acl.yml", ACL_ANON_ALL);
    let config = write_config(&dir, "", "");
    let server = Proc::spawn(&["-C", config.to_str().unwrap()]);
    let addr = server.addr.expect("listening");
    let (mut ctl, token) = Raw::anonymous(addr);
    // TIMEOUT_SEC 2: a beacon about every second.
    let mut data = Raw::data(addr, token, 2);
    assert_eq!(ctl.subscribe(&["half/#"]), 0x01);
    data.s.shutdown(std::net::Shutdown::Write).unwrap();
    for i in 0..20u8 {
        assert_eq!(ctl.publish("half/x", &[i]), 0x01);
        assert_eq!(data.next_message().2, [i], "message {i} after SHUT_WR");
    }
    let before = cpu_ticks(server.child.id());
    let got = collect_for(&mut data, Duration::from_millis(1500));
    let used = cpu_ticks(server.child.id()) - before;
    eprintln!("psrtd CPU over 1.5 s with a half-closed data socket: {used} ticks");
    assert!(got.iter().all(|&b| b == 0), "only beacons: {got:02x?}");
    assert!(!got.is_empty(), "beacons still arrive");
    assert!(
        used <= 30,
        "{used} ticks of CPU in 1.5 s while idle: a busy loop"
    );
    assert_eq!(ctl.publish("half/y", b"still"), 0x01);
    assert_eq!(data.next_message().2, b"still");
    assert_eq!(ctl.nop(), 0x01);
}
