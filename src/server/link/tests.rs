//! Unit tests of the replication link's protocol, driven through `dispatch`
//! with the node's replies as byte slices and a clock the test moves: the
//! greeting reply and login, the two-phase PUBLISH_REPL exchange, the
//! keep-alive, and what a failure does to the node.

use std::time::Duration;

use psrt_protocol::{Request, StreamKind, decode_repl_body, encode_request};

use super::nodes::{Dialect, NodeAddr, NodeConfig};
use super::outgoing::{PeerStatus, QUEUED_MESSAGE_OVERHEAD};
use super::phase::{Link, LinkStep};
use super::{Cluster, replicate};
use crate::server::conn::{CloseReason, ConnId};
use crate::server::dispatch;
use crate::server::phase::{Phase, due};
use crate::server::testing::{Harness, greeting, login_frame};

/// The greeting reply of a node's control socket.
const GREETING_REPLY: [u8; 4] = [0xEE, 0xAA, 0x01, 0x00];
/// Reply codes (`psrt_protocol::Reply`).
const OK: u8 = 0x01;
const OK_WAITING: u8 = 0x02;
const NOT_REQUIRED: u8 = 0xE0;
const ACCESS_DENIED: u8 = 0xFE;

fn node_config() -> NodeConfig {
    NodeConfig {
        path: "node2:2873".into(),
        addr: NodeAddr::Tcp("node2:2873".into()),
        user: "repl".into(),
        password: "secret".into(),
        tls: None,
        queue_bytes: 1 << 20,
    }
}

/// A harness with one node and its link, the greeting sent (the loop's
/// part): waiting for the greeting reply.
fn linked() -> (Harness, ConnId) {
    let mut h = Harness::new();
    h.core.cluster = Cluster::new(vec![node_config()], h.core.now);
    let id = h.add(Phase::Link(Link {
        node: 0,
        step: LinkStep::Greeting,
    }));
    h.core.cluster.nodes[0].peer.conn = Some(id);
    h.core.cluster.nodes[0].peer.retry_at = None;
    (h, id)
}

/// A logged-in, idle link to a node known to be a reference node.
fn online() -> (Harness, ConnId) {
    let (mut h, id) = linked();
    h.core.cluster.nodes[0].dialect = Dialect::Reference;
    h.feed(id, &GREETING_REPLY);
    h.take_output(id);
    h.feed(id, &[7; 32]);
    assert_eq!(step(&h, id), LinkStep::Idle);
    (h, id)
}

fn step(h: &Harness, id: ConnId) -> LinkStep {
    match h.phase(id) {
        Phase::Link(l) => l.step,
        other => panic!("not a link: {other:?}"),
    }
}

fn closing(h: &Harness, id: ConnId) -> Option<&CloseReason> {
    match h.phase(id) {
        Phase::Closing(r) => Some(r),
        _ => None,
    }
}

fn hello(h: &Harness) -> Vec<u8> {
    let mut v = Vec::new();
    let origin = h.core.cluster.origin;
    encode_request(&Request::ReplHello { origin }, &mut v);
    v
}

/// A logged-in link to a psrtd node, after REPL_HELLO: streaming.
fn streaming() -> (Harness, ConnId) {
    let (mut h, id) = linked();
    h.feed(id, &GREETING_REPLY);
    h.feed(id, &[7; 32]);
    h.feed(id, &[OK]);
    h.take_output(id);
    assert_eq!(step(&h, id), LinkStep::Streaming);
    (h, id)
}

/// The PUBLISH_REPL_SEQ frames in `out`: (seq, topic, message).
fn seq_frames(out: &[u8]) -> Vec<(u64, String, Vec<u8>)> {
    let limits = psrt_protocol::Limits::default();
    let mut rest = out;
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let Ok(psrt_protocol::Decoded::Frame { frame, len }) =
            psrt_protocol::decode_request(rest, &limits)
        else {
            panic!("not a frame: {rest:?}");
        };
        let Request::PublishReplSeq {
            seq,
            topic,
            message,
            ..
        } = frame
        else {
            panic!("{frame:?}");
        };
        frames.push((seq, topic.to_string(), message.to_vec()));
        rest = &rest[len..];
    }
    frames
}

fn topic_request(topic: &str) -> Vec<u8> {
    let mut v = Vec::new();
    encode_request(&Request::PublishRepl { topic }, &mut v);
    v
}

/// The node went down after its link failed: no link, offline, retried
/// after the first backoff (1 s).
fn assert_down(h: &Harness) {
    let n = &h.core.cluster.nodes[0];
    assert_eq!(n.peer.conn, None);
    assert_eq!(n.peer.status, PeerStatus::Offline);
    let (first, at) = (Duration::from_secs(1), n.peer.retry_at.unwrap());
    assert!(
        at >= h.core.now + first && at <= h.core.now + first * 5 / 4,
        "backoff with jitter"
    );
}

#[test]
fn greeting_reply_then_token_brings_the_node_online() {
    let (mut h, id) = linked();
    assert_eq!(h.core.cluster.nodes[0].peer.status, PeerStatus::Connecting);
    // The reply arrives in two pieces.
    h.feed(id, &GREETING_REPLY[..3]);
    assert_eq!(step(&h, id), LinkStep::Greeting);
    assert!(h.take_output(id).is_empty());
    h.feed(id, &GREETING_REPLY[3..]);
    assert_eq!(step(&h, id), LinkStep::Login);
    assert_eq!(h.take_output(id), login_frame("repl", "secret"));
    h.feed(id, &[7; 20]);
    assert_eq!(step(&h, id), LinkStep::Login, "the token is 32 bytes");
    h.feed(id, &[7; 12]);
    assert_eq!(step(&h, id), LinkStep::Hello);
    assert_eq!(h.core.cluster.nodes[0].peer.status, PeerStatus::Online);
    assert_eq!(h.take_output(id), hello(&h));
    h.feed(id, &[OK]);
    assert_eq!(step(&h, id), LinkStep::Streaming);
    assert_eq!(h.core.cluster.nodes[0].dialect, Dialect::Pipelined);
    assert!(h.take_output(id).is_empty(), "nothing queued to send");
    let timeout = h.core.config.timeout;
    assert_eq!(
        due(&h.conns[id], timeout),
        Some(h.core.now + timeout / 2),
        "an idle link pings at half the timeout"
    );
}

#[test]
fn bad_greeting_replies_close_the_link() {
    // A data-socket greeting reply.
    let (mut h, id) = linked();
    h.feed(id, &greeting(StreamKind::Data)[..2]);
    h.feed(id, &[0x01, 0x00]);
    assert!(
        matches!(closing(&h, id), Some(CloseReason::Link(why)) if why.contains("data greeting")),
        "{:?}",
        h.phase(id)
    );
    assert_down(&h);
    assert!(h.take_output(id).is_empty(), "no login is sent");
    // Another protocol version.
    let (mut h, id) = linked();
    h.feed(id, &[0xEE, 0xAA, 0x02, 0x00]);
    assert!(matches!(closing(&h, id), Some(CloseReason::Protocol(_))));
    assert_eq!(h.core.stats.protocol_errors, 1);
    assert_down(&h);
}

#[test]
fn replicated_message_goes_out_in_two_phases() {
    let (mut h, id) = online();
    replicate(&mut h.cx(), 0x7f, "t", b"m");
    assert_eq!(h.core.cluster.nodes[0].queue.len(), 1);
    assert_eq!(step(&h, id), LinkStep::AwaitTopic);
    assert_eq!(h.take_output(id), topic_request("t"));
    h.feed(id, &[OK_WAITING]);
    assert_eq!(step(&h, id), LinkStep::AwaitBody);
    let body = h.take_output(id);
    let limits = h.core.config.limits;
    let decoded = decode_repl_body(&body, &limits).unwrap().frame().unwrap();
    assert_eq!((decoded.priority, decoded.message), (0x7f, &b"m"[..]));
    assert!(decoded.timestamp_ns > 0, "the publish time travels along");
    h.feed(id, &[OK]);
    let n = &h.core.cluster.nodes[0];
    assert_eq!(n.sent, 1);
    assert!(n.queue.is_empty());
    assert_eq!(n.queued_bytes, 0);
    assert_eq!(step(&h, id), LinkStep::Idle);
    assert!(h.take_output(id).is_empty());
}

#[test]
fn a_reference_link_sends_the_next_topic_right_after_a_body() {
    let (mut h, id) = online();
    replicate(&mut h.cx(), 0x7f, "a", b"1");
    replicate(&mut h.cx(), 0x7f, "b", b"2");
    assert_eq!(h.core.cluster.nodes[0].queue.len(), 2);
    assert_eq!(
        h.take_output(id),
        topic_request("a"),
        "the second waits for the first's exchange"
    );
    h.feed(id, &[OK_WAITING]);
    let out = h.take_output(id);
    assert!(
        out.ends_with(&topic_request("b")),
        "the next topic follows the body at once"
    );
    assert_eq!(step(&h, id), LinkStep::AwaitBodyNext);
    // A drop of the oldest now must not take "b": it is in flight.
    assert_eq!(h.core.cluster.nodes[0].in_flight, 2);
    // The node's 01 for the first body, then its answer to the second topic.
    h.feed(id, &[OK]);
    assert!(h.take_output(id).is_empty());
    assert_eq!(step(&h, id), LinkStep::AwaitTopic);
    h.feed(id, &[NOT_REQUIRED]);
    let n = &h.core.cluster.nodes[0];
    assert_eq!((n.sent, n.not_required, n.queue.len()), (1, 1, 0));
}

#[test]
fn not_required_and_access_denied_skip_the_body() {
    let (mut h, id) = online();
    replicate(&mut h.cx(), 0x7f, "t", b"m");
    h.take_output(id);
    h.feed(id, &[NOT_REQUIRED]);
    assert!(h.take_output(id).is_empty(), "no body");
    assert_eq!(step(&h, id), LinkStep::Idle);
    let n = &h.core.cluster.nodes[0];
    assert_eq!((n.not_required, n.dropped, n.sent), (1, 0, 0));
    assert!(n.queue.is_empty());

    replicate(&mut h.cx(), 0x7f, "t", b"m");
    h.take_output(id);
    h.feed(id, &[ACCESS_DENIED]);
    assert!(h.take_output(id).is_empty(), "no body");
    assert_eq!(step(&h, id), LinkStep::Idle);
    let n = &h.core.cluster.nodes[0];
    assert_eq!((n.not_required, n.dropped, n.sent), (1, 1, 0));
    assert!(n.queue.is_empty());
    assert_eq!(n.peer.status, PeerStatus::Online, "the link stays up");
}

#[test]
fn messages_queued_while_logging_in_go_out_after_the_token() {
    let (mut h, id) = linked();
    h.core.cluster.nodes[0].dialect = Dialect::Reference;
    // Room for two one-byte messages on a one-letter topic.
    h.core.cluster.nodes[0].config.queue_bytes = 2 * (2 + QUEUED_MESSAGE_OVERHEAD);
    replicate(&mut h.cx(), 0x7f, "a", b"1");
    replicate(&mut h.cx(), 0x7f, "b", b"2");
    replicate(&mut h.cx(), 0x7f, "c", b"3");
    let n = &h.core.cluster.nodes[0];
    assert_eq!((n.queue.len(), n.dropped), (2, 1), "bounded in bytes");
    assert!(n.peer.dropping, "the episode is logged once");
    assert_eq!(step(&h, id), LinkStep::Greeting);
    assert!(h.take_output(id).is_empty());
    h.feed(id, &GREETING_REPLY);
    assert_eq!(h.take_output(id), login_frame("repl", "secret"));
    h.feed(id, &[7; 32]);
    assert_eq!(step(&h, id), LinkStep::AwaitTopic);
    assert_eq!(
        h.take_output(id),
        topic_request("b"),
        "the oldest was dropped"
    );
}

#[test]
fn unexpected_replies_and_bytes_close_the_link() {
    // 01 to a topic request (only 02, E0 or FE are answers to it).
    let (mut h, id) = online();
    replicate(&mut h.cx(), 0x7f, "t", b"m");
    h.take_output(id);
    h.feed(id, &[OK]);
    assert!(
        matches!(closing(&h, id), Some(CloseReason::Link(why)) if why.contains("0x01")),
        "{:?}",
        h.phase(id)
    );
    assert_down(&h);
    assert_eq!(
        h.core.cluster.nodes[0].queue.len(),
        1,
        "the message is sent again on the next link"
    );
    // A byte that is no reply code at all.
    let (mut h, id) = online();
    replicate(&mut h.cx(), 0x7f, "t", b"m");
    h.feed(id, &[0x55]);
    assert!(matches!(closing(&h, id), Some(CloseReason::Protocol(_))));
    assert_eq!(h.core.stats.protocol_errors, 1);
    assert_down(&h);
    // Bytes on an idle link nobody asked for.
    let (mut h, id) = online();
    h.feed(id, &[OK]);
    assert!(
        matches!(closing(&h, id), Some(CloseReason::Link(why)) if why.contains("nobody asked")),
        "{:?}",
        h.phase(id)
    );
    assert_down(&h);
}

#[test]
fn idle_deadline_sends_a_keepalive_nop() {
    let (mut h, id) = online();
    let timeout = h.core.config.timeout;
    h.advance(timeout / 2);
    dispatch::on_due(&mut h.cx(), id);
    assert_eq!(h.take_output(id), [0x00], "a NOP");
    assert_eq!(step(&h, id), LinkStep::AwaitNop);
    assert_eq!(h.core.stats.timeouts, 0);
    assert_eq!(due(&h.conns[id], timeout), Some(h.core.now + timeout));
    // A message published meanwhile waits for the NOP's answer.
    replicate(&mut h.cx(), 0x7f, "t", b"m");
    assert!(h.take_output(id).is_empty());
    h.feed(id, &[OK]);
    assert_eq!(h.take_output(id), topic_request("t"));
    assert_eq!(step(&h, id), LinkStep::AwaitTopic);
    assert_eq!(h.core.cluster.nodes[0].peer.status, PeerStatus::Online);
}

#[test]
fn a_step_past_its_deadline_closes_and_the_node_goes_down() {
    for stuck in [LinkStep::Greeting, LinkStep::Login, LinkStep::AwaitNop] {
        let (mut h, id) = linked();
        h.core.cluster.nodes[0].dialect = Dialect::Reference;
        if stuck != LinkStep::Greeting {
            h.feed(id, &GREETING_REPLY);
        }
        if stuck == LinkStep::AwaitNop {
            h.feed(id, &[7; 32]);
            h.advance(h.core.config.timeout / 2);
            dispatch::on_due(&mut h.cx(), id);
        }
        h.take_output(id);
        assert_eq!(step(&h, id), stuck);
        let timeout = h.core.config.timeout;
        h.advance(timeout - Duration::from_millis(1));
        assert!(due(&h.conns[id], timeout).unwrap() > h.core.now);
        h.advance(Duration::from_millis(1));
        dispatch::on_due(&mut h.cx(), id);
        assert_eq!(
            closing(&h, id),
            Some(&CloseReason::Timeout("replication link")),
            "{stuck:?}"
        );
        assert_eq!(h.core.stats.timeouts, 1);
        assert_down(&h);
    }
    // Stuck waiting for a body's 01: the message stays queued.
    let (mut h, id) = online();
    replicate(&mut h.cx(), 0x7f, "t", b"m");
    h.feed(id, &[OK_WAITING]);
    h.take_output(id);
    h.advance(h.core.config.timeout);
    dispatch::on_due(&mut h.cx(), id);
    assert_eq!(
        closing(&h, id),
        Some(&CloseReason::Timeout("replication link"))
    );
    assert_down(&h);
    assert_eq!(h.core.cluster.nodes[0].queue.len(), 1);
}

#[test]
fn closing_a_stale_link_leaves_the_node_alone() {
    let (mut h, old) = online();
    // The loop made a new link (the old one is somehow still open).
    let new = h.add(Phase::Link(Link {
        node: 0,
        step: LinkStep::Greeting,
    }));
    h.core.cluster.nodes[0].peer.conn = Some(new);
    dispatch::close(&mut h.cx(), old, CloseReason::Link("test".into()));
    let n = &h.core.cluster.nodes[0];
    assert_eq!(n.peer.conn, Some(new));
    assert_ne!(n.peer.status, PeerStatus::Offline);
    assert_eq!(n.peer.retry_at, None);
}

/// `Conn::last_write` is documented as "last time a write made progress or
/// the queue went from empty to non-empty"; data sockets reset it when
/// their queue fills from empty, but the link's own sends do not, so the
/// write-stall deadline of a keep-alive NOP counts from the link's last
/// write, not from when the NOP was queued.
#[test]
fn a_keepalive_gets_a_full_write_stall_timeout() {
    let (mut h, id) = online();
    let timeout = h.core.config.timeout;
    h.advance(timeout / 2);
    dispatch::on_due(&mut h.cx(), id);
    // The NOP stays queued (the socket is not writable yet).
    assert_eq!(h.conns[id].tx.len(), 1);
    assert_eq!(h.conns[id].last_write, h.core.now);
    assert_eq!(h.conns[id].stall_due(timeout), Some(h.core.now + timeout));
}

#[test]
fn a_psrtd_node_gets_many_messages_in_flight_answered_in_order() {
    let (mut h, id) = streaming();
    for i in 0..5u8 {
        replicate(&mut h.cx(), 0x7f, "t", &[i]);
    }
    let frames = seq_frames(&h.take_output(id));
    let seqs: Vec<u64> = frames.iter().map(|f| f.0).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5], "all sent at once, without waiting");
    assert_eq!(frames[4].2, vec![4]);
    h.feed(id, &[OK, NOT_REQUIRED, OK]);
    let n = &h.core.cluster.nodes[0];
    assert_eq!(
        (n.sent, n.not_required, n.in_flight, n.queue.len()),
        (2, 1, 2, 2)
    );
    // A silent node: the link deadline closes it, the unanswered two are
    // sent again (same sequence numbers) on the next link.
    let timeout = h.core.config.timeout;
    h.advance(timeout / 2);
    dispatch::on_due(&mut h.cx(), id);
    assert_eq!(step(&h, id), LinkStep::Streaming, "not yet");
    h.advance(timeout / 2);
    dispatch::on_due(&mut h.cx(), id);
    assert_eq!(
        closing(&h, id),
        Some(&CloseReason::Timeout("replication link"))
    );
    assert_down(&h);
    let n = &h.core.cluster.nodes[0];
    assert_eq!((n.in_flight, n.queue.len()), (0, 2));
    let id = h.add(Phase::Link(Link {
        node: 0,
        step: LinkStep::Greeting,
    }));
    h.core.cluster.nodes[0].peer.conn = Some(id);
    h.feed(id, &GREETING_REPLY);
    h.feed(id, &[7; 32]);
    h.take_output(id);
    h.feed(id, &[OK]);
    let seqs: Vec<u64> = seq_frames(&h.take_output(id)).iter().map(|f| f.0).collect();
    assert_eq!(seqs, [4, 5]);
    assert_eq!(h.core.cluster.nodes[0].peer.reconnects, 1);
}

#[test]
fn a_reference_node_closing_at_the_hello_is_retried_at_once_without_it() {
    let (mut h, id) = linked();
    h.feed(id, &GREETING_REPLY);
    h.feed(id, &[7; 32]);
    assert_eq!(step(&h, id), LinkStep::Hello);
    dispatch::close(&mut h.cx(), id, CloseReason::Link("closed by peer".into()));
    let n = &h.core.cluster.nodes[0];
    assert_eq!(n.dialect, Dialect::Reference);
    assert_eq!(n.peer.retry_at, Some(h.core.now), "no backoff");
}

#[test]
fn a_streaming_link_pings_when_nothing_is_in_flight() {
    let (mut h, id) = streaming();
    h.advance(h.core.config.timeout / 2);
    dispatch::on_due(&mut h.cx(), id);
    assert_eq!(h.take_output(id), [0x00]);
    replicate(&mut h.cx(), 0x7f, "t", b"m");
    assert_eq!(seq_frames(&h.take_output(id)).len(), 1);
    h.feed(id, &[OK]);
    assert_eq!(h.core.cluster.nodes[0].sent, 0, "that was the NOP's reply");
    h.feed(id, &[OK]);
    assert_eq!(h.core.cluster.nodes[0].sent, 1);
    assert_eq!(step(&h, id), LinkStep::Streaming);
}

#[test]
fn a_failed_connect_tries_the_next_resolved_address_at_once() {
    let (mut h, _) = linked();
    let id = h.add(Phase::Link(Link {
        node: 0,
        step: LinkStep::Connecting,
    }));
    h.core.cluster.nodes[0].peer.conn = Some(id);
    h.core.cluster.nodes[0].peer.addrs = ["127.0.0.2:1".parse().unwrap()].into();
    dispatch::close(&mut h.cx(), id, CloseReason::Link("refused".into()));
    let n = &h.core.cluster.nodes[0];
    assert_eq!((n.peer.conn, n.peer.status), (None, PeerStatus::Connecting));
    assert_eq!(
        n.peer.retry_at,
        Some(h.core.now),
        "no backoff between addresses"
    );
    // The last address failed too: now the node is down, with the backoff.
    h.core.cluster.nodes[0].peer.addrs.clear();
    let id = h.add(Phase::Link(Link {
        node: 0,
        step: LinkStep::Connecting,
    }));
    h.core.cluster.nodes[0].peer.conn = Some(id);
    dispatch::close(&mut h.cx(), id, CloseReason::Link("refused".into()));
    assert_down(&h);
}
