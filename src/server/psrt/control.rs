//! The control phase: requests of a logged-in client and their one-byte
//! replies. Publishes (and the body of a replicated publish) go through the
//! one publish pipeline (`pubsub::pipeline`); subscriptions change the
//! session's masks and the matcher together, all or nothing.

use std::borrow::Cow;

use psrt_protocol::mqtt::QoS;
use psrt_protocol::{
    ReplBody, Reply, Request, Topics, canonical_mask, decode_repl_body, decode_request,
    normalize_topic,
};

use super::state::{Phase as Psrt, Session};
use crate::server::conn::SharedBuf;
use crate::server::conn::{CloseReason, ConnId};
use crate::server::core::Cx;
use crate::server::phase::{Phase, Step, frame};
use crate::server::pubsub::pipeline::{self, Message, Origin, Refusal};

/// A SUBSCRIBE or UNSUBSCRIBE.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    Subscribe,
    Unsubscribe,
}

/// The session of a control connection (the dispatcher only calls these
/// handlers in the `Control` phase).
fn session<'a>(cx: &'a mut Cx, id: ConnId) -> Result<&'a mut Session, CloseReason> {
    match cx.conns.get_mut(id).map(|c| &mut c.phase) {
        Some(Phase::Psrt(Psrt::Control(s))) => Ok(s),
        _ => Err(CloseReason::Unsupported("request outside a session")),
    }
}

/// Handles the request at the front of `data`. `shared` is set when `data`
/// is one large frame in a buffer send queues may share.
pub(crate) fn on_request(
    cx: &mut Cx,
    id: ConnId,
    data: &[u8],
    shared: Option<&(SharedBuf, usize)>,
) -> Result<Step, CloseReason> {
    if let Some(topic) = session(cx, id)?.repl.as_mut().and_then(|r| r.topic.take()) {
        return match frame(decode_repl_body(data, &cx.core.config.limits))? {
            Ok((body, len)) => {
                on_repl_body(cx, id, &topic, &body);
                Ok(Step::Used(len))
            }
            Err(step) => {
                session(cx, id)?.repl.get_or_insert_default().topic = Some(topic);
                Ok(step)
            }
        };
    }
    let (request, len) = match frame(decode_request(data, &cx.core.config.limits))? {
        Ok(f) => f,
        Err(step) => return Ok(step),
    };
    let answer = match request {
        Request::Nop => Reply::Ok,
        Request::Bye => {
            reply(cx, id, Reply::Ok);
            return Err(CloseReason::Bye);
        }
        Request::Publish {
            priority,
            topic,
            message,
        } => {
            let acl = session(cx, id)?.acl.clone();
            let msg = Message {
                priority,
                topic,
                message,
                raw: data.get(..len),
                shared: shared.filter(|(_, l)| *l == len).map(|(b, _)| b),
                qos: QoS::AtLeastOnce,
            };
            match pipeline::publish(cx, Origin::Client(&acl), msg) {
                Ok(()) => Reply::Ok,
                Err(Refusal::Wildcard) => return Err(CloseReason::WildcardPublish),
                Err(r) => r.reply(),
            }
        }
        Request::Subscribe(topics) => on_topics(cx, id, topics, Change::Subscribe)?,
        Request::Unsubscribe(topics) => on_topics(cx, id, topics, Change::Unsubscribe)?,
        Request::PublishRepl { topic } => on_publish_repl(cx, id, topic)?,
        Request::ReplHello { origin } => {
            session(cx, id)?.repl.get_or_insert_default().origin = Some(origin);
            Reply::Ok
        }
        Request::PublishReplSeq {
            priority,
            seq,
            topic,
            message,
            ..
        } => {
            // Acknowledged after the pushes it caused (see `send_later`).
            let answer = on_publish_repl_seq(cx, id, priority, seq, topic, message)?;
            let conn = &mut cx.conns[id];
            cx.core.send_later(id, conn, &[answer.into()]);
            return Ok(Step::Used(len));
        }
    };
    reply(cx, id, answer);
    Ok(Step::Used(len))
}

fn reply(cx: &mut Cx, id: ConnId, reply: Reply) {
    let conn = &mut cx.conns[id];
    cx.core.send(id, conn, &[reply.into()]);
}

/// SUBSCRIBE / UNSUBSCRIBE, all or nothing: every topic is normalised (and,
/// to subscribe, checked against the ACL) before any is applied.
fn on_topics(
    cx: &mut Cx,
    id: ConnId,
    topics: Topics<'_>,
    change: Change,
) -> Result<Reply, CloseReason> {
    let depth = cx.core.config.limits.max_topic_depth;
    let acl = session(cx, id)?.acl.clone();
    // Bounded work per request: a frame with more topics than a session may
    // hold is refused before any is looked at.
    let per_client = cx.core.config.max_subscriptions_per_client;
    let count = topics.iter().count();
    if per_client > 0 && count > per_client {
        return Ok(refuse_subscriptions(
            cx,
            id,
            count,
            "max_subscriptions_per_client",
            per_client,
        ));
    }
    let mut masks = Vec::with_capacity(count);
    for topic in topics.iter() {
        let Ok(mask) = normalize_topic(topic, depth) else {
            return Ok(Reply::Error);
        };
        // `a/#/z` is `a/#`: one subscription, under one name.
        let mask = match mask {
            Cow::Borrowed(m) => Cow::Borrowed(canonical_mask(m)),
            Cow::Owned(m) => Cow::Owned(canonical_mask(&m).to_string()),
        };
        if change == Change::Subscribe && !acl.can_subscribe(&mask) {
            cx.core.stats.access_denied += 1;
            return Ok(Reply::AccessDenied);
        }
        masks.push(mask);
    }
    if change == Change::Subscribe {
        let session = session(cx, id)?;
        let new = masks.iter().filter(|m| !session.masks.contains(m)).count();
        let held = session.masks.len();
        if per_client > 0 && held + new > per_client {
            return Ok(refuse_subscriptions(
                cx,
                id,
                held + new,
                "max_subscriptions_per_client",
                per_client,
            ));
        }
        let total = cx.core.config.max_subscriptions;
        if total > 0 && cx.core.matcher.len() + new > total {
            let would = cx.core.matcher.len() + new;
            return Ok(refuse_subscriptions(
                cx,
                id,
                would,
                "max_subscriptions",
                total,
            ));
        }
    }
    let Some(Phase::Psrt(Psrt::Control(session))) = cx.conns.get_mut(id).map(|c| &mut c.phase)
    else {
        return Ok(Reply::Error);
    };
    let core = &mut *cx.core;
    for mask in masks {
        let done = match change {
            Change::Subscribe => session.masks.insert(&mask) && core.matcher.subscribe(&mask, id),
            Change::Unsubscribe => {
                session.masks.remove(&mask) && core.matcher.unsubscribe(&mask, id)
            }
        };
        if done {
            core.stats.c_sub_ops += 1;
        }
    }
    Ok(Reply::Ok)
}

/// A SUBSCRIBE (or a bulk request) over a subscription limit: `FF`, counted,
/// one rate-limited line naming the client and the limit.
fn refuse_subscriptions(cx: &mut Cx, id: ConnId, would: usize, key: &str, limit: usize) -> Reply {
    cx.core.stats.subscription_refusals += 1;
    let conn = &cx.conns[id];
    let login = match &conn.phase {
        Phase::Psrt(Psrt::Control(s)) => &*s.login,
        _ => "?",
    };
    let peer = conn.peer.to_string();
    let msg = format!(
        "{peer}: {login}: request refused: {would} subscriptions/topics would exceed {key} ({limit})"
    );
    cx.core.warn("subscriptions", format_args!("{msg}"));
    Reply::Error
}

/// First phase of a replicated publish: only a replicator may send one; the
/// topic is validated like a publish; the body is asked for only if a local
/// client subscribes to it.
fn on_publish_repl(cx: &mut Cx, id: ConnId, topic: &str) -> Result<Reply, CloseReason> {
    if !session(cx, id)?.acl.replicator {
        cx.core.stats.access_denied += 1;
        return Ok(Reply::AccessDenied);
    }
    let topic = match pipeline::validate(topic, &cx.core.config.limits) {
        Ok(t) => t,
        Err(r) => return Ok(r.reply()),
    };
    if !cx.core.matcher.has_match(&topic) {
        return Ok(Reply::NotRequired);
    }
    session(cx, id)?.repl.get_or_insert_default().topic = Some(topic.into());
    Ok(Reply::OkWaiting)
}

fn on_repl_body(cx: &mut Cx, id: ConnId, topic: &str, body: &ReplBody<'_>) {
    let msg = Message {
        priority: body.priority,
        topic,
        message: body.message,
        raw: None,
        shared: None,
        qos: QoS::AtLeastOnce,
    };
    // The topic was validated in the first phase: this cannot be refused.
    let _ = pipeline::publish(cx, Origin::Replica, msg);
    reply(cx, id, Reply::Ok);
}

/// A whole replicated message (psrtd extension): a replicator only; a
/// sequence number this origin already delivered is a resend after a
/// reconnect and is acknowledged without delivering it again.
fn on_publish_repl_seq(
    cx: &mut Cx,
    id: ConnId,
    priority: u8,
    seq: u64,
    topic: &str,
    message: &[u8],
) -> Result<Reply, CloseReason> {
    let s = session(cx, id)?;
    if !s.acl.replicator {
        cx.core.stats.access_denied += 1;
        return Ok(Reply::AccessDenied);
    }
    let origin = s.repl.as_ref().and_then(|r| r.origin);
    if let Some(origin) = origin {
        if !cx.core.cluster.first_time(origin, seq) {
            return Ok(Reply::Ok);
        }
    }
    let msg = Message {
        priority,
        topic,
        message,
        raw: None,
        shared: None,
        qos: QoS::AtLeastOnce,
    };
    Ok(match pipeline::publish_counted(cx, Origin::Replica, msg) {
        Ok(0) => Reply::NotRequired,
        Ok(_) => Reply::Ok,
        Err(r) => r.reply(),
    })
}
