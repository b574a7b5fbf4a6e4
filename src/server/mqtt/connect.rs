//! CONNECT: the first packet of an MQTT connection. Its user name and
//! password go through the one auth pipeline (`auth::login`) and the same
//! login throttle as PSRT; no user name is anonymous (ACL entry `_`, if
//! `auth.allow_anonymous`). A refusal is a CONNACK with its code, then a
//! close; an acceptance starts or resumes the session (`session.rs`).

use psrt_protocol::mqtt::{
    Connect, ConnectCode, MqttError, Packet, decode_packet, validate_topic_name,
};
use psrt_protocol::{DecodeError, Decoded};

use super::phase::{OwnedWill, Pending, Phase as Mqtt};
use super::session::{refuse, start_session};
use crate::server::auth::ANONYMOUS;
use crate::server::auth::login::Verdict;
use crate::server::auth::worker::{Ticket, Verified};
use crate::server::conn::{CloseReason, ConnId};
use crate::server::core::Cx;
use crate::server::phase::{Phase, Step};

/// A connection accepted on a TLS listener: the handshake starts, counted
/// against `server.max_tls_handshakes` (refused beyond it).
pub(crate) fn start_tls(cx: &mut Cx, id: ConnId) -> Result<(), CloseReason> {
    let core = &mut *cx.core;
    let Some(config) = core.auth.tls.clone() else {
        return Err(CloseReason::TlsUnavailable);
    };
    if !core.admission.start_tls(core.config.max_tls_handshakes) {
        core.stats.tls_handshake_refusals += 1;
        return Err(CloseReason::Limit("max_tls_handshakes"));
    }
    let conn = &mut cx.conns[id];
    // Counted from here: any close of this phase ends the count. The
    // CONNECT deadline still runs from the accept.
    conn.phase = Phase::Mqtt(Mqtt::TlsHandshake);
    let session =
        rustls::ServerConnection::new(config).map_err(|e| CloseReason::Tls(e.to_string()))?;
    conn.stream
        .start_tls(session.into(), &[])
        .map_err(|e| CloseReason::Tls(e.to_string()))
}

/// After TLS input: handshake records are flushed; once the handshake is
/// done it stops counting and the CONNECT is waited for.
pub(crate) fn check_tls(cx: &mut Cx, id: ConnId) {
    let Some(conn) = cx.conns.get_mut(id) else {
        return;
    };
    if conn.stream.has_pending_output() {
        cx.core.schedule_flush(id, conn);
    }
    if matches!(conn.phase, Phase::Mqtt(Mqtt::TlsHandshake)) && !conn.stream.is_handshaking() {
        cx.core.admission.tls_ended();
        conn.phase = Phase::Mqtt(Mqtt::Connect);
    }
}

/// The first packet: CONNECT, or a close.
pub(crate) fn on_connect(cx: &mut Cx, id: ConnId, data: &[u8]) -> Result<Step, CloseReason> {
    let max = cx
        .core
        .config
        .mqtt
        .as_ref()
        .map_or(0, |m| m.max_packet_size);
    let (packet, len) = match decode_packet(data, max) {
        Ok(Decoded::Frame { frame, len }) => (frame, len),
        Ok(Decoded::Incomplete { need }) => return Ok(Step::Need(need)),
        Err(e @ DecodeError::Mqtt(MqttError::UnsupportedLevel(_))) => {
            refuse(cx, id, ConnectCode::UnacceptableProtocol);
            return Err(CloseReason::Protocol(e));
        }
        Err(e) => return Err(CloseReason::Protocol(e)),
    };
    let Packet::Connect(c) = packet else {
        return Err(CloseReason::Unsupported("first MQTT packet is not CONNECT"));
    };
    let pending = pending(cx, id, &c)?;
    let ip = cx.conns[id].ip();
    let login = c.username.unwrap_or("");
    if cx.core.login_refused(ip, login) {
        refuse(cx, id, ConnectCode::NotAuthorized);
        return Err(CloseReason::LoginFailed(format!(
            "user {login:?}: refused for now after repeated failed logins from this address"
        )));
    }
    let result = login_step(cx, id, &c, pending);
    counted(cx, id, ip, login, result)?;
    Ok(Step::Used(len))
}

/// Checks what does not need the password: client id, will, keep-alive.
fn pending(cx: &mut Cx, id: ConnId, c: &Connect<'_>) -> Result<Box<Pending>, CloseReason> {
    let max_keepalive = cx
        .core
        .config
        .mqtt
        .as_ref()
        .map_or(u16::MAX, |m| m.max_keepalive);
    let bad_keepalive =
        max_keepalive < u16::MAX && (c.keep_alive == 0 || c.keep_alive > max_keepalive);
    if (c.client_id.is_empty() && !c.clean_session) || bad_keepalive {
        refuse(cx, id, ConnectCode::IdentifierRejected);
        return Err(CloseReason::Unsupported(if bad_keepalive {
            "keep-alive outside mqtt.max_keepalive"
        } else {
            "empty client identifier with CleanSession 0"
        }));
    }
    let will = match c.will {
        Some(w) => {
            if validate_topic_name(w.topic).is_err() {
                return Err(CloseReason::Unsupported("invalid will topic"));
            }
            Some(OwnedWill {
                topic: w.topic.into(),
                message: w.message.into(),
                qos: w.qos,
                retain: w.retain,
            })
        }
        None => None,
    };
    let client_id: Box<str> = if c.client_id.is_empty() {
        format!("psrtd-{}", cx.conns[id].serial).into()
    } else {
        c.client_id.into()
    };
    Ok(Box::new(Pending {
        protocol: c.protocol,
        client_id,
        clean: c.clean_session,
        keep_alive: c.keep_alive,
        will,
        login: c.username.unwrap_or(ANONYMOUS).into(),
    }))
}

/// A refused login is counted against (address, login), as for PSRT.
fn counted(
    cx: &mut Cx,
    id: ConnId,
    ip: Option<std::net::IpAddr>,
    login: &str,
    r: Result<(), CloseReason>,
) -> Result<(), CloseReason> {
    if let Err(CloseReason::LoginFailed(_)) = &r {
        cx.core.login_failed(ip, login);
        if cx.conns[id].tx.is_empty() {
            refuse(cx, id, ConnectCode::NotAuthorized);
        }
    }
    r
}

fn login_step(
    cx: &mut Cx,
    id: ConnId,
    c: &Connect<'_>,
    pending: Box<Pending>,
) -> Result<(), CloseReason> {
    let config = &cx.core.config;
    if cx.conns[id].peer.is_unix() && config.trust_unix_socket {
        return start_session(cx, id, *pending, None, true);
    }
    let Some(login) = c.username else {
        if !config.allow_anonymous {
            return Err(CloseReason::LoginFailed(
                "anonymous login is disabled".into(),
            ));
        }
        return start_session(cx, id, *pending, None, false);
    };
    let Ok(password) = std::str::from_utf8(c.password.unwrap_or_default()) else {
        return Err(CloseReason::LoginFailed(format!(
            "user {login:?}: password is not UTF-8"
        )));
    };
    let ticket = Ticket::Conn {
        conn: id,
        serial: cx.conns[id].serial,
    };
    match cx.core.check_password(ticket, login, password) {
        Verdict::Granted(hash) => start_session(cx, id, *pending, Some(hash), false),
        Verdict::Denied(why) => Err(CloseReason::LoginFailed(why)),
        Verdict::Busy => {
            refuse(cx, id, ConnectCode::ServerUnavailable);
            Err(CloseReason::Limit(
                "too many logins waiting for verification",
            ))
        }
        Verdict::Pending => {
            let now = cx.core.now;
            cx.conns[id].set_phase(Phase::Mqtt(Mqtt::Authenticating(pending)), now);
            Ok(())
        }
    }
}

/// The worker's bcrypt answer for a CONNECT.
pub(crate) fn on_verified(cx: &mut Cx, id: ConnId, v: Verified) -> Result<(), CloseReason> {
    let login: Box<str> = v.login.as_str().into();
    let ip = cx.conns[id].ip();
    let result = match cx.core.finish_password(v) {
        Verdict::Granted(hash) => {
            let now = cx.core.now;
            let conn = &mut cx.conns[id];
            let Phase::Mqtt(Mqtt::Authenticating(pending)) =
                std::mem::replace(&mut conn.phase, Phase::Mqtt(Mqtt::Connect))
            else {
                return Ok(());
            };
            conn.phase_since = now;
            start_session(cx, id, *pending, Some(hash), false).map(|()| {
                // Packets the client pipelined after its CONNECT.
                let conn = &mut cx.conns[id];
                cx.core.schedule_input(id, conn);
            })
        }
        Verdict::Pending => Ok(()),
        Verdict::Denied(why) => Err(CloseReason::LoginFailed(why)),
        Verdict::Busy => {
            refuse(cx, id, ConnectCode::ServerUnavailable);
            Err(CloseReason::Limit(
                "too many logins waiting for verification",
            ))
        }
    };
    counted(cx, id, ip, &login, result)
}
