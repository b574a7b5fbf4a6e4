//! PSRT phases and their data: what a control or data socket waits for,
//! the session a logged-in client owns, and a data socket's link to it.
//! The handlers that move between these phases are in this folder's other
//! files; `LIFECYCLE.md` draws the diagram.

use std::sync::Arc;
use std::time::{Duration, Instant};

use psrt_protocol::{StreamKind, Token};

use super::masks::Masks;
use crate::server::auth::acl::AclEntry;
use crate::server::conn::{Conn, ConnId, InputClock};

/// Control-socket replies queued before the server stops reading requests
/// from that client (it is not reading its replies).
pub(crate) const CONTROL_TX_PAUSE: usize = 64 * 1024;

/// A PSRT socket's phase.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Waiting for `EE AA|AB COMM`.
    Greeting,
    /// TLS handshake after a `01` greeting; the greeting reply follows it.
    TlsHandshake(StreamKind),
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
}

impl Phase {
    /// Short name for logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Greeting => "greeting",
            Self::TlsHandshake(_) => "TLS handshake",
            Self::Login => "login",
            Self::Authenticating => "authenticating",
            Self::Control(_) => "control",
            Self::DataHello => "data hello",
            Self::Data(_) => "data",
        }
    }

    /// Whether input is read now (`queued`: the connection's unwritten
    /// output).
    pub(crate) fn wants_input(&self, queued: usize) -> bool {
        match self {
            Self::Greeting | Self::TlsHandshake(_) | Self::Login | Self::DataHello => true,
            Self::Control(_) => queued < CONTROL_TX_PAUSE,
            Self::Authenticating | Self::Data(_) => false,
        }
    }

    /// This phase's deadline: handshake phases have a fixed one from their
    /// start (dripping bytes does not extend it); a control socket its idle
    /// or partial-frame deadline; a data socket its next beacon.
    pub(crate) fn due<P>(&self, conn: &Conn<P>, timeout: Duration) -> Option<Instant> {
        match self {
            Self::Greeting | Self::TlsHandshake(_) | Self::Login | Self::DataHello => {
                Some(conn.phase_since + timeout)
            }
            Self::Authenticating => None,
            Self::Control(s) => Some(s.clock.due(timeout, conn.rx.len())),
            // Pending output is its own keep-alive; a beacon queued behind it
            // would only push the write-stall deadline back.
            Self::Data(link) => conn.tx.is_empty().then(|| conn.last_write + link.beacon),
        }
    }
}

/// A logged-in client, owned by its control connection.
#[derive(Debug)]
pub(crate) struct Session {
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
    pub masks: Masks,
    /// Sequence number of the last message delivered (once per client).
    pub delivered_seq: u64,
    /// Replication state of a replicator's session (boxed: rare).
    pub repl: Option<Box<ReplIn>>,
    /// Request timing (idle and partial-frame deadlines).
    pub clock: InputClock,
    /// Messages written whole to this client's data sockets.
    pub sent: u64,
    /// Messages thrown away unwritten with its data sockets' queues (slow
    /// consumer, queue cap).
    pub dropped: u64,
}

/// What a session receiving replication keeps.
#[derive(Debug, Default)]
pub(crate) struct ReplIn {
    /// PUBLISH_REPL topic waiting for its body (after `OK_WAITING`).
    pub topic: Option<Box<str>>,
    /// The replicating node's id from REPL_HELLO (psrtd extension).
    pub origin: Option<u64>,
}

/// A data socket's link to its session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DataLink {
    /// The control connection that owns the session.
    pub owner: ConnId,
    /// Beacon interval: half the client's timeout, clamped.
    pub beacon: Duration,
}
