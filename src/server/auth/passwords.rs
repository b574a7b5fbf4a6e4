//! The password file: htpasswd lines `login:hash`, bcrypt hashes only
//! (`htpasswd -B`). Parsed like the reference: the file is trimmed and split
//! into lines; a line that does not split on `:` into exactly two parts, or
//! whose login starts with `#`, is skipped.
//!
//! Verification itself (bcrypt) runs in the auth worker, never here.

use std::collections::HashMap;

/// The bcrypt prefixes the verifier accepts.
const BCRYPT_PREFIXES: [&str; 4] = ["$2a$", "$2b$", "$2x$", "$2y$"];

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
}

/// login → hash.
#[derive(Debug, Clone, Default)]
pub struct Passwords {
    entries: HashMap<String, PasswordEntry>,
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
        (Self { entries }, warnings)
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
    }
}
