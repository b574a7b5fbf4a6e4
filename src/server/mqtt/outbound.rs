//! Messages to MQTT clients. Fan-out (`pubsub::deliver`) offers each
//! message to each matching session once ([`Fanout::offer`]); the PUBLISH
//! is built once per message: at QoS 0 one packet copied into every queue
//! (or, from 8 KiB, one shared buffer), at QoS 1 one stored packet shared
//! by every session that holds it, each send writing its own packet id.
//! QoS 1 goes through the session's in-flight window ([`fill_window`]) and
//! is kept until PUBACK; a resumed session gets its in-flight messages
//! again with DUP set ([`redeliver`]). The outbox policy is PSRT's: a
//! connection whose queue has no room is a slow consumer.
//!
//! Retained messages for a new subscription ([`send_retained`]) take the
//! same paths with RETAIN=1: QoS 1 into the session's queue (its byte
//! budget) and the window; QoS 0 into the output queue while it holds at
//! most half of `server.data_queue_bytes`. What does not fit is not sent
//! (counted in `mqtt_retain_unsent`, logged rate-limited): a large
//! retained set never makes a subscriber a slow consumer by itself.

use std::rc::Rc;
use std::time::Instant;

use psrt_protocol::mqtt::{Publish, QoS, encode_publish_header, publish_header_len};

use super::phase::Phase as Mqtt;
use super::state::{Queued, Session, Sessions};
use crate::server::config::Config;
use crate::server::conn::{ConnId, SendQueue, SharedBuf, TxPool};
use crate::server::core::{Conns, Cx, Effect};
use crate::server::phase::{Conn, Phase};
use crate::server::pubsub::outbox::{self, SHARE_MIN};
use crate::server::stats::Stats;

/// Where fan-out writes: the pieces of the core a delivery touches.
pub(crate) struct Sink<'a> {
    pub conns: &'a mut Conns,
    pub tx_pool: &'a mut TxPool,
    pub flush_list: &'a mut Vec<ConnId>,
    pub effects: &'a mut Vec<Effect>,
    pub stats: &'a mut Stats,
    pub config: &'a Config,
    pub now: Instant,
}

/// One message being fanned out to MQTT sessions; its packets are built
/// on first use.
pub(crate) struct Fanout<'m> {
    topic: &'m str,
    payload: &'m [u8],
    qos: QoS,
    seq: u64,
    q0_len: usize,
    q0_shared: Option<SharedBuf>,
    q1: Option<Queued>,
}

impl<'m> Fanout<'m> {
    /// A message on `topic` offered at up to `qos` (never above 1 here).
    pub(crate) fn new(topic: &'m str, payload: &'m [u8], qos: QoS, seq: u64) -> Self {
        Self {
            topic,
            payload,
            qos: qos.min(QoS::AtLeastOnce),
            seq,
            q0_len: 0,
            q0_shared: None,
            q1: None,
        }
    }

    /// Offers the message to session `key` (once per message).
    pub(crate) fn offer(&mut self, sessions: &mut Sessions, key: usize, sink: &mut Sink<'_>) {
        let Some(s) = sessions.slab.get_mut(key) else {
            return;
        };
        if s.delivered_seq == self.seq {
            return;
        }
        s.delivered_seq = self.seq;
        if s.qos_for(self.topic).min(self.qos) == QoS::AtLeastOnce {
            let q = self
                .q1
                .get_or_insert_with(|| build_q1(self.topic, self.payload, false));
            let limit = sink
                .config
                .mqtt
                .as_ref()
                .map_or(0, |m| m.session_queue_bytes);
            let all = sink.config.max_queued_bytes;
            if s.held_bytes + q.len() > limit || (all > 0 && sessions.held_bytes + q.len() > all) {
                sink.stats.mqtt_queue_drops += 1;
                return;
            }
            s.held_bytes += q.len();
            sessions.held_bytes += q.len();
            s.queue.push_back(q.clone());
            fill(s, sink);
            return;
        }
        let Some((id, conn)) = live(s, sink.conns) else {
            return;
        };
        if self.q0_len == 0 {
            self.q0_len =
                publish_header_len(self.topic.len(), QoS::AtMostOnce, self.payload.len()).0;
            if self.q0_len < SHARE_MIN {
                sessions.scratch.clear();
                q0_packet(self.topic, self.payload, &mut sessions.scratch);
            }
        }
        if !outbox::has_room(&conn.tx, self.q0_len, sink.config.data_queue_bytes) {
            sink.effects.push(outbox::slow_consumer(id, &conn.tx));
            return;
        }
        conn.output_started(sink.now);
        if self.q0_len >= SHARE_MIN {
            let buf = self.q0_shared.get_or_insert_with(|| {
                let mut v = Vec::with_capacity(self.q0_len);
                q0_packet(self.topic, self.payload, &mut v);
                Rc::new(v)
            });
            conn.tx
                .push_shared(buf.clone(), self.q0_len, true, sink.tx_pool);
        } else {
            conn.tx.push_slice(&sessions.scratch, true, sink.tx_pool);
        }
        schedule(id, conn, sink.flush_list);
    }
}

fn q0_packet(topic: &str, payload: &[u8], out: &mut Vec<u8>) {
    q0_packet_with(topic, payload, false, out);
}

fn q0_packet_with(topic: &str, payload: &[u8], retain: bool, out: &mut Vec<u8>) {
    let p = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain,
        topic,
        packet_id: None,
        payload: &[],
    };
    encode_publish_header(&p, payload.len(), out);
    out.extend_from_slice(payload);
}

/// The stored QoS 1 packet (packet id 0, filled in per send).
fn build_q1(topic: &str, payload: &[u8], retain: bool) -> Queued {
    let (total, header) = publish_header_len(topic.len(), QoS::AtLeastOnce, payload.len());
    let mut v = Vec::with_capacity(total);
    let p = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain,
        topic,
        packet_id: Some(0),
        payload: &[],
    };
    encode_publish_header(&p, payload.len(), &mut v);
    v.extend_from_slice(payload);
    Queued {
        frame: Rc::new(v),
        id_at: header - 2,
    }
}

/// The session's connection, if it is connected.
fn live<'c>(s: &Session, conns: &'c mut Conns) -> Option<(ConnId, &'c mut Conn)> {
    let id = s.conn?;
    let conn = conns.get_mut(id)?;
    matches!(conn.phase, Phase::Mqtt(Mqtt::Connected(_))).then_some((id, conn))
}

fn schedule(id: ConnId, conn: &mut Conn, flush_list: &mut Vec<ConnId>) {
    if !conn.in_flush_list {
        conn.in_flush_list = true;
        flush_list.push(id);
    }
}

/// Queues one QoS 1 packet with its id (and DUP on redelivery).
fn push_q1(tx: &mut SendQueue, q: &Queued, id: u16, dup: bool, pool: &mut TxPool) {
    let frame = &q.frame;
    tx.push_with(frame.len(), true, pool, |v| {
        let start = v.len();
        v.extend_from_slice(frame);
        if let Some(b) = v.get_mut(start) {
            *b |= if dup { 0x08 } else { 0 };
        }
        let [hi, lo] = id.to_be_bytes();
        if let Some(slot) = v.get_mut(start + q.id_at..start + q.id_at + 2) {
            slot.copy_from_slice(&[hi, lo]);
        }
    });
}

/// Sends queued QoS 1 messages while the window and the outbox have room.
fn fill(s: &mut Session, sink: &mut Sink<'_>) {
    let window = sink
        .config
        .mqtt
        .as_ref()
        .map_or(1, |m| usize::from(m.max_inflight));
    let Some((id, conn)) = live(s, sink.conns) else {
        return;
    };
    let mut sent = false;
    while s.inflight.len() < window {
        let Some(q) = s.queue.front() else {
            break;
        };
        if !outbox::has_room(&conn.tx, q.len(), sink.config.data_queue_bytes) {
            if !sent && s.inflight.is_empty() {
                sink.effects.push(outbox::slow_consumer(id, &conn.tx));
            }
            break;
        }
        let Some(q) = s.queue.pop_front() else {
            break;
        };
        let pid = s.take_id();
        conn.output_started(sink.now);
        push_q1(&mut conn.tx, &q, pid, false, sink.tx_pool);
        s.inflight.push_back((pid, q));
        sent = true;
    }
    if sent {
        schedule(id, conn, sink.flush_list);
    }
}

/// A handler's view of [`fill`]: the window has room again (a PUBACK).
pub(crate) fn fill_window(cx: &mut Cx, key: usize) {
    let core = &mut *cx.core;
    let Some(s) = core.mqtt.slab.get_mut(key) else {
        return;
    };
    let mut sink = Sink {
        conns: cx.conns,
        tx_pool: &mut core.tx_pool,
        flush_list: &mut core.flush_list,
        effects: &mut core.effects,
        stats: &mut core.stats,
        config: &core.config,
        now: core.now,
    };
    fill(s, &mut sink);
}

/// A resumed session: what was in flight goes again (same ids, DUP set),
/// then the queue.
pub(crate) fn redeliver(cx: &mut Cx, key: usize) {
    let core = &mut *cx.core;
    let Some(s) = core.mqtt.slab.get_mut(key) else {
        return;
    };
    if let Some((id, conn)) = live(s, cx.conns) {
        if !s.inflight.is_empty() {
            conn.output_started(core.now);
            for (pid, q) in &s.inflight {
                push_q1(&mut conn.tx, q, *pid, true, &mut core.tx_pool);
            }
            schedule(id, conn, &mut core.flush_list);
        }
    }
    fill_window(cx, key);
}

/// PUBACK: the message leaves the window (an unknown id is ignored).
pub(crate) fn on_puback(cx: &mut Cx, key: usize, pid: u16) {
    let core = &mut *cx.core;
    let Some(s) = core.mqtt.slab.get_mut(key) else {
        return;
    };
    let Some(at) = s.inflight.iter().position(|(id, _)| *id == pid) else {
        return;
    };
    if let Some((_, q)) = s.inflight.remove(at) {
        s.held_bytes -= q.len();
        core.mqtt.held_bytes -= q.len();
    }
    fill_window(cx, key);
}

/// After SUBACK: the retained messages whose topic matches the new
/// subscription `filter` and that the session's ACL lets it read, each at
/// min(`granted`, its own QoS) with RETAIN=1. Returns how many were queued.
pub(crate) fn send_retained(cx: &mut Cx, key: usize, filter: &str, granted: QoS) -> usize {
    let core = &mut *cx.core;
    let Sessions {
        slab,
        retained,
        held_bytes,
        ..
    } = &mut core.mqtt;
    let Some(s) = slab.get_mut(key) else {
        return 0;
    };
    let mut sink = Sink {
        conns: cx.conns,
        tx_pool: &mut core.tx_pool,
        flush_list: &mut core.flush_list,
        effects: &mut core.effects,
        stats: &mut core.stats,
        config: &core.config,
        now: core.now,
    };
    let limit = sink
        .config
        .mqtt
        .as_ref()
        .map_or(0, |m| m.session_queue_bytes);
    let all = sink.config.max_queued_bytes;
    let q0_room = sink.config.data_queue_bytes / 2;
    let (mut queued, mut unsent) = (0, 0u64);
    let mut q0 = Vec::new();
    for (topic, r) in retained.matching(filter) {
        if !s.acl.can_subscribe(topic) {
            continue;
        }
        if r.qos.min(granted) == QoS::AtMostOnce {
            q0.push((topic, &r.payload));
            continue;
        }
        let q = build_q1(topic, &r.payload, true);
        if s.held_bytes + q.len() > limit || (all > 0 && *held_bytes + q.len() > all) {
            unsent += 1;
            continue;
        }
        s.held_bytes += q.len();
        *held_bytes += q.len();
        s.queue.push_back(q);
        queued += 1;
    }
    fill(s, &mut sink);
    if let Some((id, conn)) = live(s, sink.conns) {
        let mut v = Vec::new();
        for (topic, payload) in q0 {
            let len = publish_header_len(topic.len(), QoS::AtMostOnce, payload.len()).0;
            if !outbox::has_room(&conn.tx, len, q0_room) {
                unsent += 1;
                continue;
            }
            v.clear();
            q0_packet_with(topic, payload, true, &mut v);
            conn.output_started(sink.now);
            conn.tx.push_slice(&v, true, sink.tx_pool);
            queued += 1;
        }
        if queued > 0 {
            schedule(id, conn, sink.flush_list);
        }
    }
    if unsent > 0 {
        core.stats.mqtt_retain_unsent += unsent;
        let who = s.client_id.clone();
        core.warn(
            "mqtt-retain-unsent",
            format_args!(
                "MQTT {who}: {unsent} retained message(s) for {filter:?} not sent: output queue or session budget full"
            ),
        );
    }
    queued
}
