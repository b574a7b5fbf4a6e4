//! Input dispatch by phase, and the handshake phases: greeting, login (with
//! bcrypt handed to the worker and the verified-login cache), session
//! creation, and binding a data socket to its session by token.

use std::sync::Arc;

use log::debug;
use psrt_protocol::{
    CommMode, DataHello, DecodeError, Decoded, Greeting, Login, Reply, StreamKind, TOKEN_LEN,
    Token, decode_data_hello, decode_greeting, decode_login, encode_greeting_reply,
};
use ring::rand::SecureRandom;

use super::auth::worker::{Job, Ticket, Verified};
use super::auth::{ANONYMOUS, AclEntry};
use super::conn::{CloseReason, ConnId, DataLink, Phase, Session};
use super::event_loop::Server;

/// Password checks waiting for bcrypt at once (logins and stats requests);
/// more are refused.
pub(crate) const MAX_PENDING_AUTH: usize = 256;
/// Shortest beacon interval, whatever timeout the client declares.
const MIN_BEACON_MS: u64 = 200;

/// What a phase handler did with the front of the input.
pub(crate) enum Step {
    /// Consumed this many bytes.
    Used(usize),
    /// Needs at least this many more bytes.
    Need(usize),
}

/// Maps a decoder outcome: an incomplete frame becomes `Need`, an error a
/// protocol close.
pub(crate) fn frame<T>(
    decoded: Result<Decoded<T>, DecodeError>,
) -> Result<Result<(T, usize), Step>, CloseReason> {
    match decoded {
        Ok(Decoded::Frame { frame, len }) => Ok(Ok((frame, len))),
        Ok(Decoded::Incomplete { need }) => Ok(Err(Step::Need(need))),
        Err(e) => Err(CloseReason::Protocol(e)),
    }
}

impl Server {
    /// Decodes and handles every complete frame in a connection's input, as
    /// long as its phase wants input.
    pub(crate) fn process_input(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let mut rx = std::mem::take(&mut conn.rx);
        let mut handled = false;
        loop {
            let Some(conn) = self.conns.get(id) else {
                return;
            };
            let data = rx.data();
            if data.is_empty() || !conn.wants_input() {
                break;
            }
            let shared = rx.shared_frame().map(|(buf, len)| (buf.clone(), len));
            let step = match &conn.phase {
                Phase::Greeting => self.on_greeting(id, data),
                Phase::TlsHandshake(_) => self.on_tls_early(id, data),
                Phase::Login => self.on_login(id, data),
                Phase::Control(_) => self.on_control(id, data, shared.as_ref()),
                Phase::DataHello => self.on_data_hello(id, data),
                Phase::HttpRequest => self.on_http(id, data),
                Phase::Link(_) => self.on_link_input(id, data),
                _ => break,
            };
            match step {
                Ok(Step::Used(n)) => {
                    rx.consume(n, &mut self.core.rx_pool);
                    handled = true;
                }
                Ok(Step::Need(need)) => {
                    rx.reserve(need, &mut self.core.rx_pool);
                    break;
                }
                Err(reason) => {
                    self.close(id, reason);
                    break;
                }
            }
        }
        let now = self.core.now;
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if matches!(conn.phase, Phase::Closing(_)) {
            rx.consume(rx.len(), &mut self.core.rx_pool);
            rx.release_if_empty(&mut self.core.rx_pool);
            return;
        }
        conn.partial_since = if rx.is_empty() {
            None
        } else {
            conn.partial_since.or(Some(now))
        };
        if handled {
            conn.last_request = now;
        }
        rx.release_if_empty(&mut self.core.rx_pool);
        conn.rx = rx;
        self.core.rearm(id, conn);
    }

    fn on_greeting(&mut self, id: ConnId, data: &[u8]) -> Result<Step, CloseReason> {
        let (Greeting { kind, comm }, len) = match decode_greeting(data) {
            Ok(Decoded::Frame { frame, len }) => (frame, len),
            Ok(Decoded::Incomplete { need }) => return Ok(Step::Need(need)),
            Err(e) => return Err(CloseReason::BadGreeting(e)),
        };
        let now = self.core.now;
        let conn = &mut self.conns[id];
        // Unix sockets have no TLS: the reference ignores the byte there.
        if !conn.peer.is_unix() {
            match comm {
                CommMode::Tls => {
                    let Some(config) = self.core.auth.tls.clone() else {
                        return Err(CloseReason::TlsUnavailable);
                    };
                    let session = rustls::ServerConnection::new(config)
                        .map_err(|e| CloseReason::Tls(e.to_string()))?;
                    conn.stream
                        .start_tls(session.into(), &[])
                        .map_err(|e| CloseReason::Tls(e.to_string()))?;
                    conn.set_phase(Phase::TlsHandshake(kind), now);
                    return Ok(Step::Used(len));
                }
                CommMode::Plain if !self.core.config.allow_no_tls => {
                    return Err(CloseReason::PlainForbidden);
                }
                CommMode::Plain => {}
            }
        }
        self.greeting_done(id, kind);
        Ok(Step::Used(len))
    }

    /// Sends the greeting reply and waits for the login or the data hello.
    fn greeting_done(&mut self, id: ConnId, kind: StreamKind) {
        let now = self.core.now;
        let conn = &mut self.conns[id];
        conn.tx.push_with(4, false, &mut self.core.tx_pool, |v| {
            encode_greeting_reply(kind, v)
        });
        let next = match kind {
            StreamKind::Control => Phase::Login,
            StreamKind::Data => Phase::DataHello,
        };
        conn.set_phase(next, now);
        self.core.schedule_flush(id, conn);
    }

    /// Ciphertext that arrived together with a TLS greeting.
    fn on_tls_early(&mut self, id: ConnId, data: &[u8]) -> Result<Step, CloseReason> {
        let conn = &mut self.conns[id];
        let super::conn::Transport::Tls(tls) = &mut conn.stream else {
            return Err(CloseReason::Tls("not a TLS connection".into()));
        };
        tls.feed(data)
            .map_err(|e| CloseReason::Tls(e.to_string()))?;
        self.check_tls_handshake(id);
        Ok(Step::Used(data.len()))
    }

    /// After TLS input: once the handshake is done, the greeting reply goes
    /// out (encrypted); handshake messages that wait for the socket are
    /// flushed.
    pub(crate) fn check_tls_handshake(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.stream.has_pending_output() {
            self.core.schedule_flush(id, conn);
        }
        if let Phase::TlsHandshake(kind) = conn.phase {
            if !conn.stream.is_handshaking() {
                self.greeting_done(id, kind);
            }
        }
    }

    fn on_login(&mut self, id: ConnId, data: &[u8]) -> Result<Step, CloseReason> {
        let (login, len) = match frame(decode_login(data))? {
            Ok(f) => f,
            Err(step) => return Ok(step),
        };
        let Login { login, password } = login;
        let config = &self.core.config;
        if self.conns[id].peer.is_unix() && config.trust_unix_socket {
            let name = if login.is_empty() { ANONYMOUS } else { login };
            self.start_session(id, name, None, true)?;
            return Ok(Step::Used(len));
        }
        if login.is_empty() && password.is_empty() {
            if !config.allow_anonymous {
                return Err(CloseReason::LoginFailed(
                    "anonymous login is disabled".into(),
                ));
            }
            self.start_session(id, ANONYMOUS, None, false)?;
            return Ok(Step::Used(len));
        }
        let Some(entry) = self.core.auth.passwords.get(login) else {
            return Err(CloseReason::LoginFailed(format!(
                "user {login:?}: unknown user"
            )));
        };
        if let Some(scheme) = entry.unsupported_scheme() {
            return Err(CloseReason::LoginFailed(format!(
                "user {login:?}: unsupported password hash format {scheme:?} (only bcrypt, htpasswd -B)"
            )));
        }
        let hash = entry.hash.clone();
        if self.core.cache.contains(login, password, &hash) {
            self.start_session(id, login, Some(hash), false)?;
            return Ok(Step::Used(len));
        }
        if self.core.worker.in_flight >= MAX_PENDING_AUTH {
            return Err(CloseReason::Limit(
                "too many logins waiting for verification",
            ));
        }
        let ticket = Ticket::Conn {
            conn: id,
            serial: self.conns[id].serial,
        };
        let job = Job::Verify {
            ticket,
            login: login.into(),
            hash,
            password: password.into(),
        };
        if self.core.worker.submit(job).is_err() {
            return Err(CloseReason::LoginFailed("auth worker unavailable".into()));
        }
        let now = self.core.now;
        self.conns[id].set_phase(Phase::Authenticating, now);
        Ok(Step::Used(len))
    }

    /// A bcrypt verification came back from the worker.
    pub(crate) fn on_verified(&mut self, conn_id: ConnId, serial: u64, v: Verified) {
        let Verified {
            login,
            hash,
            password,
            ok,
            ..
        } = v;
        let (login, password) = (login.as_str(), password.as_str());
        let Some(conn) = self.conns.get_mut(conn_id) else {
            return;
        };
        if conn.serial != serial {
            return;
        }
        if let Phase::HttpAuthenticating(route) = conn.phase {
            let current = self.core.auth.passwords.get(login);
            let ok = ok && current.is_some_and(|e| e.hash == hash);
            if ok {
                self.core.cache.insert(login, password, &hash);
            }
            return self.on_http_verified(conn_id, route, login, ok);
        }
        if !matches!(conn.phase, Phase::Authenticating) {
            return;
        }
        let ticket = Ticket::Conn {
            conn: conn_id,
            serial,
        };
        // A reload between the request and the answer may have changed the hash.
        let current = self.core.auth.passwords.get(login).map(|e| e.hash.clone());
        if ok && current.as_ref() != Some(&hash) {
            let job = match current {
                Some(hash) => Job::Verify {
                    ticket,
                    login: login.into(),
                    hash,
                    password: password.into(),
                },
                None => {
                    let reason = format!("user {login:?}: removed by a reload");
                    return self.close(conn_id, CloseReason::LoginFailed(reason));
                }
            };
            if self.core.worker.submit(job).is_err() {
                let reason = CloseReason::LoginFailed("auth worker unavailable".into());
                self.close(conn_id, reason);
            }
            return;
        }
        if !ok {
            let reason = format!("user {login:?}: wrong password");
            return self.close(conn_id, CloseReason::LoginFailed(reason));
        }
        self.core.cache.insert(login, password, &hash);
        match self.start_session(conn_id, login, Some(hash), false) {
            Ok(()) => {
                // Requests the client pipelined after its login frame.
                if let Some(conn) = self.conns.get_mut(conn_id) {
                    self.core.schedule_input(conn_id, conn);
                }
            }
            Err(reason) => self.close(conn_id, reason),
        }
    }

    /// Checks the ACL and the limits, issues a token and enters `Control`.
    fn start_session(
        &mut self,
        id: ConnId,
        login: &str,
        hash: Option<Box<str>>,
        trusted: bool,
    ) -> Result<(), CloseReason> {
        let acl =
            if trusted {
                Arc::new(AclEntry::full())
            } else {
                self.core.auth.acl.get(login).cloned().ok_or_else(|| {
                    CloseReason::LoginFailed(format!("no ACL entry for {login:?}"))
                })?
            };
        let config = &self.core.config;
        if config.max_clients > 0 && self.core.sessions >= config.max_clients {
            self.core.stats.limit_refusals += 1;
            return Err(CloseReason::Limit("max_clients"));
        }
        let per_user = self.core.per_user.get(login).copied().unwrap_or(0);
        if config.max_clients_per_user > 0 && per_user >= config.max_clients_per_user {
            self.core.stats.limit_refusals += 1;
            return Err(CloseReason::Limit("max_clients_per_user"));
        }
        let token = loop {
            let mut bytes = [0u8; TOKEN_LEN];
            self.core.rng.fill(&mut bytes).map_err(|_| {
                CloseReason::LoginFailed("no system randomness for the token".into())
            })?;
            let token = Token(bytes);
            if !self.core.tokens.contains_key(&token) {
                break token;
            }
        };
        self.core.tokens.insert(token, id);
        self.core.sessions += 1;
        *self.core.per_user.entry(login.into()).or_insert(0) += 1;
        let now = self.core.now;
        let conn = &mut self.conns[id];
        debug!("{}: logged in as {login}", conn.peer);
        if let Some(ip) = conn.ip() {
            self.core.throttle.success(ip);
        }
        conn.tx.push_slice(&token.0, false, &mut self.core.tx_pool);
        conn.set_phase(
            Phase::Control(Box::new(Session {
                login: login.into(),
                acl,
                hash,
                trusted,
                token,
                data: None,
                masks: Default::default(),
                delivered_seq: 0,
                repl_topic: None,
            })),
            now,
        );
        conn.last_request = now;
        self.core.schedule_flush(id, conn);
        Ok(())
    }

    fn on_data_hello(&mut self, id: ConnId, data: &[u8]) -> Result<Step, CloseReason> {
        let (DataHello { token, timeout_sec }, len) = match decode_data_hello(data) {
            Decoded::Frame { frame, len } => (frame, len),
            Decoded::Incomplete { need } => return Ok(Step::Need(need)),
        };
        let owner = self.core.tokens.get(&token).copied();
        let previous = owner.and_then(|o| match self.conns.get_mut(o).map(|c| &mut c.phase) {
            Some(Phase::Control(session)) => Some(session.data.replace(id)),
            _ => None,
        });
        let (Some(owner), Some(previous)) = (owner, previous) else {
            let conn = &mut self.conns[id];
            conn.tx
                .push_slice(&[Reply::Error.into()], false, &mut self.core.tx_pool);
            return Err(CloseReason::UnknownToken);
        };
        if let Some(old) = previous {
            self.close(old, CloseReason::Replaced);
        }
        let beacon_ms = (u64::from(timeout_sec) * 500).max(MIN_BEACON_MS);
        let now = self.core.now;
        let conn = &mut self.conns[id];
        conn.tx
            .push_slice(&[Reply::Ok.into()], false, &mut self.core.tx_pool);
        conn.tx.count_in_total(&mut self.core.tx_pool);
        conn.set_phase(
            Phase::Data(DataLink {
                owner,
                beacon: std::time::Duration::from_millis(beacon_ms),
            }),
            now,
        );
        conn.last_write = now;
        debug!("{}: data socket bound", conn.peer);
        self.core.schedule_flush(id, conn);
        Ok(Step::Used(len))
    }
}
