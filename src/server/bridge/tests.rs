//! Unit tests of a bridge's MQTT exchange, driven through `dispatch` with
//! the broker's packets as byte slices and a clock the test moves: CONNECT
//! and CONNACK, SUBSCRIBE on every connect, the QoS 1 window and its
//! PUBACKs, DUP resends after a reconnect, inbound PUBLISH into the
//! pipeline, the echo filter, the keep-alive and a silent broker, and bad
//! input closing the connection with the bridge retried later.

use std::time::Duration;

use psrt_protocol::Decoded;
use psrt_protocol::mqtt::{
    ConnectCode, Packet, Publish, QoS, decode_packet, encode_ack, encode_connack, encode_packet,
    encode_suback, kind,
};

use super::phase::BridgeStep;
use super::state::Bridges;
use crate::server::config::BridgeConfig;
use crate::server::conn::ConnId;
use crate::server::dispatch;
use crate::server::link::outgoing::PeerStatus;
use crate::server::link::outgoing::QUEUED_MESSAGE_OVERHEAD;
use crate::server::phase::{Phase, due};
use crate::server::testing::Harness;

fn config(qos: u8, inflight: usize) -> BridgeConfig {
    BridgeConfig {
        user: Some("gw".into()),
        password: Some("pw".into()),
        client_id: "psrtd-gw".into(),
        out: vec!["plant/#".into(), "both/#".into()],
        inbound: vec!["cmd/#".into(), "both/#".into()],
        qos,
        keepalive: 10,
        inflight,
        ..super::state_tests::config(1 << 20)
    }
}

/// Every packet in `bytes`, owned: (kind, topic, payload, packet id, dup).
/// A packet a bridge sent: kind, topic (or client id, or filters),
/// payload, packet id, DUP.
type Sent = (u8, String, Vec<u8>, Option<u16>, bool);

fn packets(bytes: &[u8]) -> Vec<Sent> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Ok(Decoded::Frame { frame, len }) = decode_packet(rest, 1 << 20) else {
            panic!("not MQTT: {rest:02x?}");
        };
        out.push(match frame {
            Packet::Connect(c) => (kind::CONNECT, c.client_id.into(), vec![], None, false),
            Packet::Publish(p) => (
                kind::PUBLISH,
                p.topic.into(),
                p.payload.into(),
                p.packet_id,
                p.dup,
            ),
            Packet::Subscribe { packet_id, filters } => {
                let f: Vec<String> = filters
                    .iter()
                    .map(|(f, q)| format!("{f}@{}", q as u8))
                    .collect();
                (kind::SUBSCRIBE, f.join(","), vec![], Some(packet_id), false)
            }
            Packet::PubAck(id) => (kind::PUBACK, String::new(), vec![], Some(id), false),
            Packet::PingReq => (kind::PINGREQ, String::new(), vec![], None, false),
            other => panic!("a bridge sent {other:?}"),
        });
        rest = &rest[len..];
    }
    out
}

/// A harness with one bridge whose socket just connected: CONNECT queued.
fn connected(qos: u8, inflight: usize) -> (Harness, ConnId) {
    let mut h = Harness::new();
    h.core.bridges = Bridges::new(&[config(qos, inflight)], h.core.now).unwrap();
    let id = h.connect_bridge(0);
    (h, id)
}

fn connack(code: ConnectCode) -> Vec<u8> {
    let mut v = Vec::new();
    encode_connack(false, code, &mut v);
    v
}

/// Connected and CONNACKed, the CONNECT and SUBSCRIBE taken.
fn online(qos: u8, inflight: usize) -> (Harness, ConnId) {
    let (mut h, id) = connected(qos, inflight);
    h.take_output(id);
    h.feed(id, &connack(ConnectCode::Accepted));
    let out = packets(&h.take_output(id));
    assert_eq!(out[0].0, kind::SUBSCRIBE);
    (h, id)
}

fn step(h: &Harness, id: ConnId) -> BridgeStep {
    match h.phase(id) {
        Phase::Bridge(b) => b.step,
        other => panic!("{other:?}"),
    }
}

fn puback(id: u16) -> Vec<u8> {
    let mut v = Vec::new();
    encode_ack(kind::PUBACK, id, &mut v);
    v
}

fn broker_publish(topic: &str, payload: &[u8], qos: QoS, id: Option<u16>) -> Vec<u8> {
    let mut v = Vec::new();
    encode_packet(
        &Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic,
            packet_id: id,
            payload,
        }),
        &mut v,
    );
    v
}

#[test]
fn connect_then_subscribe_on_connack() {
    let (mut h, id) = connected(1, 4);
    assert_eq!(step(&h, id), BridgeStep::ConnAck);
    let out = h.take_output(id);
    // Clean session, user and password, keep-alive 10.
    assert_eq!(out[9], 0xc2, "{out:02x?}");
    assert_eq!(&out[10..12], &[0, 10]);
    assert_eq!(packets(&out)[0].1, "psrtd-gw");
    // Before CONNACK nothing is forwarded.
    h.publish_local("plant/a", b"1");
    assert!(h.take_output(id).is_empty());
    h.feed(id, &connack(ConnectCode::Accepted));
    assert_eq!(step(&h, id), BridgeStep::Up);
    let out = packets(&h.take_output(id));
    assert_eq!(out[0].0, kind::SUBSCRIBE);
    assert_eq!(out[0].1, "cmd/#@1,both/#@1");
    assert_eq!((out[1].0, out[1].1.as_str()), (kind::PUBLISH, "plant/a"));
    let b = h.core.bridges.get_mut(0).unwrap();
    assert_eq!((b.peer.status, b.in_flight), (PeerStatus::Online, 1));
    // SUBACK with a refused filter: logged, the link stays.
    let mut suback = Vec::new();
    encode_suback(1, &[1, 0x80], &mut suback);
    h.feed(id, &suback);
    let b = h.core.bridges.get_mut(0).unwrap();
    assert_eq!((b.refused_filters, b.subscribed), (1, true));
    assert_eq!(step(&h, id), BridgeStep::Up);
}

#[test]
fn a_refused_connack_closes_and_retries_later() {
    let (mut h, id) = connected(1, 4);
    h.feed(id, &connack(ConnectCode::NotAuthorized));
    assert!(matches!(h.phase(id), Phase::Closing(_)));
    let b = h.core.bridges.get_mut(0).unwrap();
    assert_eq!((b.peer.status, b.peer.conn), (PeerStatus::Offline, None));
    let retry = b.peer.retry_at.expect("retried");
    assert!(retry >= h.core.now + Duration::from_secs(1));
    assert!(retry <= h.core.now + Duration::from_millis(1250));
}

#[test]
fn the_window_and_pubacks_keep_publish_order() {
    let (mut h, id) = online(1, 2);
    for i in 0..5 {
        h.publish_local("plant/x", format!("{i}").as_bytes());
    }
    h.publish_local("other", b"not forwarded");
    let out = packets(&h.take_output(id));
    let got: Vec<(&[u8], Option<u16>)> = out.iter().map(|p| (&p.2[..], p.3)).collect();
    assert_eq!(got, [(&b"0"[..], Some(1)), (&b"1"[..], Some(2))]);
    h.feed(id, &puback(1));
    let out = packets(&h.take_output(id));
    assert_eq!((&out[0].2[..], out[0].3), (&b"2"[..], Some(3)));
    // Out of order: 3 first, 2 later; both pop once 2 is in.
    h.feed(id, &puback(3));
    assert!(h.take_output(id).is_empty(), "the window is still full");
    h.feed(id, &puback(2));
    let out = packets(&h.take_output(id));
    assert_eq!(out.len(), 2);
    let b = h.core.bridges.get_mut(0).unwrap();
    assert_eq!((b.sent, b.queue.len(), b.in_flight), (3, 2, 2));
    // A stray PUBACK is ignored.
    h.feed(id, &puback(999));
    assert_eq!(step(&h, id), BridgeStep::Up);
    assert_eq!(h.core.stats.bridge_out_messages, 3);
}

#[test]
fn unacknowledged_messages_are_resent_with_dup_after_a_reconnect() {
    let (mut h, id) = online(1, 8);
    for i in 0..3 {
        h.publish_local("plant/x", format!("{i}").as_bytes());
    }
    h.take_output(id);
    h.feed(id, &puback(1));
    // The broker goes away.
    dispatch::close(
        &mut h.cx(),
        id,
        crate::server::conn::CloseReason::Io(std::io::ErrorKind::ConnectionReset),
    );
    let b = h.core.bridges.get_mut(0).unwrap();
    assert_eq!(
        (b.peer.status, b.in_flight, b.queue.len()),
        (PeerStatus::Offline, 0, 2)
    );
    h.publish_local("plant/x", b"3");
    // A new connection (the loop's part), CONNACK.
    let id2 = h.connect_bridge(0);
    h.take_output(id2);
    h.feed(id2, &connack(ConnectCode::Accepted));
    let out = packets(&h.take_output(id2));
    let got: Vec<(&[u8], bool)> = out[1..].iter().map(|p| (&p.2[..], p.4)).collect();
    assert_eq!(
        got,
        [(&b"1"[..], true), (&b"2"[..], true), (&b"3"[..], false)]
    );
    assert_eq!(h.core.bridges.get_mut(0).unwrap().peer.reconnects, 1);
}

#[test]
fn inbound_publishes_enter_the_pipeline_and_are_acknowledged() {
    let (mut h, id) = online(1, 8);
    let (ctl, data) = h.client();
    h.feed(ctl, &crate::server::testing::topics(true, &["#"]));
    h.take_output(ctl);
    h.feed(
        id,
        &broker_publish("cmd/valve", b"open", QoS::AtLeastOnce, Some(7)),
    );
    let out = packets(&h.take_output(id));
    assert_eq!((out[0].0, out[0].3), (kind::PUBACK, Some(7)));
    let pushed = h.take_output(data);
    assert!(pushed.ends_with(b"cmd/valve\0open"), "{pushed:02x?}");
    // QoS 0: no PUBACK. Not covered by `in`: refused locally (counted).
    h.feed(id, &broker_publish("cmd/x", b"1", QoS::AtMostOnce, None));
    h.feed(id, &broker_publish("secret", b"2", QoS::AtMostOnce, None));
    assert!(h.take_output(id).is_empty());
    let b = h.core.bridges.get_mut(0).unwrap();
    assert_eq!((b.received, b.dropped), (2, 1));
    assert_eq!(h.core.stats.bridge_in_messages, 2);
    // An inbound message is not sent back out on the bridge, even when its
    // `out` covers it.
    h.feed(
        id,
        &broker_publish("both/t", b"from broker", QoS::AtMostOnce, None),
    );
    assert!(h.take_output(id).is_empty());
    assert_eq!(h.core.bridges.get_mut(0).unwrap().received, 3);
}

#[test]
fn echoes_are_acknowledged_but_not_delivered_again() {
    let (mut h, id) = online(1, 8);
    let (ctl, data) = h.client();
    h.feed(ctl, &crate::server::testing::topics(true, &["both/#"]));
    h.take_output(ctl);
    h.publish_local("both/t", b"v1");
    assert!(h.take_output(data).ends_with(b"both/t\0v1"));
    h.take_output(id);
    // The broker sends it back (`in` covers it).
    h.feed(
        id,
        &broker_publish("both/t", b"v1", QoS::AtLeastOnce, Some(3)),
    );
    assert_eq!(packets(&h.take_output(id))[0].0, kind::PUBACK);
    assert!(h.take_output(data).is_empty(), "not delivered twice");
    // The same message again is not an echo any more.
    h.feed(id, &broker_publish("both/t", b"v1", QoS::AtMostOnce, None));
    assert!(h.take_output(data).ends_with(b"both/t\0v1"));
    let b = h.core.bridges.get_mut(0).unwrap();
    assert_eq!((b.echoes, b.received), (1, 1));
}

#[test]
fn keepalive_pings_and_a_silent_broker_is_left() {
    let (mut h, id) = online(1, 8);
    let up_due = due(&h.conns[id], h.core.config.timeout).unwrap();
    assert_eq!(up_due, h.core.now + Duration::from_secs(5));
    h.advance(Duration::from_secs(5));
    dispatch::on_due(&mut h.cx(), id);
    assert_eq!(packets(&h.take_output(id))[0].0, kind::PINGREQ);
    assert_eq!(step(&h, id), BridgeStep::Ping);
    h.feed(id, &[0xd0, 0]);
    assert_eq!(step(&h, id), BridgeStep::Up);
    h.advance(Duration::from_secs(5));
    dispatch::on_due(&mut h.cx(), id);
    h.take_output(id);
    // No PINGRESP within the keep-alive.
    h.advance(Duration::from_secs(10));
    dispatch::on_due(&mut h.cx(), id);
    assert!(matches!(h.phase(id), Phase::Closing(_)));
    assert_eq!(
        h.core.bridges.get_mut(0).unwrap().peer.status,
        PeerStatus::Offline
    );
}

#[test]
fn bad_broker_input_closes_the_connection() {
    for bad in [
        &b"\x36\x00"[..],                 // QoS 3
        b"\x30\xff\xff\xff\x7f",          // 256 MiB
        b"\xc0\x00",                      // PINGREQ from a server
        b"\x50\x02\x00\x01",              // PUBREC: no QoS 2 was sent
        b"\x20\x02\x00\x00",              // a second CONNACK
        b"\x34\x08\x00\x03cmd\x00\x01xy", // QoS 2 PUBLISH
        b"\x90\x03\x00\x01\x01",          // SUBACK with 1 code for 2 filters
    ] {
        let (mut h, id) = online(1, 8);
        h.feed(id, bad);
        assert!(matches!(h.phase(id), Phase::Closing(_)), "{bad:02x?}");
        let b = h.core.bridges.get_mut(0).unwrap();
        assert_eq!(b.peer.status, PeerStatus::Offline, "{bad:02x?}");
        assert!(b.peer.retry_at.is_some());
    }
    // Before CONNACK, anything else is refused too.
    let (mut h, id) = connected(1, 8);
    h.feed(id, &puback(1));
    assert!(matches!(h.phase(id), Phase::Closing(_)));
}

#[test]
fn qos0_bridges_send_without_waiting_for_acks() {
    let (mut h, id) = online(0, 1);
    for i in 0..5 {
        h.publish_local("plant/x", format!("{i}").as_bytes());
    }
    let out = packets(&h.take_output(id));
    assert_eq!(out.len(), 5);
    assert!(out.iter().all(|p| p.3.is_none() && !p.4));
    let b = h.core.bridges.get_mut(0).unwrap();
    assert_eq!((b.sent, b.queue.len()), (5, 0));
}

#[test]
fn the_queue_bound_counts_drops_while_offline() {
    let mut h = Harness::new();
    let mut c = config(1, 8);
    // Room for ten messages of 100 bytes (topic + payload) and overhead.
    let each = 100 + QUEUED_MESSAGE_OVERHEAD;
    c.queue_bytes = 10 * each + 24;
    h.core.bridges = Bridges::new(&[c], h.core.now).unwrap();
    for i in 0..20 {
        h.publish_local("plant/q", &[i; 93]);
    }
    let b = h.core.bridges.get_mut(0).unwrap();
    assert_eq!(
        (b.queue.len(), b.dropped, b.queued_bytes),
        (10, 10, 10 * each)
    );
    assert!(b.peer.dropping);
    assert_eq!(b.queue.front().unwrap().payload[0], 10, "the oldest went");
    assert_eq!(h.core.stats.bridge_dropped, 10);
    // Once the queue is below half its bound the episode ends (logged).
    for _ in 0..6 {
        b.pop_front();
    }
    assert!(b.drop_episode_over());
    assert!(!b.peer.dropping);
}

#[test]
fn an_acl_login_decides_what_the_broker_may_publish() {
    let (mut h, id) = online(1, 8);
    let acl = crate::server::auth::Acl::parse(
        "bridge-cloud:\n  pub: 'cmd/valve/#'\n",
        std::path::Path::new("acl.yml"),
    )
    .unwrap();
    h.core.auth.acl = acl;
    h.core.bridges.get_mut(0).unwrap().config.acl = Some("bridge-cloud".into());
    h.feed(
        id,
        &broker_publish("cmd/valve/1", b"a", QoS::AtMostOnce, None),
    );
    // Covered by `in`, not by the login's ACL entry.
    h.feed(id, &broker_publish("cmd/pump", b"b", QoS::AtMostOnce, None));
    let b = h.core.bridges.get_mut(0).unwrap();
    assert_eq!((b.received, b.dropped), (1, 1));
    // A login the ACL does not know may publish nothing.
    b.config.acl = Some("nobody".into());
    h.feed(
        id,
        &broker_publish("cmd/valve/1", b"c", QoS::AtMostOnce, None),
    );
    assert_eq!(h.core.bridges.get_mut(0).unwrap().dropped, 2);
    assert_eq!(h.core.stats.access_denied, 2);
}

#[test]
fn a_broker_that_does_not_read_stops_being_read() {
    let (mut h, id) = online(1, 8);
    let big = vec![0u8; 1 << 20];
    // Our queue toward the broker passes the bound (nothing is written).
    for _ in 0..5 {
        h.conns[id].tx.push_slice(&big, false, &mut h.core.tx_pool);
    }
    assert!(!crate::server::phase::wants_input(&h.conns[id]));
    h.conns[id].tx.clear(&mut h.core.tx_pool);
    assert!(crate::server::phase::wants_input(&h.conns[id]));
}

#[test]
fn a_reload_keeps_changes_and_removes_bridges_by_name() {
    let (mut h, id) = online(1, 8);
    h.publish_local("plant/a", b"1");
    h.take_output(id);
    let same = config(1, 8);
    // Unchanged: nothing happens to the connection.
    super::reload::apply(&mut h.cx(), vec![same.clone()]);
    dispatch::apply_effects(&mut h.cx());
    assert_eq!(step(&h, id), BridgeStep::Up);
    // Changed (another `out`), and a new bridge: the connection is made
    // again, the queue kept; the new one is tried at once.
    let mut changed = same.clone();
    changed.out = vec!["other/#".into()];
    let mut added = config(1, 8);
    added.name = "second".into();
    super::reload::apply(&mut h.cx(), vec![changed, added]);
    dispatch::apply_effects(&mut h.cx());
    assert!(matches!(h.phase(id), Phase::Closing(_)));
    let b = h.core.bridges.get_mut(0).unwrap();
    assert_eq!((b.config.out[0].as_str(), b.queue.len()), ("other/#", 1));
    assert!(b.peer.retry_at.is_some());
    let second = h.core.bridges.get_mut(1).unwrap();
    assert_eq!(second.peer.retry_at, Some(h.core.now));
    // A spooled bridge cannot be added by a reload; removing keeps the rest.
    let mut spooled = config(1, 8);
    spooled.name = "spooled".into();
    spooled.spool = Some(std::env::temp_dir().join("psrt-never-opened"));
    super::reload::apply(&mut h.cx(), vec![spooled]);
    assert_eq!(h.core.bridges.list.len(), 0, "cloud and second removed");
    assert!(!std::env::temp_dir().join("psrt-never-opened").exists());
}
