//! Unit tests of the MQTT handlers, driven through `dispatch` with byte
//! slices and a clock the test sets (no sockets): CONNECT and its
//! refusals, the auth pipeline, keep-alive, takeover, QoS 0/1/2 both ways,
//! the in-flight window, wills, persistent sessions, and one topic space
//! with PSRT clients.

use std::path::Path;
use std::time::Duration;

use psrt_protocol::encode_push_header;
use psrt_protocol::mqtt::{Connect, ConnectCode, Packet, Protocol, Publish, QoS, Will};

use super::phase::Phase as Mqtt;
use crate::server::auth::worker::{Ticket, Verified};
use crate::server::auth::{Acl, AuthDb, Passwords};
use crate::server::config::Config;
use crate::server::conn::{CloseReason, ConnId};
use crate::server::dispatch;
use crate::server::phase::{ListenerKind, Phase};
use crate::server::testing::{
    Harness, encode_mqtt as encode, mqtt_packets as packets, mqtt_subscribe as subscribe, publish,
    topics,
};

fn connect_with(
    client_id: &str,
    clean: bool,
    keep_alive: u16,
    user: Option<(&str, &str)>,
) -> Vec<u8> {
    encode(&Packet::Connect(Connect {
        protocol: Protocol::V311,
        clean_session: clean,
        keep_alive,
        client_id,
        will: None,
        username: user.map(|u| u.0),
        password: user.map(|u| u.1.as_bytes()),
    }))
}

fn pub_packet(topic: &str, payload: &[u8], qos: QoS, id: u16) -> Vec<u8> {
    encode(&Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic,
        packet_id: (qos != QoS::AtMostOnce).then_some(id),
        payload,
    }))
}

fn accept(h: &mut Harness) -> ConnId {
    h.add(ListenerKind::Mqtt.first_phase())
}

/// A connected MQTT client (CONNACK taken).
fn client(h: &mut Harness, client_id: &str, clean: bool) -> ConnId {
    let id = accept(h);
    h.feed(id, &connect_with(client_id, clean, 60, None));
    assert_eq!(packets(&h.take_output(id)), ["connack 0 0"]);
    id
}

fn closing(h: &Harness, id: ConnId) -> Option<&CloseReason> {
    match h.phase(id) {
        Phase::Closing(r) => Some(r),
        _ => None,
    }
}

fn pushed(topic: &str, message: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    encode_push_header(0x7f, topic, message.len(), &mut v);
    v.extend_from_slice(message);
    v
}

#[test]
fn anonymous_connect_split_at_every_byte() {
    let mut h = Harness::new();
    let id = accept(&mut h);
    for b in connect_with("dev-1", true, 30, None) {
        h.feed(id, &[b]);
    }
    assert_eq!(packets(&h.take_output(id)), ["connack 0 0"]);
    assert!(matches!(h.phase(id), Phase::Mqtt(Mqtt::Connected(_))));
    assert_eq!(h.core.sessions, 1);
    assert_eq!(h.core.mqtt.connected, 1);
    assert_eq!(h.core.stats.mqtt_connects, 1);
    assert_eq!(&*h.core.mqtt.slab[0].login, "_");
    h.feed(id, &encode(&Packet::PingReq));
    assert_eq!(packets(&h.take_output(id)), ["PingResp"]);
    h.feed(id, &encode(&Packet::Disconnect));
    assert_eq!(closing(&h, id), Some(&CloseReason::Bye));
    assert_eq!(
        (h.core.sessions, h.core.mqtt.slab.len()),
        (0, 0),
        "clean session gone"
    );
}

#[test]
fn bad_first_packets_close_with_one_reason() {
    let mut h = Harness::new();
    // Not CONNECT: closed, nothing answered.
    let id = accept(&mut h);
    h.feed(id, &encode(&Packet::PingReq));
    assert!(matches!(closing(&h, id), Some(CloseReason::Unsupported(_))));
    assert!(h.take_output(id).is_empty());
    // MQTT 5: CONNACK 1 (unacceptable protocol version), then a close.
    let id = accept(&mut h);
    h.feed(id, b"\x10\x0d\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x00");
    assert_eq!(packets(&h.take_output(id)), ["connack 0 1"]);
    assert!(matches!(closing(&h, id), Some(CloseReason::Protocol(_))));
    // HTTP on the MQTT port; a remaining length over the limit.
    let id = accept(&mut h);
    h.feed(id, b"GET / HTTP/1.1\r\n\r\n");
    assert!(matches!(closing(&h, id), Some(CloseReason::Protocol(_))));
    let id = client(&mut h, "big", true);
    h.feed(id, &[0x30, 0xff, 0xff, 0xff, 0x7f]);
    assert!(matches!(
        closing(&h, id),
        Some(CloseReason::Protocol(
            psrt_protocol::DecodeError::FrameTooLarge { .. }
        ))
    ));
    // A wildcard in a published topic.
    let id = client(&mut h, "wild", true);
    h.feed(id, &pub_packet("a/+", b"x", QoS::AtMostOnce, 0));
    assert_eq!(closing(&h, id), Some(&CloseReason::WildcardPublish));
    assert_eq!(h.core.stats.protocol_errors, 5);
    // Empty client id with CleanSession 0: CONNACK 2.
    let id = accept(&mut h);
    h.feed(id, &connect_with("", false, 60, None));
    assert_eq!(packets(&h.take_output(id)), ["connack 0 2"]);
}

#[test]
fn connect_deadline_and_keepalive() {
    let mut h = Harness::new();
    let timeout = h.core.config.timeout;
    let id = accept(&mut h);
    h.advance(timeout);
    dispatch::on_due(&mut h.cx(), id);
    assert!(matches!(closing(&h, id), Some(CloseReason::Timeout(_))));
    // Keep-alive 2 s: closed after 3 s of silence, not before.
    let id = accept(&mut h);
    h.feed(id, &connect_with("k", true, 2, None));
    h.take_output(id);
    let due = crate::server::phase::due(&h.conns[id], timeout).unwrap();
    assert_eq!(due, h.core.now + Duration::from_secs(3));
    h.advance(Duration::from_secs(2));
    h.feed(id, &encode(&Packet::PingReq));
    let due = crate::server::phase::due(&h.conns[id], timeout).unwrap();
    assert_eq!(
        due,
        h.core.now + Duration::from_secs(3),
        "input restarts it"
    );
    h.advance(Duration::from_secs(3));
    dispatch::on_due(&mut h.cx(), id);
    assert_eq!(
        closing(&h, id),
        Some(&CloseReason::Timeout("MQTT keep-alive"))
    );
    // A bounded keep-alive refuses more, and none.
    h.core.config.mqtt.as_mut().unwrap().max_keepalive = 60;
    for ka in [0, 61] {
        let id = accept(&mut h);
        h.feed(id, &connect_with("k2", true, ka, None));
        assert_eq!(packets(&h.take_output(id)), ["connack 0 2"], "{ka}");
    }
}

/// Users `u` (password `pw`); `_` and `u` may do everything but publish
/// or subscribe under `secret/`.
fn auth_harness() -> Harness {
    let hash = bcrypt::hash("pw", 4).unwrap();
    let (passwords, _) = Passwords::parse(&format!("u:{hash}\n"));
    let acl =
        "_:\n  sub: ['a/#', 'a', 'x/#']\n  pub: ['a/#', 'a', 'x/#']\nu:\n  sub: '#'\n  pub: '#'\n";
    let mut config = Config::embedded_default();
    config.allow_anonymous = true;
    let auth = AuthDb {
        acl: Acl::parse(acl, Path::new("acl.yml")).unwrap(),
        passwords,
        ..AuthDb::default()
    };
    Harness::with(config, auth)
}

fn answer(h: &mut Harness, id: ConnId, ok: bool) {
    let hash = h.core.auth.passwords.get("u").unwrap().hash.to_string();
    let v = Verified {
        ticket: Ticket::Conn {
            conn: id,
            serial: h.conns[id].serial,
        },
        login: "u".into(),
        hash: hash.into(),
        password: "pw".into(),
        ok,
        decoy: false,
    };
    dispatch::on_verified(&mut h.cx(), id, v);
}

#[test]
fn passwords_go_through_the_auth_pipeline_and_the_throttle() {
    let mut h = auth_harness();
    h.core.throttle = crate::server::auth::throttle::LoginThrottle::new(1);
    let id = accept(&mut h);
    let mut bytes = connect_with("c", true, 60, Some(("u", "pw")));
    bytes.extend(encode(&Packet::PingReq));
    h.feed(id, &bytes);
    assert!(matches!(h.phase(id), Phase::Mqtt(Mqtt::Authenticating(_))));
    assert_eq!(h.core.worker.in_flight, 1, "bcrypt on the worker");
    assert_eq!(
        crate::server::phase::due(&h.conns[id], h.core.config.timeout),
        None
    );
    answer(&mut h, id, true);
    assert_eq!(packets(&h.take_output(id)), ["connack 0 0"]);
    assert_eq!(&*h.core.mqtt.slab[0].login, "u");
    dispatch::process_input(&mut h.cx(), id);
    assert_eq!(
        packets(&h.take_output(id)),
        ["PingResp"],
        "pipelined after CONNECT"
    );
    // The cache vouches for the second login: no bcrypt.
    let again = accept(&mut h);
    h.feed(again, &connect_with("c2", true, 60, Some(("u", "pw"))));
    assert_eq!(packets(&h.take_output(again)), ["connack 0 0"]);
    assert_eq!(h.core.worker.in_flight, 1);
    // A wrong password: CONNACK 5, a close, counted, and the throttle told.
    let bad = accept(&mut h);
    h.feed(bad, &connect_with("c3", true, 60, Some(("u", "nope"))));
    answer(&mut h, bad, false);
    assert_eq!(packets(&h.take_output(bad)), ["connack 0 5"]);
    assert!(matches!(
        closing(&h, bad),
        Some(CloseReason::LoginFailed(_))
    ));
    assert_eq!(h.core.stats.login_failures, 1);
    let blocked = accept(&mut h);
    h.feed(blocked, &connect_with("c4", true, 60, Some(("u", "pw"))));
    assert_eq!(packets(&h.take_output(blocked)), ["connack 0 5"]);
    assert_eq!(h.core.stats.auth_blocked, 1, "refused without a check");
    // An unknown user; anonymous when it is off.
    let nobody = accept(&mut h);
    h.feed(nobody, &connect_with("c5", true, 60, Some(("nobody", "x"))));
    assert_eq!(packets(&h.take_output(nobody)), ["connack 0 5"]);
    h.core.config.allow_anonymous = false;
    let anon = accept(&mut h);
    h.feed(anon, &connect_with("c6", true, 60, None));
    assert_eq!(packets(&h.take_output(anon)), ["connack 0 5"]);
}

#[test]
fn acl_denies_subscriptions_with_0x80_and_drops_denied_publishes() {
    let mut h = auth_harness();
    let id = client(&mut h, "anon", true);
    h.feed(
        id,
        &subscribe(
            1,
            &[
                ("a/#", QoS::ExactlyOnce),
                ("secret/#", QoS::AtMostOnce),
                ("a/#/b", QoS::AtMostOnce),
            ],
        ),
    );
    assert_eq!(
        packets(&h.take_output(id)),
        ["suback [1, 128, 128]"],
        "QoS 2 granted as 1"
    );
    assert_eq!(h.core.stats.access_denied, 1);
    h.feed(id, &pub_packet("secret/x", b"no", QoS::AtLeastOnce, 7));
    assert_eq!(
        packets(&h.take_output(id)),
        ["PubAck(7)"],
        "acknowledged, not delivered"
    );
    assert_eq!(h.core.stats.access_denied, 2);
    assert_eq!(h.core.stats.mqtt_pub_messages, 0);
    assert!(matches!(h.phase(id), Phase::Mqtt(Mqtt::Connected(_))));
}

#[test]
fn one_topic_space_with_each_protocols_rules() {
    let mut h = Harness::new();
    let m = client(&mut h, "m", true);
    h.feed(m, &subscribe(1, &[("a/#", QoS::AtMostOnce)]));
    h.take_output(m);
    let (p, p_data) = h.client();
    h.feed(p, &topics(true, &["a/#", "+/x"]));
    h.take_output(p);
    // PSRT publishes "a": MQTT `a/#` matches it, PSRT `a/#` does not.
    h.feed(p, &publish("a", b"1"));
    assert_eq!(packets(&h.take_output(m)), ["publish 0 None a 1"]);
    assert!(h.take_output(p_data).is_empty());
    // MQTT publishes a/b: both get it, once each.
    h.feed(m, &pub_packet("a/b", b"2", QoS::AtMostOnce, 0));
    assert_eq!(packets(&h.take_output(m)), ["publish 0 None a/b 2"]);
    assert_eq!(h.take_output(p_data), pushed("a/b", b"2"));
    // MQTT topics are not normalised: `/x` is the levels "" and "x".
    h.feed(m, &pub_packet("/x", b"3", QoS::AtMostOnce, 0));
    assert_eq!(h.take_output(p_data), pushed("/x", b"3"), "PSRT `+/x`");
    assert_eq!(h.core.stats.mqtt_pub_messages, 2);
    assert_eq!(h.core.stats.c_pub_messages, 1);
    assert_eq!(h.core.stats.mqtt_sent_messages, 2);
    assert_eq!(h.core.stats.c_sent_messages, 2);
}

#[test]
fn qos1_both_ways_with_an_in_flight_window() {
    let mut h = Harness::new();
    h.core.config.mqtt.as_mut().unwrap().max_inflight = 2;
    let sub = client(&mut h, "sub", true);
    h.feed(
        sub,
        &subscribe(1, &[("t", QoS::AtLeastOnce), ("q0", QoS::AtMostOnce)]),
    );
    h.take_output(sub);
    let publisher = client(&mut h, "pub", true);
    for i in 1..=3u16 {
        h.feed(
            publisher,
            &pub_packet("t", format!("m{i}").as_bytes(), QoS::AtLeastOnce, i),
        );
    }
    assert_eq!(
        packets(&h.take_output(publisher)),
        ["PubAck(1)", "PubAck(2)", "PubAck(3)"]
    );
    assert_eq!(
        packets(&h.take_output(sub)),
        ["publish 1 Some(1) t m1", "publish 1 Some(2) t m2"],
        "the third waits for the window"
    );
    h.feed(sub, &encode(&Packet::PubAck(1)));
    assert_eq!(packets(&h.take_output(sub)), ["publish 1 Some(3) t m3"]);
    // Mixed filters: the QoS of the filter that matches.
    h.feed(publisher, &pub_packet("q0", b"z", QoS::AtLeastOnce, 9));
    assert_eq!(packets(&h.take_output(sub)), ["publish 0 None q0 z"]);
    let held = h.core.mqtt.held_bytes;
    h.feed(sub, &encode(&Packet::PubAck(2)));
    h.feed(sub, &encode(&Packet::PubAck(3)));
    assert!(h.core.mqtt.held_bytes < held);
    assert_eq!(h.core.mqtt.held_bytes, 0);
}

#[test]
fn qos2_in_is_delivered_once() {
    let mut h = Harness::new();
    let sub = client(&mut h, "sub", true);
    h.feed(sub, &subscribe(1, &[("q", QoS::AtMostOnce)]));
    h.take_output(sub);
    let p = client(&mut h, "p", true);
    h.feed(p, &pub_packet("q", b"once", QoS::ExactlyOnce, 5));
    // The client did not see PUBREC and sends it again (DUP).
    let mut again = pub_packet("q", b"once", QoS::ExactlyOnce, 5);
    again[0] |= 0x08;
    h.feed(p, &again);
    assert_eq!(packets(&h.take_output(p)), ["PubRec(5)", "PubRec(5)"]);
    assert_eq!(packets(&h.take_output(sub)), ["publish 0 None q once"]);
    h.feed(p, &encode(&Packet::PubRel(5)));
    assert_eq!(packets(&h.take_output(p)), ["PubComp(5)"]);
    // The id is free again: a new message with it is delivered.
    h.feed(p, &pub_packet("q", b"twice", QoS::ExactlyOnce, 5));
    assert_eq!(packets(&h.take_output(sub)), ["publish 0 None q twice"]);
}

#[test]
fn will_on_abnormal_close_only_and_takeover() {
    let mut h = Harness::new();
    let watcher = client(&mut h, "w", true);
    h.feed(watcher, &subscribe(1, &[("status/#", QoS::AtMostOnce)]));
    h.take_output(watcher);
    let with_will = |h: &mut Harness, id: &str| {
        let c = accept(h);
        h.feed(
            c,
            &encode(&Packet::Connect(Connect {
                protocol: Protocol::V311,
                clean_session: true,
                keep_alive: 60,
                client_id: id,
                will: Some(Will {
                    topic: "status/dev",
                    message: b"gone",
                    qos: QoS::AtMostOnce,
                    retain: false,
                }),
                username: None,
                password: None,
            })),
        );
        h.take_output(c);
        c
    };
    let dev = with_will(&mut h, "dev");
    h.feed(dev, &encode(&Packet::Disconnect));
    assert!(
        h.take_output(watcher).is_empty(),
        "no will after DISCONNECT"
    );
    let dev = with_will(&mut h, "dev");
    dispatch::close(&mut h.cx(), dev, CloseReason::PeerClosed);
    assert_eq!(
        packets(&h.take_output(watcher)),
        ["publish 0 None status/dev gone"]
    );
    assert_eq!(h.core.stats.mqtt_wills, 1);
    // The same client id again: the older connection is taken over.
    let first = with_will(&mut h, "dup");
    let second = client(&mut h, "dup", true);
    assert_eq!(closing(&h, first), Some(&CloseReason::TakenOver));
    assert!(matches!(h.phase(second), Phase::Mqtt(Mqtt::Connected(_))));
    assert_eq!(h.core.stats.mqtt_takeovers, 1);
    assert_eq!(h.core.mqtt.connected, 2, "the watcher and the new one");
    assert_eq!(h.core.sessions, 2);
}

#[test]
fn persistent_session_keeps_qos1_while_away_and_redelivers() {
    let mut h = Harness::new();
    let c = client(&mut h, "keep", false);
    h.feed(c, &subscribe(1, &[("d/#", QoS::AtLeastOnce)]));
    h.take_output(c);
    let (p, _) = h.client();
    h.feed(p, &publish("d/1", b"sent"));
    assert_eq!(packets(&h.take_output(c)), ["publish 1 Some(1) d/1 sent"]);
    dispatch::close(&mut h.cx(), c, CloseReason::PeerClosed);
    assert_eq!(h.core.mqtt.away(), 1);
    h.feed(p, &publish("d/2", b"while away"));
    h.take_output(p);
    // Back: session present, the unacknowledged one again (DUP), then the new.
    let back = accept(&mut h);
    h.feed(back, &connect_with("keep", false, 60, None));
    assert_eq!(
        packets(&h.take_output(back)),
        [
            "connack 1 0",
            "publish 1 Some(1) d/1 sent dup",
            "publish 1 Some(2) d/2 while away"
        ]
    );
    // Expiry: away longer than mqtt.session_expiry, the session is dropped.
    dispatch::close(&mut h.cx(), back, CloseReason::PeerClosed);
    let expiry = h.core.config.mqtt.as_ref().unwrap().session_expiry;
    h.advance(expiry);
    super::session::expire(&mut h.cx());
    assert_eq!(h.core.mqtt.slab.len(), 0);
    assert_eq!(h.core.matcher.len(), 0, "its filters left the matcher");
    assert_eq!(h.core.stats.dropped_messages, 2);
    // A clean CONNECT with a connect code name sanity check.
    assert_eq!(ConnectCode::NotAuthorized as u8, 5);
}

#[test]
fn reload_revokes_mqtt_logins_and_drops_disallowed_filters() {
    let mut h = auth_harness();
    let anon = client(&mut h, "anon", true);
    h.feed(
        anon,
        &subscribe(1, &[("a/#", QoS::AtMostOnce), ("x/#", QoS::AtMostOnce)]),
    );
    assert_eq!(packets(&h.take_output(anon)), ["suback [0, 0]"]);
    let u = accept(&mut h);
    h.feed(u, &connect_with("u", true, 60, Some(("u", "pw"))));
    answer(&mut h, u, true);
    h.take_output(u);
    // `u` loses its entry; `_` may no longer subscribe under x/.
    let passwords = std::mem::take(&mut h.core.auth.passwords);
    h.core.auth = AuthDb {
        acl: Acl::parse(
            "_:\n  sub: ['a/#', 'a']\n  pub: '#'\n",
            Path::new("acl.yml"),
        )
        .unwrap(),
        passwords,
        ..AuthDb::default()
    };
    super::reload::apply(&mut h.cx());
    dispatch::apply_effects(&mut h.cx());
    assert!(matches!(closing(&h, u), Some(CloseReason::Revoked(_))));
    assert!(matches!(h.phase(anon), Phase::Mqtt(Mqtt::Connected(_))));
    let filters: Vec<&str> = h
        .core
        .mqtt
        .slab
        .iter()
        .flat_map(|(_, s)| s.filters.iter().map(|f| &*f.filter))
        .collect();
    assert_eq!(filters, ["a/#"]);
    assert_eq!(h.core.matcher.len(), 2, "a/# and its parent a");
}
