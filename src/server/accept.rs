//! Taking new connections: accepting on the PSRT and stats listeners (with
//! the per-IP, session and brute-force refusals that apply before a byte is
//! read), and putting a socket — accepted or an outgoing replication link —
//! into the poll and the slab.

use std::io;

use log::{debug, warn};
use mio::{Interest, Token};

use super::conn::{Conn, ConnId, Peer, Phase, Stream};
use super::event_loop::{ACCEPT_PAUSE, FIRST_CONN, HANDSHAKE_HEADROOM, Server};

impl Server {
    pub(crate) fn accept_all(&mut self, index: usize) {
        self.accept_from(Some(index));
    }

    pub(crate) fn accept_stats(&mut self) {
        self.accept_from(None);
    }

    /// Accepts every waiting connection of a PSRT listener (`Some(index)`)
    /// or of the stats listener (`None`).
    fn accept_from(&mut self, index: Option<usize>) {
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            let listener = match index {
                Some(i) => self.listeners.get(i),
                None => self.stats_listener.as_ref(),
            };
            let Some(listener) = listener else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    self.core.warn(
                        "accept",
                        format_args!("cannot accept: {e}; pausing accepts for {ACCEPT_PAUSE:?}"),
                    );
                    self.accept_paused_until = Some(self.core.now + ACCEPT_PAUSE);
                    return;
                }
                Err(e) => {
                    self.core.warn("accept", format_args!("accept failed: {e}"));
                    continue;
                }
            };
            self.add_conn(stream, peer, index.is_none());
        }
    }

    fn add_conn(&mut self, stream: Stream, peer: Peer, http: bool) {
        let core = &mut self.core;
        let limits = &core.config;
        let refuse = if limits.max_clients > 0
            && self.conns.len() >= limits.max_clients.saturating_mul(2) + HANDSHAKE_HEADROOM
        {
            Some("max_clients (sockets)")
        } else if let Some(left) = peer.ip().and_then(|ip| core.throttle.blocked(ip, core.now)) {
            core.stats.auth_blocked += 1;
            core.warn(
                "auth-block",
                format_args!(
                    "{peer}: refused for {}s more after repeated failed logins",
                    left.as_secs() + 1
                ),
            );
            return;
        } else if let (Some(ip), true) = (peer.ip(), limits.max_clients_per_ip > 0) {
            let n = core.per_ip.get(&ip).copied().unwrap_or(0);
            (n >= limits.max_clients_per_ip).then_some("max_clients_per_ip")
        } else {
            None
        };
        if let Some(which) = refuse {
            core.stats.limit_refusals += 1;
            core.warn("limit", format_args!("{peer}: refused, {which} reached"));
            return;
        }
        let ip = peer.ip();
        debug!("{peer}: connected");
        let phase = if http {
            Phase::HttpRequest
        } else {
            Phase::Greeting
        };
        let id = match self.insert_conn(stream, peer, phase) {
            Ok(id) => id,
            Err(e) => return warn!("cannot register a new connection: {e}"),
        };
        if let Some(ip) = ip {
            *self.core.per_ip.entry(ip).or_insert(0) += 1;
            self.conns[id].counted_ip = Some(ip);
        }
    }

    /// Registers a socket with the poll and puts it in the slab in `phase`,
    /// with its first deadline armed (accepted connections and outgoing
    /// replication links alike).
    pub(crate) fn insert_conn(
        &mut self,
        mut stream: Stream,
        peer: Peer,
        phase: Phase,
    ) -> io::Result<ConnId> {
        let entry = self.conns.vacant_entry();
        let id = entry.key();
        self.poll.registry().register(
            &mut stream,
            Token(FIRST_CONN + id),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let core = &mut self.core;
        core.next_serial += 1;
        let conn = entry.insert(Conn::new(stream, peer, core.next_serial, core.now));
        conn.set_phase(phase, core.now);
        core.rearm(id, conn);
        Ok(id)
    }
}
