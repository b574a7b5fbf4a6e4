//! Server-wide protections: login brute-force refusals per (address,
//! login) and, far higher, per address (T8) and the cap on bytes queued for all data sockets together (T12).

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{Raw, Session, Setup, TestServer};
use psrt::protocol::{Login, StreamKind, encode_login};

fn failed_login(srv: &TestServer, login: &str, password: &str) {
    let mut c = Raw::connect(srv.addr);
    c.greet(StreamKind::Control);
    let mut f = Vec::new();
    encode_login(&Login { login, password }, &mut f);
    c.send(&f);
    assert!(
        c.expect_closed().is_empty(),
        "no token for a wrong password"
    );
}

fn throttled_server() -> TestServer {
    TestServer::with(
        Setup::default()
            .acl("user1:\n  pub: '#'\nuser2:\n  pub: '#'\n_:\n  admin: true\n")
            .user("user1", "123")
            .user("user2", "456")
            .tweak(|c| {
                c.max_login_failures = 3;
                c.bind_stats = Some("127.0.0.1:0".into());
            }),
    )
}

/// After `max_login_failures` wrong passwords for one login within a
/// minute, that login from that address is refused — even with the right
/// password — while another user from the same address logs in, and
/// another login's success does not reset the count (T8, aimed at the
/// guesser).
#[test]
fn repeated_failed_logins_refuse_that_login_from_that_address() {
    let srv = throttled_server();
    failed_login(&srv, "user1", "a");
    failed_login(&srv, "user1", "b");
    // Another login's success: the guesser's count goes on.
    let (mut other, _) = Raw::control(srv.addr, "user2", "456");
    assert_eq!(other.publish("t", b"x"), 0x01);
    failed_login(&srv, "user1", "c");
    let mut refused = Raw::connect(srv.addr);
    refused.greet(StreamKind::Control);
    let mut f = Vec::new();
    encode_login(
        &Login {
            login: "user1",
            password: "123",
        },
        &mut f,
    );
    refused.send(&f);
    assert!(
        refused.expect_closed().is_empty(),
        "no token for user1 from this address while it is refused"
    );
    // Other users from the same address are not locked out.
    let (mut ok, _) = Raw::control(srv.addr, "user2", "456");
    assert_eq!(ok.publish("t", b"y"), 0x01);
    // Sessions that were already open are not touched.
    assert_eq!(other.publish("t", b"z"), 0x01);
    let stats = srv.stop();
    assert_eq!(stats.login_failures, 3);
    assert_eq!(stats.auth_blocked, 1);
}

/// Guessing across many user names from one address: past the far higher
/// per-address limit the address's new connections are refused before the
/// greeting — but the stats endpoint's `/health` still answers.
#[test]
fn guessing_many_logins_refuses_the_address_but_not_health() {
    let srv = throttled_server();
    // 3 × 10 failures, spread over user names so no single login is blocked
    // first.
    for i in 0..30 {
        failed_login(&srv, &format!("guess{i}"), "x");
    }
    let mut refused = Raw::connect(srv.addr);
    refused.send(&[0xEE, 0xAA, 0x00]);
    assert!(
        refused
            .expect_closed_within(Duration::from_secs(2))
            .is_empty(),
        "no greeting reply while the address is refused"
    );
    let stats_addr = srv.stats_addr.expect("stats listener");
    let mut health = std::net::TcpStream::connect(stats_addr).unwrap();
    health.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    health
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    health.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert!(reply.ends_with("ok\n"), "{reply}");
    let stats = srv.stop();
    assert_eq!(stats.login_failures, 30);
    assert_eq!(stats.auth_blocked, 1);
}

/// Subscribers that stop reading are dropped, largest queue first, once all
/// data queues together exceed max_queued_bytes — before any of them reaches
/// its own data_queue_bytes — while a reading subscriber keeps everything.
#[test]
fn global_queue_cap_drops_the_largest_queues() {
    const MESSAGE: usize = 64 * 1024;
    let srv = TestServer::with(Setup::default().tweak(|c| {
        c.data_queue = 100_000;
        c.data_queue_bytes = 64 * 1024 * 1024;
        c.max_queued_bytes = 8 * 1024 * 1024;
    }));
    let mut stuck: Vec<Session> = (0..3)
        .map(|_| {
            let mut s = Session::anonymous(srv.addr);
            s.sub(&["cap/#"]);
            s
        })
        .collect();
    let mut healthy = Session::anonymous(srv.addr);
    healthy.sub(&["cap/#"]);
    let (mut publisher, _) = Raw::anonymous(srv.addr);
    let payload = vec![0x5Au8; MESSAGE];
    let (got_tx, got_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for _ in 0..600 {
            assert_eq!(healthy.recv().1.len(), MESSAGE);
            got_tx.send(()).unwrap();
        }
        healthy
    });
    // The publisher stays at most 8 messages ahead of the reader, so the
    // reader's queue can never be the largest, however loaded the machine.
    let mut received = 0;
    for sent in 1..=600 {
        assert_eq!(publisher.publish("cap/t", &payload), 0x01);
        while received + 8 < sent {
            got_rx
                .recv_timeout(common::IO_TIMEOUT)
                .expect("the reader keeps up");
            received += 1;
        }
    }
    let _healthy = reader
        .join()
        .expect("the reading subscriber got all 600 messages");
    // Every stuck subscriber's data socket was closed; control sockets live on.
    for s in &mut stuck {
        s.data.expect_closed_within(Duration::from_secs(5));
        assert_eq!(s.ctl.request(&psrt::protocol::Request::Nop), 0x01);
    }
    let stats = srv.stop();
    // Each dropped socket counted once, as what it was: a queue-cap drop.
    assert_eq!(stats.queue_cap_drops, 3, "{stats:?}");
    assert_eq!(stats.slow_consumers, 0, "{stats:?}");
    assert!(stats.dropped_messages > 0, "{stats:?}");
}
