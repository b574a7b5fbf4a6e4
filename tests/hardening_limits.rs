//! Hardening against a hostile peer (issue 12): subscriptions are bounded,
//! memory follows the bytes a peer actually sends, the global queue cap
//! counts real memory, counters tell the truth, and a local Unix-socket
//! session is no cluster node.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Proc, Raw, Session, Setup, TempDir, TestServer};
use psrt::protocol::Request;

fn topics(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}/{i}")).collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Beyond `max_subscriptions_per_client` (per session, and per request) and
/// `max_subscriptions` (all sessions) a SUBSCRIBE is refused with `FF`, all
/// or nothing; unsubscribing makes room again; refusals are counted.
#[test]
fn subscriptions_are_bounded_per_client_and_in_total() {
    let srv = TestServer::with(Setup::default().tweak(|c| {
        c.max_subscriptions_per_client = 100;
        c.max_subscriptions = 150;
    }));
    let (mut a, _) = Raw::anonymous(srv.addr);
    let a_topics = topics("a", 101);
    assert_eq!(
        a.subscribe(&refs(&a_topics)),
        0xFF,
        "101 topics in one request"
    );
    assert_eq!(
        a.subscribe(&refs(&a_topics[..100])),
        0x01,
        "exactly the cap"
    );
    assert_eq!(a.subscribe(&["one/more"]), 0xFF, "a 101st subscription");
    assert_eq!(a.subscribe(&["a/5"]), 0x01, "one it holds already");
    let (mut b, _) = Raw::anonymous(srv.addr);
    let b_topics = topics("b", 50);
    assert_eq!(b.subscribe(&refs(&b_topics)), 0x01, "150 in all");
    assert_eq!(b.subscribe(&["b/extra"]), 0xFF, "the total cap");
    assert_eq!(a.unsubscribe(&refs(&a_topics[..10])), 0x01);
    assert_eq!(b.subscribe(&["b/extra"]), 0x01, "room again");
    // The refused requests changed nothing: a refused topic gets nothing.
    let mut check = Session::anonymous(srv.addr);
    check.sub(&["a/100"]);
    assert_eq!(a.publish("a/100", b"x"), 0x01);
    check.expect("a/100", b"x");
    let stats = srv.stop();
    assert_eq!(stats.subscription_refusals, 3);
}

/// With the defaults, one bulk SUBSCRIBE of ~90 000 unique topics (a 1 MB
/// frame) is refused as a whole before any topic is looked at, and the
/// session goes on.
#[test]
fn a_huge_bulk_subscribe_is_refused_at_once() {
    let srv = TestServer::start();
    let (mut a, _) = Raw::anonymous(srv.addr);
    let many = topics("t", 90_000);
    assert_eq!(a.subscribe(&refs(&many)), 0xFF);
    assert_eq!(a.subscribe(&["t/1"]), 0x01);
    assert_eq!(a.nop(), 0x01);
    let stats = srv.stop();
    assert_eq!(stats.subscription_refusals, 1);
    assert_eq!(stats.c_sub_ops, 1);
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// 20 sessions each announce an 8 MB PUBLISH and send 1 KiB of it: the
/// server's memory grows with what they sent (one 64 KiB step each), not
/// with what they announced (160 MB).
#[test]
fn memory_follows_the_bytes_received() {
    const ANNOUNCED: u32 = 8 * 1024 * 1024;
    let dir = TempDir::new("partial-rss");
    dir.write("acl.yml", common::ACL_ANON_ALL);
    let config = common::write_config(
        &dir,
        &format!(
            "  max_pub_size: {ANNOUNCED}\n  data_queue_bytes: {}\n  max_partial_bytes: 0\n",
            2 * ANNOUNCED
        ),
        "",
    );
    let p = Proc::spawn(&["-C", config.to_str().unwrap()]);
    let addr = p.addr.expect("listening");
    let before = rss_kib(p.child.id());
    let mut senders = Vec::new();
    for _ in 0..20 {
        let (mut c, _) = Raw::anonymous(addr);
        let mut head = vec![0x01, 0x00];
        head.extend_from_slice(&ANNOUNCED.to_le_bytes());
        head.extend_from_slice(b"big\0");
        head.extend_from_slice(&[7u8; 1024]);
        c.send(&head);
        senders.push(c);
    }
    // Let the server read everything that was sent.
    let (mut probe, _) = Raw::anonymous(addr);
    assert_eq!(probe.nop(), 0x01);
    std::thread::sleep(Duration::from_millis(200));
    let grown_kib = rss_kib(p.child.id()).saturating_sub(before);
    assert!(
        grown_kib < 32 * 1024,
        "RSS grew by {grown_kib} KiB for 20 KiB received (announced: 160 MiB)"
    );
    drop(senders);
}

/// All large frames being received share `max_partial_bytes`: a connection
/// whose frame would take the total past it is closed; the others finish.
#[test]
fn large_frames_being_received_share_a_budget() {
    let srv = TestServer::with(Setup::default().tweak(|c| {
        c.limits.max_pub_size = 4 * 1024 * 1024;
        c.data_queue_bytes = 8 * 1024 * 1024;
        c.max_partial_bytes = 1024 * 1024;
    }));
    let frame = |len: usize| {
        let mut v = Vec::new();
        psrt::protocol::encode_request(
            &Request::Publish {
                priority: 0,
                topic: "big",
                message: &vec![9u8; len],
            },
            &mut v,
        );
        v
    };
    let first = frame(700 * 1024);
    let second = frame(700 * 1024);
    let (mut a, _) = Raw::anonymous(srv.addr);
    let (mut b, _) = Raw::anonymous(srv.addr);
    a.send(&first[..600 * 1024]);
    a.expect_silence(Duration::from_millis(200));
    b.send(&second[..600 * 1024]);
    b.expect_closed();
    a.send(&first[600 * 1024..]);
    assert_eq!(a.read_byte(), 0x01, "the first frame completes");
    assert_eq!(a.nop(), 0x01);
    let stats = srv.stop();
    assert_eq!(stats.limit_refusals, 1);
    assert_eq!(stats.c_pub_messages, 1);
}

/// One 1 MB message fanned out to 12 reading subscribers, with
/// `max_queued_bytes` at 8 MB: the shared frame counts once, so nobody is
/// dropped (it used to count 12 MB and drop healthy subscribers).
#[test]
fn a_shared_frame_counts_once_under_the_global_cap() {
    const MESSAGE: usize = 1_000_000;
    // Each subscriber may queue all three messages (4 MiB), so only the
    // global cap could drop one: 12 holders of a 1 MB frame are 12 MB if
    // counted per queue, 1 MB counted once.
    let srv = TestServer::with(Setup::default().tweak(|c| {
        c.data_queue_bytes = 4 * 1024 * 1024;
        c.max_queued_bytes = 8 * 1024 * 1024;
    }));
    let subs: Vec<Session> = (0..12)
        .map(|_| {
            let mut s = Session::anonymous(srv.addr);
            s.sub(&["big"]);
            s
        })
        .collect();
    let (mut publisher, _) = Raw::anonymous(srv.addr);
    let payload = vec![0x42u8; MESSAGE];
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut s| {
            std::thread::spawn(move || {
                for _ in 0..3 {
                    assert_eq!(s.recv().1.len(), MESSAGE);
                }
            })
        })
        .collect();
    for _ in 0..3 {
        assert_eq!(publisher.publish("big", &payload), 0x01);
    }
    for r in readers {
        r.join().expect("every subscriber got all three messages");
    }
    let stats = srv.stop();
    assert_eq!(stats.queue_cap_drops, 0);
    assert_eq!(stats.slow_consumers, 0);
    assert_eq!(stats.c_sent_messages, 36);
}

/// A subscriber dropped as a slow consumer: the messages thrown away with
/// its queue are counted as dropped, not as sent.
#[test]
fn dropped_messages_are_not_counted_as_sent() {
    const MESSAGE: usize = 64 * 1024;
    const N: u64 = 200;
    let srv = TestServer::with(Setup::default().tweak(|c| {
        c.data_queue_bytes = 256 * 1024;
    }));
    let mut stalled = Session::anonymous(srv.addr);
    stalled.sub(&["t"]);
    let mut reader = Session::anonymous(srv.addr);
    reader.sub(&["t"]);
    let (mut publisher, _) = Raw::anonymous(srv.addr);
    let payload = vec![1u8; MESSAGE];
    let (got_tx, got_rx) = std::sync::mpsc::channel();
    let reading = std::thread::spawn(move || {
        for _ in 0..N {
            reader.recv();
            got_tx.send(()).unwrap();
        }
    });
    // The publisher never runs more than two messages ahead of the reader,
    // so only the subscriber that does not read can be a slow consumer.
    let mut received = 0;
    for sent in 1..=N {
        assert_eq!(publisher.publish("t", &payload), 0x01);
        while received + 2 < sent {
            got_rx
                .recv_timeout(common::IO_TIMEOUT)
                .expect("the reader keeps up");
            received += 1;
        }
    }
    reading.join().expect("the reader got everything");
    stalled.data.expect_closed_within(Duration::from_secs(10));
    let stats = srv.stop();
    assert_eq!(stats.slow_consumers, 1);
    assert!(stats.dropped_messages > 0, "{stats:?}");
    assert!(
        stats.c_sent_messages >= N,
        "the reader's messages: {stats:?}"
    );
    assert!(
        stats.c_sent_messages + stats.dropped_messages <= 2 * N,
        "nothing counted twice: {stats:?}"
    );
    assert_eq!(
        stats.c_sent_bytes,
        stats.c_sent_messages * (MESSAGE as u64 + 1 + 1 + 4 + 2),
        "sent bytes are the written messages' frames"
    );
}

/// A session on a trusted Unix socket gets full client access but not the
/// replicator right: its PUBLISH_REPL is answered `FE`.
#[test]
fn a_unix_socket_session_is_not_a_replicator() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    let dir = TempDir::new("unix-repl");
    dir.write("acl.yml", "_:\n  pub: '#'\n  sub: '#'\n");
    let sock = dir.path("psrtd.sock");
    let config = dir.write(
        "config.yml",
        &format!(
            "proto:\n  bind:\n    - 127.0.0.1:0\n    - {}\n  timeout: 5\nauth:\n  allow_anonymous: true\n  trust_unix_socket: true\n  acl: acl.yml\n",
            sock.display()
        ),
    );
    let p = Proc::spawn(&["-C", config.to_str().unwrap()]);
    assert!(p.addr.is_some(), "{}", p.log_text());
    let mut c = UnixStream::connect(&sock).unwrap();
    c.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    let mut buf = [0u8; 36];
    c.write_all(&[0xEE, 0xAA, 0x00]).unwrap();
    c.read_exact(&mut buf[..4]).unwrap();
    c.write_all(&[0x01, 0, 0, 0, 0x00]).unwrap();
    c.read_exact(&mut buf[..32]).unwrap();
    let mut repl = Vec::new();
    psrt::protocol::encode_request(&Request::PublishRepl { topic: "t" }, &mut repl);
    c.write_all(&repl).unwrap();
    c.read_exact(&mut buf[..1]).unwrap();
    assert_eq!(buf[0], 0xFE);
    // Ordinary publishing is allowed.
    let mut publish = Vec::new();
    psrt::protocol::encode_request(
        &Request::Publish {
            priority: 0,
            topic: "t",
            message: b"m",
        },
        &mut publish,
    );
    c.write_all(&publish).unwrap();
    c.read_exact(&mut buf[..1]).unwrap();
    assert_eq!(buf[0], 0x01);
}
