//! Unit tests of a bridge's queue: the bound, acknowledgements in and out
//! of order, packet ids, and the `out`/`in` filters under MQTT rules.

use std::rc::Rc;
use std::time::Instant;

use super::state::*;
use crate::server::config::BridgeConfig;
use crate::server::link::outgoing::{PeerStatus, QUEUED_MESSAGE_OVERHEAD};

/// A bridge `cloud` forwarding `plant/#` and taking `cmd/#` (QoS 1, no
/// spool); the other bridge tests change what they need.
pub(super) fn config(queue_bytes: usize) -> BridgeConfig {
    BridgeConfig {
        name: "cloud".into(),
        url: "mqtt://broker:1883".into(),
        host: "broker".into(),
        port: 1883,
        tls_ca_pem: None,
        user: None,
        password: None,
        client_id: "psrtd-test".into(),
        out: vec!["plant/#".into()],
        inbound: vec!["cmd/#".into()],
        qos: 1,
        queue_bytes,
        spool: None,
        spool_bytes: 0,
        keepalive: 30,
        inflight: 4,
        acl: None,
    }
}

fn msg(topic: &str, len: usize) -> OutMsg {
    OutMsg {
        topic: topic.into(),
        payload: Rc::new(vec![0; len]),
        packet_id: 0,
        sent_before: false,
        acked: false,
        seq: 0,
    }
}

#[test]
fn the_bound_drops_the_oldest_not_in_flight() {
    // Each message counts 30 bytes of topic and payload and the overhead.
    let each = 30 + QUEUED_MESSAGE_OVERHEAD;
    let mut b = Bridge::new(config(3 * each + 10), Instant::now()).unwrap();
    for i in 0..3 {
        assert_eq!(b.push(msg(&format!("t{i}"), 28)), 0);
    }
    assert_eq!(b.queued_bytes, 3 * each);
    b.in_flight = 1;
    // Four do not fit: t1 goes (t0 is in flight).
    assert_eq!(b.push(msg("t3", 28)), 1);
    let topics: Vec<&str> = b.queue.iter().map(|m| &*m.topic).collect();
    assert_eq!(topics, ["t0", "t2", "t3"]);
    assert_eq!((b.queued_bytes, b.dropped), (3 * each, 1));
    // A message larger than the bound goes itself if nothing else can.
    b.in_flight = 3;
    assert_eq!(b.push(msg("big", 200)), 1);
    assert_eq!(b.queue.len(), 3);
}

#[test]
fn acks_pop_in_order_and_strays_are_ignored() {
    let mut b = Bridge::new(config(1000), Instant::now()).unwrap();
    for i in 0..3 {
        b.push(msg(&format!("t{i}"), 1));
        let id = b.take_packet_id();
        b.queue[i].packet_id = id;
    }
    b.in_flight = 3;
    assert!(b.ack(2), "out of order: kept until 1 is acked");
    assert_eq!((b.queue.len(), b.sent), (3, 0));
    assert!(!b.ack(2), "already acked");
    assert!(!b.ack(9), "never sent");
    assert!(b.ack(1));
    assert_eq!((b.queue.len(), b.in_flight, b.sent), (1, 1, 2));
    // A reconnect: in flight again from the start, acks forgotten.
    b.down(Instant::now());
    assert_eq!((b.in_flight, b.peer.status), (0, PeerStatus::Offline));
    assert!(b.peer.retry_at.is_some());
}

#[test]
fn packet_ids_skip_zero() {
    let mut b = Bridge::new(config(1000), Instant::now()).unwrap();
    b.next_packet_id = 65535;
    assert_eq!(b.take_packet_id(), 65535);
    assert_eq!(b.take_packet_id(), 1);
}

#[test]
fn filters_under_mqtt_rules() {
    let b = Bridge::new(config(1000), Instant::now()).unwrap();
    assert!(b.forwards("plant") && b.forwards("plant/a/b"));
    assert!(!b.forwards("plants") && !b.forwards("cmd/x"));
    assert!(b.subscribed("cmd/x") && !b.subscribed("plant/x"));
}
