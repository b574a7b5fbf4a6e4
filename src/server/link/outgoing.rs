//! The connect state of an outgoing peer, the same for a cluster node
//! (`nodes.rs`) and a bridge to an MQTT broker (`bridge/state.rs`): the
//! connection while one exists, the status `/status` shows, the resolved
//! addresses still to try, the retry time and its growing backoff (1 s to
//! 30 s, with jitter), the reconnect count and the flag of a drop episode
//! (its queue full: logged once when it starts and once when it ends).
//! What a peer says once connected (a node's login, a bridge's CONNACK)
//! stays with its protocol.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::server::conn::ConnId;

/// What one queued message costs a cluster or bridge queue besides its
/// topic and payload: its queue slot and the headers of its topic and
/// payload allocations (counted in every queue that holds it, so the bound
/// errs on the safe side). Without it a flood of tiny messages would fill
/// several times the configured bytes.
pub(crate) const QUEUED_MESSAGE_OVERHEAD: usize = 128;

/// First retry delay after a connection fails; doubles up to [`MAX_BACKOFF`].
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// An outgoing peer's link state, as `/status` and the stats page show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerStatus {
    /// Resolving, connecting, or logging in (a bridge: waiting for CONNACK).
    Connecting,
    /// Logged in (a bridge: CONNACK accepted): forwarding.
    Online,
    /// Down; retried later.
    Offline,
}

impl PeerStatus {
    /// The word `/status` and the stats page use (the reference's styles).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Online => "online",
            Self::Offline => "offline",
        }
    }
}

/// The connect bookkeeping of one outgoing peer.
#[derive(Debug)]
pub(crate) struct OutgoingPeer {
    /// The connection, while one exists.
    pub conn: Option<ConnId>,
    /// What `/status` shows.
    pub status: PeerStatus,
    /// When to connect again (`None` while connected or resolving).
    pub retry_at: Option<Instant>,
    backoff: Duration,
    /// Resolved addresses not tried yet in this attempt.
    pub addrs: VecDeque<SocketAddr>,
    connects: u64,
    /// Connections made (logged in) after the first.
    pub reconnects: u64,
    /// Dropping because the queue is full (logged once per episode).
    pub dropping: bool,
}

impl OutgoingPeer {
    /// A peer first tried at `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            conn: None,
            status: PeerStatus::Connecting,
            retry_at: Some(now),
            backoff: FIRST_BACKOFF,
            addrs: VecDeque::new(),
            connects: 0,
            reconnects: 0,
            dropping: false,
        }
    }

    /// Its retry time has come and no connection exists: true once (the
    /// retry time is cleared; the caller connects or resolves).
    pub(crate) fn due(&mut self, now: Instant) -> bool {
        if self.conn.is_some() || self.retry_at.is_none_or(|t| t > now) {
            return false;
        }
        self.retry_at = None;
        true
    }

    /// Logged in (a bridge: CONNACK accepted): online, the backoff starts
    /// again from [`FIRST_BACKOFF`], a reconnect is counted after the first.
    pub(crate) fn online(&mut self) {
        self.status = PeerStatus::Online;
        self.backoff = FIRST_BACKOFF;
        if self.connects > 0 {
            self.reconnects += 1;
        }
        self.connects += 1;
    }

    /// A connect failed: if another resolved address is left, it is tried
    /// now (true); otherwise the caller marks the peer down.
    pub(crate) fn try_next_addr(&mut self, now: Instant) -> bool {
        if self.addrs.is_empty() {
            return false;
        }
        self.conn = None;
        self.status = PeerStatus::Connecting;
        self.retry_at = Some(now);
        true
    }

    /// The connection failed or could not be made: offline, and the next
    /// attempt waits for the backoff with jitter. Returns the delay.
    pub(crate) fn down(&mut self, now: Instant) -> Duration {
        self.conn = None;
        self.status = PeerStatus::Offline;
        self.addrs.clear();
        let delay = retry_delay(&mut self.backoff);
        self.retry_at = Some(now + delay);
        delay
    }

    /// Tried again at once, the backoff from the start (a node found to
    /// speak the reference exchange).
    pub(crate) fn retry_now(&mut self, now: Instant) {
        self.backoff = FIRST_BACKOFF;
        self.retry_at = Some(now);
    }

    /// Messages were dropped: true if this starts an episode (log it).
    pub(crate) fn start_dropping(&mut self) -> bool {
        !std::mem::replace(&mut self.dropping, true)
    }

    /// The queue's `used` bytes are at most half its `bound` again after
    /// dropping: the episode is over (true once, for the log line).
    pub(crate) fn drop_episode_over(&mut self, used: u64, bound: u64) -> bool {
        let over = self.dropping && used <= bound / 2;
        if over {
            self.dropping = false;
        }
        over
    }
}

/// The delay before the next attempt of an outgoing connection: the
/// current backoff plus up to a quarter of it at random, so peers do not
/// retry in step; the backoff doubles up to [`MAX_BACKOFF`].
fn retry_delay(backoff: &mut Duration) -> Duration {
    let delay = *backoff + backoff.mul_f64(jitter_fraction() * 0.25);
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    delay
}

/// A number in [0, 1) that differs between calls and processes.
pub(crate) fn jitter_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_once_and_only_without_a_connection() {
        let now = Instant::now();
        let mut p = OutgoingPeer::new(now);
        assert!(p.due(now));
        assert!(!p.due(now), "the retry time is taken");
        p.retry_now(now);
        p.conn = Some(3);
        assert!(!p.due(now), "connected");
        p.conn = None;
        p.retry_at = Some(now + Duration::from_secs(1));
        assert!(!p.due(now));
        assert!(p.due(now + Duration::from_secs(1)));
    }

    #[test]
    fn status_reconnects_and_addresses() {
        let now = Instant::now();
        let mut p = OutgoingPeer::new(now);
        p.online();
        assert_eq!((p.status, p.reconnects), (PeerStatus::Online, 0));
        assert!(!p.try_next_addr(now), "no address left");
        p.addrs = ["127.0.0.1:1".parse().unwrap()].into();
        p.conn = Some(1);
        assert!(p.try_next_addr(now));
        assert_eq!((p.conn, p.status), (None, PeerStatus::Connecting));
        assert_eq!(p.retry_at, Some(now), "no backoff between addresses");
        let delay = p.down(now);
        assert_eq!(p.status, PeerStatus::Offline);
        assert!(p.addrs.is_empty());
        assert!(delay >= FIRST_BACKOFF && delay <= FIRST_BACKOFF + FIRST_BACKOFF / 4);
        assert_eq!(p.retry_at, Some(now + delay));
        let second = p.down(now);
        assert!(second >= FIRST_BACKOFF * 2, "the backoff doubles");
        p.online();
        assert_eq!(p.reconnects, 1);
        assert!(
            p.down(now) <= FIRST_BACKOFF + FIRST_BACKOFF / 4,
            "reset online"
        );
    }

    #[test]
    fn a_drop_episode_starts_and_ends_once() {
        let mut p = OutgoingPeer::new(Instant::now());
        assert!(!p.drop_episode_over(0, 100), "no episode");
        assert!(p.start_dropping());
        assert!(!p.start_dropping(), "logged once");
        assert!(!p.drop_episode_over(51, 100), "above half the bound");
        assert!(p.drop_episode_over(50, 100));
        assert!(!p.drop_episode_over(0, 100), "over once");
        assert!(p.start_dropping(), "a new episode");
    }
}
