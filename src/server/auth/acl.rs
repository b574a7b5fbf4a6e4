//! `acl.yml`: per login (`_` = anonymous) the masks it may subscribe and
//! publish, and the `admin` / `replicator` flags. Reference format, with the
//! 0.3.8 extension that a mask list may be a single string.
//!
//! Publish checks match the normalised topic against the `pub` masks.
//! Subscribe checks ask whether a `sub` mask *covers* the normalised pattern
//! (`psrt_protocol::mask_covers`), which closes the reference's `/xxx` bypass
//! of `+/xxx` and its `data/#`-under-`data/+` escalation.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use psrt_protocol::{mask_covers, mask_matches, validate_mask};
use serde::Deserialize;

use crate::server::config::ConfigError;

/// The login name of anonymous sessions in the ACL.
pub const ANONYMOUS: &str = "_";

/// What one login may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclEntry {
    sub: Masks,
    publish: Masks,
    /// May read the stats endpoint.
    pub admin: bool,
    /// May use PUBLISH_REPL.
    pub replicator: bool,
}

/// A list of masks with a fast path for `#` (everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Masks {
    all: bool,
    masks: Vec<Box<str>>,
}

impl Masks {
    fn new(masks: Vec<String>) -> Result<Self, String> {
        for m in &masks {
            validate_mask(m).map_err(|e| e.to_string())?;
        }
        Ok(Self {
            all: masks.iter().any(|m| m == "#"),
            masks: masks.into_iter().map(String::into_boxed_str).collect(),
        })
    }
}

impl AclEntry {
    /// Full client access: what a trusted Unix-socket session gets —
    /// publish and subscribe to everything, and admin. Not the replicator
    /// right: only an ACL entry that says `replicator: true` may inject
    /// PUBLISH_REPL (a local process is a client, not a cluster node).
    pub fn full() -> Self {
        let all = Masks {
            all: true,
            masks: vec!["#".into()],
        };
        Self {
            sub: all.clone(),
            publish: all,
            admin: true,
            replicator: false,
        }
    }

    /// Anonymous publish and subscribe to everything, and the stats page
    /// (the embedded default, whose listeners are all on loopback).
    pub fn anonymous_pubsub() -> Self {
        Self::full()
    }

    /// May publish to this normalised topic.
    pub fn can_publish(&self, topic: &str) -> bool {
        self.publish.all || self.publish.masks.iter().any(|m| mask_matches(m, topic))
    }

    /// May subscribe to this normalised pattern.
    pub fn can_subscribe(&self, pattern: &str) -> bool {
        self.sub.all || self.sub.masks.iter().any(|m| mask_covers(m, pattern))
    }
}

/// The whole ACL: login → entry.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    entries: HashMap<String, Arc<AclEntry>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MaskList {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    sub: Option<MaskList>,
    #[serde(rename = "pub")]
    publish: Option<MaskList>,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    replicator: bool,
}

fn masks(list: Option<MaskList>) -> Result<Masks, String> {
    Masks::new(match list {
        None => Vec::new(),
        Some(MaskList::One(m)) => vec![m],
        Some(MaskList::Many(v)) => v,
    })
}

impl Acl {
    /// An ACL with one entry.
    pub fn single(login: &str, entry: AclEntry) -> Self {
        Self {
            entries: HashMap::from([(login.to_string(), Arc::new(entry))]),
        }
    }

    /// Parses ACL YAML (`file` is for error messages).
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let raw: Option<HashMap<String, Option<EntryFile>>> =
            serde_yaml::from_str(text).map_err(|e| ConfigError::yaml(file, &e))?;
        let mut entries = HashMap::new();
        for (login, entry) in raw.unwrap_or_default() {
            let entry = entry.unwrap_or_default();
            let bad = |what: &str, e: String| {
                ConfigError::new(file, format!("ACL entry {login:?}: {what}: {e}"))
            };
            let parsed = AclEntry {
                sub: masks(entry.sub).map_err(|e| bad("sub", e))?,
                publish: masks(entry.publish).map_err(|e| bad("pub", e))?,
                admin: entry.admin,
                replicator: entry.replicator,
            };
            entries.insert(login, Arc::new(parsed));
        }
        Ok(Self { entries })
    }

    /// The entry for a login (`_` for anonymous).
    pub fn get(&self, login: &str) -> Option<&Arc<AclEntry>> {
        self.entries.get(login)
    }

    /// Number of entries.
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

    /// The reference repository's test ACL (which 0.3.6 could not load).
    const REFERENCE: &str = "
_:
  sub:
    - '#'
  pub:
    - '#'
  admin: true
test:
  sub: [benchmark/#]
  pub: [benchmark/#]
user1:
  sub: '#'
  pub: '#'
admin:
  admin: true
replicator:
  replicator: true
";

    fn acl() -> Acl {
        Acl::parse(REFERENCE, Path::new("acl.yml")).unwrap()
    }

    #[test]
    fn reference_acl_loads() {
        let acl = acl();
        assert_eq!(acl.len(), 5);
        let anon = acl.get(ANONYMOUS).unwrap();
        assert!(anon.admin && anon.can_publish("x/y") && anon.can_subscribe("#"));
        let test = acl.get("test").unwrap();
        assert!(test.can_publish("benchmark/a/b"));
        assert!(!test.can_publish("benchmark"), "a/# does not allow a");
        assert!(!test.can_publish("other/x"));
        assert!(test.can_subscribe("benchmark/+/x"));
        assert!(!test.can_subscribe("#"));
        let admin = acl.get("admin").unwrap();
        assert!(admin.admin && !admin.can_publish("x") && !admin.can_subscribe("x"));
        assert!(acl.get("replicator").unwrap().replicator);
        assert!(acl.get("nobody").is_none());
    }

    #[test]
    fn subscribe_bypasses_of_the_reference_are_closed() {
        let acl = Acl::parse("u:\n  sub: ['+/xxx', 'data/+']\n", Path::new("a")).unwrap();
        let u = acl.get("u").unwrap();
        // The server normalises `/xxx` to `xxx` before asking.
        assert!(!u.can_subscribe("xxx"));
        assert!(u.can_subscribe("a/xxx"));
        assert!(u.can_subscribe("data/x"));
        assert!(!u.can_subscribe("data/#"));
    }

    #[test]
    fn errors_name_the_entry() {
        let e = Acl::parse("u:\n  sub: ['']\n", Path::new("acl.yml")).unwrap_err();
        assert!(e.to_string().contains("\"u\": sub: empty mask"), "{e}");
        let e = Acl::parse("u:\n  sub: x\n  color: red\n", Path::new("acl.yml")).unwrap_err();
        assert!(e.to_string().contains("unknown field `color`"), "{e}");
        assert_eq!(e.line, Some(3), "{e}");
        let e = Acl::parse("u: [\n", Path::new("acl.yml")).unwrap_err();
        assert!(e.line.is_some(), "{e}");
        assert!(Acl::parse("", Path::new("a")).unwrap().is_empty());
        assert!(
            Acl::parse("u:\n", Path::new("a"))
                .unwrap()
                .get("u")
                .is_some()
        );
    }
}
