//! A bridge's MQTT exchange with its broker, as handlers: CONNECT once the
//! socket is connected; CONNACK; SUBSCRIBE of `in` (at the bridge's QoS, at
//! most 1, so the broker never sends QoS 2); the outgoing window of
//! PUBLISH packets and their PUBACKs; inbound PUBLISH into the pipeline
//! (PUBACK for QoS 1, echoes of our own messages acknowledged but not
//! delivered again); PINGREQ/PINGRESP. Anything a broker must not send —
//! a client-only packet, QoS 2, PUBREC for a QoS 1 message, a second
//! CONNACK, bytes over the size limit — closes the connection (one log
//! line in `on_closed`) and the bridge reconnects.

use psrt_protocol::mqtt::{
    Connect, ConnectCode, PINGREQ, Packet, Protocol, Publish, QoS, SubAckCode, decode_from_server,
    encode_ack, encode_publish_header, encode_subscribe, kind, publish_header_len, subscribe_len,
};

use super::phase::{BridgeLink, BridgeStep};
use crate::server::conn::{CloseReason, ConnId};
use crate::server::core::Cx;
use crate::server::phase::{Phase, Step, frame};
use crate::server::pubsub::pipeline::{self, Message, Origin};

/// QoS 0: bytes the send queue may hold before the bridge waits for the
/// socket (QoS 1 is paced by the in-flight window).
pub(crate) const QOS0_TX_BYTES: usize = 256 << 10;
/// A payload this large is queued shared, not copied.
const SHARE_FROM: usize = 8192;
/// Packet id of the SUBSCRIBE sent at each connect (its SUBACK is checked
/// by the number of codes, not the id).
const SUBSCRIBE_ID: u16 = 1;

fn bad(why: impl Into<String>) -> CloseReason {
    CloseReason::Bridge(why.into())
}

/// Moves a bridge connection to `step` (its deadline with it).
fn set_step(cx: &mut Cx, id: ConnId, step: BridgeStep) {
    let now = cx.core.now;
    if let Some(conn) = cx.conns.get_mut(id) {
        if let Phase::Bridge(link) = conn.phase {
            conn.set_phase(Phase::Bridge(BridgeLink { step, ..link }), now);
            cx.core.rearm(id, conn);
        }
    }
}

/// Encodes `len` bytes into the connection's send queue.
fn push(cx: &mut Cx, id: ConnId, len: usize, encode: impl FnOnce(&mut Vec<u8>)) {
    cx.core.push_encoded(id, &mut cx.conns[id], len, encode);
}

/// The socket is connected (and TLS started for `mqtts://`): CONNECT goes
/// out, clean session, with the bridge's keep-alive and credentials.
pub(crate) fn on_connected(cx: &mut Cx, id: ConnId) {
    let Some(Phase::Bridge(link)) = cx.conns.get(id).map(|c| &c.phase) else {
        return;
    };
    let Some(b) = cx.core.bridges.list.get(link.bridge as usize) else {
        return;
    };
    let c = &b.config;
    let connect = Connect {
        protocol: Protocol::V311,
        clean_session: true,
        keep_alive: c.keepalive,
        client_id: &c.client_id,
        will: None,
        username: c.user.as_deref(),
        password: c.password.as_deref().map(str::as_bytes),
    };
    let mut packet = Vec::with_capacity(64 + c.client_id.len());
    connect.encode(&mut packet);
    push(cx, id, packet.len(), |v| v.extend_from_slice(&packet));
    set_step(cx, id, BridgeStep::ConnAck);
}

/// Sends what the link may send now (online links only).
pub(crate) fn pump(cx: &mut Cx, id: ConnId) {
    if let Some(Phase::Bridge(link)) = cx.conns.get(id).map(|c| &c.phase) {
        if matches!(link.step, BridgeStep::Up | BridgeStep::Ping) {
            let key = link.bridge;
            send_window(cx, id, key);
        }
    }
}

/// QoS 1: every queued message not in flight, up to the window. QoS 0:
/// queued messages while the send queue is under [`QOS0_TX_BYTES`]
/// (written means sent: at most once).
fn send_window(cx: &mut Cx, id: ConnId, key: u32) {
    let now = cx.core.now;
    loop {
        let tx_len = cx.conns[id].tx.len();
        let Some(b) = cx.core.bridges.get_mut(key) else {
            return;
        };
        let qos1 = b.config.qos == 1;
        b.refill();
        let next = if qos1 {
            if b.in_flight >= b.queue.len() || b.in_flight >= b.config.inflight {
                return;
            }
            b.in_flight
        } else {
            if b.queue.is_empty() || tx_len >= QOS0_TX_BYTES {
                return;
            }
            0
        };
        let packet_id = if qos1 { b.take_packet_id() } else { 0 };
        let m = &mut b.queue[next];
        let dup = m.sent_before;
        m.sent_before = true;
        m.packet_id = packet_id;
        let (topic, payload) = (m.topic.clone(), m.payload.clone());
        if b.subscribed(&topic) {
            b.echo.sent(&topic, &payload, now);
        }
        if qos1 {
            b.in_flight += 1;
        } else {
            if let Some(m) = b.pop_front() {
                // Written means done at QoS 0: its spool record may go.
                b.spool_acked(m.seq);
            }
            b.sent += 1;
            cx.core.stats.bridge_out_messages += 1;
        }
        let qos = if qos1 {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        };
        let p = Publish {
            dup: dup && qos1,
            qos,
            retain: false,
            topic: &topic,
            packet_id: qos1.then_some(packet_id),
            payload: &[],
        };
        let len = payload.len();
        let shared = len >= SHARE_FROM;
        let (total, head) = publish_header_len(topic.len(), qos, len);
        push(cx, id, if shared { head } else { total }, |v| {
            encode_publish_header(&p, len, v);
            if !shared {
                v.extend_from_slice(&payload);
            }
        });
        if shared {
            cx.conns[id]
                .tx
                .push_shared(payload, len, false, &mut cx.core.tx_pool);
        }
    }
}

/// The send queue was written: a QoS 0 bridge sends more.
pub(crate) fn after_write(cx: &mut Cx, id: ConnId) {
    pump(cx, id);
}

/// The step's deadline passed: the keep-alive PINGREQ, or a close.
pub(crate) fn on_due(cx: &mut Cx, id: ConnId, link: BridgeLink) -> Option<CloseReason> {
    match link.step {
        BridgeStep::Connecting => Some(CloseReason::Timeout("bridge connect")),
        BridgeStep::ConnAck => Some(bad("no CONNACK from the broker in time")),
        BridgeStep::Up => {
            push(cx, id, PINGREQ.len(), |v| v.extend_from_slice(&PINGREQ));
            set_step(cx, id, BridgeStep::Ping);
            None
        }
        BridgeStep::Ping => Some(bad(format!(
            "the broker is silent (no PINGRESP within the keep-alive, {}s)",
            link.keepalive
        ))),
    }
}

/// The largest packet taken from a broker: a PUBLISH of `max_pub_size`
/// with a topic of up to `max_topic_length` (at most 65535).
fn max_remaining(cx: &Cx) -> u32 {
    let l = &cx.core.config.limits;
    let topic = l.max_topic_length.min(65535);
    l.max_pub_size
        .saturating_add(topic)
        .saturating_add(4)
        .min(psrt_protocol::mqtt::MAX_REMAINING_LENGTH)
}

/// A packet from the broker.
pub(crate) fn on_input(cx: &mut Cx, id: ConnId, data: &[u8]) -> Result<Step, CloseReason> {
    let Some(Phase::Bridge(link)) = cx.conns.get(id).map(|c| &c.phase) else {
        return Err(bad("not a bridge"));
    };
    let link = *link;
    if link.step == BridgeStep::Connecting {
        return Err(bad("bytes before the connection was made"));
    }
    let (packet, len) = match frame(decode_from_server(data, max_remaining(cx)))? {
        Ok(f) => f,
        Err(step) => return Ok(step),
    };
    match (link.step, packet) {
        (BridgeStep::ConnAck, Packet::ConnAck(ack)) => on_connack(cx, id, link, ack.code)?,
        (BridgeStep::ConnAck, other) => {
            return Err(bad(format!("{} before CONNACK", name(&other))));
        }
        (_, Packet::Publish(p)) => on_publish(cx, id, link.bridge, &p)?,
        (_, Packet::PubAck(packet_id)) => {
            if let Some(b) = cx.core.bridges.get_mut(link.bridge) {
                let before = b.sent;
                if b.ack(packet_id) {
                    cx.core.stats.bridge_out_messages += b.sent - before;
                    super::check_episode(b);
                }
            }
            send_window(cx, id, link.bridge);
        }
        (_, Packet::SubAck { codes, .. }) => on_suback(cx, link.bridge, codes)?,
        (BridgeStep::Ping, Packet::PingResp) => set_step(cx, id, BridgeStep::Up),
        (_, Packet::PingResp) => {}
        (_, other) => return Err(bad(format!("unexpected {}", name(&other)))),
    }
    Ok(Step::Used(len))
}

fn name(p: &Packet<'_>) -> &'static str {
    match p {
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC (no QoS 2 was sent)",
        Packet::PubRel(_) => "PUBREL (no QoS 2 was granted)",
        Packet::PubComp(_) => "PUBCOMP (no QoS 2 was sent)",
        Packet::SubAck { .. } => "SUBACK",
        Packet::UnsubAck(_) => "UNSUBACK (nothing was unsubscribed)",
        Packet::PingResp => "PINGRESP",
        _ => "client packet",
    }
}

fn on_connack(
    cx: &mut Cx,
    id: ConnId,
    link: BridgeLink,
    code: ConnectCode,
) -> Result<(), CloseReason> {
    if code != ConnectCode::Accepted {
        let hint = match code {
            ConnectCode::BadUserNameOrPassword | ConnectCode::NotAuthorized => {
                " (check user and password)"
            }
            ConnectCode::IdentifierRejected => " (check client_id)",
            _ => "",
        };
        return Err(bad(format!(
            "the broker refused the connection: {code:?}{hint}"
        )));
    }
    let Some(b) = cx.core.bridges.get_mut(link.bridge) else {
        return Err(bad("bridge removed"));
    };
    b.peer.online();
    let resend = b.queue.iter().filter(|m| m.sent_before).count();
    log::info!(
        "bridge {}: connected to {} as {:?}{}",
        b.config.name,
        b.config.url,
        b.config.client_id,
        if resend > 0 {
            format!(" ({resend} unacknowledged message(s) sent again)")
        } else {
            String::new()
        }
    );
    let inbound = b.config.inbound.clone();
    let qos = if b.config.qos == 1 {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    };
    set_step(cx, id, BridgeStep::Up);
    if !inbound.is_empty() {
        let filters = || inbound.iter().map(String::as_str);
        push(cx, id, subscribe_len(filters()), |v| {
            encode_subscribe(SUBSCRIBE_ID, filters(), qos, v);
        });
    }
    send_window(cx, id, link.bridge);
    Ok(())
}

fn on_suback(cx: &mut Cx, key: u32, codes: &[u8]) -> Result<(), CloseReason> {
    let Some(b) = cx.core.bridges.get_mut(key) else {
        return Ok(());
    };
    if codes.len() != b.config.inbound.len() {
        return Err(bad(format!(
            "SUBACK with {} codes for {} filters",
            codes.len(),
            b.config.inbound.len()
        )));
    }
    let refused: Vec<&str> = b
        .config
        .inbound
        .iter()
        .zip(codes)
        .filter(|(_, c)| **c == u8::from(SubAckCode::Failure))
        .map(|(f, _)| f.as_str())
        .collect();
    b.subscribed = true;
    if !refused.is_empty() {
        b.refused_filters += refused.len() as u64;
        let msg = format!(
            "bridge {}: the broker refused the subscription of {refused:?} (its ACL?)",
            b.config.name
        );
        cx.core.warn("bridge", format_args!("{msg}"));
    }
    Ok(())
}

/// A message from the broker: its echo is acknowledged and dropped; any
/// other goes through the pipeline as `Origin::Bridge`.
fn on_publish(cx: &mut Cx, id: ConnId, key: u32, p: &Publish<'_>) -> Result<(), CloseReason> {
    if p.qos == QoS::ExactlyOnce {
        return Err(bad("a QoS 2 PUBLISH (at most QoS 1 was subscribed)"));
    }
    let now = cx.core.now;
    let max_pub = cx.core.config.limits.max_pub_size as usize;
    let Some(b) = cx.core.bridges.get_mut(key) else {
        return Ok(());
    };
    if b.echo.is_echo(p.topic, p.payload, now) {
        b.echoes += 1;
        cx.core.stats.bridge_echoes += 1;
    } else if p.payload.len() > max_pub {
        b.dropped += 1;
        let (name, topic) = (b.config.name.clone(), p.topic.to_string());
        cx.core.stats.bridge_dropped += 1;
        cx.core.warn(
            "bridge",
            format_args!(
                "bridge {name}: message on {topic:?} from the broker is larger than server.max_pub_size ({max_pub}); dropped"
            ),
        );
    } else {
        let msg = Message::new(p.topic, p.payload, p.qos);
        match pipeline::publish(cx, Origin::Bridge(key), msg) {
            Ok(()) => {
                cx.core.stats.bridge_in_messages += 1;
                if let Some(b) = cx.core.bridges.get_mut(key) {
                    b.received += 1;
                }
            }
            Err(refusal) => {
                cx.core.stats.bridge_dropped += 1;
                let name = cx.core.bridges.get_mut(key).map(|b| {
                    b.dropped += 1;
                    b.config.name.clone()
                });
                cx.core.warn(
                    "bridge",
                    format_args!(
                        "bridge {}: message on {:?} from the broker refused locally ({refusal:?})",
                        name.unwrap_or_default(),
                        p.topic
                    ),
                );
            }
        }
    }
    if let (QoS::AtLeastOnce, Some(packet_id)) = (p.qos, p.packet_id) {
        push(cx, id, 4, |v| encode_ack(kind::PUBACK, packet_id, v));
    }
    Ok(())
}
