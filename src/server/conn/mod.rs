//! One socket of a client: its stream, its phase (an explicit state machine,
//! see `LIFECYCLE.md` in this folder), its input buffer and its send queue,
//! and the times its deadlines are computed from.
//!
//! Nothing here touches other connections or the shared core; the phase
//! handlers in `handshake.rs` and `control.rs` do that.

mod phase;
mod recv;
mod send;
mod stream;

use std::net::IpAddr;
use std::time::{Duration, Instant};

pub use phase::{CloseReason, DataLink, Link, LinkStep, Phase, Session};
pub use recv::{RX_CHUNK, RecvBuf, RxPool};
pub use send::{Flushed, SendQueue, TX_CHUNK, TxPool};
pub use stream::{Peer, Stream, Transport};

/// Slab key of a connection.
pub type ConnId = usize;

/// Control-socket replies queued before the server stops reading requests
/// from that client (it is not reading its replies).
pub const CONTROL_TX_PAUSE: usize = 64 * 1024;

/// A partial frame must make progress at this rate (bytes per second) on top
/// of the protocol timeout, so a large frame on a slow link survives while a
/// byte-per-timeout drip does not.
pub const MIN_FRAME_RATE: u64 = 1024;

/// How long a closing connection may take to flush what is queued.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// One socket.
#[derive(Debug)]
pub struct Conn {
    /// The socket (plain, or TLS after a `01` greeting).
    pub stream: Transport,
    /// Who is on the other end.
    pub peer: Peer,
    /// Unique for the server's lifetime (slab keys are reused).
    pub serial: u64,
    /// What the connection is waiting for.
    pub phase: Phase,
    /// Input not yet decoded.
    pub rx: RecvBuf,
    /// Output not yet written.
    pub tx: SendQueue,
    /// When the current phase began (handshake deadlines, closing linger).
    pub phase_since: Instant,
    /// Last complete request (control idle deadline).
    pub last_request: Instant,
    /// First byte of the incomplete frame in `rx`, if any.
    pub partial_since: Option<Instant>,
    /// Last read that returned bytes (a stalled partial frame).
    pub last_input: Instant,
    /// Last time a write made progress or the queue went from empty to
    /// non-empty (data beacons, write stall).
    pub last_write: Instant,
    /// The last write did not hit `WouldBlock`.
    pub writable: bool,
    /// Queued on the loop's flush list.
    pub in_flush_list: bool,
    /// Queued on the loop's ready list (input budget ran out).
    pub in_ready_list: bool,
    /// Earliest deadline queued in the timer heap for this connection.
    pub armed: Option<Instant>,
    /// The source address this accepted connection counts against in the
    /// per-IP limit (outgoing links count against nothing).
    pub counted_ip: Option<IpAddr>,
}

impl Conn {
    /// A freshly accepted connection.
    pub fn new(stream: Stream, peer: Peer, serial: u64, now: Instant) -> Self {
        Self {
            stream: Transport::Plain(stream),
            peer,
            serial,
            phase: Phase::Greeting,
            rx: RecvBuf::default(),
            tx: SendQueue::default(),
            phase_since: now,
            last_request: now,
            partial_since: None,
            last_input: now,
            last_write: now,
            writable: true,
            in_flush_list: false,
            in_ready_list: false,
            armed: None,
            counted_ip: None,
        }
    }

    /// Source IP for per-IP accounting.
    pub fn ip(&self) -> Option<IpAddr> {
        self.peer.ip()
    }

    /// Enters a new phase.
    pub fn set_phase(&mut self, phase: Phase, now: Instant) {
        self.phase = phase;
        self.phase_since = now;
    }

    /// Whether input should be read and decoded now.
    pub fn wants_input(&self) -> bool {
        match &self.phase {
            Phase::Greeting
            | Phase::TlsHandshake(_)
            | Phase::Login
            | Phase::DataHello
            | Phase::HttpRequest
            | Phase::Link(_) => true,
            Phase::Control(_) => self.tx.len() < CONTROL_TX_PAUSE,
            Phase::Authenticating
            | Phase::HttpAuthenticating(_)
            | Phase::Data(_)
            | Phase::Closing(_) => false,
        }
    }

    /// The next instant something must happen on this connection: a phase
    /// deadline, an idle or progress timeout, a beacon, or a write stall.
    pub fn due(&self, timeout: Duration) -> Option<Instant> {
        let stall = (!self.tx.is_empty()).then(|| self.last_write + timeout);
        let phase = match &self.phase {
            Phase::Greeting
            | Phase::TlsHandshake(_)
            | Phase::Login
            | Phase::DataHello
            | Phase::HttpRequest => Some(self.phase_since + timeout),
            Phase::Authenticating | Phase::HttpAuthenticating(_) => None,
            Phase::Control(_) => Some(match self.partial_since {
                Some(since) => {
                    let allowance =
                        Duration::from_millis(self.rx.len() as u64 * 1000 / MIN_FRAME_RATE);
                    // At least MIN_FRAME_RATE on average, and never a
                    // silence longer than the timeout.
                    (since + timeout + allowance).min(self.last_input + timeout)
                }
                None => self.last_request + timeout,
            }),
            // Pending output is its own keep-alive; a beacon queued behind it
            // would only push the write-stall deadline back.
            Phase::Data(link) => self.tx.is_empty().then(|| self.last_write + link.beacon),
            // An idle link pings at half the timeout; every other step has
            // the timeout to get its answer.
            Phase::Link(Link {
                step: LinkStep::Idle,
                ..
            }) => Some(self.phase_since + timeout / 2),
            Phase::Link(_) => Some(self.phase_since + timeout),
            Phase::Closing(_) => Some(self.phase_since + CLOSE_LINGER),
        };
        match (phase, stall) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
