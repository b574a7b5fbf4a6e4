//! The stats endpoint against the real server: page, JSON, Prometheus and
//! health; admin checks with Basic auth and anonymous `_`; methods, paths,
//! malformed and oversize requests (T22).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{IO_TIMEOUT, Raw, Session, Setup, TestServer};

/// Sends raw request bytes; returns (status code, headers, body).
fn http(srv: &TestServer, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(srv.stats_addr.expect("stats bound")).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("response then close");
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (status, head.to_string(), body.to_string())
}

fn get(srv: &TestServer, path: &str, auth: Option<&str>) -> (u16, String, String) {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    http(
        srv,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n").as_bytes(),
    )
}

/// Anonymous `_` is an admin.
const OPEN_ACL: &str = "_:\n  sub: '#'\n  admin: true\n";

fn admin_server() -> TestServer {
    TestServer::with(
        Setup::default()
            .acl("_:\n  sub: '#'\n  pub: '#'\nboss:\n  admin: true\nworker:\n  pub: '#'\n")
            .user("boss", "s3cret")
            .user("worker", "pw"),
    )
}

/// Health needs no credentials; status is JSON with the reference's fields
/// and counts what happened.
#[test]
fn health_and_status_json() {
    let srv = admin_server();
    let (code, _, body) = get(&srv, "/health", None);
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let mut sub = Session::anonymous(srv.addr);
    sub.sub(&["a/#"]);
    let (mut publisher, _) = Raw::anonymous(srv.addr);
    assert_eq!(publisher.publish("a/b", b"xyz"), 0x01);
    assert_eq!(sub.recv().1, b"xyz");
    let basic = "Basic Ym9zczpzM2NyZXQ="; // boss:s3cret
    let (code, head, body) = get(&srv, "/status", Some(basic));
    assert_eq!(code, 200, "{head}\n{body}");
    assert!(head.contains("Content-Type: application/json"));
    for field in [
        "\"time\":",
        "\"uptime\":",
        "\"data_queue_size\":1024",
        "\"host\":",
        "\"version\":",
        "\"c_pub_messages\":1",
        "\"c_sent_messages\":1",
        "\"c_sub_ops\":1",
        "\"subscription_count\":1",
        "\"client_count\":2",
        "\"cluster\":null",
    ] {
        assert!(body.contains(field), "{field} in {body}");
    }
    // Cached after the first bcrypt check: the second request is answered the same.
    assert_eq!(get(&srv, "/", Some(basic)).0, 200);
}

/// Without credentials the `_` entry decides; a non-admin user or a wrong
/// password gets 401 with a Basic challenge; malformed headers get 400.
#[test]
fn admin_checks() {
    let srv = admin_server();
    let (code, head, _) = get(&srv, "/status", None);
    assert_eq!(code, 401, "_ is not admin here");
    assert!(head.contains("WWW-Authenticate: Basic"));
    assert_eq!(
        get(&srv, "/status", Some("Basic d29ya2VyOnB3")).0,
        401,
        "worker is not admin"
    );
    assert_eq!(
        get(&srv, "/status", Some("Basic Ym9zczp3cm9uZw==")).0,
        401,
        "wrong password"
    );
    assert_eq!(
        get(&srv, "/status", Some("Basic bm9ib2R5OngK")).0,
        401,
        "unknown user"
    );
    let (code, _, body) = get(&srv, "/status", Some("Basic Ym9zcw=="));
    assert_eq!(code, 400);
    assert!(body.contains("password not specified"), "{body}");
    assert_eq!(get(&srv, "/status", Some("Basic")).0, 400);
    // Another scheme counts as no credentials.
    assert_eq!(get(&srv, "/status", Some("Bearer x")).0, 401);

    let open = TestServer::with(Setup::default().acl(OPEN_ACL));
    assert_eq!(get(&open, "/status", None).0, 200);
    let (code, head, body) = get(&open, "/", None);
    assert_eq!(code, 200);
    assert!(head.contains("text/html"));
    assert!(body.contains("PSRT stats"));
}

/// Prometheus metrics are served to loopback without credentials.
#[test]
fn prometheus_metrics() {
    let srv = admin_server();
    let (code, head, body) = get(&srv, "/metrics", None);
    assert_eq!(code, 200);
    assert!(head.contains("text/plain; version=0.0.4"));
    for line in [
        "# TYPE psrtd_pub_messages_total counter",
        "psrtd_slow_consumers_total 0",
        "# TYPE psrtd_clients gauge",
        "psrtd_clients 0",
        "psrtd_uptime_seconds ",
    ] {
        assert!(body.contains(line), "{line} in\n{body}");
    }
}

/// Only GET; unknown paths 404; garbage 400; oversize heads 431; a request
/// that never completes is closed at the deadline.
#[test]
fn bad_requests() {
    let srv = TestServer::with(
        Setup::default()
            .acl(OPEN_ACL)
            .tweak(|c| c.timeout = Duration::from_secs(1)),
    );
    assert_eq!(http(&srv, b"POST /status HTTP/1.1\r\n\r\n").0, 405);
    assert_eq!(http(&srv, b"HEAD / HTTP/1.1\r\n\r\n").0, 405);
    assert_eq!(get(&srv, "/nope", None).0, 404);
    assert_eq!(get(&srv, "/status?x=1", None).0, 200);
    assert_eq!(http(&srv, b"\x00\x01\x02 garbage\r\n\r\n").0, 400);
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(10_000));
    assert_eq!(http(&srv, big.as_bytes()).0, 431);
    let many: String = (0..40).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(
        http(&srv, format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()).0,
        431
    );
    let mut slow = TcpStream::connect(srv.stats_addr.unwrap()).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(slow.read(&mut buf).expect("closed, not timed out"), 0);
}
