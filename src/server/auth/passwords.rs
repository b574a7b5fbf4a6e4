//! The password file: htpasswd lines `login:hash`, bcrypt hashes only
//! (`htpasswd -B`). Parsed like the reference: the file is trimmed and split
//! into lines; a line that does not split on `:` into exactly two parts, or
//! whose login starts with `#`, is skipped.
//!
//! Verification itself (bcrypt) runs in the auth worker, never here.
//!
//! The **decoy**: a bcrypt hash of a random password at the file's highest
//! cost (10 if it has no bcrypt entry), made once per load off the loop
//! ([`Passwords::make_decoy`], called by `AuthDb::load`). A login as a user
//! who is not in the file (or whose hash is not bcrypt) is checked against
//! it and then refused, so it takes as long as a wrong password for a real
//! user and user names cannot be found by timing.

use std::collections::HashMap;

/// The bcrypt prefixes the verifier accepts.
const BCRYPT_PREFIXES: [&str; 4] = ["$2a$", "$2b$", "$2x$", "$2y$"];
/// The decoy's cost when the file has no bcrypt entry (htpasswd -B's default
/// is 5; 10 is what most generators use).
pub(crate) const DEFAULT_DECOY_COST: u32 = 10;

/// One user's stored hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordEntry {
    /// The hash as written in the file.
    pub hash: Box<str>,
}

impl PasswordEntry {
    /// The hash scheme if it is not bcrypt (for the log line), else `None`.
    pub fn unsupported_scheme(&self) -> Option<&str> {
        if BCRYPT_PREFIXES.iter().any(|p| self.hash.starts_with(p)) {
            return None;
        }
        let scheme = match self.hash.strip_prefix('$') {
            Some(rest) => rest.split('$').next().map_or("?", |s| s),
            None if self.hash.starts_with("{SHA}") => "{SHA}",
            None => "crypt or plain text",
        };
        Some(scheme)
    }

    /// The bcrypt cost (`$2b$NN$`), if the hash is bcrypt with a valid one.
    pub fn bcrypt_cost(&self) -> Option<u32> {
        if self.unsupported_scheme().is_some() || self.hash.as_bytes().get(6) != Some(&b'$') {
            return None;
        }
        let cost: u32 = self.hash.get(4..6)?.parse().ok()?;
        (4..=31).contains(&cost).then_some(cost)
    }
}

/// login → hash.
#[derive(Debug, Clone, Default)]
pub struct Passwords {
    entries: HashMap<String, PasswordEntry>,
    /// The decoy hash, once made.
    decoy: Option<Box<str>>,
}

impl Passwords {
    /// Parses the file text. Lines with a non-bcrypt hash are kept (so the
    /// login fails with a clear reason) and listed in the returned warnings.
    pub fn parse(text: &str) -> (Self, Vec<String>) {
        let mut entries = HashMap::new();
        let mut warnings = Vec::new();
        for line in text.trim().lines() {
            let parts: Vec<&str> = line.trim().split(':').collect();
            let [login, hash] = parts[..] else { continue };
            let (login, hash) = (login.trim(), hash.trim());
            if login.starts_with('#') || login.is_empty() {
                continue;
            }
            let entry = PasswordEntry { hash: hash.into() };
            if let Some(scheme) = entry.unsupported_scheme() {
                warnings.push(format!(
                    "user {login:?}: unsupported password hash format {scheme:?}; only bcrypt ($2a$/$2b$/$2x$/$2y$, htpasswd -B) is accepted"
                ));
            }
            entries.insert(login.to_string(), entry);
        }
        (
            Self {
                entries,
                decoy: None,
            },
            warnings,
        )
    }

    /// The highest bcrypt cost among the entries.
    pub fn max_cost(&self) -> Option<u32> {
        self.entries
            .values()
            .filter_map(PasswordEntry::bcrypt_cost)
            .max()
    }

    /// Makes the decoy at `cost` (slow: one bcrypt hash; never on the loop).
    pub fn make_decoy(&mut self, cost: u32) -> Result<(), String> {
        let mut secret = [0u8; 18];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .map_err(|_| "no system random source".to_string())?;
        let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let hash = bcrypt::hash(secret, cost).map_err(|e| e.to_string())?;
        self.decoy = Some(hash.into());
        Ok(())
    }

    /// The decoy hash unknown users are checked against (none without a
    /// password file).
    pub fn decoy(&self) -> Option<&str> {
        self.decoy.as_deref()
    }

    /// The entry for a login.
    pub fn get(&self, login: &str) -> Option<&PasswordEntry> {
        self.entries.get(login)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Nothing at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_like_the_reference() {
        let hash = bcrypt::hash("123", 4).unwrap();
        let users = format!("test:{hash}\nuser1:{hash}\nreplicator:{hash}\nadmin:{hash}");
        let text = format!(
            "  {users}\n# comment line\n#disabled:$2y$05$x\nbroken line\na:b:c\nmd5:$apr1$abc$def\n sha : {{SHA}}xyz \n"
        );
        let (p, warnings) = Passwords::parse(&text);
        assert_eq!(p.len(), 6, "4 bcrypt users + md5 + sha");
        assert!(p.get("user1").unwrap().unsupported_scheme().is_none());
        assert_eq!(p.get("md5").unwrap().unsupported_scheme(), Some("apr1"));
        assert_eq!(p.get("sha").unwrap().unsupported_scheme(), Some("{SHA}"));
        assert!(p.get("#disabled").is_none() && p.get("a").is_none());
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].contains("md5") || warnings[1].contains("md5"));
        assert_eq!(p.max_cost(), Some(4));
        assert_eq!(p.get("md5").unwrap().bcrypt_cost(), None);
        assert!(p.decoy().is_none(), "made by AuthDb::load, not by parse");
    }

    #[test]
    fn decoy_at_the_highest_cost() {
        let text = format!(
            "a:{}\nb:$2y$06$abcdefghijklmnopqrstuu5Jk8tY6jFzfqiZ8GkQ0xQOCH2ozUL2u\nc:$2b$99$x\nd:$2b$5$x\n",
            bcrypt::hash("x", 4).unwrap()
        );
        let (mut p, _) = Passwords::parse(&text);
        assert_eq!(
            p.max_cost(),
            Some(6),
            "99 and a one-digit cost are not valid costs"
        );
        assert_eq!(Passwords::parse("md5:$apr1$x$y").0.max_cost(), None);
        p.make_decoy(4).unwrap();
        let decoy = p.decoy().unwrap();
        assert!(decoy.starts_with("$2b$04$"), "{decoy}");
        assert!(!bcrypt::verify("", decoy).unwrap());
        assert!(p.make_decoy(99).is_err());
    }
}
