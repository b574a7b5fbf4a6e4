//! The stats endpoint's tables against the real server: `/topics`,
//! `/clients` and `/history` as JSON for an admin (and 401 for others), and
//! what `/status` adds to the reference's shape: `counters.c_sent_latency`,
//! per-second rates on the server's clock, the average latency, links.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, Raw, Session, Setup, TestServer};
use serde_json::Value;

/// GET `path` with Basic `boss:s3cret` (or none): (status code, JSON body).
fn get(srv: &TestServer, path: &str, admin: bool) -> (u16, Value) {
    let mut s = TcpStream::connect(srv.stats_addr.expect("stats bound")).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let auth = if admin {
        "Authorization: Basic Ym9zczpzM2NyZXQ=\r\n"
    } else {
        ""
    };
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response then close");
    let (head, body) = out.split_once("\r\n\r\n").expect("a response head");
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    if code == 200 {
        assert!(head.contains("Content-Type: application/json"), "{head}");
    }
    (code, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn server() -> TestServer {
    TestServer::with(
        Setup::default()
            .acl("boss:\n  admin: true\nsensor:\n  pub: 'plant/#'\nviewer:\n  sub: 'plant/#'\n")
            .user("boss", "s3cret")
            .user("sensor", "pw")
            .user("viewer", "pw"),
    )
}

#[test]
fn topics_and_clients_tables() {
    let srv = server();
    let mut viewer = Session::login(srv.addr, "viewer", "pw");
    viewer.sub(&["plant/#"]);
    let (mut sensor, _) = Raw::control(srv.addr, "sensor", "pw");
    for i in 0..60 {
        let topic = if i % 6 == 0 {
            "plant/pump"
        } else {
            "plant/boiler"
        };
        assert_eq!(sensor.publish(topic, b"21.5"), 0x01);
    }
    for _ in 0..60 {
        viewer.recv();
    }
    assert_eq!(get(&srv, "/topics", false).0, 401, "admin only");
    assert_eq!(get(&srv, "/clients", false).0, 401, "admin only");

    let (code, topics) = get(&srv, "/topics?limit=5", true);
    assert_eq!(code, 200);
    assert_eq!(topics["tracked"], 2);
    let busiest = &topics["topics"][0];
    assert_eq!(busiest["topic"], "plant/boiler");
    assert_eq!(busiest["messages"], 50);
    assert_eq!(busiest["bytes"], 50 * ("plant/boiler".len() + 1 + 4));
    assert_eq!(topics["topics"][1]["topic"], "plant/pump");

    let (code, clients) = get(&srv, "/clients?sort=login", true);
    assert_eq!(code, 200);
    assert_eq!(clients["count"], 2);
    let rows = clients["clients"].as_array().unwrap();
    let logins: Vec<&str> = rows.iter().map(|r| r["login"].as_str().unwrap()).collect();
    assert_eq!(logins, ["sensor", "viewer"]);
    let viewer_row = &rows[1];
    assert_eq!(viewer_row["sent"], 60);
    assert_eq!(viewer_row["dropped"], 0);
    assert_eq!(viewer_row["subscriptions"], 1);
    assert_eq!(viewer_row["protocol"], "psrt");
    assert_eq!(viewer_row["data_socket"], true);
    assert!(
        viewer_row["address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(viewer_row["since"].as_u64().unwrap() <= clients["time"].as_u64().unwrap());
    assert_eq!(rows[0]["data_socket"], false, "the sensor only publishes");
    assert_eq!(get(&srv, "/clients?sort=nope", true).0, 400);

    let (_, status) = get(&srv, "/status", true);
    assert!(
        status["counters"]["c_sent_latency"].as_u64().unwrap() > 0,
        "60 deliveries took some µs: {status}"
    );
    assert!(status["cluster_nodes"].is_null(), "no cluster configured");
}

/// Rates come from the server: while a publisher runs, `/status` shows a
/// non-zero publish rate and `/history` fills with one point a second.
#[test]
fn rates_and_history_while_messages_flow() {
    let srv = server();
    let addr = srv.addr;
    let publisher = thread::spawn(move || {
        let (mut sensor, _) = Raw::control(addr, "sensor", "pw");
        let end = Instant::now() + Duration::from_millis(2500);
        while Instant::now() < end {
            assert_eq!(sensor.publish("plant/boiler", b"x"), 0x01);
            thread::sleep(Duration::from_millis(2));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let rate = loop {
        let (_, status) = get(&srv, "/status", true);
        let rate = status["psrtd"]["rates"]["c_pub_messages"].as_f64().unwrap();
        if rate > 0.0 || Instant::now() > deadline {
            break rate;
        }
        thread::sleep(Duration::from_millis(200));
    };
    publisher.join().unwrap();
    assert!(rate > 0.0, "a publish rate while publishing");
    let (code, history) = get(&srv, "/history", true);
    assert_eq!(code, 200);
    let points = history["series"]["published"].as_array().unwrap();
    assert!(!points.is_empty(), "{history}");
    assert!(
        points.iter().any(|p| p.as_f64().unwrap() > 0.0),
        "{history}"
    );
    assert_eq!(
        history["series"]["time"].as_array().unwrap().len(),
        points.len()
    );
}
