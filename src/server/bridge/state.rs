//! A bridge's state, kept by the loop across its connections: the outgoing
//! queue (publish order; the first `in_flight` messages were sent on the
//! current connection and wait for their PUBACK), the reconnect schedule,
//! the echo filter and the counters `/status` shows.
//!
//! The queue is bounded by `queue_bytes` (topic + payload of every queued
//! message). When a new message would pass it, the oldest messages not in
//! flight are dropped, counted, and logged once per episode (the episode
//! ends when the queue is back under half its bound).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use psrt_protocol::mqtt::filter_matches;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use slab::Slab;

use super::echo::Echo;
use crate::server::config::BridgeConfig;
use crate::server::conn::{ConnId, SharedBuf};
use crate::server::link::nodes::{FIRST_BACKOFF, retry_delay};

/// Every bridge, by a key that stays while the bridge exists.
#[derive(Debug, Default)]
pub(crate) struct Bridges {
    /// The bridges.
    pub list: Slab<Bridge>,
}

impl Bridges {
    /// Bridges for `configs`, each first tried at `now`.
    pub(crate) fn new(configs: &[BridgeConfig], now: Instant) -> Result<Self, String> {
        let mut list = Slab::new();
        for c in configs {
            let b = Bridge::new(c.clone(), now).map_err(|e| format!("bridge {}: {e}", c.name))?;
            list.insert(b);
        }
        Ok(Self { list })
    }

    /// The earliest pending connect, for the poll timeout.
    pub(crate) fn next_retry(&self) -> Option<Instant> {
        self.list.iter().filter_map(|(_, b)| b.retry_at).min()
    }

    /// The bridge with this key.
    pub(crate) fn get_mut(&mut self, key: u32) -> Option<&mut Bridge> {
        self.list.get_mut(key as usize)
    }
}

/// A message waiting to go to the broker.
#[derive(Debug, Clone)]
pub(crate) struct OutMsg {
    /// Topic (as published locally).
    pub topic: Rc<str>,
    /// Payload, shared with the pipeline's copy.
    pub payload: SharedBuf,
    /// Packet id of the last send (QoS 1), 0 before the first.
    pub packet_id: u16,
    /// Sent at least once (a resend carries DUP).
    pub sent_before: bool,
    /// PUBACK received (popped once everything before it is too).
    pub acked: bool,
}

impl OutMsg {
    /// What it counts against `queue_bytes`.
    pub(crate) fn size(&self) -> usize {
        self.topic.len() + self.payload.len()
    }
}

/// A bridge's link state, as `/status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BridgeStatus {
    /// Resolving, connecting, or waiting for CONNACK.
    Connecting,
    /// CONNACK accepted: forwarding.
    Online,
    /// Down; retried later.
    Offline,
}

impl BridgeStatus {
    /// The word `/status` and the page use.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Online => "online",
            Self::Offline => "offline",
        }
    }
}

/// One bridge.
#[derive(Debug)]
pub(crate) struct Bridge {
    /// Its configuration.
    pub config: BridgeConfig,
    /// `mqtts://`: client settings and the name the certificate must have.
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    /// Messages not yet acknowledged by the broker, in publish order.
    pub queue: VecDeque<OutMsg>,
    /// Bytes of those (topics + payloads).
    pub queued_bytes: usize,
    /// Messages at the front sent on the current connection, not acked.
    pub in_flight: usize,
    next_packet_id: u16,
    /// The connection, while one exists.
    pub conn: Option<ConnId>,
    /// What `/status` shows.
    pub status: BridgeStatus,
    /// When to connect again (`None` while connected or resolving).
    pub retry_at: Option<Instant>,
    backoff: Duration,
    /// Resolved addresses not tried yet in this attempt.
    pub addrs: VecDeque<SocketAddr>,
    /// Messages sent that may come back through `in` (overlap).
    pub echo: Echo,
    /// Dropping because the queue is full (logged once per episode).
    pub dropping: bool,
    connects: u64,
    /// Connections made after the first.
    pub reconnects: u64,
    /// Messages the broker acknowledged (QoS 1) or that were written (QoS 0).
    pub sent: u64,
    /// Messages received from the broker and published locally.
    pub received: u64,
    /// Messages dropped: queue bound, or refused locally.
    pub dropped: u64,
    /// Echoes of our own messages not delivered again.
    pub echoes: u64,
    /// A SUBACK refused a filter (logged once per connection).
    pub refused_filters: u64,
}

/// TLS client settings for a broker: its CA file's certificates, the host
/// as the certificate name.
fn tls_client(pem: &[u8], host: &str) -> Result<(Arc<ClientConfig>, ServerName<'static>), String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("not a PEM certificate: {e:?}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("unusable CA certificate: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| format!("{host:?} is not a valid TLS server name"))?;
    Ok((Arc::new(config), name))
}

impl Bridge {
    /// A bridge for `config`, first tried at `now`.
    pub(crate) fn new(config: BridgeConfig, now: Instant) -> Result<Self, String> {
        let tls = match &config.tls_ca_pem {
            Some(pem) => Some(tls_client(pem, &config.host)?),
            None => None,
        };
        Ok(Self {
            config,
            tls,
            queue: VecDeque::new(),
            queued_bytes: 0,
            in_flight: 0,
            next_packet_id: 1,
            conn: None,
            status: BridgeStatus::Connecting,
            retry_at: Some(now),
            backoff: FIRST_BACKOFF,
            addrs: VecDeque::new(),
            echo: Echo::default(),
            dropping: false,
            connects: 0,
            reconnects: 0,
            sent: 0,
            received: 0,
            dropped: 0,
            echoes: 0,
            refused_filters: 0,
        })
    }

    /// Bytes of the spool on disk (none: spools are not written yet).
    pub(crate) fn spooled_bytes(&self) -> u64 {
        0
    }

    /// `host:port` for the resolver.
    pub(crate) fn spec(&self) -> String {
        format!("{}:{}", self.config.host, self.config.port)
    }

    /// Whether a local topic goes to the broker (an `out` filter matches).
    pub(crate) fn forwards(&self, topic: &str) -> bool {
        self.config.out.iter().any(|f| filter_matches(f, topic))
    }

    /// Whether a broker topic is covered by an `in` filter (the default
    /// permission of inbound publishes, and the echo filter's scope).
    pub(crate) fn subscribed(&self, topic: &str) -> bool {
        self.config.inbound.iter().any(|f| filter_matches(f, topic))
    }

    /// Queues a message; beyond `queue_bytes` the oldest messages not in
    /// flight are dropped (the new one too if nothing else can go).
    /// Returns how many were dropped.
    pub(crate) fn push(&mut self, msg: OutMsg) -> u64 {
        self.queued_bytes += msg.size();
        self.queue.push_back(msg);
        let mut dropped = 0;
        while self.queued_bytes > self.config.queue_bytes && self.queue.len() > self.in_flight {
            if let Some(m) = self.queue.remove(self.in_flight) {
                self.queued_bytes -= m.size();
                dropped += 1;
            }
        }
        self.dropped += dropped;
        dropped
    }

    /// The next packet id (1..=65535; the window is far smaller, so ids in
    /// flight never repeat).
    pub(crate) fn take_packet_id(&mut self) -> u16 {
        let id = self.next_packet_id;
        self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
        id
    }

    /// A PUBACK: marks the message in flight with this id and pops every
    /// acknowledged message at the front. False if no message in flight
    /// has the id (a stray acknowledgement: ignored).
    pub(crate) fn ack(&mut self, packet_id: u16) -> bool {
        let Some(i) = (0..self.in_flight).find(|&i| {
            let m = &self.queue[i];
            m.packet_id == packet_id && !m.acked
        }) else {
            return false;
        };
        self.queue[i].acked = true;
        while self.in_flight > 0 && self.queue.front().is_some_and(|m| m.acked) {
            self.pop_front();
            self.in_flight -= 1;
            self.sent += 1;
        }
        true
    }

    /// Removes the front message.
    pub(crate) fn pop_front(&mut self) -> Option<OutMsg> {
        let m = self.queue.pop_front()?;
        self.queued_bytes -= m.size();
        Some(m)
    }

    /// The drop episode is over: the queue is below half its bound (true
    /// once, for the log line).
    pub(crate) fn drop_episode_over(&mut self) -> bool {
        let over = self.dropping && self.queued_bytes <= self.config.queue_bytes / 2;
        if over {
            self.dropping = false;
        }
        over
    }

    /// CONNACK accepted.
    pub(crate) fn online(&mut self) {
        self.status = BridgeStatus::Online;
        self.backoff = FIRST_BACKOFF;
        if self.connects > 0 {
            self.reconnects += 1;
        }
        self.connects += 1;
    }

    /// A connect failed: another resolved address is tried now if one is
    /// left (true).
    pub(crate) fn try_next_addr(&mut self, now: Instant) -> bool {
        if self.addrs.is_empty() {
            return false;
        }
        self.conn = None;
        self.status = BridgeStatus::Connecting;
        self.retry_at = Some(now);
        true
    }

    /// The connection failed or could not be made: messages in flight are
    /// kept (sent again, with DUP, on the next connection) and the next
    /// attempt waits for the backoff with jitter. Returns the delay.
    pub(crate) fn down(&mut self, now: Instant) -> Duration {
        self.conn = None;
        self.status = BridgeStatus::Offline;
        self.addrs.clear();
        self.in_flight = 0;
        for m in &mut self.queue {
            m.acked = false;
        }
        let delay = retry_delay(&mut self.backoff);
        self.retry_at = Some(now + delay);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn config(queue_bytes: usize) -> BridgeConfig {
        BridgeConfig {
            name: "cloud".into(),
            url: "mqtt://broker:1883".into(),
            host: "broker".into(),
            port: 1883,
            tls_ca_pem: None,
            user: None,
            password: None,
            client_id: "psrtd-test".into(),
            out: vec!["plant/#".into()],
            inbound: vec!["cmd/#".into()],
            qos: 1,
            queue_bytes,
            spool: None,
            spool_bytes: 0,
            keepalive: 30,
            inflight: 4,
            acl: None,
        }
    }

    fn msg(topic: &str, len: usize) -> OutMsg {
        OutMsg {
            topic: topic.into(),
            payload: Rc::new(vec![0; len]),
            packet_id: 0,
            sent_before: false,
            acked: false,
        }
    }

    #[test]
    fn the_bound_drops_the_oldest_not_in_flight() {
        let mut b = Bridge::new(config(100), Instant::now()).unwrap();
        for i in 0..3 {
            assert_eq!(b.push(msg(&format!("t{i}"), 28)), 0);
        }
        assert_eq!(b.queued_bytes, 90);
        b.in_flight = 1;
        // 120 > 100: t1 goes (t0 is in flight).
        assert_eq!(b.push(msg("t3", 28)), 1);
        let topics: Vec<&str> = b.queue.iter().map(|m| &*m.topic).collect();
        assert_eq!(topics, ["t0", "t2", "t3"]);
        assert_eq!((b.queued_bytes, b.dropped), (90, 1));
        // A message larger than the bound goes itself if nothing else can.
        b.in_flight = 3;
        assert_eq!(b.push(msg("big", 200)), 1);
        assert_eq!(b.queue.len(), 3);
    }

    #[test]
    fn acks_pop_in_order_and_strays_are_ignored() {
        let mut b = Bridge::new(config(1000), Instant::now()).unwrap();
        for i in 0..3 {
            b.push(msg(&format!("t{i}"), 1));
            let id = b.take_packet_id();
            b.queue[i].packet_id = id;
        }
        b.in_flight = 3;
        assert!(b.ack(2), "out of order: kept until 1 is acked");
        assert_eq!((b.queue.len(), b.sent), (3, 0));
        assert!(!b.ack(2), "already acked");
        assert!(!b.ack(9), "never sent");
        assert!(b.ack(1));
        assert_eq!((b.queue.len(), b.in_flight, b.sent), (1, 1, 2));
        // A reconnect: in flight again from the start, acks forgotten.
        b.down(Instant::now());
        assert_eq!((b.in_flight, b.status), (0, BridgeStatus::Offline));
        assert!(b.retry_at.is_some());
    }

    #[test]
    fn packet_ids_skip_zero() {
        let mut b = Bridge::new(config(1000), Instant::now()).unwrap();
        b.next_packet_id = 65535;
        assert_eq!(b.take_packet_id(), 65535);
        assert_eq!(b.take_packet_id(), 1);
    }

    #[test]
    fn filters_under_mqtt_rules() {
        let b = Bridge::new(config(1000), Instant::now()).unwrap();
        assert!(b.forwards("plant") && b.forwards("plant/a/b"));
        assert!(!b.forwards("plants") && !b.forwards("cmd/x"));
        assert!(b.subscribed("cmd/x") && !b.subscribed("plant/x"));
    }
}
