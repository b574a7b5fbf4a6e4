//! The set of masks one client subscribes to. Most clients hold a handful:
//! those live in a small vector (one allocation the size of the masks); a
//! client that subscribes to many moves to a B-tree set, so bulk
//! subscriptions stay O(log n) per mask.

use std::collections::BTreeSet;

/// Beyond this many masks the set becomes a B-tree.
const FEW: usize = 8;

/// A client's masks, each once.
#[derive(Debug)]
pub(crate) enum Masks {
    /// Up to [`FEW`] masks, in insertion order.
    Few(Vec<Box<str>>),
    /// More.
    Many(BTreeSet<Box<str>>),
}

impl Default for Masks {
    fn default() -> Self {
        Self::Few(Vec::new())
    }
}

impl Masks {
    /// Adds a mask; false if it was there.
    pub(crate) fn insert(&mut self, mask: &str) -> bool {
        match self {
            Self::Few(v) if v.iter().any(|m| &**m == mask) => false,
            Self::Few(v) if v.len() < FEW => {
                v.push(mask.into());
                true
            }
            Self::Few(v) => {
                let mut set: BTreeSet<Box<str>> = std::mem::take(v).into_iter().collect();
                set.insert(mask.into());
                *self = Self::Many(set);
                true
            }
            Self::Many(s) => s.insert(mask.into()),
        }
    }

    /// Removes a mask; false if it was not there.
    pub(crate) fn remove(&mut self, mask: &str) -> bool {
        match self {
            Self::Few(v) => match v.iter().position(|m| &**m == mask) {
                Some(i) => {
                    v.swap_remove(i);
                    true
                }
                None => false,
            },
            Self::Many(s) => s.remove(mask),
        }
    }

    /// Whether the mask is in the set.
    pub(crate) fn contains(&self, mask: &str) -> bool {
        match self {
            Self::Few(v) => v.iter().any(|m| &**m == mask),
            Self::Many(s) => s.contains(mask),
        }
    }

    /// Number of masks.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Few(v) => v.len(),
            Self::Many(s) => s.len(),
        }
    }

    /// Every mask.
    pub(crate) fn iter(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match self {
            Self::Few(v) => Box::new(v.iter().map(|m| &**m)),
            Self::Many(s) => Box::new(s.iter().map(|m| &**m)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_then_many() {
        let mut m = Masks::default();
        assert!(m.insert("a/#"));
        assert!(!m.insert("a/#"), "each mask once");
        for i in 0..20 {
            assert!(m.insert(&format!("t/{i}")));
        }
        assert!(matches!(m, Masks::Many(_)));
        assert_eq!(m.len(), 21);
        assert!(m.contains("a/#") && m.contains("t/19"));
        assert!(m.remove("t/3"));
        assert!(!m.remove("t/3"));
        assert_eq!(m.iter().count(), 20);
    }

    #[test]
    fn small_sets_stay_small() {
        let mut m = Masks::default();
        for i in 0..FEW {
            m.insert(&format!("x/{i}"));
        }
        assert!(matches!(m, Masks::Few(_)));
        assert!(m.remove("x/0"));
        assert!(!m.contains("x/0"));
        assert_eq!(m.len(), FEW - 1);
    }
}
