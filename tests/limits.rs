//! Frame limits, malformed input, connection caps and slow consumers
//! (T3, T4, T10, T11): every violation gets a close (or the documented
//! reply) before anything is allocated beyond the cap, and never disturbs
//! other clients.

mod common;

use std::time::{Duration, Instant};

use common::{Raw, Session, Setup, TestServer};
use psrt::protocol::{Request, StreamKind, encode_request};

const MAX_PUB: u32 = 1000;
const MAX_TOPIC_LEN: u32 = 100;

fn small_limits() -> Setup {
    Setup::default().tweak(|c| {
        c.limits.max_pub_size = MAX_PUB;
        c.limits.max_topic_length = MAX_TOPIC_LEN;
    })
}

/// A healthy subscriber that checks the server still serves it.
struct Healthy {
    s: Session,
    n: u32,
}

impl Healthy {
    fn new(srv: &TestServer) -> Self {
        let mut s = Session::anonymous(srv.addr);
        s.sub(&["healthy"]);
        Self { s, n: 0 }
    }

    /// Publishes to itself and receives it.
    fn check(&mut self) {
        self.n += 1;
        let msg = self.n.to_le_bytes();
        assert_eq!(self.s.ctl.publish("healthy", &msg), 0x01);
        self.s.expect("healthy", &msg);
    }
}

/// Sends `bytes` on a fresh logged-in control socket and asserts the
/// server closes it without a reply.
fn expect_close_after(srv: &TestServer, what: &str, bytes: &[u8]) {
    let (mut c, _) = Raw::anonymous(srv.addr);
    c.send(bytes);
    let got = c.expect_closed_within(Duration::from_secs(3));
    assert!(got.is_empty(), "{what}: no reply expected, got {got:02x?}");
}

fn publish_header(len: u32) -> Vec<u8> {
    let mut f = vec![0x01, 0x7f];
    f.extend_from_slice(&len.to_le_bytes());
    f
}

fn len_header(op: u8, len: u32) -> Vec<u8> {
    let mut f = vec![op];
    f.extend_from_slice(&len.to_le_bytes());
    f
}

/// PUBLISH with LEN above max_pub_size is closed from its header alone
/// (the body is never sent); LEN equal to max_pub_size is accepted.
#[test]
fn publish_size_limit() {
    let srv = TestServer::with(small_limits());
    let mut healthy = Healthy::new(&srv);
    expect_close_after(&srv, "LEN = max+1", &publish_header(MAX_PUB + 1));
    healthy.check();

    let mut s = Session::anonymous(srv.addr);
    s.sub(&["t"]);
    let message = vec![9u8; MAX_PUB as usize - 2]; // "t" + NUL + message
    assert_eq!(s.ctl.publish("t", &message), 0x01);
    s.expect("t", &message);
    healthy.check();
}

/// SUBSCRIBE / UNSUBSCRIBE with LEN above max_topic_length are closed from
/// the header alone; LEN equal to it is accepted.
#[test]
fn topic_length_limit() {
    let srv = TestServer::with(small_limits());
    let mut healthy = Healthy::new(&srv);
    expect_close_after(
        &srv,
        "SUBSCRIBE max+1",
        &len_header(0x02, MAX_TOPIC_LEN + 1),
    );
    expect_close_after(
        &srv,
        "UNSUBSCRIBE max+1",
        &len_header(0x03, MAX_TOPIC_LEN + 1),
    );
    expect_close_after(
        &srv,
        "PUBLISH_REPL max+1",
        &len_header(0x11, MAX_TOPIC_LEN + 1),
    );
    healthy.check();

    let (mut c, _) = Raw::anonymous(srv.addr);
    let exact = "x".repeat(MAX_TOPIC_LEN as usize);
    assert_eq!(c.subscribe(&[&exact]), 0x01);
    assert_eq!(c.unsubscribe(&[&exact]), 0x01);
    healthy.check();
}

/// `u32::MAX` lengths are refused at once (no allocation, no wait for the
/// body), for every length-prefixed request.
#[test]
fn u32_max_lengths() {
    let srv = TestServer::start();
    let mut healthy = Healthy::new(&srv);
    expect_close_after(&srv, "PUBLISH u32::MAX", &publish_header(u32::MAX));
    expect_close_after(&srv, "SUBSCRIBE u32::MAX", &len_header(0x02, u32::MAX));
    expect_close_after(&srv, "UNSUBSCRIBE u32::MAX", &len_header(0x03, u32::MAX));
    expect_close_after(&srv, "PUBLISH_REPL u32::MAX", &len_header(0x11, u32::MAX));
    healthy.check();
    // Before login too.
    let mut c = Raw::connect(srv.addr);
    c.greet(StreamKind::Control);
    c.send(&u32::MAX.to_le_bytes());
    c.expect_closed_within(Duration::from_secs(3));
    healthy.check();
}

/// An unknown op byte closes the connection without a reply.
#[test]
fn unknown_op_byte_closes() {
    let srv = TestServer::start();
    let mut healthy = Healthy::new(&srv);
    for op in [0x04u8, 0x10, 0x14, 0x21, 0x7f, 0xfe] {
        expect_close_after(&srv, &format!("op {op:02x}"), &[op]);
    }
    healthy.check();
    let stats = srv.stop();
    assert_eq!(stats.protocol_errors, 6, "{stats:?}");
}

/// Malformed frames close the connection: a PUBLISH without a NUL, with an
/// empty topic, with a topic that is not UTF-8, and a SUBSCRIBE or
/// UNSUBSCRIBE with a topic that is not UTF-8. Other clients keep working.
#[test]
fn malformed_frames_close() {
    let srv = TestServer::start();
    let mut healthy = Healthy::new(&srv);
    let frame = |op: u8, prio: Option<u8>, body: &[u8]| {
        let mut f = vec![op];
        f.extend(prio);
        f.extend_from_slice(&(body.len() as u32).to_le_bytes());
        f.extend_from_slice(body);
        f
    };
    let cases: [(&str, Vec<u8>); 7] = [
        (
            "publish without NUL",
            frame(0x01, Some(0x7f), b"topic-only"),
        ),
        ("publish empty topic", frame(0x01, Some(0x7f), b"\0message")),
        ("publish LEN 0", frame(0x01, Some(0x7f), b"")),
        (
            "publish non-UTF-8 topic",
            frame(0x01, Some(0x7f), b"a/\xff\xfe\0m"),
        ),
        ("subscribe non-UTF-8", frame(0x02, None, b"ok\0\xc3\x28")),
        ("unsubscribe non-UTF-8", frame(0x03, None, b"\xff")),
        ("publish_repl non-UTF-8", frame(0x11, None, b"\xff")),
    ];
    for (what, bytes) in cases {
        expect_close_after(&srv, what, &bytes);
        healthy.check();
    }
}

/// A valid request pipelined behind a malformed one is never answered:
/// the connection ends at the bad frame.
#[test]
fn nothing_is_processed_after_a_bad_frame() {
    let srv = TestServer::start();
    let mut healthy = Healthy::new(&srv);
    let mut f = vec![0x04]; // unknown op
    encode_request(
        &Request::Publish {
            priority: 0x7f,
            topic: "healthy",
            message: b"must not be delivered",
        },
        &mut f,
    );
    expect_close_after(&srv, "unknown op then publish", &f);
    healthy.check();
}

/// Tries to log in; returns the control socket if a token came back.
fn try_login(srv: &TestServer, login: &str, password: &str) -> Option<Raw> {
    use std::io::Read;
    let mut c = Raw::connect(srv.addr);
    c.greet(StreamKind::Control);
    let mut f = Vec::new();
    psrt::protocol::encode_login(&psrt::protocol::Login { login, password }, &mut f);
    c.send(&f);
    let mut token = [0u8; 32];
    c.s.read_exact(&mut token).ok().map(|()| c)
}

/// Retries a login until it succeeds (the server frees a slot when it has
/// processed a disconnect, which is asynchronous to the client).
fn login_eventually(srv: &TestServer, login: &str, password: &str) -> Raw {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(c) = try_login(srv, login, password) {
            return c;
        }
        assert!(Instant::now() < deadline, "{login}: slot never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// max_clients caps logged-in sessions: the excess login is closed without
/// a token, the others keep working, and a freed slot can be reused.
#[test]
fn max_clients() {
    let srv = TestServer::with(Setup::default().tweak(|c| c.max_clients = 3));
    let mut sessions: Vec<Raw> = (0..3).map(|_| Raw::anonymous(srv.addr).0).collect();
    assert!(try_login(&srv, "", "").is_none(), "4th session refused");
    for s in &mut sessions {
        assert_eq!(s.nop(), 0x01);
    }
    drop(sessions.pop());
    let mut again = login_eventually(&srv, "", "");
    assert_eq!(again.nop(), 0x01);
    let stats = srv.stop();
    assert!(stats.limit_refusals >= 1, "{stats:?}");
}

/// max_clients_per_user caps sessions of one login; other logins are not
/// affected.
#[test]
fn max_clients_per_user() {
    let srv = TestServer::with(
        Setup::default()
            .acl("u:\n  pub: '#'\n  sub: '#'\nv:\n  pub: '#'\n  sub: '#'\n")
            .user("u", "pu")
            .user("v", "pv")
            .tweak(|c| c.max_clients_per_user = 2),
    );
    let mut u1 = Raw::control(srv.addr, "u", "pu").0;
    let u2 = Raw::control(srv.addr, "u", "pu").0;
    assert!(
        try_login(&srv, "u", "pu").is_none(),
        "3rd session of u refused"
    );
    let mut v = Raw::control(srv.addr, "v", "pv").0;
    assert_eq!(v.nop(), 0x01);
    assert_eq!(u1.nop(), 0x01);
    drop(u2);
    let mut u3 = login_eventually(&srv, "u", "pu");
    assert_eq!(u3.nop(), 0x01);
}

/// max_clients_per_ip caps connections from one address in any phase: the
/// excess connection is closed at once, the others keep working, and
/// accepts resume when one goes away.
#[test]
fn max_clients_per_ip() {
    let srv = TestServer::with(Setup::default().tweak(|c| c.max_clients_per_ip = 3));
    let (mut ctl, _) = Raw::anonymous(srv.addr);
    let idle1 = Raw::connect(srv.addr);
    let mut idle2 = Raw::connect(srv.addr);
    let mut excess = Raw::connect(srv.addr);
    excess.expect_closed_within(Duration::from_secs(2));
    assert_eq!(ctl.nop(), 0x01);
    idle2.greet(StreamKind::Control);
    drop(idle1);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = Raw::connect(srv.addr);
        let mut g = Vec::new();
        psrt::protocol::encode_greeting(
            psrt::protocol::Greeting {
                kind: StreamKind::Control,
                comm: psrt::protocol::CommMode::Plain,
            },
            &mut g,
        );
        c.send(&g);
        use std::io::Read;
        let mut reply = [0u8; 4];
        if c.s.read_exact(&mut reply).is_ok() {
            assert_eq!(reply, [0xEE, 0xAA, 0x01, 0x00]);
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = srv.stop();
    assert!(stats.limit_refusals >= 1, "{stats:?}");
}

/// Slow consumer (T11): a subscriber that never reads its data socket while
/// 1000 × 64 KiB are published has its data socket closed once its queue is
/// full; its control socket still answers; the publisher always got `01`;
/// a healthy subscriber received everything in order; the server counts
/// one slow consumer.
#[test]
fn slow_consumer_is_dropped_alone() {
    const N: u32 = 1000;
    let srv = TestServer::with(Setup::default().tweak(|c| {
        c.data_queue = 128;
        c.data_queue_bytes = 8 << 20;
    }));
    let mut slow = Session::anonymous(srv.addr);
    slow.sub(&["flood"]);
    let mut healthy = Session::anonymous(srv.addr);
    healthy.sub(&["flood"]);
    let reader = std::thread::spawn(move || {
        for i in 0..N {
            let (topic, msg) = healthy.recv();
            assert_eq!(topic, "flood");
            assert_eq!(msg.len(), 64 * 1024);
            assert_eq!(msg[..4], i.to_le_bytes(), "message {i} out of order");
        }
        healthy
    });
    let (mut publ, _) = Raw::anonymous(srv.addr);
    let mut msg = vec![0u8; 64 * 1024];
    for i in 0..N {
        msg[..4].copy_from_slice(&i.to_le_bytes());
        assert_eq!(publ.publish("flood", &msg), 0x01, "publish {i}");
    }
    let mut healthy = reader.join().expect("healthy subscriber got everything");
    assert_eq!(healthy.ctl.nop(), 0x01);
    assert_eq!(
        slow.ctl.nop(),
        0x01,
        "the slow client's control socket stays"
    );
    slow.data.expect_closed();
    assert_eq!(slow.ctl.nop(), 0x01);
    let stats = srv.stop();
    assert_eq!(stats.slow_consumers, 1, "{stats:?}");
}
