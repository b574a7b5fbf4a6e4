//! Counters kept by the loop: plain integers (one thread, no atomics). The
//! names of the reference's `/status` counters are kept where they exist.

/// Server counters since start. Counters wrap like the reference's u64s.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Successful subscribe and unsubscribe topic operations.
    pub c_sub_ops: u64,
    /// PUBLISH frames accepted (valid and allowed).
    pub c_pub_messages: u64,
    /// Their `LEN`s.
    pub c_pub_bytes: u64,
    /// Message frames queued to data sockets.
    pub c_sent_messages: u64,
    /// Their bytes (whole frames).
    pub c_sent_bytes: u64,
    /// Data sockets dropped because their queue was full.
    pub slow_consumers: u64,
    /// Connections closed for a bad greeting.
    pub bad_greetings: u64,
    /// Failed logins.
    pub login_failures: u64,
    /// Connections refused by a limit.
    pub limit_refusals: u64,
    /// Connections refused because their address failed to log in too often.
    pub auth_blocked: u64,
    /// Data sockets dropped to keep all queues under `max_queued_bytes`.
    pub queue_cap_drops: u64,
    /// Requests answered `FE`.
    pub access_denied: u64,
    /// Connections closed for a protocol error.
    pub protocol_errors: u64,
    /// Connections closed by a timeout.
    pub timeouts: u64,
    /// UDP datagrams received.
    pub udp_datagrams: u64,
    /// UDP datagrams published.
    pub udp_messages: u64,
    /// UDP datagrams dropped (malformed, unauthenticated, oversize, backlog).
    pub udp_dropped: u64,
    /// Reloads applied.
    pub reloads_ok: u64,
    /// Reloads that kept the previous files because one failed to load.
    pub reloads_failed: u64,
}

/// Renders the counters for the stats endpoint.
mod render {
    use std::fmt::Write;
    use std::time::{SystemTime, UNIX_EPOCH};

    use crate::server::event_loop::Server;

    impl Server {
        /// `/status`: the reference's JSON fields, plus psrtd's own under
        /// `"psrtd"`. (`c_sent_latency` is not measured by psrtd and left out.)
        pub(crate) fn status_json(&self) -> String {
            let s = &self.core.stats;
            let time_us = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64);
            serde_json::json!({
                "time": time_us,
                "uptime": self.core.started.elapsed().as_secs(),
                "data_queue_size": self.core.config.data_queue,
                "host": self.core.host,
                "version": env!("CARGO_PKG_VERSION"),
                "counters": {
                    "c_sub_ops": s.c_sub_ops,
                    "c_pub_messages": s.c_pub_messages,
                    "c_pub_bytes": s.c_pub_bytes,
                    "c_sent_messages": s.c_sent_messages,
                    "c_sent_bytes": s.c_sent_bytes,
                },
                "clients": {
                    "subscription_count": self.core.matcher.len(),
                    "client_count": self.core.sessions,
                },
                "cluster": self.cluster_status(),
                "psrtd": {
                    "connections": self.conns.len(),
                    "queued_bytes": self.core.tx_pool.queued_total,
                    "counters": {
                        "slow_consumers": s.slow_consumers,
                        "queue_cap_drops": s.queue_cap_drops,
                        "bad_greetings": s.bad_greetings,
                        "login_failures": s.login_failures,
                        "auth_blocked": s.auth_blocked,
                        "limit_refusals": s.limit_refusals,
                        "access_denied": s.access_denied,
                        "protocol_errors": s.protocol_errors,
                        "timeouts": s.timeouts,
                        "udp_datagrams": s.udp_datagrams,
                        "udp_messages": s.udp_messages,
                        "udp_dropped": s.udp_dropped,
                        "reloads_ok": s.reloads_ok,
                        "reloads_failed": s.reloads_failed,
                    },
                },
            })
            .to_string()
        }

        /// Per-node replication metrics, labelled with the node's path.
        fn cluster_metrics(&self, out: &mut String) {
            use crate::server::cluster::{Node, NodeStatus};
            type Metric = (&'static str, &'static str, fn(&Node) -> u64);
            let per_node: [Metric; 4] = [
                (
                    "cluster_node_up",
                    "1 when the link to the node is logged in.",
                    |n| u64::from(n.status == NodeStatus::Online),
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
                    "Messages dropped: queue full or refused.",
                    |n| n.dropped,
                ),
            ];
            for (name, help, value) in per_node {
                if self.core.cluster.is_empty() {
                    return;
                }
                let kind = if name.ends_with("_total") {
                    "counter"
                } else {
                    "gauge"
                };
                let _ = writeln!(
                    out,
                    "# HELP psrtd_{name} {help}\n# TYPE psrtd_{name} {kind}"
                );
                for n in &self.core.cluster.nodes {
                    let node = n.config.path.replace(['"', '\\'], "_");
                    let _ = writeln!(out, "psrtd_{name}{{node=\"{node}\"}} {}", value(n));
                }
            }
        }

        /// `null` without a cluster, else node → status.
        fn cluster_status(&self) -> serde_json::Value {
            if self.core.cluster.is_empty() {
                return serde_json::Value::Null;
            }
            let mut nodes = serde_json::Map::new();
            for n in &self.core.cluster.nodes {
                nodes.insert(n.config.path.clone(), n.status.as_str().into());
            }
            serde_json::Value::Object(nodes)
        }

        /// `/metrics`: Prometheus text exposition format.
        pub(crate) fn metrics_text(&self) -> String {
            let s = &self.core.stats;
            let counters: [(&str, &str, u64); 19] = [
                (
                    "sub_ops",
                    "Successful subscribe and unsubscribe topic operations.",
                    s.c_sub_ops,
                ),
                (
                    "pub_messages",
                    "PUBLISH frames accepted over TCP.",
                    s.c_pub_messages,
                ),
                (
                    "pub_bytes",
                    "Bytes of accepted PUBLISH frames.",
                    s.c_pub_bytes,
                ),
                (
                    "sent_messages",
                    "Messages queued to data sockets.",
                    s.c_sent_messages,
                ),
                (
                    "sent_bytes",
                    "Bytes of messages queued to data sockets.",
                    s.c_sent_bytes,
                ),
                (
                    "slow_consumers",
                    "Data sockets dropped because their queue was full.",
                    s.slow_consumers,
                ),
                (
                    "queue_cap_drops",
                    "Data sockets dropped to keep all queues under max_queued_bytes.",
                    s.queue_cap_drops,
                ),
                (
                    "bad_greetings",
                    "Connections closed for an invalid greeting.",
                    s.bad_greetings,
                ),
                ("login_failures", "Failed logins.", s.login_failures),
                (
                    "auth_blocked",
                    "Connections refused after repeated failed logins.",
                    s.auth_blocked,
                ),
                (
                    "limit_refusals",
                    "Connections refused by a connection limit.",
                    s.limit_refusals,
                ),
                (
                    "access_denied",
                    "Requests answered access denied.",
                    s.access_denied,
                ),
                (
                    "protocol_errors",
                    "Connections closed for a protocol error.",
                    s.protocol_errors,
                ),
                ("timeouts", "Connections closed by a deadline.", s.timeouts),
                ("udp_datagrams", "UDP datagrams received.", s.udp_datagrams),
                ("udp_messages", "UDP datagrams published.", s.udp_messages),
                ("udp_dropped", "UDP datagrams dropped.", s.udp_dropped),
                ("reloads_ok", "SIGHUP reloads applied.", s.reloads_ok),
                (
                    "reloads_failed",
                    "SIGHUP reloads refused (previous files kept).",
                    s.reloads_failed,
                ),
            ];
            let gauges: [(&str, &str, u64); 5] = [
                ("clients", "Logged-in sessions.", self.core.sessions as u64),
                (
                    "subscriptions",
                    "Subscriptions (client, mask pairs).",
                    self.core.matcher.len() as u64,
                ),
                (
                    "connections",
                    "Open sockets (any phase).",
                    self.conns.len() as u64,
                ),
                (
                    "queued_bytes",
                    "Bytes queued for all data sockets.",
                    self.core.tx_pool.queued_total as u64,
                ),
                (
                    "uptime_seconds",
                    "Seconds since start.",
                    self.core.started.elapsed().as_secs(),
                ),
            ];
            let mut out = String::with_capacity(4096);
            for (name, help, value) in counters {
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
            self.cluster_metrics(&mut out);
            out
        }
    }
}
