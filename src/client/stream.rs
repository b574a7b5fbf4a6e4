//! The byte stream under a client socket: TCP, TCP with TLS, or a Unix
//! socket, connected with a timeout and with read and write timeouts set,
//! so that no read or write of the client can block forever. No protocol
//! knowledge here (the plain greeting before the TLS handshake is sent by
//! the caller, which then calls [`Stream::start_tls`]).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::tls::{TlsSetup, TlsStream};
use super::{Config, Error};
use crate::protocol::DEFAULT_PORT;

/// How often a missing Unix socket file is looked for again.
const SOCKET_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A connected TCP, TLS or Unix stream. A TLS stream has one owner (its
/// reads and writes both need the session state); other threads get a
/// [`Stream::shutdown_handle`] to wake it.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream>),
    Unix(UnixStream),
}

impl Stream {
    /// Connects to the config's path, with `timeout` as the read and write
    /// timeout of the new stream (plain: TLS starts after the greeting).
    pub(crate) fn connect(config: &Config, timeout: Duration) -> Result<Self, Error> {
        let stream = if config.is_unix_socket() {
            Self::Unix(connect_unix(config.path(), config.socket_wait_timeout())?)
        } else {
            let tcp = connect_tcp(config.path(), config.timeout())?;
            // Requests and replies are small and latency-bound.
            tcp.set_nodelay(true)?;
            Self::Tcp(tcp)
        };
        stream.set_timeouts(timeout)?;
        Ok(stream)
    }

    /// Runs the TLS handshake on a plain TCP stream, within `timeout`
    /// (which stays the read and write timeout afterwards).
    pub(crate) fn start_tls(self, setup: &TlsSetup, timeout: Duration) -> Result<Self, Error> {
        match self {
            Self::Tcp(tcp) => Ok(Self::Tls(Box::new(setup.handshake(tcp, timeout)?))),
            Self::Tls(_) => Err(Error::Tls("TLS is already on for this socket".into())),
            Self::Unix(_) => Err(Error::Tls("TLS is not available on Unix sockets".into())),
        }
    }

    /// Sets the read and the write timeout (must not be zero).
    pub(crate) fn set_timeouts(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Self::Tcp(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))
            }
            Self::Tls(s) => {
                s.socket().set_read_timeout(Some(timeout))?;
                s.socket().set_write_timeout(Some(timeout))
            }
            Self::Unix(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))
            }
        }
    }

    /// A second handle to the socket underneath, only for
    /// [`Stream::shutdown`] from another thread (for TLS it is the bare TCP
    /// socket: reading or writing it would corrupt the session).
    pub(crate) fn shutdown_handle(&self) -> io::Result<Self> {
        match self {
            Self::Tcp(s) => s.try_clone().map(Self::Tcp),
            Self::Tls(s) => s.socket().try_clone().map(Self::Tcp),
            Self::Unix(s) => s.try_clone().map(Self::Unix),
        }
    }

    /// Shuts both directions down; a blocked reader wakes up with EOF.
    /// Errors (the socket is already closed) are ignored.
    pub(crate) fn shutdown(&self) {
        let _ = match self {
            Self::Tcp(s) => s.shutdown(Shutdown::Both),
            Self::Tls(s) => s.socket().shutdown(Shutdown::Both),
            Self::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(buf),
            Self::Tls(s) => s.read(buf),
            Self::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.write(buf),
            Self::Tls(s) => s.write(buf),
            Self::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Tls(s) => s.flush(),
            Self::Tcp(_) | Self::Unix(_) => Ok(()),
        }
    }
}

/// Resolves `path` (`host:port`, or a bare host on the default port 2873)
/// and connects to the first address that answers within `timeout`.
fn connect_tcp(path: &str, timeout: Duration) -> Result<TcpStream, Error> {
    let addrs: Vec<_> = match path.to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(e) => match (path, DEFAULT_PORT).to_socket_addrs() {
            Ok(addrs) => addrs.collect(),
            Err(_) => {
                return Err(Error::Io(io::Error::new(
                    e.kind(),
                    format!("cannot resolve {path:?}: {e}"),
                )));
            }
        },
    };
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(io::Error::new(e.kind(), format!("{addr}: {e}"))),
        }
    }
    Err(match last {
        Some(e) if is_timeout(&e) => Error::Timeout,
        Some(e) => Error::Io(e),
        None => Error::Io(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{path:?} resolves to no address"),
        )),
    })
}

/// Connects to a Unix socket, waiting up to `wait` for its file to appear.
fn connect_unix(path: &str, wait: Duration) -> Result<UnixStream, Error> {
    let deadline = Instant::now() + wait;
    while !Path::new(path).exists() && Instant::now() < deadline {
        thread::sleep(SOCKET_POLL_INTERVAL);
    }
    UnixStream::connect(path)
        .map_err(|e| Error::Io(io::Error::new(e.kind(), format!("{path}: {e}"))))
}

/// Whether an I/O error is a read or write timeout.
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Fills `buf` completely. `Ok(false)`: the peer closed the stream before
/// the first byte; a close in the middle is `UnexpectedEof`.
pub(crate) fn read_exact_or_eof(mut r: impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        let Some(rest) = buf.get_mut(filled..) else {
            break;
        };
        match r.read(rest) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_exact_or_eof_cases() {
        let mut buf = [0u8; 3];
        assert!(!read_exact_or_eof(&[][..], &mut buf).unwrap());
        let e = read_exact_or_eof(&[1u8, 2][..], &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(read_exact_or_eof(&[1u8, 2, 3, 4][..], &mut buf).unwrap());
        assert_eq!(buf, [1, 2, 3]);
    }

    #[test]
    fn connect_errors_are_typed() {
        // A listener that is closed again: nothing listens on the port.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = Config::new(&format!("127.0.0.1:{port}"));
        assert!(matches!(
            Stream::connect(&config, config.timeout()),
            Err(Error::Io(_))
        ));
        let config =
            Config::new("/nonexistent/psrt-test.sock").set_socket_wait_timeout(Duration::ZERO);
        let err = Stream::connect(&config, config.timeout()).unwrap_err();
        assert!(err.to_string().contains("psrt-test.sock"), "{err}");
    }
}
