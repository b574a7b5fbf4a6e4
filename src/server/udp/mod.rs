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
//!
//! The sockets are read here (`Udp::drain`, called by the loop); a
//! datagram's handling needs only the handler context.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

use log::debug;
use mio::net::UdpSocket;
use psrt_protocol::{
    Reply, UdpAuth, UdpBody, decode_datagram, decode_udp_body, encode_udp_ack, open_udp_block,
};

use crate::server::auth::ANONYMOUS;
use crate::server::auth::login::{self, Verdict};
use crate::server::auth::worker::{Ticket, Verified};
use crate::server::core::Cx;
use crate::server::pubsub::pipeline::{self, Message, Origin};

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
            if let Err(e) = crate::server::sys::set_recv_buffer(&socket, SOCKET_RCVBUF) {
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

impl Udp {
    /// Reads datagrams from socket `index` until `WouldBlock` or the budget.
    pub(crate) fn drain(&mut self, cx: &mut Cx, index: usize) {
        let mut buf = std::mem::take(&mut self.buf);
        let frame_size = buf.len().saturating_sub(1);
        let mut drained = false;
        for _ in 0..UDP_BUDGET {
            let Some(socket) = self.sockets.get(index) else {
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
                    cx.core.warn("udp", format_args!("UDP receive failed: {e}"));
                    drained = true;
                    break;
                }
            };
            cx.core.stats.udp_datagrams += 1;
            if n > frame_size {
                drop_datagram(cx, src, "longer than udp_frame_size");
                continue;
            }
            self.on_datagram(cx, index, src, buf.get(..n).unwrap_or_default());
        }
        self.buf = buf;
        if !drained && !self.backlog.contains(&index) {
            self.backlog.push(index);
        }
    }

    fn on_datagram(&mut self, cx: &mut Cx, socket: usize, src: SocketAddr, bytes: &[u8]) {
        let datagram = match decode_datagram(bytes) {
            Ok(d) => d,
            Err(e) => return drop_datagram(cx, src, &e.to_string()),
        };
        match datagram.auth {
            UdpAuth::Plain { login, password } => {
                let body = match decode_udp_body(datagram.body) {
                    Ok(b) => b,
                    Err(e) => return drop_datagram(cx, src, &e.to_string()),
                };
                if login.is_empty() && password.is_empty() {
                    if !cx.core.config.allow_anonymous {
                        return drop_datagram(cx, src, "anonymous publishing is disabled");
                    }
                    return self.publish(cx, socket, src, ANONYMOUS, &body);
                }
                let cached = login::is_cached(&cx.core.auth, &cx.core.cache, login, password);
                if !cached && self.pending.len() >= MAX_PENDING {
                    return drop_datagram(
                        cx,
                        src,
                        "too many datagrams waiting for password verification",
                    );
                }
                let ticket = Ticket::Datagram(self.next_pending + 1);
                let core = &mut *cx.core;
                match login::check(
                    &core.auth,
                    &core.cache,
                    &mut core.worker,
                    ticket,
                    login,
                    password,
                ) {
                    Verdict::Granted(_) => self.publish(cx, socket, src, login, &body),
                    Verdict::Denied(why) => drop_datagram(cx, src, &why),
                    Verdict::Busy => drop_datagram(cx, src, "too many password checks pending"),
                    Verdict::Pending => {
                        self.next_pending += 1;
                        let datagram = bytes.to_vec();
                        self.pending.insert(
                            self.next_pending,
                            Pending {
                                socket,
                                src,
                                datagram,
                            },
                        );
                    }
                }
            }
            UdpAuth::Encrypted {
                cipher,
                key_id,
                nonce,
                sealed,
            } => {
                let Some(key) = cx.core.auth.keys.get(key_id) else {
                    return drop_datagram(cx, src, &format!("no key for {key_id:?}"));
                };
                let mut plain = std::mem::take(&mut self.plain);
                match open_udp_block(key, cipher, &nonce, sealed, &mut plain) {
                    Ok(body) => match decode_udp_body(body) {
                        Ok(body) => {
                            let login = if key_id.is_empty() { ANONYMOUS } else { key_id };
                            self.publish(cx, socket, src, login, &body);
                        }
                        Err(e) => drop_datagram(cx, src, &e.to_string()),
                    },
                    Err(e) => drop_datagram(cx, src, &e.to_string()),
                }
                self.plain = plain;
            }
        }
    }

    /// A bcrypt result for a parked datagram.
    pub(crate) fn on_verified(&mut self, cx: &mut Cx, id: u64, v: Verified) {
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        let core = &mut *cx.core;
        match login::finish(&core.auth, &mut core.cache, &mut core.worker, v) {
            // Now cached: handled like any later datagram.
            Verdict::Granted(_) => self.on_datagram(cx, p.socket, p.src, &p.datagram),
            Verdict::Pending => {
                self.pending.insert(id, p);
            }
            Verdict::Denied(why) => drop_datagram(cx, p.src, &why),
            Verdict::Busy => drop_datagram(cx, p.src, "too many password checks pending"),
        }
    }

    /// Publishes an authenticated datagram and acks it if asked.
    fn publish(
        &mut self,
        cx: &mut Cx,
        socket: usize,
        src: SocketAddr,
        login: &str,
        body: &UdpBody<'_>,
    ) {
        let code = publish_body(cx, login, body);
        if code != Reply::Ok {
            debug!("udp:{src}: {login}: publish answered {code:?}");
        }
        if !body.op.wants_ack() {
            return;
        }
        let ack = &mut self.ack;
        ack.clear();
        encode_udp_ack(code, ack);
        if let Some(s) = self.sockets.get(socket) {
            // A full socket buffer loses the ack, like a lost datagram would.
            if s.send_to(ack, src).is_err() {
                cx.core.stats.udp_dropped += 1;
            }
        }
    }
}

fn drop_datagram(cx: &mut Cx, src: SocketAddr, why: &str) {
    cx.core.stats.udp_dropped += 1;
    cx.core
        .warn("udp", format_args!("udp:{src}: datagram dropped: {why}"));
}

/// The publish of an authenticated datagram, through the one pipeline.
fn publish_body(cx: &mut Cx, login: &str, body: &UdpBody<'_>) -> Reply {
    let Ok(publish) = body.publish else {
        return Reply::Error;
    };
    let Some(acl) = cx.core.auth.acl.get(login).cloned() else {
        return Reply::AccessDenied;
    };
    let msg = Message {
        priority: body.priority,
        topic: publish.topic,
        message: publish.data,
        raw: None,
        shared: None,
        qos: psrt_protocol::mqtt::QoS::AtMostOnce,
    };
    match pipeline::publish(cx, Origin::Udp(&acl), msg) {
        Ok(()) => Reply::Ok,
        Err(r) => r.reply(),
    }
}
