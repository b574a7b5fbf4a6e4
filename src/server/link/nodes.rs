//! Cluster replication, outgoing side: `cluster.yml` (the reference format:
//! a list of client configs, one per neighbour) and the per-node queue of
//! messages waiting to be replicated.
//!
//! Every message published locally (TCP or UDP, after the ACL) is queued to
//! every node; a replicated message (received with PUBLISH_REPL) is never
//! forwarded again, so the nodes must form a full mesh. Each node has one
//! outgoing link on the event loop (see `mod.rs` in this folder) that logs in
//! as a user with `replicator: true` on the other node. A psrtd node takes
//! the pipelined extension (`PUBLISH_REPL_SEQ`, many messages in flight); a
//! reference node gets the two-phase `PUBLISH_REPL`, one at a time.
//!
//! The queue holds every message the node has not acknowledged, in publish
//! order, bounded in bytes (`queue_bytes` in the node's `cluster.yml` entry,
//! default 64 MiB, payload + topic). While a link is down messages wait; when
//! the bound is reached the oldest message not in flight is dropped, counted
//! and logged once per episode. A link that fails is retried with a growing
//! delay (1 s to 30 s, with jitter); unacknowledged messages are sent again
//! (the receiving psrtd drops sequence numbers it already delivered).

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

use super::outgoing::{OutgoingPeer, jitter_fraction};
use crate::server::config::ConfigError;
use crate::server::conn::SharedBuf;

/// Default bound of a node's queue (`queue_bytes`).
pub(crate) const DEFAULT_QUEUE_BYTES: usize = 64 << 20;
/// Origins whose last sequence number a receiving node remembers.
pub(crate) const MAX_ORIGINS: usize = 1024;

/// One entry of `cluster.yml` (the reference client's `Config`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    path: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    /// Accepted; the server's `proto.timeout` is used (as in the reference).
    #[serde(default)]
    #[allow(dead_code)]
    timeout: Option<f64>,
    #[serde(default)]
    #[allow(dead_code)]
    socket_wait_timeout: Option<f64>,
    /// Accepted; `data_queue` is used (as in the reference).
    #[serde(default)]
    #[allow(dead_code)]
    queue_size: Option<usize>,
    #[serde(default)]
    tls: bool,
    tls_ca: Option<PathBuf>,
    /// Accepted; links never open a data socket.
    #[serde(default)]
    #[allow(dead_code)]
    need_data_stream: Option<bool>,
    /// psrtd: the bound of this node's queue in bytes (not a reference key).
    #[serde(default)]
    queue_bytes: Option<usize>,
}

/// Where a node listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAddr {
    /// `host:port`, resolved off the loop before each connection attempt.
    Tcp(String),
    /// A Unix socket path.
    Unix(PathBuf),
}

/// A neighbour to replicate to.
#[derive(Clone)]
pub struct NodeConfig {
    /// The path as written in `cluster.yml` (its name in logs and stats).
    pub path: String,
    /// Address.
    pub addr: NodeAddr,
    /// Login on the neighbour (a user with `replicator: true` there).
    pub user: String,
    /// Password.
    pub password: String,
    /// TLS client settings and the name the certificate must have.
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    /// The queue's bound in bytes.
    pub queue_bytes: usize,
}

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("path", &self.path)
            .field("user", &self.user)
            .field("tls", &self.tls.is_some())
            .field("queue_bytes", &self.queue_bytes)
            .finish_non_exhaustive()
    }
}

fn tls_client(
    ca: &Path,
    host: &str,
    file: &Path,
) -> Result<(Arc<ClientConfig>, ServerName<'static>), ConfigError> {
    let pem = std::fs::read(ca).map_err(|e| ConfigError::new(ca, format!("cannot read: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert =
            cert.map_err(|e| ConfigError::new(ca, format!("not a PEM certificate: {e:?}")))?;
        roots
            .add(cert)
            .map_err(|e| ConfigError::new(ca, format!("unusable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ConfigError::new(ca, "no certificate in the file"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new(file, format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| ConfigError::new(file, format!("{host:?} is not a valid TLS server name")))?;
    Ok((Arc::new(config), name))
}

/// Reads `cluster.yml`. Relative paths (Unix sockets, `tls_ca`) are taken
/// from the file's folder.
pub fn load_nodes(file: &Path) -> Result<Vec<NodeConfig>, ConfigError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError::new(file, format!("cannot read: {e}")))?;
    let entries: Vec<NodeFile> =
        serde_yaml::from_str(&text).map_err(|e| ConfigError::yaml(file, &e))?;
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |p: PathBuf| if p.is_absolute() { p } else { dir.join(p) };
    let mut nodes = Vec::new();
    for entry in entries {
        let bad = |msg: String| ConfigError::new(file, format!("node {:?}: {msg}", entry.path));
        let is_unix = entry.path.ends_with(".sock") || entry.path.ends_with(".socket");
        let (addr, host) = if is_unix {
            (
                NodeAddr::Unix(resolve(PathBuf::from(&entry.path))),
                String::new(),
            )
        } else {
            let Some((host, port)) = entry.path.rsplit_once(':') else {
                return Err(bad("path must be host:port or a .sock/.socket path".into()));
            };
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(bad("path must be host:port or a .sock/.socket path".into()));
            }
            (NodeAddr::Tcp(entry.path.clone()), host.to_string())
        };
        let tls = match (entry.tls, &entry.tls_ca, is_unix) {
            (false, _, _) => None,
            (true, _, true) => return Err(bad("TLS is not available on Unix sockets".into())),
            (true, None, false) => {
                return Err(bad(
                    "tls: true needs tls_ca (the CA that signed the node's certificate)".into(),
                ));
            }
            (true, Some(ca), false) => Some(tls_client(&resolve(ca.clone()), &host, file)?),
        };
        nodes.push(NodeConfig {
            path: entry.path.clone(),
            addr,
            user: entry.user,
            password: entry.password,
            tls,
            queue_bytes: entry.queue_bytes.unwrap_or(DEFAULT_QUEUE_BYTES),
        });
    }
    Ok(nodes)
}

/// A message waiting to be replicated.
#[derive(Debug, Clone)]
pub(crate) struct Replica {
    /// Priority byte.
    pub priority: u8,
    /// Normalised topic.
    pub topic: Rc<str>,
    /// Payload, shared by every node's queue.
    pub message: Payload,
    /// Publish time, ns since the epoch (kept end to end for latency).
    pub timestamp_ns: u64,
    /// Sequence number for this node (set when queued).
    pub seq: u64,
}

/// A replica's payload: a small one in one allocation (copied into a link's
/// send queue), a large one in a buffer the send queues share as it is.
#[derive(Debug, Clone)]
pub(crate) enum Payload {
    /// Under [`Payload::SHARE_FROM`] bytes.
    Inline(Rc<[u8]>),
    /// [`Payload::SHARE_FROM`] bytes or more.
    Shared(SharedBuf),
}

impl Payload {
    /// From this size a payload goes into send queues shared, not copied.
    pub(crate) const SHARE_FROM: usize = 8192;

    /// The payload `bytes`, copied once.
    pub(crate) fn new(bytes: &[u8]) -> Self {
        if bytes.len() >= Self::SHARE_FROM {
            Self::Shared(Rc::new(bytes.to_vec()))
        } else {
            Self::Inline(bytes.into())
        }
    }

    /// Its bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Self::Inline(b) => b,
            Self::Shared(b) => b,
        }
    }

    /// Its length.
    pub(crate) fn len(&self) -> usize {
        self.bytes().len()
    }
}

impl Replica {
    /// What it counts against the queue's bound.
    pub(crate) fn size(&self) -> usize {
        self.message.len() + self.topic.len() + super::outgoing::QUEUED_MESSAGE_OVERHEAD
    }
}

/// What a node's link speaks, learnt at the first login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Not known yet: REPL_HELLO is tried.
    Unknown,
    /// psrtd: PUBLISH_REPL_SEQ, pipelined.
    Pipelined,
    /// The reference: two-phase PUBLISH_REPL, one at a time.
    Reference,
}

/// A neighbour and everything the loop keeps for it.
#[derive(Debug)]
pub(crate) struct Node {
    /// Its configuration.
    pub config: NodeConfig,
    /// Messages not yet acknowledged by the node; the first `in_flight`
    /// were sent on the current link.
    pub queue: VecDeque<Replica>,
    /// Bytes of the queued payloads and topics.
    pub queued_bytes: usize,
    /// Messages at the front of the queue sent and not yet answered.
    pub in_flight: usize,
    /// Bytes of those.
    pub in_flight_bytes: usize,
    /// A keep-alive NOP is waiting for its `01` (it was sent with nothing
    /// in flight, so its reply comes first).
    pub nop_pending: bool,
    /// When the node last answered anything (the link deadline).
    pub last_answer: Option<Instant>,
    /// When the request whose reply measures the round trip was sent.
    pub ping_at: Option<Instant>,
    /// What the link speaks.
    pub dialect: Dialect,
    /// The next message's sequence number.
    next_seq: u64,
    /// The link connection, its status, addresses, retry time and backoff,
    /// reconnects, the drop episode.
    pub peer: OutgoingPeer,
    /// Messages the node took (`01` after the body).
    pub sent: u64,
    /// Messages the node did not need (`E0`: no subscriber there).
    pub not_required: u64,
    /// Messages dropped because the queue was full or the node refused them.
    pub dropped: u64,
    /// Round-trip time of the last answered request.
    pub rtt: Duration,
}

impl Node {
    pub(crate) fn new(config: NodeConfig, now: Instant) -> Self {
        Self {
            config,
            queue: VecDeque::new(),
            queued_bytes: 0,
            in_flight: 0,
            in_flight_bytes: 0,
            nop_pending: false,
            last_answer: None,
            ping_at: None,
            dialect: Dialect::Unknown,
            next_seq: 1,
            peer: OutgoingPeer::new(now),
            rtt: Duration::ZERO,
            sent: 0,
            not_required: 0,
            dropped: 0,
        }
    }

    /// Queues a message; if the queue's bound is passed, the oldest messages
    /// not in flight are dropped (the new one too if nothing else can go).
    /// Returns how many were dropped.
    pub(crate) fn push(&mut self, mut replica: Replica) -> u64 {
        replica.seq = self.next_seq;
        self.next_seq += 1;
        let size = replica.size();
        self.queued_bytes += size;
        self.queue.push_back(replica);
        let mut dropped = 0;
        while self.queued_bytes > self.config.queue_bytes && self.queue.len() > self.in_flight {
            if let Some(r) = self.queue.remove(self.in_flight) {
                self.queued_bytes -= r.size();
                dropped += 1;
            }
        }
        self.dropped += dropped;
        dropped
    }

    /// Drops the oldest message not in flight (the total bound); false if
    /// every queued message is in flight.
    pub(crate) fn drop_oldest(&mut self) -> bool {
        match self.queue.remove(self.in_flight) {
            Some(r) => {
                self.queued_bytes -= r.size();
                self.dropped += 1;
                true
            }
            None => false,
        }
    }

    /// Removes the front message (acknowledged, not required, or refused).
    pub(crate) fn pop(&mut self) {
        if let Some(r) = self.queue.pop_front() {
            self.queued_bytes -= r.size();
            if self.in_flight > 0 {
                self.in_flight -= 1;
                self.in_flight_bytes -= r.size();
            }
        }
    }

    /// The queue is below half its bound again after dropping: the episode
    /// is over (true once, for the log line).
    pub(crate) fn drop_episode_over(&mut self) -> bool {
        self.peer
            .drop_episode_over(self.queued_bytes as u64, self.config.queue_bytes as u64)
    }

    /// The link is up and logged in.
    pub(crate) fn online(&mut self, now: Instant) {
        self.peer.online();
        self.last_answer = Some(now);
    }

    /// The link failed or could not be made: retry after the backoff, with
    /// up to a quarter of it added at random so nodes do not retry in step.
    /// Nothing is in flight any more (sent again on the next link).
    pub(crate) fn down(&mut self, now: Instant) {
        self.peer.down(now);
        self.in_flight = 0;
        self.in_flight_bytes = 0;
        self.nop_pending = false;
    }

    /// The node closed the link right after REPL_HELLO: a reference node.
    /// It is tried again at once with the reference exchange.
    pub(crate) fn speaks_reference(&mut self, now: Instant) {
        self.down(now);
        self.dialect = Dialect::Reference;
        self.peer.retry_now(now);
    }
}

/// All nodes.
#[derive(Debug, Default)]
pub(crate) struct Cluster {
    /// The neighbours, in `cluster.yml` order.
    pub nodes: Vec<Node>,
    /// This process's id as an origin (sent in REPL_HELLO).
    pub origin: u64,
    /// Receiving side: the last sequence number delivered per origin
    /// (but the current one's, which is in `recent`).
    seen: std::collections::HashMap<u64, u64>,
    /// Receiving side: the origin seen last and its last sequence number,
    /// so that a busy link costs one comparison per message, not a lookup.
    recent: Option<(u64, u64)>,
    /// The topic of the last replica queued (see [`Cluster::topic_rc`]).
    last_topic: Option<Rc<str>>,
}

impl Cluster {
    /// Nodes from `cluster.yml`; each is first tried at once.
    pub(crate) fn new(configs: Vec<NodeConfig>, now: Instant) -> Self {
        Self {
            nodes: configs.into_iter().map(|c| Node::new(c, now)).collect(),
            origin: ((jitter_fraction() * (1u64 << 53) as f64) as u64) << 11
                | u64::from(std::process::id() & 0x7ff),
            seen: Default::default(),
            recent: None,
            last_topic: None,
        }
    }

    /// Receiving side: true if `seq` from `origin` was not delivered yet
    /// (and remembers it). Sequence numbers only grow on one link, so a
    /// number not above the last one is a resend after a reconnect.
    pub(crate) fn first_time(&mut self, origin: u64, seq: u64) -> bool {
        let last = match self.recent {
            Some((o, last)) if o == origin => last,
            _ => {
                if let Some((o, last)) = self.recent.take() {
                    self.seen.insert(o, last);
                }
                if self.seen.len() >= MAX_ORIGINS && !self.seen.contains_key(&origin) {
                    self.seen.clear();
                }
                self.seen.remove(&origin).unwrap_or(0)
            }
        };
        self.recent = Some((origin, last.max(seq)));
        seq > last
    }

    /// Origins remembered (the current one included).
    #[cfg(test)]
    pub(crate) fn seen_len(&self) -> usize {
        self.seen.len() + usize::from(self.recent.is_some())
    }

    /// The topic as a shared string for a replica: the previous replica's
    /// when it is the same (a sensor publishes to one topic over and over),
    /// so a stream of messages costs no allocation per topic.
    pub(crate) fn topic_rc(&mut self, topic: &str) -> Rc<str> {
        match &self.last_topic {
            Some(t) if **t == *topic => t.clone(),
            _ => {
                let t: Rc<str> = topic.into();
                self.last_topic = Some(t.clone());
                t
            }
        }
    }

    /// The earliest pending retry, for the poll timeout.
    pub(crate) fn next_retry(&self) -> Option<Instant> {
        self.nodes.iter().filter_map(|n| n.peer.retry_at).min()
    }

    /// Enforces the bound of all queues together: the oldest messages of
    /// the node with the most bytes waiting go first. Returns the nodes that
    /// started dropping (for the once-per-episode log line).
    pub(crate) fn enforce_total(&mut self, total: usize) -> Vec<usize> {
        let mut started = Vec::new();
        let mut queued: usize = self.nodes.iter().map(|n| n.queued_bytes).sum();
        while queued > total {
            let Some((i, n)) = self
                .nodes
                .iter_mut()
                .enumerate()
                .filter(|(_, n)| n.queue.len() > n.in_flight)
                .max_by_key(|(_, n)| n.queued_bytes - n.in_flight_bytes)
            else {
                break;
            };
            let before = n.queued_bytes;
            if !n.drop_oldest() {
                break;
            }
            queued -= before - n.queued_bytes;
            if n.peer.start_dropping() {
                started.push(i);
            }
        }
        started
    }

    /// No node configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}
