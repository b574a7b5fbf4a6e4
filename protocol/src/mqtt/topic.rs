//! MQTT topic rules, and how an MQTT filter maps onto PSRT masks.
//!
//! * A topic name is non-empty and has no `+` or `#`; it is taken byte for
//!   byte (no normalisation: `/a` and `a//b` are topics of their own).
//! * In a filter, `+` is a whole level and matches exactly one level (an
//!   empty one too); `#` is a whole level, the last, and matches **zero** or
//!   more levels: `a/#` matches `a`, `a/b` and `a/b/c`.
//! * PSRT's `#` matches one or more levels, so the MQTT filter `a/#` is the
//!   PSRT masks `a/#` and `a` together ([`filter_masks`]); every other
//!   valid filter is the same mask in both protocols.
//! * No `$` rule: psrtd has no `$SYS` topics, and a `$` topic is matched
//!   like any other.

use core::fmt;

/// A topic name or filter that breaks an MQTT rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttTopicError {
    /// Empty.
    Empty,
    /// A topic name with `+` or `#`.
    Wildcard,
    /// A filter with `+` or `#` not alone in its level, or `#` not last.
    BadWildcard,
}

impl fmt::Display for MqttTopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty topic",
            Self::Wildcard => "topic name contains '+' or '#'",
            Self::BadWildcard => "'+' or '#' not alone in a level, or '#' not last",
        })
    }
}

impl std::error::Error for MqttTopicError {}

/// Checks a PUBLISH (or will) topic name.
pub fn validate_topic_name(topic: &str) -> Result<(), MqttTopicError> {
    if topic.is_empty() {
        return Err(MqttTopicError::Empty);
    }
    if topic.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(MqttTopicError::Wildcard);
    }
    Ok(())
}

/// Checks a SUBSCRIBE or UNSUBSCRIBE topic filter.
pub fn validate_filter(filter: &str) -> Result<(), MqttTopicError> {
    if filter.is_empty() {
        return Err(MqttTopicError::Empty);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let ok = match level {
            "#" => levels.peek().is_none(),
            "+" => true,
            l => !l.contains(['+', '#']),
        };
        if !ok {
            return Err(MqttTopicError::BadWildcard);
        }
    }
    Ok(())
}

/// Whether `topic` matches `filter` under MQTT rules (both valid).
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut levels = topic.split('/');
    for f in filter.split('/') {
        if f == "#" {
            return true;
        }
        match levels.next() {
            Some(level) if f == "+" || f == level => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

/// The PSRT masks that together match exactly what the valid MQTT
/// `filter` matches: the filter itself, and for a filter ending in `/#`
/// also its parent (`a/#` → `a/#` and `a`).
pub fn filter_masks(filter: &str) -> (&str, Option<&str>) {
    (filter, filter.strip_suffix("/#"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask_matches;

    #[test]
    fn names_and_filters() {
        assert_eq!(validate_topic_name("a/b"), Ok(()));
        assert_eq!(validate_topic_name("/"), Ok(()));
        assert_eq!(validate_topic_name(""), Err(MqttTopicError::Empty));
        assert_eq!(validate_topic_name("a/+"), Err(MqttTopicError::Wildcard));
        assert_eq!(validate_topic_name("a#"), Err(MqttTopicError::Wildcard));
        for ok in ["#", "+", "a/#", "+/+", "/#", "a//+", "sport/+/player1", "/"] {
            assert_eq!(validate_filter(ok), Ok(()), "{ok}");
        }
        for bad in ["a#", "a/#/b", "a+", "+a/b", "#/", "a/b#"] {
            assert_eq!(
                validate_filter(bad),
                Err(MqttTopicError::BadWildcard),
                "{bad}"
            );
        }
        assert_eq!(validate_filter(""), Err(MqttTopicError::Empty));
    }

    #[test]
    fn mqtt_matching_table() {
        // The standard's examples (4.7.1) and the rules that differ from PSRT.
        let yes = [
            ("sport/tennis/player1/#", "sport/tennis/player1"),
            ("sport/tennis/player1/#", "sport/tennis/player1/ranking"),
            ("sport/#", "sport"),
            ("#", "anything/at/all"),
            ("#", ""),
            ("sport/tennis/+", "sport/tennis/player1"),
            ("+/+", "/finance"),
            ("/+", "/finance"),
            ("+", ""),
            ("a//b", "a//b"),
        ];
        let no = [
            ("sport/tennis/+", "sport/tennis/player1/ranking"),
            ("sport/+", "sport"),
            ("+", "/finance"),
            ("a/b", "a//b"),
            ("a/b", "/a/b"),
        ];
        for (f, t) in yes {
            assert!(filter_matches(f, t), "{f} {t}");
        }
        for (f, t) in no {
            assert!(!filter_matches(f, t), "{f} {t}");
        }
    }

    #[test]
    fn psrt_masks_match_what_the_filter_matches() {
        let filters = ["#", "a/#", "+/#", "/#", "a/+", "+", "a/b", "a//#", "+/+/#"];
        let topics = ["", "a", "a/b", "a/b/c", "/", "/a", "a/", "a//b", "x/y", "b"];
        for f in filters {
            let (m, parent) = filter_masks(f);
            for t in topics {
                let psrt = mask_matches(m, t) || parent.is_some_and(|p| mask_matches(p, t));
                assert_eq!(psrt, filter_matches(f, t), "filter {f:?} topic {t:?}");
            }
        }
        assert_eq!(filter_masks("a/#"), ("a/#", Some("a")));
        assert_eq!(filter_masks("#"), ("#", None));
    }
}
