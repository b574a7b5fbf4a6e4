//! Outgoing replication links: one connection per cluster node, made by this
//! server and driven on the same event loop as the client connections. This
//! file holds the link's protocol (greeting reply, login, REPL_HELLO, the
//! pipelined PUBLISH_REPL_SEQ stream to a psrtd node or the reference's
//! two-phase PUBLISH_REPL exchange, keep-alive) and the replication queueing;
//! `nodes.rs` holds `cluster.yml` and the per-node queues; `outgoing.rs`
//! the connect state a node shares with a bridge (status, addresses,
//! backoff, reconnects, drop episode); connecting
//! (name resolution in the worker, the non-blocking connect, the plain
//! greeting and the switch to TLS) is the loop's I/O (`event_loop::wake`).

pub(crate) mod nodes;
#[cfg(test)]
mod nodes_tests;
pub(crate) mod outgoing;
pub(crate) mod phase;
#[cfg(test)]
mod tests;

use log::info;
use psrt_protocol::{
    Decoded, Login, REPL_BODY_HEADER_LEN, REPL_SEQ_HEADER_LEN, Reply, Request, StreamKind,
    decode_greeting_reply, decode_reply, decode_token, encode_login, encode_repl_body_header,
    encode_repl_seq_head, encode_request,
};

pub(crate) use nodes::Cluster;
use nodes::{Dialect, Payload, Replica};
use phase::{Link, LinkStep};

use crate::server::conn::{CloseReason, ConnId};
use crate::server::core::{Core, Cx};
use crate::server::phase::{Phase, Step, frame};

/// Messages a pipelined link keeps in flight at most.
const WINDOW_MESSAGES: usize = 4096;
/// Bytes (payload + topic) a pipelined link keeps in flight at most.
const WINDOW_BYTES: usize = 4 << 20;

/// Queues a locally published message to every node (dropping the oldest
/// beyond a node's bound) and sends it on links that have room.
pub(crate) fn replicate(cx: &mut Cx, priority: u8, topic: &str, message: &[u8]) {
    if cx.core.cluster.is_empty() {
        return;
    }
    let replica = Replica {
        priority,
        topic: cx.core.cluster.topic_rc(topic),
        message: Payload::new(message),
        timestamp_ns: cx.core.wall_ns(),
        seq: 0,
    };
    for i in 0..cx.core.cluster.nodes.len() {
        let node = &mut cx.core.cluster.nodes[i];
        if node.push(replica.clone()) > 0 && node.peer.start_dropping() {
            let (path, bound) = (node.config.path.clone(), node.config.queue_bytes);
            cx.core.warn(
                "cluster",
                format_args!(
                    "node {path}: replication queue full ({bound} bytes): dropping the oldest messages until it is half empty"
                ),
            );
        }
    }
    let total = cx.core.config.cluster_queue_total;
    for i in cx.core.cluster.enforce_total(total) {
        let path = cx.core.cluster.nodes[i].config.path.clone();
        cx.core.warn(
            "cluster",
            format_args!(
                "node {path}: all replication queues together passed {total} bytes (cluster.queue_bytes_total): dropping its oldest messages"
            ),
        );
    }
    for i in 0..cx.core.cluster.nodes.len() {
        if let Some(id) = cx.core.cluster.nodes[i].peer.conn {
            pump(cx, id);
        }
    }
}

/// Sends what the link may send now: the next two-phase request on an idle
/// reference link, or messages up to the window on a pipelined link.
fn pump(cx: &mut Cx, id: ConnId) {
    let Some(Phase::Link(Link { node, step })) = cx.conns.get(id).map(|c| &c.phase) else {
        return;
    };
    match step {
        LinkStep::Idle => send_next(cx, id),
        LinkStep::Streaming => send_window(cx, id, *node),
        _ => {}
    }
}

/// Pipelined link: every queued message not yet sent, up to the window.
fn send_window(cx: &mut Cx, id: ConnId, node: usize) {
    loop {
        let n = &mut cx.core.cluster.nodes[node];
        if n.in_flight >= n.queue.len()
            || n.in_flight >= WINDOW_MESSAGES
            || n.in_flight_bytes >= WINDOW_BYTES
        {
            return;
        }
        let r = n.queue[n.in_flight].clone();
        n.in_flight += 1;
        n.in_flight_bytes += r.size();
        let len = r.message.len();
        let head = 1 + REPL_SEQ_HEADER_LEN + r.topic.len() + 1;
        push_frame(cx, id, head, r.message, |v| {
            encode_repl_seq_head(r.priority, r.timestamp_ns, r.seq, &r.topic, len, v);
        });
    }
}

/// A node cannot be reached now: down until its retry time, logged.
pub(crate) fn failed(core: &mut Core, node: usize, why: &str) {
    let now = core.now;
    let Some(n) = core.cluster.nodes.get_mut(node) else {
        return;
    };
    if n.peer.try_next_addr(now) {
        let path = n.config.path.clone();
        core.warn(
            "cluster",
            format_args!("node {path}: {why}; trying its next address"),
        );
        return;
    }
    n.down(now);
    let path = n.config.path.clone();
    core.warn(
        "cluster",
        format_args!("node {path}: {why}; retrying later"),
    );
}

/// Moves a link to its next step (and its deadline with it).
pub(crate) fn set_step(cx: &mut Cx, id: ConnId, step: LinkStep) {
    let now = cx.core.now;
    if let Some(conn) = cx.conns.get_mut(id) {
        if let Phase::Link(link) = conn.phase {
            conn.set_phase(
                Phase::Link(Link {
                    node: link.node,
                    step,
                }),
                now,
            );
            cx.core.rearm(id, conn);
        }
    }
}

/// Encodes `len` bytes straight into the link's send queue.
fn push(cx: &mut Cx, id: ConnId, len: usize, encode: impl FnOnce(&mut Vec<u8>)) {
    cx.core.push_encoded(id, &mut cx.conns[id], len, encode);
}

/// Queues a frame: its head (`head_len` bytes, written by `head`), then its
/// payload — a small one copied right after the head, a large one shared
/// with the other nodes' queues as it is.
fn push_frame(
    cx: &mut Cx,
    id: ConnId,
    head_len: usize,
    payload: Payload,
    head: impl FnOnce(&mut Vec<u8>),
) {
    match payload {
        Payload::Inline(bytes) => push(cx, id, head_len + bytes.len(), |v| {
            head(v);
            v.extend_from_slice(&bytes);
        }),
        Payload::Shared(buf) => {
            push(cx, id, head_len, head);
            let len = buf.len();
            cx.conns[id]
                .tx
                .push_shared(buf, len, false, &mut cx.core.tx_pool);
        }
    }
}

/// A link connection ended: the node is down until its retry time.
pub(crate) fn on_closed(cx: &mut Cx, id: ConnId, link: Link, reason: &CloseReason) {
    let now = cx.core.now;
    let Some(n) = cx.core.cluster.nodes.get_mut(link.node) else {
        return;
    };
    if n.peer.conn != Some(id) {
        return;
    }
    if link.step == LinkStep::Connecting && n.peer.try_next_addr(now) {
        let path = n.config.path.clone();
        cx.core.warn(
            "cluster",
            format_args!("node {path}: {reason}; trying its next address"),
        );
        return;
    }
    if link.step == LinkStep::Hello && n.dialect == Dialect::Unknown {
        n.speaks_reference(now);
        let path = n.config.path.clone();
        info!(
            "node {path} closed the link at REPL_HELLO (a reference node): replicating with PUBLISH_REPL, one message at a time"
        );
        return;
    }
    n.down(now);
    let hint = if link.step == LinkStep::Login {
        " (login refused? check user, password and the node's ACL)"
    } else {
        ""
    };
    let path = n.config.path.clone();
    cx.core.warn(
        "cluster",
        format_args!(
            "node {path}: link down in {:?}: {reason}{hint}; retrying later",
            link.step
        ),
    );
}

/// Sends the next queued message's topic, if the link is idle.
fn send_next(cx: &mut Cx, id: ConnId) {
    let Some(Phase::Link(Link {
        node,
        step: LinkStep::Idle,
    })) = cx.conns.get(id).map(|c| &c.phase)
    else {
        return;
    };
    let node = *node;
    let n = &mut cx.core.cluster.nodes[node];
    let Some((topic, size)) = n.queue.front().map(|r| (r.topic.clone(), r.size())) else {
        return;
    };
    // In flight: dropping the oldest must not take it.
    n.in_flight = 1;
    n.in_flight_bytes = size;
    push(cx, id, 1 + 4 + topic.len(), |v| {
        encode_request(&Request::PublishRepl { topic: &topic }, v)
    });
    set_step(cx, id, LinkStep::AwaitTopic);
}

/// The deadline of a link: an idle link sends a keep-alive NOP; any other
/// step timed out.
/// A pipelined link with requests in flight times out when the node has
/// answered nothing for the timeout; one with nothing in flight pings.
pub(crate) fn on_due(cx: &mut Cx, id: ConnId, link: Link) -> Option<CloseReason> {
    match link.step {
        LinkStep::Idle => {
            push(cx, id, 1, |v| encode_request(&Request::Nop, v));
            set_step(cx, id, LinkStep::AwaitNop);
        }
        LinkStep::Streaming => {
            let (now, timeout) = (cx.core.now, cx.core.config.timeout);
            let n = &mut cx.core.cluster.nodes[link.node];
            if n.in_flight > 0 || n.nop_pending {
                let since = n.last_answer.unwrap_or(now);
                if now.saturating_duration_since(since) >= timeout {
                    return Some(CloseReason::Timeout("replication link"));
                }
            } else {
                n.nop_pending = true;
                n.ping_at = Some(now);
                push(cx, id, 1, |v| encode_request(&Request::Nop, v));
            }
            set_step(cx, id, LinkStep::Streaming);
        }
        _ => return Some(CloseReason::Timeout("replication link")),
    }
    None
}

/// Replies (and the greeting reply and token) from the node.
pub(crate) fn on_input(cx: &mut Cx, id: ConnId, data: &[u8]) -> Result<Step, CloseReason> {
    let Some(Phase::Link(Link { node, step })) = cx.conns.get(id).map(|c| &c.phase) else {
        return Err(CloseReason::Link("not a link".into()));
    };
    let (node, step) = (*node, *step);
    match step {
        LinkStep::Greeting => {
            let (kind, len) = match frame(decode_greeting_reply(data))? {
                Ok(f) => f,
                Err(step) => return Ok(step),
            };
            if kind != StreamKind::Control {
                return Err(CloseReason::Link(
                    "node answered with a data greeting".into(),
                ));
            }
            let (user, password) = {
                let c = &cx.core.cluster.nodes[node].config;
                (c.user.clone(), c.password.clone())
            };
            push(cx, id, 4 + user.len() + 1 + password.len(), |v| {
                encode_login(
                    &Login {
                        login: &user,
                        password: &password,
                    },
                    v,
                );
            });
            set_step(cx, id, LinkStep::Login);
            Ok(Step::Used(len))
        }
        LinkStep::Login => {
            let len = match decode_token(data) {
                Decoded::Frame { len, .. } => len,
                Decoded::Incomplete { need } => return Ok(Step::Need(need)),
            };
            let now = cx.core.now;
            let origin = cx.core.cluster.origin;
            let n = &mut cx.core.cluster.nodes[node];
            n.online(now);
            info!(
                "replicating to node {} as {:?}",
                n.config.path, n.config.user
            );
            if n.dialect == Dialect::Reference {
                set_step(cx, id, LinkStep::Idle);
                send_next(cx, id);
            } else {
                n.ping_at = Some(now);
                push(cx, id, 9, |v| {
                    encode_request(&Request::ReplHello { origin }, v);
                });
                set_step(cx, id, LinkStep::Hello);
            }
            Ok(Step::Used(len))
        }
        LinkStep::Streaming => {
            let (reply, len) = match frame(decode_reply(data))? {
                Ok(f) => f,
                Err(step) => return Ok(step),
            };
            on_stream_reply(cx, id, node, reply)?;
            Ok(Step::Used(len))
        }
        LinkStep::Hello
        | LinkStep::AwaitTopic
        | LinkStep::AwaitBody
        | LinkStep::AwaitBodyNext
        | LinkStep::AwaitNop => {
            let (reply, len) = match frame(decode_reply(data))? {
                Ok(f) => f,
                Err(step) => return Ok(step),
            };
            on_reply(cx, id, node, step, reply)?;
            Ok(Step::Used(len))
        }
        LinkStep::Connecting | LinkStep::Idle => Err(CloseReason::Link(
            "the node sent bytes nobody asked for".into(),
        )),
    }
}

fn on_reply(
    cx: &mut Cx,
    id: ConnId,
    node: usize,
    step: LinkStep,
    reply: Reply,
) -> Result<(), CloseReason> {
    let n = &mut cx.core.cluster.nodes[node];
    n.last_answer = Some(cx.core.now);
    match (step, reply) {
        (LinkStep::Hello, reply) => {
            if let Some(at) = n.ping_at.take() {
                n.rtt = cx.core.now.saturating_duration_since(at);
            }
            if reply == Reply::Ok {
                n.dialect = Dialect::Pipelined;
                set_step(cx, id, LinkStep::Streaming);
                send_window(cx, id, node);
                return Ok(());
            }
            n.dialect = Dialect::Reference;
        }
        (LinkStep::AwaitTopic, Reply::NotRequired) => {
            n.not_required += 1;
            n.pop();
        }
        (LinkStep::AwaitTopic, Reply::OkWaiting) => {
            let Some(r) = n.queue.front().cloned() else {
                return Err(CloseReason::Link("queue emptied mid-request".into()));
            };
            // A large payload is shared by every node's queue: it goes into
            // the send queue as it is, never copied.
            let len = r.message.len();
            push_frame(cx, id, REPL_BODY_HEADER_LEN, r.message, |v| {
                encode_repl_body_header(r.priority, r.timestamp_ns, len, v);
            });
            // The next message's topic goes right after the body: the node
            // reads it as its next request once the body is handled, so the
            // link waits one round trip per message, not two.
            let n = &mut cx.core.cluster.nodes[node];
            let Some((topic, size)) = n.queue.get(1).map(|r| (r.topic.clone(), r.size())) else {
                set_step(cx, id, LinkStep::AwaitBody);
                return Ok(());
            };
            n.in_flight = 2;
            n.in_flight_bytes += size;
            push(cx, id, 1 + 4 + topic.len(), |v| {
                encode_request(&Request::PublishRepl { topic: &topic }, v);
            });
            set_step(cx, id, LinkStep::AwaitBodyNext);
            return Ok(());
        }
        (LinkStep::AwaitBodyNext, Reply::Ok) => {
            n.sent += 1;
            n.pop();
            set_step(cx, id, LinkStep::AwaitTopic);
            return Ok(());
        }
        (LinkStep::AwaitTopic, Reply::AccessDenied) => {
            n.dropped += 1;
            n.pop();
            let (path, user) = (n.config.path.clone(), n.config.user.clone());
            cx.core.warn(
                "cluster",
                format_args!(
                    "node {path}: {user:?} is not a replicator there (ACL replicator: true); message dropped"
                ),
            );
        }
        (LinkStep::AwaitBody, Reply::Ok) => {
            n.sent += 1;
            n.pop();
        }
        (LinkStep::AwaitNop, Reply::Ok) => {}
        (_, other) => {
            return Err(CloseReason::Link(format!(
                "unexpected reply {:#04x} to a replication request",
                u8::from(other)
            )));
        }
    }
    set_step(cx, id, LinkStep::Idle);
    send_next(cx, id);
    Ok(())
}

/// One reply on a pipelined link: it answers the keep-alive if one is
/// pending (sent with nothing in flight), else the oldest message in flight.
fn on_stream_reply(cx: &mut Cx, id: ConnId, node: usize, reply: Reply) -> Result<(), CloseReason> {
    let now = cx.core.now;
    let n = &mut cx.core.cluster.nodes[node];
    n.last_answer = Some(now);
    if n.nop_pending {
        n.nop_pending = false;
        if let Some(at) = n.ping_at.take() {
            n.rtt = now.saturating_duration_since(at);
        }
        return match reply {
            Reply::Ok => Ok(()),
            other => Err(CloseReason::Link(format!(
                "unexpected reply {:#04x} to a keep-alive",
                u8::from(other)
            ))),
        };
    }
    if n.in_flight == 0 {
        return Err(CloseReason::Link("a reply nobody asked for".into()));
    }
    match reply {
        Reply::Ok => n.sent += 1,
        Reply::NotRequired => n.not_required += 1,
        Reply::AccessDenied | Reply::Error => {
            n.dropped += 1;
            let (path, user) = (n.config.path.clone(), n.config.user.clone());
            let why = if reply == Reply::Error {
                "refused the topic".to_string()
            } else {
                format!("{user:?} is not a replicator there (ACL replicator: true)")
            };
            cx.core.warn(
                "cluster",
                format_args!("node {path}: {why}; message dropped"),
            );
        }
        other => {
            return Err(CloseReason::Link(format!(
                "unexpected reply {:#04x} to PUBLISH_REPL_SEQ",
                u8::from(other)
            )));
        }
    }
    let n = &mut cx.core.cluster.nodes[node];
    n.pop();
    if n.drop_episode_over() {
        let (path, dropped) = (n.config.path.clone(), n.dropped);
        info!(
            "node {path}: replication queue below half its bound again ({dropped} messages dropped in all)"
        );
    }
    send_window(cx, id, node);
    Ok(())
}
