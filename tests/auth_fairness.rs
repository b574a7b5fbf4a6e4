//! Honest logins never wait behind dishonest ones (issue 12, item 3): a
//! flood of wrong UDP passwords does not delay a TCP login; a sensor's
//! datagrams that arrive while its password is first checked all wait for
//! that one check and are delivered; a repeated wrong password is refused
//! without bcrypt, and still counted and throttled.
//!
//! The password files here use bcrypt cost 10, so a check takes long enough
//! (tens to hundreds of milliseconds) for the queues to matter. The tests
//! run one at a time: each keeps the auth worker busy.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, Raw, Setup, TempDir, TestServer, http_get, wait_until};
use psrt::protocol::{Login, StreamKind, UdpOp, encode_login, encode_udp_body, encode_udp_plain};

/// One test at a time: they measure how long the auth worker makes others wait.
static SERIAL: Mutex<()> = Mutex::new(());

const ACL: &str =
    "_:\n  sub: '#'\n  pub: '#'\nuser1:\n  pub: '#'\n  sub: '#'\nsensor:\n  pub: 's/#'\n";

/// A password file with bcrypt cost 10 hashes.
fn costly_passwd(dir: &TempDir, users: &[(&str, &str)]) -> PathBuf {
    let text: String = users
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", bcrypt::hash(p, 10).unwrap()))
        .collect();
    dir.write("passwd-cost10", &text)
}

fn server(
    dir: &TempDir,
    tweak: impl FnOnce(&mut psrt::server::Config) + Send + 'static,
) -> TestServer {
    let passwd = costly_passwd(dir, &[("user1", "123"), ("sensor", "pw")]);
    TestServer::with(Setup::default().acl(ACL).tweak(move |c| {
        c.auth.password_file = Some(passwd);
        tweak(c);
    }))
}

/// A plain-auth datagram without ack.
fn datagram(login: &str, password: &str, topic: &str, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    encode_udp_body(UdpOp::PublishNoAck, 0x7f, topic, data, &mut body);
    let mut d = Vec::new();
    encode_udp_plain(login, password, &body, &mut d);
    d
}

/// A counter from `/metrics` (loopback needs no credentials).
fn metric(stats: SocketAddr, name: &str) -> u64 {
    let (code, body) = http_get(stats, "/metrics");
    assert_eq!(code, 200);
    let prefix = format!("psrtd_{name}_total ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// 200 datagrams with wrong passwords for a real user (each a different
/// guess, so each needs bcrypt), then an honest TCP login: it gets its token
/// within the client timeout (before: it waited behind every guess, 200 ×
/// a cost-10 bcrypt, far past the timeout).
#[test]
fn a_tcp_login_does_not_wait_behind_a_flood_of_wrong_udp_passwords() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("fair-flood");
    let srv = server(&dir, |_| {});
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for n in 0..200 {
        let d = datagram("user1", &format!("guess-{n}"), "t", b"x");
        udp.send_to(&d, srv.udp_addr.unwrap()).unwrap();
    }
    let stats = srv.stats_addr.unwrap();
    assert!(
        wait_until(IO_TIMEOUT, || metric(stats, "udp_datagrams") == 200),
        "the flood was read"
    );
    // Measured with a long read timeout, so a slow answer shows its time.
    let started = Instant::now();
    let mut ctl = Raw::connect(srv.addr);
    ctl.greet(StreamKind::Control);
    ctl.s
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut login = Vec::new();
    encode_login(
        &Login {
            login: "user1",
            password: "123",
        },
        &mut login,
    );
    ctl.send(&login);
    let token = ctl.read_exact(32);
    let waited = started.elapsed();
    eprintln!("honest TCP login under a flood of 200 wrong UDP passwords: {waited:?}");
    assert_eq!(token.len(), 32);
    assert!(
        waited < IO_TIMEOUT,
        "the login took {waited:?}, past the client timeout"
    );
    ctl.s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    assert_eq!(ctl.nop(), 0x01);
    let stats = srv.stop();
    assert_eq!(stats.udp_messages, 0);
    assert_eq!(
        stats.login_failures, 0,
        "UDP failures are not login failures"
    );
}

/// 3000 datagrams in about a second from one sensor whose password is not
/// cached yet: those that arrive while it is checked wait for that one
/// check, and every one is delivered, in order (before: beyond 64 waiting
/// datagrams the rest were dropped).
#[test]
fn a_sensor_on_a_cold_cache_loses_nothing() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const COUNT: u32 = 3000;
    let dir = TempDir::new("fair-sensor");
    // The subscriber's queue must hold what is released at once.
    let srv = server(&dir, |c| c.data_queue = 2 * COUNT as usize);
    let (mut ctl, token) = Raw::anonymous(srv.addr);
    let mut data = Raw::data(srv.addr, token, 60);
    assert_eq!(ctl.subscribe(&["s/#"]), 0x01);
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        while got.len() < COUNT as usize {
            let (_, _, message) = data.next_message();
            got.push(u32::from_le_bytes(message.try_into().unwrap()));
        }
        got
    });
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    for n in 0..COUNT {
        let d = datagram("sensor", "pw", "s/t", &n.to_le_bytes());
        udp.send_to(&d, srv.udp_addr.unwrap()).unwrap();
        if n % 3 == 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    eprintln!("sent {COUNT} datagrams in {:?}", started.elapsed());
    let stats_addr = srv.stats_addr.unwrap();
    let handled = || metric(stats_addr, "udp_messages") + metric(stats_addr, "udp_dropped");
    assert!(wait_until(IO_TIMEOUT * 2, || handled() >= u64::from(COUNT)));
    let (delivered, dropped) = (
        metric(stats_addr, "udp_messages"),
        metric(stats_addr, "udp_dropped"),
    );
    eprintln!("delivered {delivered} of {COUNT}; udp_dropped {dropped}");
    assert_eq!((delivered, dropped), (u64::from(COUNT), 0));
    let got = reader.join().expect("all delivered");
    assert_eq!(got, (0..COUNT).collect::<Vec<_>>(), "all, in order");
}

/// A wrong password that failed bcrypt is refused at once when it comes
/// again (no second bcrypt run), and every refusal still counts toward the
/// address's throttle.
#[test]
fn a_repeated_wrong_password_is_refused_without_bcrypt_but_throttled() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("fair-repeat");
    let srv = server(&dir, |c| c.max_login_failures = 4);
    let started = Instant::now();
    Raw::expect_login_refused(srv.addr, "user1", "wrong");
    let first = started.elapsed();
    let started = Instant::now();
    for _ in 0..3 {
        Raw::expect_login_refused(srv.addr, "user1", "wrong");
    }
    let repeats = started.elapsed();
    eprintln!("first wrong password refused in {first:?}, three repeats in {repeats:?}");
    assert!(
        repeats < first,
        "three repeats ({repeats:?}) took longer than one bcrypt check ({first:?})"
    );
    // Four failures: refused now, even with the right password (closed
    // before the greeting reply or after the login frame: no token).
    let mut refused = Raw::connect(srv.addr);
    let mut frames = vec![0xEE, 0xAA, 0x00];
    encode_login(
        &Login {
            login: "user1",
            password: "123",
        },
        &mut frames,
    );
    refused.send(&frames);
    let got = refused.expect_closed();
    assert!(got.len() <= 4, "no token after four failures: {got:02x?}");
    let stats = srv.stop();
    assert_eq!(stats.login_failures, 4);
    assert!(stats.auth_blocked >= 1);
}
