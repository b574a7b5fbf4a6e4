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
//!   consumer or a queue-cap drop ([`count_close`]).
//!
//! Delivery only queues; the one write path is the loop's flush.

use std::time::{Duration, Instant};

use crate::server::conn::{CloseReason, ConnId, SendQueue};
use crate::server::core::{Cx, Effect};
use crate::server::phase::{Conn, Phase};
use crate::server::psrt::state::Phase as Psrt;
use crate::server::stats::Stats;

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
    (matches!(conn.phase, Phase::Psrt(Psrt::Data(_))) && conn.tx.messages() > max_messages).then(
        || CloseReason::SlowConsumer {
            bytes: conn.tx.len(),
            messages: conn.tx.messages(),
        },
    )
}

/// Pending output that has not moved for the timeout.
pub(crate) fn stalled(conn: &Conn, now: Instant, timeout: Duration) -> bool {
    conn.stall_due(timeout).is_some_and(|at| at <= now)
}

/// All outboxes together hold more than `max_queued_bytes`: queues the close
/// of the largest until the total fits. Returns how many were dropped.
pub(crate) fn enforce_cap(cx: &mut Cx) -> usize {
    let cap = cx.core.config.max_queued_bytes;
    if cap == 0 || cx.core.tx_pool.queued_total <= cap {
        return 0;
    }
    let mut queues: Vec<(usize, ConnId)> = cx
        .conns
        .iter()
        .filter(|(_, c)| matches!(c.phase, Phase::Psrt(Psrt::Data(_))) && !c.tx.is_empty())
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
        conn.tx.clear(&mut cx.core.tx_pool);
        cx.core.stats.queue_cap_drops += 1;
        cx.core.warn(
            "queue-cap",
            format_args!(
                "all data queues together exceed max_queued_bytes ({cap}): dropping the largest ({bytes} bytes)"
            ),
        );
        cx.core
            .close_later(id, CloseReason::SlowConsumer { bytes, messages });
        dropped += 1;
    }
    dropped
}

/// Counts a close: a slow consumer once (a queue-cap drop was counted when
/// it was chosen, and is a slow consumer too).
pub(crate) fn count_close(stats: &mut Stats, reason: &CloseReason) {
    if matches!(reason, CloseReason::SlowConsumer { .. }) {
        stats.slow_consumers += 1;
    }
}
