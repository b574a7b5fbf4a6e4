//! Server-wide protections: login brute-force refusals per source address
//! (T8) and the cap on bytes queued for all data sockets together (T12).

mod common;

use std::time::Duration;

use common::{Raw, Session, Setup, TestServer};
use psrt::protocol::{Login, StreamKind, encode_login};

fn failed_login(srv: &TestServer, password: &str) {
    let mut c = Raw::connect(srv.addr);
    c.greet(StreamKind::Control);
    let mut f = Vec::new();
    encode_login(
        &Login {
            login: "user1",
            password,
        },
        &mut f,
    );
    c.send(&f);
    assert!(
        c.expect_closed().is_empty(),
        "no token for a wrong password"
    );
}

/// After `max_login_failures` wrong passwords within a minute, the address's
/// next connections are refused before the greeting — even with the right
/// password; the counters record it.
#[test]
fn repeated_failed_logins_refuse_the_address() {
    let srv = TestServer::with(
        Setup::default()
            .acl("user1:\n  pub: '#'\n")
            .user("user1", "123")
            .tweak(|c| c.max_login_failures = 3),
    );
    // Two failures and a success: the success clears the count.
    failed_login(&srv, "a");
    failed_login(&srv, "b");
    let (mut ok, _) = Raw::control(srv.addr, "user1", "123");
    assert_eq!(ok.publish("t", b"x"), 0x01);
    for p in ["c", "d", "e"] {
        failed_login(&srv, p);
    }
    let mut refused = Raw::connect(srv.addr);
    refused.send(&[0xEE, 0xAA, 0x00]);
    assert!(
        refused
            .expect_closed_within(Duration::from_secs(2))
            .is_empty(),
        "no greeting reply while the address is refused"
    );
    // Sessions that were already open are not touched.
    assert_eq!(ok.publish("t", b"y"), 0x01);
    let stats = srv.stop();
    assert_eq!(stats.login_failures, 5);
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
    let reader = std::thread::spawn(move || {
        for _ in 0..600 {
            assert_eq!(healthy.recv().1.len(), MESSAGE);
        }
        healthy
    });
    for _ in 0..600 {
        assert_eq!(publisher.publish("cap/t", &payload), 0x01);
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
    assert!(stats.queue_cap_drops >= 1, "{stats:?}");
    assert_eq!(stats.slow_consumers, 3, "{stats:?}");
}
