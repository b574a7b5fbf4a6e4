//! The echo filter: when a bridge's `in` filters cover topics its `out`
//! filters forward, the broker sends our own messages back. Each message
//! sent on the bridge whose topic an `in` filter covers is remembered as a
//! hash of (topic, payload) with its send time; an inbound PUBLISH with a
//! remembered hash is that echo: it is acknowledged but not delivered
//! locally again, and the entry is forgotten.
//!
//! Bounded: at most [`MAX_ENTRIES`] entries, each kept [`TTL`]; the oldest
//! goes first. An echo that arrives after its entry went (more than
//! `MAX_ENTRIES` overlapping messages in flight, or a broker slower than
//! `TTL`) is delivered locally a second time; a message from another broker
//! client identical in topic and payload to one we sent within `TTL` is
//! taken for an echo once.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// Entries kept at most.
pub(crate) const MAX_ENTRIES: usize = 4096;
/// How long an entry waits for its echo.
pub(crate) const TTL: Duration = Duration::from_secs(60);

/// Sent messages that may come back.
#[derive(Debug, Default)]
pub(crate) struct Echo {
    seed: std::collections::hash_map::RandomState,
    entries: VecDeque<(u64, Instant)>,
}

impl Echo {
    fn hash(&self, topic: &str, payload: &[u8]) -> u64 {
        let mut h = self.seed.build_hasher();
        h.write(topic.as_bytes());
        h.write_u8(0xff);
        h.write(payload);
        h.finish()
    }

    fn expire(&mut self, now: Instant) {
        while self
            .entries
            .front()
            .is_some_and(|&(_, at)| now.saturating_duration_since(at) > TTL)
        {
            self.entries.pop_front();
        }
    }

    /// A message was sent to the broker.
    pub(crate) fn sent(&mut self, topic: &str, payload: &[u8], now: Instant) {
        self.expire(now);
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.pop_front();
        }
        let h = self.hash(topic, payload);
        self.entries.push_back((h, now));
    }

    /// A message came from the broker: true if it is the echo of one we
    /// sent (the entry is used up).
    pub(crate) fn is_echo(&mut self, topic: &str, payload: &[u8], now: Instant) -> bool {
        self.expire(now);
        if self.entries.is_empty() {
            return false;
        }
        let h = self.hash(topic, payload);
        match self.entries.iter().position(|&(e, _)| e == h) {
            Some(i) => {
                self.entries.remove(i);
                true
            }
            None => false,
        }
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_is_recognised_once_and_expires() {
        let t0 = Instant::now();
        let mut e = Echo::default();
        e.sent("a/b", b"1", t0);
        e.sent("a/b", b"1", t0);
        assert!(!e.is_echo("a/b", b"2", t0), "another payload");
        assert!(!e.is_echo("a/c", b"1", t0), "another topic");
        assert!(e.is_echo("a/b", b"1", t0));
        assert!(e.is_echo("a/b", b"1", t0), "sent twice, echoed twice");
        assert!(!e.is_echo("a/b", b"1", t0), "used up");
        e.sent("x", b"", t0);
        assert!(!e.is_echo("x", b"", t0 + TTL + Duration::from_secs(1)));
        assert_eq!(e.len(), 0);
    }

    #[test]
    fn bounded() {
        let t0 = Instant::now();
        let mut e = Echo::default();
        for i in 0..MAX_ENTRIES + 10 {
            e.sent("t", &i.to_le_bytes(), t0);
        }
        assert_eq!(e.len(), MAX_ENTRIES);
        assert!(
            !e.is_echo("t", &0usize.to_le_bytes(), t0),
            "the oldest went"
        );
        assert!(e.is_echo("t", &(MAX_ENTRIES + 9).to_le_bytes(), t0));
    }
}
