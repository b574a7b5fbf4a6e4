//! [`UdpClient`]: publishing over UDP, plain (login and password in every
//! datagram) or sealed with AES-128/256-GCM under a 32-byte key. Nonces
//! are a random 96-bit starting point plus a counter, so one client never
//! repeats a nonce and two clients with the same key practically never
//! share one.
//!
//! The server truncates datagrams above its `udp_frame_size` (4096 bytes by
//! default); keep topic and payload well below that.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use super::Error;
use super::config::DEFAULT_TIMEOUT;
use super::control::{check_publish_topic, check_reply};
use super::stream::is_timeout;
use crate::protocol::{
    AES_KEY_LEN, DEFAULT_PRIORITY, GCM_NONCE_LEN, UDP_ACK_LEN, UdpCipher, UdpKey, UdpOp,
    decode_udp_ack, encode_udp_body, encode_udp_encrypted, encode_udp_plain,
};

/// How datagrams are authenticated.
enum Auth {
    Plain {
        login: String,
        password: String,
    },
    Sealed {
        cipher: UdpCipher,
        key_id: String,
        /// Expanded AES keys are large; keep the enum small.
        key: Box<UdpKey>,
        nonces: NonceSequence,
    },
}

/// A 96-bit nonce counter with a random start. It refuses to wrap.
struct NonceSequence {
    next: u128,
    left: u128,
}

impl NonceSequence {
    const MASK: u128 = (1 << 96) - 1;

    fn random(rng: &SystemRandom) -> Result<Self, Error> {
        let mut seed = [0u8; 16];
        rng.fill(&mut seed)
            .map_err(|_| Error::Io(io::Error::other("the system random generator failed")))?;
        Ok(Self {
            next: u128::from_le_bytes(seed) & Self::MASK,
            left: Self::MASK,
        })
    }

    fn advance(&mut self) -> Result<[u8; GCM_NONCE_LEN], Error> {
        if self.left == 0 {
            return Err(Error::protocol("AES-GCM nonces exhausted for this key"));
        }
        self.left -= 1;
        let bytes = self.next.to_le_bytes();
        self.next = (self.next + 1) & Self::MASK;
        let mut nonce = [0u8; GCM_NONCE_LEN];
        nonce.copy_from_slice(bytes.get(..GCM_NONCE_LEN).unwrap_or(&[0; GCM_NONCE_LEN]));
        Ok(nonce)
    }
}

/// A UDP publisher bound to one server address.
pub struct UdpClient {
    socket: UdpSocket,
    auth: Auth,
    timeout: Duration,
    out: Vec<u8>,
    body: Vec<u8>,
    /// A confirmed publish timed out, so its ack may still arrive: drop
    /// queued datagrams before the next confirmed publish.
    stale_ack: bool,
}

impl fmt::Debug for UdpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            Auth::Plain { login, .. } => format!("plain({login:?})"),
            Auth::Sealed { cipher, key_id, .. } => format!("{cipher:?}({key_id:?})"),
        };
        f.debug_struct("UdpClient")
            .field("peer", &self.socket.peer_addr().ok())
            .field("auth", &auth)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl UdpClient {
    /// Binds an ephemeral local port and connects it to `addr`
    /// (`host:port`). Anonymous plain auth, ack timeout 5 s.
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Self, Error> {
        let peer = addr.to_socket_addrs()?.next().ok_or_else(|| {
            Error::Io(io::Error::new(
                io::ErrorKind::NotFound,
                "the address resolves to nothing",
            ))
        })?;
        let local: SocketAddr = if peer.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(peer)?;
        Ok(Self {
            socket,
            auth: Auth::Plain {
                login: String::new(),
                password: String::new(),
            },
            timeout: DEFAULT_TIMEOUT,
            out: Vec::new(),
            body: Vec::new(),
            stale_ack: false,
        })
    }

    /// Authenticates with a login and password (both empty: anonymous).
    #[must_use]
    pub fn with_auth(mut self, login: &str, password: &str) -> Self {
        self.auth = Auth::Plain {
            login: login.to_owned(),
            password: password.to_owned(),
        };
        self
    }

    /// Seals datagrams with the 32-byte key of `key_id` (the login; empty
    /// means the key `_`). AES-128-GCM uses the first 16 bytes of the key.
    pub fn with_encryption(
        mut self,
        key_id: &str,
        key: &[u8; AES_KEY_LEN],
        cipher: UdpCipher,
    ) -> Result<Self, Error> {
        self.auth = Auth::Sealed {
            cipher,
            key_id: key_id.to_owned(),
            key: Box::new(UdpKey::new(key)),
            nonces: NonceSequence::random(&SystemRandom::new())?,
        };
        Ok(self)
    }

    /// How long [`UdpClient::publish_confirmed`] waits for the ack (at least
    /// 1 ms).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The server address.
    pub fn peer_addr(&self) -> Result<SocketAddr, Error> {
        Ok(self.socket.peer_addr()?)
    }

    /// Sends a publish the server does not acknowledge (op `21`).
    pub fn publish(&mut self, topic: &str, data: &[u8]) -> Result<(), Error> {
        self.send(UdpOp::PublishNoAck, topic, data)
    }

    /// Sends a publish (op `01`) and waits for the 5-byte ack: `FE` →
    /// [`Error::AccessDenied`], `FF` → [`Error::Server`], none within the
    /// timeout → [`Error::Timeout`]. The server does not ack datagrams it
    /// cannot authenticate, so bad credentials also end in a timeout.
    pub fn publish_confirmed(&mut self, topic: &str, data: &[u8]) -> Result<(), Error> {
        if self.stale_ack {
            self.drop_queued()?;
        }
        self.send(UdpOp::Publish, topic, data)?;
        let result = self.wait_ack();
        self.stale_ack = matches!(result, Err(Error::Timeout));
        result
    }

    fn send(&mut self, op: UdpOp, topic: &str, data: &[u8]) -> Result<(), Error> {
        check_publish_topic(topic)?;
        self.body.clear();
        encode_udp_body(op, DEFAULT_PRIORITY, topic, data, &mut self.body);
        self.out.clear();
        match &mut self.auth {
            Auth::Plain { login, password } => {
                encode_udp_plain(login, password, &self.body, &mut self.out);
            }
            Auth::Sealed {
                cipher,
                key_id,
                key,
                nonces,
            } => {
                let nonce = nonces.advance()?;
                encode_udp_encrypted(key, *cipher, key_id, nonce, &self.body, &mut self.out);
            }
        }
        let sent = self.socket.send(&self.out)?;
        if sent != self.out.len() {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::WriteZero,
                "datagram sent in part",
            )));
        }
        Ok(())
    }

    fn wait_ack(&self) -> Result<(), Error> {
        let deadline = Instant::now() + self.timeout;
        // Room for one byte more than an ack, to notice longer datagrams.
        let mut buf = [0u8; UDP_ACK_LEN + 1];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout);
            }
            self.socket.set_read_timeout(Some(left))?;
            // The socket is connected: the kernel drops datagrams of other peers.
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if is_timeout(&e) => return Err(Error::Timeout),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            let ack = buf.get(..n).unwrap_or_default();
            if n != UDP_ACK_LEN {
                return Err(Error::protocol(format!(
                    "a datagram of {n} bytes instead of a {UDP_ACK_LEN}-byte ack"
                )));
            }
            return check_reply(decode_udp_ack(ack)?.into());
        }
    }

    /// Reads and discards datagrams already queued on the socket.
    fn drop_queued(&mut self) -> Result<(), Error> {
        self.socket.set_nonblocking(true)?;
        let mut buf = [0u8; 64];
        let result = loop {
            match self.socket.recv(&mut buf) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // E.g. a queued ICMP "port unreachable": it belongs to the
                // old datagram, not to the next one.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => break Err(e),
            }
        };
        self.socket.set_nonblocking(false)?;
        self.stale_ack = false;
        Ok(result?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_count_and_wrap_at_96_bits() {
        let mut seq = NonceSequence {
            next: NonceSequence::MASK,
            left: 2,
        };
        assert_eq!(seq.advance().unwrap(), [0xFF; GCM_NONCE_LEN]);
        assert_eq!(seq.advance().unwrap(), [0; GCM_NONCE_LEN]);
        assert!(seq.advance().is_err(), "never reuse a nonce");

        let rng = SystemRandom::new();
        let mut a = NonceSequence::random(&rng).unwrap();
        let first = a.advance().unwrap();
        let second = a.advance().unwrap();
        assert_ne!(first, second);
    }
}
