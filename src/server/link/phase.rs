//! The phase of an outgoing replication link: which node, and which step of
//! the exchange it waits in.
//!
//! ```text
//! Connecting → Greeting → Login → Hello → (01) Streaming   (psrtd node)
//!                                        └ (closed) reconnect as a reference node
//! Reference node, one message at a time:
//!                          Login → Idle ⇄ AwaitTopic → (E0) Idle
//!                                           └ (02) AwaitBody → (01) Idle
//!                                           └ (02, another queued) body + next
//!                                             topic: AwaitBodyNext → (01) AwaitTopic
//!                                 Idle → AwaitNop → Idle   (keep-alive)
//! ```
//!
//! `Streaming` keeps up to a window of PUBLISH_REPL_SEQ frames in flight;
//! the replies answer them in order (the node's counters say how many).

use std::time::{Duration, Instant};

/// A replication link: which node, and what it waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Link {
    /// Index in the cluster's node list.
    pub node: usize,
    /// The step of the exchange.
    pub step: LinkStep,
}

/// Steps of a replication link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkStep {
    /// Non-blocking connect in progress.
    Connecting,
    /// Greeting sent (and TLS started if configured); waiting for the reply.
    Greeting,
    /// Login sent; waiting for the token.
    Login,
    /// REPL_HELLO sent; waiting for `01` (a reference node closes).
    Hello,
    /// psrtd node: PUBLISH_REPL_SEQ frames pipelined, replies in order.
    Streaming,
    /// Ready; nothing in flight.
    Idle,
    /// PUBLISH_REPL topic sent; waiting for 02 / E0.
    AwaitTopic,
    /// Body sent; waiting for 01.
    AwaitBody,
    /// Body sent and the next message's topic right after it; waiting for
    /// the body's 01 (then the topic's answer, in `AwaitTopic`).
    AwaitBodyNext,
    /// Keep-alive NOP sent; waiting for 01.
    AwaitNop,
}

impl Link {
    /// An idle link pings at half the timeout; every other step has the
    /// timeout (from the step's start) to get its answer.
    pub(crate) fn due(self, since: Instant, timeout: Duration) -> Instant {
        match self.step {
            LinkStep::Idle | LinkStep::Streaming => since + timeout / 2,
            _ => since + timeout,
        }
    }
}
