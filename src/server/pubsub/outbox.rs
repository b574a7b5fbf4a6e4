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
//!   sent only once it is written whole ([`count_written`]).
//!
//! Delivery only queues; the one write path is the loop's flush.

use std::time::{Duration, Instant};

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
        drop_queue(&mut cx.core.stats, conn, &mut cx.core.tx_pool);
        cx.core
            .close_later(id, CloseReason::QueueCap { bytes, messages });
        dropped += 1;
    }
    dropped
}

/// Throws away what a data socket still has queued: its messages count as
/// dropped, never as sent.
pub(crate) fn drop_queue(stats: &mut Stats, conn: &mut Conn, pool: &mut TxPool) {
    if is_outbox(&conn.phase) || matches!(conn.phase, Phase::Closing(_)) {
        stats.dropped_messages += conn.tx.messages() as u64;
    }
    conn.tx.clear(pool);
}

/// Moves what the flushes completed into the counters: messages written
/// whole to data sockets (or, `mqtt`, to an MQTT client), and their bytes.
pub(crate) fn count_written(stats: &mut Stats, pool: &mut TxPool, mqtt: bool) {
    let (messages, bytes) = pool.take_written();
    if mqtt {
        stats.mqtt_sent_messages += messages;
        stats.mqtt_sent_bytes += bytes;
    } else {
        stats.c_sent_messages += messages;
        stats.c_sent_bytes += bytes;
    }
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
