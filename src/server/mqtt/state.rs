//! MQTT sessions, which outlive their connections: every session (clean
//! or persistent) lives in [`Sessions`] under a key, and its filters are in
//! the one matcher under [`sub_id`]`(key)` — a client id with the top bit
//! set, so fan-out tells an MQTT session from a PSRT control connection
//! with one bit test. A connection in `Connected` points at its session; a
//! persistent session whose client is away keeps its filters and its QoS 1
//! messages (bounded in bytes) until it expires.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use psrt_protocol::mqtt::{QoS, filter_matches};
use slab::Slab;

use crate::server::auth::AclEntry;
use crate::server::conn::{ConnId, SharedBuf};
use crate::server::pubsub::matcher::ClientId;

/// The matcher id bit of MQTT sessions (PSRT ids are slab keys, far below).
pub(crate) const MQTT_SUB: ClientId = 1 << (usize::BITS - 1);

/// The matcher id of session `key`.
pub(crate) fn sub_id(key: usize) -> ClientId {
    MQTT_SUB | key
}

/// A QoS 1 PUBLISH built once and shared by every session that holds it:
/// the whole packet with packet id 0 at `id_at` (each send writes its own).
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub frame: SharedBuf,
    pub id_at: usize,
}

impl Queued {
    /// Bytes this message holds in a session's budget.
    pub(crate) fn len(&self) -> usize {
        self.frame.len()
    }
}

/// One subscription: the filter, its granted QoS, and whether the parent
/// mask (`a` for `a/#`) is in the matcher too (the ACL may refuse it).
#[derive(Debug)]
pub(crate) struct Filter {
    pub filter: Box<str>,
    pub qos: QoS,
    pub parent: bool,
}

/// An MQTT session.
#[derive(Debug)]
pub(crate) struct Session {
    pub client_id: Box<str>,
    /// Login name; `_` for anonymous.
    pub login: Box<str>,
    pub acl: Arc<AclEntry>,
    /// The hash the login was verified against (a reload that changes it
    /// ends the session); `None` for anonymous and trusted clients.
    pub hash: Option<Box<str>>,
    pub trusted: bool,
    /// CleanSession: the session ends with its connection.
    pub clean: bool,
    /// The live connection, if the client is connected.
    pub conn: Option<ConnId>,
    /// When the client went away (persistent sessions).
    pub away_since: Option<Instant>,
    pub filters: Vec<Filter>,
    /// The QoS every filter grants, if they all agree (the fast path).
    pub uniform_qos: Option<QoS>,
    /// Sequence number of the last message offered (once per session).
    pub delivered_seq: u64,
    pub next_id: u16,
    /// Sent and waiting for PUBACK.
    pub inflight: VecDeque<(u16, Queued)>,
    /// Waiting for the in-flight window (or for the client to come back).
    pub queue: VecDeque<Queued>,
    /// Bytes of `inflight` and `queue`.
    pub held_bytes: usize,
    /// Inbound QoS 2 packet ids delivered and waiting for PUBREL.
    pub qos2_in: Vec<u16>,
    /// Messages written whole to this client (the stats page's clients).
    pub sent: u64,
    /// Messages thrown away with its connection's queue.
    pub dropped: u64,
}

impl Session {
    /// A fresh session.
    pub(crate) fn new(client_id: &str, login: &str, acl: Arc<AclEntry>, clean: bool) -> Self {
        Self {
            client_id: client_id.into(),
            login: login.into(),
            acl,
            hash: None,
            trusted: false,
            clean,
            conn: None,
            away_since: None,
            filters: Vec::new(),
            uniform_qos: None,
            delivered_seq: 0,
            next_id: 0,
            inflight: VecDeque::new(),
            queue: VecDeque::new(),
            held_bytes: 0,
            qos2_in: Vec::new(),
            sent: 0,
            dropped: 0,
        }
    }

    /// The QoS a message on `topic` gets: the highest of the matching
    /// filters (one check when all filters grant the same).
    pub(crate) fn qos_for(&self, topic: &str) -> QoS {
        if let Some(q) = self.uniform_qos {
            return q;
        }
        self.filters
            .iter()
            .filter(|f| filter_matches(&f.filter, topic))
            .map(|f| f.qos)
            .max()
            .unwrap_or(QoS::AtMostOnce)
    }

    /// Recomputes `uniform_qos` after the filters changed.
    pub(crate) fn filters_changed(&mut self) {
        let first = self.filters.first().map(|f| f.qos);
        self.uniform_qos = first.filter(|q| self.filters.iter().all(|f| f.qos == *q));
    }

    /// The next packet id (1..=65535, wrapping).
    pub(crate) fn take_id(&mut self) -> u16 {
        self.next_id = self.next_id.checked_add(1).unwrap_or(1).max(1);
        self.next_id
    }
}

/// Every MQTT session, by key and by client id.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    pub slab: Slab<Session>,
    pub by_client_id: HashMap<Box<str>, usize>,
    /// Connected clients.
    pub connected: usize,
    /// Bytes of QoS 1 messages all sessions hold.
    pub held_bytes: usize,
    /// The earliest instant an away session may expire.
    pub next_expiry: Option<Instant>,
    /// The retain flag was logged once (`mqtt.retain` off).
    pub retain_logged: bool,
    /// Retained messages (`mqtt.retain` on).
    pub retained: super::retain::Store,
    /// Scratch for a QoS 0 PUBLISH built once per message.
    pub scratch: Vec<u8>,
}

impl Sessions {
    /// Sessions kept while their clients are away.
    pub(crate) fn away(&self) -> usize {
        self.slab.len() - self.connected
    }
}
