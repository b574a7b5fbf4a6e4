//! MQTT sessions on the loop: starting one after a granted CONNECT (ACL
//! entry, limits, taking over an older connection with the same client
//! id, resuming a persistent session and redelivering what it holds),
//! ending a connection (last will, clean sessions dropped, persistent ones
//! kept while away), and expiring away sessions.

use std::sync::Arc;
use std::time::Duration;

use log::debug;
use psrt_protocol::mqtt::{ConnectCode, Protocol, encode_connack};

use super::outbound;
use super::phase::{Link, OwnedWill, Pending, Phase as Mqtt};
use super::state::{Session, sub_id};
use crate::server::auth::AclEntry;
use crate::server::conn::{CloseReason, ConnId, InputClock};
use crate::server::core::{Core, Cx};
use crate::server::phase::Phase;
use crate::server::pubsub::pipeline::{self, Message, Origin};

/// Queues a CONNACK refusal; the caller returns the close reason.
pub(crate) fn refuse(cx: &mut Cx, id: ConnId, code: ConnectCode) {
    let mut v = Vec::with_capacity(4);
    encode_connack(false, code, &mut v);
    let conn = &mut cx.conns[id];
    cx.core.send(id, conn, &v);
}

/// The protocol a CONNACK may claim a resumed session for (3.1 has no
/// session-present flag).
pub(crate) fn session_present(protocol: Protocol, resumed: bool) -> bool {
    resumed && protocol == Protocol::V311
}

/// Checks the ACL entry and the limits, attaches (or creates) the session
/// and sends CONNACK.
pub(crate) fn start_session(
    cx: &mut Cx,
    id: ConnId,
    p: Pending,
    hash: Option<Box<str>>,
    trusted: bool,
) -> Result<(), CloseReason> {
    let acl = if trusted {
        Arc::new(AclEntry::full())
    } else {
        match cx.core.auth.acl.get(&p.login) {
            Some(entry) => entry.clone(),
            None => {
                return Err(CloseReason::LoginFailed(format!(
                    "no ACL entry for {:?}",
                    p.login
                )));
            }
        }
    };
    let config = &cx.core.config;
    let per_user = cx.core.per_user.get(&p.login).copied().unwrap_or(0);
    let limit = if config.max_clients > 0 && cx.core.sessions >= config.max_clients {
        Some("max_clients")
    } else if config.max_clients_per_user > 0 && per_user >= config.max_clients_per_user {
        Some("max_clients_per_user")
    } else {
        None
    };
    if let Some(which) = limit {
        refuse(cx, id, ConnectCode::ServerUnavailable);
        return Err(CloseReason::Limit(which));
    }
    let core = &mut *cx.core;
    let mut resumed = false;
    let key = match core.mqtt.by_client_id.get(&p.client_id).copied() {
        Some(key) => {
            if let Some(old_conn) = detach(core, key) {
                core.stats.mqtt_takeovers += 1;
                core.close_later(old_conn, CloseReason::TakenOver);
            }
            let old = &core.mqtt.slab[key];
            // A session is resumed only by the login that made it.
            if p.clean || old.clean || old.login != p.login {
                drop_session(core, key);
                None
            } else {
                resumed = true;
                Some(key)
            }
        }
        None => None,
    };
    let key = key.unwrap_or_else(|| {
        let session = Session::new(&p.client_id, &p.login, acl.clone(), p.clean);
        let key = core.mqtt.slab.insert(session);
        core.mqtt.by_client_id.insert(p.client_id.clone(), key);
        key
    });
    let session = &mut core.mqtt.slab[key];
    session.acl = acl.clone();
    session.hash = hash;
    session.trusted = trusted;
    session.conn = Some(id);
    session.away_since = None;
    core.mqtt.connected += 1;
    core.sessions += 1;
    *core.per_user.entry(p.login.clone()).or_insert(0) += 1;
    core.stats.mqtt_connects += 1;
    let now = core.now;
    let conn = &mut cx.conns[id];
    // Logged in: no longer counts against max_handshakes_per_ip.
    core.handshake_over(conn);
    if let Some(ip) = conn.ip() {
        core.throttle.success(ip, &p.login);
    }
    debug!(
        "{}: MQTT client {:?} connected as {}{}",
        conn.peer,
        p.client_id,
        p.login,
        if resumed { " (session resumed)" } else { "" }
    );
    let mut connack = Vec::with_capacity(4);
    encode_connack(
        session_present(p.protocol, resumed),
        ConnectCode::Accepted,
        &mut connack,
    );
    core.send(id, conn, &connack);
    conn.tx.count_in_total(&mut core.tx_pool);
    let silence = (p.keep_alive > 0).then(|| Duration::from_millis(u64::from(p.keep_alive) * 1500));
    conn.set_phase(
        Phase::Mqtt(Mqtt::Connected(Box::new(Link {
            session: key,
            acl,
            silence,
            clock: InputClock::new(now),
            will: p.will,
        }))),
        now,
    );
    if resumed {
        outbound::redeliver(cx, key);
    }
    Ok(())
}

/// Unlinks a session from its connection (returned) and counts the client
/// gone.
fn detach(core: &mut Core, key: usize) -> Option<ConnId> {
    let session = core.mqtt.slab.get_mut(key)?;
    let conn = session.conn.take()?;
    core.mqtt.connected -= 1;
    core.sessions -= 1;
    if let Some(n) = core.per_user.get_mut(&session.login) {
        *n -= 1;
        if *n == 0 {
            core.per_user.remove(&session.login);
        }
    }
    Some(conn)
}

/// Removes a session: its filters leave the matcher, its messages are
/// dropped (counted).
pub(crate) fn drop_session(core: &mut Core, key: usize) {
    let Some(s) = core.mqtt.slab.try_remove(key) else {
        return;
    };
    core.mqtt.by_client_id.remove(&s.client_id);
    for f in &s.filters {
        core.matcher.unsubscribe(&f.filter, sub_id(key));
        if let Some(parent) = f.filter.strip_suffix("/#").filter(|_| f.parent) {
            core.matcher.unsubscribe(parent, sub_id(key));
        }
    }
    core.mqtt.held_bytes -= s.held_bytes;
    let lost = s.inflight.len() + s.queue.len();
    core.stats.dropped_messages += lost as u64;
}

/// An MQTT connection left its phase for `Closing`: a connected client's
/// will is published unless it said DISCONNECT (`will` is false then, and
/// on shutdown or revocation); a clean session ends, a persistent one is
/// kept while the client is away.
pub(crate) fn on_closed(cx: &mut Cx, id: ConnId, old: Mqtt, will: bool) {
    let link = match old {
        Mqtt::Connected(link) => link,
        Mqtt::TlsHandshake => return cx.core.admission.tls_ended(),
        _ => return,
    };
    let core = &mut *cx.core;
    // Taken over: the session belongs to the newer connection now.
    let owner = core
        .mqtt
        .slab
        .get(link.session)
        .is_some_and(|s| s.conn == Some(id));
    if owner {
        detach(core, link.session);
    }
    if let Some(w) = link.will.as_ref().filter(|_| will) {
        publish_will(cx, &link.acl, w);
    }
    let core = &mut *cx.core;
    let Some(session) = core.mqtt.slab.get_mut(link.session).filter(|_| owner) else {
        return;
    };
    if session.clean {
        drop_session(core, link.session);
        return;
    }
    let now = core.now;
    session.away_since = Some(now);
    let Some(expiry) = core.config.mqtt.as_ref().map(|m| m.session_expiry) else {
        return drop_session(core, link.session);
    };
    let at = now + expiry;
    core.mqtt.next_expiry = Some(core.mqtt.next_expiry.map_or(at, |t| t.min(at)));
    let max = core
        .config
        .mqtt
        .as_ref()
        .map_or(0, |m| m.max_stored_sessions);
    if core.mqtt.away() > max {
        // The longest away goes first.
        let oldest = core
            .mqtt
            .slab
            .iter()
            .filter_map(|(k, s)| s.away_since.map(|t| (t, k)))
            .min();
        if let Some((_, k)) = oldest {
            debug!("MQTT: max_stored_sessions reached, dropping the oldest away session");
            drop_session(core, k);
        }
    }
}

/// Publishes a will through the one pipeline, with its connection's rights.
fn publish_will(cx: &mut Cx, acl: &AclEntry, w: &OwnedWill) {
    let msg = Message::new(&w.topic, &w.message, w.qos);
    match pipeline::publish(cx, Origin::Mqtt(acl), msg) {
        Ok(()) => {
            cx.core.stats.mqtt_wills += 1;
            if w.retain {
                super::packets::retain_publish(cx.core, &w.topic, &w.message, w.qos);
            }
        }
        Err(r) => cx.core.warn(
            "mqtt-will",
            format_args!("MQTT will on {:?} not published: {r:?}", w.topic),
        ),
    }
}

/// Drops away sessions whose expiry passed (called by the loop at
/// `Sessions::next_expiry`).
pub(crate) fn expire(cx: &mut Cx) {
    let core = &mut *cx.core;
    let now = core.now;
    let Some(expiry) = core.config.mqtt.as_ref().map(|m| m.session_expiry) else {
        core.mqtt.next_expiry = None;
        return;
    };
    let expired: Vec<usize> = core
        .mqtt
        .slab
        .iter()
        .filter(|(_, s)| s.away_since.is_some_and(|t| t + expiry <= now))
        .map(|(k, _)| k)
        .collect();
    for k in expired {
        drop_session(core, k);
    }
    core.mqtt.next_expiry = core
        .mqtt
        .slab
        .iter()
        .filter_map(|(_, s)| s.away_since.map(|t| t + expiry))
        .min();
}
