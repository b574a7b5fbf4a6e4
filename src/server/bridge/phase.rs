//! The phase of a bridge's connection to its broker.
//!
//! ```text
//! Connecting → (CONNECT sent, TLS started for mqtts) ConnAck
//!   → (CONNACK 0: SUBSCRIBE `in`, resend in-flight with DUP) Up ⇄ Ping
//! ```
//!
//! `Up` sends a PINGREQ after half the keep-alive (`phase_since` is the
//! last PINGRESP); `Ping` waits the keep-alive for the PINGRESP, then the
//! broker is taken for silent and the connection closed. Connecting and
//! ConnAck have the server's `proto.timeout`.

use std::time::{Duration, Instant};

/// Bytes queued for the broker beyond which its input is no longer read
/// (it resumes once the queue drains): a broker that floods us with QoS 1
/// messages but does not read our PUBACKs cannot grow the queue.
pub(crate) const PAUSE_INPUT_TX_BYTES: usize = 4 << 20;

/// A bridge connection: which bridge, its keep-alive, and its step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BridgeLink {
    /// Key of the bridge in `Bridges`.
    pub bridge: u32,
    /// MQTT keep-alive, seconds.
    pub keepalive: u16,
    /// The step.
    pub step: BridgeStep,
}

/// Steps of a bridge connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BridgeStep {
    /// Non-blocking connect in progress.
    Connecting,
    /// CONNECT sent; waiting for CONNACK.
    ConnAck,
    /// Forwarding; the next PINGREQ is due at half the keep-alive.
    Up,
    /// PINGREQ sent; waiting for PINGRESP.
    Ping,
}

impl BridgeLink {
    /// The step's deadline.
    pub(crate) fn due(self, since: Instant, timeout: Duration) -> Instant {
        let keepalive = Duration::from_secs(u64::from(self.keepalive));
        match self.step {
            BridgeStep::Connecting | BridgeStep::ConnAck => since + timeout,
            BridgeStep::Up => since + keepalive / 2,
            BridgeStep::Ping => since + keepalive,
        }
    }
}
