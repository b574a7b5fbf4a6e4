//! Unit tests of the stats endpoint: request handling through `dispatch`
//! (routes, auth, responses) and the rendered bodies.

use super::render::{metrics_text, status_json};
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
