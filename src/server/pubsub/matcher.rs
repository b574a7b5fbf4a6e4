//! The subscription index: a tree with one node per topic level, children in
//! a `BTreeMap` (inline while a node has only one), and dedicated `+` and `#`
//! branches, so a publish visits only the branches its levels select — never
//! the unrelated subscriptions.
//!
//! PSRT semantics (the same as `psrt_protocol::mask_matches`): `+` matches
//! exactly one level, an empty one too; `#` matches one or more further
//! levels, so `a/#` does not match `a`; a lone `#` matches everything; `+`
//! and `#` inside a word are literals; everything after a `#` level is
//! ignored (`q/#/z` is `q/#`).
//!
//! The index stores client ids only. It does not deduplicate across masks:
//! a caller that must deliver once per client filters repeats itself.
//! Masks are expected in canonical form (`psrt_protocol::canonical_mask`), so
//! one subscription has one name.

use std::collections::{BTreeMap, BTreeSet};

/// Who subscribes: the control connection's slab key.
pub(crate) type ClientId = usize;

/// The subscribers of one node. Most nodes have exactly one, so a single
/// id is stored inline and a set is allocated only for more.
#[derive(Debug, Default)]
enum Subscribers {
    #[default]
    None,
    One(ClientId),
    Many(BTreeSet<ClientId>),
}

impl Subscribers {
    fn insert(&mut self, client: ClientId) -> bool {
        match self {
            Self::None => *self = Self::One(client),
            Self::One(c) if *c == client => return false,
            Self::One(c) => *self = Self::Many(BTreeSet::from([*c, client])),
            Self::Many(set) => return set.insert(client),
        }
        true
    }

    fn remove(&mut self, client: ClientId) -> bool {
        match self {
            Self::One(c) if *c == client => *self = Self::None,
            Self::Many(set) => {
                if !set.remove(&client) {
                    return false;
                }
                if let (1, Some(&last)) = (set.len(), set.first()) {
                    *self = Self::One(last);
                }
            }
            _ => return false,
        }
        true
    }

    fn is_empty(&self) -> bool {
        matches!(self, Self::None)
    }

    fn for_each(&self, out: &mut impl FnMut(ClientId)) {
        match self {
            Self::None => {}
            Self::One(c) => out(*c),
            Self::Many(set) => set.iter().for_each(|&c| out(c)),
        }
    }
}

/// The literal next levels of a node; most nodes have one, stored inline.
#[derive(Debug, Default)]
enum Children {
    #[default]
    None,
    One(Box<str>, Box<Node>),
    Many(BTreeMap<Box<str>, Box<Node>>),
}

impl Children {
    fn get(&self, level: &str) -> Option<&Node> {
        match self {
            Self::One(name, node) if **name == *level => Some(node),
            Self::Many(map) => map.get(level).map(|n| &**n),
            _ => None,
        }
    }

    fn get_mut(&mut self, level: &str) -> Option<&mut Node> {
        match self {
            Self::One(name, node) if **name == *level => Some(node),
            Self::Many(map) => map.get_mut(level).map(|n| &mut **n),
            _ => None,
        }
    }

    /// The child for `level`, created if missing.
    fn get_or_insert(&mut self, level: &str) -> &mut Node {
        let present = match self {
            Self::None => false,
            Self::One(name, _) => **name == *level,
            Self::Many(map) => map.contains_key(level),
        };
        if !present {
            match std::mem::take(self) {
                Self::None => *self = Self::One(level.into(), Box::default()),
                Self::One(name, node) => {
                    let mut map = BTreeMap::new();
                    map.insert(name, node);
                    map.insert(level.into(), Box::default());
                    *self = Self::Many(map);
                }
                Self::Many(mut map) => {
                    map.insert(level.into(), Box::default());
                    *self = Self::Many(map);
                }
            }
        }
        match self {
            Self::One(_, node) => node,
            Self::Many(map) => map.entry(level.into()).or_default(),
            // Filled in just above.
            Self::None => unreachable!("child was just inserted"),
        }
    }

    fn remove(&mut self, level: &str) {
        match self {
            Self::One(name, _) if **name == *level => *self = Self::None,
            Self::Many(map) => {
                map.remove(level);
                if map.len() == 1 {
                    if let Some((name, node)) = map.pop_first() {
                        *self = Self::One(name, node);
                    }
                }
            }
            _ => {}
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Self::None)
    }
}

#[derive(Debug, Default)]
struct Node {
    /// Literal next levels.
    children: Children,
    /// `+` as the next level.
    plus: Option<Box<Self>>,
    /// Masks that end at this node.
    exact: Subscribers,
    /// Masks with `#` as the next level (match one or more further levels).
    rest: Subscribers,
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
            self.exact.for_each(out);
            return;
        };
        self.rest.for_each(out);
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
pub(crate) struct Matcher {
    root: Node,
    /// (client, mask) pairs stored.
    subscriptions: usize,
}

impl Matcher {
    /// An empty index.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds `client` to `mask`. Returns false if it was already there.
    pub(crate) fn subscribe(&mut self, mask: &str, client: ClientId) -> bool {
        let (path, rest) = mask_path(mask);
        let mut node = &mut self.root;
        for level in path {
            node = if level == "+" {
                node.plus.get_or_insert_with(Box::default)
            } else {
                node.children.get_or_insert(level)
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
    pub(crate) fn unsubscribe(&mut self, mask: &str, client: ClientId) -> bool {
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
            return set.remove(client);
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
    pub(crate) fn for_each_match(&self, topic: &str, mut out: impl FnMut(ClientId)) {
        self.root.collect(topic.split('/'), &mut out);
    }

    /// Whether any mask matches `topic` (PUBLISH_REPL asks this).
    pub(crate) fn has_match(&self, topic: &str) -> bool {
        let mut any = false;
        self.for_each_match(topic, |_| any = true);
        any
    }

    /// Number of (client, mask) pairs.
    pub(crate) fn len(&self) -> usize {
        self.subscriptions
    }

    /// No subscriptions at all.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
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
    fn random_subscribe_unsubscribe_agrees_with_mask_matching() {
        // A small deterministic generator: no dependency, same run every time.
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let levels = ["a", "b", "", "+", "#", "c+d"];
        let mut m = Matcher::new();
        let mut live: Vec<(String, ClientId)> = Vec::new();
        for _ in 0..3000 {
            let depth = 1 + next(3);
            let mask: Vec<&str> = (0..depth).map(|_| levels[next(levels.len())]).collect();
            let mask = psrt_protocol::canonical_mask(&mask.join("/")).to_string();
            let client = next(5);
            if next(3) == 0 {
                let was = live.iter().position(|(mk, c)| *mk == mask && *c == client);
                assert_eq!(m.unsubscribe(&mask, client), was.is_some());
                if let Some(i) = was {
                    live.swap_remove(i);
                }
            } else {
                let new = !live.iter().any(|(mk, c)| *mk == mask && *c == client);
                assert_eq!(m.subscribe(&mask, client), new);
                if new {
                    live.push((mask, client));
                }
            }
            assert_eq!(m.len(), live.len());
        }
        for topic in ["a", "b", "", "a/b", "a//b", "b/a/c", "c+d/a", "a/a/a", "x"] {
            let mut want: Vec<ClientId> = live
                .iter()
                .filter(|(mask, _)| mask_matches(mask, topic))
                .map(|&(_, c)| c)
                .collect();
            want.sort_unstable();
            assert_eq!(matches(&m, topic), want, "topic {topic:?}");
        }
        for (mask, client) in live.drain(..) {
            assert!(m.unsubscribe(&mask, client));
        }
        assert!(m.is_empty() && m.root.is_empty(), "everything pruned");
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
