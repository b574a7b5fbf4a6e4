//! The control phase: requests of a logged-in client and their one-byte
//! replies, and message delivery to subscribers.
//!
//! Delivery builds each pushed frame once: small frames are copied straight
//! into each subscriber's send queue (the incoming PUBLISH bytes themselves
//! when the topic needed no normalisation), large ones are built once into an
//! `Rc<[u8]>` that every queue shares. A client gets a message once however
//! many of its masks match. A data socket whose queue is full is dropped.

use std::borrow::Cow;
use std::rc::Rc;

use psrt_protocol::{
    ReplBody, Reply, Request, Topics, canonical_mask, decode_repl_body, decode_request,
    encode_push_header, normalize_topic, push_frame_len, validate_publish_topic,
};

use super::conn::{CloseReason, ConnId, Flushed, Phase, SendQueue, Session};
use super::event_loop::Server;
use super::handshake::{Step, frame};

/// Frames at least this long are built once and shared between subscribers
/// instead of being copied into each queue.
const SHARE_MIN: usize = 8 * 1024;

/// The exact bytes of a pushed frame, when the caller already has them: the
/// incoming PUBLISH (same layout), possibly in a buffer queues can share.
#[derive(Clone, Copy)]
pub(crate) struct Raw<'a> {
    bytes: &'a [u8],
    shared: Option<&'a Rc<[u8]>>,
}

/// A SUBSCRIBE or UNSUBSCRIBE.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    Subscribe,
    Unsubscribe,
}

fn session(server: &mut Server, id: ConnId) -> &mut Session {
    match &mut server.conns[id].phase {
        Phase::Control(s) => s,
        // Only called from on_control, which runs in the Control phase.
        other => unreachable!("control request in phase {}", other.name()),
    }
}

impl Server {
    /// Handles the request at the front of `data`. `shared` is set when
    /// `data` is one large frame in a buffer send queues may share.
    pub(crate) fn on_control(
        &mut self,
        id: ConnId,
        data: &[u8],
        shared: Option<&(Rc<[u8]>, usize)>,
    ) -> Result<Step, CloseReason> {
        if let Some(topic) = session(self, id).repl_topic.take() {
            return match frame(decode_repl_body(data, &self.core.config.limits))? {
                Ok((body, len)) => {
                    self.on_repl_body(id, &topic, &body);
                    Ok(Step::Used(len))
                }
                Err(step) => {
                    session(self, id).repl_topic = Some(topic);
                    Ok(step)
                }
            };
        }
        let (request, len) = match frame(decode_request(data, &self.core.config.limits))? {
            Ok(f) => f,
            Err(step) => return Ok(step),
        };
        let reply = match request {
            Request::Nop => Reply::Ok,
            Request::Bye => {
                self.reply(id, Reply::Ok);
                return Err(CloseReason::Bye);
            }
            Request::Publish {
                priority,
                topic,
                message,
            } => {
                let raw = Raw {
                    bytes: data.get(..len).unwrap_or_default(),
                    shared: shared.filter(|(_, l)| *l == len).map(|(b, _)| b),
                };
                self.on_publish(id, priority, topic, message, raw)?
            }
            Request::Subscribe(topics) => self.on_topics(id, topics, Change::Subscribe),
            Request::Unsubscribe(topics) => self.on_topics(id, topics, Change::Unsubscribe),
            Request::PublishRepl { topic } => self.on_publish_repl(id, topic),
        };
        self.reply(id, reply);
        Ok(Step::Used(len))
    }

    fn reply(&mut self, id: ConnId, reply: Reply) {
        let conn = &mut self.conns[id];
        conn.tx
            .push_slice(&[reply.into()], false, &mut self.core.tx_pool);
        self.core.schedule_flush(id, conn);
    }

    fn on_publish(
        &mut self,
        id: ConnId,
        priority: u8,
        topic: &str,
        message: &[u8],
        raw: Raw<'_>,
    ) -> Result<Reply, CloseReason> {
        let limits = self.core.config.limits;
        let Ok(normalized) = normalize_topic(topic, limits.max_topic_depth) else {
            return Ok(Reply::Error);
        };
        validate_publish_topic(&normalized).map_err(|_| CloseReason::WildcardPublish)?;
        if !session(self, id).acl.can_publish(&normalized) {
            self.core.stats.access_denied += 1;
            return Ok(Reply::AccessDenied);
        }
        let stats = &mut self.core.stats;
        stats.c_pub_messages += 1;
        stats.c_pub_bytes += (topic.len() + 1 + message.len()) as u64;
        // Normalisation only removes bytes: same length means same bytes.
        let raw = (normalized.len() == topic.len()).then_some(raw);
        self.deliver(priority, &normalized, message, raw);
        self.replicate(priority, &normalized, message);
        Ok(Reply::Ok)
    }

    /// SUBSCRIBE / UNSUBSCRIBE, all or nothing: every topic is normalised
    /// (and, to subscribe, checked against the ACL) before any is applied.
    fn on_topics(&mut self, id: ConnId, topics: Topics<'_>, change: Change) -> Reply {
        let depth = self.core.config.limits.max_topic_depth;
        let mut masks = Vec::new();
        for topic in topics.iter() {
            let Ok(mask) = normalize_topic(topic, depth) else {
                return Reply::Error;
            };
            // `a/#/z` is `a/#`: one subscription, under one name.
            let mask = match mask {
                Cow::Borrowed(m) => Cow::Borrowed(canonical_mask(m)),
                Cow::Owned(m) => Cow::Owned(canonical_mask(&m).to_string()),
            };
            if change == Change::Subscribe && !session(self, id).acl.can_subscribe(&mask) {
                self.core.stats.access_denied += 1;
                return Reply::AccessDenied;
            }
            masks.push(mask);
        }
        let Some(Phase::Control(session)) = self.conns.get_mut(id).map(|c| &mut c.phase) else {
            return Reply::Error;
        };
        for mask in masks {
            let done = match change {
                Change::Subscribe => {
                    session.masks.insert(mask.as_ref().into())
                        && self.core.matcher.subscribe(&mask, id)
                }
                Change::Unsubscribe => {
                    session.masks.remove(mask.as_ref()) && self.core.matcher.unsubscribe(&mask, id)
                }
            };
            if done {
                self.core.stats.c_sub_ops += 1;
            }
        }
        Reply::Ok
    }

    /// First phase of a replicated publish: answer whether the body is
    /// needed. The topic is taken as is (the origin node normalised it).
    fn on_publish_repl(&mut self, id: ConnId, topic: &str) -> Reply {
        if !session(self, id).acl.replicator {
            self.core.stats.access_denied += 1;
            return Reply::AccessDenied;
        }
        if !self.core.matcher.has_match(topic) {
            return Reply::NotRequired;
        }
        session(self, id).repl_topic = Some(topic.into());
        Reply::OkWaiting
    }

    fn on_repl_body(&mut self, id: ConnId, topic: &str, body: &ReplBody<'_>) {
        self.deliver(body.priority, topic, body.message, None);
        self.reply(id, Reply::Ok);
    }

    /// Queues a message to every client with a matching mask and a data
    /// socket, once per client. `raw` is the complete pushed frame if the
    /// caller already has its exact bytes.
    pub(crate) fn deliver(
        &mut self,
        priority: u8,
        topic: &str,
        message: &[u8],
        raw: Option<Raw<'_>>,
    ) {
        let frame_len = push_frame_len(topic.len(), message.len());
        self.core.seq += 1;
        let seq = self.core.seq;
        let now = self.core.now;
        let max_bytes = self.core.config.data_queue_bytes;
        let core = &mut self.core;
        let conns = &mut self.conns;
        let mut shared: Option<Rc<[u8]>> = None;
        let mut delivered = 0u64;
        core.matcher.for_each_match(topic, |client| {
            let Some(Phase::Control(session)) = conns.get_mut(client).map(|c| &mut c.phase) else {
                return;
            };
            if session.delivered_seq == seq {
                return;
            }
            session.delivered_seq = seq;
            let Some(data_id) = session.data else {
                return;
            };
            let Some(conn) = conns.get_mut(data_id) else {
                return;
            };
            if !matches!(conn.phase, Phase::Data(_)) {
                return;
            }
            // The byte limit bounds memory, so it holds at every message.
            // (The message-count limit is checked after each flush, see
            // `Server::flush_one`: a burst of pipelined publishes is queued
            // within one loop turn, before the flush.) Write out what the
            // socket takes before calling the subscriber slow.
            let full = |q: &SendQueue| q.len() + frame_len > max_bytes;
            if full(&conn.tx) && conn.writable {
                let before = conn.tx.len();
                match conn.tx.write_to(&mut conn.stream, &mut core.tx_pool) {
                    Ok(Flushed::Blocked) => conn.writable = false,
                    Ok(Flushed::Drained) => {}
                    Err(_) => {
                        // The flush meets the error again and closes it.
                        if !conn.in_flush_list {
                            conn.in_flush_list = true;
                            core.flush_list.push(data_id);
                        }
                        return;
                    }
                }
                if conn.tx.len() < before {
                    conn.last_write = now;
                }
            }
            if full(&conn.tx) {
                core.slow_scratch.push(data_id);
                return;
            }
            if conn.tx.is_empty() {
                conn.last_write = now;
            }
            if frame_len >= SHARE_MIN {
                let frame =
                    shared.get_or_insert_with(|| build_frame(priority, topic, message, raw));
                conn.tx
                    .push_shared(frame.clone(), frame_len, true, &mut core.tx_pool);
            } else if let Some(raw) = raw {
                conn.tx.push_slice(raw.bytes, true, &mut core.tx_pool);
            } else {
                conn.tx.push_with(frame_len, true, &mut core.tx_pool, |v| {
                    encode_push_header(priority, topic, message.len(), v);
                    v.extend_from_slice(message);
                });
            }
            if !conn.in_flush_list {
                conn.in_flush_list = true;
                core.flush_list.push(data_id);
            }
            delivered += 1;
        });
        core.stats.c_sent_messages += delivered;
        core.stats.c_sent_bytes += delivered * frame_len as u64;
        let cap = core.config.max_queued_bytes;
        if cap > 0 && core.tx_pool.queued_total > cap {
            self.enforce_queue_cap(cap);
        }
        while let Some(data_id) = self.core.slow_scratch.pop() {
            let Some(conn) = self.conns.get(data_id) else {
                continue;
            };
            let reason = CloseReason::SlowConsumer {
                bytes: conn.tx.len(),
                messages: conn.tx.messages(),
            };
            self.close(data_id, reason);
        }
    }
}

impl Server {
    /// All data sockets together hold more than `cap` queued bytes: drop the
    /// largest queues (their data sockets) until the total fits.
    fn enforce_queue_cap(&mut self, cap: usize) {
        while self.core.tx_pool.queued_total > cap {
            let largest = self
                .conns
                .iter()
                .filter(|(_, c)| matches!(c.phase, Phase::Data(_)) && !c.tx.is_empty())
                .max_by_key(|(_, c)| c.tx.len())
                .map(|(id, c)| (id, c.tx.len(), c.tx.messages()));
            let Some((id, bytes, messages)) = largest else {
                return;
            };
            self.core.stats.queue_cap_drops += 1;
            self.core.warn("queue-cap", format_args!(
                    "all data queues together exceed max_queued_bytes ({cap}): dropping the largest ({bytes} bytes)"
                ),
            );
            self.close(id, CloseReason::SlowConsumer { bytes, messages });
        }
    }
}

fn build_frame(priority: u8, topic: &str, message: &[u8], raw: Option<Raw<'_>>) -> Rc<[u8]> {
    match raw {
        Some(Raw {
            shared: Some(buf), ..
        }) => return buf.clone(),
        Some(Raw { bytes, .. }) => return bytes.into(),
        None => {}
    }
    let mut v = Vec::with_capacity(push_frame_len(topic.len(), message.len()));
    encode_push_header(priority, topic, message.len(), &mut v);
    v.extend_from_slice(message);
    v.into()
}
