//! The two kinds of stream socket a PSRT client can use, behind one type;
//! the transport on top of it (plain, or TLS after a `01` greeting); and how
//! a peer is named in logs.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

use crate::server::tls::TlsTransport;

/// A TCP or Unix stream.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix socket.
    Unix(UnixStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(buf),
            Self::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.write(buf),
            Self::Unix(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.write_vectored(bufs),
            Self::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Stream {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.register(r, t, i),
            Self::Unix(s) => s.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.reregister(r, t, i),
            Self::Unix(s) => s.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.deregister(r),
            Self::Unix(s) => s.deregister(r),
        }
    }
}

/// What a connection reads and writes through.
#[derive(Debug)]
pub enum Transport {
    /// The socket itself.
    Plain(Stream),
    /// A TLS session over the socket.
    Tls(Box<TlsTransport>),
    /// Only while switching from plain to TLS.
    Switching,
}

impl Transport {
    /// Switches to TLS (a server or client session), feeding ciphertext
    /// that already arrived.
    pub fn start_tls(&mut self, session: rustls::Connection, early: &[u8]) -> io::Result<()> {
        let Self::Plain(sock) = std::mem::replace(self, Self::Switching) else {
            return Err(io::Error::other("TLS requested twice"));
        };
        let mut tls = TlsTransport::new(session, sock);
        let fed = tls.feed(early);
        *self = Self::Tls(Box::new(tls));
        fed
    }

    /// In a TLS handshake that has not finished.
    pub fn is_handshaking(&self) -> bool {
        matches!(self, Self::Tls(t) if t.is_handshaking())
    }

    /// TLS output waits for the socket.
    pub fn has_pending_output(&self) -> bool {
        matches!(self, Self::Tls(t) if t.has_pending_output())
    }

    /// Writes pending TLS output; `Ok(false)` if the socket is full.
    pub fn flush_pending(&mut self) -> io::Result<bool> {
        match self {
            Self::Tls(t) => t.flush_tls(),
            Self::Plain(_) | Self::Switching => Ok(true),
        }
    }

    /// Queues a TLS close_notify (no-op for plain sockets).
    pub fn close_notify(&mut self) {
        if let Self::Tls(t) = self {
            t.close_notify();
        }
    }

    fn socket(&mut self) -> io::Result<&mut Stream> {
        match self {
            Self::Plain(s) => Ok(s),
            Self::Tls(t) => Ok(t.socket()),
            Self::Switching => Err(io::Error::other("transport switching")),
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            Self::Tls(t) => t.read(buf),
            Self::Switching => Err(io::Error::other("transport switching")),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            Self::Tls(t) => t.write(buf),
            Self::Switching => Err(io::Error::other("transport switching")),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write_vectored(bufs),
            Self::Tls(t) => t.write_vectored(bufs),
            Self::Switching => Err(io::Error::other("transport switching")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Transport {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        self.socket()?.register(r, t, i)
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        self.socket()?.reregister(r, t, i)
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        self.socket()?.deregister(r)
    }
}

/// Who is on the other end, for logs and per-IP limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A TCP client.
    Tcp(SocketAddr),
    /// A Unix-socket client, named by the listening path.
    Unix(Rc<str>),
}

impl Peer {
    /// The source IP, for TCP peers.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::Tcp(a) => Some(a.ip()),
            Self::Unix(_) => None,
        }
    }

    /// Whether this is a Unix-socket peer.
    pub fn is_unix(&self) -> bool {
        matches!(self, Self::Unix(_))
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "{a}"),
            Self::Unix(p) => write!(f, "unix:{p}"),
        }
    }
}
