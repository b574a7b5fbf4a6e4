//! The loop's socket work: accepting every waiting connection (with the
//! refusals that apply before a byte is read: the socket cap, the login
//! throttle, per-address connections, and per-address connections not
//! logged in yet), reading until `WouldBlock` or the budget (a data
//! socket's end of stream only stops reading: it is half-closed, not gone),
//! the one write path (flush), timers, and taking sockets out of the poll
//! and the slab. What the bytes mean is asked of `dispatch`.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::{Interest, Token};

use super::{FIRST_CONN, Server};
use crate::server::bridge::phase::BridgeStep;
use crate::server::conn::{CloseReason, ConnId, Flushed, Peer, Stream, Transport};
use crate::server::dispatch;
use crate::server::link::phase::LinkStep;
use crate::server::phase::{Conn, ListenerKind, Phase, wants_input};
use crate::server::pubsub::outbox;

/// Input read from one connection per loop iteration before others get a turn.
const READ_BUDGET: usize = 256 * 1024;
/// How long accepting pauses after the process ran out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Connections beyond the session limit allowed in the handshake phases.
const HANDSHAKE_HEADROOM: usize = 256;

impl Server {
    /// Accepts every waiting connection of a PSRT listener (`Some(index)`)
    /// or of the stats listener (`None`).
    pub(super) fn accept_from(&mut self, index: Option<usize>) {
        if self.accept_paused_until.is_some() {
            return;
        }
        let (kind, tls) = match index {
            Some(i) => self
                .listener_kinds
                .get(i)
                .copied()
                .unwrap_or((ListenerKind::Psrt, false)),
            None => (ListenerKind::Http, false),
        };
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
            self.add_conn(stream, peer, kind, tls);
        }
    }

    fn add_conn(&mut self, stream: Stream, peer: Peer, kind: ListenerKind, tls: bool) {
        let core = &mut self.core;
        let limits = &core.config;
        let per_ip_full = peer.ip().is_some_and(|ip| {
            limits.max_clients_per_ip > 0
                && core.per_ip.get(&ip).copied().unwrap_or(0) >= limits.max_clients_per_ip
        });
        let refuse = if limits.max_clients > 0
            && self.conns.len() >= limits.max_clients.saturating_mul(2) + HANDSHAKE_HEADROOM
        {
            Some("max_clients (sockets)")
        } else if let Some(left) = peer
            .ip()
            .filter(|_| kind != ListenerKind::Http)
            .and_then(|ip| core.throttle.blocked(ip, core.now))
        {
            core.stats.auth_blocked += 1;
            core.warn(
                "auth-block",
                format_args!(
                    "{peer}: refused for {}s more after repeated failed logins",
                    left.as_secs() + 1
                ),
            );
            return;
        } else if per_ip_full {
            Some("max_clients_per_ip")
        } else if kind != ListenerKind::Http && core.prelogin_full(&peer) {
            core.stats.prelogin_refusals += 1;
            Some("max_handshakes_per_ip (connections not logged in yet)")
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
        let id = match self.insert_conn(stream, peer, kind.first_phase()) {
            Ok(id) => id,
            Err(e) => return warn!("cannot register a new connection: {e}"),
        };
        if let Some(ip) = ip {
            *self.core.per_ip.entry(ip).or_insert(0) += 1;
            self.conns[id].counted_ip = true;
        }
        if kind != ListenerKind::Http {
            self.core.handshake_started(&mut self.conns[id]);
        }
        if tls {
            // An MQTT TLS listener: the handshake comes first.
            dispatch::start_tls(&mut self.cx(), id);
        }
    }

    /// Registers a socket with the poll and puts it in the slab in `phase`,
    /// with its first deadline armed (accepted connections and outgoing
    /// replication links alike).
    pub(super) fn insert_conn(
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
        let conn = entry.insert(Conn::new(stream, peer, core.next_serial, phase, core.now));
        core.rearm(id, conn);
        Ok(id)
    }

    /// Takes a flushed (or lingering) closed connection out of the poll and
    /// the slab.
    fn remove_conn(&mut self, id: ConnId) {
        if !self.conns.contains(id) {
            return;
        }
        let mut conn = self.conns.remove(id);
        let _ = self.poll.registry().deregister(&mut conn.stream);
        // What the linger could not write is dropped.
        outbox::drop_queue(&mut self.core.stats, &mut conn, &mut self.core.tx_pool);
        if let (true, Some(ip)) = (conn.counted_ip, conn.ip()) {
            if let Some(n) = self.core.per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.core.per_ip.remove(&ip);
                }
            }
        }
    }

    /// Closes and removes every connection (shutdown).
    pub(super) fn close_all(&mut self) {
        let ids: Vec<ConnId> = self.conns.iter().map(|(id, _)| id).collect();
        for id in &ids {
            dispatch::close(&mut self.cx(), *id, CloseReason::Shutdown);
        }
        dispatch::apply_effects(&mut self.cx());
        for id in ids {
            self.remove_conn(id);
        }
        self.listeners.clear();
        self.stats_listener = None;
        info!("stopped");
    }

    pub(super) fn on_writable(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.writable = true;
        if let Phase::Link(link) = conn.phase {
            if link.step == LinkStep::Connecting {
                return self.on_link_connected(id, link.node);
            }
        }
        if let Phase::Bridge(b) = conn.phase {
            if b.step == BridgeStep::Connecting {
                return self.on_bridge_connected(id, b.bridge);
            }
        }
        if conn.has_output() {
            self.core.schedule_flush(id, conn);
        }
    }

    /// Reads until `WouldBlock`, the input budget, or a pause, decoding as it
    /// goes.
    pub(super) fn on_readable(&mut self, id: ConnId) {
        let mut read = 0;
        loop {
            let Some(conn) = self.conns.get_mut(id) else {
                return;
            };
            if !wants_input(conn) {
                if matches!(conn.phase, Phase::Psrt(_)) {
                    self.drain_unread_input(id);
                }
                return;
            }
            // A plain socket that gave fewer bytes than there was room for
            // is empty now; epoll (edge-triggered) reports the next arrival,
            // so the read that would only say EAGAIN is skipped. (TLS may
            // hold decrypted bytes back: it reads until WouldBlock.)
            let mut drained = false;
            let closed = match conn.rx.read_from(&mut conn.stream, &mut self.core.rx_pool) {
                Ok(got) if got.n == 0 => Some(CloseReason::PeerClosed),
                Ok(got) => {
                    read += got.n;
                    self.turn_read += got.n;
                    drained = got.short && matches!(conn.stream, Transport::Plain(_));
                    None
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.rx.release_if_empty(&mut self.core.rx_pool);
                    if matches!(conn.stream, Transport::Tls(_)) {
                        dispatch::on_tls_progress(&mut self.cx(), id);
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Some(CloseReason::read_error(&e)),
            };
            let mut cx = self.cx();
            if let Some(reason) = closed {
                dispatch::close(&mut cx, id, reason);
                return dispatch::apply_effects(&mut cx);
            }
            dispatch::on_bytes_read(&mut cx, id);
            dispatch::process_input(&mut cx, id);
            if drained {
                return;
            }
            // The budget bounds decoding work; reading the rest of one large
            // frame is only a copy, so it is not cut short (fewer loop turns
            // per megabyte message).
            if read >= READ_BUDGET {
                if let Some(conn) = self.conns.get_mut(id) {
                    if conn.rx.is_assembling() {
                        continue;
                    }
                    self.core.schedule_input(id, conn);
                }
                return;
            }
        }
    }

    /// A socket whose phase reads nothing (a data socket after its hello, a
    /// control socket waiting for bcrypt): input is discarded only for data
    /// sockets. A data socket's end of stream is a half-close (the client
    /// shut down its sending side, which it never uses): reading stops and
    /// the socket is still written to. A peer that is gone shows up as a
    /// read or write error (beacons make sure something is written).
    fn drain_unread_input(&mut self, id: ConnId) {
        let mut scratch = [0u8; 4096];
        let mut budget = READ_BUDGET;
        while budget > 0 {
            let Some(conn) = self.conns.get_mut(id) else {
                return;
            };
            if conn.input_ended
                || !matches!(
                    conn.phase,
                    Phase::Psrt(crate::server::psrt::state::Phase::Data(_))
                )
            {
                return;
            }
            let reason = match conn.stream.read(&mut scratch) {
                Ok(0) => {
                    // Edge-triggered: no new readable event comes for an
                    // ended stream, and the flag skips the read when one
                    // arrives with a writable edge.
                    debug!("{}: data socket half-closed by the client", conn.peer);
                    conn.input_ended = true;
                    return;
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => CloseReason::Io(e.kind()),
            };
            let mut cx = self.cx();
            dispatch::close(&mut cx, id, reason);
            return dispatch::apply_effects(&mut cx);
        }
        if let Some(conn) = self.conns.get_mut(id) {
            self.core.schedule_input(id, conn);
        }
    }

    pub(super) fn resume_ready(&mut self) {
        let ready = std::mem::take(&mut self.core.ready_list);
        for &id in &ready {
            let Some(conn) = self.conns.get_mut(id) else {
                continue;
            };
            if !conn.in_ready_list {
                continue;
            }
            conn.in_ready_list = false;
            dispatch::process_input(&mut self.cx(), id);
            self.on_readable(id);
        }
    }

    /// Replies the input just handled queued go out now, before the next
    /// ready connection is read: a client waiting for its one-byte answer
    /// gets it one read (or a whole batch of them) sooner, and clients that
    /// happen to send together are not answered in lockstep. Pushes to
    /// subscribers still wait for the end of the turn, batched — except a
    /// large push, which is on the reply list ahead of its publisher's
    /// reply (`pubsub::deliver::PUSH_FIRST_MIN`).
    pub(super) fn flush_replies(&mut self) {
        if self.core.reply_list.is_empty() {
            return;
        }
        for id in std::mem::take(&mut self.core.reply_list) {
            self.flush_one(id);
        }
    }

    /// Writes every connection on the flush list once and reaps closing
    /// connections that have nothing left to write.
    /// Replies go first: a requester waiting for its one-byte answer is
    /// not kept waiting behind the pushes its request caused (a large push
    /// is on the reply list, ahead of its reply).
    pub(super) fn flush_pending(&mut self) {
        loop {
            let list = if !self.core.reply_list.is_empty() {
                std::mem::take(&mut self.core.reply_list)
            } else if !self.core.flush_list.is_empty() {
                std::mem::take(&mut self.core.flush_list)
            } else {
                return;
            };
            for id in list {
                self.flush_one(id);
            }
        }
    }

    /// The one write path: what a connection has queued goes out with one
    /// `write`/`writev` (TLS records after it); then the outbox's message
    /// limit, and a closing connection's removal once it is empty.
    fn flush_one(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if !conn.in_flush_list {
            return;
        }
        conn.in_flush_list = false;
        if conn.writable && conn.has_output() && !self.write_one(id) {
            return;
        }
        let conn = &mut self.conns[id];
        if let Some(reason) = outbox::after_flush(conn, self.core.config.data_queue) {
            let mut cx = self.cx();
            dispatch::close(&mut cx, id, reason);
            return dispatch::apply_effects(&mut cx);
        }
        if let Phase::Closing(reason) = &conn.phase {
            if conn.tx.is_empty() {
                // Everything queued went out: end a TLS session cleanly, and
                // close once its last record is written too.
                if reason.keeps_output() {
                    conn.stream.close_notify();
                    if !conn.stream.flush_pending().unwrap_or(true) {
                        conn.writable = false;
                        return;
                    }
                }
                if !conn.stream.has_pending_output() {
                    self.remove_conn(id);
                }
            }
        }
    }

    /// Writes what `id` has queued (it is writable and has output). False
    /// if the write failed and the connection was closed.
    fn write_one(&mut self, id: ConnId) -> bool {
        let now = self.core.now;
        let messages = self.conns[id].tx.messages();
        if messages > 0 {
            // Counted messages: their latency ends at this write (one clock
            // read per write, not per message).
            let now_us = self.core.clock_us(Instant::now());
            outbox::before_write(&mut self.cx(), id, now_us);
        }
        let conn = &mut self.conns[id];
        let paused = !wants_input(conn);
        let before = conn.tx.len();
        let written = conn
            .tx
            .write_to(&mut conn.stream, &mut self.core.tx_pool)
            .and_then(|flushed| match flushed {
                // Plaintext all taken: TLS ciphertext may still wait.
                Flushed::Drained if !conn.stream.flush_pending()? => Ok(Flushed::Blocked),
                other => Ok(other),
            });
        let flushed = match written {
            Ok(flushed) => flushed,
            Err(e) => {
                let mut cx = self.cx();
                dispatch::close(&mut cx, id, CloseReason::Io(e.kind()));
                dispatch::apply_effects(&mut cx);
                return false;
            }
        };
        let mqtt = matches!(conn.phase, Phase::Mqtt(_));
        outbox::count_written(&mut self.core.stats, &mut self.core.tx_pool, mqtt);
        let done = messages - conn.tx.messages();
        if conn.tx.len() < before {
            self.turn_wrote = true;
            conn.last_write = now;
        }
        if flushed == Flushed::Blocked {
            conn.writable = false;
        }
        // Blocked: the write-stall deadline. Drained: a data socket's next
        // beacon, earlier than the stall deadline armed while its queue was
        // not empty.
        self.core.rearm(id, conn);
        if paused && wants_input(conn) {
            self.core.schedule_input(id, conn);
        }
        if done > 0 {
            outbox::credit(&mut self.cx(), id, done as u64, 0);
        }
        if matches!(self.conns[id].phase, Phase::Bridge(_)) {
            // A QoS 0 bridge sends more once its queue has drained.
            dispatch::on_written(&mut self.cx(), id);
        }
        true
    }

    /// After the flush pass: all data queues together within
    /// `max_queued_bytes`.
    pub(super) fn enforce_queue_cap(&mut self) {
        let mut cx = self.cx();
        if outbox::enforce_cap(&mut cx) > 0 {
            dispatch::apply_effects(&mut cx);
            self.flush_pending();
        }
    }

    pub(super) fn fire_timers(&mut self) {
        let now = self.core.now;
        while let Some((id, serial, at)) = self.core.timers.pop_due(now) {
            let Some(conn) = self.conns.get_mut(id) else {
                continue;
            };
            if conn.serial != serial || conn.armed != Some(at) {
                continue;
            }
            conn.armed = None;
            match crate::server::phase::due(conn, self.core.config.timeout) {
                // The linger (or a write stall) is over: whatever is left of
                // a closing connection is dropped.
                Some(due) if due <= now && matches!(conn.phase, Phase::Closing(_)) => {
                    self.remove_conn(id)
                }
                Some(due) if due <= now => dispatch::on_due(&mut self.cx(), id),
                Some(due) => self.core.timers.arm(id, serial, due, &mut conn.armed),
                None => {}
            }
        }
    }

    /// Reads datagrams from UDP socket `index`.
    pub(super) fn drain_udp(&mut self, index: usize) {
        let mut cx = crate::server::core::Cx {
            core: &mut self.core,
            conns: &mut self.conns,
        };
        self.udp.drain(&mut cx, index);
        dispatch::apply_effects(&mut cx);
    }
}
