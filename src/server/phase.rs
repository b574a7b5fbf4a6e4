//! The server's connection phases, nested by protocol: `Psrt(..)` for PSRT
//! control and data sockets, `Http(..)` for the stats endpoint, `Link(..)`
//! for outgoing replication links, `Mqtt(..)` for MQTT clients, `Bridge(..)`
//! for outgoing bridge connections to MQTT brokers, and `Closing`.
//! Each protocol keeps its per-phase data in its own variant; this file only
//! joins them into the one type the slab holds and answers, per phase,
//! whether input is read and when the next deadline is. Handlers are
//! reached through `dispatch.rs`, the one place that matches on the phase to
//! run protocol code.

use std::time::{Duration, Instant};

use psrt_protocol::{DecodeError, Decoded};

use super::bridge::phase as bridge;
use super::conn::{self, CLOSE_LINGER, CloseReason, InputClock};
use super::http::phase as http;
use super::link::phase as link;
use super::mqtt::phase as mqtt;
use super::psrt::state as psrt;

/// A connection of this server.
pub(crate) type Conn = conn::Conn<Phase>;

/// Where a connection is in its life. Only the phase handlers assign it.
#[derive(Debug)]
pub(crate) enum Phase {
    /// A PSRT client's control or data socket.
    Psrt(psrt::Phase),
    /// A stats endpoint request.
    Http(http::Phase),
    /// An outgoing replication link to a cluster node.
    Link(link::Link),
    /// An MQTT client.
    Mqtt(mqtt::Phase),
    /// An outgoing bridge connection to an MQTT broker.
    Bridge(bridge::BridgeLink),
    /// Flushing what is queued, then closing.
    Closing(CloseReason),
}

/// What a listener's connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListenerKind {
    /// PSRT control and data sockets.
    Psrt,
    /// The stats endpoint.
    Http,
    /// MQTT clients (plain, or TLS from the first byte: the loop starts
    /// the TLS session at accept).
    Mqtt,
}

impl ListenerKind {
    /// The phase a new connection of this kind starts in.
    pub(crate) fn first_phase(self) -> Phase {
        match self {
            Self::Psrt => Phase::Psrt(psrt::Phase::Greeting),
            Self::Http => Phase::Http(http::Phase::Request),
            Self::Mqtt => Phase::Mqtt(mqtt::Phase::Connect),
        }
    }
}

impl Phase {
    /// Short name for logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Psrt(p) => p.name(),
            Self::Http(_) => "http",
            Self::Link(_) => "replication link",
            Self::Bridge(_) => "bridge",
            Self::Mqtt(p) => p.name(),
            Self::Closing(_) => "closing",
        }
    }

    /// The input clock of a phase that reads requests.
    pub(crate) fn input_clock(&mut self) -> Option<&mut InputClock> {
        match self {
            Self::Psrt(psrt::Phase::Control(s)) => Some(&mut s.clock),
            Self::Mqtt(mqtt::Phase::Connected(link)) => Some(&mut link.clock),
            _ => None,
        }
    }
}

/// What a phase handler did with the front of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Consumed this many bytes.
    Used(usize),
    /// Needs at least this many more bytes.
    Need(usize),
}

/// Maps a decoder outcome: an incomplete frame becomes `Need`, an error a
/// protocol close.
pub(crate) fn frame<T>(
    decoded: Result<Decoded<T>, DecodeError>,
) -> Result<Result<(T, usize), Step>, CloseReason> {
    match decoded {
        Ok(Decoded::Frame { frame, len }) => Ok(Ok((frame, len))),
        Ok(Decoded::Incomplete { need }) => Ok(Err(Step::Need(need))),
        Err(e) => Err(CloseReason::Protocol(e)),
    }
}

/// Whether input should be read and decoded now.
pub(crate) fn wants_input(conn: &Conn) -> bool {
    match &conn.phase {
        Phase::Psrt(p) => p.wants_input(conn.tx.len()),
        Phase::Http(p) => p.wants_input(),
        Phase::Link(_) => true,
        // A broker that does not read our PUBACKs stops being read.
        Phase::Bridge(_) => conn.tx.len() < bridge::PAUSE_INPUT_TX_BYTES,
        Phase::Mqtt(p) => p.wants_input(conn.tx.len()),
        Phase::Closing(_) => false,
    }
}

/// The next instant something must happen on this connection: a phase
/// deadline, an idle or progress timeout, a beacon, or a write stall.
pub(crate) fn due(conn: &Conn, timeout: Duration) -> Option<Instant> {
    let stall = conn.stall_due(timeout);
    let phase = match &conn.phase {
        Phase::Psrt(p) => p.due(conn, timeout),
        Phase::Http(p) => p.due(conn.phase_since, timeout),
        Phase::Link(l) => Some(l.due(conn.phase_since, timeout)),
        Phase::Bridge(b) => Some(b.due(conn.phase_since, timeout)),
        Phase::Mqtt(p) => p.due(conn, timeout),
        Phase::Closing(_) => Some(conn.phase_since + CLOSE_LINGER),
    };
    match (phase, stall) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    /// An idle client costs two slab entries and one session: these sizes
    /// are most of the per-client memory goal (1.5 KiB with a subscription,
    /// measured in BENCHMARKS.md). Growing them needs a reason.
    #[test]
    fn idle_connections_stay_small() {
        assert!(
            size_of::<super::Conn>() <= 296,
            "Conn: {}",
            size_of::<super::Conn>()
        );
        assert!(
            size_of::<super::Phase>() <= 32,
            "Phase: {}",
            size_of::<super::Phase>()
        );
        // 216: 200, plus the messages sent and dropped of the stats page's
        // clients table (16 bytes; the Conn did not grow for them).
        let session = size_of::<crate::server::psrt::state::Session>();
        assert!(session <= 216, "Session: {session}");
    }

    #[test]
    fn phases_name_themselves_and_start_right() {
        use super::{ListenerKind, Phase, psrt};
        assert!(matches!(
            ListenerKind::Psrt.first_phase(),
            Phase::Psrt(psrt::Phase::Greeting)
        ));
        assert!(matches!(ListenerKind::Http.first_phase(), Phase::Http(_)));
        assert_eq!(ListenerKind::Http.first_phase().name(), "http");
        assert_eq!(Phase::Psrt(psrt::Phase::DataHello).name(), "data hello");
        assert!(Phase::Psrt(psrt::Phase::Greeting).input_clock().is_none());
    }
}
