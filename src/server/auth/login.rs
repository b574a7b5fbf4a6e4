//! The one auth pipeline, used by PSRT logins, HTTP Basic credentials and
//! plain-auth UDP datagrams: [`check`] answers at once from the password
//! file and the verified-login cache, or hands bcrypt to the worker
//! (pending); [`finish`] turns the worker's answer into granted or denied,
//! re-checking against a hash a reload may have changed meanwhile.

use super::AuthDb;
use super::cache::VerifiedCache;
use super::worker::{Job, Ticket, Verified, Worker};

/// Password checks waiting for bcrypt at once (logins, stats requests and
/// datagrams); more are refused.
pub(crate) const MAX_PENDING_AUTH: usize = 256;

/// What a password check says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The password is right: the hash it was checked against.
    Granted(Box<str>),
    /// Refused; the reason is for the log only (the peer learns nothing).
    Denied(String),
    /// bcrypt runs in the worker; the answer comes back with `ticket`.
    Pending,
    /// Too many checks are pending already: try later.
    Busy,
}

/// Checks `password` for `login` (a named user: anonymous access is each
/// protocol's own rule). A miss in the cache queues a bcrypt job for
/// `ticket`.
pub(crate) fn check(
    auth: &AuthDb,
    cache: &VerifiedCache,
    worker: &mut Worker,
    ticket: Ticket,
    login: &str,
    password: &str,
) -> Verdict {
    let Some(entry) = auth.passwords.get(login) else {
        return Verdict::Denied(format!("user {login:?}: unknown user"));
    };
    if let Some(scheme) = entry.unsupported_scheme() {
        return Verdict::Denied(format!(
            "user {login:?}: unsupported password hash format {scheme:?} (only bcrypt, htpasswd -B)"
        ));
    }
    if cache.contains(login, password, &entry.hash) {
        return Verdict::Granted(entry.hash.clone());
    }
    if worker.in_flight >= MAX_PENDING_AUTH {
        return Verdict::Busy;
    }
    let job = Job::Verify {
        ticket,
        login: login.into(),
        hash: entry.hash.clone(),
        password: password.into(),
    };
    match worker.submit(job) {
        Ok(()) => Verdict::Pending,
        Err(_) => Verdict::Denied("auth worker unavailable".into()),
    }
}

/// Whether the cache already vouches for this login and password.
pub(crate) fn is_cached(auth: &AuthDb, cache: &VerifiedCache, login: &str, password: &str) -> bool {
    auth.passwords
        .get(login)
        .is_some_and(|e| cache.contains(login, password, &e.hash))
}

/// The worker's answer for a pending check. A password verified against a
/// hash that a reload has replaced meanwhile is checked again against the
/// current one (`Pending` again); a granted login is cached.
pub(crate) fn finish(
    auth: &AuthDb,
    cache: &mut VerifiedCache,
    worker: &mut Worker,
    v: Verified,
) -> Verdict {
    let login = v.login.as_str();
    if !v.ok {
        return Verdict::Denied(format!("user {login:?}: wrong password"));
    }
    let Some(current) = auth.passwords.get(login).map(|e| e.hash.clone()) else {
        return Verdict::Denied(format!("user {login:?}: removed by a reload"));
    };
    if current != v.hash {
        let job = Job::Verify {
            ticket: v.ticket,
            login: v.login,
            hash: current,
            password: v.password,
        };
        return match worker.submit(job) {
            Ok(()) => Verdict::Pending,
            Err(_) => Verdict::Denied("auth worker unavailable".into()),
        };
    }
    cache.insert(login, &v.password, &v.hash);
    Verdict::Granted(v.hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::auth::passwords::Passwords;

    fn db(line: &str) -> AuthDb {
        AuthDb {
            passwords: Passwords::parse(line).0,
            ..AuthDb::default()
        }
    }

    fn ticket() -> Ticket {
        Ticket::Conn { conn: 1, serial: 1 }
    }

    fn verified(hash: &str, ok: bool) -> Verified {
        Verified {
            ticket: ticket(),
            login: "u".into(),
            hash: hash.into(),
            password: "pw".into(),
            ok,
        }
    }

    #[test]
    fn unknown_and_unsupported_users_are_denied_at_once() {
        let auth = db("u:$apr1$x$y\n");
        let cache = VerifiedCache::new().unwrap();
        let mut w = Worker::detached();
        let v = check(&auth, &cache, &mut w, ticket(), "nobody", "pw");
        assert_eq!(v, Verdict::Denied("user \"nobody\": unknown user".into()));
        let v = check(&auth, &cache, &mut w, ticket(), "u", "pw");
        assert!(matches!(v, Verdict::Denied(why) if why.contains("unsupported")));
        assert_eq!(w.in_flight, 0, "no bcrypt job for either");
    }

    #[test]
    fn cache_miss_is_pending_then_granted_and_cached() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let auth = db(&format!("u:{hash}\n"));
        let mut cache = VerifiedCache::new().unwrap();
        let mut w = Worker::detached();
        assert_eq!(
            check(&auth, &cache, &mut w, ticket(), "u", "pw"),
            Verdict::Pending
        );
        assert_eq!(w.in_flight, 1);
        let got = finish(&auth, &mut cache, &mut w, verified(&hash, true));
        assert_eq!(got, Verdict::Granted(hash.clone().into()));
        assert_eq!(
            check(&auth, &cache, &mut w, ticket(), "u", "pw"),
            Verdict::Granted(hash.into()),
            "the second login is answered from the cache"
        );
        assert_eq!(w.in_flight, 1);
    }

    #[test]
    fn wrong_password_and_reloaded_hash() {
        let auth = db("u:$2b$04$abcdefghijklmnopqrstuu5Jk8tY6jFzfqiZ8GkQ0xQOCH2ozUL2u\n");
        let mut cache = VerifiedCache::new().unwrap();
        let mut w = Worker::detached();
        let current = auth.passwords.get("u").unwrap().hash.clone();
        let v = finish(&auth, &mut cache, &mut w, verified(&current, false));
        assert_eq!(v, Verdict::Denied("user \"u\": wrong password".into()));
        // Verified against an older hash: checked again against the current.
        let v = finish(&auth, &mut cache, &mut w, verified("$2b$04$old", true));
        assert_eq!(v, Verdict::Pending);
        assert_eq!(w.in_flight, 1);
        let gone = db("");
        let v = finish(&gone, &mut cache, &mut w, verified(&current, true));
        assert_eq!(v, Verdict::Denied("user \"u\": removed by a reload".into()));
        assert!(cache.is_empty());
    }

    #[test]
    fn busy_when_too_many_are_pending() {
        let auth = db("u:$2b$04$abcdefghijklmnopqrstuu5Jk8tY6jFzfqiZ8GkQ0xQOCH2ozUL2u\n");
        let cache = VerifiedCache::new().unwrap();
        let mut w = Worker::detached();
        w.in_flight = MAX_PENDING_AUTH;
        assert_eq!(
            check(&auth, &cache, &mut w, ticket(), "u", "pw"),
            Verdict::Busy
        );
    }
}
