//! MQTT connection phases and their deadlines (`LIFECYCLE.md` draws them):
//! waiting for CONNECT, waiting for bcrypt, and connected to a session.

use std::sync::Arc;
use std::time::{Duration, Instant};

use psrt_protocol::mqtt::{Protocol, QoS};

use crate::server::auth::AclEntry;
use crate::server::conn::{Conn, InputClock};
use crate::server::psrt::state::CONTROL_TX_PAUSE;

/// A last will, owned (the CONNECT's bytes are gone once it is handled).
#[derive(Debug, Clone)]
pub(crate) struct OwnedWill {
    pub topic: Box<str>,
    pub message: Box<[u8]>,
    pub qos: QoS,
    pub retain: bool,
}

/// What a CONNECT asked for, kept while bcrypt runs.
#[derive(Debug)]
pub(crate) struct Pending {
    pub protocol: Protocol,
    pub client_id: Box<str>,
    pub clean: bool,
    pub keep_alive: u16,
    pub will: Option<OwnedWill>,
    pub login: Box<str>,
}

/// A connected client.
#[derive(Debug)]
pub(crate) struct Link {
    /// Its session's key in `Sessions`.
    pub session: usize,
    /// Its permissions (the will is published with them).
    pub acl: Arc<AclEntry>,
    /// Silence allowed: 1.5 × the client's keep-alive (`None`: off).
    pub silence: Option<Duration>,
    /// Input timing (keep-alive, partial packets).
    pub clock: InputClock,
    /// Published if the connection ends without DISCONNECT.
    pub will: Option<OwnedWill>,
}

/// An MQTT connection's phase.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Accepted on a TLS listener: the handshake runs (it counts against
    /// `server.max_tls_handshakes` until it ends); then `Connect`.
    TlsHandshake,
    /// Accepted: the first packet must be CONNECT, within `proto.timeout`.
    Connect,
    /// bcrypt runs in the worker; input paused.
    Authenticating(Box<Pending>),
    /// CONNACK sent: packets of a session.
    Connected(Box<Link>),
}

impl Phase {
    /// Short name for logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::TlsHandshake => "mqtt TLS handshake",
            Self::Connect => "mqtt connect",
            Self::Authenticating(_) => "mqtt authenticating",
            Self::Connected(_) => "mqtt",
        }
    }

    /// Whether input is read now (`queued`: unwritten output). A client
    /// that does not read what it is sent is not read from either.
    pub(crate) fn wants_input(&self, queued: usize) -> bool {
        match self {
            Self::TlsHandshake | Self::Connect => true,
            Self::Authenticating(_) => false,
            Self::Connected(_) => queued < CONTROL_TX_PAUSE,
        }
    }

    /// The deadline: CONNECT within the timeout of the accept; connected,
    /// 1.5 × keep-alive after the last input or write progress (a client
    /// taking what it is sent is alive, even while its own input waits),
    /// and a partial packet must keep arriving.
    pub(crate) fn due<P>(&self, conn: &Conn<P>, timeout: Duration) -> Option<Instant> {
        match self {
            Self::TlsHandshake | Self::Connect => Some(conn.phase_since + timeout),
            Self::Authenticating(_) => None,
            Self::Connected(link) => {
                let partial = link
                    .clock
                    .partial_since
                    .map(|_| link.clock.due(timeout, conn.rx.len()));
                let idle = link
                    .silence
                    .map(|s| link.clock.last_input.max(conn.last_write) + s);
                match (partial, idle) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }
}
