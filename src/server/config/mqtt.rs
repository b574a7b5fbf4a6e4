//! The optional top-level `mqtt:` section: MQTT 3.1.1 listeners (plain,
//! and TLS with `proto.tls_cert`/`tls_key`) and the MQTT limits. No section
//! means no MQTT listener; the embedded default listens on
//! `127.0.0.1:1883`. Validated here, so `psrtd -t` checks it.

use std::time::Duration;

use serde::Deserialize;

use super::addr::{BindAddr, OneOrMany, is_host_port};

/// `mqtt:` as written in `config.yml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MqttSection {
    #[serde(default)]
    bind: OneOrMany,
    #[serde(default)]
    bind_tls: OneOrMany,
    max_packet_size: Option<u32>,
    max_keepalive: Option<u16>,
    max_inflight: Option<u16>,
    session_expiry: Option<u64>,
    session_queue_bytes: Option<usize>,
    max_stored_sessions: Option<usize>,
    retain: Option<bool>,
    retain_bytes: Option<usize>,
}

/// The validated `mqtt:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttConfig {
    /// Plain listeners: `host:port` or Unix socket paths.
    pub bind: Vec<BindAddr>,
    /// TLS listeners (`host:port`), with the `proto` TLS identity.
    pub bind_tls: Vec<String>,
    /// Largest remaining length of a packet (default: `server.max_pub_size`).
    pub max_packet_size: u32,
    /// Largest keep-alive a client may ask for, in seconds; with less than
    /// 65535 a client asking more, or 0 (none), is refused (CONNACK 2).
    pub max_keepalive: u16,
    /// Outbound QoS 1 messages sent and not yet acknowledged, per client.
    pub max_inflight: u16,
    /// How long a persistent session (CleanSession 0) is kept while its
    /// client is away.
    pub session_expiry: Duration,
    /// Bytes of QoS 1 messages one session may hold waiting (in flight,
    /// queued behind the window, or while away); more are dropped.
    pub session_queue_bytes: usize,
    /// Persistent sessions kept while their clients are away; the oldest
    /// goes when a new one would exceed it.
    pub max_stored_sessions: usize,
    /// Keep an in-memory retained-message store (`mqtt/retain.rs`); off:
    /// the RETAIN flag is accepted and the message only delivered.
    pub retain: bool,
    /// Bound of the retained store: topic + payload + 96 bytes per
    /// message; a message that does not fit is refused.
    pub retain_bytes: usize,
}

const DEFAULT_MAX_INFLIGHT: u16 = 64;
const DEFAULT_SESSION_EXPIRY_SECS: u64 = 3600;
const DEFAULT_SESSION_QUEUE_BYTES: usize = 1024 * 1024;
const DEFAULT_MAX_STORED_SESSIONS: usize = 1000;
const DEFAULT_RETAIN_BYTES: usize = 16 * 1024 * 1024;

impl MqttConfig {
    /// The embedded default's MQTT listener, with `max_pub_size` packets.
    pub(super) fn default_with(bind: Vec<BindAddr>, max_pub_size: u32) -> Self {
        Self {
            bind,
            bind_tls: Vec::new(),
            max_packet_size: max_pub_size,
            max_keepalive: u16::MAX,
            max_inflight: DEFAULT_MAX_INFLIGHT,
            session_expiry: Duration::from_secs(DEFAULT_SESSION_EXPIRY_SECS),
            session_queue_bytes: DEFAULT_SESSION_QUEUE_BYTES,
            max_stored_sessions: DEFAULT_MAX_STORED_SESSIONS,
            retain: false,
            retain_bytes: DEFAULT_RETAIN_BYTES,
        }
    }

    /// Validates the section. `bind` parses `host:port` or a Unix socket
    /// path like `proto.bind`; `has_tls` says whether `proto.tls_cert` and
    /// `tls_key` are set; `data_queue_bytes` bounds one connection's queue.
    pub(super) fn from_section(
        section: MqttSection,
        bind: impl Fn(&str, Vec<String>) -> Result<Vec<BindAddr>, String>,
        has_tls: bool,
        max_pub_size: u32,
        data_queue_bytes: usize,
    ) -> Result<Self, String> {
        let mut c = Self::default_with(bind("mqtt.bind", section.bind.into_vec())?, max_pub_size);
        c.bind_tls = section.bind_tls.into_vec();
        if let Some(bad) = c.bind_tls.iter().find(|a| !is_host_port(a)) {
            return Err(format!("mqtt.bind_tls: {bad:?} is not host:port"));
        }
        if !c.bind_tls.is_empty() && !has_tls {
            return Err(
                "mqtt.bind_tls needs a TLS identity: set proto.tls_cert and proto.tls_key".into(),
            );
        }
        if c.bind.is_empty() && c.bind_tls.is_empty() {
            return Err(
                "mqtt: no listener (set mqtt.bind or mqtt.bind_tls, or remove the section)".into(),
            );
        }
        if let Some(size) = section.max_packet_size {
            if !(16..=psrt_protocol::mqtt::MAX_REMAINING_LENGTH).contains(&size) {
                return Err(format!(
                    "mqtt.max_packet_size: {size} is out of range (16 to 268435455)"
                ));
            }
            c.max_packet_size = size;
        }
        if c.max_packet_size as usize + 5 > data_queue_bytes {
            return Err(format!(
                "mqtt.max_packet_size: {} does not fit server.data_queue_bytes ({data_queue_bytes})",
                c.max_packet_size
            ));
        }
        if let Some(k) = section.max_keepalive {
            if k == 0 {
                return Err("mqtt.max_keepalive must be at least 1 second".into());
            }
            c.max_keepalive = k;
        }
        if let Some(n) = section.max_inflight {
            if n == 0 {
                return Err("mqtt.max_inflight must be at least 1".into());
            }
            c.max_inflight = n;
        }
        if let Some(s) = section.session_expiry {
            c.session_expiry = Duration::from_secs(s);
        }
        if let Some(b) = section.session_queue_bytes {
            c.session_queue_bytes = b;
        }
        if let Some(n) = section.max_stored_sessions {
            c.max_stored_sessions = n;
        }
        c.retain = section.retain.unwrap_or(false);
        if let Some(b) = section.retain_bytes {
            if b == 0 {
                return Err(
                    "mqtt.retain_bytes must be at least 1 (to keep no retained messages, set mqtt.retain: false)"
                        .into(),
                );
            }
            c.retain_bytes = b;
        }
        Ok(c)
    }
}
