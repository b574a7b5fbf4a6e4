//! Bridges to MQTT brokers: each is an outgoing MQTT 3.1.1 client
//! connection made by psrtd and driven on the event loop like a cluster
//! link. Local messages matching a bridge's `out` filters are queued
//! (store-and-forward, bounded by `queue_bytes`) and sent to the broker in
//! publish order at the bridge's QoS, QoS 1 with an in-flight window and a
//! resend (DUP) of what was not acknowledged after a reconnect. The broker's
//! messages on the `in` filters enter the one publish pipeline
//! (`Origin::Bridge`).
//!
//! | file | owns |
//! |---|---|
//! | `state.rs` | a bridge's queue, counters, reconnect schedule |
//! | `echo.rs` | the echo filter (overlapping `in` and `out`) |
//! | `phase.rs` | the connection's steps and deadlines |
//! | `spool.rs` | the spool on disk: record format, scan, the writer thread |
//! | `reload.rs` | SIGHUP: bridges added, removed and changed by name |
//! | `packets.rs` | the MQTT exchange: CONNECT/CONNACK, SUBSCRIBE, PUBLISH both ways, PUBACK, keep-alive |
//!
//! Connecting (name resolution in the resolver thread, the non-blocking
//! connect, TLS for `mqtts://`) is the loop's I/O (`event_loop::wake`), with
//! the cluster links' machinery and backoff (`link::outgoing::OutgoingPeer`).
//!
//! Rules:
//! * A message that came in from a bridge is never sent back out on it; it
//!   may go out on other bridges whose `out` covers it.
//! * A message that came from a cluster node (`Origin::Replica`) is not
//!   forwarded: the node where a message entered forwards it, so brokers do
//!   not get it once per node. Messages from a bridge are replicated to the
//!   cluster like any local publish (give `in` to one node of a cluster).
//! * Clean session: every connection starts a new broker session;
//!   subscriptions are sent again on every connect and unacknowledged
//!   messages are sent again with DUP (at least once).

mod echo;
pub(crate) mod packets;
pub(crate) mod phase;
pub(crate) mod reload;
pub(crate) mod spool;
#[cfg(test)]
mod spool_tests;
pub(crate) mod state;
#[cfg(test)]
mod state_tests;
#[cfg(test)]
mod tests;

use crate::server::conn::{CloseReason, ConnId, SharedBuf};
use crate::server::core::{Core, Cx};
use crate::server::link::outgoing::PeerStatus;
use log::info;
use phase::{BridgeLink, BridgeStep};

use state::{Bridge, OutMsg};

/// Queues a message published locally for every bridge whose `out` covers
/// its topic (not the bridge it came from), and sends what the links may.
pub(crate) fn forward(cx: &mut Cx, from: Option<u32>, topic: &str, payload: &[u8]) {
    if cx.core.bridges.list.is_empty() {
        return;
    }
    let mut shared: Option<(std::rc::Rc<str>, SharedBuf)> = None;
    for key in 0..cx.core.bridges.list.capacity() {
        let Some(b) = cx.core.bridges.list.get_mut(key) else {
            continue;
        };
        if from == Some(key as u32) || !b.forwards(topic) {
            continue;
        }
        let (t, p) = shared
            .get_or_insert_with(|| (topic.into(), std::rc::Rc::new(payload.to_vec())))
            .clone();
        let dropped = b.push(OutMsg {
            topic: t,
            payload: p,
            packet_id: 0,
            sent_before: false,
            acked: false,
            seq: 0,
        });
        let conn = b.peer.conn;
        if dropped > 0 && b.peer.start_dropping() {
            let name = b.config.name.clone();
            let what = match b.spool {
                Some(_) => format!("spool full (spool_bytes {})", b.config.spool_bytes),
                None => format!("queue full (queue_bytes {})", b.config.queue_bytes),
            };
            cx.core.stats.bridge_dropped += dropped;
            cx.core.warn(
                "bridge",
                format_args!(
                    "bridge {name}: {what}: dropping the oldest messages until it is half empty"
                ),
            );
        } else {
            cx.core.stats.bridge_dropped += dropped;
        }
        if let Some(id) = conn {
            packets::pump(cx, id);
        }
    }
}

/// Whether bridge `key` may publish `topic` locally: the ACL entry of the
/// login named by its `acl`, else its `in` filters.
pub(crate) fn may_publish(core: &Core, key: u32, topic: &str) -> bool {
    let Some(b) = core.bridges.list.get(key as usize) else {
        return false;
    };
    match &b.config.acl {
        Some(login) => core
            .auth
            .acl
            .get(login)
            .is_some_and(|e| e.can_publish(topic)),
        None => b.subscribed(topic),
    }
}

/// A broker cannot be reached now (resolution or connect failed): another
/// address is tried, or the bridge waits for its retry time.
pub(crate) fn failed(core: &mut Core, key: u32, why: &str) {
    let now = core.now;
    let Some(b) = core.bridges.get_mut(key) else {
        return;
    };
    if b.peer.try_next_addr(now) {
        let name = b.config.name.clone();
        core.warn(
            "bridge",
            format_args!("bridge {name}: {why}; trying the next address"),
        );
        return;
    }
    let delay = b.down(now);
    let (name, url) = (b.config.name.clone(), b.config.url.clone());
    core.warn(
        "bridge",
        format_args!(
            "bridge {name} ({url}): {why}; retrying in {:.1}s",
            delay.as_secs_f64()
        ),
    );
}

/// A bridge connection ended (bad input, silence, I/O error, refusal):
/// one log line with the bridge's name and why; reconnect after the
/// backoff. Messages in flight stay queued.
pub(crate) fn on_closed(cx: &mut Cx, id: ConnId, link: BridgeLink, reason: &CloseReason) {
    let now = cx.core.now;
    let Some(b) = cx.core.bridges.get_mut(link.bridge) else {
        return;
    };
    if b.peer.conn != Some(id) {
        return;
    }
    if matches!(reason, CloseReason::Shutdown) {
        b.peer.conn = None;
        return;
    }
    if link.step == BridgeStep::Connecting && b.peer.try_next_addr(now) {
        let name = b.config.name.clone();
        cx.core.warn(
            "bridge",
            format_args!("bridge {name}: {reason}; trying the next address"),
        );
        return;
    }
    let was_online = b.peer.status == PeerStatus::Online;
    let delay = b.down(now);
    let (name, url, queued) = (
        b.config.name.clone(),
        b.config.url.clone(),
        b.queued_messages(),
    );
    let what = if was_online {
        "connection lost"
    } else {
        "cannot connect"
    };
    cx.core.warn(
        "bridge",
        format_args!(
            "bridge {name} ({url}): {what}: {reason}; {queued} message(s) queued; reconnecting in {:.1}s",
            delay.as_secs_f64()
        ),
    );
}

/// The spool's writer thread answered: records read back join the memory
/// queue and go out; a failed file operation is logged.
pub(crate) fn on_spool(cx: &mut Cx, key: u32, event: spool::SpoolEvent) {
    let Some(b) = cx.core.bridges.get_mut(key) else {
        return;
    };
    match event {
        spool::SpoolEvent::Read(records) => {
            let dropped = b.spool_read(records);
            let (name, conn) = (b.config.name.clone(), b.peer.conn);
            if dropped > 0 {
                cx.core.stats.bridge_dropped += dropped;
                cx.core.warn(
                    "bridge",
                    format_args!(
                        "bridge {name}: {dropped} message(s) missing from the spool (a failed write or a damaged file): dropped"
                    ),
                );
            }
            match conn {
                Some(id) => packets::pump(cx, id),
                None => {
                    if let Some(b) = cx.core.bridges.get_mut(key) {
                        b.refill();
                    }
                }
            }
        }
        spool::SpoolEvent::Failed(what) => {
            let name = b.config.name.clone();
            cx.core
                .warn("bridge", format_args!("bridge {name}: spool: {what}"));
        }
    }
}

/// Logs the end of a drop episode (queue below half its bound again).
pub(crate) fn check_episode(b: &mut Bridge) {
    if b.drop_episode_over() {
        info!(
            "bridge {}: queue below half its bound again ({} messages dropped in all)",
            b.config.name, b.dropped
        );
    }
}
