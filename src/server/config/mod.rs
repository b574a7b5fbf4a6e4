//! `config.yml`: the reference server's format (sections `server`, `proto`,
//! `auth`, `cluster`), loaded unchanged, plus optional new keys and the
//! optional `mqtt` section (`mqtt.rs`). Owns path
//! resolution (relative to the config file's folder), validation with file
//! and line, and the embedded default used when no file exists.
//!
//! It reads files but binds nothing: `psrtd -t` runs exactly this. The
//! auth-worker and UDP-waiting keys are checked in `work.rs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use psrt_protocol::Limits;
use serde::Deserialize;

mod addr;
mod bridge;
mod error;
mod mqtt;
mod work;

pub use addr::BindAddr;
use addr::{OneOrMany, is_host_port};
pub use bridge::BridgeConfig;
pub use error::ConfigError;
pub use mqtt::MqttConfig;
use work::WorkLimits;

/// Where `psrtd` looks for a config when `-C` is not given.
pub const DEFAULT_CONFIG_PATHS: [&str; 2] =
    ["/etc/psrtd/config.yml", "/usr/local/etc/psrtd/config.yml"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    proto: ProtoSection,
    #[serde(default)]
    auth: AuthSection,
    #[serde(default)]
    cluster: Option<ClusterSection>,
    #[serde(default)]
    mqtt: Option<mqtt::MqttSection>,
    #[serde(default)]
    bridges: Option<Vec<bridge::BridgeEntry>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    /// Reference: tokio worker threads. psrtd has one loop; accepted and ignored.
    workers: Option<usize>,
    latency_warn: Option<u32>,
    data_queue: Option<usize>,
    data_queue_bytes: Option<usize>,
    max_topic_depth: Option<usize>,
    max_topic_length: Option<u32>,
    max_pub_size: Option<u32>,
    pid_file: Option<PathBuf>,
    bind_stats: Option<String>,
    license: Option<PathBuf>,
    max_clients: Option<usize>,
    max_clients_per_user: Option<usize>,
    max_clients_per_ip: Option<usize>,
    max_queued_bytes: Option<usize>,
    max_subscriptions_per_client: Option<usize>,
    max_subscriptions: Option<usize>,
    max_partial_bytes: Option<usize>,
    /// New: bcrypt threads (0 = one per core less one, 1 to 4).
    auth_workers: Option<usize>,
    /// New: bytes of plain-auth UDP datagrams waiting for password checks.
    udp_pending_bytes: Option<usize>,
    /// New: the same, for one (login, password) check.
    udp_pending_bytes_per_check: Option<usize>,
    /// New: AES-GCM nonces remembered per UDP key against replays.
    udp_replay_window: Option<usize>,
    max_handshakes_per_ip: Option<usize>,
    max_tls_handshakes: Option<usize>,
    listen_backlog: Option<u32>,
    /// New: µs the loop may poll without sleeping after a request (0 = off).
    busy_poll_us: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProtoSection {
    #[serde(default)]
    bind: OneOrMany,
    #[serde(default)]
    bind_udp: OneOrMany,
    udp_frame_size: Option<u16>,
    timeout: Option<f64>,
    tls_pkcs12: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    fips: Option<bool>,
    allow_no_tls: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthSection {
    allow_anonymous: Option<bool>,
    password_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    acl: Option<PathBuf>,
    /// New: `true` gives Unix-socket clients the reference behaviour (no
    /// password check, full ACL). Default: the same auth as TCP.
    trust_unix_socket: Option<bool>,
    /// New: failed TCP logins per source address and minute before its
    /// connections are refused for a while (0 = off).
    max_login_failures: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterSection {
    config: Option<PathBuf>,
    /// psrtd: the bound of all nodes' replication queues together, bytes.
    queue_bytes_total: Option<usize>,
}

/// Default bound of all replication queues together (`cluster.queue_bytes_total`).
pub const DEFAULT_CLUSTER_QUEUE_TOTAL: usize = 256 << 20;

/// Where the ACL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclSource {
    /// `auth.acl` in a config file.
    File(PathBuf),
    /// The embedded default: anonymous `_` may publish and subscribe `#`.
    AnonymousFullAccess,
}

/// The TLS identity: PEM certificate chain and private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `proto.tls_cert`.
    pub cert: PathBuf,
    /// `proto.tls_key`.
    pub key: PathBuf,
}

/// Auth file locations, resolved against the config folder. The files are
/// read by `auth::AuthDb::load` at start and on every SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFiles {
    /// TLS identity (reloaded with the rest, for certificate rotation).
    pub tls: Option<TlsFiles>,
    /// ACL file (or the embedded one).
    pub acl: AclSource,
    /// htpasswd file with bcrypt hashes.
    pub password_file: Option<PathBuf>,
    /// UDP AES keys (`keys.yml`).
    pub key_file: Option<PathBuf>,
}

/// The validated server configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from, or `None` for the embedded default.
    pub source: Option<PathBuf>,
    /// PSRT stream listeners, in order.
    pub bind: Vec<BindAddr>,
    /// UDP publish listeners (`host:port`).
    pub bind_udp: Vec<String>,
    /// Largest UDP datagram read (longer ones are refused, not truncated).
    pub udp_frame_size: u16,
    /// Stats HTTP listener (`IP:port`).
    pub bind_stats: Option<String>,
    /// Accept plain (`00`) connections.
    pub allow_no_tls: bool,
    /// The protocol timeout (greeting, login, data hello, idle control socket).
    pub timeout: Duration,
    /// Frame size limits for the decoders.
    pub limits: Limits,
    /// Per data socket: queued messages before the socket is dropped.
    pub data_queue: usize,
    /// Per data socket: queued bytes before the socket is dropped.
    pub data_queue_bytes: usize,
    /// All data sockets together: queued bytes before the largest queues
    /// are dropped (0 = unlimited).
    pub max_queued_bytes: usize,
    /// Subscriptions one session may hold; also the most topics one
    /// SUBSCRIBE or UNSUBSCRIBE may carry (0 = unlimited).
    pub max_subscriptions_per_client: usize,
    /// Subscriptions of all sessions together (0 = unlimited).
    pub max_subscriptions: usize,
    /// Bytes of all partially received large frames together; a connection
    /// whose frame would go past it is closed (0 = unlimited).
    pub max_partial_bytes: usize,
    /// Logged-in control sessions, all users together (0 = unlimited).
    pub max_clients: usize,
    /// Sessions per login (0 = unlimited).
    pub max_clients_per_user: usize,
    /// Connections per source IP, any phase (0 = unlimited).
    pub max_clients_per_ip: usize,
    /// PSRT connections per source IP that have not logged in (or bound
    /// their data socket) yet (0 = unlimited).
    pub max_handshakes_per_ip: usize,
    /// TLS handshakes in progress at once, all clients together (0 =
    /// unlimited).
    pub max_tls_handshakes: usize,
    /// Listen backlog of every listener; `None`: the kernel's
    /// `net.core.somaxconn`, read when binding.
    pub listen_backlog: Option<u32>,
    /// Allow an empty login and password.
    pub allow_anonymous: bool,
    /// Unix-socket clients skip the password check and get full access.
    pub trust_unix_socket: bool,
    /// Failed logins per address and minute that start a refusal (0 = off).
    pub max_login_failures: u32,
    /// bcrypt threads; 0 = one per core less one (at least 1, at most 4).
    pub auth_workers: usize,
    /// Bytes of plain-auth UDP datagrams (with their bookkeeping) waiting
    /// for password checks, all checks together.
    pub udp_pending_bytes: usize,
    /// The same, for one (login, password) check.
    pub udp_pending_bytes_per_check: usize,
    /// AES-GCM nonces remembered per UDP key: a replay within this many
    /// datagrams of the key is dropped.
    pub udp_replay_window: usize,
    /// Auth files.
    pub auth: AuthFiles,
    /// Written after binding, removed on exit.
    pub pid_file: Option<PathBuf>,
    /// `cluster.yml`: nodes to replicate to.
    pub cluster_file: Option<PathBuf>,
    /// Bound of all nodes' replication queues together, in bytes.
    pub cluster_queue_total: usize,
    /// Warn when a delivery takes longer than this (µs; 0 = off).
    pub latency_warn_us: u32,
    /// After a turn that read a request, poll without sleeping up to this
    /// long before sleeping, adaptively (µs; 0 = off, at most
    /// [`MAX_BUSY_POLL_US`], default [`DEFAULT_BUSY_POLL_US`]).
    pub busy_poll_us: u32,
    /// Reference keys accepted for compatibility that this build does not use.
    pub ignored: Vec<String>,
    /// MQTT listeners and limits (`None`: no `mqtt` section, no listener).
    pub mqtt: Option<MqttConfig>,
    /// Bridges to MQTT brokers (`bridges:`), in file order.
    pub bridges: Vec<BridgeConfig>,
}

/// Default limits and sizes (the reference distribution config's values).
const DEFAULT_TIMEOUT_SECS: f64 = 5.0;
const DEFAULT_DATA_QUEUE: usize = 1024;
const DEFAULT_DATA_QUEUE_BYTES: usize = 16 * 1024 * 1024;
const DEFAULT_MAX_QUEUED_BYTES: usize = 256 * 1024 * 1024;
const DEFAULT_MAX_LOGIN_FAILURES: u32 = 10;
const DEFAULT_MAX_CLIENTS: usize = 10_000;
const DEFAULT_MAX_SUBSCRIPTIONS_PER_CLIENT: usize = 10_000;
const DEFAULT_MAX_SUBSCRIPTIONS: usize = 250_000;
/// `server.busy_poll_us` at most: a millisecond of spinning is already far
/// past any request's round trip.
pub const MAX_BUSY_POLL_US: u32 = 1000;
/// `server.busy_poll_us` by default: long enough for a Python client's
/// turn-around between a reply and its next request. The spin adapts (none
/// at idle, for a trickle of requests or a paced publisher), so it is on
/// by default: BENCHMARKS.md, "Adaptive busy poll".
pub const DEFAULT_BUSY_POLL_US: u32 = 100;
const DEFAULT_MAX_PARTIAL_BYTES: usize = 64 * 1024 * 1024;
const DEFAULT_MAX_HANDSHAKES_PER_IP: usize = 64;
const DEFAULT_MAX_TLS_HANDSHAKES: usize = 64;
const DEFAULT_UDP_FRAME_SIZE: u16 = 4096;
/// Header room in a queued frame beyond `max_pub_size`.
const FRAME_OVERHEAD: usize = 16;

impl Config {
    /// The embedded default: TCP and UDP on 127.0.0.1:2873, stats on
    /// 127.0.0.1:8880, anonymous pub/sub to everything and stats for local
    /// clients only (the listeners are loopback), reference limits.
    pub fn embedded_default() -> Self {
        Self {
            source: None,
            bind: vec![BindAddr::Tcp("127.0.0.1:2873".into())],
            bind_udp: vec!["127.0.0.1:2873".into()],
            udp_frame_size: DEFAULT_UDP_FRAME_SIZE,
            bind_stats: Some("127.0.0.1:8880".into()),
            allow_no_tls: true,
            timeout: Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS),
            limits: Limits::default(),
            data_queue: DEFAULT_DATA_QUEUE,
            data_queue_bytes: DEFAULT_DATA_QUEUE_BYTES,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            max_subscriptions_per_client: DEFAULT_MAX_SUBSCRIPTIONS_PER_CLIENT,
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            max_partial_bytes: DEFAULT_MAX_PARTIAL_BYTES,
            max_clients: DEFAULT_MAX_CLIENTS,
            max_clients_per_user: 0,
            max_clients_per_ip: 0,
            max_handshakes_per_ip: DEFAULT_MAX_HANDSHAKES_PER_IP,
            max_tls_handshakes: DEFAULT_MAX_TLS_HANDSHAKES,
            listen_backlog: None,
            allow_anonymous: true,
            trust_unix_socket: false,
            max_login_failures: DEFAULT_MAX_LOGIN_FAILURES,
            auth_workers: 0,
            udp_pending_bytes: work::DEFAULT_UDP_PENDING_BYTES,
            udp_pending_bytes_per_check: work::DEFAULT_UDP_PENDING_BYTES_PER_CHECK,
            udp_replay_window: work::DEFAULT_UDP_REPLAY_WINDOW,
            auth: AuthFiles {
                tls: None,
                acl: AclSource::AnonymousFullAccess,
                password_file: None,
                key_file: None,
            },
            pid_file: None,
            cluster_file: None,
            cluster_queue_total: DEFAULT_CLUSTER_QUEUE_TOTAL,
            latency_warn_us: 0,
            busy_poll_us: DEFAULT_BUSY_POLL_US,
            ignored: Vec::new(),
            mqtt: Some(MqttConfig::default_with(
                vec![BindAddr::Tcp("127.0.0.1:1883".into())],
                Limits::default().max_pub_size,
            )),
            bridges: Vec::new(),
        }
    }

    /// Loads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, format!("cannot read: {e}")))?;
        Self::parse(&text, path)
    }

    /// Parses config text as if it were the file `path` (relative paths in
    /// it are taken from `path`'s folder).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let file: FileConfig =
            serde_yaml::from_str(text).map_err(|e| ConfigError::yaml(path, &e))?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { dir.join(p) };
        let err = |msg: String| ConfigError::new(path, msg);

        let FileConfig {
            server,
            proto,
            auth,
            cluster,
            mqtt,
            bridges,
        } = file;
        let mut ignored = Vec::new();
        if let Some(w) = server.workers.filter(|&w| w != 1) {
            ignored.push(format!(
                "server.workers: {w} (psrtd runs one event loop thread)"
            ));
        }
        if server.license.is_some() {
            ignored.push("server.license (cluster licensing is not used)".into());
        }
        if proto.fips.unwrap_or(false) {
            ignored.push("proto.fips (no OpenSSL in this build)".into());
        }

        let defaults = Self::embedded_default();
        let timeout_secs = proto.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS);
        if !(timeout_secs.is_finite() && (0.1..=3600.0).contains(&timeout_secs)) {
            return Err(err(format!(
                "proto.timeout: {timeout_secs} is out of range (0.1 to 3600 seconds)"
            )));
        }
        let limits = Limits {
            max_pub_size: server.max_pub_size.unwrap_or(defaults.limits.max_pub_size),
            max_topic_length: server
                .max_topic_length
                .unwrap_or(defaults.limits.max_topic_length),
            max_topic_depth: server
                .max_topic_depth
                .unwrap_or(defaults.limits.max_topic_depth),
        };
        if limits.max_pub_size < 2 || limits.max_topic_length < 1 {
            return Err(err(
                "server.max_pub_size must be at least 2 and server.max_topic_length at least 1"
                    .into(),
            ));
        }
        let data_queue = server.data_queue.unwrap_or(DEFAULT_DATA_QUEUE);
        if data_queue == 0 {
            return Err(err("server.data_queue must be at least 1".into()));
        }
        let min_queue_bytes = limits.max_pub_size as usize + FRAME_OVERHEAD;
        let data_queue_bytes = match server.data_queue_bytes {
            Some(b) if b < min_queue_bytes => {
                return Err(err(format!(
                    "server.data_queue_bytes: {b} cannot hold one message of max_pub_size ({}); use at least {min_queue_bytes}",
                    limits.max_pub_size
                )));
            }
            Some(b) => b,
            None => DEFAULT_DATA_QUEUE_BYTES.max(min_queue_bytes),
        };
        let max_queued_bytes = server
            .max_queued_bytes
            .unwrap_or_else(|| DEFAULT_MAX_QUEUED_BYTES.max(data_queue_bytes));
        if max_queued_bytes != 0 && max_queued_bytes < data_queue_bytes {
            return Err(err(format!(
                "server.max_queued_bytes: {max_queued_bytes} is below data_queue_bytes ({data_queue_bytes})"
            )));
        }

        let work = WorkLimits::parse(
            server.auth_workers,
            server.udp_pending_bytes,
            server.udp_pending_bytes_per_check,
            server.udp_replay_window,
        )
        .map_err(err)?;
        if let Some(b) = server.listen_backlog {
            if b == 0 || i32::try_from(b).is_err() {
                return Err(err(format!(
                    "server.listen_backlog: {b} is out of range (1 to {})",
                    i32::MAX
                )));
            }
        }

        let bind_addrs = |key: &str, entries: Vec<String>| {
            let mut out = Vec::new();
            for entry in entries {
                if entry.ends_with(".sock") || entry.ends_with(".socket") {
                    out.push(BindAddr::Unix(resolve(PathBuf::from(entry))));
                } else if is_host_port(&entry) {
                    out.push(BindAddr::Tcp(entry));
                } else {
                    return Err(format!(
                        "{key}: {entry:?} is neither host:port nor a Unix socket path ending in .sock/.socket"
                    ));
                }
            }
            Ok(out)
        };
        let bind = bind_addrs("proto.bind", proto.bind.into_vec()).map_err(err)?;
        let bind_udp = proto.bind_udp.into_vec();
        for entry in &bind_udp {
            if !is_host_port(entry) {
                return Err(err(format!("proto.bind_udp: {entry:?} is not host:port")));
            }
        }
        let udp_frame_size = proto.udp_frame_size.unwrap_or(DEFAULT_UDP_FRAME_SIZE);
        if udp_frame_size < 64 {
            return Err(err(format!(
                "proto.udp_frame_size: {udp_frame_size} is too small (at least 64)"
            )));
        }
        if let Some(stats) = &server.bind_stats {
            stats.parse::<SocketAddr>().map_err(|_| {
                err(format!(
                    "server.bind_stats: {stats:?} is not an IP:port address"
                ))
            })?;
        }
        let tls = match (proto.tls_cert, proto.tls_key) {
            (Some(cert), Some(key)) => {
                if proto.tls_pkcs12.is_some() {
                    ignored.push("proto.tls_pkcs12 (tls_cert and tls_key are used)".into());
                }
                Some(TlsFiles {
                    cert: resolve(cert),
                    key: resolve(key),
                })
            }
            (Some(_), None) => {
                return Err(err(
                    "proto.tls_cert is set but proto.tls_key is missing".into()
                ));
            }
            (None, Some(_)) => {
                return Err(err(
                    "proto.tls_key is set but proto.tls_cert is missing".into()
                ));
            }
            (None, None) if proto.tls_pkcs12.is_some() => {
                return Err(err(
                    "proto.tls_pkcs12: PKCS#12 identities are not supported; convert it to PEM \
                     (openssl pkcs12 -in FILE -nokeys -out cert.pem; openssl pkcs12 -in FILE \
                     -nocerts -nodes -out key.pem) and set tls_cert and tls_key"
                        .into(),
                ));
            }
            (None, None) => None,
        };
        let allow_no_tls = proto.allow_no_tls.unwrap_or(true);
        if !allow_no_tls && tls.is_none() {
            return Err(err(
                "proto.allow_no_tls is false but no TLS identity is configured: no client could connect"
                    .into(),
            ));
        }
        let mqtt = match mqtt {
            Some(section) => Some(
                MqttConfig::from_section(
                    section,
                    bind_addrs,
                    tls.is_some(),
                    limits.max_pub_size,
                    data_queue_bytes,
                )
                .map_err(err)?,
            ),
            None => None,
        };
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "host".into());
        let bridges = bridge::validate(bridges.unwrap_or_default(), resolve, &host).map_err(err)?;
        let busy_poll_us = server.busy_poll_us.unwrap_or(DEFAULT_BUSY_POLL_US);
        if busy_poll_us > MAX_BUSY_POLL_US {
            return Err(err(format!(
                "server.busy_poll_us: {busy_poll_us} is too long (0 = off, at most {MAX_BUSY_POLL_US} µs)"
            )));
        }
        let acl = auth
            .acl
            .map(|p| AclSource::File(resolve(p)))
            .ok_or_else(|| err("auth.acl is required (the ACL file)".into()))?;

        Ok(Self {
            source: Some(path.to_path_buf()),
            bind,
            bind_udp,
            udp_frame_size,
            bind_stats: server.bind_stats,
            allow_no_tls,
            timeout: Duration::from_secs_f64(timeout_secs),
            limits,
            data_queue,
            data_queue_bytes,
            max_queued_bytes,
            max_subscriptions_per_client: server
                .max_subscriptions_per_client
                .unwrap_or(DEFAULT_MAX_SUBSCRIPTIONS_PER_CLIENT),
            max_subscriptions: server
                .max_subscriptions
                .unwrap_or(DEFAULT_MAX_SUBSCRIPTIONS),
            max_partial_bytes: server
                .max_partial_bytes
                .unwrap_or(DEFAULT_MAX_PARTIAL_BYTES),
            max_clients: server.max_clients.unwrap_or(DEFAULT_MAX_CLIENTS),
            max_clients_per_user: server.max_clients_per_user.unwrap_or(0),
            max_clients_per_ip: server.max_clients_per_ip.unwrap_or(0),
            max_handshakes_per_ip: server
                .max_handshakes_per_ip
                .unwrap_or(DEFAULT_MAX_HANDSHAKES_PER_IP),
            max_tls_handshakes: server
                .max_tls_handshakes
                .unwrap_or(DEFAULT_MAX_TLS_HANDSHAKES),
            listen_backlog: server.listen_backlog,
            allow_anonymous: auth.allow_anonymous.unwrap_or(false),
            trust_unix_socket: auth.trust_unix_socket.unwrap_or(false),
            max_login_failures: auth
                .max_login_failures
                .unwrap_or(DEFAULT_MAX_LOGIN_FAILURES),
            auth_workers: work.auth_workers,
            udp_pending_bytes: work.udp_pending_bytes,
            udp_pending_bytes_per_check: work.udp_pending_bytes_per_check,
            udp_replay_window: work.udp_replay_window,
            auth: AuthFiles {
                tls,
                acl,
                password_file: auth.password_file.map(resolve),
                key_file: auth.key_file.map(resolve),
            },
            pid_file: server.pid_file,
            cluster_queue_total: cluster
                .as_ref()
                .and_then(|c| c.queue_bytes_total)
                .unwrap_or(DEFAULT_CLUSTER_QUEUE_TOTAL),
            cluster_file: cluster.and_then(|c| c.config).map(resolve),
            latency_warn_us: server.latency_warn.unwrap_or(0),
            busy_poll_us,
            ignored,
            mqtt,
            bridges,
        })
    }

    /// The first default path that exists, if any.
    pub fn find_default_file() -> Option<PathBuf> {
        DEFAULT_CONFIG_PATHS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    }
}

#[cfg(test)]
mod tests;
