//! Login brute-force protection aimed at the guesser. Failed password
//! checks (PSRT logins and HTTP Basic credentials) are counted per (source
//! address, login): a pair that fails `max_login_failures` times within a
//! minute has its further attempts refused for a while (10 s, doubling with
//! each repeat, at most 5 min) without a password check. Another login's
//! success does not reset a pair, and a refused pair does not lock out other
//! users from the same address. A coarser per-address limit
//! ([`ADDRESS_FACTOR`] times higher, all logins together) refuses the
//! address's new PSRT connections the same way, against guessing across
//! many user names. The stats endpoint's listener is never refused (so
//! `/health` always answers). Accounts are never locked: other addresses
//! log in normally.
//!
//! Only TCP counts — a UDP source address can be spoofed, so counting UDP
//! failures would let anyone block someone else's address.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The window failures are counted in.
const WINDOW: Duration = Duration::from_secs(60);
/// First block; doubles per repeat.
const BASE_BLOCK: Duration = Duration::from_secs(10);
/// Longest block.
const MAX_BLOCK: Duration = Duration::from_secs(300);
/// A key quiet for this long is forgotten (its repeat count too).
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Keys tracked at most per table; beyond it the quiet ones are forgotten
/// first.
const MAX_ENTRIES: usize = 10_000;
/// The per-address limit is this many times the per-login one.
pub(crate) const ADDRESS_FACTOR: u32 = 10;

#[derive(Debug)]
struct Record {
    window_start: Instant,
    failures: u32,
    blocks: u32,
    blocked_until: Option<Instant>,
    last_seen: Instant,
}

/// Failure counts and blocks per key.
#[derive(Debug)]
struct Tracker<K> {
    /// Failures per minute that start a block; 0 = off.
    max_failures: u32,
    records: HashMap<K, Record>,
}

impl<K: Hash + Eq> Tracker<K> {
    fn new(max_failures: u32) -> Self {
        Self {
            max_failures,
            records: HashMap::new(),
        }
    }

    fn blocked(&self, key: &K, now: Instant) -> Option<Duration> {
        let until = self.records.get(key)?.blocked_until?;
        (until > now).then(|| until - now)
    }

    fn failure(&mut self, key: K, now: Instant) -> Option<(u32, Duration)> {
        if self.max_failures == 0 {
            return None;
        }
        if self.records.len() >= MAX_ENTRIES && !self.records.contains_key(&key) {
            self.forget_quiet(now);
        }
        let r = self.records.entry(key).or_insert(Record {
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

    fn forget_quiet(&mut self, now: Instant) {
        self.records.retain(|_, r| {
            r.blocked_until.is_some_and(|u| u > now) || now.duration_since(r.last_seen) < WINDOW
        });
        if self.records.len() >= MAX_ENTRIES {
            self.records
                .retain(|_, r| r.blocked_until.is_some_and(|u| u > now));
        }
    }
}

/// What a failure started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Block {
    /// This login from this address is refused for a while.
    Login(u32, Duration),
    /// The address's new connections are refused for a while.
    Address(u32, Duration),
}

/// Failure counts per (address, login) and per address.
#[derive(Debug)]
pub(crate) struct LoginThrottle {
    pairs: Tracker<(IpAddr, Box<str>)>,
    addresses: Tracker<IpAddr>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new(0)
    }
}

impl LoginThrottle {
    /// `max_failures` per (address, login) and minute; 0 = off.
    pub(crate) fn new(max_failures: u32) -> Self {
        Self {
            pairs: Tracker::new(max_failures),
            addresses: Tracker::new(max_failures.saturating_mul(ADDRESS_FACTOR)),
        }
    }

    /// How much longer `ip`'s new connections are refused, if they are.
    pub(crate) fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        self.addresses.blocked(&ip, now)
    }

    /// How much longer `login`'s attempts from `ip` are refused, if they are.
    pub(crate) fn login_blocked(&self, ip: IpAddr, login: &str, now: Instant) -> Option<Duration> {
        self.pairs.blocked(&(ip, login.into()), now)
    }

    /// Counts a failed password check; returns the blocks it starts.
    pub(crate) fn failure(&mut self, ip: IpAddr, login: &str, now: Instant) -> Vec<Block> {
        let mut started = Vec::new();
        if let Some((n, d)) = self.pairs.failure((ip, login.into()), now) {
            started.push(Block::Login(n, d));
        }
        if let Some((n, d)) = self.addresses.failure(ip, now) {
            started.push(Block::Address(n, d));
        }
        started
    }

    /// A successful login clears that (address, login)'s failure count only.
    pub(crate) fn success(&mut self, ip: IpAddr, login: &str) {
        if let Some(r) = self.pairs.records.get_mut(&(ip, login.into())) {
            r.failures = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: [u8; 4] = [192, 0, 2, 7];

    #[test]
    fn blocks_the_pair_after_the_limit_and_doubles() {
        let ip = IpAddr::from(IP);
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let t0 = Instant::now();
        let mut t = LoginThrottle::new(3);
        assert!(t.failure(ip, "u", t0).is_empty());
        assert!(t.failure(ip, "u", t0).is_empty());
        assert_eq!(t.failure(ip, "u", t0), [Block::Login(3, BASE_BLOCK)]);
        assert_eq!(t.login_blocked(ip, "u", t0), Some(BASE_BLOCK));
        assert_eq!(
            t.login_blocked(ip, "v", t0),
            None,
            "other users from the address log in"
        );
        assert_eq!(t.blocked(ip, t0), None, "the address itself is not refused");
        assert_eq!(t.login_blocked(other, "u", t0), None);
        let later = t0 + BASE_BLOCK;
        assert_eq!(t.login_blocked(ip, "u", later), None);
        t.failure(ip, "u", later);
        t.failure(ip, "u", later);
        assert_eq!(t.failure(ip, "u", later), [Block::Login(3, BASE_BLOCK * 2)]);
    }

    #[test]
    fn another_logins_success_does_not_reset() {
        let ip = IpAddr::from(IP);
        let t0 = Instant::now();
        let mut t = LoginThrottle::new(3);
        t.failure(ip, "admin", t0);
        t.failure(ip, "admin", t0);
        t.success(ip, "_");
        assert_eq!(t.failure(ip, "admin", t0), [Block::Login(3, BASE_BLOCK)]);
        // Its own success does.
        let mut s = LoginThrottle::new(3);
        s.failure(ip, "u", t0);
        s.failure(ip, "u", t0);
        s.success(ip, "u");
        assert!(s.failure(ip, "u", t0).is_empty());
    }

    #[test]
    fn guessing_across_many_logins_blocks_the_address() {
        let ip = IpAddr::from(IP);
        let t0 = Instant::now();
        let mut t = LoginThrottle::new(2);
        let mut address = None;
        for i in 0..2 * ADDRESS_FACTOR {
            for b in t.failure(ip, &format!("user{i}"), t0) {
                if let Block::Address(n, d) = b {
                    address = Some((n, d));
                }
            }
        }
        assert_eq!(address, Some((2 * ADDRESS_FACTOR, BASE_BLOCK)));
        assert_eq!(t.blocked(ip, t0), Some(BASE_BLOCK));
        // Failures spread over more than the window never block.
        let mut slow = LoginThrottle::new(3);
        for i in 0..10 {
            assert!(slow.failure(ip, "u", t0 + WINDOW * i).is_empty());
        }
    }

    #[test]
    fn off_and_bounded() {
        let t0 = Instant::now();
        let mut off = LoginThrottle::new(0);
        let ip = IpAddr::from(IP);
        for _ in 0..100 {
            assert!(off.failure(ip, "u", t0).is_empty());
        }
        let mut t = LoginThrottle::new(5);
        for i in 0..(MAX_ENTRIES as u32 + 10) {
            t.failure(IpAddr::from(i.to_be_bytes()), "u", t0);
        }
        assert!(t.pairs.records.len() <= MAX_ENTRIES + 1);
        assert!(t.addresses.records.len() <= MAX_ENTRIES + 1);
    }
}
