//! The retained-message store (`mqtt.retain: true`): per topic the last
//! MQTT PUBLISH (or will) sent with RETAIN=1, in memory only (a restart
//! loses it). A zero-length payload deletes the topic's message (MQTT
//! 3.1.1 §3.3.1.3). The store is bounded by `mqtt.retain_bytes`, counted
//! as topic + payload + [`ENTRY_OVERHEAD`] per entry: a message that does
//! not fit is refused (the topic's older message is removed with it, so a
//! later subscriber never gets a stale value), counted
//! (`mqtt_retain_refused`) and logged rate-limited. Nothing is evicted.
//!
//! Matching a filter scans only the topics that start with the filter's
//! literal levels before its first wildcard (a `BTreeMap` range), then
//! checks each with the MQTT rules; a filter starting with `+` or `#` does
//! not match topics starting with `$` (MQTT 3.1.1 §4.7.2). PSRT and
//! replicated publishes have no retain flag and are never retained.

use std::collections::BTreeMap;
use std::ops::Bound;

use psrt_protocol::mqtt::{QoS, filter_matches};

/// Bytes one entry costs beyond its topic and payload: its share of a
/// `BTreeMap` leaf (a key box of 16 bytes and a value of 24 in nodes of
/// 11, about two thirds full: ~60) and the allocator's headers of its two
/// boxes (~16 each), rounded up.
pub(crate) const ENTRY_OVERHEAD: usize = 96;

/// One retained message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Retained {
    pub payload: Box<[u8]>,
    /// The QoS it was published with (sent at most at the granted QoS).
    pub qos: QoS,
}

/// What [`Store::set`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Stored (new, or replacing the topic's message).
    Stored,
    /// An empty payload: the topic's message is gone (if it had one).
    Deleted,
    /// Over `retain_bytes`: not stored, and the topic's older message removed.
    Refused,
}

/// The store: topic → message, and the bytes it accounts for.
#[derive(Debug, Default)]
pub(crate) struct Store {
    map: BTreeMap<Box<str>, Retained>,
    bytes: usize,
}

/// The bytes an entry accounts for.
pub(crate) fn entry_bytes(topic: &str, payload_len: usize) -> usize {
    topic.len() + payload_len + ENTRY_OVERHEAD
}

impl Store {
    /// Retained messages.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Bytes accounted (topics, payloads and the per-entry overhead).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The message retained on `topic`.
    #[cfg(test)]
    pub(crate) fn get(&self, topic: &str) -> Option<&Retained> {
        self.map.get(topic)
    }

    /// A RETAIN=1 publish on `topic`, with the store bounded by `bound` bytes.
    pub(crate) fn set(&mut self, topic: &str, payload: &[u8], qos: QoS, bound: usize) -> Outcome {
        if let Some(old) = self.map.remove(topic) {
            self.bytes -= entry_bytes(topic, old.payload.len());
        }
        if payload.is_empty() {
            return Outcome::Deleted;
        }
        let cost = entry_bytes(topic, payload.len());
        if self.bytes + cost > bound {
            return Outcome::Refused;
        }
        self.bytes += cost;
        self.map.insert(
            topic.into(),
            Retained {
                payload: payload.into(),
                qos,
            },
        );
        Outcome::Stored
    }

    /// Every retained message whose topic the valid MQTT `filter` matches,
    /// in topic order.
    pub(crate) fn matching<'s>(
        &'s self,
        filter: &'s str,
    ) -> impl Iterator<Item = (&'s str, &'s Retained)> + 's {
        let (prefix, exact) = literal_prefix(filter);
        let dollar_ok = !(filter.starts_with('+') || filter.starts_with('#'));
        // `a/#` also matches `a` itself, which sorts before the range.
        let parent = filter
            .strip_suffix("/#")
            .filter(|p| !p.contains('+'))
            .and_then(|p| self.map.get_key_value(p));
        let candidates: Box<dyn Iterator<Item = (&Box<str>, &Retained)>> = if exact {
            Box::new(self.map.get_key_value(filter).into_iter())
        } else {
            Box::new(
                parent.into_iter().chain(
                    self.map
                        .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                        .take_while(move |(t, _)| t.starts_with(prefix)),
                ),
            )
        };
        candidates.map(|(t, r)| (&**t, r)).filter(move |(t, _)| {
            exact || ((dollar_ok || !t.starts_with('$')) && filter_matches(filter, t))
        })
    }
}

/// The literal part of `filter` before its first wildcard level, with its
/// trailing `/` (`a/b/+/c` → `a/b/`; `#` → ``), and whether the filter has
/// no wildcard at all (then the prefix is the whole filter).
fn literal_prefix(filter: &str) -> (&str, bool) {
    let mut end = 0;
    for level in filter.split('/') {
        if level == "+" || level == "#" {
            return (&filter[..end], false);
        }
        end += level.len() + 1;
    }
    (filter, true)
}
