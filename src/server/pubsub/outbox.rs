//! The slow-consumer policy of data sockets, in one place. A data socket's
//! send queue is its outbox:
//!
//! * **byte limit** (`data_queue_bytes`): checked at every message, before
//!   it is queued — a message that does not fit makes the subscriber a slow
//!   consumer ([`has_room`]);
//! * **message limit** (`data_queue`): checked after each flush attempt, so
//!   a burst of pipelined publishes queued within one loop turn is not
//!   mistaken for a slow consumer ([`after_flush`]);
//! * **global cap** (`max_queued_bytes`): all outboxes together, counting
//!   real memory (a shared frame once, however many queues hold it),
//!   enforced after the loop's flush pass by dropping the largest queues
//!   first ([`enforce_cap`]);
//! * **write stall**: any socket whose pending output made no progress for
//!   the timeout is closed ([`stalled`]);
//! * **what a close counts**: each dropped data socket once, as a slow
//!   consumer or a queue-cap drop ([`count_close`]); messages thrown away
//!   with a queue count as dropped ([`drop_queue`]); a message counts as
//!   sent only once it is written whole ([`count_written`]);
//! * **latency**: each written message's queue-to-write time is summed in
//!   `c_sent_latency`; a message older than `server.latency_warn` when its
//!   write starts gets one rate-limited warning naming topic and client
//!   ([`before_write`]).
//!
//! Delivery only queues; the one write path is the loop's flush.

use std::fmt;
use std::time::{Duration, Instant};

use psrt_protocol::PUSH_HEADER_LEN;

use crate::server::conn::{CloseReason, ConnId, SendQueue, TxPool};
use crate::server::core::{Cx, Effect};
use crate::server::mqtt::phase::Phase as Mqtt;
use crate::server::phase::{Conn, Phase};
use crate::server::psrt::state::Phase as Psrt;
use crate::server::stats::Stats;

/// Frames at least this long are built once and shared between subscribers
/// instead of being copied into each queue.
pub(crate) const SHARE_MIN: usize = 8 * 1024;

/// A connection whose queue is an outbox: a PSRT data socket or a
/// connected MQTT client.
pub(crate) fn is_outbox(phase: &Phase) -> bool {
    matches!(
        phase,
        Phase::Psrt(Psrt::Data(_)) | Phase::Mqtt(Mqtt::Connected(_))
    )
}

/// Whether a frame of `frame_len` bytes fits under the byte limit.
pub(crate) fn has_room(tx: &SendQueue, frame_len: usize, max_bytes: usize) -> bool {
    tx.len() + frame_len <= max_bytes
}

/// The close of a data socket whose outbox is full.
pub(crate) fn slow_consumer(id: ConnId, tx: &SendQueue) -> Effect {
    Effect::Close(
        id,
        CloseReason::SlowConsumer {
            bytes: tx.len(),
            messages: tx.messages(),
        },
    )
}

/// After a flush attempt: a data socket still holding more than
/// `max_messages` messages is a slow consumer.
pub(crate) fn after_flush(conn: &Conn, max_messages: usize) -> Option<CloseReason> {
    (is_outbox(&conn.phase) && conn.tx.messages() > max_messages).then(|| {
        CloseReason::SlowConsumer {
            bytes: conn.tx.len(),
            messages: conn.tx.messages(),
        }
    })
}

/// Pending output that has not moved for the timeout.
pub(crate) fn stalled(conn: &Conn, now: Instant, timeout: Duration) -> bool {
    conn.stall_due(timeout).is_some_and(|at| at <= now)
}

/// All outboxes together hold more than `max_queued_bytes`: drops the
/// largest queues (their messages counted as dropped) until the total fits,
/// and queues their closes. Returns how many were dropped.
pub(crate) fn enforce_cap(cx: &mut Cx) -> usize {
    let cap = cx.core.config.max_queued_bytes;
    if cap == 0 || cx.core.tx_pool.queued_total <= cap {
        return 0;
    }
    let mut queues: Vec<(usize, ConnId)> = cx
        .conns
        .iter()
        .filter(|(_, c)| is_outbox(&c.phase) && !c.tx.is_empty())
        .map(|(id, c)| (c.tx.len(), id))
        .collect();
    queues.sort_unstable_by(|a, b| b.cmp(a));
    let mut dropped = 0;
    for (bytes, id) in queues {
        if cx.core.tx_pool.queued_total <= cap {
            break;
        }
        let conn = &mut cx.conns[id];
        let messages = conn.tx.messages();
        // Dropped now, so the next candidate is judged on the new total.
        let lost = drop_queue(&mut cx.core.stats, conn, &mut cx.core.tx_pool);
        credit(cx, id, 0, lost);
        cx.core
            .close_later(id, CloseReason::QueueCap { bytes, messages });
        dropped += 1;
    }
    dropped
}

/// Throws away what a data socket still has queued: its messages count as
/// dropped, never as sent. Returns how many.
pub(crate) fn drop_queue(stats: &mut Stats, conn: &mut Conn, pool: &mut TxPool) -> u64 {
    let mut dropped = 0;
    if is_outbox(&conn.phase) || matches!(conn.phase, Phase::Closing(_)) {
        dropped = conn.tx.messages() as u64;
        stats.dropped_messages += dropped;
    }
    conn.tx.clear(pool);
    dropped
}

/// Adds to the totals of the session that owns outbox `id` (the clients
/// table): messages a write completed, or a dropped queue's.
pub(crate) fn credit(cx: &mut Cx, id: ConnId, sent: u64, dropped: u64) {
    match cx.conns.get(id).map(|c| &c.phase) {
        Some(Phase::Psrt(Psrt::Data(link))) => {
            let owner = link.owner;
            if let Some(Phase::Psrt(Psrt::Control(session))) =
                cx.conns.get_mut(owner).map(|c| &mut c.phase)
            {
                session.sent += sent;
                session.dropped += dropped;
            }
        }
        Some(Phase::Mqtt(Mqtt::Connected(link))) => {
            if let Some(session) = cx.core.mqtt.slab.get_mut(link.session) {
                session.sent += sent;
                session.dropped += dropped;
            }
        }
        _ => {}
    }
}

/// Moves what the flushes completed into the counters: messages written
/// whole to data sockets (or, `mqtt`, to an MQTT client), their bytes,
/// and their latencies.
pub(crate) fn count_written(stats: &mut Stats, pool: &mut TxPool, mqtt: bool) {
    let w = pool.take_written();
    if mqtt {
        stats.mqtt_sent_messages += w.messages;
        stats.mqtt_sent_bytes += w.bytes;
        stats.mqtt_sent_latency += w.latency_us;
    } else {
        stats.c_sent_messages += w.messages;
        stats.c_sent_bytes += w.bytes;
        stats.c_sent_latency += w.latency_us;
    }
}

/// Before a write to a connection with counted messages queued, at `now_us`
/// (µs since start): the messages it completes are measured against that
/// time. If the oldest has waited longer than `server.latency_warn`, one
/// warning (rate-limited) names its topic and the client; returns that
/// latency then.
pub(crate) fn before_write(cx: &mut Cx, id: ConnId, now_us: u32) -> Option<u32> {
    cx.core.tx_pool.write_us = now_us;
    let limit = cx.core.config.latency_warn_us;
    let conn = cx.conns.get(id)?;
    let latency = now_us.wrapping_sub(conn.tx.oldest_stamp()?);
    if limit == 0 || latency <= limit {
        return None;
    }
    // The client as the clients table shows it: login and control socket.
    let (login, peer) = match &conn.phase {
        Phase::Psrt(Psrt::Data(link)) => match cx.conns.get(link.owner) {
            Some(c) => match &c.phase {
                Phase::Psrt(Psrt::Control(s)) => (&*s.login, &c.peer),
                _ => ("?", &conn.peer),
            },
            None => ("?", &conn.peer),
        },
        Phase::Mqtt(Mqtt::Connected(link)) => (
            cx.core
                .mqtt
                .slab
                .get(link.session)
                .map_or("?", |s| &*s.login),
            &conn.peer,
        ),
        _ => ("?", &conn.peer),
    };
    let mqtt = matches!(conn.phase, Phase::Mqtt(_));
    let topic = OldestTopic(&conn.tx, mqtt);
    cx.core.ratelog.warn(
        "latency",
        cx.core.now,
        format_args!("high latency: {latency} µs topic {topic} ({login}@{peer})"),
    );
    Some(latency)
}

/// The topic of a queue's oldest message, read from its frame (a PSRT
/// pushed frame, or an MQTT PUBLISH if `.1`) only when a log line is
/// written (`?` once its writing has begun).
pub(crate) struct OldestTopic<'a>(pub(crate) &'a SendQueue, pub(crate) bool);

impl fmt::Display for OldestTopic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 200;
        let Some(head) = self.0.oldest_head(PUSH_HEADER_LEN + SHOWN + 1) else {
            return f.write_str("?");
        };
        let topic = if self.1 {
            mqtt_topic(&head)
        } else {
            let topic = head.get(PUSH_HEADER_LEN..).unwrap_or_default();
            &topic[..topic.iter().position(|&b| b == 0).unwrap_or(topic.len())]
        };
        write!(f, "{:?}", String::from_utf8_lossy(topic))
    }
}

/// The topic bytes at the start of an MQTT PUBLISH (fixed header,
/// remaining length, u16 topic length, topic), cut to what `head` holds.
fn mqtt_topic(head: &[u8]) -> &[u8] {
    // The remaining length: 1 to 4 bytes, the last without the top bit.
    let Some(len_bytes) = head.iter().skip(1).take(4).position(|&b| b & 0x80 == 0) else {
        return &[];
    };
    let at = 2 + len_bytes;
    let Some(&[hi, lo]) = head.get(at..at + 2) else {
        return &[];
    };
    let n = usize::from(u16::from_be_bytes([hi, lo]));
    head.get(at + 2..).map_or(&[], |t| &t[..n.min(t.len())])
}

/// Counts a close: each dropped data socket once, as a slow consumer or as a
/// queue-cap drop.
pub(crate) fn count_close(stats: &mut Stats, reason: &CloseReason) {
    match reason {
        CloseReason::SlowConsumer { .. } => stats.slow_consumers += 1,
        CloseReason::QueueCap { .. } => stats.queue_cap_drops += 1,
        _ => {}
    }
}
