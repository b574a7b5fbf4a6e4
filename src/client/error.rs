//! The client's error type: one enum for every way a request, a connect or a
//! UDP publish can fail. It owns no I/O; the other client modules map socket
//! errors and reply codes into it.

use std::fmt;
use std::io;

use crate::protocol::DecodeError;

/// Why a client operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A socket error other than a timeout or an orderly close.
    Io(io::Error),
    /// The server answered `FE`: the ACL denies this publish or subscribe.
    /// The session stays open.
    AccessDenied,
    /// The server closed the control socket instead of sending a token: bad
    /// credentials, anonymous logins disabled, or no ACL entry for the user.
    /// The server does not say which.
    LoginFailed,
    /// The server answered with an error code (`FF`), e.g. a topic deeper
    /// than its limit. The session stays open.
    Server(u8),
    /// The peer sent bytes that are not what the protocol allows here. The
    /// connection is closed, since the stream can no longer be trusted.
    Protocol(String),
    /// No reply (or no byte on the data socket) within the timeout. A TCP
    /// client is closed afterwards: a late reply would be taken for the
    /// answer to the next request.
    Timeout,
    /// The connection is closed (by the server, by [`bye`](super::Client::bye),
    /// or after an earlier error).
    Disconnected,
    /// A topic the server would answer by closing the connection (empty,
    /// or `+`/`#` in a published topic) or would misread (a NUL byte). It
    /// was not sent; the session stays open.
    InvalidTopic(String),
    /// The client was built without a data stream, or its message receiver
    /// was taken with [`take_receiver`](super::Client::take_receiver).
    NoDataStream,
    /// TLS could not be set up or the handshake failed: no or unusable CA
    /// certificate, TLS asked for on a Unix socket, a server certificate
    /// that does not verify (unknown issuer, wrong name, expired), or a
    /// server that closes the connection instead of answering TLS.
    Tls(String),
    /// The client lost its server and reconnecting failed: no address
    /// answered (and took the login and the resubscriptions) within the
    /// reconnect timeout. Holds the last address's error. The client stays
    /// disconnected.
    Unavailable(String),
}

impl Error {
    /// `true` for [`Error::AccessDenied`] and [`Error::LoginFailed`]: the
    /// server refused on purpose, retrying the same request will not help.
    pub fn is_access_denied(&self) -> bool {
        matches!(self, Self::AccessDenied | Self::LoginFailed)
    }

    /// `true` for the errors after which a TCP session is still usable: the
    /// server refused one request (`FE`, `FF`) or the client refused to send
    /// it ([`Error::InvalidTopic`]). Every other error closes the client.
    pub fn keeps_session(&self) -> bool {
        matches!(
            self,
            Self::AccessDenied | Self::Server(_) | Self::InvalidTopic(_)
        )
    }

    /// Builds a [`Error::Protocol`] from anything printable.
    pub(crate) fn protocol(what: impl fmt::Display) -> Self {
        Self::Protocol(what.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "I/O error: {e}"),
            Self::AccessDenied => f.write_str("access denied by the server"),
            Self::LoginFailed => f.write_str(
                "login failed (wrong user or password, anonymous access disabled, or no ACL entry)",
            ),
            Self::Server(code) => write!(f, "server error (reply code {code:#04x})"),
            Self::Protocol(what) => write!(f, "protocol error: {what}"),
            Self::Timeout => f.write_str("timed out waiting for the server"),
            Self::Disconnected => f.write_str("disconnected from the server"),
            Self::InvalidTopic(why) => write!(f, "invalid topic: {why}"),
            Self::NoDataStream => f.write_str("no data stream on this client"),
            Self::Tls(what) => write!(f, "TLS: {what}"),
            Self::Unavailable(why) => write!(f, "no server available: {why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    /// Read and write timeouts become [`Error::Timeout`], an early end of
    /// stream [`Error::Disconnected`]; anything else stays [`Error::Io`].
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Self::Timeout,
            io::ErrorKind::UnexpectedEof => Self::Disconnected,
            _ => Self::Io(e),
        }
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Self::protocol(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_kinds_map_to_variants() {
        let timeout = Error::from(io::Error::from(io::ErrorKind::WouldBlock));
        assert!(matches!(timeout, Error::Timeout));
        let eof = Error::from(io::Error::from(io::ErrorKind::UnexpectedEof));
        assert!(matches!(eof, Error::Disconnected));
        let refused = Error::from(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(matches!(refused, Error::Io(_)));
        assert!(std::error::Error::source(&refused).is_some());
    }

    #[test]
    fn display_is_one_line() {
        for e in [
            Error::AccessDenied,
            Error::LoginFailed,
            Error::Server(0xFF),
            Error::from(DecodeError::UnknownReply(0x42)),
            Error::Timeout,
            Error::Disconnected,
            Error::InvalidTopic("empty".into()),
            Error::NoDataStream,
            Error::Tls("handshake failed".into()),
            Error::Unavailable("b:2: I/O error: refused".into()),
        ] {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.contains('\n'), "{text}");
        }
        assert_eq!(
            Error::Server(0xFF).to_string(),
            "server error (reply code 0xff)"
        );
        assert!(Error::LoginFailed.is_access_denied());
        assert!(!Error::Server(0xFF).is_access_denied());
        assert!(Error::Server(0xFF).keeps_session());
        assert!(!Error::Timeout.keeps_session());
    }
}
