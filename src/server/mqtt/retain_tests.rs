//! Tests of the retained store (`retain.rs`): replace, delete by an empty
//! payload, the byte bound, filter matching against a brute force
//! (wildcards, `$` topics); and, through the Harness, delivery on a new
//! subscription with RETAIN=1 after SUBACK, RETAIN=0 to current
//! subscribers, the ACL, `mqtt.retain` off, and the output bound.

use std::path::Path;

use psrt_protocol::mqtt::{Connect, Packet, Protocol, Publish, QoS, filter_matches};

use super::retain::{Outcome, Store, entry_bytes};
use crate::server::auth::{Acl, AuthDb};
use crate::server::config::Config;
use crate::server::conn::ConnId;
use crate::server::phase::{ListenerKind, Phase};
use crate::server::testing::{
    Harness, encode_mqtt as encode, mqtt_packets as packets, mqtt_subscribe,
};

#[test]
fn set_replaces_and_an_empty_payload_deletes() {
    let mut s = Store::default();
    let big = 1 << 20;
    assert_eq!(s.set("a/b", b"1", QoS::AtMostOnce, big), Outcome::Stored);
    assert_eq!(s.set("a/b", b"22", QoS::AtLeastOnce, big), Outcome::Stored);
    assert_eq!((s.len(), s.bytes()), (1, entry_bytes("a/b", 2)));
    let r = s.get("a/b").unwrap();
    assert_eq!((&*r.payload, r.qos), (&b"22"[..], QoS::AtLeastOnce));
    assert_eq!(s.set("c", b"x", QoS::AtMostOnce, big), Outcome::Stored);
    assert_eq!(s.set("a/b", b"", QoS::AtMostOnce, big), Outcome::Deleted);
    assert_eq!((s.len(), s.bytes()), (1, entry_bytes("c", 1)));
    assert!(s.get("a/b").is_none());
    assert_eq!(
        s.set("nothing", b"", QoS::AtMostOnce, big),
        Outcome::Deleted
    );
    assert_eq!(s.set("c", b"", QoS::AtMostOnce, big), Outcome::Deleted);
    assert_eq!((s.len(), s.bytes()), (0, 0));
}

#[test]
fn the_bound_refuses_and_drops_the_stale_value() {
    let mut s = Store::default();
    let bound = 2 * entry_bytes("t1", 10);
    assert_eq!(
        s.set("t1", &[1; 10], QoS::AtMostOnce, bound),
        Outcome::Stored
    );
    assert_eq!(
        s.set("t2", &[2; 10], QoS::AtMostOnce, bound),
        Outcome::Stored
    );
    assert_eq!(s.bytes(), bound);
    assert_eq!(s.set("t3", &[3], QoS::AtMostOnce, bound), Outcome::Refused);
    assert_eq!((s.len(), s.bytes()), (2, bound), "nothing evicted");
    // A replacement that does not fit: the older value goes too.
    assert_eq!(
        s.set("t1", &[9; 20], QoS::AtMostOnce, bound),
        Outcome::Refused
    );
    assert!(s.get("t1").is_none());
    assert_eq!(s.bytes(), entry_bytes("t2", 10));
    assert_eq!(s.set("t3", &[3], QoS::AtMostOnce, bound), Outcome::Stored);
    // A replacement of the same size fits in place.
    assert_eq!(
        s.set("t2", &[7; 10], QoS::AtMostOnce, bound),
        Outcome::Stored
    );
    assert_eq!(s.bytes(), entry_bytes("t2", 10) + entry_bytes("t3", 1));
}

/// The MQTT rules, by brute force over every topic.
fn brute<'a>(topics: &[&'a str], filter: &str) -> Vec<&'a str> {
    let mut v: Vec<&str> = topics
        .iter()
        .copied()
        .filter(|t| {
            filter_matches(filter, t)
                && !(t.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')))
        })
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn matching_is_the_mqtt_rules_with_dollar_topics() {
    let topics = [
        "a",
        "a/",
        "a/b",
        "a/b/c",
        "a/c",
        "ab",
        "ab/c",
        "/a",
        "/",
        "b/a",
        "a//b",
        "$SYS",
        "$SYS/x",
        "$SYS/x/y",
        "$other/a",
        "sport/tennis/player1",
        "sport/tennis/player1/score",
        "sport/tennis/player2",
        "a/b/c/d",
    ];
    let mut s = Store::default();
    for t in topics {
        assert_eq!(
            s.set(t, t.as_bytes(), QoS::AtMostOnce, 1 << 20),
            Outcome::Stored
        );
    }
    let filters = [
        "#",
        "+",
        "+/+",
        "+/#",
        "a/#",
        "a/+",
        "a/+/c",
        "a/b",
        "a",
        "/#",
        "/+",
        "+/a",
        "a//+",
        "$SYS/#",
        "$SYS",
        "$SYS/+",
        "+/x",
        "#/",
        "sport/tennis/+",
        "sport/+/player1/#",
        "sport/tennis/player1/#",
        "ab/#",
        "a/b/#",
        "nothing/#",
        "x",
    ];
    for f in filters {
        let got: Vec<&str> = s.matching(f).map(|(t, _)| t).collect();
        assert_eq!(got, brute(&topics, f), "{f}");
    }
    // Leading wildcards never reach `$` topics; a literal `$` level does.
    assert!(s.matching("#").all(|(t, _)| !t.starts_with('$')));
    let sys: Vec<&str> = s.matching("$SYS/#").map(|(t, _)| t).collect();
    assert_eq!(sys, ["$SYS", "$SYS/x", "$SYS/x/y"]);
}

#[test]
fn matching_thousands_scans_only_the_prefix() {
    let mut s = Store::default();
    let mut topics = Vec::new();
    for d in 0..100 {
        for m in 0..50 {
            topics.push(format!("dev/{d}/m{m}"));
        }
    }
    for t in &topics {
        s.set(t, b"v", QoS::AtMostOnce, usize::MAX);
    }
    assert_eq!(s.len(), 5000);
    assert_eq!(s.matching("dev/7/#").count(), 50);
    assert_eq!(s.matching("dev/+/m3").count(), 100);
    assert_eq!(s.matching("dev/42/m9").count(), 1);
    assert_eq!(s.matching("#").count(), 5000);
    // `dev/7/#` does not take `dev/70/…`.
    assert!(s.matching("dev/7/#").all(|(t, _)| t.starts_with("dev/7/")));
}

// ---- through the handlers ----

fn publish(topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Vec<u8> {
    encode(&Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic,
        packet_id: (qos != QoS::AtMostOnce).then_some(5),
        payload,
    }))
}

fn subscribe(list: &[(&str, QoS)]) -> Vec<u8> {
    mqtt_subscribe(1, list)
}

/// A harness whose anonymous `_` may subscribe `a/#` but not `a` (and
/// publish everything); `mqtt.retain` as given.
fn harness(retain: bool) -> Harness {
    let mut config = Config::embedded_default();
    config.allow_anonymous = true;
    config.mqtt.as_mut().unwrap().retain = retain;
    let acl = "_:\n  sub: ['a/#', 'r/#', '$SYS/#']\n  pub: '#'\n";
    let auth = AuthDb {
        acl: Acl::parse(acl, Path::new("acl.yml")).unwrap(),
        ..AuthDb::default()
    };
    Harness::with(config, auth)
}

fn client(h: &mut Harness, client_id: &str) -> ConnId {
    let id = h.add(ListenerKind::Mqtt.first_phase());
    h.feed(
        id,
        &encode(&Packet::Connect(Connect {
            protocol: Protocol::V311,
            clean_session: true,
            keep_alive: 60,
            client_id,
            will: None,
            username: None,
            password: None,
        })),
    );
    assert_eq!(packets(&h.take_output(id)), ["connack 0 0"]);
    id
}

#[test]
fn a_new_subscription_gets_the_retained_message_after_suback() {
    let mut h = harness(true);
    let old = client(&mut h, "old");
    h.feed(old, &subscribe(&[("r/#", QoS::AtLeastOnce)]));
    assert_eq!(packets(&h.take_output(old)), ["suback [1]"]);
    let p = client(&mut h, "pub");
    h.feed(p, &publish("r/a", b"v1", QoS::AtLeastOnce, true));
    h.feed(p, &publish("r/b", b"q0", QoS::AtMostOnce, true));
    h.feed(p, &publish("r/c", b"live", QoS::AtMostOnce, false));
    assert_eq!(packets(&h.take_output(p)), ["PubAck(5)"]);
    // Current subscribers get RETAIN=0.
    assert_eq!(
        packets(&h.take_output(old)),
        [
            "publish 1 Some(1) r/a v1",
            "publish 0 None r/b q0",
            "publish 0 None r/c live"
        ]
    );
    assert_eq!(h.core.mqtt.retained.len(), 2);
    // Replaced.
    h.feed(p, &publish("r/a", b"v2", QoS::AtLeastOnce, true));
    assert_eq!(h.core.mqtt.retained.len(), 2);
    let new = client(&mut h, "new");
    h.feed(new, &subscribe(&[("r/+", QoS::AtLeastOnce)]));
    assert_eq!(
        packets(&h.take_output(new)),
        [
            "suback [1]",
            "publish 1 Some(1) r/a v2 retain",
            "publish 0 None r/b q0 retain"
        ],
        "min(granted, message QoS), RETAIN=1, after SUBACK"
    );
    // At QoS 0 granted, the QoS 1 message comes at QoS 0.
    let q0 = client(&mut h, "q0");
    h.feed(q0, &subscribe(&[("r/a", QoS::AtMostOnce)]));
    assert_eq!(
        packets(&h.take_output(q0)),
        ["suback [0]", "publish 0 None r/a v2 retain"]
    );
    // An empty payload deletes: delivered (empty) now, retained no more.
    h.feed(p, &publish("r/a", b"", QoS::AtMostOnce, true));
    assert_eq!(packets(&h.take_output(q0)), ["publish 0 None r/a "]);
    assert!(h.core.mqtt.retained.get("r/a").is_none());
    let late = client(&mut h, "late");
    h.feed(late, &subscribe(&[("r/#", QoS::AtMostOnce)]));
    assert_eq!(
        packets(&h.take_output(late)),
        ["suback [0]", "publish 0 None r/b q0 retain"]
    );
}

#[test]
fn the_acl_decides_what_a_subscription_reads_and_what_is_stored() {
    let mut h = harness(true);
    let p = client(&mut h, "pub");
    for t in ["a", "a/1", "$SYS/up", "z/secret"] {
        h.feed(p, &publish(t, t.as_bytes(), QoS::AtMostOnce, true));
    }
    assert_eq!(h.core.mqtt.retained.len(), 4);
    let s = client(&mut h, "s");
    // `a/#` is granted, but the ACL does not cover `a` itself.
    h.feed(
        s,
        &subscribe(&[("a/#", QoS::AtMostOnce), ("z/#", QoS::AtMostOnce)]),
    );
    assert_eq!(
        packets(&h.take_output(s)),
        ["suback [0, 128]", "publish 0 None a/1 a/1 retain"]
    );
    // A `$` topic only for a filter that names it.
    h.feed(s, &subscribe(&[("$SYS/#", QoS::AtMostOnce)]));
    assert_eq!(
        packets(&h.take_output(s)),
        ["suback [0]", "publish 0 None $SYS/up $SYS/up retain"]
    );
    // A publish the ACL denies is not stored.
    h.core.auth.acl = Acl::parse("_:\n  sub: '#'\n  pub: 'a/#'\n", Path::new("acl.yml")).unwrap();
    super::reload::apply(&mut h.cx());
    h.feed(p, &publish("b/1", b"no", QoS::AtMostOnce, true));
    assert!(h.core.mqtt.retained.get("b/1").is_none());
    assert_eq!(h.core.mqtt.retained.len(), 4);
}

#[test]
fn retain_off_delivers_and_keeps_nothing() {
    let mut h = harness(false);
    let old = client(&mut h, "old");
    h.feed(old, &subscribe(&[("r/#", QoS::AtMostOnce)]));
    h.take_output(old);
    let p = client(&mut h, "pub");
    h.feed(p, &publish("r/a", b"v", QoS::AtMostOnce, true));
    assert_eq!(packets(&h.take_output(old)), ["publish 0 None r/a v"]);
    assert!(h.core.mqtt.retain_logged);
    assert_eq!(h.core.mqtt.retained.len(), 0);
    let new = client(&mut h, "new");
    h.feed(new, &subscribe(&[("r/#", QoS::AtMostOnce)]));
    assert_eq!(packets(&h.take_output(new)), ["suback [0]"]);
}

#[test]
fn the_store_bound_is_counted_and_psrt_publishes_are_not_retained() {
    let mut h = harness(true);
    h.core.config.mqtt.as_mut().unwrap().retain_bytes = entry_bytes("r/1", 100) + 10;
    let p = client(&mut h, "pub");
    h.feed(p, &publish("r/1", &[b'x'; 100], QoS::AtMostOnce, true));
    h.feed(p, &publish("r/2", &[b'y'; 100], QoS::AtMostOnce, true));
    assert_eq!(h.core.mqtt.retained.len(), 1);
    assert_eq!(h.core.mqtt.retained.bytes(), entry_bytes("r/1", 100));
    assert_eq!(h.core.stats.mqtt_retain_refused, 1);
    // A PSRT publish has no retain flag.
    let (ctl, _) = h.client();
    h.feed(ctl, &crate::server::testing::publish("r/3", b"psrt"));
    assert!(h.core.mqtt.retained.get("r/3").is_none());
    assert!(matches!(h.phase(p), Phase::Mqtt(_)));
}

#[test]
fn a_large_retained_set_stays_within_the_output_bound() {
    let mut h = harness(true);
    h.core.config.data_queue_bytes = 4096;
    let p = client(&mut h, "pub");
    for i in 0..100 {
        h.feed(
            p,
            &publish(&format!("r/{i:03}"), &[b'v'; 200], QoS::AtMostOnce, true),
        );
    }
    assert_eq!(h.core.mqtt.retained.len(), 100);
    let s = client(&mut h, "s");
    h.feed(s, &subscribe(&[("r/#", QoS::AtMostOnce)]));
    let out = packets(&h.take_output(s));
    // 2048 bytes of room: 9 packets of 210 bytes.
    assert_eq!(out.len(), 1 + 9, "{out:?}");
    assert!(out[1].starts_with("publish 0 None r/000 ") && out[1].ends_with(" retain"));
    assert_eq!(h.core.stats.mqtt_retain_unsent, 91);
    assert!(matches!(h.phase(s), Phase::Mqtt(_)), "not a slow consumer");
    // QoS 1 retained messages wait for the window and the session budget.
    h.core.config.mqtt.as_mut().unwrap().max_inflight = 2;
    h.core.config.mqtt.as_mut().unwrap().session_queue_bytes = 5 * 211;
    for i in 0..10 {
        h.feed(
            p,
            &publish(&format!("q/{i}"), &[b'w'; 200], QoS::AtLeastOnce, true),
        );
    }
    h.take_output(p);
    h.core.auth.acl = Acl::parse("_:\n  sub: '#'\n  pub: '#'\n", Path::new("acl.yml")).unwrap();
    super::reload::apply(&mut h.cx());
    let s1 = client(&mut h, "s1");
    h.feed(s1, &subscribe(&[("q/#", QoS::AtLeastOnce)]));
    let out = packets(&h.take_output(s1));
    assert_eq!(out.len(), 1 + 2, "the window: {out:?}");
    assert!(out[2].starts_with("publish 1 Some(2) q/1 "));
    assert_eq!(
        h.core.stats.mqtt_retain_unsent,
        91 + 5,
        "5 over the session budget"
    );
    h.feed(s1, &encode(&Packet::PubAck(1)));
    let out = packets(&h.take_output(s1));
    assert_eq!(out.len(), 1);
    assert!(out[0].starts_with("publish 1 Some(3) q/2 ") && out[0].ends_with(" retain"));
}

#[test]
fn a_retained_will_is_kept_after_an_abnormal_close() {
    let mut h = harness(true);
    let dev = h.add(ListenerKind::Mqtt.first_phase());
    h.feed(
        dev,
        &encode(&Packet::Connect(Connect {
            protocol: Protocol::V311,
            clean_session: true,
            keep_alive: 60,
            client_id: "dev",
            will: Some(psrt_protocol::mqtt::Will {
                topic: "r/dev",
                message: b"offline",
                qos: QoS::AtLeastOnce,
                retain: true,
            }),
            username: None,
            password: None,
        })),
    );
    h.take_output(dev);
    assert_eq!(h.core.mqtt.retained.len(), 0);
    crate::server::dispatch::close(
        &mut h.cx(),
        dev,
        crate::server::conn::CloseReason::PeerClosed,
    );
    assert_eq!(h.core.stats.mqtt_wills, 1);
    let s = client(&mut h, "s");
    h.feed(s, &subscribe(&[("r/#", QoS::AtLeastOnce)]));
    assert_eq!(
        packets(&h.take_output(s)),
        ["suback [1]", "publish 1 Some(1) r/dev offline retain"]
    );
}
