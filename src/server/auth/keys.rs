//! `keys.yml`: UDP AES keys, a flat map login → 64 hex characters. A key
//! that does not parse, or whose login has no ACL entry, is skipped with a
//! warning (the reference's behaviour); `_` is the key for an empty key id.

use std::collections::HashMap;
use std::path::Path;

use psrt_protocol::{UdpKey, parse_hex_key};

use super::acl::Acl;
use crate::server::config::ConfigError;

/// login → expanded key.
#[derive(Debug, Default)]
pub struct Keys {
    keys: HashMap<String, UdpKey>,
}

impl Keys {
    /// Parses the file; returns the keys and the warnings for skipped ones.
    pub fn parse(text: &str, file: &Path, acl: &Acl) -> Result<(Self, Vec<String>), ConfigError> {
        let raw: Option<HashMap<String, String>> =
            serde_yaml::from_str(text).map_err(|e| ConfigError::yaml(file, &e))?;
        let mut keys = HashMap::new();
        let mut warnings = Vec::new();
        for (login, hex) in raw.unwrap_or_default() {
            let Some(raw) = parse_hex_key(hex.trim()) else {
                warnings.push(format!(
                    "{}: key of {login:?} is not 64 hex characters; skipped",
                    file.display()
                ));
                continue;
            };
            if acl.get(&login).is_none() {
                warnings.push(format!(
                    "{}: no ACL entry for the key of {login:?}; skipped",
                    file.display()
                ));
                continue;
            }
            keys.insert(login, UdpKey::new(&raw));
        }
        Ok((Self { keys }, warnings))
    }

    /// The key for a key id (empty = `_`).
    pub fn get(&self, key_id: &str) -> Option<&UdpKey> {
        let id = if key_id.is_empty() { "_" } else { key_id };
        self.keys.get(id)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Nothing at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::auth::acl::AclEntry;

    #[test]
    fn keys_need_hex_and_an_acl_entry() {
        let acl = Acl::single("user1", AclEntry::default());
        let text = "user1: 26fd38045707792a9bc50f3761a58987c4a9362cf60389f341c28e37b1125d93\nghost: 26fd38045707792a9bc50f3761a58987c4a9362cf60389f341c28e37b1125d93\nbad: 1234\n";
        let (keys, warnings) = Keys::parse(text, Path::new("keys.yml"), &acl).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys.get("user1").is_some());
        assert!(keys.get("").is_none());
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(Keys::parse("[1, 2", Path::new("k"), &acl).is_err());
    }
}
