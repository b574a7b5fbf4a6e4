//! Unit tests of publish and subscribe as a whole: the publish pipeline
//! (validation, ACL, counters per origin), the fan-out (once per client,
//! exact frame bytes, shared large frames counted once in the pool total)
//! and the outbox policy (byte limit at delivery, message limit after a
//! flush, the global cap), driven through the test harness (no sockets).

use std::path::Path;

use psrt_protocol::{StreamKind, encode_push_header, push_frame_len};

use super::outbox;
use super::outbox::SHARE_MIN;
use super::pipeline::{self, Message, Origin, Refusal};
use crate::server::auth::{Acl, AclEntry, AuthDb};
use crate::server::config::Config;
use crate::server::conn::{CloseReason, ConnId};
use crate::server::dispatch;
use crate::server::phase::Phase;
use crate::server::psrt::state::Phase as Psrt;
use crate::server::testing::{Harness, data_hello, greeting, publish, topics};

/// The pushed frame a subscriber receives for a message of `priority`.
fn pushed_with(priority: u8, topic: &str, message: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    encode_push_header(priority, topic, message.len(), &mut v);
    v.extend_from_slice(message);
    v
}

/// The pushed frame for a harness `publish` (priority 0x7f).
fn pushed(topic: &str, message: &[u8]) -> Vec<u8> {
    pushed_with(0x7f, topic, message)
}

fn closing(h: &Harness, id: ConnId) -> Option<&CloseReason> {
    match h.phase(id) {
        Phase::Closing(r) => Some(r),
        _ => None,
    }
}

fn is_data(h: &Harness, id: ConnId) -> bool {
    matches!(h.phase(id), Phase::Psrt(Psrt::Data(_)))
}

/// A client subscribed to `masks`, the subscribe reply taken.
fn subscriber(h: &mut Harness, masks: &[&str]) -> (ConnId, ConnId) {
    let (control, data) = h.client();
    h.feed(control, &topics(true, masks));
    assert_eq!(h.take_output(control), [0x01], "subscribed");
    (control, data)
}

/// A message without the incoming frame's bytes.
fn message<'a>(priority: u8, topic: &'a str, payload: &'a [u8]) -> Message<'a> {
    Message {
        priority,
        topic,
        message: payload,
        raw: None,
        shared: None,
        qos: psrt_protocol::mqtt::QoS::AtLeastOnce,
    }
}

/// Publishes one byte on `topic` straight into the pipeline.
fn publish_as(h: &mut Harness, origin: Origin<'_>, topic: &str) -> Result<(), Refusal> {
    pipeline::publish(&mut h.cx(), origin, message(1, topic, b"x"))
}

/// A harness whose ACL lets anonymous clients subscribe to everything but
/// publish only under `allowed/`.
fn restricted() -> Harness {
    let acl =
        Acl::parse("_:\n  sub: '#'\n  pub: 'allowed/#'\n", Path::new("acl.yml")).expect("acl");
    let auth = AuthDb {
        acl,
        ..AuthDb::default()
    };
    Harness::with(Config::embedded_default(), auth)
}

#[test]
fn overflowing_the_byte_limit_closes_only_that_subscriber() {
    let mut h = Harness::new();
    let (_, slow) = subscriber(&mut h, &["t"]);
    let (_, fast) = subscriber(&mut h, &["t"]);
    let (publisher, _) = h.client();
    let payload = [5u8; 60];
    let frame_len = push_frame_len(1, payload.len());
    // Room for exactly two frames: the boundary itself still fits.
    h.core.config.data_queue_bytes = 2 * frame_len;
    for _ in 0..2 {
        h.feed(publisher, &publish("t", &payload));
    }
    assert!(
        is_data(&h, slow),
        "a queue filled exactly to the limit is fine"
    );
    assert_eq!(h.conns[slow].tx.len(), 2 * frame_len);
    assert_eq!(h.take_output(fast).len(), 2 * frame_len);
    h.feed(publisher, &publish("t", &payload));
    assert_eq!(
        closing(&h, slow),
        Some(&CloseReason::SlowConsumer {
            bytes: 2 * frame_len,
            messages: 2
        })
    );
    assert!(
        h.conns[slow].tx.is_empty(),
        "a slow consumer's queue is dropped"
    );
    assert_eq!(h.take_output(fast), pushed("t", &payload));
    assert_eq!(h.core.stats.slow_consumers, 1);
    // Later publishes no longer reach the closed socket, nor count again.
    h.feed(publisher, &publish("t", &payload));
    assert_eq!(h.take_output(fast), pushed("t", &payload));
    assert!(h.conns[slow].tx.is_empty());
    assert_eq!(h.core.stats.slow_consumers, 1);
    // Sent means written: the fast subscriber's four, not the slow one's two
    // that were thrown away with its queue.
    assert_eq!(h.core.stats.c_sent_messages, 2 + 1 + 1);
    assert_eq!(h.core.stats.dropped_messages, 2);
    assert_eq!(
        h.take_output(publisher),
        [0x01; 4],
        "the publisher is not hurt"
    );
}

#[test]
fn overflows_before_the_effects_are_applied_count_once() {
    let mut h = Harness::new();
    let (_, slow) = subscriber(&mut h, &["t"]);
    let (_, fast) = subscriber(&mut h, &["t"]);
    let acl = AclEntry::anonymous_pubsub();
    let frame_len = push_frame_len(1, 10);
    h.core.config.data_queue_bytes = frame_len;
    h.take_output(fast);
    // A batch of datagrams is published before the loop applies effects.
    for i in 0..3u8 {
        let payload = [i; 10];
        let msg = message(0x7f, "t", &payload);
        pipeline::publish(&mut h.cx(), Origin::Udp(&acl), msg).unwrap();
        assert_eq!(h.take_output(fast), pushed("t", &payload));
    }
    assert!(
        is_data(&h, slow),
        "closed only when the effects are applied"
    );
    assert_eq!(h.core.effects.len(), 2, "one close per overflowing message");
    assert_eq!(
        h.conns[slow].tx.messages(),
        1,
        "the overflows were not queued"
    );
    dispatch::apply_effects(&mut h.cx());
    assert_eq!(
        closing(&h, slow),
        Some(&CloseReason::SlowConsumer {
            bytes: frame_len,
            messages: 1
        })
    );
    assert_eq!(h.core.stats.slow_consumers, 1);
    assert!(h.effects().is_empty());
}

#[test]
fn message_limit_is_not_applied_at_delivery_but_after_a_flush() {
    let mut h = Harness::new();
    h.core.config.data_queue = 3;
    let (_, busy) = subscriber(&mut h, &["burst"]);
    let (_, quiet) = subscriber(&mut h, &["one"]);
    let (publisher, _) = h.client();
    let mut burst = Vec::new();
    for i in 0..5u8 {
        burst.extend(publish("burst", &[i]));
    }
    burst.extend(publish("one", b"x"));
    h.feed(publisher, &burst);
    assert_eq!(h.take_output(publisher), [0x01; 6]);
    assert!(is_data(&h, busy), "a pipelined burst is queued whole");
    assert_eq!(h.conns[busy].tx.messages(), 5);
    assert_eq!(h.core.stats.slow_consumers, 0);
    let limit = h.core.config.data_queue;
    let reason = outbox::after_flush(&h.conns[busy], limit);
    assert_eq!(
        reason,
        Some(CloseReason::SlowConsumer {
            bytes: 5 * push_frame_len(5, 1),
            messages: 5
        })
    );
    assert_eq!(outbox::after_flush(&h.conns[busy], 5), None, "at the limit");
    assert_eq!(outbox::after_flush(&h.conns[quiet], limit), None);
    // The loop closes it with that reason: counted once.
    dispatch::close(&mut h.cx(), busy, reason.unwrap());
    assert_eq!(h.core.stats.slow_consumers, 1);
    assert!(matches!(
        closing(&h, busy),
        Some(CloseReason::SlowConsumer { .. })
    ));
    assert!(h.take_output(busy).is_empty());
}

#[test]
fn message_limit_ignores_sockets_that_are_not_data_sockets() {
    let mut h = Harness::new();
    let (control, _) = h.client();
    for _ in 0..10 {
        h.feed(control, &publish("nobody/listens", b"x"));
    }
    assert_eq!(h.conns[control].tx.len(), 10, "ten replies queued");
    assert_eq!(outbox::after_flush(&h.conns[control], 1), None);
}

#[test]
fn queue_cap_drops_the_largest_queues_until_under_the_cap() {
    let mut h = Harness::new();
    let (_, big) = subscriber(&mut h, &["big"]);
    let (_, mid) = subscriber(&mut h, &["mid"]);
    let (_, small) = subscriber(&mut h, &["small"]);
    let (publisher, _) = h.client();
    let payload = [1u8; 1000];
    for (topic, n) in [("big", 6), ("mid", 4), ("small", 2)] {
        for _ in 0..n {
            h.feed(publisher, &publish(topic, &payload));
        }
    }
    let (big_len, mid_len, small_len) = (
        h.conns[big].tx.len(),
        h.conns[mid].tx.len(),
        h.conns[small].tx.len(),
    );
    assert!(big_len > mid_len && mid_len > small_len);
    assert_eq!(h.core.tx_pool.queued_total, big_len + mid_len + small_len);
    // Dropping the largest alone leaves too much; dropping two fits.
    h.core.config.max_queued_bytes = small_len + 10;
    let dropped = outbox::enforce_cap(&mut h.cx());
    assert_eq!(dropped, 2);
    assert_eq!(h.core.stats.queue_cap_drops, 0, "counted when closed");
    assert_eq!(h.core.stats.dropped_messages, 6 + 4);
    assert_eq!(h.core.tx_pool.queued_total, small_len);
    // The closes go through effects.
    assert!(
        is_data(&h, big),
        "not closed before the effects are applied"
    );
    dispatch::apply_effects(&mut h.cx());
    assert_eq!(
        closing(&h, big),
        Some(&CloseReason::QueueCap {
            bytes: big_len,
            messages: 6
        })
    );
    assert_eq!(
        closing(&h, mid),
        Some(&CloseReason::QueueCap {
            bytes: mid_len,
            messages: 4
        })
    );
    assert!(is_data(&h, small));
    assert_eq!(h.conns[small].tx.messages(), 2);
    // Each drop is counted once, as a queue-cap drop, not also as a slow
    // consumer.
    assert_eq!(h.core.stats.queue_cap_drops, 2);
    assert_eq!(h.core.stats.slow_consumers, 0);
    assert_eq!(h.core.stats.dropped_messages, 6 + 4, "not counted again");
    assert_eq!(outbox::enforce_cap(&mut h.cx()), 0, "now under the cap");
}

#[test]
fn queue_cap_does_nothing_when_off_or_not_exceeded() {
    let mut h = Harness::new();
    let (_, data) = subscriber(&mut h, &["t"]);
    let (publisher, _) = h.client();
    for _ in 0..3 {
        h.feed(publisher, &publish("t", &[0u8; 500]));
    }
    let total = h.core.tx_pool.queued_total;
    assert_eq!(total, 3 * push_frame_len(1, 500));
    h.core.config.max_queued_bytes = 0;
    assert_eq!(outbox::enforce_cap(&mut h.cx()), 0, "0 means no cap");
    h.core.config.max_queued_bytes = total;
    assert_eq!(outbox::enforce_cap(&mut h.cx()), 0, "exactly at the cap");
    assert!(h.effects().is_empty());
    assert_eq!(h.core.stats.queue_cap_drops, 0);
    assert_eq!(h.conns[data].tx.messages(), 3);
}

#[test]
fn queue_cap_on_a_shared_frame_drops_every_holder() {
    let mut h = Harness::new();
    let subs: Vec<_> = (0..3).map(|_| subscriber(&mut h, &["t"]).1).collect();
    let (publisher, _) = h.client();
    let payload = vec![9u8; SHARE_MIN];
    h.feed(publisher, &publish("t", &payload));
    let frame_len = push_frame_len(1, payload.len());
    assert_eq!(h.core.tx_pool.queued_total, frame_len);
    // The frame's memory is only freed when the last queue lets it go.
    h.core.config.max_queued_bytes = frame_len / 2;
    assert_eq!(outbox::enforce_cap(&mut h.cx()), 3);
    assert_eq!(h.core.tx_pool.queued_total, 0);
    dispatch::apply_effects(&mut h.cx());
    for id in subs {
        assert!(matches!(
            closing(&h, id),
            Some(CloseReason::QueueCap { .. })
        ));
    }
    assert_eq!(h.core.stats.queue_cap_drops, 3);
}

#[test]
fn a_shared_frame_counts_once_in_the_pool_total() {
    let mut h = Harness::new();
    let subs: Vec<_> = (0..5).map(|_| subscriber(&mut h, &["big/#"]).1).collect();
    let (publisher, _) = h.client();
    assert_eq!(h.core.tx_pool.queued_total, 0, "nothing queued yet");
    let payload: Vec<u8> = (0..SHARE_MIN + 100).map(|i| (i % 251) as u8).collect();
    h.feed(publisher, &publish("big/x", &payload));
    let frame_len = push_frame_len(5, payload.len());
    assert!(frame_len >= SHARE_MIN);
    assert_eq!(h.core.tx_pool.queued_total, frame_len, "not 5 × the frame");
    assert_eq!(h.core.stats.c_sent_messages, 0, "queued is not sent");
    let want = pushed("big/x", &payload);
    for (i, &id) in subs.iter().enumerate() {
        assert_eq!(h.take_output(id), want);
        let left = if i + 1 < subs.len() { frame_len } else { 0 };
        assert_eq!(h.core.tx_pool.queued_total, left, "after {} queues", i + 1);
    }
    assert_eq!(h.core.stats.c_sent_messages, 5, "counted once written");
    assert_eq!(h.core.stats.c_sent_bytes, 5 * frame_len as u64);
}

#[test]
fn a_frame_larger_than_a_read_buffer_is_delivered_and_counted_once() {
    let mut h = Harness::new();
    let a = subscriber(&mut h, &["t"]).1;
    let b = subscriber(&mut h, &["t"]).1;
    let (publisher, _) = h.client();
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    h.feed(publisher, &publish("t", &payload));
    assert_eq!(h.take_output(publisher), [0x01]);
    let frame_len = push_frame_len(1, payload.len());
    assert_eq!(h.core.tx_pool.queued_total, frame_len);
    let want = pushed("t", &payload);
    assert_eq!(h.take_output(a), want);
    assert_eq!(h.take_output(b), want);
    assert_eq!(h.core.tx_pool.queued_total, 0);
}

#[test]
fn small_frames_are_exactly_the_pushed_bytes() {
    let mut h = Harness::new();
    let (_, data) = subscriber(&mut h, &["s/+"]);
    let (publisher, _) = h.client();
    h.feed(publisher, &publish("s/1", b"first"));
    h.feed(publisher, &publish("s/2", b""));
    h.feed(publisher, &publish("s/3", &[0u8; 300]));
    let mut want = pushed("s/1", b"first");
    want.extend(pushed("s/2", b""));
    want.extend(pushed("s/3", &[0u8; 300]));
    assert_eq!(h.conns[data].tx.messages(), 3);
    assert_eq!(h.core.tx_pool.queued_total, want.len());
    assert_eq!(h.take_output(data), want);
    assert_eq!(h.core.tx_pool.queued_total, 0);
}

#[test]
fn overlapping_masks_deliver_once_per_client() {
    let mut h = Harness::new();
    let (_, all) = subscriber(&mut h, &["#", "a/#", "a/+", "a/b"]);
    let (_, plus) = subscriber(&mut h, &["a/+"]);
    let (_, other) = subscriber(&mut h, &["z/#"]);
    let (publisher, _) = h.client();
    h.feed(publisher, &publish("a/b", b"1"));
    h.feed(publisher, &publish("a/b/c", b"2"));
    let mut want_all = pushed("a/b", b"1");
    want_all.extend(pushed("a/b/c", b"2"));
    assert_eq!(h.take_output(all), want_all);
    assert_eq!(h.take_output(plus), pushed("a/b", b"1"));
    assert!(h.take_output(other).is_empty());
    assert_eq!(h.core.stats.c_sent_messages, 3);
}

#[test]
fn a_subscriber_without_a_data_socket_does_not_stop_delivery() {
    let mut h = Harness::new();
    // Its `#` matches every publish, wherever the matcher meets it.
    let (lonely, _) = h.login("", "");
    h.feed(lonely, &topics(true, &["#"]));
    assert_eq!(h.take_output(lonely), [0x01]);
    let (_, a) = subscriber(&mut h, &["t"]);
    let (_, b) = subscriber(&mut h, &["#"]);
    let (publisher, _) = h.client();
    h.feed(publisher, &publish("t", b"m"));
    assert_eq!(h.take_output(publisher), [0x01]);
    assert!(
        h.take_output(lonely).is_empty(),
        "nothing on the control socket"
    );
    assert_eq!(h.take_output(a), pushed("t", b"m"));
    assert_eq!(h.take_output(b), pushed("t", b"m"));
    assert_eq!(h.core.stats.c_sent_messages, 2);
    assert!(h.effects().is_empty());
}

#[test]
fn a_closing_data_socket_is_not_queued_to() {
    let mut h = Harness::new();
    let (control, data) = subscriber(&mut h, &["t"]);
    let (_, other) = subscriber(&mut h, &["t"]);
    let (publisher, _) = h.client();
    h.feed(publisher, &publish("t", b"before"));
    // Closing while still linked to its session (the deliver guard).
    let queued = h.conns[data].tx.contents();
    h.conns[data].phase = Phase::Closing(CloseReason::Replaced);
    assert_eq!(h.session(control).data, Some(data));
    h.feed(publisher, &publish("t", b"after"));
    assert_eq!(h.conns[data].tx.contents(), queued, "nothing more queued");
    let mut want = pushed("t", b"before");
    want.extend(pushed("t", b"after"));
    assert_eq!(h.take_output(other), want);
    assert_eq!(h.core.stats.slow_consumers, 0);
}

#[test]
fn a_closed_data_socket_keeps_its_output_but_gets_no_more() {
    let mut h = Harness::new();
    let (control, token) = h.login("", "");
    h.feed(control, &topics(true, &["t"]));
    h.take_output(control);
    let first = h.accept();
    h.feed(first, &greeting(StreamKind::Data));
    h.feed(first, &data_hello(token, 10));
    h.take_output(first);
    let (publisher, _) = h.client();
    h.feed(publisher, &publish("t", b"1"));
    // A second data socket replaces the first, which keeps what it had.
    let second = h.accept();
    h.feed(second, &greeting(StreamKind::Data));
    h.feed(second, &data_hello(token, 10));
    assert_eq!(closing(&h, first), Some(&CloseReason::Replaced));
    assert_eq!(h.take_output(second).last(), Some(&0x01), "bound");
    h.feed(publisher, &publish("t", b"2"));
    assert_eq!(h.take_output(first), pushed("t", b"1"));
    assert_eq!(h.take_output(second), pushed("t", b"2"));
}

#[test]
fn acl_denied_publish_is_answered_and_not_delivered() {
    let mut h = restricted();
    let (_, data) = subscriber(&mut h, &["#"]);
    let (publisher, _) = h.client();
    h.feed(publisher, &publish("secret/x", b"no"));
    assert_eq!(h.take_output(publisher), [0xFE]);
    assert!(
        matches!(h.phase(publisher), Phase::Psrt(Psrt::Control(_))),
        "a denial does not close the session"
    );
    assert_eq!(h.core.stats.access_denied, 1);
    assert_eq!(h.core.stats.c_pub_messages, 0);
    assert_eq!(h.core.stats.c_sent_messages, 0);
    assert!(h.take_output(data).is_empty());
    h.feed(publisher, &publish("allowed/x", b"yes"));
    assert_eq!(h.take_output(publisher), [0x01]);
    assert_eq!(h.take_output(data), pushed("allowed/x", b"yes"));
    assert_eq!(h.core.stats.access_denied, 1);
    assert_eq!(h.core.stats.c_pub_messages, 1);
}

#[test]
fn pipeline_refusals_count_nothing_but_denials() {
    let mut h = Harness::new();
    let (_, data) = subscriber(&mut h, &["#"]);
    // Depth counts separators: `a/b` is depth 1.
    h.core.config.limits.max_topic_depth = 1;
    let all = AclEntry::anonymous_pubsub();
    let none = AclEntry::default();
    let client = Origin::Client(&all);
    assert_eq!(publish_as(&mut h, client, "a/b/c"), Err(Refusal::BadTopic));
    assert_eq!(publish_as(&mut h, client, "a/+"), Err(Refusal::Wildcard));
    assert_eq!(
        publish_as(&mut h, Origin::Udp(&all), "#"),
        Err(Refusal::Wildcard)
    );
    assert_eq!(
        publish_as(&mut h, Origin::Replica, "a/#"),
        Err(Refusal::Wildcard),
        "replicas are validated too"
    );
    assert_eq!(h.core.stats.access_denied, 0, "a bad topic is not a denial");
    assert_eq!(
        publish_as(&mut h, Origin::Udp(&none), "a"),
        Err(Refusal::Denied)
    );
    assert_eq!(
        publish_as(&mut h, Origin::Client(&none), "a"),
        Err(Refusal::Denied)
    );
    assert_eq!(h.core.stats.access_denied, 2);
    let stats = &h.core.stats;
    assert_eq!((stats.c_pub_messages, stats.udp_messages), (0, 0));
    assert_eq!(stats.c_sent_messages, 0);
    assert!(h.take_output(data).is_empty());
    assert_eq!(Refusal::Denied.reply(), psrt_protocol::Reply::AccessDenied);
    assert_eq!(Refusal::BadTopic.reply(), psrt_protocol::Reply::Error);
}

#[test]
fn each_origin_counts_in_its_own_counter() {
    let mut h = Harness::new();
    let (_, data) = subscriber(&mut h, &["o/#"]);
    let acl = AclEntry::anonymous_pubsub();
    pipeline::publish(&mut h.cx(), Origin::Udp(&acl), message(3, "o/udp", b"u")).unwrap();
    assert_eq!(h.core.stats.udp_messages, 1);
    assert_eq!(h.core.stats.c_pub_messages, 0);
    pipeline::publish(&mut h.cx(), Origin::Client(&acl), message(4, "o/c", b"cc")).unwrap();
    assert_eq!(h.core.stats.c_pub_messages, 1);
    assert_eq!(h.core.stats.c_pub_bytes, ("o/c".len() + 1 + 2) as u64);
    assert_eq!(h.core.stats.udp_messages, 1);
    // A replica is delivered (the ACL of the origin is not asked) but is
    // not a client publish.
    pipeline::publish(&mut h.cx(), Origin::Replica, message(5, "o/r", b"r")).unwrap();
    assert_eq!(h.core.stats.c_pub_messages, 1);
    assert_eq!(h.core.stats.c_pub_bytes, 6);
    assert_eq!(h.core.stats.udp_messages, 1);
    // The priority byte passes through; frames are built without `raw`.
    let mut want = pushed_with(3, "o/udp", b"u");
    want.extend(pushed_with(4, "o/c", b"cc"));
    want.extend(pushed_with(5, "o/r", b"r"));
    assert_eq!(h.take_output(data), want);
    assert_eq!(h.core.stats.c_sent_messages, 3);
}

#[test]
fn raw_bytes_are_forwarded_only_when_the_topic_is_already_normal() {
    let mut h = Harness::new();
    let (_, data) = subscriber(&mut h, &["n/x"]);
    let acl = AclEntry::anonymous_pubsub();
    // Stand-in incoming bytes, recognisable by their priority byte.
    let raw = pushed_with(0x11, "n/x", b"p");
    let normal = Message {
        raw: Some(&raw),
        ..message(0x22, "n/x", b"p")
    };
    pipeline::publish(&mut h.cx(), Origin::Client(&acl), normal).unwrap();
    assert_eq!(h.take_output(data), raw, "forwarded as received");
    let raw = pushed_with(0x11, "/n//x", b"p");
    let unnormal = Message {
        raw: Some(&raw),
        ..message(0x22, "/n//x", b"p")
    };
    pipeline::publish(&mut h.cx(), Origin::Client(&acl), unnormal).unwrap();
    assert_eq!(
        h.take_output(data),
        pushed_with(0x22, "n/x", b"p"),
        "rebuilt with the normalised topic"
    );
    assert_eq!(h.core.stats.c_pub_bytes, (3 + 1 + 1 + 5 + 1 + 1) as u64);
}
