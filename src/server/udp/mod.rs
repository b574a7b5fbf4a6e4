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
//!   only (*), in the worker's bulk queue (logins go first): the datagrams
//!   of that (login, password) that arrive meanwhile wait with the one
//!   check, bounded in bytes (`parked`), and are published in arrival order
//!   if it succeeds, dropped if it fails; later ones hit the login cache,
//!   and a wrong password seen within the last minute is dropped without
//!   bcrypt. An unknown login is dropped at once: no decoy check as for
//!   TCP logins, since nothing is sent back there is no timing to observe;
//! * an AES-GCM datagram whose nonce its key used within the last
//!   `udp_replay_window` datagrams is a replay (*): counted in
//!   `udp_replayed`, not acked, not delivered (`replay`).
//!
//! The sockets are read here (`Udp::drain`, called by the loop); a
//! datagram's handling needs only the handler context.

mod parked;
mod replay;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

use log::debug;
use mio::net::UdpSocket;
use psrt_protocol::{
    Reply, UdpAuth, UdpBody, decode_datagram, decode_udp_body, encode_udp_ack, open_udp_block,
};

use crate::server::auth::login::Verdict;
use crate::server::auth::worker::{Ticket, Verified};
use crate::server::auth::{ANONYMOUS, Keys};
use crate::server::core::Cx;
use crate::server::pubsub::pipeline::{self, Message, Origin};
use parked::{Datagram, Full, Parked};
use replay::Replay;

/// Datagrams read from one socket per loop iteration before others get a turn.
pub(crate) const UDP_BUDGET: usize = 1024;
/// Receive buffer asked of the kernel per UDP socket, to ride out bursts
/// (capped by `net.core.rmem_max`).
const SOCKET_RCVBUF: usize = 4 * 1024 * 1024;

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
    /// Plain-auth datagrams waiting for their password check.
    parked: Parked,
    /// Recent AES-GCM nonces per key.
    replay: Replay,
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
                self.plain_auth(cx, (socket, src, bytes), (login, password), &body);
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
                let window = cx.core.config.udp_replay_window;
                match open_udp_block(key, cipher, &nonce, sealed, &mut plain) {
                    // Authentic: only now is its nonce recorded.
                    Ok(_) if !self.replay.fresh(key_id, nonce, window) => {
                        cx.core.stats.udp_replayed += 1;
                        cx.core.warn(
                            "udp-replay",
                            format_args!("udp:{src}: datagram dropped: a replay (key {key_id:?})"),
                        );
                    }
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

    /// A plain-auth datagram of a named login: published at once if the
    /// login cache vouches for it, else it waits with its pair's check
    /// (started now if none is running).
    fn plain_auth(
        &mut self,
        cx: &mut Cx,
        (socket, src, bytes): (usize, SocketAddr, &[u8]),
        (login, password): (&str, &str),
        body: &UdpBody<'_>,
    ) {
        let parked = || Datagram {
            socket,
            src,
            bytes: bytes.into(),
        };
        if !self.parked.is_empty() {
            let pair = cx.core.cache.pair(login, password);
            if self.parked.waiting(&pair) {
                return self.park(cx, &pair, parked());
            }
        }
        let ticket = Ticket::Datagram(self.parked.next_id());
        match cx.core.check_password(ticket, login, password) {
            Verdict::Granted(_) => self.publish(cx, socket, src, login, body),
            Verdict::Denied(why) => drop_datagram(cx, src, &why),
            Verdict::Busy => drop_datagram(cx, src, "too many password checks pending"),
            Verdict::Pending => {
                let pair = cx.core.cache.pair(login, password);
                self.parked.open(pair);
                self.park(cx, &pair, parked());
            }
        }
    }

    /// Queues a datagram behind its pair's check, or drops it past a bound.
    fn park(&mut self, cx: &mut Cx, pair: &[u8; 32], d: Datagram) {
        let config = &cx.core.config;
        let (per_check, total) = (config.udp_pending_bytes_per_check, config.udp_pending_bytes);
        let src = d.src;
        match self.parked.push(pair, d, per_check, total) {
            Ok(()) => {}
            Err(Full::Pair) => drop_datagram(
                cx,
                src,
                "udp_pending_bytes_per_check reached: too much waiting for this password check",
            ),
            Err(Full::Total) => drop_datagram(
                cx,
                src,
                "udp_pending_bytes reached: too much waiting for password checks",
            ),
        }
    }

    /// A bcrypt result for a pair's parked datagrams: published in arrival
    /// order (now cached, each is handled like a later datagram), or dropped.
    pub(crate) fn on_verified(&mut self, cx: &mut Cx, id: u64, v: Verified) {
        let pair = cx.core.cache.pair(&v.login, &v.password);
        let verdict = cx.core.finish_password(v);
        if verdict == Verdict::Pending {
            return; // checked again against a reloaded hash: still waiting
        }
        let Some(datagrams) = self.parked.close(&pair, id) else {
            return;
        };
        let why = match verdict {
            Verdict::Granted(_) => {
                for d in datagrams {
                    self.on_datagram(cx, d.socket, d.src, &d.bytes);
                }
                return;
            }
            Verdict::Denied(why) => why,
            Verdict::Busy | Verdict::Pending => "too many password checks pending".into(),
        };
        let Some(first) = datagrams.front() else {
            return;
        };
        let n = datagrams.len();
        cx.core.stats.udp_dropped += n as u64;
        cx.core.warn(
            "udp",
            format_args!("udp:{}: {n} datagram(s) dropped: {why}", first.src),
        );
    }

    /// After a reload: forgets the replay windows of keys that are gone.
    pub(crate) fn after_reload(&mut self, keys: &Keys) {
        self.replay.retain(|name| keys.get(name).is_some());
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

#[cfg(test)]
mod tests;
