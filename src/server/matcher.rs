//! The subscription index: a tree with one node per topic level, children in
//! a `BTreeMap`, and dedicated `+` and `#` branches, so a publish visits only
//! the branches its levels select — never the unrelated subscriptions.
//!
//! PSRT semantics (the same as `psrt_protocol::mask_matches`): `+` matches
//! exactly one level, an empty one too; `#` matches one or more further
//! levels, so `a/#` does not match `a`; a lone `#` matches everything; `+`
//! and `#` inside a word are literals; everything after a `#` level is
//! ignored (`q/#/z` is `q/#`).
//!
//! The index stores client ids only. It does not deduplicate across masks:
//! a caller that must deliver once per client filters repeats itself.

use std::collections::{BTreeMap, BTreeSet};

/// Who subscribes: the control connection's slab key.
pub type ClientId = usize;

#[derive(Debug, Default)]
struct Node {
    /// Literal next levels.
    children: BTreeMap<Box<str>, Box<Self>>,
    /// `+` as the next level.
    plus: Option<Box<Self>>,
    /// Masks that end at this node.
    exact: BTreeSet<ClientId>,
    /// Masks with `#` as the next level (match one or more further levels).
    rest: BTreeSet<ClientId>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.exact.is_empty()
            && self.rest.is_empty()
    }

    fn collect<'t>(
        &self,
        mut levels: impl Iterator<Item = &'t str> + Clone,
        out: &mut impl FnMut(ClientId),
    ) {
        let Some(level) = levels.next() else {
            self.exact.iter().for_each(|&c| out(c));
            return;
        };
        self.rest.iter().for_each(|&c| out(c));
        if let Some(child) = self.children.get(level) {
            child.collect(levels.clone(), out);
        }
        if let Some(plus) = &self.plus {
            plus.collect(levels, out);
        }
    }
}

/// Where a mask ends: the levels before it and whether it ends with `#`.
fn mask_path(mask: &str) -> (Vec<&str>, bool) {
    let mut path = Vec::new();
    for level in mask.split('/') {
        if level == "#" {
            return (path, true);
        }
        path.push(level);
    }
    (path, false)
}

/// The index.
#[derive(Debug, Default)]
pub struct Matcher {
    root: Node,
    /// (client, mask) pairs stored.
    subscriptions: usize,
}

impl Matcher {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `client` to `mask`. Returns false if it was already there.
    pub fn subscribe(&mut self, mask: &str, client: ClientId) -> bool {
        let (path, rest) = mask_path(mask);
        let mut node = &mut self.root;
        for level in path {
            node = if level == "+" {
                node.plus.get_or_insert_with(Box::default)
            } else {
                node.children.entry(level.into()).or_default()
            };
        }
        let set = if rest {
            &mut node.rest
        } else {
            &mut node.exact
        };
        let added = set.insert(client);
        if added {
            self.subscriptions += 1;
        }
        added
    }

    /// Removes `client` from `mask` and prunes empty nodes. Returns false if
    /// it was not there.
    pub fn unsubscribe(&mut self, mask: &str, client: ClientId) -> bool {
        let (path, rest) = mask_path(mask);
        let removed = Self::remove(&mut self.root, &path, rest, client);
        if removed {
            self.subscriptions -= 1;
        }
        removed
    }

    fn remove(node: &mut Node, path: &[&str], rest: bool, client: ClientId) -> bool {
        let Some((&level, tail)) = path.split_first() else {
            let set = if rest {
                &mut node.rest
            } else {
                &mut node.exact
            };
            return set.remove(&client);
        };
        if level == "+" {
            let Some(plus) = node.plus.as_deref_mut() else {
                return false;
            };
            let removed = Self::remove(plus, tail, rest, client);
            if plus.is_empty() {
                node.plus = None;
            }
            removed
        } else {
            let Some(child) = node.children.get_mut(level) else {
                return false;
            };
            let removed = Self::remove(child, tail, rest, client);
            if child.is_empty() {
                node.children.remove(level);
            }
            removed
        }
    }

    /// Calls `out` for every (client, mask) pair that matches `topic`; a
    /// client with several matching masks is reported once per mask.
    pub fn for_each_match(&self, topic: &str, mut out: impl FnMut(ClientId)) {
        self.root.collect(topic.split('/'), &mut out);
    }

    /// Whether any mask matches `topic` (PUBLISH_REPL asks this).
    pub fn has_match(&self, topic: &str) -> bool {
        let mut any = false;
        self.for_each_match(topic, |_| any = true);
        any
    }

    /// Number of (client, mask) pairs.
    pub fn len(&self) -> usize {
        self.subscriptions
    }

    /// No subscriptions at all.
    pub fn is_empty(&self) -> bool {
        self.subscriptions == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use psrt_protocol::mask_matches;

    fn matches(m: &Matcher, topic: &str) -> Vec<ClientId> {
        let mut v = Vec::new();
        m.for_each_match(topic, |c| v.push(c));
        v.sort_unstable();
        v
    }

    #[test]
    fn semantics_table() {
        let masks = [
            "#", "a/#", "a/+", "+/b", "a/b", "+", "a/+/#", "q/#/z", "w/+", "a+b", "", "/x", "a/b/c",
        ];
        let topics = [
            "", "a", "a/", "a/b", "a/c", "x/b", "a/b/c", "a/x/y/z", "q/a", "q", "w/", "a+b", "/x",
            "b", "a//b",
        ];
        let mut m = Matcher::new();
        for (i, mask) in masks.iter().enumerate() {
            assert!(m.subscribe(mask, i));
        }
        for topic in topics {
            let want: Vec<ClientId> = masks
                .iter()
                .enumerate()
                .filter(|(_, mask)| mask_matches(mask, topic))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(matches(&m, topic), want, "topic {topic:?}");
        }
    }

    #[test]
    fn pinned_rules() {
        let mut m = Matcher::new();
        m.subscribe("a/#", 1);
        m.subscribe("#", 2);
        m.subscribe("+", 3);
        assert_eq!(matches(&m, "a"), [2, 3], "a/# does not match a");
        assert_eq!(matches(&m, "a/b"), [1, 2]);
        assert_eq!(matches(&m, ""), [2, 3], "+ matches an empty level");
        assert!(m.has_match("zzz"));
    }

    #[test]
    fn duplicates_and_removal_prune_the_tree() {
        let mut m = Matcher::new();
        assert!(m.subscribe("a/+/c", 1));
        assert!(!m.subscribe("a/+/c", 1), "second subscribe is a no-op");
        assert!(m.subscribe("a/+/c", 2));
        assert!(m.subscribe("a/b/#", 1));
        assert_eq!(m.len(), 3);
        // One client, two matching masks: reported per mask.
        assert_eq!(matches(&m, "a/b/c"), [1, 1, 2]);
        assert!(m.unsubscribe("a/+/c", 1));
        assert!(!m.unsubscribe("a/+/c", 1));
        assert!(!m.unsubscribe("never/subscribed", 1));
        assert!(m.unsubscribe("a/+/c", 2));
        assert!(m.unsubscribe("a/b/#", 1));
        assert!(m.is_empty());
        assert!(m.root.is_empty(), "all nodes pruned: {:?}", m.root);
        assert!(!m.has_match("a/b/c"));
    }

    #[test]
    fn unrelated_subscriptions_are_not_visited() {
        let mut m = Matcher::new();
        for k in 0..10_000 {
            m.subscribe(&format!("x/{k}/y"), k);
            m.subscribe(&format!("x/{k}/+"), k);
        }
        m.subscribe("bench/t0", 99_999);
        assert_eq!(matches(&m, "bench/t0"), [99_999]);
        assert_eq!(matches(&m, "x/5/y"), [5, 5]);
        assert_eq!(m.len(), 20_001);
    }
}
