//! Phases of a stats-endpoint connection: waiting for the request head,
//! then (for Basic credentials that need bcrypt) waiting for the worker.

use std::time::{Duration, Instant};

use super::head::Route;

/// A stats connection's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for a complete request head (deadline: phase start + timeout).
    Request,
    /// Basic-auth password being verified by the worker (no deadline; input
    /// paused).
    Authenticating(Route),
}

impl Phase {
    /// Whether the request head is still being read.
    pub(crate) fn wants_input(self) -> bool {
        matches!(self, Self::Request)
    }

    /// The request head must arrive within the timeout.
    pub(crate) fn due(self, since: Instant, timeout: Duration) -> Option<Instant> {
        matches!(self, Self::Request).then_some(since + timeout)
    }
}
