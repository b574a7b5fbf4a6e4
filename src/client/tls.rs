//! TLS for the client sockets (rustls on the ring provider).
//!
//! A TLS connection greets in plain text (`EE AA 01` / `EE AB 01`), then
//! runs the TLS handshake on the same TCP socket; everything after that,
//! the greeting reply included, is inside TLS. [`TlsSetup`] is built once
//! per [`Client::connect`](super::Client::connect) from the [`Config`]: the
//! trusted CA certificates (there are no built-in roots, so a CA is
//! required) and the name the server certificate must carry (the host part
//! of the path: a DNS name or an IP address).
//!
//! [`TlsStream`] is a blocking TLS stream over a `TcpStream` whose read and
//! write timeouts stay in force: a read waits at most the socket's read
//! timeout for ciphertext, a write returns only once the ciphertext is
//! handed to the kernel (or fails). The handshake itself has one deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::{Config, Error};

/// What every TLS socket of one client needs.
#[derive(Debug, Clone)]
pub(crate) struct TlsSetup {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    /// The host as given (for messages).
    host: String,
}

impl TlsSetup {
    /// The TLS setup for `config`, or `None` if TLS is off. Fails without
    /// touching the network: TLS on a Unix socket path, no CA, a CA that is
    /// not PEM, or a host that is neither a DNS name nor an IP address.
    pub(crate) fn from_config(config: &Config) -> Result<Option<Self>, Error> {
        if !config.tls() {
            return Ok(None);
        }
        if config.is_unix_socket() {
            return Err(Error::Tls(format!(
                "TLS is not available on Unix sockets ({}); turn TLS off or use HOST:PORT",
                config.path()
            )));
        }
        let pem = match (config.tls_ca(), config.tls_ca_file()) {
            (Some(pem), _) => pem.as_bytes().to_vec(),
            (None, Some(file)) => std::fs::read(file).map_err(|e| {
                Error::Tls(format!("cannot read the CA file {}: {e}", file.display()))
            })?,
            (None, None) => {
                return Err(Error::Tls(
                    "a CA certificate is needed to verify the server (there are no built-in \
                     root certificates): set it with set_tls_ca or set_tls_ca_file"
                        .into(),
                ));
            }
        };
        let roots = root_store(&pem)?;
        let host = server_host(config.path());
        let server_name = ServerName::try_from(host.to_owned()).map_err(|_| {
            Error::Tls(format!(
                "{host:?} (from {:?}) is neither a DNS name nor an IP address; the server \
                 certificate cannot be checked against it",
                config.path()
            ))
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls_config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(format!("TLS setup failed: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Some(Self {
            config: Arc::new(tls_config),
            server_name,
            host: host.to_owned(),
        }))
    }

    /// Runs the client handshake on `sock` (the plain greeting already
    /// sent), all of it within `timeout`. The socket's read and write
    /// timeouts are `timeout` again afterwards.
    pub(crate) fn handshake(&self, sock: TcpStream, timeout: Duration) -> Result<TlsStream, Error> {
        let conn = ClientConnection::new(Arc::clone(&self.config), self.server_name.clone())
            .map_err(|e| Error::Tls(format!("TLS setup failed: {e}")))?;
        let mut tls = TlsStream { conn, sock };
        let deadline = Instant::now() + timeout;
        let result = tls.drive_handshake(deadline, &self.host);
        // Back to the per-operation timeouts, whatever happened.
        let restored = set_timeouts(&tls.sock, timeout);
        result?;
        restored?;
        Ok(tls)
    }
}

/// Parses PEM certificates into a root store; at least one is required.
fn root_store(pem: &[u8]) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| Error::Tls(format!("the CA is not valid PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| Error::Tls(format!("unusable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(Error::Tls(
            "the CA contains no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(roots)
}

/// The host part of a TCP path: `host:port` → `host`, `[v6]:port` → `v6`,
/// a bare host (the default port) as it is.
pub(crate) fn server_host(path: &str) -> &str {
    if let Ok(addr) = path.parse::<SocketAddr>() {
        // An IP literal with a port; for v6 without the brackets.
        let (start, end) = match addr {
            SocketAddr::V4(_) => (0, path.rfind(':').unwrap_or(path.len())),
            SocketAddr::V6(_) => (1, path.rfind("]:").unwrap_or(path.len())),
        };
        return path.get(start..end).unwrap_or(path);
    }
    if let Some(rest) = path.strip_prefix('[') {
        // `[v6]` without a port.
        return rest.strip_suffix(']').unwrap_or(rest);
    }
    match path.rsplit_once(':') {
        // `host:port`, but not a bare IPv6 address (several colons).
        Some((host, port))
            if !host.contains(':')
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            host
        }
        _ => path,
    }
}

fn set_timeouts(sock: &TcpStream, timeout: Duration) -> io::Result<()> {
    sock.set_read_timeout(Some(timeout))?;
    sock.set_write_timeout(Some(timeout))
}

/// Whether an I/O error during the handshake means the server hung up.
fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// A blocking client TLS session over a TCP socket.
#[derive(Debug)]
pub(crate) struct TlsStream {
    conn: ClientConnection,
    sock: TcpStream,
}

impl TlsStream {
    /// The TCP socket underneath (timeouts, a shutdown handle).
    pub(crate) fn socket(&self) -> &TcpStream {
        &self.sock
    }

    fn drive_handshake(&mut self, deadline: Instant, host: &str) -> Result<(), Error> {
        let closed = || {
            Error::Tls(
                "the server closed the connection during the TLS handshake (is TLS enabled on \
                 the server?)"
                    .into(),
            )
        };
        let step = |e: io::Error| if is_closed(&e) { closed() } else { e.into() };
        while self.conn.is_handshaking() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout);
            }
            set_timeouts(&self.sock, left)?;
            self.flush_tls().map_err(step)?;
            if !self.conn.is_handshaking() {
                break;
            }
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => return Err(closed()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(step(e)),
            }
            if let Err(e) = self.conn.process_new_packets() {
                // Tell the server why (the alert rustls queued), if it listens.
                let _ = self.flush_tls();
                return Err(Error::Tls(format!("handshake with {host} failed: {e}")));
            }
        }
        // The client's last flight (its Finished, in TLS 1.3).
        self.flush_tls().map_err(step)
    }

    /// Hands all pending ciphertext to the socket (blocking, within the
    /// write timeout).
    fn flush_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Read for TlsStream {
    /// Plaintext, waiting for ciphertext at most the socket's read timeout
    /// per socket read. `Ok(0)` at the end of the stream, with or without
    /// the server's close_notify: PSRT frames carry their lengths, so a cut
    /// inside a frame is still an error to the caller, while a server that
    /// closes between frames (a refused login) looks the same as in plain
    /// TCP.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                other => return other,
            }
            // Anything rustls wants to say first (e.g. an alert).
            self.flush_tls()?;
            match self.conn.read_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(e) = self.conn.process_new_packets() {
                let _ = self.flush_tls();
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }
}

impl Write for TlsStream {
    /// Encrypts what rustls's buffer takes (at least one byte when the
    /// buffer is empty) and writes it out before returning.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.flush_tls()?;
        let n = self.conn.writer().write(buf)?;
        self.flush_tls()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_path() {
        for (path, host) in [
            ("localhost:2873", "localhost"),
            ("localhost", "localhost"),
            ("127.0.0.1:2873", "127.0.0.1"),
            ("127.0.0.1", "127.0.0.1"),
            ("[::1]:2873", "::1"),
            ("[::1]", "::1"),
            ("::1", "::1"),
            ("fe80::1:2873", "fe80::1:2873"),
            ("psrt.example.com:99", "psrt.example.com"),
            ("host:", "host:"),
        ] {
            assert_eq!(server_host(path), host, "{path}");
        }
    }

    #[test]
    fn setup_errors() {
        let off = Config::new("localhost:2873");
        assert!(TlsSetup::from_config(&off).unwrap().is_none());

        let err = |c: Config| match TlsSetup::from_config(&c) {
            Err(Error::Tls(text)) => text,
            other => panic!("{other:?}"),
        };
        let no_ca = err(Config::new("localhost:2873").set_tls(true));
        assert!(no_ca.contains("CA certificate is needed"), "{no_ca}");
        let unix = err(Config::new("/run/psrtd.sock")
            .set_tls(true)
            .set_tls_ca(Some(String::new())));
        assert!(unix.contains("Unix socket"), "{unix}");
        let empty = err(Config::new("h:1")
            .set_tls(true)
            .set_tls_ca(Some("not a certificate".into())));
        assert!(empty.contains("no PEM certificate"), "{empty}");
        let broken = err(Config::new("h:1")
            .set_tls(true)
            .set_tls_ca(Some("-----BEGIN CERTIFICATE-----\nAAAA\n".into())));
        assert!(broken.contains("not valid PEM"), "{broken}");
        let missing = err(Config::new("h:1")
            .set_tls(true)
            .set_tls_ca_file("/nonexistent/psrt-ca.pem"));
        assert!(missing.contains("/nonexistent/psrt-ca.pem"), "{missing}");
    }
}
