//! Counters kept by the loop: plain integers (one thread, no atomics),
//! declared once in the table below. That one table makes the [`Stats`]
//! struct, the `/status` JSON (the reference's six counters under
//! `counters`, psrtd's own under `psrtd.counters`) and the Prometheus
//! `/metrics` lines (`psrtd_<metric>_total`). Counters wrap like the
//! reference's u64s. [`Rates`] turns them into per-second rates over the
//! last interval (about a second), on the server's own clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How often the loop takes rates.
pub(crate) const RATE_INTERVAL: Duration = Duration::from_secs(1);
/// Intervals the charts' history keeps (two minutes).
pub(crate) const HISTORY: usize = 120;
/// What the history keeps per interval: messages and bytes per second in
/// (PSRT, UDP and MQTT publishes) and out (PSRT and MQTT deliveries), the
/// average PSRT delivery latency, and three gauges (clients of both
/// protocols, subscriptions, queued bytes).
pub(crate) const SERIES: [&str; 8] = [
    "published",
    "delivered",
    "published_bytes",
    "delivered_bytes",
    "latency_avg_us",
    "clients",
    "subscriptions",
    "queued_bytes",
];

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
    c_sent_latency, "sent_latency_microseconds", Reference, "Sum of the latencies of the messages written whole to data sockets, in µs (publish arrival to socket write).";
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
    mqtt_sent_latency, "mqtt_sent_latency_microseconds", Psrtd, "Sum of the latencies of the PUBLISH packets written whole to MQTT clients, in µs (publish arrival to socket write).";
    mqtt_sub_ops, "mqtt_sub_ops", Psrtd, "Successful MQTT subscribe and unsubscribe filter operations.";
    mqtt_queue_drops, "mqtt_queue_drops", Psrtd, "QoS 1 messages not kept: an MQTT session's queue was full.";
    mqtt_wills, "mqtt_wills", Psrtd, "MQTT last wills published.";
    mqtt_retain_refused, "mqtt_retain_refused", Psrtd, "Retained MQTT messages refused: mqtt.retain_bytes reached.";
    mqtt_retain_unsent, "mqtt_retain_unsent", Psrtd, "Retained MQTT messages not sent to a new subscription: its connection's output queue or its session's QoS 1 budget was full.";
    bridge_out_messages, "bridge_out_messages", Psrtd, "Messages a bridge's broker took (PUBACK at QoS 1, written at QoS 0).";
    bridge_in_messages, "bridge_in_messages", Psrtd, "Messages from bridges' brokers published locally.";
    bridge_dropped, "bridge_dropped", Psrtd, "Bridge messages dropped: a queue's bound (oldest first), or refused locally.";
    bridge_echoes, "bridge_echoes", Psrtd, "Messages a broker sent back to the bridge that sent them (in and out overlap), not delivered again.";
}

/// Every counter's rate per second over the last interval, and the average
/// delivery latency over it, as the reference page shows it
/// (Δ`c_sent_latency` / Δ`c_sent_messages`).
#[derive(Debug)]
pub(crate) struct Rates {
    /// When the last interval ended.
    pub at: Instant,
    /// When the next may end.
    due: Instant,
    /// Its length, in seconds (0 before the first).
    pub interval: f64,
    prev: Stats,
    /// Per second, in [`COUNTERS`] order.
    pub per_sec: Vec<f64>,
    /// Average latency of the messages written in the interval, in µs.
    pub latency_avg_us: f64,
}

impl Rates {
    /// No interval yet; the first starts at `now` from `stats`.
    pub(crate) fn new(stats: &Stats, now: Instant) -> Self {
        Self {
            at: now,
            due: now + RATE_INTERVAL,
            interval: 0.0,
            prev: stats.clone(),
            per_sec: vec![0.0; COUNTERS.len()],
            latency_avg_us: 0.0,
        }
    }

    /// Ends the interval at `now` if it is at least [`RATE_INTERVAL`] long
    /// (the loop asks every turn; this is one comparison until then).
    pub(crate) fn roll(&mut self, stats: &Stats, now: Instant) -> bool {
        if now < self.due {
            return false;
        }
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        for (rate, ((_, now_v), (_, prev_v))) in self
            .per_sec
            .iter_mut()
            .zip(stats.values().zip(self.prev.values()))
        {
            *rate = now_v.wrapping_sub(prev_v) as f64 / dt;
        }
        let sent = stats
            .c_sent_messages
            .wrapping_sub(self.prev.c_sent_messages);
        let latency = stats.c_sent_latency.wrapping_sub(self.prev.c_sent_latency);
        self.latency_avg_us = if sent == 0 {
            0.0
        } else {
            latency as f64 / sent as f64
        };
        self.prev = stats.clone();
        self.at = now;
        self.due = now + RATE_INTERVAL;
        self.interval = dt;
        true
    }
}

/// The last [`HISTORY`] intervals of [`SERIES`], oldest first (the page's
/// charts are full as soon as it opens). Fixed memory: about 10 KiB.
#[derive(Debug)]
pub(crate) struct History {
    /// (end of the interval, values in [`SERIES`] order).
    pub points: VecDeque<(Instant, [f64; SERIES.len()])>,
}

impl Default for History {
    fn default() -> Self {
        Self {
            points: VecDeque::with_capacity(HISTORY),
        }
    }
}

impl History {
    /// Appends the interval `rates` just ended, with the gauges `[clients,
    /// subscriptions, queued bytes]`.
    pub(crate) fn push(&mut self, rates: &Rates, gauges: [f64; 3]) {
        let rate = |name: &str| {
            COUNTERS
                .iter()
                .position(|c| c.name == name)
                .map_or(0.0, |i| rates.per_sec[i])
        };
        let values = [
            rate("c_pub_messages") + rate("udp_messages") + rate("mqtt_pub_messages"),
            rate("c_sent_messages") + rate("mqtt_sent_messages"),
            rate("c_pub_bytes") + rate("mqtt_pub_bytes"),
            rate("c_sent_bytes") + rate("mqtt_sent_bytes"),
            rates.latency_avg_us,
            gauges[0],
            gauges[1],
            gauges[2],
        ];
        if self.points.len() == HISTORY {
            self.points.pop_front();
        }
        self.points.push_back((rates.at, values));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_last_intervals() {
        let t0 = Instant::now();
        let mut s = Stats::default();
        let mut r = Rates::new(&s, t0);
        let mut h = History::default();
        for i in 1..=HISTORY as u64 + 5 {
            s.c_sent_messages += i;
            assert!(r.roll(&s, t0 + RATE_INTERVAL * i as u32));
            h.push(&r, [1.0, 2.0, i as f64]);
        }
        assert_eq!(h.points.len(), HISTORY);
        let (at, last) = h.points.back().unwrap();
        assert_eq!(*at, t0 + RATE_INTERVAL * (HISTORY as u32 + 5));
        assert_eq!(last[1], (HISTORY + 5) as f64, "delivered per second");
        assert_eq!(last[7], (HISTORY + 5) as f64, "queued bytes");
        assert_eq!(h.points.front().unwrap().1[1], 6.0, "the oldest kept");
    }

    #[test]
    fn rates_use_the_server_clock_and_wrap() {
        let t0 = Instant::now();
        let mut s = Stats {
            c_pub_messages: u64::MAX - 1,
            ..Stats::default()
        };
        let mut r = Rates::new(&s, t0);
        s.c_pub_messages = s.c_pub_messages.wrapping_add(10);
        s.c_sent_messages = 4;
        s.c_sent_latency = 4 * 250;
        assert!(!r.roll(&s, t0 + Duration::from_millis(999)), "too soon");
        assert!(r.roll(&s, t0 + Duration::from_secs(2)));
        let pub_rate = COUNTERS.iter().position(|c| c.name == "c_pub_messages");
        assert_eq!(
            r.per_sec[pub_rate.unwrap()],
            5.0,
            "10 over 2 s, across the wrap"
        );
        assert_eq!((r.interval, r.latency_avg_us), (2.0, 250.0));
        assert!(r.roll(&s, t0 + Duration::from_secs(3)));
        assert_eq!((r.per_sec[pub_rate.unwrap()], r.latency_avg_us), (0.0, 0.0));
    }

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
                "c_sent_bytes",
                "c_sent_latency"
            ],
            "the reference's /status counters, in its order"
        );
        let mut metrics: Vec<_> = COUNTERS.iter().map(|c| c.metric).collect();
        metrics.sort_unstable();
        metrics.dedup();
        assert_eq!(metrics.len(), COUNTERS.len(), "metric names are unique");
    }
}
