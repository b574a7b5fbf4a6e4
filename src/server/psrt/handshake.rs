//! PSRT handshake phases: the greeting (and the switch to TLS it may ask
//! for), and the login, whose password goes through the one auth pipeline
//! (`auth::login`): granted at once (anonymous, trusted Unix socket, cached),
//! denied, or pending on the bcrypt worker.
//!
//! TLS: ciphertext that came in the same read as the plain greeting is
//! handed to rustls with the switch; from then on the transport reads
//! plaintext, so input in the `TlsHandshake` phase means the handshake is
//! over (the client's login may ride in its last flight): the greeting
//! completes and the bytes go to the next phase. Handshakes in progress are
//! capped (`server.max_tls_handshakes`); the phase itself is what is
//! counted, so every way out of it (done here, or any close) ends the count.

use psrt_protocol::{
    CommMode, Decoded, Greeting, Login, StreamKind, decode_greeting, decode_login,
    encode_greeting_reply,
};

use super::session::start_session;
use super::state::Phase as Psrt;
use crate::server::auth::ANONYMOUS;
use crate::server::auth::login::Verdict;
use crate::server::auth::worker::{Ticket, Verified};
use crate::server::conn::{CloseReason, ConnId};
use crate::server::core::Cx;
use crate::server::phase::{Phase, Step, frame};

/// `EE AA|AB COMM`: plain, or TLS first; then the greeting reply.
pub(crate) fn on_greeting(cx: &mut Cx, id: ConnId, data: &[u8]) -> Result<Step, CloseReason> {
    let (Greeting { kind, comm }, len) = match decode_greeting(data) {
        Ok(Decoded::Frame { frame, len }) => (frame, len),
        Ok(Decoded::Incomplete { need }) => return Ok(Step::Need(need)),
        Err(e) => return Err(CloseReason::BadGreeting(e)),
    };
    let now = cx.core.now;
    let conn = &mut cx.conns[id];
    // Unix sockets have no TLS: the reference ignores the byte there.
    if !conn.peer.is_unix() {
        match comm {
            CommMode::Tls => {
                let Some(config) = cx.core.auth.tls.clone() else {
                    return Err(CloseReason::TlsUnavailable);
                };
                let core = &mut *cx.core;
                if !core.admission.start_tls(core.config.max_tls_handshakes) {
                    core.stats.tls_handshake_refusals += 1;
                    return Err(CloseReason::Limit("max_tls_handshakes"));
                }
                // Counted from here: any close of this phase ends the count.
                conn.set_phase(Phase::Psrt(Psrt::TlsHandshake(kind)), now);
                let session = rustls::ServerConnection::new(config)
                    .map_err(|e| CloseReason::Tls(e.to_string()))?;
                conn.stream
                    .start_tls(session.into(), &data[len..])
                    .map_err(|e| CloseReason::Tls(e.to_string()))?;
                check_tls_handshake(cx, id);
                return Ok(Step::Used(data.len()));
            }
            CommMode::Plain if !cx.core.config.allow_no_tls => {
                return Err(CloseReason::PlainForbidden);
            }
            CommMode::Plain => {}
        }
    }
    greeting_done(cx, id, kind);
    Ok(Step::Used(len))
}

/// Sends the greeting reply and waits for the login or the data hello.
fn greeting_done(cx: &mut Cx, id: ConnId, kind: StreamKind) {
    let conn = &mut cx.conns[id];
    conn.tx.push_with(4, false, &mut cx.core.tx_pool, |v| {
        encode_greeting_reply(kind, v)
    });
    let next = match kind {
        StreamKind::Control => Psrt::Login,
        StreamKind::Data => Psrt::DataHello,
    };
    conn.set_phase(Phase::Psrt(next), cx.core.now);
    cx.core.schedule_flush(id, conn);
}

/// Input in the `TlsHandshake` phase. The transport decrypts, so these are
/// the first plaintext bytes: the handshake is over (it finished in the
/// same read, e.g. the client's Finished and its login in one flight). The
/// greeting completes and nothing is consumed: the bytes are the next
/// phase's (login or data hello). rustls takes no early data, so plaintext
/// while still handshaking cannot happen; it would be a close.
pub(crate) fn on_tls_input(cx: &mut Cx, id: ConnId, _data: &[u8]) -> Result<Step, CloseReason> {
    if cx.conns[id].stream.is_handshaking() {
        return Err(CloseReason::Tls(
            "application data before the handshake ended".into(),
        ));
    }
    check_tls_handshake(cx, id);
    Ok(Step::Used(0))
}

/// After TLS input: once the handshake is done, the greeting reply goes out
/// (encrypted) and the handshake stops counting against the cap; handshake
/// records waiting for the socket are flushed.
pub(crate) fn check_tls_handshake(cx: &mut Cx, id: ConnId) {
    let Some(conn) = cx.conns.get_mut(id) else {
        return;
    };
    if conn.stream.has_pending_output() {
        cx.core.schedule_flush(id, conn);
    }
    if let Phase::Psrt(Psrt::TlsHandshake(kind)) = conn.phase {
        if !conn.stream.is_handshaking() {
            cx.core.admission.tls_ended();
            greeting_done(cx, id, kind);
        }
    }
}

/// The login frame: anonymous, trusted Unix socket, or a password for the
/// auth pipeline. A refused login counts as a failure of that login from
/// the peer's address (the brute-force throttle); a login the throttle
/// refuses is closed without a password check.
pub(crate) fn on_login(cx: &mut Cx, id: ConnId, data: &[u8]) -> Result<Step, CloseReason> {
    let (Login { login, password }, len) = match frame(decode_login(data))? {
        Ok(f) => f,
        Err(step) => return Ok(step),
    };
    let ip = cx.conns[id].ip();
    if cx.core.login_refused(ip, login) {
        return Err(CloseReason::LoginFailed(format!(
            "user {login:?}: refused for now after repeated failed logins from this address"
        )));
    }
    let result = login_step(cx, id, login, password);
    counted(cx, ip, login, result)?;
    Ok(Step::Used(len))
}

/// Counts a refused login against (address, login).
fn counted<T>(
    cx: &mut Cx,
    ip: Option<std::net::IpAddr>,
    login: &str,
    r: Result<T, CloseReason>,
) -> Result<T, CloseReason> {
    if let Err(CloseReason::LoginFailed(_)) = &r {
        cx.core.login_failed(ip, login);
    }
    r
}

fn login_step(cx: &mut Cx, id: ConnId, login: &str, password: &str) -> Result<(), CloseReason> {
    let config = &cx.core.config;
    if cx.conns[id].peer.is_unix() && config.trust_unix_socket {
        let name = if login.is_empty() { ANONYMOUS } else { login };
        return start_session(cx, id, name, None, true);
    }
    if login.is_empty() && password.is_empty() {
        if !config.allow_anonymous {
            return Err(CloseReason::LoginFailed(
                "anonymous login is disabled".into(),
            ));
        }
        return start_session(cx, id, ANONYMOUS, None, false);
    }
    let ticket = Ticket::Conn {
        conn: id,
        serial: cx.conns[id].serial,
    };
    match cx.core.check_password(ticket, login, password) {
        Verdict::Granted(hash) => start_session(cx, id, login, Some(hash), false),
        Verdict::Denied(why) => Err(CloseReason::LoginFailed(why)),
        Verdict::Busy => Err(CloseReason::Limit(
            "too many logins waiting for verification",
        )),
        Verdict::Pending => {
            let now = cx.core.now;
            cx.conns[id].set_phase(Phase::Psrt(Psrt::Authenticating), now);
            Ok(())
        }
    }
}

/// A bcrypt verification for a login came back from the worker.
pub(crate) fn on_verified(cx: &mut Cx, id: ConnId, v: Verified) -> Result<(), CloseReason> {
    let login: Box<str> = v.login.as_str().into();
    let ip = cx.conns[id].ip();
    let result = match cx.core.finish_password(v) {
        Verdict::Granted(hash) => start_session(cx, id, &login, Some(hash), false).map(|()| {
            // Requests the client pipelined after its login frame.
            let conn = &mut cx.conns[id];
            cx.core.schedule_input(id, conn);
        }),
        Verdict::Pending => Ok(()),
        Verdict::Denied(why) => Err(CloseReason::LoginFailed(why)),
        Verdict::Busy => Err(CloseReason::Limit(
            "too many logins waiting for verification",
        )),
    };
    counted(cx, ip, &login, result)
}
