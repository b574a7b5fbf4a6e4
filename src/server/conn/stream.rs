//! The two kinds of stream socket a client can use, behind one type, and
//! how a peer is named in logs.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

/// A TCP or Unix stream.
#[derive(Debug)]
pub(crate) enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix socket.
    Unix(UnixStream),
    /// No socket: unit tests drive handlers with byte slices; reads and
    /// writes would block.
    #[cfg(test)]
    Detached,
}

/// A detached stream and a TCP peer, for unit tests.
#[cfg(test)]
pub(crate) fn test_pair() -> (Stream, Peer) {
    (Stream::Detached, Peer::Tcp(([192, 0, 2, 7], 40_000).into()))
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(buf),
            Self::Unix(s) => s.read(buf),
            #[cfg(test)]
            Self::Detached => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.write(buf),
            Self::Unix(s) => s.write(buf),
            #[cfg(test)]
            Self::Detached => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.write_vectored(bufs),
            Self::Unix(s) => s.write_vectored(bufs),
            #[cfg(test)]
            Self::Detached => Err(io::ErrorKind::WouldBlock.into()),
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
            #[cfg(test)]
            Self::Detached => Ok(()),
        }
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.reregister(r, t, i),
            Self::Unix(s) => s.reregister(r, t, i),
            #[cfg(test)]
            Self::Detached => Ok(()),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.deregister(r),
            Self::Unix(s) => s.deregister(r),
            #[cfg(test)]
            Self::Detached => Ok(()),
        }
    }
}

/// Who is on the other end, for logs and per-IP limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Peer {
    /// A TCP client.
    Tcp(SocketAddr),
    /// A Unix-socket client, named by the listening path.
    Unix(Rc<str>),
}

impl Peer {
    /// The source IP, for TCP peers.
    pub(crate) fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::Tcp(a) => Some(a.ip()),
            Self::Unix(_) => None,
        }
    }

    /// Whether this is a Unix-socket peer.
    pub(crate) fn is_unix(&self) -> bool {
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
