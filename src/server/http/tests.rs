//! Unit tests of the stats endpoint: request handling through `dispatch`
//! (routes, auth, responses) and the rendered bodies. Basic credentials go
//! to the harness's detached worker, which never answers: the tests answer
//! with `dispatch::on_verified`, as the loop does once serials match.

use std::net::IpAddr;
use std::path::Path;

use super::head::Route;
use super::phase::Phase as Http;
use super::render::{metrics_text, status_json};
use crate::server::auth::login::MAX_PENDING_AUTH;
use crate::server::auth::throttle::LoginThrottle;
use crate::server::auth::worker::{Ticket, Verified};
use crate::server::auth::{Acl, AuthDb, Passwords};
use crate::server::config::Config;
use crate::server::conn::{CloseReason, ConnId};
use crate::server::dispatch;
use crate::server::phase::{ListenerKind, Phase, due, wants_input};
use crate::server::stats::COUNTERS;
use crate::server::testing::Harness;

#[test]
fn status_and_metrics_follow_the_counter_table() {
    let mut h = Harness::new();
    h.core.stats.c_pub_messages = 3;
    h.core.stats.udp_dropped = 9;
    let json: serde_json::Value = serde_json::from_str(&status_json(&h.core, &h.conns)).unwrap();
    assert_eq!(json["counters"]["c_pub_messages"], 3);
    assert_eq!(json["psrtd"]["counters"]["udp_dropped"], 9);
    assert_eq!(json["clients"]["client_count"], 0);
    assert!(json["cluster"].is_null());
    let metrics = metrics_text(&h.core, &h.conns);
    assert!(metrics.contains("psrtd_pub_messages_total 3\n"));
    assert!(metrics.contains("psrtd_udp_dropped_total 9\n"));
    for c in COUNTERS {
        assert!(
            metrics.contains(&format!("# TYPE psrtd_{}_total counter", c.metric)),
            "{} is exported",
            c.metric
        );
    }
    assert!(metrics.contains("psrtd_connections 0\n"));
}

/// Standard base64 with padding, for `Authorization: Basic`.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A GET request head, with Basic credentials if given.
fn get(path: &str, basic: Option<(&str, &str)>) -> Vec<u8> {
    let auth = basic.map_or(String::new(), |(u, p)| {
        format!(
            "Authorization: Basic {}\r\n",
            base64(format!("{u}:{p}").as_bytes())
        )
    });
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n").into_bytes()
}

/// A new stats connection.
fn stats_conn(h: &mut Harness) -> ConnId {
    h.add(ListenerKind::Http.first_phase())
}

/// The queued response split into (status line, head, body).
fn response(h: &mut Harness, id: ConnId) -> (String, String, Vec<u8>) {
    let out = h.take_output(id);
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8(out[..end + 2].to_vec()).unwrap();
    let body = out[end + 4..].to_vec();
    let status = head.lines().next().unwrap().to_string();
    let length = format!("Content-Length: {}\r\n", body.len());
    assert!(head.contains(&length), "{head:?} has {length:?}");
    assert!(head.contains("Connection: close\r\n"), "{head:?}");
    (status, head, body)
}

fn done(h: &Harness, id: ConnId) -> bool {
    matches!(h.phase(id), Phase::Closing(CloseReason::HttpDone))
}

/// An auth database: the ACL text and users with bcrypt hashes of their
/// passwords (cost 4: fast).
fn db(acl: &str, users: &[(&str, &str)]) -> AuthDb {
    let lines: String = users
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", bcrypt::hash(p, 4).unwrap()))
        .collect();
    let (mut passwords, warnings) = Passwords::parse(&lines);
    assert!(warnings.is_empty(), "{warnings:?}");
    passwords.make_decoy(4).unwrap();
    AuthDb {
        acl: Acl::parse(acl, Path::new("acl.yml")).unwrap(),
        passwords,
        ..AuthDb::default()
    }
}

/// `_` may pub/sub but not read stats; `admin` may; `user` may not.
const ACL: &str = "_:\n  sub: '#'\n  pub: '#'\nadmin:\n  admin: true\nuser:\n  sub: '#'\n";

fn locked_down() -> Harness {
    Harness::with(
        Config::embedded_default(),
        db(ACL, &[("admin", "pw"), ("user", "pw")]),
    )
}

/// Answers the one verification in flight for `id` as the worker would.
fn answer(h: &mut Harness, id: ConnId, login: &str, password: &str, ok: bool) {
    let hash = h.core.auth.passwords.get(login).unwrap().hash.clone();
    let ticket = Ticket::Conn {
        conn: id,
        serial: h.conns[id].serial,
    };
    let v = Verified {
        ticket,
        login: login.into(),
        hash,
        password: password.into(),
        ok,
        decoy: false,
    };
    dispatch::on_verified(&mut h.cx(), id, v);
}

#[test]
fn health_needs_no_auth_and_ends_the_connection() {
    let mut h = locked_down();
    let id = stats_conn(&mut h);
    h.feed(id, b"GET /health HTTP/1.1\r\n\r\n");
    assert!(done(&h, id), "{:?}", h.phase(id));
    let (status, head, body) = response(&mut h, id);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(head.contains("Content-Type: text/plain"), "{head}");
    assert_eq!(body, b"ok\n");
    assert_eq!(h.core.worker.in_flight, 0);
}

#[test]
fn unknown_paths_and_methods_are_refused() {
    let mut h = Harness::new();
    for (request, expected) in [
        (&b"GET /nope HTTP/1.1\r\n\r\n"[..], "HTTP/1.1 404 Not Found"),
        (
            b"POST /status HTTP/1.1\r\n\r\n",
            "HTTP/1.1 405 Method Not Allowed",
        ),
        (
            b"HEAD /health HTTP/1.1\r\n\r\n",
            "HTTP/1.1 405 Method Not Allowed",
        ),
        (b"\x01\x02 junk\r\n\r\n", "HTTP/1.1 400 Bad Request"),
    ] {
        let id = stats_conn(&mut h);
        h.feed(id, request);
        assert!(done(&h, id), "{request:?}: {:?}", h.phase(id));
        assert_eq!(response(&mut h, id).0, expected, "{request:?}");
    }
    let id = stats_conn(&mut h);
    h.feed(id, b"GET /status HTTP/1.1\r\nAuthorization: Basic\r\n\r\n");
    let (status, _, body) = response(&mut h, id);
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
    assert_eq!(body, b"Invalid authorization header");
}

#[test]
fn status_is_json_for_an_admin_anonymous_entry() {
    // The embedded default's `_` entry is admin.
    let mut h = Harness::new();
    h.core.stats.c_pub_messages = 5;
    let id = stats_conn(&mut h);
    h.feed(id, &get("/status", None));
    assert!(done(&h, id));
    let (status, head, body) = response(&mut h, id);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        head.contains("Content-Type: application/json\r\n"),
        "{head}"
    );
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["counters"]["c_pub_messages"], 5);
    // The page and the metrics are served the same way.
    let id = stats_conn(&mut h);
    h.feed(id, &get("/metrics", None));
    let (status, _, body) = response(&mut h, id);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        String::from_utf8(body)
            .unwrap()
            .contains("psrtd_pub_messages_total 5\n")
    );
    let id = stats_conn(&mut h);
    h.feed(id, &get("/", None));
    let (status, head, _) = response(&mut h, id);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(head.contains("text/html"), "{head}");
}

#[test]
fn anonymous_without_admin_gets_a_challenge() {
    let mut h = locked_down();
    // `/metrics` is open to loopback only; the harness peer is 192.0.2.7.
    for path in ["/status", "/metrics", "/"] {
        let id = stats_conn(&mut h);
        h.feed(id, &get(path, None));
        assert!(done(&h, id), "{path}");
        let (status, head, body) = response(&mut h, id);
        assert_eq!(status, "HTTP/1.1 401 Unauthorized", "{path}");
        assert!(
            head.contains("WWW-Authenticate: Basic realm=\"psrtd\"\r\n"),
            "{head}"
        );
        assert!(body.is_empty());
    }
    assert_eq!(h.core.stats.login_failures, 0, "no password was tried");
}

#[test]
fn basic_credentials_wait_for_bcrypt_then_are_cached() {
    let mut h = locked_down();
    let id = stats_conn(&mut h);
    h.feed(id, &get("/status", Some(("admin", "pw"))));
    assert!(
        matches!(
            h.phase(id),
            Phase::Http(Http::Authenticating(Route::Status))
        ),
        "{:?}",
        h.phase(id)
    );
    assert_eq!(h.core.worker.in_flight, 1);
    assert!(h.take_output(id).is_empty(), "nothing is answered yet");
    assert!(!wants_input(&h.conns[id]), "input is paused");
    assert_eq!(
        due(&h.conns[id], h.core.config.timeout),
        None,
        "no deadline while the worker runs"
    );
    // A deadline check in this phase does nothing.
    h.advance(h.core.config.timeout * 2);
    dispatch::on_due(&mut h.cx(), id);
    assert!(matches!(h.phase(id), Phase::Http(Http::Authenticating(_))));

    answer(&mut h, id, "admin", "pw", true);
    assert!(done(&h, id));
    let (status, head, _) = response(&mut h, id);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(head.contains("application/json"), "{head}");

    // The same credentials again: answered from the cache, no new job.
    let again = stats_conn(&mut h);
    h.feed(again, &get("/status", Some(("admin", "pw"))));
    assert!(done(&h, again));
    assert_eq!(response(&mut h, again).0, "HTTP/1.1 200 OK");
    assert_eq!(h.core.worker.in_flight, 1);
    // A different password is not vouched for by the cache.
    let other = stats_conn(&mut h);
    h.feed(other, &get("/status", Some(("admin", "pw2"))));
    assert!(matches!(
        h.phase(other),
        Phase::Http(Http::Authenticating(_))
    ));
    assert_eq!(h.core.worker.in_flight, 2);
    assert_eq!(h.core.stats.login_failures, 0);
}

#[test]
fn wrong_basic_password_is_401_and_counted() {
    let mut h = locked_down();
    h.core.throttle = LoginThrottle::new(1);
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    let id = stats_conn(&mut h);
    h.feed(id, &get("/status", Some(("admin", "nope"))));
    assert_eq!(h.core.worker.in_flight, 1);
    answer(&mut h, id, "admin", "nope", false);
    assert!(done(&h, id));
    let (status, head, _) = response(&mut h, id);
    assert_eq!(status, "HTTP/1.1 401 Unauthorized");
    assert!(head.contains("WWW-Authenticate: Basic"), "{head}");
    assert_eq!(h.core.stats.login_failures, 1);
    assert!(
        h.core
            .throttle
            .login_blocked(ip, "admin", h.core.now)
            .is_some(),
        "the throttle is told, for this login from this address"
    );
    assert!(h.core.throttle.blocked(ip, h.core.now).is_none());
    // That login is now refused without a password check.
    let again = stats_conn(&mut h);
    h.feed(again, &get("/status", Some(("admin", "nope"))));
    assert_eq!(h.core.worker.in_flight, 1);
    assert_eq!(response(&mut h, again).0, "HTTP/1.1 401 Unauthorized");
    assert_eq!(h.core.stats.auth_blocked, 1);
    // Another login from the same address is still checked (an unknown
    // one costs a decoy check, like a known one).
    let other = stats_conn(&mut h);
    h.feed(other, &get("/status", Some(("someone", "nope"))));
    assert_eq!(h.core.worker.in_flight, 2);
    assert_eq!(h.core.stats.auth_blocked, 1);
}

#[test]
fn unknown_users_cost_a_decoy_check_and_non_admins_are_not_failures() {
    let mut h = locked_down();
    let id = stats_conn(&mut h);
    h.feed(id, &get("/status", Some(("nobody", "pw"))));
    assert!(
        matches!(h.phase(id), Phase::Http(Http::Authenticating(_))),
        "an unknown user waits for bcrypt (the decoy) like a known one"
    );
    assert_eq!(h.core.worker.in_flight, 1);
    let v = Verified {
        ticket: Ticket::Conn {
            conn: id,
            serial: h.conns[id].serial,
        },
        login: "nobody".into(),
        hash: h.core.auth.passwords.decoy().unwrap().into(),
        password: "pw".into(),
        ok: false,
        decoy: true,
    };
    dispatch::on_verified(&mut h.cx(), id, v);
    assert!(done(&h, id));
    assert_eq!(response(&mut h, id).0, "HTTP/1.1 401 Unauthorized");
    assert_eq!(h.core.stats.login_failures, 1);

    // A right password of a user whose ACL entry is not admin: refused,
    // but it is not a failed login.
    let id = stats_conn(&mut h);
    h.feed(id, &get("/status", Some(("user", "pw"))));
    answer(&mut h, id, "user", "pw", true);
    assert!(done(&h, id));
    assert_eq!(response(&mut h, id).0, "HTTP/1.1 401 Unauthorized");
    assert_eq!(h.core.stats.login_failures, 1);
}

#[test]
fn busy_worker_is_503() {
    let mut h = locked_down();
    h.core.worker.in_flight = MAX_PENDING_AUTH;
    let id = stats_conn(&mut h);
    h.feed(id, &get("/status", Some(("admin", "pw"))));
    assert!(done(&h, id));
    let (status, _, body) = response(&mut h, id);
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    assert_eq!(body, b"busy\n");
    assert_eq!(h.core.stats.login_failures, 0);
}

#[test]
fn request_head_may_arrive_in_pieces_but_within_the_timeout() {
    let mut h = Harness::new();
    let id = stats_conn(&mut h);
    let request = get("/health", None);
    let (last, head) = request.split_last().unwrap();
    for b in head {
        h.feed(id, &[*b]);
    }
    assert!(matches!(h.phase(id), Phase::Http(Http::Request)));
    assert!(h.take_output(id).is_empty());
    h.feed(id, &[*last]);
    assert_eq!(response(&mut h, id).0, "HTTP/1.1 200 OK");

    let slow = stats_conn(&mut h);
    h.feed(slow, b"GET /status HT");
    let timeout = h.core.config.timeout;
    assert_eq!(due(&h.conns[slow], timeout), Some(h.core.now + timeout));
    h.advance(timeout);
    dispatch::on_due(&mut h.cx(), slow);
    assert!(
        matches!(h.phase(slow), Phase::Closing(CloseReason::Timeout("http"))),
        "{:?}",
        h.phase(slow)
    );
    assert_eq!(h.core.stats.timeouts, 1);
    assert!(h.take_output(slow).is_empty());
}
