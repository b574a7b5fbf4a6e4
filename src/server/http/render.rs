//! The stats endpoint's bodies: the page, `/status` (the reference's JSON
//! fields plus psrtd's own) and `/metrics` (Prometheus text format), all
//! driven by the one counter table in `stats.rs`. The topic and client
//! tables are in `tables.rs`.

use std::fmt::Write;

use super::tables::unix_us;
use crate::server::bridge::state::Bridge;
use crate::server::core::{Conns, Core};
use crate::server::link::nodes::Node;
use crate::server::link::outgoing::PeerStatus;
use crate::server::stats::{COUNTERS, Group};

/// The stats page.
pub(crate) const PAGE: &str = include_str!("stats.html");

/// `/status`: the reference's JSON fields, plus psrtd's own under `"psrtd"`:
/// its counters, every counter's rate per second over the last interval
/// (the server's clock), the average delivery latency over it, and the
/// cluster links.
pub(crate) fn status_json(core: &Core, conns: &Conns) -> String {
    let time_us = unix_us();
    let mut reference = serde_json::Map::new();
    let mut own = serde_json::Map::new();
    for (counter, value) in core.stats.values() {
        let group = match counter.group {
            Group::Reference => &mut reference,
            Group::Psrtd => &mut own,
        };
        group.insert(counter.name.into(), value.into());
    }
    let rates: serde_json::Map<_, _> = COUNTERS
        .iter()
        .zip(&core.rates.per_sec)
        .map(|(c, r)| (c.name.to_string(), round(*r).into()))
        .collect();
    serde_json::json!({
        "time": time_us,
        "uptime": core.started.elapsed().as_secs(),
        "data_queue_size": core.config.data_queue,
        "host": core.host,
        "version": env!("CARGO_PKG_VERSION"),
        "counters": reference,
        "clients": {
            "subscription_count": core.matcher.len(),
            "client_count": core.sessions,
        },
        "cluster": cluster_status(core),
        "cluster_nodes": cluster_figures(core),
        "bridges": bridge_figures(core),
        "psrtd": {
            "connections": conns.len(),
            "mqtt": {
                "clients": core.mqtt.connected,
                "sessions_away": core.mqtt.away(),
                "held_bytes": core.mqtt.held_bytes,
                "retained_messages": core.mqtt.retained.len(),
                "retained_bytes": core.mqtt.retained.bytes(),
            },
            "queued_bytes": core.tx_pool.queued_total,
            "counters": own,
            "rate_interval": round(core.rates.interval),
            "rates": rates,
            "latency_avg_us": round(core.rates.latency_avg_us),
            "topics_tracked": core.topics.len(),
        },
    })
    .to_string()
}

/// Rounded to 0.01 (rates, averages).
fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `null` without a cluster, else node → status.
fn cluster_status(core: &Core) -> serde_json::Value {
    if core.cluster.is_empty() {
        return serde_json::Value::Null;
    }
    let mut nodes = serde_json::Map::new();
    for n in &core.cluster.nodes {
        nodes.insert(n.config.path.clone(), n.peer.status.as_str().into());
    }
    serde_json::Value::Object(nodes)
}

/// psrtd's own per-node replication figures (`null` without a cluster).
fn cluster_figures(core: &Core) -> serde_json::Value {
    if core.cluster.is_empty() {
        return serde_json::Value::Null;
    }
    let mut nodes = serde_json::Map::new();
    for n in &core.cluster.nodes {
        nodes.insert(
            n.config.path.clone(),
            serde_json::json!({
                "status": n.peer.status.as_str(),
                "queued_messages": n.queue.len(),
                "queued_bytes": n.queued_bytes,
                "queue_bound_bytes": n.config.queue_bytes,
                "in_flight": n.in_flight,
                "replicated": n.sent,
                "not_required": n.not_required,
                "dropped": n.dropped,
                "reconnects": n.peer.reconnects,
                "rtt_us": u64::try_from(n.rtt.as_micros()).unwrap_or(u64::MAX),
            }),
        );
    }
    serde_json::Value::Object(nodes)
}

/// Per-bridge figures (`null` without bridges).
fn bridge_figures(core: &Core) -> serde_json::Value {
    if core.bridges.list.is_empty() {
        return serde_json::Value::Null;
    }
    let mut out = serde_json::Map::new();
    for (_, b) in &core.bridges.list {
        out.insert(
            b.config.name.clone(),
            serde_json::json!({
                "url": b.config.url,
                "state": b.peer.status.as_str(),
                "subscribed": b.subscribed,
                "queued_messages": b.queued_messages(),
                "queued_bytes": b.queued_bytes,
                "queue_bound_bytes": b.config.queue_bytes,
                "spooled_bytes": b.spooled_bytes(),
                "in_flight": b.in_flight,
                "sent": b.sent,
                "received": b.received,
                "dropped": b.dropped,
                "echoes": b.echoes,
                "echo_pending": b.echo.len(),
                "reconnects": b.peer.reconnects,
            }),
        );
    }
    serde_json::Value::Object(out)
}

/// `/metrics`: Prometheus text exposition format.
pub(crate) fn metrics_text(core: &Core, conns: &Conns) -> String {
    let gauges: [(&str, &str, u64); 9] = [
        (
            "clients",
            "Logged-in sessions (PSRT and MQTT).",
            core.sessions as u64,
        ),
        (
            "mqtt_clients",
            "Connected MQTT clients.",
            core.mqtt.connected as u64,
        ),
        (
            "mqtt_sessions_away",
            "Persistent MQTT sessions kept while their clients are away.",
            core.mqtt.away() as u64,
        ),
        (
            "mqtt_retained_messages",
            "Retained MQTT messages (mqtt.retain).",
            core.mqtt.retained.len() as u64,
        ),
        (
            "mqtt_retained_bytes",
            "Bytes the retained MQTT messages account for (topic + payload + 96 each).",
            core.mqtt.retained.bytes() as u64,
        ),
        (
            "subscriptions",
            "Subscriptions (client, mask pairs).",
            core.matcher.len() as u64,
        ),
        (
            "connections",
            "Open sockets (any phase).",
            conns.len() as u64,
        ),
        (
            "queued_bytes",
            "Bytes queued for all data sockets.",
            core.tx_pool.queued_total as u64,
        ),
        (
            "uptime_seconds",
            "Seconds since start.",
            core.started.elapsed().as_secs(),
        ),
    ];
    let mut out = String::with_capacity(4096);
    for (c, value) in core.stats.values() {
        let (name, help) = (c.metric, c.help);
        let _ = writeln!(
            out,
            "# HELP psrtd_{name}_total {help}\n# TYPE psrtd_{name}_total counter\npsrtd_{name}_total {value}"
        );
    }
    for (name, help, value) in gauges {
        let _ = writeln!(
            out,
            "# HELP psrtd_{name} {help}\n# TYPE psrtd_{name} gauge\npsrtd_{name} {value}"
        );
    }
    cluster_metrics(core, &mut out);
    bridge_metrics(core, &mut out);
    out
}

/// A per-peer metric: name, help, and its value for one peer.
type Metric<T> = (&'static str, &'static str, fn(&T) -> u64);

/// Per-bridge metrics, labelled with the bridge's name.
fn bridge_metrics(core: &Core, out: &mut String) {
    if core.bridges.list.is_empty() {
        return;
    }
    let per_bridge: [Metric<Bridge>; 9] = [
        (
            "bridge_up",
            "1 when the bridge's broker accepted its connection.",
            |b| u64::from(b.peer.status == PeerStatus::Online),
        ),
        (
            "bridge_sent_total",
            "Messages the broker took (PUBACK at QoS 1, written at QoS 0).",
            |b| b.sent,
        ),
        (
            "bridge_received_total",
            "Messages from the broker published locally.",
            |b| b.received,
        ),
        (
            "bridge_dropped_total",
            "Messages dropped: queue bound (oldest first), or refused locally.",
            |b| b.dropped,
        ),
        (
            "bridge_echoes_total",
            "Our own messages the broker sent back, not delivered again.",
            |b| b.echoes,
        ),
        (
            "bridge_queued_messages",
            "Messages waiting for the broker (not yet acknowledged), in memory and spooled.",
            |b| b.queued_messages(),
        ),
        (
            "bridge_queued_bytes",
            "Bytes (topic + payload) waiting for the broker in memory.",
            |b| b.queued_bytes as u64,
        ),
        (
            "bridge_spooled_bytes",
            "Bytes of the bridge's spool on disk.",
            |b| b.spooled_bytes(),
        ),
        (
            "bridge_reconnects_total",
            "Connections to the broker made after the first.",
            |b| b.peer.reconnects,
        ),
    ];
    // Names are [A-Za-z0-9_.-] (config): safe as a label value.
    let bridges: Vec<(&str, &Bridge)> = core
        .bridges
        .list
        .iter()
        .map(|(_, b)| (b.config.name.as_str(), b))
        .collect();
    labelled_metrics(out, "bridge", &per_bridge, &bridges);
}

/// Per-peer metrics: for each, its HELP and TYPE (`_total`: a counter,
/// else a gauge) and a line per peer labelled `label="name"`.
fn labelled_metrics<T>(out: &mut String, label: &str, metrics: &[Metric<T>], peers: &[(&str, &T)]) {
    for (name, help, value) in metrics {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        let _ = writeln!(
            out,
            "# HELP psrtd_{name} {help}\n# TYPE psrtd_{name} {kind}"
        );
        for &(peer, p) in peers {
            let _ = writeln!(out, "psrtd_{name}{{{label}=\"{peer}\"}} {}", value(p));
        }
    }
}

/// Per-node replication metrics, labelled with the node's path.
fn cluster_metrics(core: &Core, out: &mut String) {
    if core.cluster.is_empty() {
        return;
    }
    let per_node: [Metric<Node>; 8] = [
        (
            "cluster_node_up",
            "1 when the link to the node is logged in.",
            |n| u64::from(n.peer.status == PeerStatus::Online),
        ),
        (
            "cluster_replicated_total",
            "Messages the node accepted.",
            |n| n.sent,
        ),
        (
            "cluster_not_required_total",
            "Messages the node had no subscriber for.",
            |n| n.not_required,
        ),
        (
            "cluster_dropped_total",
            "Messages dropped: queue full (oldest first) or refused.",
            |n| n.dropped,
        ),
        (
            "cluster_queued_messages",
            "Messages waiting for the node (not yet acknowledged).",
            |n| n.queue.len() as u64,
        ),
        (
            "cluster_queued_bytes",
            "Bytes (payload + topic) waiting for the node.",
            |n| n.queued_bytes as u64,
        ),
        (
            "cluster_reconnects_total",
            "Links to the node made after the first.",
            |n| n.peer.reconnects,
        ),
        (
            "cluster_rtt_microseconds",
            "Round trip of the last keep-alive or hello on the link.",
            |n| u64::try_from(n.rtt.as_micros()).unwrap_or(u64::MAX),
        ),
    ];
    let paths: Vec<String> = core
        .cluster
        .nodes
        .iter()
        .map(|n| n.config.path.replace(['"', '\\'], "_"))
        .collect();
    let nodes: Vec<(&str, &Node)> = paths
        .iter()
        .map(String::as_str)
        .zip(&core.cluster.nodes)
        .collect();
    labelled_metrics(out, "node", &per_node, &nodes);
}
