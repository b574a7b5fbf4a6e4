//! A small blocking PSRT client on std sockets, used by `psrt-cli` and the
//! tests.
//!
//! * [`Client`]: control socket (requests, one-byte replies) plus an
//!   optional data socket whose messages arrive on a bounded channel; a
//!   pinger thread keeps the session alive. Given several addresses it
//!   connects to the first that answers (optionally in random order) and
//!   fails over to another node when its node goes away, resubscribing
//!   (`failover.rs`; see [`Client::connect`]).
//! * [`UdpClient`]: UDP publishing, plain or AES-GCM sealed.
//! * [`Config`]: where and how to connect; [`Error`]: what went wrong.
//!
//! Every byte on the wire is encoded and decoded by [`crate::protocol`];
//! every read and write has a timeout. TLS (rustls, ring provider) is
//! turned on with [`Config::set_tls`] and needs a CA ([`Config::set_tls_ca`]
//! or [`Config::set_tls_ca_file`]); it is refused on Unix socket paths.
//!
//! Differences from the reference clients: an `FF` reply is returned as
//! [`Error::Server`] and the session stays usable (the reference clients
//! drop the connection), and the data-socket `TIMEOUT_SEC` is never 0.

pub mod cli;
mod config;
mod conn;
mod control;
mod data;
mod error;
mod failover;
mod session;
mod stream;
mod tls;
mod udp;

#[cfg(test)]
mod failover_tests;
#[cfg(test)]
mod tests;

pub use config::{
    Config, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_QUEUE_SIZE, DEFAULT_RECONNECT_TIMEOUT,
    DEFAULT_TIMEOUT, is_unix_socket,
};
pub use control::PipelineReport;
pub use error::Error;
pub use session::Client;
pub use udp::UdpClient;

/// A message received on the data socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The normalised topic it was published to (may be empty).
    pub topic: String,
    /// The payload.
    pub data: Vec<u8>,
    /// The publisher's priority byte.
    pub priority: u8,
}

impl Message {
    /// The payload as text, if it is UTF-8.
    pub fn data_as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.data).ok()
    }
}
