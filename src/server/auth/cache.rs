//! The login cache, both ways:
//!
//! * **verified**: (login, password, hash) triples that passed bcrypt since
//!   the last reload, so a reconnect (or a plain-auth UDP packet) does not
//!   pay bcrypt again; at most [`MAX_ENTRIES`], started over when full;
//! * **failed**: triples bcrypt refused within the last [`FAILED_TTL`], so
//!   a repeated wrong password (or a repeated unknown user, checked against
//!   the decoy hash) is refused without bcrypt — still counted and
//!   throttled as a failure by the protocol; at most [`MAX_FAILED`]
//!   entries, the oldest forgotten first.
//!
//! Entries are HMAC-SHA256(random per-process key, login ‖ password ‖ hash):
//! no password is stored, and an entry only matches the exact stored hash.
//! Both parts are cleared on every reload. The same keyed digest of (login,
//! password) alone names a check in progress ([`LoginCache::pair`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use ring::hmac;
use ring::rand::SystemRandom;

/// Verified entries kept before that part starts over.
const MAX_ENTRIES: usize = 4096;
/// Failed entries kept; beyond it the oldest is forgotten.
pub(crate) const MAX_FAILED: usize = 4096;
/// How long a failed check is remembered.
pub(crate) const FAILED_TTL: Duration = Duration::from_secs(60);

/// A keyed digest.
pub(crate) type Digest = [u8; 32];

/// Keyed digests of verified and of recently failed checks.
pub(crate) struct LoginCache {
    key: hmac::Key,
    seen: HashSet<Digest>,
    /// Digest → when it stops counting.
    failed: HashMap<Digest, Instant>,
    /// The failed digests in insertion (= expiry) order.
    failed_order: VecDeque<(Digest, Instant)>,
}

impl std::fmt::Debug for LoginCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LoginCache({} verified, {} failed)",
            self.seen.len(),
            self.failed.len()
        )
    }
}

impl LoginCache {
    /// A cache with a fresh random key.
    pub(crate) fn new() -> Result<Self, ring::error::Unspecified> {
        Ok(Self {
            key: hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())?,
            seen: HashSet::new(),
            failed: HashMap::new(),
            failed_order: VecDeque::new(),
        })
    }

    fn digest(&self, parts: &[&str]) -> Digest {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in parts {
            ctx.update(&(part.len() as u64).to_le_bytes());
            ctx.update(part.as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// The keyed digest of a (login, password) pair, whatever the hash:
    /// names one check in progress without keeping the password.
    pub(crate) fn pair(&self, login: &str, password: &str) -> Digest {
        self.digest(&[login, password])
    }

    /// Whether this password was verified against this hash.
    pub(crate) fn contains(&self, login: &str, password: &str, hash: &str) -> bool {
        self.seen.contains(&self.digest(&[login, password, hash]))
    }

    /// Records a successful verification.
    pub(crate) fn insert(&mut self, login: &str, password: &str, hash: &str) {
        if self.seen.len() >= MAX_ENTRIES {
            self.seen.clear();
        }
        let d = self.digest(&[login, password, hash]);
        self.seen.insert(d);
    }

    /// Whether this password failed against this hash within the last
    /// [`FAILED_TTL`].
    pub(crate) fn failed_recently(
        &self,
        login: &str,
        password: &str,
        hash: &str,
        now: Instant,
    ) -> bool {
        if self.failed.is_empty() {
            return false;
        }
        let d = self.digest(&[login, password, hash]);
        self.failed.get(&d).is_some_and(|&until| until > now)
    }

    /// Records a failed verification (forgetting expired entries, and the
    /// oldest if the part is full).
    pub(crate) fn insert_failed(&mut self, login: &str, password: &str, hash: &str, now: Instant) {
        while let Some(&(d, until)) = self.failed_order.front() {
            if until > now && self.failed_order.len() < MAX_FAILED {
                break;
            }
            self.failed_order.pop_front();
            // Only if not renewed since (a renewal has a later deadline).
            if self.failed.get(&d) == Some(&until) {
                self.failed.remove(&d);
            }
        }
        let d = self.digest(&[login, password, hash]);
        let until = now + FAILED_TTL;
        self.failed.insert(d, until);
        self.failed_order.push_back((d, until));
    }

    /// Forgets everything (on reload).
    pub(crate) fn clear(&mut self) {
        self.seen.clear();
        self.failed.clear();
        self.failed_order.clear();
    }

    /// Number of verified entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }

    /// No verified entry.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Number of failed entries (expired ones included until pruned).
    #[cfg(test)]
    pub(crate) fn failed_len(&self) -> usize {
        self.failed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_triples_only() {
        let mut c = LoginCache::new().unwrap();
        c.insert("u", "pw", "$2y$05$h");
        assert!(c.contains("u", "pw", "$2y$05$h"));
        assert!(!c.contains("u", "pw2", "$2y$05$h"));
        assert!(!c.contains("u", "pw", "$2y$05$other"));
        assert!(!c.contains("v", "pw", "$2y$05$h"));
        // Field boundaries are unambiguous.
        assert!(!c.contains("up", "w", "$2y$05$h"));
        assert_ne!(c.pair("u", "pw"), c.pair("up", "w"));
        assert_eq!(c.pair("u", "pw"), c.pair("u", "pw"));
        c.clear();
        assert!(!c.contains("u", "pw", "$2y$05$h"));
        for i in 0..MAX_ENTRIES + 10 {
            c.insert("u", &i.to_string(), "h");
        }
        assert!(c.len() <= MAX_ENTRIES);
    }

    #[test]
    fn failures_expire_are_bounded_and_cleared() {
        let t0 = Instant::now();
        let mut c = LoginCache::new().unwrap();
        assert!(!c.failed_recently("u", "bad", "h", t0));
        c.insert_failed("u", "bad", "h", t0);
        assert!(c.failed_recently("u", "bad", "h", t0));
        assert!(c.failed_recently("u", "bad", "h", t0 + FAILED_TTL / 2));
        assert!(!c.failed_recently("u", "bad", "h", t0 + FAILED_TTL));
        assert!(!c.failed_recently("u", "bad", "h2", t0), "another hash");
        assert!(!c.failed_recently("u", "bad2", "h", t0));
        assert!(!c.contains("u", "bad", "h"), "not a verified entry");

        // Renewed: the first deadline does not remove the second.
        c.insert_failed("u", "bad", "h", t0 + FAILED_TTL / 2);
        c.insert_failed("x", "y", "h", t0 + FAILED_TTL);
        assert!(c.failed_recently("u", "bad", "h", t0 + FAILED_TTL));
        assert_eq!(c.failed_len(), 2);

        // Bounded: the oldest go first.
        for i in 0..MAX_FAILED + 10 {
            c.insert_failed("u", &i.to_string(), "h", t0 + FAILED_TTL);
        }
        assert!(c.failed_len() <= MAX_FAILED);
        assert!(c.failed_order.len() <= MAX_FAILED);
        let later = t0 + FAILED_TTL;
        assert!(c.failed_recently("u", &(MAX_FAILED + 9).to_string(), "h", later));
        assert!(!c.failed_recently("u", "0", "h", later));

        // Expired entries are pruned by the next insert.
        let much_later = later + FAILED_TTL * 2;
        c.insert_failed("z", "z", "h", much_later);
        assert_eq!(c.failed_len(), 1);
        c.clear();
        assert_eq!(c.failed_len(), 0);
        assert!(!c.failed_recently("z", "z", "h", much_later));
    }
}
