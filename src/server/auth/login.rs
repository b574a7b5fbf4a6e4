//! The one auth pipeline, used by PSRT logins, HTTP Basic credentials and
//! plain-auth UDP datagrams: [`check`] answers at once from the password
//! file and the login cache (verified, or failed within the last minute),
//! or hands bcrypt to the worker (pending); [`finish`] turns the worker's
//! answer into granted or denied, re-checking against a hash a reload may
//! have changed meanwhile, and fills the cache both ways.
//!
//! A login as an unknown user (or one whose hash is not bcrypt) over PSRT
//! or HTTP is checked against the password file's decoy hash and then
//! denied ("unknown user"), so it costs the same time as a wrong password
//! for a real user. UDP datagrams of an unknown user are dropped at once:
//! nothing is ever sent back to them, so there is no timing to observe.
//! Without a password file there is no decoy and nothing to hide.

use std::time::Instant;

use super::AuthDb;
use super::cache::LoginCache;
use super::worker::{Job, Ticket, Verified, Worker};

/// Password checks of one kind (interactive: logins and stats requests;
/// bulk: UDP datagrams) waiting for bcrypt at once; more are refused.
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

/// Why a login without a usable hash is refused.
fn no_hash_reason(auth: &AuthDb, login: &str) -> String {
    match auth
        .passwords
        .get(login)
        .and_then(|e| e.unsupported_scheme())
    {
        Some(scheme) => format!(
            "user {login:?}: unsupported password hash format {scheme:?} (only bcrypt, htpasswd -B)"
        ),
        None => format!("user {login:?}: unknown user"),
    }
}

/// The hash to check `login` against, and whether it is the decoy; `None`
/// if the login is refused at once.
fn hash_for<'a>(auth: &'a AuthDb, ticket: Ticket, login: &str) -> Option<(&'a str, bool)> {
    match auth.passwords.get(login) {
        Some(entry) if entry.unsupported_scheme().is_none() => Some((&entry.hash, false)),
        // UDP: dropped at once, nothing is answered anyway.
        _ if ticket.is_bulk() => None,
        _ => auth.passwords.decoy().map(|d| (d, true)),
    }
}

/// Checks `password` for `login` (a named user: anonymous access is each
/// protocol's own rule). A miss in the cache queues a bcrypt job for
/// `ticket`.
pub(crate) fn check(
    auth: &AuthDb,
    cache: &LoginCache,
    worker: &mut Worker,
    now: Instant,
    ticket: Ticket,
    login: &str,
    password: &str,
) -> Verdict {
    let Some((hash, decoy)) = hash_for(auth, ticket, login) else {
        return Verdict::Denied(no_hash_reason(auth, login));
    };
    if !decoy && cache.contains(login, password, hash) {
        return Verdict::Granted(hash.into());
    }
    if cache.failed_recently(login, password, hash, now) {
        return Verdict::Denied(if decoy {
            no_hash_reason(auth, login)
        } else {
            format!("user {login:?}: wrong password (repeated)")
        });
    }
    if worker.pending(ticket) >= MAX_PENDING_AUTH {
        return Verdict::Busy;
    }
    let job = Job::Verify {
        ticket,
        login: login.into(),
        hash: hash.into(),
        password: password.into(),
        decoy,
    };
    match worker.submit(job) {
        Ok(()) => Verdict::Pending,
        Err(_) => Verdict::Denied("auth worker unavailable".into()),
    }
}

/// The worker's answer for a pending check. A password checked against a
/// hash that a reload has replaced meanwhile (or a decoy for a user a
/// reload has added) is checked again against the current one (`Pending`
/// again); a granted login is cached, a refused one remembered for a while.
pub(crate) fn finish(
    auth: &AuthDb,
    cache: &mut LoginCache,
    worker: &mut Worker,
    now: Instant,
    v: Verified,
) -> Verdict {
    let login = v.login.as_str();
    let current = auth
        .passwords
        .get(login)
        .filter(|e| e.unsupported_scheme().is_none());
    match current {
        Some(entry) if entry.hash != v.hash => {
            let job = Job::Verify {
                ticket: v.ticket,
                login: v.login,
                hash: entry.hash.clone(),
                password: v.password,
                decoy: false,
            };
            match worker.submit(job) {
                Ok(()) => Verdict::Pending,
                Err(_) => Verdict::Denied("auth worker unavailable".into()),
            }
        }
        Some(_) if v.ok => {
            cache.insert(login, &v.password, &v.hash);
            Verdict::Granted(v.hash)
        }
        Some(_) => {
            cache.insert_failed(login, &v.password, &v.hash, now);
            Verdict::Denied(format!("user {login:?}: wrong password"))
        }
        None if v.decoy => {
            // Remembered like a wrong password, so a repeat is as fast.
            cache.insert_failed(login, &v.password, &v.hash, now);
            Verdict::Denied(no_hash_reason(auth, login))
        }
        None => Verdict::Denied(format!("user {login:?}: removed by a reload")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::auth::passwords::Passwords;

    const HASH: &str = "$2b$04$abcdefghijklmnopqrstuu5Jk8tY6jFzfqiZ8GkQ0xQOCH2ozUL2u";

    /// A database from password-file text, with a decoy (cost 4).
    fn db(line: &str) -> AuthDb {
        let mut passwords = Passwords::parse(line).0;
        passwords.make_decoy(4).unwrap();
        AuthDb {
            passwords,
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
            decoy: false,
        }
    }

    fn queued(w: &mut Worker) -> Vec<(Ticket, String, bool)> {
        w.take_queued()
            .into_iter()
            .map(|j| match j {
                Job::Verify {
                    ticket,
                    hash,
                    decoy,
                    ..
                } => (ticket, hash.into(), decoy),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// Unknown users and users with a non-bcrypt hash are checked against
    /// the decoy (as long as a real check), then refused with the reason;
    /// a repeat is refused from the cache like a repeated wrong password.
    #[test]
    fn unknown_and_unsupported_users_cost_a_decoy_check() {
        let auth = db("u:$apr1$x$y\n");
        let decoy = auth.passwords.decoy().unwrap().to_string();
        let mut cache = LoginCache::new().unwrap();
        let mut w = Worker::detached();
        let now = Instant::now();
        for login in ["nobody", "u"] {
            let v = check(&auth, &cache, &mut w, now, ticket(), login, "pw");
            assert_eq!(v, Verdict::Pending, "{login}");
        }
        assert_eq!(w.in_flight, 2);
        let jobs = queued(&mut w);
        assert!(jobs.iter().all(|(_, h, d)| *h == decoy && *d), "{jobs:?}");
        let answer = |login: &str| Verified {
            login: login.into(),
            hash: decoy.clone().into(),
            decoy: true,
            ..verified("", false)
        };
        let v = finish(&auth, &mut cache, &mut w, now, answer("nobody"));
        assert_eq!(v, Verdict::Denied("user \"nobody\": unknown user".into()));
        let v = finish(&auth, &mut cache, &mut w, now, answer("u"));
        assert!(matches!(v, Verdict::Denied(why) if why.contains("unsupported")));
        // Repeats: no bcrypt, same reason.
        let v = check(&auth, &cache, &mut w, now, ticket(), "nobody", "pw");
        assert_eq!(v, Verdict::Denied("user \"nobody\": unknown user".into()));
        assert!(queued(&mut w).is_empty());
        // A UDP datagram of an unknown user is dropped at once.
        let v = check(&auth, &cache, &mut w, now, Ticket::Datagram(1), "x", "pw");
        assert_eq!(v, Verdict::Denied("user \"x\": unknown user".into()));
        assert_eq!(w.in_flight_bulk, 0);
        // Without a password file there is no decoy: refused at once.
        let none = AuthDb::default();
        let v = check(&none, &cache, &mut w, now, ticket(), "nobody", "pw");
        assert_eq!(v, Verdict::Denied("user \"nobody\": unknown user".into()));
        assert!(queued(&mut w).is_empty());
    }

    #[test]
    fn a_user_added_while_the_decoy_ran_is_checked_for_real() {
        let auth = db(&format!("u:{HASH}\n"));
        let mut cache = LoginCache::new().unwrap();
        let mut w = Worker::detached();
        let v = Verified {
            hash: "$2b$04$decoy".into(),
            decoy: true,
            ..verified("", false)
        };
        let got = finish(&auth, &mut cache, &mut w, Instant::now(), v);
        assert_eq!(got, Verdict::Pending);
        assert_eq!(queued(&mut w), [(ticket(), HASH.to_string(), false)]);
    }

    #[test]
    fn cache_miss_is_pending_then_granted_and_cached() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let auth = db(&format!("u:{hash}\n"));
        let mut cache = LoginCache::new().unwrap();
        let mut w = Worker::detached();
        let now = Instant::now();
        assert_eq!(
            check(&auth, &cache, &mut w, now, ticket(), "u", "pw"),
            Verdict::Pending
        );
        assert_eq!(w.in_flight, 1);
        let got = finish(&auth, &mut cache, &mut w, now, verified(&hash, true));
        assert_eq!(got, Verdict::Granted(hash.clone().into()));
        assert_eq!(
            check(&auth, &cache, &mut w, now, ticket(), "u", "pw"),
            Verdict::Granted(hash.into()),
            "the second login is answered from the cache"
        );
        assert_eq!(w.in_flight, 1);
    }

    /// A wrong password is remembered for a minute: repeated, it is refused
    /// without bcrypt; another password, or the same after a minute or a
    /// reload, is checked again.
    #[test]
    fn wrong_password_is_remembered_for_a_while() {
        let auth = db(&format!("u:{HASH}\n"));
        let mut cache = LoginCache::new().unwrap();
        let mut w = Worker::detached();
        let now = Instant::now();
        let v = finish(&auth, &mut cache, &mut w, now, verified(HASH, false));
        assert_eq!(v, Verdict::Denied("user \"u\": wrong password".into()));
        for t in [ticket(), Ticket::Datagram(3)] {
            let v = check(&auth, &cache, &mut w, now, t, "u", "pw");
            assert_eq!(
                v,
                Verdict::Denied("user \"u\": wrong password (repeated)".into())
            );
        }
        assert_eq!((w.in_flight, w.in_flight_bulk), (0, 0), "no bcrypt job");
        let v = check(&auth, &cache, &mut w, now, ticket(), "u", "other");
        assert_eq!(v, Verdict::Pending);
        let later = now + crate::server::auth::cache::FAILED_TTL;
        let v = check(&auth, &cache, &mut w, later, ticket(), "u", "pw");
        assert_eq!(v, Verdict::Pending, "expired");
        cache.clear();
        let v = check(&auth, &cache, &mut w, now, ticket(), "u", "pw");
        assert_eq!(v, Verdict::Pending, "cleared (reload)");
    }

    #[test]
    fn reloaded_hash_and_removed_user() {
        let auth = db(&format!("u:{HASH}\n"));
        let mut cache = LoginCache::new().unwrap();
        let mut w = Worker::detached();
        let now = Instant::now();
        // Checked against an older hash, right or wrong: checked again
        // against the current one.
        for ok in [true, false] {
            let v = finish(&auth, &mut cache, &mut w, now, verified("$2b$04$old", ok));
            assert_eq!(v, Verdict::Pending);
        }
        assert_eq!(w.in_flight, 2);
        assert_eq!(cache.failed_len(), 0);
        let gone = db("");
        let v = finish(&gone, &mut cache, &mut w, now, verified(HASH, true));
        assert_eq!(v, Verdict::Denied("user \"u\": removed by a reload".into()));
        assert!(cache.is_empty());
    }

    /// The interactive and bulk kinds have a cap each: a flood of datagram
    /// checks never makes a login busy.
    #[test]
    fn busy_per_kind() {
        let auth = db(&format!("u:{HASH}\n"));
        let cache = LoginCache::new().unwrap();
        let mut w = Worker::detached();
        let now = Instant::now();
        w.in_flight_bulk = MAX_PENDING_AUTH;
        let udp = Ticket::Datagram(1);
        assert_eq!(
            check(&auth, &cache, &mut w, now, udp, "u", "pw"),
            Verdict::Busy
        );
        assert_eq!(
            check(&auth, &cache, &mut w, now, ticket(), "u", "pw"),
            Verdict::Pending
        );
        w.in_flight = MAX_PENDING_AUTH;
        assert_eq!(
            check(&auth, &cache, &mut w, now, ticket(), "u", "pw"),
            Verdict::Busy
        );
    }
}
