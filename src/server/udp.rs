//! UDP publish: datagrams on the `bind_udp` sockets, plain (login +
//! password) or AES-GCM sealed with the login's key from `keys.yml`,
//! published through the same delivery path as TCP.
//!
//! Rules (fixes of the reference are marked *):
//! * a datagram longer than `udp_frame_size` is dropped, not truncated and
//!   delivered (*);
//! * nothing is sent back to a source that did not authenticate — a bad
//!   envelope, an unknown key, a failed seal, a wrong password or a refused
//!   anonymous login get no ack (*), so the socket cannot be used to reflect
//!   traffic at a spoofed address;
//! * once authenticated, an op `01` datagram gets the 5-byte ack: `01`, `FE`
//!   (ACL) or `FF` (bad topic);
//! * a plain password is verified by bcrypt in the auth worker the first time
//!   only (*): the datagram waits (bounded), later ones hit the
//!   verified-login cache.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

use log::debug;
use mio::net::UdpSocket;
use psrt_protocol::{
    Reply, UdpAuth, UdpBody, decode_datagram, decode_udp_body, encode_udp_ack, normalize_topic,
    open_udp_block, validate_publish_topic,
};

use super::auth::ANONYMOUS;
use super::auth::worker::{Job, Ticket, Verified};
use super::event_loop::Server;

/// Datagrams read from one socket per loop iteration before others get a turn.
pub(crate) const UDP_BUDGET: usize = 1024;
/// Datagrams parked waiting for bcrypt; more are dropped.
const MAX_PENDING: usize = 64;
/// Receive buffer asked of the kernel per UDP socket, to ride out bursts
/// (capped by `net.core.rmem_max`).
const SOCKET_RCVBUF: usize = 4 * 1024 * 1024;

/// A datagram waiting for its password to be verified.
#[derive(Debug)]
struct Pending {
    socket: usize,
    src: SocketAddr,
    datagram: Vec<u8>,
}

/// The UDP sockets and their buffers.
#[derive(Debug, Default)]
pub(crate) struct Udp {
    pub(crate) sockets: Vec<UdpSocket>,
    /// Receive buffer: `udp_frame_size + 1` bytes, so an oversize datagram shows.
    buf: Vec<u8>,
    /// Decrypted bodies.
    plain: Vec<u8>,
    /// The ack being sent (reused: no allocation per datagram).
    ack: Vec<u8>,
    pending: HashMap<u64, Pending>,
    next_pending: u64,
    /// Sockets whose read budget ran out with datagrams possibly left.
    pub(crate) backlog: Vec<usize>,
}

impl Udp {
    /// Binds every address; `frame_size` is the largest datagram accepted.
    pub(crate) fn bind(addrs: &[String], frame_size: u16) -> io::Result<Self> {
        let mut sockets = Vec::new();
        for spec in addrs {
            let addr = spec.to_socket_addrs()?.next().ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{spec}: no address"))
            })?;
            let socket = UdpSocket::bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot bind UDP {spec}: {e}")))?;
            if let Err(e) = super::sys::set_recv_buffer(&socket, SOCKET_RCVBUF) {
                log::warn!("UDP {spec}: cannot enlarge the receive buffer: {e}");
            }
            sockets.push(socket);
        }
        Ok(Self {
            sockets,
            buf: vec![0; usize::from(frame_size) + 1],
            ..Self::default()
        })
    }

    /// Bound addresses, for logs and tests.
    pub(crate) fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }
}

impl Server {
    /// Reads datagrams from socket `index` until `WouldBlock` or the budget.
    pub(crate) fn drain_udp(&mut self, index: usize) {
        let mut buf = std::mem::take(&mut self.udp.buf);
        let frame_size = buf.len().saturating_sub(1);
        let mut drained = false;
        for _ in 0..UDP_BUDGET {
            let Some(socket) = self.udp.sockets.get(index) else {
                drained = true;
                break;
            };
            let (n, src) = match socket.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.core
                        .warn("udp", format_args!("UDP receive failed: {e}"));
                    drained = true;
                    break;
                }
            };
            self.core.stats.udp_datagrams += 1;
            if n > frame_size {
                self.udp_drop(src, "longer than udp_frame_size");
                continue;
            }
            self.on_datagram(index, src, buf.get(..n).unwrap_or_default());
        }
        self.udp.buf = buf;
        if !drained && !self.udp.backlog.contains(&index) {
            self.udp.backlog.push(index);
        }
    }

    fn udp_drop(&mut self, src: SocketAddr, why: &str) {
        self.core.stats.udp_dropped += 1;
        self.core
            .warn("udp", format_args!("udp:{src}: datagram dropped: {why}"));
    }

    fn on_datagram(&mut self, socket: usize, src: SocketAddr, bytes: &[u8]) {
        let datagram = match decode_datagram(bytes) {
            Ok(d) => d,
            Err(e) => return self.udp_drop(src, &e.to_string()),
        };
        match datagram.auth {
            UdpAuth::Plain { login, password } => {
                let body = match decode_udp_body(datagram.body) {
                    Ok(b) => b,
                    Err(e) => return self.udp_drop(src, &e.to_string()),
                };
                if login.is_empty() && password.is_empty() {
                    if !self.core.config.allow_anonymous {
                        return self.udp_drop(src, "anonymous publishing is disabled");
                    }
                    return self.udp_publish(socket, src, ANONYMOUS, &body);
                }
                let Some(entry) = self.core.auth.passwords.get(login) else {
                    return self.udp_drop(src, &format!("unknown user {login:?}"));
                };
                if entry.unsupported_scheme().is_some() {
                    return self.udp_drop(src, &format!("user {login:?}: unsupported hash"));
                }
                if self.core.cache.contains(login, password, &entry.hash) {
                    return self.udp_publish(socket, src, login, &body);
                }
                self.park_for_bcrypt(socket, src, bytes, login, password);
            }
            UdpAuth::Encrypted {
                cipher,
                key_id,
                nonce,
                sealed,
            } => {
                let Some(key) = self.core.auth.keys.get(key_id) else {
                    return self.udp_drop(src, &format!("no key for {key_id:?}"));
                };
                let mut plain = std::mem::take(&mut self.udp.plain);
                match open_udp_block(key, cipher, &nonce, sealed, &mut plain) {
                    Ok(body) => match decode_udp_body(body) {
                        Ok(body) => {
                            let login = if key_id.is_empty() { ANONYMOUS } else { key_id };
                            self.udp_publish(socket, src, login, &body);
                        }
                        Err(e) => self.udp_drop(src, &e.to_string()),
                    },
                    Err(e) => self.udp_drop(src, &e.to_string()),
                }
                self.udp.plain = plain;
            }
        }
    }

    fn park_for_bcrypt(
        &mut self,
        socket: usize,
        src: SocketAddr,
        bytes: &[u8],
        login: &str,
        password: &str,
    ) {
        if self.udp.pending.len() >= MAX_PENDING {
            return self.udp_drop(src, "too many datagrams waiting for password verification");
        }
        let Some(hash) = self.core.auth.passwords.get(login).map(|e| e.hash.clone()) else {
            return;
        };
        self.udp.next_pending += 1;
        let id = self.udp.next_pending;
        let job = Job::Verify {
            ticket: Ticket::Datagram(id),
            login: login.into(),
            hash,
            password: password.into(),
        };
        if self.core.worker.submit(job).is_err() {
            return self.udp_drop(src, "auth worker unavailable");
        }
        self.udp.pending.insert(
            id,
            Pending {
                socket,
                src,
                datagram: bytes.to_vec(),
            },
        );
    }

    /// A bcrypt result for a parked datagram.
    pub(crate) fn on_datagram_verified(&mut self, id: u64, v: &Verified) {
        let (login, hash, password, ok) = (v.login.as_str(), &*v.hash, v.password.as_str(), v.ok);
        let Some(p) = self.udp.pending.remove(&id) else {
            return;
        };
        if !ok {
            return self.udp_drop(p.src, &format!("user {login:?}: wrong password"));
        }
        // Only cache against the hash that is current now (a reload may
        // have changed it while the datagram waited).
        if self
            .core
            .auth
            .passwords
            .get(login)
            .is_some_and(|e| &*e.hash == hash)
        {
            self.core.cache.insert(login, password, hash);
        }
        self.on_datagram(p.socket, p.src, &p.datagram);
    }

    /// Publishes an authenticated datagram and acks it if asked.
    fn udp_publish(&mut self, socket: usize, src: SocketAddr, login: &str, body: &UdpBody<'_>) {
        let code = self.udp_deliver(login, body);
        if code != Reply::Ok {
            debug!("udp:{src}: {login}: publish answered {code:?}");
        }
        if !body.op.wants_ack() {
            return;
        }
        let ack = &mut self.udp.ack;
        ack.clear();
        encode_udp_ack(code, ack);
        if let Some(s) = self.udp.sockets.get(socket) {
            // A full socket buffer loses the ack, like a lost datagram would.
            if s.send_to(ack, src).is_err() {
                self.core.stats.udp_dropped += 1;
            }
        }
    }

    fn udp_deliver(&mut self, login: &str, body: &UdpBody<'_>) -> Reply {
        let Ok(publish) = body.publish else {
            return Reply::Error;
        };
        let Some(acl) = self.core.auth.acl.get(login).cloned() else {
            return Reply::AccessDenied;
        };
        let depth = self.core.config.limits.max_topic_depth;
        let Ok(topic) = normalize_topic(publish.topic, depth) else {
            return Reply::Error;
        };
        if validate_publish_topic(&topic).is_err() {
            return Reply::Error;
        }
        if !acl.can_publish(&topic) {
            self.core.stats.access_denied += 1;
            return Reply::AccessDenied;
        }
        self.core.stats.udp_messages += 1;
        self.deliver(body.priority, &topic, publish.data, None);
        self.replicate(body.priority, &topic, publish.data);
        Reply::Ok
    }
}
