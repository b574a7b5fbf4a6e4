//! Replay detection for AES-GCM datagrams: per key, the nonces of the last
//! `server.udp_replay_window` authentic datagrams (default 4096). A datagram
//! whose nonce is among them is a replay: counted in `udp_replayed`, never
//! acked, never delivered. A replay of a datagram older than the window is
//! not detected (memory stays bounded: about 40 bytes per nonce, so some
//! 160 KiB per key at the default, and only for keys that send).
//!
//! Only datagrams that decrypted are recorded, so a forger cannot fill a
//! key's window. Clients must never reuse a nonce with a key (AES-GCM needs
//! that anyway); the psrt clients count up from a random start.

use std::collections::{HashMap, HashSet, VecDeque};

use psrt_protocol::GCM_NONCE_LEN;

/// One key's recent nonces.
#[derive(Debug, Default)]
struct Window {
    seen: HashSet<[u8; GCM_NONCE_LEN]>,
    order: VecDeque<[u8; GCM_NONCE_LEN]>,
}

/// Recent nonces of every key that has sent.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    keys: HashMap<Box<str>, Window>,
}

/// The key id as `keys.yml` names it (empty = `_`).
fn key_name(key_id: &str) -> &str {
    if key_id.is_empty() { "_" } else { key_id }
}

impl Replay {
    /// Records the nonce of an authentic datagram of `key_id`; `false` if
    /// it is among the key's last `window` nonces (a replay).
    pub(crate) fn fresh(
        &mut self,
        key_id: &str,
        nonce: [u8; GCM_NONCE_LEN],
        window: usize,
    ) -> bool {
        let name = key_name(key_id);
        let w = match self.keys.get_mut(name) {
            Some(w) => w,
            None => self.keys.entry(name.into()).or_default(),
        };
        if !w.seen.insert(nonce) {
            return false;
        }
        w.order.push_back(nonce);
        while w.order.len() > window.max(1) {
            if let Some(old) = w.order.pop_front() {
                w.seen.remove(&old);
            }
        }
        true
    }

    /// After a reload: forgets the keys `keep` no longer has.
    pub(crate) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.keys.retain(|name, _| keep(name));
    }

    /// No key has a window.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Nonces remembered for a key.
    #[cfg(test)]
    fn remembered(&self, key_id: &str) -> usize {
        self.keys.get(key_name(key_id)).map_or(0, |w| w.order.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonce(n: u32) -> [u8; GCM_NONCE_LEN] {
        let mut x = [0u8; GCM_NONCE_LEN];
        x[..4].copy_from_slice(&n.to_le_bytes());
        x
    }

    #[test]
    fn a_nonce_counts_once_per_key_within_the_window() {
        let mut r = Replay::default();
        assert!(r.fresh("k", nonce(1), 4));
        assert!(!r.fresh("k", nonce(1), 4), "replay");
        assert!(r.fresh("other", nonce(1), 4), "keys are separate");
        assert!(r.fresh("", nonce(7), 4));
        assert!(!r.fresh("_", nonce(7), 4), "the empty key id is `_`");
        for n in 2..=5 {
            assert!(r.fresh("k", nonce(n), 4));
        }
        assert_eq!(r.remembered("k"), 4, "bounded");
        assert!(!r.fresh("k", nonce(2), 4), "still in the window");
        assert!(
            r.fresh("k", nonce(1), 4),
            "older than the window: not detected"
        );
        r.retain(|name| name != "k");
        assert_eq!(r.remembered("k"), 0);
        assert_eq!(r.remembered("other"), 1);
    }
}
