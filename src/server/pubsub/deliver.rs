//! Fan-out: a validated message into the send queue of every client with a
//! matching mask and a data socket, once per client however many of its
//! masks match.
//!
//! Each pushed frame is built once: small frames are copied straight into
//! each subscriber's queue (the incoming PUBLISH bytes themselves when the
//! topic needed no normalisation), large ones are built once into an
//! `SharedBuf` that every queue shares (or are the very buffer the frame was
//! read into). Delivery only queues; the loop's flush writes. A queue with
//! no room is a slow consumer (`outbox`). A data socket with a push goes on
//! the flush list, written after the replies — or, for a push of
//! [`PUSH_FIRST_MIN`] bytes or more, on the reply list, ahead of the
//! publisher's reply (queued after delivery).
//!
//! MQTT sessions are in the same matcher under ids with the top bit set
//! (`mqtt::state::MQTT_SUB`): one bit test per subscriber sends them to
//! `mqtt::outbound`, which builds the MQTT PUBLISH once per message; the
//! PSRT path is otherwise unchanged.

use std::rc::Rc;

use psrt_protocol::mqtt::QoS;
use psrt_protocol::{encode_push_header, push_frame_len};

use super::outbox::{self, SHARE_MIN};
use crate::server::conn::SharedBuf;
use crate::server::core::Cx;
use crate::server::mqtt::outbound::{Fanout, Sink};
use crate::server::mqtt::state::MQTT_SUB;
use crate::server::phase::Phase;
use crate::server::psrt::state::Phase as Psrt;

/// A push frame this large is written before the publisher's reply, not
/// after it: its data socket joins the reply list, which the reply joins
/// after it. A publisher that waits for each reply sends its next large
/// message as soon as it has the reply; written first, the reply set that
/// transfer going while the subscriber was still reading the push, and on
/// loopback the two transfers then ran on both cores at once: segments of
/// one connection sent from two cores arrive out of order and TCP takes
/// that for loss (fast retransmits, SACK recoveries: 26 → 11 in 12 runs of
/// the reference client's `pub-read-1mb`, BENCHMARKS.md "Bulk rows"). The
/// stage's time did not measurably move either way (it is bound by the
/// client's core, "Buffer alignment"); the retransmitted bytes are saved.
/// Small pushes go after the reply: there the requester's wait is all
/// there is.
pub(crate) const PUSH_FIRST_MIN: usize = 64 * 1024;

/// A message as it arrived (the pipeline's input) or, with its topic
/// normalised, as it is delivered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Message<'a> {
    /// Priority byte (passed through).
    pub priority: u8,
    /// The topic as sent (normalised here).
    pub topic: &'a str,
    /// The payload.
    pub message: &'a [u8],
    /// The whole incoming frame when it has the pushed frame's layout (a
    /// PSRT PUBLISH): forwarded as the same bytes if the topic needs no
    /// normalisation.
    pub raw: Option<&'a [u8]>,
    /// The buffer `raw` lives in, when send queues may share it.
    pub shared: Option<&'a SharedBuf>,
    /// The highest QoS MQTT subscribers get it at (PSRT TCP publishes and
    /// replicas are acknowledged: 1; UDP datagrams: 0).
    pub qos: QoS,
}

impl<'a> Message<'a> {
    /// A message with no frame to forward as it is (an MQTT PUBLISH or
    /// will, a bridge's inbound PUBLISH): the default priority.
    pub(crate) fn new(topic: &'a str, message: &'a [u8], qos: QoS) -> Self {
        Self {
            priority: psrt_protocol::DEFAULT_PRIORITY,
            topic,
            message,
            raw: None,
            shared: None,
            qos,
        }
    }

    /// The pushed frame as one shareable buffer.
    fn build(&self) -> SharedBuf {
        match (self.shared, self.raw) {
            (Some(buf), _) => buf.clone(),
            (None, Some(bytes)) => Rc::new(bytes.to_vec()),
            (None, None) => {
                let mut v =
                    Vec::with_capacity(push_frame_len(self.topic.len(), self.message.len()));
                encode_push_header(self.priority, self.topic, self.message.len(), &mut v);
                v.extend_from_slice(self.message);
                Rc::new(v)
            }
        }
    }
}

/// Queues `frame` to every subscriber, once per client. Returns how many
/// queues took it (an MQTT session counts as offered).
/// `frame` is a [`Message`] whose topic is normalised (the pipeline makes
/// it so).
pub(crate) fn deliver(cx: &mut Cx, frame: &Message<'_>) -> u64 {
    let frame_len = push_frame_len(frame.topic.len(), frame.message.len());
    let core = &mut *cx.core;
    let conns = &mut *cx.conns;
    core.seq += 1;
    let seq = core.seq;
    let now = core.now;
    let max_bytes = core.config.data_queue_bytes;
    let mut shared: Option<SharedBuf> = None;
    let mut delivered = 0u64;
    let (matcher, tx_pool, flush_list, reply_list, effects) = (
        &core.matcher,
        &mut core.tx_pool,
        &mut core.flush_list,
        &mut core.reply_list,
        &mut core.effects,
    );
    let (sessions, stats, config) = (&mut core.mqtt, &mut core.stats, &core.config);
    let mut mqtt = Fanout::new(frame.topic, frame.message, frame.qos, seq);
    matcher.for_each_match(frame.topic, |client| {
        if client & MQTT_SUB != 0 {
            let mut sink = Sink {
                conns: &mut *conns,
                tx_pool: &mut *tx_pool,
                flush_list: &mut *flush_list,
                effects: &mut *effects,
                stats: &mut *stats,
                config,
                now,
            };
            mqtt.offer(sessions, client & !MQTT_SUB, &mut sink);
            delivered += 1;
            return;
        }
        let Some(Phase::Psrt(Psrt::Control(session))) = conns.get_mut(client).map(|c| &mut c.phase)
        else {
            return;
        };
        if session.delivered_seq == seq {
            return;
        }
        session.delivered_seq = seq;
        let Some(data_id) = session.data else {
            return;
        };
        let Some(conn) = conns.get_mut(data_id) else {
            return;
        };
        if !matches!(conn.phase, Phase::Psrt(Psrt::Data(_))) {
            return;
        }
        if !outbox::has_room(&conn.tx, frame_len, max_bytes) {
            effects.push(outbox::slow_consumer(data_id, &conn.tx));
            return;
        }
        conn.output_started(now);
        if frame_len >= SHARE_MIN {
            let buf = shared.get_or_insert_with(|| frame.build());
            conn.tx.push_shared(buf.clone(), frame_len, true, tx_pool);
        } else if let Some(raw) = frame.raw {
            conn.tx.push_slice(raw, true, tx_pool);
        } else {
            conn.tx.push_with(frame_len, true, tx_pool, |v| {
                encode_push_header(frame.priority, frame.topic, frame.message.len(), v);
                v.extend_from_slice(frame.message);
            });
        }
        if !conn.in_flush_list {
            conn.in_flush_list = true;
            if frame_len >= PUSH_FIRST_MIN {
                reply_list.push(data_id);
            } else {
                flush_list.push(data_id);
            }
        }
        delivered += 1;
    });
    delivered
}
