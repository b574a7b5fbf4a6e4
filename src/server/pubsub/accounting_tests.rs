//! Unit tests of what the stats endpoint reports about deliveries: the
//! latency of each message written whole (`c_sent_latency`), the
//! `latency_warn` check before a write, and each client's own messages
//! sent and dropped (slow consumer, queue cap, a replaced data socket).

use std::time::Duration;

use psrt_protocol::{StreamKind, push_frame_len};

use super::outbox;
use crate::server::conn::{CloseReason, ConnId};
use crate::server::dispatch;
use crate::server::testing::{Harness, data_hello, greeting, publish, topics};

/// A client subscribed to `masks`, the subscribe reply taken.
fn subscriber(h: &mut Harness, masks: &[&str]) -> (ConnId, ConnId) {
    let (control, data) = h.client();
    h.feed(control, &topics(true, masks));
    assert_eq!(h.take_output(control), [0x01], "subscribed");
    (control, data)
}

/// (sent, dropped) of the session on `control`.
fn totals(h: &Harness, control: ConnId) -> (u64, u64) {
    let s = h.session(control);
    (s.sent, s.dropped)
}

#[test]
fn latency_is_summed_per_message_from_queueing_to_write() {
    let mut h = Harness::new();
    let (_, a) = subscriber(&mut h, &["t/#"]);
    let (_, b) = subscriber(&mut h, &["t/#"]);
    let (publisher, _) = h.client();
    h.feed(publisher, &publish("t/1", b"x"));
    h.advance(Duration::from_micros(250));
    h.feed(publisher, &publish("t/2", b"y"));
    h.advance(Duration::from_micros(100));
    // a: 350 + 100; b written 1 ms later: 1350 + 1100.
    h.take_output(a);
    assert_eq!(h.core.stats.c_sent_latency, 450);
    h.advance(Duration::from_millis(1));
    h.take_output(b);
    assert_eq!(h.core.stats.c_sent_messages, 4);
    assert_eq!(h.core.stats.c_sent_latency, 450 + 2450);
    // Replies on the control socket are not deliveries.
    h.advance(Duration::from_millis(5));
    assert_eq!(h.take_output(publisher), [0x01, 0x01]);
    assert_eq!(h.core.stats.c_sent_latency, 2900);
}

#[test]
fn latency_warn_names_the_oldest_message_over_the_limit() {
    let mut h = Harness::new();
    let (_, data) = subscriber(&mut h, &["plant/#"]);
    let (publisher, _) = h.client();
    h.feed(publisher, &publish("plant/boiler", b"21.5"));
    h.advance(Duration::from_micros(900));
    let now_us = h.core.tx_pool.stamp_us;
    assert_eq!(
        outbox::before_write(&mut h.cx(), data, now_us),
        None,
        "off by default (latency_warn 0)"
    );
    h.core.config.latency_warn_us = 1000;
    assert_eq!(outbox::before_write(&mut h.cx(), data, now_us), None);
    h.advance(Duration::from_micros(200));
    let now_us = h.core.tx_pool.stamp_us;
    assert_eq!(outbox::before_write(&mut h.cx(), data, now_us), Some(1100));
    assert_eq!(
        outbox::OldestTopic(&h.conns[data].tx, false).to_string(),
        "\"plant/boiler\""
    );
    h.take_output(data);
    assert_eq!(h.core.stats.c_sent_latency, 1100);
    assert_eq!(
        outbox::before_write(&mut h.cx(), data, now_us),
        None,
        "nothing queued"
    );
    assert_eq!(
        outbox::OldestTopic(&h.conns[data].tx, false).to_string(),
        "?"
    );
}

#[test]
fn each_client_counts_what_was_written_to_it_and_what_it_lost() {
    let mut h = Harness::new();
    let (slow_control, slow) = subscriber(&mut h, &["t"]);
    let (fast_control, fast) = subscriber(&mut h, &["t"]);
    let (publisher, _) = h.client();
    let payload = [5u8; 60];
    h.core.config.data_queue_bytes = 2 * push_frame_len(1, payload.len());
    for _ in 0..2 {
        h.feed(publisher, &publish("t", &payload));
    }
    h.take_output(fast);
    h.feed(publisher, &publish("t", &payload));
    // The slow one held two and overflowed at the third.
    assert!(matches!(
        h.phase(slow),
        crate::server::phase::Phase::Closing(CloseReason::SlowConsumer { .. })
    ));
    assert_eq!(totals(&h, slow_control), (0, 2));
    h.take_output(fast);
    assert_eq!(totals(&h, fast_control), (3, 0));
    assert_eq!(
        totals(&h, publisher),
        (0, 0),
        "a publisher sends no messages"
    );
    // The slow client binds a new data socket: its totals go on.
    let token = h.session(slow_control).token;
    let again = h.accept();
    h.feed(again, &greeting(StreamKind::Data));
    h.feed(again, &data_hello(token, 10));
    h.take_output(again);
    h.feed(publisher, &publish("t", &payload));
    h.take_output(again);
    assert_eq!(totals(&h, slow_control), (1, 2));
    // A queue-cap drop is the client's loss too.
    h.feed(publisher, &publish("t", &payload));
    h.core.config.max_queued_bytes = 1;
    assert_eq!(outbox::enforce_cap(&mut h.cx()), 2);
    dispatch::apply_effects(&mut h.cx());
    assert_eq!(totals(&h, slow_control), (1, 3));
    assert_eq!(
        totals(&h, fast_control),
        (3, 2),
        "it had not read the last two"
    );
    assert_eq!(
        h.core.stats.dropped_messages, 5,
        "the global counter agrees"
    );
}

/// An MQTT subscriber: its deliveries' latencies go to
/// `mqtt_sent_latency` (not `c_sent_latency`, whose average is over PSRT
/// deliveries), its session counts what it got, the latency warning reads
/// the topic from the MQTT PUBLISH, and `/clients` lists it.
#[test]
fn mqtt_deliveries_are_measured_and_listed() {
    use psrt_protocol::mqtt::{Connect, Filters, Packet, Protocol, QoS, encode_packet};

    use crate::server::http::table_tests::mqtt_rows;
    use crate::server::phase::ListenerKind;

    let encode = |p: &Packet<'_>| {
        let mut v = Vec::new();
        encode_packet(p, &mut v);
        v
    };
    let mut h = Harness::new();
    let m = h.add(ListenerKind::Mqtt.first_phase());
    h.feed(
        m,
        &encode(&Packet::Connect(Connect {
            protocol: Protocol::V311,
            clean_session: true,
            keep_alive: 60,
            client_id: "dash-m",
            will: None,
            username: None,
            password: None,
        })),
    );
    let mut raw = Vec::new();
    Filters::encode_subscribe(&[("plant/#", QoS::AtMostOnce)], &mut raw);
    h.feed(
        m,
        &encode(&Packet::Subscribe {
            packet_id: 1,
            filters: Filters::new(&raw, true).unwrap(),
        }),
    );
    h.take_output(m); // CONNACK, SUBACK
    let (publisher, _) = h.client();
    h.feed(publisher, &publish("plant/boiler", b"21.5"));
    h.feed(publisher, &publish("plant/boiler", b"21.6"));
    h.advance(Duration::from_micros(300));
    h.core.config.latency_warn_us = 100;
    let now_us = h.core.tx_pool.stamp_us;
    assert_eq!(outbox::before_write(&mut h.cx(), m, now_us), Some(300));
    assert_eq!(
        outbox::OldestTopic(&h.conns[m].tx, true).to_string(),
        "\"plant/boiler\""
    );
    h.take_output(m);
    let s = &h.core.stats;
    assert_eq!((s.mqtt_sent_messages, s.mqtt_sent_latency), (2, 600));
    assert_eq!((s.c_sent_messages, s.c_sent_latency), (0, 0));
    assert_eq!(
        mqtt_rows(&h.core, &h.conns),
        [("_".to_string(), "mqtt".to_string(), 1, 2)]
    );
}
