//! Who may connect and what they may do: the password file (with its decoy
//! hash for unknown users), the ACL, the UDP keys and the TLS identity
//! ([`AuthDb`], loaded all-or-nothing at start and on SIGHUP, off the loop),
//! the bcrypt workers with their interactive and bulk queues (`worker`),
//! the login cache (`cache`) that spares reconnects a second bcrypt run and
//! repeated wrong passwords a second one, the one password-check pipeline
//! every protocol uses (`login`), and the brute-force throttle
//! (`throttle`).

pub(crate) mod acl;
pub(crate) mod cache;
pub(crate) mod keys;
pub(crate) mod login;
pub(crate) mod passwords;
pub(crate) mod throttle;
mod tls_identity;
pub(crate) mod worker;

use std::path::Path;
use std::sync::Arc;

pub use acl::{ANONYMOUS, Acl, AclEntry};
pub use keys::Keys;
pub use passwords::Passwords;

use crate::server::config::{AclSource, AuthFiles, ConfigError};

/// What a reload read: the new database and its warnings, and why the TLS
/// identity could not be reloaded (then `db.tls` is empty and the running
/// identity stays).
#[derive(Debug)]
pub struct Reloaded {
    /// The new database.
    pub db: AuthDb,
    /// Entries skipped, with file and reason.
    pub warnings: Vec<String>,
    /// The certificate or key that failed to load.
    pub tls_error: Option<ConfigError>,
}

/// Everything loaded from the auth files. Built off the loop thread (at
/// start, or by the worker on reload) and swapped in whole.
#[derive(Debug, Default)]
pub struct AuthDb {
    /// login → permissions.
    pub acl: Acl,
    /// login → bcrypt hash.
    pub passwords: Passwords,
    /// login → UDP AES key.
    pub keys: Keys,
    /// The TLS identity, if `tls_cert`/`tls_key` are configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::new(path, format!("cannot read: {e}")))
}

impl AuthDb {
    /// Reads and parses every auth file. Any error fails the whole load, so
    /// a reload never applies half a change. Skipped entries come back as
    /// warnings.
    pub fn load(files: &AuthFiles) -> Result<(Self, Vec<String>), ConfigError> {
        let tls = match &files.tls {
            Some(t) => Some(tls_identity::load_server_config(&t.cert, &t.key)?),
            None => None,
        };
        let (mut db, warnings) = Self::load_without_tls(files)?;
        db.tls = tls;
        Ok((db, warnings))
    }

    /// A SIGHUP reload: like [`AuthDb::load`], except that a TLS identity
    /// that fails to load does not fail the rest. The ACL, passwords and keys
    /// are still all-or-nothing; the certificate error comes back beside
    /// them (the loop then keeps the identity it has).
    pub fn reload(files: &AuthFiles) -> Result<Reloaded, ConfigError> {
        let (mut db, warnings) = Self::load_without_tls(files)?;
        let mut tls_error = None;
        if let Some(t) = &files.tls {
            match tls_identity::load_server_config(&t.cert, &t.key) {
                Ok(config) => db.tls = Some(config),
                Err(e) => tls_error = Some(e),
            }
        }
        Ok(Reloaded {
            db,
            warnings,
            tls_error,
        })
    }

    fn load_without_tls(files: &AuthFiles) -> Result<(Self, Vec<String>), ConfigError> {
        let mut warnings = Vec::new();
        let acl = match &files.acl {
            AclSource::File(path) => Acl::parse(&read(path)?, path)?,
            AclSource::AnonymousFullAccess => Acl::single(ANONYMOUS, AclEntry::anonymous_pubsub()),
        };
        let passwords = match &files.password_file {
            Some(path) => {
                let (mut p, w) = Passwords::parse(&read(path)?);
                warnings.extend(w.into_iter().map(|w| format!("{}: {w}", path.display())));
                // Unknown users are checked against a decoy of the same cost.
                let cost = p.max_cost().unwrap_or(passwords::DEFAULT_DECOY_COST);
                if let Err(e) = p.make_decoy(cost) {
                    warnings.push(format!(
                        "{}: no decoy hash ({e}): unknown users are refused at once",
                        path.display()
                    ));
                }
                p
            }
            None => Passwords::default(),
        };
        let keys = match &files.key_file {
            Some(path) => {
                let (k, w) = Keys::parse(&read(path)?, path, &acl)?;
                warnings.extend(w);
                k
            }
            None => Keys::default(),
        };
        Ok((
            Self {
                acl,
                passwords,
                keys,
                tls: None,
            },
            warnings,
        ))
    }

    /// One line for the log: what was loaded.
    pub fn summary(&self) -> String {
        format!(
            "{} ACL entries, {} users, {} UDP keys{}",
            self.acl.len(),
            self.passwords.len(),
            self.keys.len(),
            if self.tls.is_some() {
                ", TLS identity"
            } else {
                ""
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_is_all_or_nothing() {
        let dir = std::env::temp_dir().join(format!("psrt-authdb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let acl = dir.join("acl.yml");
        let pw = dir.join("passwd");
        std::fs::write(&acl, "_:\n  sub: '#'\nuser1:\n  pub: a/#\n").unwrap();
        std::fs::write(&pw, "user1:$apr1$x$y\n").unwrap();
        let files = AuthFiles {
            tls: None,
            acl: AclSource::File(acl.clone()),
            password_file: Some(pw.clone()),
            key_file: None,
        };
        let (db, warnings) = AuthDb::load(&files).unwrap();
        assert_eq!(db.acl.len(), 2);
        assert_eq!(warnings.len(), 1, "the apr1 hash is reported");
        let decoy = db.passwords.decoy().expect("a decoy with a password file");
        assert!(
            decoy.starts_with("$2b$10$"),
            "no bcrypt entry: the default cost 10: {decoy}"
        );
        assert_eq!(db.summary(), "2 ACL entries, 1 users, 0 UDP keys");

        let missing = AuthFiles {
            key_file: Some(dir.join("missing.yml")),
            ..files.clone()
        };
        let e = AuthDb::load(&missing).unwrap_err();
        assert!(e.to_string().contains("missing.yml: cannot read"), "{e}");

        std::fs::write(&acl, "_: [\n").unwrap();
        let e = AuthDb::load(&files).unwrap_err();
        assert!(e.to_string().contains("acl.yml:"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn embedded_acl() {
        let files = AuthFiles {
            tls: None,
            acl: AclSource::AnonymousFullAccess,
            password_file: None,
            key_file: None,
        };
        let (db, _) = AuthDb::load(&files).unwrap();
        assert!(db.passwords.decoy().is_none(), "no password file, no decoy");
        let anon = db.acl.get(ANONYMOUS).unwrap();
        assert!(anon.can_publish("a/b") && anon.can_subscribe("#"));
        assert!(
            anon.admin,
            "the embedded default serves stats to local clients"
        );
        assert!(!anon.replicator);
    }
}
