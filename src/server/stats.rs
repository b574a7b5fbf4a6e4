//! Counters kept by the loop: plain integers (one thread, no atomics),
//! declared once in the table below. That one table makes the [`Stats`]
//! struct, the `/status` JSON (the reference's five counters under
//! `counters`, psrtd's own under `psrtd.counters`) and the Prometheus
//! `/metrics` lines (`psrtd_<metric>_total`). Counters wrap like the
//! reference's u64s.

/// Where a counter appears in `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// The reference server's `counters` object (same names).
    Reference,
    /// psrtd's own, under `psrtd.counters`.
    Psrtd,
}

/// One counter's names and help.
#[derive(Debug, Clone, Copy)]
pub struct Counter {
    /// The field (and `/status` key).
    pub name: &'static str,
    /// The Prometheus name, without `psrtd_` and `_total`.
    pub metric: &'static str,
    /// Where it appears in `/status`.
    pub group: Group,
    /// What it counts (Prometheus HELP).
    pub help: &'static str,
}

macro_rules! counters {
    ($($field:ident, $metric:literal, $group:ident, $help:literal;)*) => {
        /// Server counters since start.
        #[derive(Debug, Default, Clone, PartialEq, Eq)]
        pub struct Stats {
            $(#[doc = $help] pub $field: u64,)*
        }

        /// Every counter, in `/status` and `/metrics` order.
        pub(crate) const COUNTERS: &[Counter] = &[
            $(Counter { name: stringify!($field), metric: $metric, group: Group::$group, help: $help },)*
        ];

        impl Stats {
            /// The values, in [`COUNTERS`] order.
            pub fn values(&self) -> impl Iterator<Item = (&'static Counter, u64)> + '_ {
                COUNTERS.iter().zip([$(self.$field,)*])
            }
        }
    };
}

counters! {
    c_sub_ops, "sub_ops", Reference, "Successful subscribe and unsubscribe topic operations.";
    c_pub_messages, "pub_messages", Reference, "PUBLISH frames accepted over TCP.";
    c_pub_bytes, "pub_bytes", Reference, "Bytes of accepted PUBLISH frames.";
    c_sent_messages, "sent_messages", Reference, "Messages written whole to data sockets.";
    c_sent_bytes, "sent_bytes", Reference, "Bytes of the messages written whole to data sockets.";
    dropped_messages, "dropped_messages", Psrtd, "Messages thrown away with a dropped data queue (never written).";
    slow_consumers, "slow_consumers", Psrtd, "Data sockets dropped because their queue was full.";
    queue_cap_drops, "queue_cap_drops", Psrtd, "Data sockets dropped to keep all queues under max_queued_bytes.";
    bad_greetings, "bad_greetings", Psrtd, "Connections closed for an invalid greeting.";
    login_failures, "login_failures", Psrtd, "Failed logins.";
    auth_blocked, "auth_blocked", Psrtd, "Connections refused after repeated failed logins.";
    limit_refusals, "limit_refusals", Psrtd, "Connections refused by a connection limit.";
    prelogin_refusals, "prelogin_refusals", Psrtd, "Connections refused by max_handshakes_per_ip (also in limit_refusals).";
    tls_handshake_refusals, "tls_handshake_refusals", Psrtd, "TLS greetings refused by max_tls_handshakes (also in limit_refusals).";
    access_denied, "access_denied", Psrtd, "Requests answered access denied.";
    subscription_refusals, "subscription_refusals", Psrtd, "SUBSCRIBE requests refused by a subscription limit.";
    protocol_errors, "protocol_errors", Psrtd, "Connections closed for a protocol error.";
    timeouts, "timeouts", Psrtd, "Connections closed by a deadline.";
    udp_datagrams, "udp_datagrams", Psrtd, "UDP datagrams received.";
    udp_messages, "udp_messages", Psrtd, "UDP datagrams published.";
    udp_dropped, "udp_dropped", Psrtd, "UDP datagrams dropped.";
    udp_replayed, "udp_replayed", Psrtd, "AES-GCM UDP datagrams dropped as replays (not in udp_dropped).";
    reloads_ok, "reloads_ok", Psrtd, "SIGHUP reloads applied.";
    reloads_failed, "reloads_failed", Psrtd, "SIGHUP reloads refused (previous files kept).";
    mqtt_connects, "mqtt_connects", Psrtd, "MQTT CONNECTs accepted.";
    mqtt_takeovers, "mqtt_takeovers", Psrtd, "MQTT connections taken over by a newer one with the same client id.";
    mqtt_pub_messages, "mqtt_pub_messages", Psrtd, "MQTT PUBLISH packets (and last wills) accepted.";
    mqtt_pub_bytes, "mqtt_pub_bytes", Psrtd, "Payload bytes of accepted MQTT publishes.";
    mqtt_sent_messages, "mqtt_sent_messages", Psrtd, "PUBLISH packets written whole to MQTT clients.";
    mqtt_sent_bytes, "mqtt_sent_bytes", Psrtd, "Bytes of the PUBLISH packets written whole to MQTT clients.";
    mqtt_sub_ops, "mqtt_sub_ops", Psrtd, "Successful MQTT subscribe and unsubscribe filter operations.";
    mqtt_queue_drops, "mqtt_queue_drops", Psrtd, "QoS 1 messages not kept: an MQTT session's queue was full.";
    mqtt_wills, "mqtt_wills", Psrtd, "MQTT last wills published.";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_table_names_every_field() {
        let s = Stats {
            c_sub_ops: 1,
            reloads_failed: 7,
            ..Stats::default()
        };
        let values: Vec<_> = s.values().map(|(c, v)| (c.name, v)).collect();
        assert_eq!(values.len(), COUNTERS.len());
        assert_eq!(values[0], ("c_sub_ops", 1));
        assert!(values.contains(&("reloads_failed", 7)));
        let reference: Vec<_> = COUNTERS
            .iter()
            .filter(|c| c.group == Group::Reference)
            .map(|c| c.name)
            .collect();
        assert_eq!(
            reference,
            [
                "c_sub_ops",
                "c_pub_messages",
                "c_pub_bytes",
                "c_sent_messages",
                "c_sent_bytes"
            ],
            "the reference's /status counters, in its order"
        );
        let mut metrics: Vec<_> = COUNTERS.iter().map(|c| c.metric).collect();
        metrics.sort_unstable();
        metrics.dedup();
        assert_eq!(metrics.len(), COUNTERS.len(), "metric names are unique");
    }
}
