//! Bursts of pipelined publishes: a subscriber that keeps up is never taken
//! for a slow consumer, even when one burst is many times `data_queue`.

mod common;

use std::io::Write;

use common::{Raw, Setup, TestServer};

/// 20 000 publishes written in one go (well over data_queue = 100) reach a
/// subscriber that reads continuously, all of them, in order.
#[test]
fn pipelined_burst_larger_than_data_queue_is_delivered() {
    let srv = TestServer::with(Setup::default().tweak(|c| c.data_queue = 100));
    let (mut sub_ctl, token) = Raw::anonymous(srv.addr);
    let mut sub = Raw::data(srv.addr, token, 30);
    assert_eq!(sub_ctl.subscribe(&["burst/#"]), 0x01);
    let (mut publisher, _) = Raw::anonymous(srv.addr);
    const N: u32 = 20_000;
    let frames = common::numbered_publishes("burst/t", 0..N);
    let writer = std::thread::spawn(move || {
        publisher.s.write_all(&frames).unwrap();
        let replies = publisher.read_exact(N as usize);
        assert!(replies.iter().all(|&r| r == 0x01));
        publisher
    });
    for i in 0..N {
        let (_, topic, message) = sub.next_message();
        assert_eq!(topic, "burst/t");
        assert_eq!(message, i.to_le_bytes(), "message {i} in order");
    }
    let _publisher = writer.join().unwrap();
    let stats = srv.stop();
    assert_eq!(stats.slow_consumers, 0);
    assert_eq!(stats.c_sent_messages, u64::from(N));
}
