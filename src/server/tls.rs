//! TLS with rustls on the ring provider: loading the server identity (PEM
//! certificate chain + private key) and the transport a connection switches
//! to after a greeting with comm byte `01`.
//!
//! The transport behaves like a non-blocking socket to the rest of the
//! server: `read` yields plaintext (driving the handshake as ciphertext
//! arrives), `write` accepts plaintext only while rustls's outgoing buffer
//! has room (64 KiB), so the send queue's byte accounting and back-pressure
//! work unchanged. Ciphertext that the socket did not take yet is flushed on
//! the next writable event.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{Connection, ServerConfig};

use super::config::ConfigError;
use super::conn::Stream;

/// Plaintext rustls may hold for a connection before `write` pushes back.
const TLS_BUFFER_LIMIT: usize = 64 * 1024;

/// Loads a PEM certificate chain and private key into a server config.
pub fn load_server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, ConfigError> {
    let cert_pem =
        std::fs::read(cert).map_err(|e| ConfigError::new(cert, format!("cannot read: {e}")))?;
    let key_pem =
        std::fs::read(key).map_err(|e| ConfigError::new(key, format!("cannot read: {e}")))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::new(cert, format!("not a PEM certificate chain: {e:?}")))?;
    if chain.is_empty() {
        return Err(ConfigError::new(cert, "no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| ConfigError::new(key, format!("not a PEM private key: {e:?}")))?;
    let mut provider = rustls::crypto::ring::default_provider();
    // Prefer AES-128-GCM over AES-256-GCM (the provider's first choice): as
    // secure for TLS 1.3 and cheaper per byte, which shows with large
    // messages on small gateways.
    provider.cipher_suites.sort_by_key(|s| {
        !matches!(
            s.suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new(cert, format!("TLS setup failed: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            ConfigError::new(
                key,
                format!("certificate and key do not make an identity: {e}"),
            )
        })?;
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// A TLS session over a stream: the server side of a client's connection,
/// or the client side of an outgoing replication link.
#[derive(Debug)]
pub struct TlsTransport {
    tls: Connection,
    sock: Stream,
}

impl TlsTransport {
    /// Wraps `sock` in a session.
    pub fn new(mut tls: Connection, sock: Stream) -> Self {
        tls.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Self { tls, sock }
    }

    /// The socket underneath (for poll registration).
    pub fn socket(&mut self) -> &mut Stream {
        &mut self.sock
    }

    /// Still in the handshake.
    pub fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// Feeds ciphertext that was read before the switch to TLS.
    pub fn feed(&mut self, mut early: &[u8]) -> io::Result<()> {
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
    pub fn flush_tls(&mut self) -> io::Result<bool> {
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
    pub fn has_pending_output(&self) -> bool {
        self.tls.wants_write()
    }

    /// Queues a close_notify alert (sent by the next flush).
    pub fn close_notify(&mut self) {
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
