//! Cluster replication, outgoing side: `cluster.yml` (the reference format:
//! a list of client configs, one per neighbour) and the per-node queue of
//! messages waiting to be replicated.
//!
//! Every message published locally (TCP or UDP, after the ACL) is queued to
//! every node; a replicated message (received with PUBLISH_REPL) is never
//! forwarded again, so the nodes must form a full mesh. Each node has one
//! outgoing link on the event loop (see `mod.rs` in this folder) that logs in as a user with
//! `replicator: true` on the other node and sends `PUBLISH_REPL` requests one
//! at a time (the protocol's two-phase exchange cannot be pipelined). The
//! queue is bounded like a data socket's (`data_queue` messages,
//! `data_queue_bytes` bytes); when it is full new messages are dropped and
//! counted. A link that fails is retried with a growing delay (1 s to 30 s);
//! the message that was in flight is sent again (at least once).

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

use crate::server::config::ConfigError;
use crate::server::conn::ConnId;
use crate::server::conn::SharedBuf;

/// First retry delay after a link fails; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

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
}

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("path", &self.path)
            .field("user", &self.user)
            .field("tls", &self.tls.is_some())
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
    pub message: SharedBuf,
    /// Publish time, ns since the epoch (kept end to end for latency).
    pub timestamp_ns: u64,
}

/// A node's link state, as shown by the stats endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeStatus {
    /// Connecting or logging in.
    Connecting,
    /// Logged in; replicating.
    Online,
    /// Down; retried later.
    Offline,
}

impl NodeStatus {
    /// The word the reference's stats page styles.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Online => "online",
            Self::Offline => "offline",
        }
    }
}

/// A neighbour and everything the loop keeps for it.
#[derive(Debug)]
pub(crate) struct Node {
    /// Its configuration.
    pub config: NodeConfig,
    /// Messages not yet acknowledged by the node (the front may be in flight).
    pub queue: VecDeque<Replica>,
    /// Bytes of the queued payloads.
    pub queued_bytes: usize,
    /// The link connection, while one exists.
    pub link: Option<ConnId>,
    /// What the stats page shows.
    pub status: NodeStatus,
    /// When to try to connect again (`None` while a link exists or an address
    /// is being resolved).
    pub retry_at: Option<Instant>,
    backoff: Duration,
    /// Messages the node took (`01` after the body).
    pub sent: u64,
    /// Messages the node did not need (`E0`: no subscriber there).
    pub not_required: u64,
    /// Messages dropped because the queue was full or the node refused them.
    pub dropped: u64,
}

impl Node {
    fn new(config: NodeConfig, now: Instant) -> Self {
        Self {
            config,
            queue: VecDeque::new(),
            queued_bytes: 0,
            link: None,
            status: NodeStatus::Connecting,
            retry_at: Some(now),
            backoff: FIRST_BACKOFF,
            sent: 0,
            not_required: 0,
            dropped: 0,
        }
    }

    /// Queues a message unless the queue is full; false if dropped.
    pub(crate) fn push(&mut self, replica: Replica, max_messages: usize, max_bytes: usize) -> bool {
        let size = replica.message.len() + replica.topic.len();
        if self.queue.len() >= max_messages || self.queued_bytes + size > max_bytes {
            self.dropped += 1;
            return false;
        }
        self.queued_bytes += size;
        self.queue.push_back(replica);
        true
    }

    /// Removes the front message (acknowledged, not required, or refused).
    pub(crate) fn pop(&mut self) {
        if let Some(r) = self.queue.pop_front() {
            self.queued_bytes -= r.message.len() + r.topic.len();
        }
    }

    /// The link is up and logged in.
    pub(crate) fn online(&mut self) {
        self.status = NodeStatus::Online;
        self.backoff = FIRST_BACKOFF;
    }

    /// The link failed or could not be made: retry after the backoff.
    pub(crate) fn down(&mut self, now: Instant) {
        self.link = None;
        self.status = NodeStatus::Offline;
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

/// All nodes.
#[derive(Debug, Default)]
pub(crate) struct Cluster {
    /// The neighbours, in `cluster.yml` order.
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Nodes from `cluster.yml`; each is first tried at once.
    pub(crate) fn new(configs: Vec<NodeConfig>, now: Instant) -> Self {
        Self {
            nodes: configs.into_iter().map(|c| Node::new(c, now)).collect(),
        }
    }

    /// The earliest pending retry, for the poll timeout.
    pub(crate) fn next_retry(&self) -> Option<Instant> {
        self.nodes.iter().filter_map(|n| n.retry_at).min()
    }

    /// No node configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reference_cluster_file_loads() {
        let dir = std::env::temp_dir().join(format!("psrt-cluster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = write(
            &dir,
            "cluster.yml",
            "- path: node2:2873\n  user: repl\n  password: \"123\"\n  timeout: 5\n- path: /run/psrtd/node3.sock\n  user: repl\n",
        );
        let nodes = load_nodes(&file).unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].addr, NodeAddr::Tcp("node2:2873".into()));
        assert_eq!(
            (nodes[0].user.as_str(), nodes[0].password.as_str()),
            ("repl", "123")
        );
        assert_eq!(
            nodes[1].addr,
            NodeAddr::Unix("/run/psrtd/node3.sock".into())
        );
        assert!(
            !format!("{:?}", nodes[0]).contains("123"),
            "no password in Debug"
        );

        for (text, needle) in [
            ("- path: nowhere\n", "host:port"),
            ("- path: n:1\n  colour: red\n", "unknown field `colour`"),
            ("- path: n:1\n  tls: true\n", "needs tls_ca"),
            (
                "- path: n:1\n  tls: true\n  tls_ca: missing.pem\n",
                "missing.pem",
            ),
            ("- path: x.sock\n  tls: true\n  tls_ca: ca.pem\n", "Unix"),
            ("{ path: n }\n", "invalid type"),
        ] {
            let f = write(&dir, "bad.yml", text);
            let e = load_nodes(&f).unwrap_err();
            assert!(e.to_string().contains(needle), "{text:?} -> {e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn queue_limits_and_backoff() {
        let now = Instant::now();
        let config = NodeConfig {
            path: "n:1".into(),
            addr: NodeAddr::Tcp("n:1".into()),
            user: String::new(),
            password: String::new(),
            tls: None,
        };
        let mut node = Node::new(config, now);
        let r = |n: usize| Replica {
            priority: 0x7f,
            topic: "t".into(),
            message: vec![0u8; n].into(),
            timestamp_ns: 0,
        };
        assert!(node.push(r(10), 2, 100));
        assert!(node.push(r(10), 2, 100));
        assert!(!node.push(r(10), 2, 100), "message limit");
        node.pop();
        assert!(!node.push(r(90), 2, 100), "byte limit");
        assert_eq!(node.dropped, 2);
        assert_eq!(node.queued_bytes, 11);
        node.down(now);
        assert_eq!(node.retry_at, Some(now + FIRST_BACKOFF));
        node.down(now);
        assert_eq!(node.retry_at, Some(now + FIRST_BACKOFF * 2));
        for _ in 0..10 {
            node.down(now);
        }
        assert_eq!(node.retry_at, Some(now + MAX_BACKOFF));
        node.online();
        node.down(now);
        assert_eq!(node.retry_at, Some(now + FIRST_BACKOFF));
    }
}
