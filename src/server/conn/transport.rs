//! What a connection reads and writes through: the socket itself, or a TLS
//! session (rustls, ring provider) over it after a greeting with comm byte
//! `01` (or on an outgoing link to a TLS node). The server identity is
//! loaded with the other auth files (`auth::tls_identity`).
//!
//! The transport behaves like a non-blocking socket to the rest of the
//! server: `read` yields plaintext (driving the handshake as ciphertext
//! arrives), `write` accepts plaintext only while rustls's outgoing buffer
//! has room (64 KiB), so the send queue's byte accounting and back-pressure
//! work unchanged. Ciphertext that the socket did not take yet is flushed on
//! the next writable event.

use std::io::{self, IoSlice, Read, Write};

use mio::event::Source;
use mio::{Interest, Registry, Token};
use rustls::Connection;

use super::stream::Stream;

/// Plaintext rustls may hold for a connection before `write` pushes back.
const TLS_BUFFER_LIMIT: usize = 64 * 1024;

/// What a connection reads and writes through.
#[derive(Debug)]
pub(crate) enum Transport {
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
    pub(crate) fn start_tls(
        &mut self,
        session: rustls::Connection,
        early: &[u8],
    ) -> io::Result<()> {
        let Self::Plain(sock) = std::mem::replace(self, Self::Switching) else {
            return Err(io::Error::other("TLS requested twice"));
        };
        let mut tls = TlsTransport::new(session, sock);
        let fed = tls.feed(early);
        *self = Self::Tls(Box::new(tls));
        fed
    }

    /// In a TLS handshake that has not finished.
    pub(crate) fn is_handshaking(&self) -> bool {
        matches!(self, Self::Tls(t) if t.is_handshaking())
    }

    /// TLS output waits for the socket.
    pub(crate) fn has_pending_output(&self) -> bool {
        matches!(self, Self::Tls(t) if t.has_pending_output())
    }

    /// Writes pending TLS output; `Ok(false)` if the socket is full.
    pub(crate) fn flush_pending(&mut self) -> io::Result<bool> {
        match self {
            Self::Tls(t) => t.flush_tls(),
            Self::Plain(_) | Self::Switching => Ok(true),
        }
    }

    /// Queues a TLS close_notify (no-op for plain sockets).
    pub(crate) fn close_notify(&mut self) {
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

/// A TLS session over a stream: the server side of a client's connection,
/// or the client side of an outgoing replication link.
#[derive(Debug)]
pub(crate) struct TlsTransport {
    tls: Connection,
    sock: Stream,
}

impl TlsTransport {
    /// Wraps `sock` in a session.
    pub(crate) fn new(mut tls: Connection, sock: Stream) -> Self {
        tls.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Self { tls, sock }
    }

    /// The socket underneath (for poll registration).
    pub(crate) fn socket(&mut self) -> &mut Stream {
        &mut self.sock
    }

    /// Still in the handshake.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// Feeds ciphertext that was read before the switch to TLS.
    pub(crate) fn feed(&mut self, mut early: &[u8]) -> io::Result<()> {
        while !early.is_empty() {
            self.tls.read_tls(&mut early)?;
            self.process()?;
        }
        Ok(())
    }

    fn process(&mut self) -> io::Result<()> {
        if let Err(e) = self.tls.process_new_packets() {
            // Send the alert rustls queued, if the socket takes it.
            let _ = self.flush_tls();
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        self.flush_tls().map(|_| ())
    }

    /// Writes pending ciphertext. `Ok(true)`: nothing left; `Ok(false)`: the
    /// socket is full.
    pub(crate) fn flush_tls(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Ciphertext waits for the socket.
    pub(crate) fn has_pending_output(&self) -> bool {
        self.tls.wants_write()
    }

    /// Queues a close_notify alert (sent by the next flush).
    pub(crate) fn close_notify(&mut self) {
        self.tls.send_close_notify();
    }
}

impl Read for TlsTransport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match self.tls.read_tls(&mut self.sock) {
                Ok(0) => return Ok(0),
                Ok(_) => self.process()?,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Write for TlsTransport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let mut accepted = self.tls.writer().write_vectored(bufs)?;
        let drained = self.flush_tls()?;
        if accepted == 0 && drained {
            // The buffer was full and is empty now: it takes more.
            accepted = self.tls.writer().write_vectored(bufs)?;
            self.flush_tls()?;
        }
        if accepted == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(accepted)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
