//! PSRT sessions: starting one after a login (ACL entry, connection limits,
//! a fresh token), binding a data socket to it by token (a newer socket with
//! the same token replaces the older), and tearing it down when its control
//! socket closes (subscriptions, token, counts, and its data socket). A
//! login or a bound data socket ends the connection's pre-login count
//! (`server.max_handshakes_per_ip`); a closed TLS handshake frees its slot.

use std::sync::Arc;
use std::time::Duration;

use log::debug;
use psrt_protocol::{DataHello, Decoded, Reply, TOKEN_LEN, Token, decode_data_hello};
use ring::rand::SecureRandom;

use super::state::{DataLink, Phase as Psrt, Session};
use crate::server::auth::AclEntry;
use crate::server::conn::{CloseReason, ConnId, InputClock};
use crate::server::core::Cx;
use crate::server::phase::{Phase, Step};

/// Shortest beacon interval, whatever timeout the client declares.
const MIN_BEACON_MS: u64 = 200;

/// Checks the ACL and the limits, issues a token and enters `Control`.
pub(crate) fn start_session(
    cx: &mut Cx,
    id: ConnId,
    login: &str,
    hash: Option<Box<str>>,
    trusted: bool,
) -> Result<(), CloseReason> {
    let core = &mut *cx.core;
    let acl = if trusted {
        Arc::new(AclEntry::full())
    } else {
        core.auth
            .acl
            .get(login)
            .cloned()
            .ok_or_else(|| CloseReason::LoginFailed(format!("no ACL entry for {login:?}")))?
    };
    let config = &core.config;
    if config.max_clients > 0 && core.sessions >= config.max_clients {
        return Err(CloseReason::Limit("max_clients"));
    }
    let per_user = core.per_user.get(login).copied().unwrap_or(0);
    if config.max_clients_per_user > 0 && per_user >= config.max_clients_per_user {
        return Err(CloseReason::Limit("max_clients_per_user"));
    }
    let token = loop {
        let mut bytes = [0u8; TOKEN_LEN];
        core.rng
            .fill(&mut bytes)
            .map_err(|_| CloseReason::LoginFailed("no system randomness for the token".into()))?;
        let token = Token(bytes);
        if !core.tokens.contains_key(&token) {
            break token;
        }
    };
    core.tokens.insert(token, id);
    core.sessions += 1;
    *core.per_user.entry(login.into()).or_insert(0) += 1;
    let now = core.now;
    let conn = &mut cx.conns[id];
    debug!("{}: logged in as {login}", conn.peer);
    core.handshake_over(conn);
    if let Some(ip) = conn.ip() {
        core.throttle.success(ip, login);
    }
    conn.tx.push_slice(&token.0, false, &mut core.tx_pool);
    conn.set_phase(
        Phase::Psrt(Psrt::Control(Box::new(Session {
            login: login.into(),
            acl,
            hash,
            trusted,
            token,
            data: None,
            masks: Default::default(),
            delivered_seq: 0,
            repl: None,
            clock: InputClock::new(now),
            sent: 0,
            dropped: 0,
        }))),
        now,
    );
    core.schedule_flush(id, conn);
    Ok(())
}

/// Token + timeout byte on a data socket: bind it to the session that owns
/// the token, replacing an older data socket of that session.
pub(crate) fn on_data_hello(cx: &mut Cx, id: ConnId, data: &[u8]) -> Result<Step, CloseReason> {
    let (DataHello { token, timeout_sec }, len) = match decode_data_hello(data) {
        Decoded::Frame { frame, len } => (frame, len),
        Decoded::Incomplete { need } => return Ok(Step::Need(need)),
    };
    let owner = cx.core.tokens.get(&token).copied();
    let previous = owner.and_then(|o| match cx.conns.get_mut(o).map(|c| &mut c.phase) {
        Some(Phase::Psrt(Psrt::Control(session))) => Some(session.data.replace(id)),
        _ => None,
    });
    let (Some(owner), Some(previous)) = (owner, previous) else {
        let conn = &mut cx.conns[id];
        conn.tx
            .push_slice(&[Reply::Error.into()], false, &mut cx.core.tx_pool);
        return Err(CloseReason::UnknownToken);
    };
    if let Some(old) = previous {
        cx.core.close_later(old, CloseReason::Replaced);
    }
    let beacon_ms = (u64::from(timeout_sec) * 500).max(MIN_BEACON_MS);
    let now = cx.core.now;
    let conn = &mut cx.conns[id];
    conn.tx
        .push_slice(&[Reply::Ok.into()], false, &mut cx.core.tx_pool);
    conn.tx.count_in_total(&mut cx.core.tx_pool);
    conn.set_phase(
        Phase::Psrt(Psrt::Data(DataLink {
            owner,
            beacon: Duration::from_millis(beacon_ms),
        })),
        now,
    );
    conn.last_write = now;
    cx.core.handshake_over(conn);
    debug!("{}: data socket bound", conn.peer);
    cx.core.schedule_flush(id, conn);
    Ok(Step::Used(len))
}

/// A PSRT connection left its phase for `Closing`: a control socket's
/// session ends (subscriptions, token, counts; its data socket is closed),
/// a data socket unlinks itself from its session, a TLS handshake frees its
/// slot.
pub(crate) fn on_closed(cx: &mut Cx, id: ConnId, old: Psrt) {
    match old {
        Psrt::Control(session) => end_session(cx, id, *session),
        Psrt::TlsHandshake(_) => cx.core.admission.tls_ended(),
        Psrt::Data(link) => {
            if let Some(Phase::Psrt(Psrt::Control(session))) =
                cx.conns.get_mut(link.owner).map(|c| &mut c.phase)
            {
                if session.data == Some(id) {
                    session.data = None;
                }
            }
        }
        _ => {}
    }
}

fn end_session(cx: &mut Cx, id: ConnId, session: Session) {
    let core = &mut *cx.core;
    for mask in session.masks.iter() {
        core.matcher.unsubscribe(mask, id);
    }
    core.tokens.remove(&session.token);
    core.sessions -= 1;
    if let Some(n) = core.per_user.get_mut(&session.login) {
        *n -= 1;
        if *n == 0 {
            core.per_user.remove(&session.login);
        }
    }
    if let Some(data) = session.data {
        core.close_later(data, CloseReason::SessionEnded);
    }
}
