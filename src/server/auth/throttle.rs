//! Login brute-force protection: failed TCP logins are counted per source
//! IP; an address that fails too often within a minute has its new
//! connections refused for a while (10 s, doubling with each repeat, at most
//! 5 min). Accounts are never locked: other addresses log in normally.
//!
//! Only TCP counts — a UDP source address can be spoofed, so counting UDP
//! failures would let anyone block someone else's address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The window failures are counted in.
const WINDOW: Duration = Duration::from_secs(60);
/// First block; doubles per repeat.
const BASE_BLOCK: Duration = Duration::from_secs(10);
/// Longest block.
const MAX_BLOCK: Duration = Duration::from_secs(300);
/// An address quiet for this long is forgotten (its repeat count too).
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Addresses tracked at most; beyond it the quiet ones are forgotten first.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug)]
struct Record {
    window_start: Instant,
    failures: u32,
    blocks: u32,
    blocked_until: Option<Instant>,
    last_seen: Instant,
}

/// Failure counts per source address.
#[derive(Debug, Default)]
pub(crate) struct LoginThrottle {
    /// Failures per address and minute that start a block; 0 = off.
    max_failures: u32,
    records: HashMap<IpAddr, Record>,
}

impl LoginThrottle {
    pub(crate) fn new(max_failures: u32) -> Self {
        Self {
            max_failures,
            records: HashMap::new(),
        }
    }

    /// How much longer `ip` is refused, if it is.
    pub(crate) fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let until = self.records.get(&ip)?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// Counts a failed login; returns the block it starts, if any.
    pub(crate) fn failure(&mut self, ip: IpAddr, now: Instant) -> Option<(u32, Duration)> {
        if self.max_failures == 0 {
            return None;
        }
        if self.records.len() >= MAX_ENTRIES && !self.records.contains_key(&ip) {
            self.forget_quiet(now);
        }
        let r = self.records.entry(ip).or_insert(Record {
            window_start: now,
            failures: 0,
            blocks: 0,
            blocked_until: None,
            last_seen: now,
        });
        if now.duration_since(r.last_seen) >= FORGET_AFTER {
            r.blocks = 0;
        }
        r.last_seen = now;
        if now.duration_since(r.window_start) >= WINDOW {
            r.window_start = now;
            r.failures = 0;
        }
        r.failures += 1;
        if r.failures < self.max_failures {
            return None;
        }
        let failures = r.failures;
        let block = BASE_BLOCK
            .saturating_mul(1 << r.blocks.min(8))
            .min(MAX_BLOCK);
        r.blocks += 1;
        r.failures = 0;
        r.window_start = now;
        r.blocked_until = Some(now + block);
        Some((failures, block))
    }

    /// A successful login clears the address's failure count.
    pub(crate) fn success(&mut self, ip: IpAddr) {
        if let Some(r) = self.records.get_mut(&ip) {
            r.failures = 0;
        }
    }

    fn forget_quiet(&mut self, now: Instant) {
        self.records.retain(|_, r| {
            r.blocked_until.is_some_and(|u| u > now) || now.duration_since(r.last_seen) < WINDOW
        });
        if self.records.len() >= MAX_ENTRIES {
            self.records
                .retain(|_, r| r.blocked_until.is_some_and(|u| u > now));
        }
    }

    /// Addresses tracked.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_doubles() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let t0 = Instant::now();
        let mut t = LoginThrottle::new(3);
        assert_eq!(t.failure(ip, t0), None);
        assert_eq!(t.failure(ip, t0), None);
        assert_eq!(t.failure(ip, t0), Some((3, BASE_BLOCK)));
        assert_eq!(t.blocked(ip, t0), Some(BASE_BLOCK));
        assert_eq!(
            t.blocked(other, t0),
            None,
            "other addresses are not affected"
        );
        let later = t0 + BASE_BLOCK;
        assert_eq!(t.blocked(ip, later), None);
        for _ in 0..2 {
            t.failure(ip, later);
        }
        assert_eq!(t.failure(ip, later), Some((3, BASE_BLOCK * 2)));
        // Failures spread over more than the window never block.
        let mut slow = LoginThrottle::new(3);
        for i in 0..10 {
            assert_eq!(slow.failure(ip, t0 + WINDOW * i), None);
        }
        // A success clears the count.
        let mut s = LoginThrottle::new(3);
        s.failure(ip, t0);
        s.failure(ip, t0);
        s.success(ip);
        assert_eq!(s.failure(ip, t0), None);
    }

    #[test]
    fn off_and_bounded() {
        let t0 = Instant::now();
        let mut off = LoginThrottle::new(0);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..100 {
            assert_eq!(off.failure(ip, t0), None);
        }
        let mut t = LoginThrottle::new(5);
        for i in 0..(MAX_ENTRIES as u32 + 10) {
            t.failure(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(t.len() <= MAX_ENTRIES + 1);
        let mut t = LoginThrottle::new(5);
        for i in 0..(MAX_ENTRIES as u32 + 10) {
            t.failure(IpAddr::from(i.to_be_bytes()), t0 + WINDOW * 2 * (i / 5000));
        }
        assert!(t.len() <= MAX_ENTRIES);
    }
}
