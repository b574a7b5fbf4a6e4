//! Packets of a connected MQTT client. PUBLISH goes through the one publish
//! pipeline (`Origin::Mqtt`): QoS 0 as is, QoS 1 answered with PUBACK once
//! it is queued to every subscriber, QoS 2 delivered on the first PUBLISH
//! of its packet id and answered PUBREC (a repeat is not delivered again),
//! PUBREL answered PUBCOMP. A publish the ACL denies is dropped, counted
//! and logged (rate-limited), and still acknowledged: MQTT 3.1.1 has no
//! way to tell the client. SUBSCRIBE and UNSUBSCRIBE change the session's
//! filters and the matcher together. A RETAIN=1 PUBLISH (or will, from
//! `session`) the pipeline accepted goes into the retained store
//! ([`retain_publish`]); a granted subscription gets its retained messages
//! after SUBACK (`outbound::send_retained`).

use psrt_protocol::mqtt::{
    Filters, PINGRESP, Packet, Publish, QoS, SubAckCode, decode_packet, encode_ack, encode_suback,
    encode_unsuback, filter_masks, kind, validate_filter, validate_topic_name,
};
use psrt_protocol::topic_depth;

use super::phase::Phase as Mqtt;
use super::state::{Filter, sub_id};
use super::{outbound, retain};
use crate::server::conn::{CloseReason, ConnId};
use crate::server::core::{Core, Cx};
use crate::server::phase::{Phase, Step, frame};
use crate::server::pubsub::pipeline::{self, Message, Origin, Refusal};

/// Inbound QoS 2 packet ids one session may hold waiting for PUBREL.
const MAX_QOS2_IN: usize = 1024;

/// The session key of a connected connection.
fn session_key(cx: &Cx, id: ConnId) -> Result<usize, CloseReason> {
    match &cx.conns[id].phase {
        Phase::Mqtt(Mqtt::Connected(link)) => Ok(link.session),
        _ => Err(CloseReason::Unsupported("MQTT packet outside a session")),
    }
}

fn send(cx: &mut Cx, id: ConnId, bytes: &[u8]) {
    let conn = &mut cx.conns[id];
    cx.core.send(id, conn, bytes);
}

/// A RETAIN=1 publish that went through the pipeline (the publish ACL
/// passed): stored, replaced, deleted or refused with `mqtt.retain` on;
/// with it off the message was only delivered, which is logged once.
pub(crate) fn retain_publish(core: &mut Core, topic: &str, payload: &[u8], qos: QoS) {
    let bound = match core.config.mqtt.as_ref() {
        Some(m) if m.retain => m.retain_bytes,
        _ => {
            if !std::mem::replace(&mut core.mqtt.retain_logged, true) {
                log::info!(
                    "MQTT: a message with the retain flag was delivered normally (mqtt.retain is off: no retained store)"
                );
            }
            return;
        }
    };
    if core.mqtt.retained.set(topic, payload, qos, bound) == retain::Outcome::Refused {
        core.stats.mqtt_retain_refused += 1;
        let (n, bytes) = (core.mqtt.retained.len(), core.mqtt.retained.bytes());
        core.warn(
            "mqtt-retain",
            format_args!(
                "MQTT: retained message on {topic:?} ({} bytes) refused: mqtt.retain_bytes ({bound}) reached ({n} messages, {bytes} bytes)",
                payload.len()
            ),
        );
    }
}

/// Handles the packet at the front of `data`.
pub(crate) fn on_packet(cx: &mut Cx, id: ConnId, data: &[u8]) -> Result<Step, CloseReason> {
    let max = cx
        .core
        .config
        .mqtt
        .as_ref()
        .map_or(0, |m| m.max_packet_size);
    let (packet, len) = match frame(decode_packet(data, max))? {
        Ok(f) => f,
        Err(step) => return Ok(step),
    };
    let key = session_key(cx, id)?;
    match packet {
        Packet::Publish(p) => on_publish(cx, id, key, &p)?,
        Packet::PubAck(pid) => outbound::on_puback(cx, key, pid),
        Packet::PubRel(pid) => {
            if let Some(s) = cx.core.mqtt.slab.get_mut(key) {
                s.qos2_in.retain(|&x| x != pid);
            }
            let mut v = Vec::with_capacity(4);
            encode_ack(kind::PUBCOMP, pid, &mut v);
            send(cx, id, &v);
        }
        Packet::Subscribe { packet_id, filters } => on_subscribe(cx, id, key, packet_id, filters),
        Packet::Unsubscribe { packet_id, filters } => {
            on_unsubscribe(cx, key, filters);
            let mut v = Vec::with_capacity(4);
            encode_unsuback(packet_id, &mut v);
            send(cx, id, &v);
        }
        Packet::PingReq => send(cx, id, &PINGRESP),
        Packet::Disconnect => {
            if let Phase::Mqtt(Mqtt::Connected(link)) = &mut cx.conns[id].phase {
                link.will = None;
            }
            return Err(CloseReason::Bye);
        }
        Packet::Connect(_) => return Err(CloseReason::Unsupported("a second CONNECT")),
        // psrtd never sends QoS 2, and clients never send server packets.
        _ => return Err(CloseReason::Unsupported("unexpected MQTT packet type")),
    }
    Ok(Step::Used(len))
}

fn on_publish(cx: &mut Cx, id: ConnId, key: usize, p: &Publish<'_>) -> Result<(), CloseReason> {
    if validate_topic_name(p.topic).is_err() {
        return Err(CloseReason::WildcardPublish);
    }
    let Some(session) = cx.core.mqtt.slab.get_mut(key) else {
        return Err(CloseReason::Unsupported("MQTT packet outside a session"));
    };
    let pid = p.packet_id.unwrap_or(0);
    if p.qos == QoS::ExactlyOnce {
        if session.qos2_in.contains(&pid) {
            // A repeat of a QoS 2 PUBLISH already delivered: PUBREC only.
            let mut v = Vec::with_capacity(4);
            encode_ack(kind::PUBREC, pid, &mut v);
            send(cx, id, &v);
            return Ok(());
        }
        if session.qos2_in.len() >= MAX_QOS2_IN {
            return Err(CloseReason::Limit(
                "MQTT QoS 2 publishes waiting for PUBREL",
            ));
        }
        session.qos2_in.push(pid);
    }
    let acl = session.acl.clone();
    let msg = Message::new(p.topic, p.payload, p.qos);
    match pipeline::publish(cx, Origin::Mqtt(&acl), msg) {
        // Delivered with RETAIN=0 to current subscribers; then kept.
        Ok(()) if p.retain => retain_publish(cx.core, p.topic, p.payload, p.qos),
        Ok(()) => {}
        Err(r) => {
            let conn = &cx.conns[id];
            let who = match cx.core.mqtt.slab.get(key) {
                Some(s) => format!("{} ({})", s.client_id, s.login),
                None => String::new(),
            };
            let why = match r {
                Refusal::Denied => "denied by the ACL",
                _ => "topic too deep",
            };
            let peer = conn.peer.to_string();
            cx.core.warn(
                "mqtt-publish",
                format_args!(
                    "{peer}: MQTT {who}: publish to {:?} dropped: {why}",
                    p.topic
                ),
            );
        }
    }
    let ack = match p.qos {
        QoS::AtMostOnce => return Ok(()),
        QoS::AtLeastOnce => kind::PUBACK,
        QoS::ExactlyOnce => kind::PUBREC,
    };
    let mut v = Vec::with_capacity(4);
    encode_ack(ack, pid, &mut v);
    send(cx, id, &v);
    Ok(())
}

/// One SUBACK code per filter: invalid, too deep or too long, denied by the
/// ACL, or over a subscription limit is `0x80`; else granted at the QoS
/// asked for, at most 1. After SUBACK, each granted filter gets the
/// retained messages it matches (`outbound::send_retained`).
fn on_subscribe(cx: &mut Cx, id: ConnId, key: usize, packet_id: u16, filters: Filters<'_>) {
    let mut codes = Vec::with_capacity(filters.len());
    let mut granted = Vec::with_capacity(filters.len());
    for (filter, asked) in filters.iter() {
        let code = subscribe_one(cx.core, key, filter, asked.min(QoS::AtLeastOnce));
        codes.push(u8::from(code));
        granted.push(match code {
            SubAckCode::Granted(q) => Some(q),
            SubAckCode::Failure => None,
        });
    }
    let mut v = Vec::with_capacity(codes.len() + 6);
    encode_suback(packet_id, &codes, &mut v);
    send(cx, id, &v);
    if cx.core.mqtt.retained.len() == 0 {
        return;
    }
    for ((filter, _), qos) in filters.iter().zip(granted) {
        if let Some(qos) = qos {
            outbound::send_retained(cx, key, filter, qos);
        }
    }
}

fn subscribe_one(core: &mut Core, key: usize, filter: &str, qos: QoS) -> SubAckCode {
    let limits = &core.config.limits;
    if validate_filter(filter).is_err()
        || topic_depth(filter) > limits.max_topic_depth
        || filter.len() > limits.max_topic_length as usize
    {
        return SubAckCode::Failure;
    }
    let Some(s) = core.mqtt.slab.get_mut(key) else {
        return SubAckCode::Failure;
    };
    let (mask, parent) = filter_masks(filter);
    if !s.acl.can_subscribe(mask) {
        core.stats.access_denied += 1;
        return SubAckCode::Failure;
    }
    if let Some(f) = s.filters.iter_mut().find(|f| &*f.filter == filter) {
        f.qos = qos;
        s.filters_changed();
        return SubAckCode::Granted(qos);
    }
    let per_client = core.config.max_subscriptions_per_client;
    let total = core.config.max_subscriptions;
    if (per_client > 0 && s.filters.len() >= per_client)
        || (total > 0 && core.matcher.len() + 2 > total)
    {
        core.stats.subscription_refusals += 1;
        return SubAckCode::Failure;
    }
    let parent = parent.filter(|p| s.acl.can_subscribe(p));
    core.matcher.subscribe(mask, sub_id(key));
    if let Some(p) = parent {
        core.matcher.subscribe(p, sub_id(key));
    }
    s.filters.push(Filter {
        filter: filter.into(),
        qos,
        parent: parent.is_some(),
    });
    s.filters_changed();
    core.stats.mqtt_sub_ops += 1;
    SubAckCode::Granted(qos)
}

fn on_unsubscribe(cx: &mut Cx, key: usize, filters: Filters<'_>) {
    let core = &mut *cx.core;
    let Some(s) = core.mqtt.slab.get_mut(key) else {
        return;
    };
    for (filter, _) in filters.iter() {
        let Some(at) = s.filters.iter().position(|f| &*f.filter == filter) else {
            continue;
        };
        let f = s.filters.swap_remove(at);
        let (mask, parent) = filter_masks(&f.filter);
        // `a` and `a/#` share the matcher entry `a`: it stays while either does.
        let in_use = |m: &str| {
            s.filters
                .iter()
                .any(|g| &*g.filter == m || (g.parent && g.filter.strip_suffix("/#") == Some(m)))
        };
        if !in_use(mask) {
            core.matcher.unsubscribe(mask, sub_id(key));
        }
        if let Some(p) = parent.filter(|p| f.parent && !in_use(p)) {
            core.matcher.unsubscribe(p, sub_id(key));
        }
        core.stats.mqtt_sub_ops += 1;
    }
    s.filters_changed();
}
