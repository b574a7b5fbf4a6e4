//! The connection layer: one socket, whatever protocol runs on it — its
//! transport (plain or TLS), its peer, its input buffer, its send queue, and
//! the times its deadlines are computed from. [`Conn`] is generic over the
//! phase type, so this layer knows nothing of the protocols above it: the
//! server's `Phase` (nested by protocol) is defined in `phase.rs` and
//! plugged in there.
//!
//! Nothing here touches other connections or shared state.

mod close;
mod recv;
mod send;
mod stream;
mod transport;

use std::net::IpAddr;
use std::time::{Duration, Instant};

pub(crate) use close::CloseReason;
pub(crate) use recv::{RecvBuf, RxPool};
pub(crate) use send::{Flushed, SendQueue, SharedBuf, TxPool};
pub(crate) use stream::{Peer, Stream};
pub(crate) use transport::Transport;

/// Slab key of a connection.
pub(crate) type ConnId = usize;

/// A partial frame must make progress at this rate (bytes per second) on top
/// of the protocol timeout, so a large frame on a slow link survives while a
/// byte-per-timeout drip does not.
pub(crate) const MIN_FRAME_RATE: u64 = 1024;

/// How long a closing connection may take to flush what is queued.
pub(crate) const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// One socket in phase `P`.
#[derive(Debug)]
pub(crate) struct Conn<P> {
    /// The socket (plain, or TLS after a `01` greeting).
    pub stream: Transport,
    /// Who is on the other end.
    pub peer: Peer,
    /// Unique for the server's lifetime (slab keys are reused).
    pub serial: u64,
    /// What the connection is waiting for.
    pub phase: P,
    /// Input not yet decoded.
    pub rx: RecvBuf,
    /// Output not yet written.
    pub tx: SendQueue,
    /// When the current phase began (handshake deadlines, closing linger).
    pub phase_since: Instant,
    /// Last time a write made progress or the queue went from empty to
    /// non-empty (data beacons, write stall).
    pub last_write: Instant,
    /// Earliest deadline queued in the timer heap for this connection.
    pub armed: Option<Instant>,
    /// The last write did not hit `WouldBlock`.
    pub writable: bool,
    /// Queued on the loop's flush list.
    pub in_flush_list: bool,
    /// Queued on the loop's ready list (input budget ran out).
    pub in_ready_list: bool,
    /// This accepted connection counts against its address in the per-IP
    /// limit (outgoing links count against nothing).
    pub counted_ip: bool,
    /// Counts against its address as a connection that has not logged in
    /// (or bound its data socket) yet: `server.max_handshakes_per_ip`.
    pub counted_handshake: bool,
    /// The peer ended its sending side (a read returned 0) on a socket that
    /// stays open to be written to: nothing more is read from it.
    pub input_ended: bool,
}

impl<P> Conn<P> {
    /// A new connection in `phase`.
    pub(crate) fn new(stream: Stream, peer: Peer, serial: u64, phase: P, now: Instant) -> Self {
        Self {
            stream: Transport::Plain(stream),
            peer,
            serial,
            phase,
            rx: RecvBuf::default(),
            tx: SendQueue::default(),
            phase_since: now,
            last_write: now,
            armed: None,
            writable: true,
            in_flush_list: false,
            in_ready_list: false,
            counted_ip: false,
            counted_handshake: false,
            input_ended: false,
        }
    }

    /// Source IP for per-IP accounting.
    pub(crate) fn ip(&self) -> Option<IpAddr> {
        self.peer.ip()
    }

    /// Enters a new phase.
    pub(crate) fn set_phase(&mut self, phase: P, now: Instant) {
        self.phase = phase;
        self.phase_since = now;
    }

    /// Call before queueing output: the write-stall clock starts when the
    /// queue goes from empty to non-empty, not at an older write.
    pub(crate) fn output_started(&mut self, now: Instant) {
        if self.tx.is_empty() {
            self.last_write = now;
        }
    }

    /// Output (plaintext or TLS records) waits for the socket.
    pub(crate) fn has_output(&self) -> bool {
        !self.tx.is_empty() || self.stream.has_pending_output()
    }

    /// The write-stall deadline, while output is pending.
    pub(crate) fn stall_due(&self, timeout: Duration) -> Option<Instant> {
        (!self.tx.is_empty()).then(|| self.last_write + timeout)
    }
}

/// Input progress of a connection that reads requests: when the last one
/// completed and since when a partial frame waits. Kept by the phases that
/// need it (not by every socket).
#[derive(Debug, Clone, Copy)]
pub(crate) struct InputClock {
    /// Last complete request (idle deadline).
    pub last_request: Instant,
    /// First byte of the incomplete frame in the input buffer, if any.
    pub partial_since: Option<Instant>,
    /// Last read that returned bytes (a stalled partial frame).
    pub last_input: Instant,
}

impl InputClock {
    /// A clock started at `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            last_request: now,
            partial_since: None,
            last_input: now,
        }
    }

    /// The idle or partial-frame deadline: idle, the last request plus the
    /// timeout; mid-frame, at least [`MIN_FRAME_RATE`] on average and never
    /// a silence longer than the timeout.
    pub(crate) fn due(&self, timeout: Duration, buffered: usize) -> Instant {
        match self.partial_since {
            Some(since) => {
                let allowance = Duration::from_millis(buffered as u64 * 1000 / MIN_FRAME_RATE);
                (since + timeout + allowance).min(self.last_input + timeout)
            }
            None => self.last_request + timeout,
        }
    }
}

#[cfg(test)]
pub(crate) use stream::test_pair;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_clock_deadlines() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(5);
        let mut c = InputClock::new(t0);
        assert_eq!(
            c.due(timeout, 0),
            t0 + timeout,
            "idle: last request + timeout"
        );
        c.partial_since = Some(t0);
        c.last_input = t0 + Duration::from_secs(4);
        // 10 KiB buffered earns 10 s on top of the timeout, but a silence of
        // more than the timeout since the last byte still ends it.
        assert_eq!(c.due(timeout, 10 * 1024), t0 + Duration::from_secs(9));
        c.last_input = t0 + Duration::from_secs(20);
        assert_eq!(c.due(timeout, 10 * 1024), t0 + Duration::from_secs(15));
    }

    #[test]
    fn stall_deadline_only_with_output() {
        let t0 = Instant::now();
        let (stream, peer) = test_pair();
        let mut c = Conn::new(stream, peer, 1, (), t0);
        assert_eq!(c.stall_due(Duration::from_secs(5)), None);
        let mut pool = TxPool::default();
        c.tx.push_slice(b"x", false, &mut pool);
        assert_eq!(
            c.stall_due(Duration::from_secs(5)),
            Some(t0 + Duration::from_secs(5))
        );
        assert!(c.has_output());
    }
}
