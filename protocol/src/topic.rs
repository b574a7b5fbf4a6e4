//! Topic rules: normalisation, the depth limit, what may be published, and
//! PSRT mask matching.
//!
//! * Normalisation collapses every run of `/` into one and then drops one
//!   leading `/`: `//a///b` → `a/b`, `/a/b` → `a/b`, `/` → `` (empty). A
//!   trailing `/` stays: `w/` is the levels `w` and ``.
//! * Depth is the number of `/` in the normalised topic; more than
//!   `max_topic_depth` is an error (so a limit N allows N+1 levels).
//! * A published topic must not contain `+` or `#` anywhere, not even inside
//!   a word.
//! * In a mask, `+` as a whole level matches exactly one level (an empty one
//!   too) and `#` as a whole level matches **one or more** further levels and
//!   ends the mask (`q/#/z` is `q/#`). So `a/#` matches `a/b` and `a/b/c` but
//!   not `a`, and a lone `#` matches every topic, the empty one included.
//!   `+` or `#` inside a word is a literal.

use std::borrow::Cow;
use std::fmt;

/// A topic or mask that breaks a topic rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicError {
    /// More `/` than the configured depth allows (reply `FF`).
    TooDeep {
        /// `/` characters in the normalised topic.
        depth: usize,
        /// The configured `max_topic_depth`.
        max: usize,
    },
    /// `+` or `#` in a topic being published.
    Wildcard,
    /// An empty mask in an ACL.
    EmptyMask,
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooDeep { depth, max } => {
                write!(f, "topic depth {depth} above the limit {max}")
            }
            Self::Wildcard => f.write_str("published topic contains '+' or '#'"),
            Self::EmptyMask => f.write_str("empty mask"),
        }
    }
}

impl std::error::Error for TopicError {}

/// Number of `/` in a topic.
pub fn topic_depth(topic: &str) -> usize {
    topic.bytes().filter(|&b| b == b'/').count()
}

/// Normalises a topic or mask and checks its depth. Borrows unless a run of
/// `/` has to be collapsed.
pub fn normalize_topic(topic: &str, max_depth: usize) -> Result<Cow<'_, str>, TopicError> {
    let normalized = if topic.contains("//") {
        let mut out = String::with_capacity(topic.len());
        let mut prev_slash = false;
        for c in topic.chars() {
            let slash = c == '/';
            if !(slash && prev_slash) {
                out.push(c);
            }
            prev_slash = slash;
        }
        if out.starts_with('/') {
            out.remove(0);
        }
        Cow::Owned(out)
    } else {
        Cow::Borrowed(topic.strip_prefix('/').unwrap_or(topic))
    };
    let depth = topic_depth(&normalized);
    if depth > max_depth {
        return Err(TopicError::TooDeep {
            depth,
            max: max_depth,
        });
    }
    Ok(normalized)
}

/// [`normalize_topic`] then [`validate_publish_topic`], in one pass over the
/// bytes when the topic has no run of `/` (the usual case): the topic a
/// publish goes to, or the first rule it breaks (depth before wildcards).
pub fn normalize_publish_topic(topic: &str, max_depth: usize) -> Result<Cow<'_, str>, TopicError> {
    let mut slashes = 0usize;
    let mut wildcard = false;
    let mut prev_slash = false;
    for &b in topic.as_bytes() {
        let slash = b == b'/';
        if slash && prev_slash {
            let normalized = normalize_topic(topic, max_depth)?;
            validate_publish_topic(&normalized)?;
            return Ok(normalized);
        }
        slashes += usize::from(slash);
        wildcard |= b == b'+' || b == b'#';
        prev_slash = slash;
    }
    let normalized = match topic.strip_prefix('/') {
        Some(rest) => {
            slashes -= 1;
            rest
        }
        None => topic,
    };
    if slashes > max_depth {
        return Err(TopicError::TooDeep {
            depth: slashes,
            max: max_depth,
        });
    }
    if wildcard {
        return Err(TopicError::Wildcard);
    }
    Ok(Cow::Borrowed(normalized))
}

/// Checks that a (normalised) topic may be published: no `+` or `#`.
pub fn validate_publish_topic(topic: &str) -> Result<(), TopicError> {
    if topic.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(TopicError::Wildcard);
    }
    Ok(())
}

/// Checks an ACL mask: it must not be empty. Any other string is a valid
/// mask (wildcards inside words are literals).
pub fn validate_mask(mask: &str) -> Result<(), TopicError> {
    if mask.is_empty() {
        return Err(TopicError::EmptyMask);
    }
    Ok(())
}

/// The canonical form of a mask: everything after the first `#` level is
/// dropped (`q/#/z` → `q/#`), so masks that match the same topics compare
/// equal.
pub fn canonical_mask(mask: &str) -> &str {
    let mut end = 0;
    for level in mask.split('/') {
        end += level.len();
        if level == "#" {
            return mask.get(..end).unwrap_or(mask);
        }
        end += 1;
    }
    mask
}

/// Whether `topic` matches `mask` with PSRT semantics (see the module doc).
pub fn mask_matches(mask: &str, topic: &str) -> bool {
    let mut levels = topic.split('/');
    for m in mask.split('/') {
        if m == "#" {
            return levels.next().is_some();
        }
        match levels.next() {
            Some(level) if m == "+" || m == level => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

/// Whether every topic that `pattern` matches is also matched by `mask`.
///
/// This is the subscribe ACL check: a client may subscribe to `pattern` only
/// if that gives it nothing `mask` does not allow. Unlike a literal
/// comparison, a pattern level `#` is covered only by a mask `#`, and a
/// pattern level `+` only by a mask `+` or `#`.
pub fn mask_covers(mask: &str, pattern: &str) -> bool {
    let mut levels = pattern.split('/');
    for m in mask.split('/') {
        if m == "#" {
            return levels.next().is_some();
        }
        let Some(p) = levels.next() else {
            return false;
        };
        let covered = match (m, p) {
            (_, "#") => false,
            ("+", _) => true,
            (_, "+") => false,
            (m, p) => m == p,
        };
        if !covered {
            return false;
        }
    }
    levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_publish_check_agrees_with_the_two_steps() {
        // Every string of up to 6 bytes over the characters that matter.
        let alphabet = [b'/', b'a', b'+', b'#', b'b'];
        let mut topics = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..6 {
            let next: Vec<String> = last
                .iter()
                .flat_map(|t| alphabet.iter().map(move |&c| format!("{t}{}", c as char)))
                .collect();
            topics.extend(next.iter().cloned());
            last = next;
        }
        for topic in &topics {
            for depth in 0..4 {
                let two_steps = normalize_topic(topic, depth)
                    .and_then(|n| validate_publish_topic(&n).map(|()| n));
                assert_eq!(
                    normalize_publish_topic(topic, depth),
                    two_steps,
                    "{topic:?} depth {depth}"
                );
            }
        }
    }

    #[test]
    fn normalisation_table() {
        let table = [
            ("a/b", "a/b"),
            ("//a///b", "a/b"),
            ("/a/b", "a/b"),
            ("/", ""),
            ("//", ""),
            ("", ""),
            ("w/", "w/"),
            ("w//", "w/"),
            ("a//b//", "a/b/"),
            ("///x", "x"),
            ("é//ü", "é/ü"),
        ];
        for (raw, want) in table {
            assert_eq!(normalize_topic(raw, 64).unwrap(), want, "{raw:?}");
        }
        assert!(matches!(
            normalize_topic("/a/b", 8).unwrap(),
            Cow::Borrowed("a/b")
        ));
        assert!(matches!(
            normalize_topic("a/b", 8).unwrap(),
            Cow::Borrowed("a/b")
        ));
    }

    #[test]
    fn depth_limit_counts_slashes_after_normalisation() {
        // Limit 8: 8 slashes are fine, 9 are not.
        let eight = "a/".repeat(8) + "a";
        assert_eq!(topic_depth(&eight), 8);
        assert!(normalize_topic(&eight, 8).is_ok());
        let nine = "a/".repeat(9) + "a";
        assert_eq!(
            normalize_topic(&nine, 8),
            Err(TopicError::TooDeep { depth: 9, max: 8 })
        );
        // Runs of slashes and the leading slash do not count.
        let padded = "//".to_string() + &"a///".repeat(8) + "a";
        assert!(normalize_topic(&padded, 8).is_ok());
        assert!(normalize_topic("/", 0).is_ok());
        assert!(normalize_topic("a/", 0).is_err());
    }

    #[test]
    fn publish_topics() {
        assert_eq!(validate_publish_topic("a/b"), Ok(()));
        assert_eq!(validate_publish_topic(""), Ok(()));
        for bad in ["a/+", "#", "a/b#c", "x+y", "+/a"] {
            assert_eq!(
                validate_publish_topic(bad),
                Err(TopicError::Wildcard),
                "{bad}"
            );
        }
    }

    #[test]
    fn masks() {
        assert_eq!(validate_mask(""), Err(TopicError::EmptyMask));
        assert_eq!(validate_mask("#"), Ok(()));
        assert_eq!(validate_mask("a+b/#/c"), Ok(()));
    }

    #[test]
    fn canonical_masks() {
        for (mask, want) in [
            ("q/#/z", "q/#"),
            ("#", "#"),
            ("#/a/b", "#"),
            ("a/b", "a/b"),
            ("a/+/#", "a/+/#"),
            ("a#/b", "a#/b"),
            ("a/#/", "a/#"),
            ("", ""),
            ("/#/x", "/#"),
        ] {
            assert_eq!(canonical_mask(mask), want, "{mask:?}");
            for topic in ["", "a", "a/b", "q/x", "q/x/z", "a/x/y", "/x", "a#/b"] {
                assert_eq!(
                    mask_matches(mask, topic),
                    mask_matches(want, topic),
                    "{mask} {topic}"
                );
            }
        }
    }

    #[test]
    fn matching_table() {
        // (mask, topic, matches)
        let table = [
            ("#", "a", true),
            ("#", "a/b/c", true),
            ("#", "", true),
            ("#", "/", true),
            ("a/#", "a", false),
            ("a/#", "a/b", true),
            ("a/#", "a/b/c", true),
            ("a/#", "a/", true),
            ("a/#", "b/c", false),
            ("unit/#", "unit/x/y", true),
            ("q/#/z", "q/a", true),
            ("q/#/z", "q/a/b/c", true),
            ("+", "a", true),
            ("+", "", true),
            ("+", "a/b", false),
            ("a/+", "a/b", true),
            ("a/+", "a/", true),
            ("w/+", "w/", true),
            ("a/+", "a", false),
            ("a/+", "a/b/c", false),
            ("+/+", "a/b", true),
            ("+/b", "a/b", true),
            ("+/b", "a/c", false),
            ("a/+/c", "a/x/c", true),
            ("a/+/c", "a//c", true),
            ("a/+/#", "a/x/c/d", true),
            ("a/+/#", "a/x", false),
            ("a/b", "a/b", true),
            ("a/b", "a/b/c", false),
            ("a/b", "a", false),
            ("a+b", "a+b", true),
            ("a+b", "axb", false),
            ("a#", "a#", true),
            ("a#", "ab", false),
            ("", "", true),
            ("", "a", false),
            ("+/xxx", "xxx", false),
            ("+/xxx", "/xxx", true),
        ];
        for (mask, topic, want) in table {
            assert_eq!(mask_matches(mask, topic), want, "{mask:?} ~ {topic:?}");
        }
    }

    #[test]
    fn covering_table() {
        // (acl mask, subscription pattern, allowed)
        let table = [
            ("#", "#", true),
            ("#", "a/+/c", true),
            ("#", "", true),
            ("data/#", "data/x", true),
            ("data/#", "data/#", true),
            ("data/#", "data/+", true),
            ("data/#", "data", false),
            ("data/#", "#", false),
            ("data/+", "data/+", true),
            ("data/+", "data/x", true),
            ("data/+", "data/#", false),
            ("data/+", "data/x/y", false),
            ("data/x", "data/+", false),
            ("data/x", "data/x", true),
            ("+/xxx", "xxx", false),
            ("+/xxx", "a/xxx", true),
            ("+/xxx", "+/xxx", true),
            ("+", "#", false),
            ("a/#", "a/#/z", true),
            ("a/+/x", "a/#/x", false),
            ("a+b", "a+b", true),
            ("a+b", "+", false),
        ];
        for (mask, pattern, want) in table {
            assert_eq!(
                mask_covers(mask, pattern),
                want,
                "{mask:?} covers {pattern:?}"
            );
        }
    }

    #[test]
    fn covering_implies_matching_on_samples() {
        // If mask covers pattern, every sample topic the pattern matches, the
        // mask matches too.
        let masks = ["#", "a/#", "a/+", "+/b", "a/b", "+", "a/+/#"];
        let patterns = ["#", "a/#", "a/+", "+/b", "a/b", "+", "a/+/#", "a", "a/b/c"];
        let topics = ["", "a", "a/", "a/b", "a/c", "x/b", "a/b/c", "a/x/y/z", "b"];
        for m in masks {
            for p in patterns {
                if !mask_covers(m, p) {
                    continue;
                }
                for t in topics {
                    if mask_matches(p, t) {
                        assert!(mask_matches(m, t), "{m} covers {p} but not {t}");
                    }
                }
            }
        }
    }
}
