//! Unit tests of PSRT password logins through the one auth pipeline: the
//! bcrypt job, its answer (given by hand: the harness's worker is detached
//! and never answers; `in_flight` is left as the loop would find it before
//! its own decrement), the verified-login cache, limits, the throttle, and
//! what a reload does to logins in progress and to live sessions.

use std::net::IpAddr;
use std::path::Path;

use psrt_protocol::{Request, StreamKind};

use super::reload;
use super::state::Phase as Psrt;
use crate::server::auth::login::MAX_PENDING_AUTH;
use crate::server::auth::throttle::LoginThrottle;
use crate::server::auth::worker::{Ticket, Verified};
use crate::server::auth::{Acl, AuthDb, Passwords};
use crate::server::config::Config;
use crate::server::conn::{CloseReason, ConnId, Peer};
use crate::server::dispatch;
use crate::server::phase::{Phase, due, wants_input};
use crate::server::testing::{Harness, data_hello, greeting, login_frame, request, topics};

/// `_`, `u` and `v` may publish and subscribe to everything.
const ACL: &str =
    "_:\n  sub: '#'\n  pub: '#'\nu:\n  sub: '#'\n  pub: '#'\nv:\n  sub: '#'\n  pub: '#'\n";

fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

/// An auth database from ACL text and (login, bcrypt hash) pairs.
fn db(acl: &str, users: &[(&str, &str)]) -> AuthDb {
    let lines: String = users.iter().map(|(u, h)| format!("{u}:{h}\n")).collect();
    let (passwords, warnings) = Passwords::parse(&lines);
    assert!(warnings.is_empty(), "{warnings:?}");
    AuthDb {
        acl: Acl::parse(acl, Path::new("acl.yml")).unwrap(),
        passwords,
        ..AuthDb::default()
    }
}

/// Users `u` and `v`, both with the password `pw`.
fn harness() -> Harness {
    let auth = db(ACL, &[("u", &hash("pw")), ("v", &hash("pw"))]);
    Harness::with(Config::embedded_default(), auth)
}

/// A control connection that has sent its greeting and `frame`.
fn send_login(h: &mut Harness, frame: &[u8]) -> ConnId {
    let id = h.accept();
    h.feed(id, &greeting(StreamKind::Control));
    assert_eq!(h.take_output(id), [0xEE, 0xAA, 0x01, 0x00]);
    h.feed(id, frame);
    id
}

/// The worker's answer for `id`, checked against `hash`.
fn verified(h: &Harness, id: ConnId, login: &str, hash: &str, ok: bool) -> Verified {
    Verified {
        ticket: Ticket::Conn {
            conn: id,
            serial: h.conns[id].serial,
        },
        login: login.into(),
        hash: hash.into(),
        password: "pw".into(),
        ok,
        decoy: false,
    }
}

/// Answers `id`'s job as checked against `login`'s current hash.
fn answer(h: &mut Harness, id: ConnId, login: &str, ok: bool) {
    let current = h.core.auth.passwords.get(login).unwrap().hash.clone();
    let v = verified(h, id, login, &current, ok);
    dispatch::on_verified(&mut h.cx(), id, v);
}

/// `login` logged in with password `pw` through bcrypt; the token taken.
fn logged_in(h: &mut Harness, login: &str) -> ConnId {
    let id = send_login(h, &login_frame(login, "pw"));
    answer(h, id, login, true);
    assert_eq!(h.take_output(id).len(), 32, "a token");
    id
}

fn authenticating(h: &Harness, id: ConnId) -> bool {
    matches!(h.phase(id), Phase::Psrt(Psrt::Authenticating))
}

fn closing(h: &Harness, id: ConnId) -> Option<&CloseReason> {
    match h.phase(id) {
        Phase::Closing(r) => Some(r),
        _ => None,
    }
}

fn peer_ip() -> IpAddr {
    "192.0.2.7".parse().unwrap()
}

#[test]
fn password_login_waits_for_bcrypt_with_input_paused() {
    let mut h = harness();
    let mut bytes = login_frame("u", "pw");
    bytes.extend(request(&Request::Nop));
    let id = send_login(&mut h, &bytes);
    assert!(authenticating(&h, id), "{:?}", h.phase(id));
    assert_eq!(h.core.worker.in_flight, 1);
    assert!(!wants_input(&h.conns[id]));
    assert_eq!(h.conns[id].rx.len(), 1, "the pipelined NOP waits");
    assert!(h.take_output(id).is_empty());
    assert_eq!(h.core.sessions, 0);
    // No deadline while bcrypt runs, and a deadline check changes nothing.
    let timeout = h.core.config.timeout;
    assert_eq!(due(&h.conns[id], timeout), None);
    h.advance(timeout * 3);
    dispatch::on_due(&mut h.cx(), id);
    assert!(authenticating(&h, id));
    assert_eq!(h.core.stats.timeouts, 0);
}

#[test]
fn verified_login_starts_a_session_and_is_cached() {
    let mut h = harness();
    let mut bytes = login_frame("u", "pw");
    bytes.extend(request(&Request::Nop));
    let id = send_login(&mut h, &bytes);
    answer(&mut h, id, "u", true);
    let token = h.take_output(id);
    assert_eq!(token.len(), 32);
    let session = h.session(id);
    assert_eq!(&*session.login, "u");
    assert_eq!(session.token.0[..], token[..]);
    assert_eq!(
        session.hash.as_deref(),
        Some(&*h.core.auth.passwords.get("u").unwrap().hash)
    );
    assert!(!session.trusted);
    assert_eq!(h.core.sessions, 1);
    assert_eq!(h.core.per_user.get("u"), Some(&1));
    assert_eq!(h.core.tokens.get(&session.token), Some(&id));
    assert_eq!(h.core.cache.len(), 1);
    // The NOP pipelined behind the login is handled on the next pass.
    assert!(h.core.ready_list.contains(&id));
    dispatch::process_input(&mut h.cx(), id);
    assert_eq!(h.take_output(id), [0x01]);

    // A second client with the same password: no bcrypt job.
    let (second, _) = h.login("u", "pw");
    assert_eq!(&*h.session(second).login, "u");
    assert_eq!(h.core.worker.in_flight, 1);
    assert_eq!(h.core.per_user.get("u"), Some(&2));
    // Another password for the same user is not vouched for.
    let third = send_login(&mut h, &login_frame("u", "other"));
    assert!(authenticating(&h, third));
    assert_eq!(h.core.worker.in_flight, 2);
}

#[test]
fn wrong_password_closes_counts_and_tells_the_throttle() {
    let mut h = harness();
    h.core.throttle = LoginThrottle::new(2);
    for n in 1..=2 {
        let id = send_login(&mut h, &login_frame("u", "nope"));
        assert!(authenticating(&h, id));
        answer(&mut h, id, "u", false);
        assert!(
            matches!(closing(&h, id), Some(CloseReason::LoginFailed(why)) if why.contains("wrong password")),
            "{:?}",
            h.phase(id)
        );
        assert!(h.take_output(id).is_empty(), "no token");
        assert_eq!(h.core.stats.login_failures, n);
        let blocked = h.core.throttle.login_blocked(peer_ip(), "u", h.core.now);
        assert_eq!(blocked.is_some(), n == 2, "blocked after the second");
    }
    // The pair is refused without a password check, and not counted again.
    let jobs = h.core.worker.in_flight;
    let id = send_login(&mut h, &login_frame("u", "right-or-not"));
    assert!(matches!(closing(&h, id), Some(CloseReason::LoginFailed(_))));
    assert_eq!(h.core.worker.in_flight, jobs, "no bcrypt job");
    assert_eq!(h.core.stats.login_failures, 2);
    assert_eq!(h.core.stats.auth_blocked, 1);
    assert!(
        h.core.throttle.blocked(peer_ip(), h.core.now).is_none(),
        "the address is not"
    );
    assert_eq!(h.core.sessions, 0);
    assert!(h.core.tokens.is_empty());
    assert!(h.core.cache.is_empty(), "a failure is not cached");
}

#[test]
fn an_answer_for_a_conn_that_is_no_longer_authenticating_is_ignored() {
    let mut h = harness();
    let id = send_login(&mut h, &login_frame("u", "pw"));
    let late = verified(
        &h,
        id,
        "u",
        &h.core.auth.passwords.get("u").unwrap().hash,
        true,
    );
    // The client hung up while bcrypt ran.
    dispatch::close(&mut h.cx(), id, CloseReason::PeerClosed);
    dispatch::on_verified(&mut h.cx(), id, late);
    assert_eq!(closing(&h, id), Some(&CloseReason::PeerClosed));
    assert_eq!(h.core.sessions, 0);
    assert!(h.take_output(id).is_empty());

    // The slot is reused by a new connection: another serial, which the
    // loop compares before calling `on_verified`; called anyway, it does
    // nothing to a connection in another phase.
    let old_serial = h.conns[id].serial;
    let late = verified(
        &h,
        id,
        "u",
        &h.core.auth.passwords.get("u").unwrap().hash,
        true,
    );
    h.conns.remove(id);
    let reused = h.accept();
    assert_eq!(reused, id);
    assert_ne!(h.conns[reused].serial, old_serial);
    h.feed(reused, &greeting(StreamKind::Control));
    h.take_output(reused);
    dispatch::on_verified(&mut h.cx(), reused, late);
    assert!(matches!(h.phase(reused), Phase::Psrt(Psrt::Login)));
    assert!(h.take_output(reused).is_empty());
    assert_eq!(h.core.sessions, 0);
    assert_eq!(h.core.stats.login_failures, 0);
}

#[test]
fn max_clients_per_user_refusal_is_counted() {
    let mut h = harness();
    h.core.config.max_clients_per_user = 1;
    let first = logged_in(&mut h, "u");
    // Cached: refused at once by the limit, not by the password.
    let second = send_login(&mut h, &login_frame("u", "pw"));
    assert_eq!(
        closing(&h, second),
        Some(&CloseReason::Limit("max_clients_per_user"))
    );
    assert_eq!(h.core.stats.limit_refusals, 1);
    assert_eq!(h.core.stats.login_failures, 0);
    assert_eq!(h.core.per_user.get("u"), Some(&1));
    // Two logins of `v` verified at the same time: the second answer hits
    // the limit.
    let a = send_login(&mut h, &login_frame("v", "pw"));
    let b = send_login(&mut h, &login_frame("v", "pw"));
    answer(&mut h, a, "v", true);
    answer(&mut h, b, "v", true);
    assert!(matches!(h.phase(a), Phase::Psrt(Psrt::Control(_))));
    assert_eq!(
        closing(&h, b),
        Some(&CloseReason::Limit("max_clients_per_user"))
    );
    assert_eq!(h.core.stats.limit_refusals, 2);
    // Once the first session of `u` ends, `u` may log in again.
    h.feed(first, &request(&Request::Bye));
    assert_eq!(h.core.per_user.get("u"), None);
    let (again, _) = h.login("u", "pw");
    assert_eq!(&*h.session(again).login, "u");
}

#[test]
fn too_many_pending_checks_refuse_the_login() {
    let mut h = harness();
    h.core.worker.in_flight = MAX_PENDING_AUTH;
    let id = send_login(&mut h, &login_frame("u", "pw"));
    assert_eq!(
        closing(&h, id),
        Some(&CloseReason::Limit(
            "too many logins waiting for verification"
        ))
    );
    assert_eq!(h.core.worker.in_flight, MAX_PENDING_AUTH, "no job queued");
    assert_eq!(h.core.stats.login_failures, 0);
}

#[test]
fn a_hash_changed_by_a_reload_is_checked_again() {
    let mut h = harness();
    let id = send_login(&mut h, &login_frame("u", "pw"));
    let old = h.core.auth.passwords.get("u").unwrap().hash.to_string();
    let new = hash("pw");
    h.core.auth = db(ACL, &[("u", &new), ("v", &hash("pw"))]);
    let stale = verified(&h, id, "u", &old, true);
    dispatch::on_verified(&mut h.cx(), id, stale);
    assert!(authenticating(&h, id), "{:?}", h.phase(id));
    assert_eq!(h.core.worker.in_flight, 2, "queued again");
    assert!(h.take_output(id).is_empty());
    assert_eq!(h.core.sessions, 0);
    assert!(h.core.cache.is_empty(), "the old hash is not cached");
    let fresh = verified(&h, id, "u", &new, true);
    dispatch::on_verified(&mut h.cx(), id, fresh);
    assert_eq!(h.take_output(id).len(), 32);
    assert_eq!(h.session(id).hash.as_deref(), Some(new.as_str()));

    // A user removed while bcrypt ran is refused, right password or not.
    let gone = send_login(&mut h, &login_frame("v", "pw"));
    let v_hash = h.core.auth.passwords.get("v").unwrap().hash.to_string();
    h.core.auth = db(ACL, &[("u", &new)]);
    let v = verified(&h, gone, "v", &v_hash, true);
    dispatch::on_verified(&mut h.cx(), gone, v);
    assert!(
        matches!(closing(&h, gone), Some(CloseReason::LoginFailed(why)) if why.contains("removed by a reload")),
        "{:?}",
        h.phase(gone)
    );
    assert_eq!(h.core.stats.login_failures, 1);
}

#[test]
fn trust_unix_socket_does_not_apply_to_tcp_peers() {
    let mut h = harness();
    h.core.config.trust_unix_socket = true;
    let tcp = send_login(&mut h, &login_frame("u", "whatever"));
    assert!(authenticating(&h, tcp), "a TCP login still needs bcrypt");
    assert_eq!(h.core.worker.in_flight, 1);
    h.core.config.allow_anonymous = false;
    let anon = send_login(&mut h, &login_frame("", ""));
    assert!(matches!(
        closing(&h, anon),
        Some(CloseReason::LoginFailed(_))
    ));

    // The same login on a Unix-socket peer: trusted at once, full client
    // access — but not the replicator right (that only comes from the ACL).
    let unix = h.accept();
    h.conns[unix].peer = Peer::Unix("/run/psrtd.sock".into());
    h.feed(unix, &greeting(StreamKind::Control));
    h.feed(unix, &login_frame("u", "whatever"));
    assert_eq!(h.take_output(unix).len(), 4 + 32);
    let session = h.session(unix);
    assert!(session.trusted && session.hash.is_none());
    assert!(session.acl.admin && !session.acl.replicator);
    assert_eq!(h.core.worker.in_flight, 1, "no job for it");
}

#[test]
fn reload_revokes_sessions_whose_entry_or_password_is_gone() {
    let mut h = harness();
    let u = logged_in(&mut h, "u");
    let v = logged_in(&mut h, "v");
    let (anon, anon_data) = h.client();
    // `u` has a data socket, which follows its session.
    let u_data = h.accept();
    h.feed(u_data, &greeting(StreamKind::Data));
    let token = h.session(u).token;
    h.feed(u_data, &data_hello(token, 5));
    assert!(matches!(h.phase(u_data), Phase::Psrt(Psrt::Data(_))));
    h.feed(u, &topics(true, &["a/#"]));
    assert_eq!(h.core.matcher.len(), 1);

    // `u` loses its ACL entry; `v` gets a new password.
    let acl = "_:\n  sub: '#'\n  pub: '#'\nv:\n  sub: '#'\n";
    let u_hash = h.core.auth.passwords.get("u").unwrap().hash.to_string();
    h.core.auth = db(acl, &[("u", &u_hash), ("v", &hash("new"))]);
    h.core.cache.clear();
    reload::apply(&mut h.cx());
    assert_eq!(h.core.effects.len(), 2, "closes are queued as effects");
    assert!(closing(&h, u).is_none() && closing(&h, v).is_none());
    dispatch::apply_effects(&mut h.cx());
    assert_eq!(
        closing(&h, u),
        Some(&CloseReason::Revoked("no ACL entry any more"))
    );
    assert_eq!(
        closing(&h, v),
        Some(&CloseReason::Revoked("password changed or user removed"))
    );
    assert_eq!(closing(&h, u_data), Some(&CloseReason::SessionEnded));
    assert!(closing(&h, anon).is_none() && closing(&h, anon_data).is_none());
    assert_eq!(h.core.sessions, 1);
    assert_eq!(h.core.tokens.len(), 1);
    assert_eq!(
        h.core.matcher.len(),
        0,
        "the revoked session's masks are gone"
    );
    assert!(!h.core.per_user.contains_key("u") && !h.core.per_user.contains_key("v"));
}

#[test]
fn reload_narrowing_the_acl_drops_subscriptions() {
    let mut h = harness();
    let u = logged_in(&mut h, "u");
    let (other, other_data) = h.client();
    h.feed(u, &topics(true, &["a/#", "b/x"]));
    h.feed(other, &topics(true, &["b/x"]));
    assert_eq!(h.take_output(u), [0x01]);
    assert_eq!(h.core.matcher.len(), 3);

    // Same password file; `u` may now only subscribe under `a/`.
    let passwords = h.core.auth.passwords.clone();
    let acl = "_:\n  sub: '#'\n  pub: '#'\nu:\n  sub: a/#\n  pub: '#'\n";
    h.core.auth = AuthDb {
        acl: Acl::parse(acl, Path::new("acl.yml")).unwrap(),
        passwords,
        ..AuthDb::default()
    };
    reload::apply(&mut h.cx());
    dispatch::apply_effects(&mut h.cx());
    assert!(closing(&h, u).is_none(), "not revoked");
    let masks: Vec<&str> = h.session(u).masks.iter().collect();
    assert_eq!(masks, ["a/#"]);
    assert_eq!(h.core.matcher.len(), 2, "u's b/x is gone, other's stays");
    // The new entry is in force for new requests too.
    h.feed(u, &topics(true, &["b/x"]));
    assert_eq!(h.take_output(u), [0xFE], "access denied");
    assert_eq!(h.core.matcher.len(), 2);
    // A publish to b/x still reaches the other subscriber.
    h.feed(u, &crate::server::testing::publish("b/x", b"m"));
    assert_eq!(h.take_output(u), [0x01]);
    assert!(!h.take_output(other_data).is_empty());
}

/// A wrong password is remembered for a minute: the same one again is
/// refused without bcrypt, and still counted and told to the throttle.
#[test]
fn a_repeated_wrong_password_is_refused_without_bcrypt_but_counted() {
    let mut h = harness();
    h.core.throttle = LoginThrottle::new(2);
    let id = send_login(&mut h, &login_frame("u", "nope"));
    let v = Verified {
        password: "nope".into(),
        ..verified(&h, id, "u", &hash_of(&h, "u"), false)
    };
    dispatch::on_verified(&mut h.cx(), id, v);
    assert!(closing(&h, id).is_some());
    let again = send_login(&mut h, &login_frame("u", "nope"));
    assert!(
        matches!(closing(&h, again), Some(CloseReason::LoginFailed(why)) if why.contains("wrong password")),
        "{:?}",
        h.phase(again)
    );
    assert_eq!(h.core.worker.in_flight, 1, "no second bcrypt job");
    assert_eq!(h.core.stats.login_failures, 2);
    assert!(
        h.core
            .throttle
            .login_blocked(peer_ip(), "u", h.core.now)
            .is_some()
    );
    // Another user's password still goes to bcrypt (and would be granted).
    let right = send_login(&mut h, &login_frame("v", "pw"));
    assert!(authenticating(&h, right));
}

fn hash_of(h: &Harness, login: &str) -> String {
    h.core.auth.passwords.get(login).unwrap().hash.to_string()
}
