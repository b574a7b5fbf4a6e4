//! The phase of a connection (what it waits for), the per-phase data, and
//! why a connection is closed.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use psrt_protocol::{DecodeError, Token};

use super::ConnId;
use crate::server::auth::AclEntry;

/// Where a connection is in its life. Only the phase handlers assign it.
#[derive(Debug)]
pub enum Phase {
    /// Waiting for `EE AA|AB COMM`.
    Greeting,
    /// TLS handshake after a `01` greeting; the greeting reply follows it.
    TlsHandshake(psrt_protocol::StreamKind),
    /// Control socket: waiting for the login frame.
    Login,
    /// Control socket: bcrypt is running in the auth worker; input paused.
    Authenticating,
    /// Control socket of a logged-in client: requests → replies.
    Control(Box<Session>),
    /// Data socket: waiting for token + timeout byte.
    DataHello,
    /// Data socket bound to a session: the server only writes.
    Data(DataLink),
    /// Stats endpoint: waiting for a complete request head.
    HttpRequest,
    /// Stats endpoint: Basic-auth password being verified by the worker.
    HttpAuthenticating(crate::server::http::Route),
    /// An outgoing replication link to a cluster node (`link.rs`).
    Link(Link),
    /// Flushing what is queued, then closing.
    Closing(CloseReason),
}

/// A replication link: which node, and what it waits for.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// Index in the cluster's node list.
    pub node: usize,
    /// The step of the exchange.
    pub step: LinkStep,
}

/// Steps of a replication link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStep {
    /// Non-blocking connect in progress.
    Connecting,
    /// Greeting sent (and TLS started if configured); waiting for the reply.
    Greeting,
    /// Login sent; waiting for the token.
    Login,
    /// Ready; nothing in flight.
    Idle,
    /// PUBLISH_REPL topic sent; waiting for 02 / E0.
    AwaitTopic,
    /// Body sent; waiting for 01.
    AwaitBody,
    /// Keep-alive NOP sent; waiting for 01.
    AwaitNop,
}

impl Phase {
    /// Short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Greeting => "greeting",
            Self::TlsHandshake(_) => "TLS handshake",
            Self::Login => "login",
            Self::Authenticating => "authenticating",
            Self::Control(_) => "control",
            Self::DataHello => "data hello",
            Self::Data(_) => "data",
            Self::HttpRequest | Self::HttpAuthenticating(_) => "http",
            Self::Link(_) => "replication link",
            Self::Closing(_) => "closing",
        }
    }
}

/// A logged-in client, owned by its control connection.
#[derive(Debug)]
pub struct Session {
    /// Login name; `_` for anonymous.
    pub login: Box<str>,
    /// Permissions; replaced when a reload changes them.
    pub acl: Arc<AclEntry>,
    /// The password hash the login was verified against (None: anonymous or
    /// trusted Unix socket); a reload that changes it ends the session.
    pub hash: Option<Box<str>>,
    /// Trusted Unix-socket session: full access, not subject to the ACL.
    pub trusted: bool,
    /// Links the data socket.
    pub token: Token,
    /// The data socket, once bound.
    pub data: Option<ConnId>,
    /// Normalised masks this client subscribes to.
    pub masks: std::collections::BTreeSet<Box<str>>,
    /// Sequence number of the last message delivered (once per client).
    pub delivered_seq: u64,
    /// PUBLISH_REPL topic waiting for its body (after `OK_WAITING`).
    pub repl_topic: Option<Box<str>>,
}

/// A data socket's link to its session.
#[derive(Debug, Clone, Copy)]
pub struct DataLink {
    /// The control connection that owns the session.
    pub owner: ConnId,
    /// Beacon interval: half the client's timeout, clamped.
    pub beacon: Duration,
}

/// Why a connection ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed its end.
    PeerClosed,
    /// A socket error.
    Io(std::io::ErrorKind),
    /// Bytes that are not a PSRT greeting.
    BadGreeting(DecodeError),
    /// TLS requested; this server has no TLS identity.
    TlsUnavailable,
    /// The TLS handshake or a TLS record failed.
    Tls(String),
    /// A plain connection while `allow_no_tls` is false.
    PlainForbidden,
    /// A frame that breaks the protocol.
    Protocol(DecodeError),
    /// A published topic with `+` or `#`.
    WildcardPublish,
    /// Login refused (the reason is for the log only; the client sees a close).
    LoginFailed(String),
    /// A phase deadline passed.
    Timeout(&'static str),
    /// The data socket's queue hit its message or byte limit.
    SlowConsumer {
        /// Bytes queued.
        bytes: usize,
        /// Messages queued.
        messages: usize,
    },
    /// The peer stopped reading with output pending.
    WriteStall,
    /// BYE.
    Bye,
    /// The control socket of this data socket ended.
    SessionEnded,
    /// A newer data socket with the same token replaced this one.
    Replaced,
    /// A data hello with a token of no live session.
    UnknownToken,
    /// A connection limit.
    Limit(&'static str),
    /// A reload removed this login's ACL entry or changed its password.
    Revoked(&'static str),
    /// PUBLISH_REPL from a non-replicator is answered FE; this is for other
    /// unsupported requests.
    Unsupported(&'static str),
    /// The server is stopping.
    Shutdown,
    /// A stats response was sent.
    HttpDone,
    /// A replication link failed.
    Link(String),
}

impl CloseReason {
    /// Whether what is already queued (replies, pending messages) is still
    /// written before the close, rather than dropped.
    pub fn keeps_output(&self) -> bool {
        !matches!(
            self,
            Self::PeerClosed
                | Self::Io(_)
                | Self::Tls(_)
                | Self::SlowConsumer { .. }
                | Self::WriteStall
                | Self::Shutdown
        )
    }

    /// Whether this is routine (logged at debug) rather than a problem
    /// (logged at warn).
    pub fn is_routine(&self) -> bool {
        matches!(
            self,
            Self::PeerClosed
                | Self::Bye
                | Self::SessionEnded
                | Self::Replaced
                | Self::Shutdown
                | Self::HttpDone
        )
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PeerClosed => f.write_str("closed by peer"),
            Self::Io(kind) => write!(f, "socket error: {kind}"),
            Self::BadGreeting(e) => write!(f, "invalid greeting: {e}"),
            Self::TlsUnavailable => f.write_str("TLS requested but no TLS identity is configured"),
            Self::Tls(e) => write!(f, "TLS error: {e}"),
            Self::PlainForbidden => f.write_str("plain connection refused (allow_no_tls: false)"),
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::WildcardPublish => f.write_str("publish to a topic with '+' or '#'"),
            Self::LoginFailed(why) => write!(f, "login failed: {why}"),
            Self::Timeout(phase) => write!(f, "timeout in {phase}"),
            Self::SlowConsumer { bytes, messages } => write!(
                f,
                "slow consumer: data queue full ({messages} messages, {bytes} bytes), dropping data socket"
            ),
            Self::WriteStall => {
                f.write_str("peer stopped reading (write stalled past the timeout)")
            }
            Self::Bye => f.write_str("bye"),
            Self::SessionEnded => f.write_str("control session ended"),
            Self::Replaced => f.write_str("replaced by a new data socket with the same token"),
            Self::UnknownToken => f.write_str("data socket with an unknown token"),
            Self::Limit(which) => write!(f, "connection limit reached: {which}"),
            Self::Revoked(why) => write!(f, "access revoked by reload: {why}"),
            Self::Unsupported(what) => write!(f, "unsupported request: {what}"),
            Self::Shutdown => f.write_str("server shutting down"),
            Self::HttpDone => f.write_str("response sent"),
            Self::Link(why) => write!(f, "replication link: {why}"),
        }
    }
}
