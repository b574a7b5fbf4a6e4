//! Client settings: where to connect, who to log in as, how long to wait, and
//! whether to open a data socket. A builder in the style of the reference
//! Rust client (`Config::new(path).set_auth(..).set_timeout(..).build()`).
//!
//! TLS: [`Config::set_tls`] turns it on for both sockets; the server
//! certificate is verified against the CA given with [`Config::set_tls_ca`]
//! (PEM content, as in the reference client) or [`Config::set_tls_ca_file`]
//! (a PEM file read at connect time). There are no built-in roots, so one of
//! them is required.
//!
//! Failover: a path may list several addresses separated by commas
//! ([`Config::addresses`]); [`Config::set_randomize`] shuffles them at each
//! connect, and [`Config::set_reconnect`] (on by default with several
//! addresses) makes the client move to another node when its node goes
//! away, within [`Config::set_reconnect_timeout`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::protocol::Limits;

/// Default timeout for connects, replies and the data-socket liveness check.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default bound of the incoming message queue, in messages.
pub const DEFAULT_QUEUE_SIZE: usize = 8192;

/// Default largest message frame accepted on the data socket (topic + NUL +
/// payload). Well above the reference server's default `max_pub_size`.
pub const DEFAULT_MAX_MESSAGE_BYTES: u32 = 64 * 1024 * 1024;

/// Default bound of one reconnect episode (see [`Config::set_reconnect_timeout`]).
pub const DEFAULT_RECONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The shortest timeout a client uses; smaller values are raised to it.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// How a [`Client`](super::Client) connects.
#[derive(Clone)]
pub struct Config {
    path: String,
    user: String,
    password: String,
    timeout: Duration,
    socket_wait_timeout: Duration,
    queue_size: usize,
    need_data_stream: bool,
    max_message_bytes: u32,
    tls: bool,
    tls_ca: Option<String>,
    tls_ca_file: Option<PathBuf>,
    randomize: bool,
    /// `None`: on when the path lists several addresses.
    reconnect: Option<bool>,
    reconnect_timeout: Duration,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the password.
        f.debug_struct("Config")
            .field("path", &self.path)
            .field("user", &self.user)
            .field("timeout", &self.timeout)
            .field("socket_wait_timeout", &self.socket_wait_timeout)
            .field("queue_size", &self.queue_size)
            .field("need_data_stream", &self.need_data_stream)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("tls", &self.tls)
            .field("tls_ca", &self.tls_ca.as_ref().map(|pem| pem.len()))
            .field("tls_ca_file", &self.tls_ca_file)
            .field("randomize", &self.randomize)
            .field("reconnect", &self.reconnect())
            .field("reconnect_timeout", &self.reconnect_timeout)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A config for `path`: `host:port` for TCP, or the path of a Unix
    /// socket (anything ending in `.sock` or `.socket`). Defaults: anonymous,
    /// timeout 5 s, queue of 8192 messages, with a data stream.
    pub fn new(path: &str) -> Self {
        Self {
            path: path.to_owned(),
            user: String::new(),
            password: String::new(),
            timeout: DEFAULT_TIMEOUT,
            socket_wait_timeout: DEFAULT_TIMEOUT,
            queue_size: DEFAULT_QUEUE_SIZE,
            need_data_stream: true,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            tls: false,
            tls_ca: None,
            tls_ca_file: None,
            randomize: false,
            reconnect: None,
            reconnect_timeout: DEFAULT_RECONNECT_TIMEOUT,
        }
    }

    /// Logs in as `user` with `password`. Both empty means anonymous.
    #[must_use]
    pub fn set_auth(mut self, user: &str, password: &str) -> Self {
        user.clone_into(&mut self.user);
        password.clone_into(&mut self.password);
        self
    }

    /// Timeout for connecting, for each reply, and for silence on the data
    /// socket; the keep-alive NOP goes out every half of it. Values below
    /// 1 ms are raised to 1 ms.
    #[must_use]
    pub fn set_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(MIN_TIMEOUT);
        self
    }

    /// How long to wait for a Unix socket file to appear (polled every
    /// 100 ms). Zero: do not wait.
    #[must_use]
    pub fn set_socket_wait_timeout(mut self, timeout: Duration) -> Self {
        self.socket_wait_timeout = timeout;
        self
    }

    /// Bound of the incoming message queue, in messages (at least 1). When
    /// it is full the data reader stops reading, and the server drops the
    /// data socket once its own queue for this client is full.
    #[must_use]
    pub fn set_queue_size(mut self, queue_size: usize) -> Self {
        self.queue_size = queue_size.max(1);
        self
    }

    /// Largest data frame accepted (topic + NUL + payload bytes); a larger
    /// one is a protocol error that closes the client.
    #[must_use]
    pub fn set_max_message_bytes(mut self, max_message_bytes: u32) -> Self {
        self.max_message_bytes = max_message_bytes;
        self
    }

    /// Do not open a data socket: the client can publish and subscribe but
    /// receives no messages (e.g. a pure publisher).
    #[must_use]
    pub fn disable_data_stream(mut self) -> Self {
        self.need_data_stream = false;
        self
    }

    /// TLS on both sockets (comm byte `01`, then a TLS handshake). The
    /// server certificate must be signed by the CA of [`Config::set_tls_ca`]
    /// or [`Config::set_tls_ca_file`] and be valid for the host part of the
    /// path (a DNS name or an IP address). TLS on a Unix socket path is an
    /// error at connect time, not silently plain.
    #[must_use]
    pub fn set_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// The CA certificate(s) that sign the server certificate, as PEM
    /// **content** (not a path; see [`Config::set_tls_ca_file`]). Replaces
    /// a CA file set before. Only used with [`Config::set_tls`].
    #[must_use]
    pub fn set_tls_ca(mut self, pem: Option<String>) -> Self {
        self.tls_ca = pem;
        self.tls_ca_file = None;
        self
    }

    /// Like [`Config::set_tls_ca`], but the PEM is read from `path` at each
    /// connect (an unreadable file is an [`Error::Tls`](super::Error::Tls)
    /// then). Replaces PEM content set before.
    #[must_use]
    pub fn set_tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca_file = Some(path.into());
        self.tls_ca = None;
        self
    }

    /// Tries the addresses of the path in a random order (drawn at every
    /// connect and reconnect) instead of as listed, so that clients spread
    /// over the nodes of a cluster (psrt-py's `connect_cluster(paths,
    /// randomize=True)`). Default: off.
    #[must_use]
    pub fn set_randomize(mut self, randomize: bool) -> Self {
        self.randomize = randomize;
        self
    }

    /// Whether the client reconnects by itself when its server goes away:
    /// to the other addresses first (the lost one last), resubscribing to
    /// every topic it is subscribed to, for at most
    /// [`Config::set_reconnect_timeout`]. Default: on when the path lists
    /// several addresses, off with one.
    #[must_use]
    pub fn set_reconnect(mut self, reconnect: bool) -> Self {
        self.reconnect = Some(reconnect);
        self
    }

    /// How long one reconnect episode may take before the client gives up
    /// ([`Error::Unavailable`](super::Error::Unavailable)): rounds over all
    /// addresses, 100 ms apart at first, doubling up to 2 s. Default 30 s.
    #[must_use]
    pub fn set_reconnect_timeout(mut self, timeout: Duration) -> Self {
        self.reconnect_timeout = timeout;
        self
    }

    /// Ends the builder chain (kept for the reference client's API shape).
    #[must_use]
    pub fn build(self) -> Self {
        self
    }

    /// `host:port` or the Unix socket path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The addresses of the path: split at commas, trimmed, empty pieces
    /// dropped (`"a:1, b:2,"` → `["a:1", "b:2"]`).
    pub fn addresses(&self) -> Vec<&str> {
        self.path
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect()
    }

    /// Whether the addresses are tried in a random order.
    pub fn randomize(&self) -> bool {
        self.randomize
    }

    /// Whether the client reconnects by itself (see [`Config::set_reconnect`]).
    pub fn reconnect(&self) -> bool {
        self.reconnect.unwrap_or_else(|| self.addresses().len() > 1)
    }

    /// The bound of one reconnect episode.
    pub fn reconnect_timeout(&self) -> Duration {
        self.reconnect_timeout
    }

    /// Replaces the path.
    pub fn update_path(&mut self, path: &str) {
        path.clone_into(&mut self.path);
    }

    /// The login; empty for anonymous.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The password; empty for anonymous.
    pub(crate) fn password(&self) -> &str {
        &self.password
    }

    /// The timeout (see [`Config::set_timeout`]).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The Unix socket wait timeout.
    pub fn socket_wait_timeout(&self) -> Duration {
        self.socket_wait_timeout
    }

    /// The incoming message queue bound.
    pub fn queue_size(&self) -> usize {
        self.queue_size
    }

    /// Whether a data socket is opened.
    pub fn need_data_stream(&self) -> bool {
        self.need_data_stream
    }

    /// The largest data frame accepted.
    pub fn max_message_bytes(&self) -> u32 {
        self.max_message_bytes
    }

    /// Whether TLS is on.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The CA PEM content given with [`Config::set_tls_ca`].
    pub fn tls_ca(&self) -> Option<&str> {
        self.tls_ca.as_deref()
    }

    /// Replaces the CA PEM content (and drops a CA file).
    pub fn update_tls_ca(&mut self, pem: String) {
        self.tls_ca = Some(pem);
        self.tls_ca_file = None;
    }

    /// The CA file given with [`Config::set_tls_ca_file`].
    pub fn tls_ca_file(&self) -> Option<&Path> {
        self.tls_ca_file.as_deref()
    }

    /// Whether [`Config::path`] names a Unix socket.
    pub fn is_unix_socket(&self) -> bool {
        is_unix_socket(&self.path)
    }

    /// The `TIMEOUT_SEC` byte of the data hello: whole seconds of the
    /// timeout, capped at 255 and at least 1 (0 would make the server send
    /// beacons in a tight loop).
    pub fn data_timeout_byte(&self) -> u8 {
        let secs = self.timeout.as_secs().clamp(1, u64::from(u8::MAX));
        u8::try_from(secs).unwrap_or(u8::MAX)
    }

    /// Decoder limits for the data socket.
    pub(crate) fn data_limits(&self) -> Limits {
        Limits {
            max_pub_size: self.max_message_bytes,
            ..Limits::default()
        }
    }
}

/// Whether `path` names a Unix socket: it ends in `.sock` or `.socket`.
pub fn is_unix_socket(path: &str) -> bool {
    Path::new(path)
        .extension()
        .is_some_and(|ext| ext == "sock" || ext == "socket")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_builder() {
        let c = Config::new("localhost:2873");
        assert_eq!(c.timeout(), Duration::from_secs(5));
        assert!(c.need_data_stream());
        assert_eq!(c.user(), "");
        assert_eq!(c.queue_size(), DEFAULT_QUEUE_SIZE);
        let c = c
            .set_auth("u", "secret")
            .set_timeout(Duration::ZERO)
            .set_queue_size(0)
            .disable_data_stream()
            .build();
        assert_eq!(c.timeout(), MIN_TIMEOUT);
        assert_eq!(c.queue_size(), 1);
        assert!(!c.need_data_stream());
        assert_eq!((c.user(), c.password()), ("u", "secret"));
        assert!(!format!("{c:?}").contains("secret"));
        assert!(!c.tls() && c.tls_ca().is_none() && c.tls_ca_file().is_none());
    }

    #[test]
    fn tls_settings() {
        let c = Config::new("h:1")
            .set_tls(true)
            .set_tls_ca(Some("PEM".into()));
        assert!(c.tls());
        assert_eq!(c.tls_ca(), Some("PEM"));
        let mut c = c.set_tls_ca_file("/etc/ca.pem");
        assert_eq!(
            (c.tls_ca(), c.tls_ca_file()),
            (None, Some(Path::new("/etc/ca.pem")))
        );
        c.update_tls_ca("PEM2".into());
        assert_eq!((c.tls_ca(), c.tls_ca_file()), (Some("PEM2"), None));
        assert!(!format!("{c:?}").contains("PEM2"));
    }

    #[test]
    fn timeout_byte() {
        let byte = |ms| {
            Config::new("h:1")
                .set_timeout(Duration::from_millis(ms))
                .data_timeout_byte()
        };
        assert_eq!(byte(300), 1);
        assert_eq!(byte(5_000), 5);
        assert_eq!(byte(5_999), 5);
        assert_eq!(byte(255_000), 255);
        assert_eq!(byte(10_000_000), 255);
    }

    #[test]
    fn addresses_and_failover_settings() {
        let c = Config::new(" a:1, b:2,,c.sock ,");
        assert_eq!(c.addresses(), ["a:1", "b:2", "c.sock"]);
        assert!(c.reconnect(), "on by default with several addresses");
        assert!(!c.randomize());
        assert_eq!(c.reconnect_timeout(), DEFAULT_RECONNECT_TIMEOUT);
        let one = Config::new("localhost:2873");
        assert_eq!(one.addresses(), ["localhost:2873"]);
        assert!(!one.reconnect(), "off by default with one address");
        assert!(one.clone().set_reconnect(true).reconnect());
        let c = c
            .set_reconnect(false)
            .set_randomize(true)
            .set_reconnect_timeout(Duration::from_secs(3));
        assert!(!c.reconnect() && c.randomize());
        assert_eq!(c.reconnect_timeout(), Duration::from_secs(3));
        assert!(Config::new(" , ").addresses().is_empty());
    }

    #[test]
    fn unix_paths() {
        assert!(is_unix_socket("/run/psrtd.sock"));
        assert!(is_unix_socket("psrt.socket"));
        assert!(!is_unix_socket("localhost:2873"));
        assert!(!is_unix_socket("/tmp/sock"));
        assert!(Config::new("/tmp/x.sock").is_unix_socket());
    }
}
