//! Deadlines (proto.timeout = 1 s here): the idle control socket, every
//! handshake phase (drip-feeding does not extend them: slowloris, T6/T7),
//! progress-based deadlines for large frames on slow links (T5), and a
//! subscriber that stops reading mid-frame (T15).
//!
//! Only deadlines are asserted, with generous margins: "closed within
//! timeout + 1.5 s", "still open while bytes keep arriving".

mod common;

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use common::{Raw, Session, Setup, TestServer};
use psrt::protocol::{Request, StreamKind, encode_request};

const TIMEOUT: Duration = Duration::from_secs(1);
/// Allowed lateness of a close after its deadline.
const MARGIN: Duration = Duration::from_millis(1500);

fn server() -> TestServer {
    TestServer::with(Setup::default().tweak(|c| c.timeout = TIMEOUT))
}

/// Writes `bytes` one at a time, one every `every`, watching for the close;
/// then keeps watching. Returns the time from the call to the close; panics
/// if the socket is still open after `limit`.
fn drip_until_closed(c: &mut Raw, bytes: &[u8], every: Duration, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut rest = bytes.iter();
    loop {
        if let Some(&b) = rest.next() {
            if c.s.write_all(&[b]).is_err() {
                return start.elapsed();
            }
        }
        assert!(
            start.elapsed() < limit,
            "still open after {limit:?} of drip-feeding"
        );
        c.s.set_read_timeout(Some(every)).unwrap();
        let mut buf = [0u8; 64];
        match c.s.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(n) => panic!("unexpected bytes {:02x?}", &buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return start.elapsed(),
        }
    }
}

/// Sends NOPs every 0.4 s for `span`, asserting each is answered.
fn keep_alive(c: &mut Raw, span: Duration) {
    let end = Instant::now() + span;
    while Instant::now() < end {
        assert_eq!(c.nop(), 0x01);
        std::thread::sleep(Duration::from_millis(400));
    }
}

/// An idle control socket is closed after the timeout (and its data socket
/// with it), but not before half of it has passed.
#[test]
fn idle_control_socket_is_closed() {
    let srv = server();
    let mut s = Session::anonymous(srv.addr);
    let t0 = Instant::now();
    s.ctl.expect_silence(TIMEOUT / 2);
    s.ctl.expect_closed_within(TIMEOUT + MARGIN - t0.elapsed());
    s.data.expect_closed();
    let stats = srv.stop();
    assert!(stats.timeouts >= 1, "{stats:?}");
}

/// A client that sends NOP every 0.4 s (timeout 1 s) stays connected for
/// several timeouts, and its subscriptions keep working.
#[test]
fn nop_keeps_the_session_alive() {
    let srv = server();
    let mut s = Session::anonymous(srv.addr);
    s.sub(&["alive"]);
    keep_alive(&mut s.ctl, Duration::from_millis(2600));
    assert_eq!(s.ctl.publish("alive", b"still here"), 0x01);
    s.expect("alive", b"still here");
}

/// A socket that connects and never sends the greeting is closed after the
/// timeout; dripping the greeting's first bytes does not extend it.
#[test]
fn greeting_deadline() {
    let srv = server();
    let mut silent = Raw::connect(srv.addr);
    let mut drip = Raw::connect(srv.addr);
    let took = drip_until_closed(
        &mut drip,
        &[0xEE, 0xAA],
        Duration::from_millis(300),
        TIMEOUT + MARGIN,
    );
    assert!(took <= TIMEOUT + MARGIN, "{took:?}");
    silent.expect_closed_within(TIMEOUT + MARGIN);
}

/// Slowloris in the login phase: a login frame dripped one byte every
/// 0.3 s is closed at the login deadline, not kept alive by the bytes.
#[test]
fn login_deadline_despite_dripping() {
    let srv = server();
    let mut c = Raw::connect(srv.addr);
    c.greet(StreamKind::Control);
    let mut frame = 200u32.to_le_bytes().to_vec();
    frame.extend(std::iter::repeat_n(b'a', 200));
    let took = drip_until_closed(&mut c, &frame, Duration::from_millis(300), TIMEOUT + MARGIN);
    assert!(took <= TIMEOUT + MARGIN, "{took:?}");
    // A login that does not drip works as usual.
    let (mut ok, _) = Raw::anonymous(srv.addr);
    assert_eq!(ok.nop(), 0x01);
}

/// Slowloris in the data-hello phase: the 33-byte hello dripped one byte
/// every 0.3 s is closed at the deadline.
#[test]
fn data_hello_deadline_despite_dripping() {
    let srv = server();
    let (mut ctl, token) = Raw::anonymous(srv.addr);
    let mut d = Raw::connect(srv.addr);
    d.greet(StreamKind::Data);
    let mut hello = token.0.to_vec();
    hello.push(5);
    let t0 = Instant::now();
    // Keep the control session alive meanwhile from another thread.
    let keeper = std::thread::spawn(move || {
        keep_alive(&mut ctl, Duration::from_millis(2600));
        ctl
    });
    let took = drip_until_closed(&mut d, &hello, Duration::from_millis(300), TIMEOUT + MARGIN);
    assert!(
        took <= TIMEOUT + MARGIN,
        "{took:?} (since {:?})",
        t0.elapsed()
    );
    keeper.join().unwrap();
}

/// Slowloris mid-request: a PUBLISH dripped one byte every 0.3 s is closed
/// at about the timeout (the allowance for slow links is 1 ms per byte).
#[test]
fn mid_frame_drip_is_closed() {
    let srv = server();
    let (mut c, _) = Raw::anonymous(srv.addr);
    let mut f = Vec::new();
    encode_request(
        &Request::Publish {
            priority: 0x7f,
            topic: "slow",
            message: &[b'x'; 100],
        },
        &mut f,
    );
    let took = drip_until_closed(&mut c, &f, Duration::from_millis(300), TIMEOUT + MARGIN);
    assert!(took <= TIMEOUT + MARGIN, "{took:?}");
}

/// A large publish (300 KB) sent in chunks over about 2.5 s — longer than
/// the 1 s timeout — completes, because bytes keep arriving.
#[test]
fn large_publish_on_a_slow_link_completes() {
    let srv = server();
    let mut sub = Session::anonymous(srv.addr);
    sub.sub(&["big"]);
    // The subscriber's control socket must not idle out meanwhile.
    let (mut c, _) = Raw::anonymous(srv.addr);
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut f = Vec::new();
    encode_request(
        &Request::Publish {
            priority: 0x7f,
            topic: "big",
            message: &payload,
        },
        &mut f,
    );
    let chunks: Vec<&[u8]> = f.chunks(f.len() / 25 + 1).collect();
    let start = Instant::now();
    for (i, chunk) in chunks.iter().enumerate() {
        c.send(chunk);
        if i % 4 == 0 {
            assert_eq!(sub.ctl.nop(), 0x01);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        start.elapsed() > TIMEOUT * 2,
        "the upload outlasted the timeout"
    );
    assert_eq!(c.read_byte(), 0x01);
    sub.expect("big", &payload);
}

/// A stall mid-frame longer than the timeout closes the connection: after
/// a few bytes, and after 100 KB of a 300 KB frame.
#[test]
fn mid_frame_stall_is_closed() {
    let srv = server();
    for sent in [20usize, 100_000] {
        let (mut c, _) = Raw::anonymous(srv.addr);
        let mut f = Vec::new();
        encode_request(
            &Request::Publish {
                priority: 0x7f,
                topic: "stall",
                message: &vec![7u8; 300_000],
            },
            &mut f,
        );
        c.send(&f[..sent]);
        c.expect_closed_within(TIMEOUT + MARGIN);
    }
}

/// A subscriber that stops reading its data socket while a frame is only
/// partly written is disconnected once writes make no progress for the
/// timeout — even with beacons due more often than that (T15).
#[test]
fn stalled_reader_is_closed() {
    let srv = TestServer::with(Setup::default().tweak(|c| {
        c.timeout = TIMEOUT;
        c.data_queue_bytes = 256 << 20;
    }));
    let (mut ctl, token) = Raw::anonymous(srv.addr);
    // TIMEOUT_SEC 1: a beacon would be due every 0.5 s.
    let mut d = Raw::data(srv.addr, token, 1);
    d.s.set_nonblocking(false).unwrap();
    assert_eq!(ctl.subscribe(&["fill"]), 0x01);
    let msg = vec![1u8; 1_000_000];
    // More than loopback socket buffers hold: the last frames stay queued.
    for _ in 0..32 {
        assert_eq!(ctl.publish("fill", &msg), 0x01);
    }
    keep_alive(&mut ctl, TIMEOUT + MARGIN + Duration::from_millis(500));
    // By now the server has given up on the data socket: draining it ends
    // in a close rather than waiting for more.
    d.expect_closed();
    assert_eq!(ctl.nop(), 0x01, "the control session is unaffected");
}
