//! Unit tests of the stats endpoint's tables and rates: `/topics` and
//! `/clients` (rows, sort keys, limits, through `dispatch` as an admin),
//! and what `/status` adds (`c_sent_latency`, rates on the server's clock,
//! the average latency, links).

use std::path::Path;
use std::time::Duration;

use psrt_protocol::{StreamKind, TOKEN_LEN, Token};
use serde_json::Value;

use super::head::{ClientQuery, SortKey, TopicQuery};
use super::render::status_json;
use super::tables::{clients_json, history_json, topics_json};
use crate::server::auth::{Acl, AuthDb};
use crate::server::config::Config;
use crate::server::conn::ConnId;
use crate::server::phase::ListenerKind;
use crate::server::psrt::session::start_session;
use crate::server::testing::{Harness, data_hello, greeting, publish, topics};

/// Anonymous may read the stats; two named logins may publish and subscribe.
const ACL: &str = "_:\n  sub: '#'\n  pub: '#'\n  admin: true\nboiler:\n  pub: '#'\n  sub: '#'\nmonitor:\n  sub: '#'\n";

fn harness() -> Harness {
    let auth = AuthDb {
        acl: Acl::parse(ACL, Path::new("acl.yml")).unwrap(),
        ..AuthDb::default()
    };
    Harness::with(Config::embedded_default(), auth)
}

/// A session for `login` (as after its password check) with a bound data
/// socket, subscribed to `masks`: (control, data).
fn client(h: &mut Harness, login: &str, masks: &[&str]) -> (ConnId, ConnId) {
    let control = h.accept();
    start_session(&mut h.cx(), control, login, None, false).unwrap();
    let token = h.take_output(control);
    let token = Token(token[..TOKEN_LEN].try_into().unwrap());
    let data = h.accept();
    h.feed(data, &greeting(StreamKind::Data));
    h.feed(data, &data_hello(token, 10));
    h.take_output(data);
    if !masks.is_empty() {
        h.feed(control, &topics(true, masks));
        assert_eq!(h.take_output(control), [0x01]);
    }
    (control, data)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn logins(v: &Value) -> Vec<&str> {
    v["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["login"].as_str().unwrap())
        .collect()
}

#[test]
fn topics_are_counted_in_the_pipeline_with_rates_per_second() {
    let mut h = harness();
    let (publisher, _) = client(&mut h, "boiler", &[]);
    for i in 0..30 {
        h.feed(publisher, &publish("plant/boiler/temp", b"21.5"));
        if i % 3 == 0 {
            h.feed(publisher, &publish("plant/pump", b"on"));
        }
    }
    h.advance(Duration::from_secs(2));
    h.core.sample();
    let by_messages = TopicQuery {
        by_rate: false,
        limit: 1,
    };
    let v = json(&topics_json(&h.core, by_messages));
    assert_eq!(v["tracked"], 2);
    assert_eq!(v["interval"], 2.0);
    let row = &v["topics"][0];
    assert_eq!(row["topic"], "plant/boiler/temp");
    assert_eq!(row["messages"], 30);
    assert_eq!(row["error"], 0);
    assert_eq!(row["bytes"], 30 * ("plant/boiler/temp".len() + 1 + 4));
    assert_eq!(row["messages_per_sec"], 15.0);
    assert!(row["since"].as_u64().unwrap() <= v["time"].as_u64().unwrap());
    assert_eq!(v["topics"].as_array().unwrap().len(), 1, "limit");
    // Later only the pump publishes: first by rate, second by messages.
    for _ in 0..4 {
        h.feed(publisher, &publish("plant/pump", b"on"));
    }
    h.advance(Duration::from_secs(1));
    h.core.sample();
    let by_rate = TopicQuery {
        by_rate: true,
        limit: 5,
    };
    let v = json(&topics_json(&h.core, by_rate));
    assert_eq!(v["sort"], "rate");
    assert_eq!(v["topics"][0]["topic"], "plant/pump");
    assert_eq!(v["topics"][0]["messages_per_sec"], 4.0);
    assert_eq!(v["topics"][1]["topic"], "plant/boiler/temp");
    assert_eq!(v["topics"][1]["messages_per_sec"], 0.0);
    let v = json(&topics_json(&h.core, by_messages));
    assert_eq!(v["topics"][0]["topic"], "plant/boiler/temp");
}

#[test]
fn clients_are_listed_with_their_counters_and_sorted() {
    let mut h = harness();
    let (boiler, _) = client(&mut h, "boiler", &["plant/#"]);
    h.advance(Duration::from_secs(1));
    let (monitor, monitor_data) = client(&mut h, "monitor", &["plant/#", "alarms/#"]);
    for _ in 0..3 {
        h.feed(boiler, &publish("plant/x", b"1"));
    }
    // The monitor reads its three; the boiler's own three stay queued.
    h.take_output(monitor_data);
    let all = |sort| ClientQuery { sort, limit: 10 };
    let v = json(&clients_json(&h.core, &h.conns, all(SortKey::Queued)));
    assert_eq!(
        (v["count"].as_u64(), v["sort"].as_str()),
        (Some(2), Some("queued"))
    );
    assert_eq!(logins(&v), ["boiler", "monitor"]);
    let row = &v["clients"][1];
    assert_eq!(row["id"], monitor);
    assert_eq!(row["protocol"], "psrt");
    assert_eq!(row["subscriptions"], 2);
    assert_eq!(row["data_socket"], true);
    assert_eq!(
        (row["sent"].as_u64(), row["dropped"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(row["queued_bytes"], 0);
    let first = &v["clients"][0];
    assert_eq!(first["queued_messages"], 3);
    assert!(first["queued_bytes"].as_u64().unwrap() > 0);
    assert!(
        first["since"].as_u64() < row["since"].as_u64(),
        "boiler came first"
    );
    for (sort, order) in [
        (SortKey::Sent, ["monitor", "boiler"]),
        (SortKey::Subscriptions, ["monitor", "boiler"]),
        (SortKey::Since, ["boiler", "monitor"]),
        (SortKey::Login, ["boiler", "monitor"]),
    ] {
        let v = json(&clients_json(&h.core, &h.conns, all(sort)));
        assert_eq!(logins(&v), order, "{sort:?}");
    }
    let one = ClientQuery {
        sort: SortKey::Sent,
        limit: 1,
    };
    let v = json(&clients_json(&h.core, &h.conns, one));
    assert_eq!(
        (logins(&v), v["count"].as_u64()),
        (vec!["monitor"], Some(2))
    );
}

#[test]
fn status_has_the_latency_counter_and_rates() {
    let mut h = harness();
    let (publisher, _) = client(&mut h, "boiler", &[]);
    let (_, data) = client(&mut h, "monitor", &["t"]);
    for _ in 0..4 {
        h.feed(publisher, &publish("t", b"x"));
    }
    h.advance(Duration::from_micros(500));
    h.take_output(data);
    h.advance(Duration::from_millis(1500));
    h.core.sample();
    let v = json(&status_json(&h.core, &h.conns));
    let counters: Vec<&String> = v["counters"].as_object().unwrap().keys().collect();
    assert_eq!(
        counters,
        [
            "c_sub_ops",
            "c_pub_messages",
            "c_pub_bytes",
            "c_sent_messages",
            "c_sent_bytes",
            "c_sent_latency"
        ],
        "the reference's counters, in its order"
    );
    assert_eq!(v["counters"]["c_sent_latency"], 4 * 500);
    let own = &v["psrtd"];
    assert_eq!(own["rates"]["c_pub_messages"], 2.67, "4 in 1.5 s");
    assert_eq!(own["latency_avg_us"], 500.0);
    assert_eq!(own["rate_interval"], 1.5);
    assert_eq!(own["topics_tracked"], 1);
    assert!(v["cluster_nodes"].is_null(), "no cluster configured");
    assert!(v["bridges"].is_null(), "no bridge configured");
}

#[test]
fn history_has_a_column_per_series() {
    let mut h = harness();
    let (publisher, _) = client(&mut h, "boiler", &[]);
    for second in 1..=3 {
        for _ in 0..second {
            h.feed(publisher, &publish("t", b"x"));
        }
        h.advance(Duration::from_secs(1));
        h.core.sample();
    }
    let v = json(&history_json(&h.core));
    let series = &v["series"];
    assert_eq!(series["published"], serde_json::json!([1.0, 2.0, 3.0]));
    assert_eq!(series["clients"], serde_json::json!([1.0, 1.0, 1.0]));
    assert_eq!(series["time"].as_array().unwrap().len(), 3);
    assert_eq!(series["latency_avg_us"].as_array().unwrap().len(), 3);
    assert_eq!(v["interval"], 1.0);
}

#[test]
fn table_routes_answer_an_admin_with_json() {
    let mut h = harness();
    client(&mut h, "monitor", &["t"]);
    for (path, key) in [
        ("/topics?limit=3", "topics"),
        ("/clients?sort=login", "clients"),
    ] {
        let id = h.add(ListenerKind::Http.first_phase());
        h.feed(
            id,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
        let out = String::from_utf8(h.take_output(id)).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(head.contains("Content-Type: application/json"), "{head}");
        assert!(!json(body)[key].is_null(), "{body}");
    }
    let id = h.add(ListenerKind::Http.first_phase());
    h.feed(id, b"GET /clients?sort=bytes HTTP/1.1\r\n\r\n");
    let out = String::from_utf8(h.take_output(id)).unwrap();
    assert!(out.starts_with("HTTP/1.1 400 Bad Request"), "{out}");
}

/// (login, protocol, subscriptions, sent) of every MQTT row of `/clients`
/// (for the MQTT accounting test in `pubsub`).
pub(crate) fn mqtt_rows(
    core: &crate::server::core::Core,
    conns: &crate::server::core::Conns,
) -> Vec<(String, String, u64, u64)> {
    let q = ClientQuery {
        sort: SortKey::Login,
        limit: 100,
    };
    json(&clients_json(core, conns, q))["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["protocol"].as_str().unwrap().starts_with("mqtt"))
        .map(|r| {
            (
                r["login"].as_str().unwrap().to_string(),
                r["protocol"].as_str().unwrap().to_string(),
                r["subscriptions"].as_u64().unwrap(),
                r["sent"].as_u64().unwrap(),
            )
        })
        .collect()
}
