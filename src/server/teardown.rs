//! Ending connections: `close` logs once, counts, and tears a connection's
//! state down at once (session, subscriptions, token, data link, cluster
//! link) while what is queued is flushed or dropped by the close reason;
//! `remove_conn` takes the socket out of the poll and the slab once it is
//! flushed.

use log::{debug, info, warn};

use super::conn::{CloseReason, ConnId, Phase, Session};
use super::event_loop::Server;

impl Server {
    /// Ends a connection: logs once, tears down its session or data link,
    /// and either flushes what is queued (replies, pending messages) or drops
    /// it, then the connection is removed.
    pub(crate) fn close(&mut self, id: ConnId, reason: CloseReason) {
        let now = self.core.now;
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if matches!(conn.phase, Phase::Closing(_)) {
            return;
        }
        let phase_name = conn.phase.name();
        // Links log their own line (with the node's name) in `link_closed`.
        if reason.is_routine() || matches!(conn.phase, Phase::Link(_)) {
            debug!("{}: {phase_name}: {reason}", conn.peer);
        } else {
            let kind = match reason {
                CloseReason::SlowConsumer { .. } => "slow-consumer",
                CloseReason::LoginFailed(_) => "login",
                CloseReason::Timeout(_) => "timeout",
                _ => "close",
            };
            self.core
                .warn(kind, format_args!("{}: {phase_name}: {reason}", conn.peer));
        }
        match &reason {
            CloseReason::BadGreeting(_)
            | CloseReason::TlsUnavailable
            | CloseReason::PlainForbidden => {
                self.core.stats.bad_greetings += 1;
            }
            CloseReason::Protocol(_)
            | CloseReason::WildcardPublish
            | CloseReason::Unsupported(_) => {
                self.core.stats.protocol_errors += 1;
            }
            CloseReason::LoginFailed(_) => {
                self.core.stats.login_failures += 1;
                if let Some(ip) = conn.ip() {
                    if let Some((failures, block)) = self.core.throttle.failure(ip, now) {
                        warn!(
                            "{ip}: {failures} failed logins within a minute: refusing its connections for {}s",
                            block.as_secs()
                        );
                    }
                }
            }
            CloseReason::SlowConsumer { .. } => self.core.stats.slow_consumers += 1,
            _ => {}
        }
        if !reason.keeps_output() {
            conn.tx.clear(&mut self.core.tx_pool);
        }
        let link_reason = matches!(conn.phase, Phase::Link(_)).then(|| reason.to_string());
        let old = std::mem::replace(&mut conn.phase, Phase::Closing(reason));
        conn.phase_since = now;
        conn.rx.consume(conn.rx.len(), &mut self.core.rx_pool);
        conn.rx.release_if_empty(&mut self.core.rx_pool);
        self.core.schedule_flush(id, conn);
        self.core.rearm(id, conn);
        match old {
            Phase::Link(link) => self.link_closed(id, link, link_reason),
            Phase::Control(session) => self.end_session(id, *session),
            Phase::Data(link) => {
                if let Some(Phase::Control(session)) =
                    self.conns.get_mut(link.owner).map(|c| &mut c.phase)
                {
                    if session.data == Some(id) {
                        session.data = None;
                    }
                }
            }
            _ => {}
        }
    }

    /// Drops a session's subscriptions, token and counts, and closes its data
    /// socket.
    fn end_session(&mut self, id: ConnId, session: Session) {
        for mask in &session.masks {
            self.core.matcher.unsubscribe(mask, id);
        }
        self.core.tokens.remove(&session.token);
        self.core.sessions -= 1;
        if let Some(n) = self.core.per_user.get_mut(&session.login) {
            *n -= 1;
            if *n == 0 {
                self.core.per_user.remove(&session.login);
            }
        }
        if let Some(data) = session.data {
            self.close(data, CloseReason::SessionEnded);
        }
    }

    pub(crate) fn remove_conn(&mut self, id: ConnId) {
        if !self.conns.contains(id) {
            return;
        }
        let mut conn = self.conns.remove(id);
        let _ = self.poll.registry().deregister(&mut conn.stream);
        conn.tx.clear(&mut self.core.tx_pool);
        if let Some(ip) = conn.counted_ip {
            if let Some(n) = self.core.per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.core.per_ip.remove(&ip);
                }
            }
        }
    }

    pub(crate) fn close_all(&mut self) {
        let ids: Vec<ConnId> = self.conns.iter().map(|(id, _)| id).collect();
        for id in &ids {
            self.close(*id, CloseReason::Shutdown);
        }
        for id in ids {
            self.remove_conn(id);
        }
        self.listeners.clear();
        self.stats_listener = None;
        info!("stopped");
    }
}
