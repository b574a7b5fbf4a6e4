//! Why a connection ends, and what a close does with queued output.

use std::fmt;

use psrt_protocol::DecodeError;

/// Why a connection ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CloseReason {
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
    /// Dropped to keep all data queues together under `max_queued_bytes`
    /// (the largest queues go first).
    QueueCap {
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
    /// A newer MQTT connection with the same client id took the session.
    TakenOver,
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
    /// A bridge's broker sent what it must not, refused us, or fell silent.
    Bridge(String),
}

impl CloseReason {
    /// Why a connection ends when reading from it failed.
    pub(crate) fn read_error(e: &std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::InvalidData => Self::Tls(e.to_string()),
            std::io::ErrorKind::OutOfMemory => {
                Self::Limit("max_partial_bytes (all large frames being received)")
            }
            kind => Self::Io(kind),
        }
    }

    /// Whether what is already queued (replies, pending messages) is still
    /// written before the close, rather than dropped.
    pub(crate) fn keeps_output(&self) -> bool {
        !matches!(
            self,
            Self::PeerClosed
                | Self::Io(_)
                | Self::Tls(_)
                | Self::SlowConsumer { .. }
                | Self::QueueCap { .. }
                | Self::WriteStall
                | Self::Shutdown
        )
    }

    /// Whether this is routine (logged at debug) rather than a problem
    /// (logged at warn).
    pub(crate) fn is_routine(&self) -> bool {
        matches!(
            self,
            Self::PeerClosed
                | Self::Bye
                | Self::SessionEnded
                | Self::Replaced
                | Self::TakenOver
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
            Self::QueueCap { bytes, messages } => write!(
                f,
                "all data queues together exceed max_queued_bytes: dropping this one, the largest ({messages} messages, {bytes} bytes)"
            ),
            Self::WriteStall => {
                f.write_str("peer stopped reading (write stalled past the timeout)")
            }
            Self::Bye => f.write_str("bye"),
            Self::SessionEnded => f.write_str("control session ended"),
            Self::Replaced => f.write_str("replaced by a new data socket with the same token"),
            Self::TakenOver => {
                f.write_str("taken over by a new connection with the same MQTT client id")
            }
            Self::UnknownToken => f.write_str("data socket with an unknown token"),
            Self::Limit(which) => write!(f, "connection limit reached: {which}"),
            Self::Revoked(why) => write!(f, "access revoked by reload: {why}"),
            Self::Unsupported(what) => write!(f, "unsupported request: {what}"),
            Self::Shutdown => f.write_str("server shutting down"),
            Self::HttpDone => f.write_str("response sent"),
            Self::Link(why) => write!(f, "replication link: {why}"),
            Self::Bridge(why) => f.write_str(why),
        }
    }
}
