//! The one publish pipeline. Every message that enters the server — a PSRT
//! PUBLISH, an MQTT PUBLISH or last will, a UDP datagram, the body of a
//! replicated publish — goes through [`publish`]: validate and normalise
//! the topic (MQTT topics are taken as sent: only depth and wildcards are
//! checked), check the ACL, count (and count its topic in the
//! busiest-topics table), deliver to every matching subscriber once,
//! queue it for the cluster (unless it came from the cluster: no echo) and
//! for the bridges whose `out` covers it (not the bridge it came from, and
//! not a message from the cluster).

use std::borrow::Cow;

use psrt_protocol::{
    Limits, Reply, TopicError, normalize_publish_topic, topic_depth, validate_publish_topic,
};

pub(crate) use super::deliver::Message;
use super::deliver::deliver;
use crate::server::auth::AclEntry;
use crate::server::core::Cx;
use crate::server::{bridge, link};

/// Who publishes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Origin<'a> {
    /// A PSRT client with these permissions.
    Client(&'a AclEntry),
    /// A UDP datagram authenticated as a login with these permissions.
    Udp(&'a AclEntry),
    /// Another cluster node (the replicator right was checked when it
    /// announced the topic). Not replicated again.
    Replica,
    /// An MQTT client (a PUBLISH or its last will) with these permissions.
    Mqtt(&'a AclEntry),
    /// A bridge's broker (the bridge's key): its `in` filters (or the
    /// login its `acl` names) say what it may publish. Never sent back
    /// out on the same bridge; replicated to the cluster.
    Bridge(u32),
}

/// Why a publish was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not a valid topic (too deep, or not normalisable).
    BadTopic,
    /// A topic with `+` or `#` (a PSRT client is disconnected for it).
    Wildcard,
    /// The ACL does not allow it.
    Denied,
}

impl Refusal {
    /// The reply code for a refusal that does not close the connection.
    pub(crate) fn reply(self) -> Reply {
        match self {
            Self::BadTopic | Self::Wildcard => Reply::Error,
            Self::Denied => Reply::AccessDenied,
        }
    }
}

/// Normalises a publish topic and checks it is one (no wildcards, depth).
pub(crate) fn validate<'t>(topic: &'t str, limits: &Limits) -> Result<Cow<'t, str>, Refusal> {
    normalize_publish_topic(topic, limits.max_topic_depth).map_err(|e| match e {
        TopicError::Wildcard => Refusal::Wildcard,
        _ => Refusal::BadTopic,
    })
}

/// An MQTT topic name, as sent: no normalisation (`/a` and `a//b` are
/// topics of their own), only the depth limit and no wildcards.
pub(crate) fn validate_mqtt<'t>(topic: &'t str, limits: &Limits) -> Result<Cow<'t, str>, Refusal> {
    if topic_depth(topic) > limits.max_topic_depth {
        return Err(Refusal::BadTopic);
    }
    validate_publish_topic(topic).map_err(|_| Refusal::Wildcard)?;
    Ok(Cow::Borrowed(topic))
}

/// Publishes `msg`: validated, checked, counted, delivered, replicated.
pub(crate) fn publish(cx: &mut Cx, origin: Origin<'_>, msg: Message<'_>) -> Result<(), Refusal> {
    publish_counted(cx, origin, msg).map(|_| ())
}

/// [`publish`], returning to how many subscribers the message was delivered.
pub(crate) fn publish_counted(
    cx: &mut Cx,
    origin: Origin<'_>,
    msg: Message<'_>,
) -> Result<u64, Refusal> {
    let topic = match origin {
        Origin::Mqtt(_) | Origin::Bridge(_) => validate_mqtt(msg.topic, &cx.core.config.limits)?,
        _ => validate(msg.topic, &cx.core.config.limits)?,
    };
    if let Origin::Bridge(key) = origin {
        if !bridge::may_publish(cx.core, key, &topic) {
            cx.core.stats.access_denied += 1;
            return Err(Refusal::Denied);
        }
    }
    let stats = &mut cx.core.stats;
    match origin {
        Origin::Client(acl) | Origin::Udp(acl) | Origin::Mqtt(acl) if !acl.can_publish(&topic) => {
            stats.access_denied += 1;
            return Err(Refusal::Denied);
        }
        Origin::Client(_) => {
            stats.c_pub_messages += 1;
            stats.c_pub_bytes += (msg.topic.len() + 1 + msg.message.len()) as u64;
        }
        Origin::Udp(_) => stats.udp_messages += 1,
        Origin::Mqtt(_) => {
            stats.mqtt_pub_messages += 1;
            stats.mqtt_pub_bytes += msg.message.len() as u64;
        }
        Origin::Replica | Origin::Bridge(_) => {}
    }
    let bytes = (topic.len() + 1 + msg.message.len()) as u64;
    cx.core.topics.record(&topic, bytes, cx.core.now);
    // Normalisation only removes bytes: same length means same bytes.
    let same = topic.len() == msg.topic.len();
    let frame = Message {
        topic: &topic,
        raw: msg.raw.filter(|_| same),
        shared: msg.shared.filter(|_| same),
        ..msg
    };
    let delivered = deliver(cx, &frame);
    if !matches!(origin, Origin::Replica) {
        link::replicate(cx, msg.priority, &topic, msg.message);
        let from = match origin {
            Origin::Bridge(key) => Some(key),
            _ => None,
        };
        bridge::forward(cx, from, &topic, msg.message);
    }
    Ok(delivered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_normalised_and_checked() {
        let limits = Limits::default();
        assert_eq!(validate("a//b", &limits).unwrap(), "a/b");
        assert!(matches!(validate("a/b", &limits), Ok(Cow::Borrowed("a/b"))));
        assert_eq!(validate("a/+/b", &limits), Err(Refusal::Wildcard));
        assert_eq!(validate("a/#", &limits), Err(Refusal::Wildcard));
        let shallow = Limits {
            max_topic_depth: 2,
            ..Limits::default()
        };
        assert!(validate("a/b", &shallow).is_ok());
        assert_eq!(validate("a/b/c/d/e", &shallow), Err(Refusal::BadTopic));
        assert_eq!(Refusal::Wildcard.reply(), Reply::Error);
        assert_eq!(Refusal::Denied.reply(), Reply::AccessDenied);
        // MQTT topics are taken as sent.
        assert!(matches!(
            validate_mqtt("/a//b", &limits),
            Ok(Cow::Borrowed("/a//b"))
        ));
        assert_eq!(validate_mqtt("a/+", &limits), Err(Refusal::Wildcard));
        assert_eq!(validate_mqtt("a/b/c/d/e", &shallow), Err(Refusal::BadTopic));
    }
}
