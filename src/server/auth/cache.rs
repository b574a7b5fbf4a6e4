//! The verified-login cache: logins whose password passed bcrypt since the
//! last reload, so a reconnect (or a plain-auth UDP packet) does not pay
//! bcrypt again.
//!
//! Entries are HMAC-SHA256(random per-process key, login ‖ password ‖ hash):
//! no password is stored, and an entry only matches the exact stored hash.
//! The cache is bounded and cleared on every reload.

use std::collections::HashSet;

use ring::hmac;
use ring::rand::SystemRandom;

/// Entries kept before the cache starts over.
const MAX_ENTRIES: usize = 4096;

/// Set of keyed digests of verified (login, password, hash) triples.
pub(crate) struct VerifiedCache {
    key: hmac::Key,
    seen: HashSet<[u8; 32]>,
}

impl std::fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifiedCache({} entries)", self.seen.len())
    }
}

impl VerifiedCache {
    /// A cache with a fresh random key.
    pub(crate) fn new() -> Result<Self, ring::error::Unspecified> {
        Ok(Self {
            key: hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())?,
            seen: HashSet::new(),
        })
    }

    fn digest(&self, login: &str, password: &str, hash: &str) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [login, password, hash] {
            ctx.update(&(part.len() as u64).to_le_bytes());
            ctx.update(part.as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// Whether this password was verified against this hash.
    pub(crate) fn contains(&self, login: &str, password: &str, hash: &str) -> bool {
        self.seen.contains(&self.digest(login, password, hash))
    }

    /// Records a successful verification.
    pub(crate) fn insert(&mut self, login: &str, password: &str, hash: &str) {
        if self.seen.len() >= MAX_ENTRIES {
            self.seen.clear();
        }
        let d = self.digest(login, password, hash);
        self.seen.insert(d);
    }

    /// Forgets everything (on reload).
    pub(crate) fn clear(&mut self) {
        self.seen.clear();
    }

    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }

    /// Nothing at all.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_triples_only() {
        let mut c = VerifiedCache::new().unwrap();
        c.insert("u", "pw", "$2y$05$h");
        assert!(c.contains("u", "pw", "$2y$05$h"));
        assert!(!c.contains("u", "pw2", "$2y$05$h"));
        assert!(!c.contains("u", "pw", "$2y$05$other"));
        assert!(!c.contains("v", "pw", "$2y$05$h"));
        // Field boundaries are unambiguous.
        assert!(!c.contains("up", "w", "$2y$05$h"));
        c.clear();
        assert!(!c.contains("u", "pw", "$2y$05$h"));
        for i in 0..MAX_ENTRIES + 10 {
            c.insert("u", &i.to_string(), "h");
        }
        assert!(c.len() <= MAX_ENTRIES);
    }
}
