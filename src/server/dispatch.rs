//! The one dispatch point: input, deadlines, worker answers and closes are
//! routed to the protocol that owns the connection's phase. Everything here
//! works on the handler context ([`Cx`]) alone — no socket is read or
//! written — so the unit tests drive whole exchanges with byte slices and a
//! clock they set.
//!
//! Closing is done here and only here ([`close`]): it logs once, counts,
//! drops or keeps queued output, and runs the protocol's teardown. Handlers
//! report their own connection's end as their `Err` and other connections'
//! as effects, which [`apply_effects`] runs after the handler has returned.

use log::debug;

use super::auth::worker::{Ticket, Verified};
use super::conn::SharedBuf;
use super::conn::{CloseReason, ConnId};
use super::core::{Cx, Effect};
use super::http::phase::Phase as Http;
use super::mqtt::phase::Phase as Mqtt;
use super::phase::{Phase, Step, wants_input};
use super::psrt::state::Phase as Psrt;
use super::pubsub::outbox;
use super::{bridge, http, link, mqtt, psrt};

/// Decodes and handles every complete frame in a connection's input, as
/// long as its phase wants input. Effects are applied after each frame.
pub(crate) fn process_input(cx: &mut Cx, id: ConnId) {
    let Some(conn) = cx.conns.get_mut(id) else {
        return;
    };
    let mut rx = std::mem::take(&mut conn.rx);
    let mut handled = false;
    loop {
        let Some(conn) = cx.conns.get(id) else {
            return;
        };
        let data = rx.data();
        if data.is_empty() || !wants_input(conn) {
            break;
        }
        let shared = rx.shared_frame().map(|(buf, len)| (buf.clone(), len));
        let step = on_input(cx, id, data, shared.as_ref());
        match step {
            Ok(Step::Used(n)) => {
                rx.consume(n, &mut cx.core.rx_pool);
                handled = true;
                apply_effects(cx);
            }
            Ok(Step::Need(need)) => {
                rx.reserve(need, &mut cx.core.rx_pool);
                apply_effects(cx);
                break;
            }
            Err(reason) => {
                close(cx, id, reason);
                apply_effects(cx);
                break;
            }
        }
    }
    let now = cx.core.now;
    let Some(conn) = cx.conns.get_mut(id) else {
        return;
    };
    if matches!(conn.phase, Phase::Closing(_)) {
        rx.consume(rx.len(), &mut cx.core.rx_pool);
        rx.release_if_empty(&mut cx.core.rx_pool);
        return;
    }
    let partial = !rx.is_empty();
    if let Some(clock) = conn.phase.input_clock() {
        clock.partial_since = if partial {
            clock.partial_since.or(Some(now))
        } else {
            None
        };
        if handled {
            clock.last_request = now;
        }
    }
    rx.release_if_empty(&mut cx.core.rx_pool);
    conn.rx = rx;
    cx.core.rearm(id, conn);
}

/// Input arrived (bytes were read): the request clock's silence timer.
pub(crate) fn on_bytes_read(cx: &mut Cx, id: ConnId) {
    let now = cx.core.now;
    if let Some(clock) = cx.conns.get_mut(id).and_then(|c| c.phase.input_clock()) {
        clock.last_input = now;
    }
}

/// Routes the front of the input to the phase's handler.
fn on_input(
    cx: &mut Cx,
    id: ConnId,
    data: &[u8],
    shared: Option<&(SharedBuf, usize)>,
) -> Result<Step, CloseReason> {
    match &cx.conns[id].phase {
        Phase::Psrt(p) => match p {
            Psrt::Greeting => psrt::handshake::on_greeting(cx, id, data),
            Psrt::TlsHandshake(_) => psrt::handshake::on_tls_input(cx, id, data),
            Psrt::Login => psrt::handshake::on_login(cx, id, data),
            Psrt::Control(_) => psrt::control::on_request(cx, id, data, shared),
            Psrt::DataHello => psrt::session::on_data_hello(cx, id, data),
            Psrt::Authenticating | Psrt::Data(_) => Ok(Step::Need(1)),
        },
        Phase::Http(_) => http::on_input(cx, id, data),
        Phase::Link(_) => link::on_input(cx, id, data),
        Phase::Bridge(_) => bridge::packets::on_input(cx, id, data),
        Phase::Mqtt(p) => match p {
            Mqtt::Connect => mqtt::connect::on_connect(cx, id, data),
            Mqtt::TlsHandshake => {
                // Plaintext arrived: the handshake is over.
                mqtt::connect::check_tls(cx, id);
                mqtt::connect::on_connect(cx, id, data)
            }
            Mqtt::Connected(_) => mqtt::packets::on_packet(cx, id, data),
            Mqtt::Authenticating(_) => Ok(Step::Need(1)),
        },
        Phase::Closing(_) => Ok(Step::Need(1)),
    }
}

/// A connection's deadline passed (the loop has checked it is really due).
pub(crate) fn on_due(cx: &mut Cx, id: ConnId) {
    let now = cx.core.now;
    let timeout = cx.core.config.timeout;
    let Some(conn) = cx.conns.get_mut(id) else {
        return;
    };
    let reason = match conn.phase {
        Phase::Closing(_) => return,
        _ if outbox::stalled(conn, now, timeout) => Some(CloseReason::WriteStall),
        Phase::Psrt(Psrt::Data(_)) => {
            // Beacon: nothing was written for half the client's timeout.
            conn.tx.push_slice(&[0], false, &mut cx.core.tx_pool);
            conn.last_write = now;
            cx.core.schedule_flush(id, conn);
            cx.core.rearm(id, conn);
            None
        }
        Phase::Psrt(Psrt::Control(ref s)) if s.clock.partial_since.is_some() => {
            Some(CloseReason::Timeout("an incomplete request (too slow)"))
        }
        Phase::Psrt(Psrt::Control(_)) => Some(CloseReason::Timeout("control (idle: no request)")),
        Phase::Psrt(Psrt::Authenticating)
        | Phase::Http(Http::Authenticating(_))
        | Phase::Mqtt(Mqtt::Authenticating(_)) => None,
        Phase::Mqtt(Mqtt::Connected(ref l)) if l.clock.partial_since.is_some() => {
            Some(CloseReason::Timeout("an incomplete MQTT packet (too slow)"))
        }
        Phase::Mqtt(Mqtt::Connected(_)) => Some(CloseReason::Timeout("MQTT keep-alive")),
        Phase::Link(l) => link::on_due(cx, id, l),
        Phase::Bridge(b) => bridge::packets::on_due(cx, id, b),
        ref other => Some(CloseReason::Timeout(other.name())),
    };
    if let Some(reason) = reason {
        cx.core.stats.timeouts += 1;
        close(cx, id, reason);
    }
    apply_effects(cx);
}

/// A bcrypt answer for connection `id`; ignored unless the connection is
/// still the one that asked (same serial) and still waiting for it.
pub(crate) fn on_verified(cx: &mut Cx, id: ConnId, v: Verified) {
    let asked = match v.ticket {
        Ticket::Conn { conn, serial } => {
            conn == id && cx.conns.get(id).is_some_and(|c| c.serial == serial)
        }
        Ticket::Datagram(_) => false,
    };
    if !asked {
        return;
    }
    let result = match cx.conns.get(id).map(|c| &c.phase) {
        Some(Phase::Psrt(Psrt::Authenticating)) => psrt::handshake::on_verified(cx, id, v),
        Some(&Phase::Http(Http::Authenticating(route))) => http::on_verified(cx, id, route, v),
        Some(Phase::Mqtt(Mqtt::Authenticating(_))) => mqtt::connect::on_verified(cx, id, v),
        _ => Ok(()),
    };
    if let Err(reason) = result {
        close(cx, id, reason);
    }
    apply_effects(cx);
}

/// Runs the effects handlers queued, in order (closing may queue more).
pub(crate) fn apply_effects(cx: &mut Cx) {
    let mut i = 0;
    while i < cx.core.effects.len() {
        let Effect::Close(id, reason) = std::mem::replace(
            &mut cx.core.effects[i],
            Effect::Close(usize::MAX, CloseReason::Shutdown),
        );
        close(cx, id, reason);
        i += 1;
    }
    cx.core.effects.clear();
}

/// Ends a connection: logs once, counts, tears down its protocol state at
/// once (so nothing is delivered to it any more), and either flushes what
/// is queued (replies, pending messages) or drops it. The loop removes it
/// once flushed or when the linger ends.
pub(crate) fn close(cx: &mut Cx, id: ConnId, reason: CloseReason) {
    let now = cx.core.now;
    let Some(conn) = cx.conns.get_mut(id) else {
        return;
    };
    if matches!(conn.phase, Phase::Closing(_)) {
        return;
    }
    let phase_name = conn.phase.name();
    let is_link = matches!(conn.phase, Phase::Link(_) | Phase::Bridge(_));
    // Links and bridges log their own line (with the node's or bridge's
    // name) in `link::on_closed` and `bridge::on_closed`.
    if reason.is_routine() || is_link {
        debug!("{}: {phase_name}: {reason}", conn.peer);
    } else {
        let kind = match reason {
            CloseReason::SlowConsumer { .. } => "slow-consumer",
            CloseReason::QueueCap { .. } => "queue-cap",
            CloseReason::LoginFailed(_) => "login",
            CloseReason::Timeout(_) => "timeout",
            _ => "close",
        };
        cx.core
            .warn(kind, format_args!("{}: {phase_name}: {reason}", conn.peer));
    }
    let core = &mut *cx.core;
    core.handshake_over(conn);
    match &reason {
        CloseReason::BadGreeting(_) | CloseReason::TlsUnavailable | CloseReason::PlainForbidden => {
            core.stats.bad_greetings += 1;
        }
        CloseReason::Protocol(_) | CloseReason::WildcardPublish | CloseReason::Unsupported(_) => {
            core.stats.protocol_errors += 1;
        }
        CloseReason::Limit(_) => core.stats.limit_refusals += 1,
        other => outbox::count_close(&mut core.stats, other),
    }
    let dropped = if reason.keeps_output() {
        0
    } else {
        outbox::drop_queue(&mut core.stats, conn, &mut core.tx_pool)
    };
    if dropped > 0 {
        outbox::credit(cx, id, 0, dropped);
    }
    let core = &mut *cx.core;
    let conn = &mut cx.conns[id];
    let link_reason = is_link.then(|| reason.clone());
    // DISCONNECT, shutdown and a revoked login publish no last will.
    let will = !matches!(
        reason,
        CloseReason::Bye | CloseReason::Shutdown | CloseReason::Revoked(_)
    );
    let old = std::mem::replace(&mut conn.phase, Phase::Closing(reason));
    conn.phase_since = now;
    conn.rx.consume(conn.rx.len(), &mut core.rx_pool);
    conn.rx.release_if_empty(&mut core.rx_pool);
    core.schedule_flush(id, conn);
    core.rearm(id, conn);
    match (old, link_reason) {
        (Phase::Psrt(p), _) => psrt::session::on_closed(cx, id, p),
        (Phase::Link(l), Some(reason)) => link::on_closed(cx, id, l, &reason),
        (Phase::Bridge(b), Some(reason)) => bridge::on_closed(cx, id, b, &reason),
        (Phase::Mqtt(p), _) => mqtt::session::on_closed(cx, id, p, will),
        _ => {}
    }
}

/// A bridge connection's send queue was written: it may send more.
pub(crate) fn on_written(cx: &mut Cx, id: ConnId) {
    bridge::packets::after_write(cx, id);
    apply_effects(cx);
}

/// A connection accepted on an MQTT TLS listener: its TLS session starts
/// (or it is closed: no identity, `max_tls_handshakes`).
pub(crate) fn start_tls(cx: &mut Cx, id: ConnId) {
    if let Err(reason) = mqtt::connect::start_tls(cx, id) {
        close(cx, id, reason);
    }
    apply_effects(cx);
}

/// TLS records were read or written: a finished handshake sends the
/// greeting reply.
pub(crate) fn on_tls_progress(cx: &mut Cx, id: ConnId) {
    if matches!(
        cx.conns.get(id).map(|c| &c.phase),
        Some(Phase::Psrt(Psrt::TlsHandshake(_)))
    ) {
        psrt::handshake::check_tls_handshake(cx, id);
    } else if matches!(
        cx.conns.get(id).map(|c| &c.phase),
        Some(Phase::Mqtt(Mqtt::TlsHandshake))
    ) {
        mqtt::connect::check_tls(cx, id);
    } else if let Some(conn) = cx.conns.get_mut(id) {
        if conn.stream.has_pending_output() {
            cx.core.schedule_flush(id, conn);
        }
    }
}
