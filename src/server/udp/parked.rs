//! Plain-auth datagrams waiting for their (login, password) check: one
//! bcrypt job per pair, however many datagrams arrive while it runs. They
//! wait in arrival order, bounded in bytes per pair
//! (`server.udp_pending_bytes_per_check`) and for all pairs together
//! (`server.udp_pending_bytes`), a datagram's bytes counted with its
//! bookkeeping; past a bound a datagram is dropped. When the check succeeds
//! they are published in order; when it fails they are dropped.
//!
//! A pair is named by its keyed digest (`LoginCache::pair`), so the map
//! holds no password (the datagrams themselves do, until they are handled).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use crate::server::auth::cache::Digest;

/// One waiting datagram.
#[derive(Debug)]
pub(crate) struct Datagram {
    /// Index of the socket it came in on (the ack goes out there).
    pub(crate) socket: usize,
    /// Its source.
    pub(crate) src: SocketAddr,
    /// The whole datagram, as received.
    pub(crate) bytes: Box<[u8]>,
}

impl Datagram {
    /// Memory it holds: its bytes and its bookkeeping.
    fn cost(&self) -> usize {
        self.bytes.len() + size_of::<Self>()
    }
}

/// The datagrams of one check in progress.
#[derive(Debug)]
struct Group {
    /// The check's ticket number.
    id: u64,
    bytes: usize,
    datagrams: VecDeque<Datagram>,
}

/// Why a datagram could not wait.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Full {
    /// Its pair's share is used up.
    Pair,
    /// All pairs together are at the bound.
    Total,
}

/// Every check in progress and its datagrams.
#[derive(Debug, Default)]
pub(crate) struct Parked {
    groups: HashMap<Digest, Group>,
    /// Bytes held by all groups.
    bytes: usize,
    next_id: u64,
}

impl Parked {
    /// Nothing is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Whether a check for `pair` is in progress.
    pub(crate) fn waiting(&self, pair: &Digest) -> bool {
        self.groups.contains_key(pair)
    }

    /// The ticket number the next check will get.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id + 1
    }

    /// A check for `pair` has started with [`Parked::next_id`].
    pub(crate) fn open(&mut self, pair: Digest) {
        self.next_id += 1;
        self.groups.insert(
            pair,
            Group {
                id: self.next_id,
                bytes: 0,
                datagrams: VecDeque::new(),
            },
        );
    }

    /// Queues a datagram behind `pair`'s check (which must be open).
    pub(crate) fn push(
        &mut self,
        pair: &Digest,
        d: Datagram,
        per_pair: usize,
        total: usize,
    ) -> Result<(), Full> {
        let Some(group) = self.groups.get_mut(pair) else {
            return Err(Full::Pair);
        };
        let cost = d.cost();
        if group.bytes + cost > per_pair {
            return Err(Full::Pair);
        }
        if self.bytes + cost > total {
            return Err(Full::Total);
        }
        group.bytes += cost;
        self.bytes += cost;
        group.datagrams.push_back(d);
        Ok(())
    }

    /// Ends `pair`'s check number `id`: its datagrams, in arrival order
    /// (`None` if no such check is open).
    pub(crate) fn close(&mut self, pair: &Digest, id: u64) -> Option<VecDeque<Datagram>> {
        if self.groups.get(pair)?.id != id {
            return None;
        }
        let group = self.groups.remove(pair)?;
        self.bytes -= group.bytes;
        Some(group.datagrams)
    }

    /// Bytes held by all groups.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8, len: usize) -> Datagram {
        Datagram {
            socket: 0,
            src: "192.0.2.1:9".parse().unwrap(),
            bytes: vec![n; len].into(),
        }
    }

    #[test]
    fn bounded_per_pair_and_in_total_and_in_order() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let unit = d(0, 100).cost();
        let mut p = Parked::default();
        assert!(p.is_empty() && !p.waiting(&a));
        assert_eq!(
            p.push(&a, d(0, 100), usize::MAX, usize::MAX),
            Err(Full::Pair)
        );
        let id_a = p.next_id();
        p.open(a);
        let id_b = p.next_id();
        p.open(b);
        assert_ne!(id_a, id_b);
        assert!(p.waiting(&a) && p.waiting(&b));
        // Two fit in a's share, the third does not.
        for n in 0..3 {
            let got = p.push(&a, d(n, 100), 2 * unit, 3 * unit);
            assert_eq!(got.is_ok(), n < 2, "{n}");
        }
        // b has its own share, but the total is reached after one.
        assert_eq!(p.push(&b, d(9, 100), 2 * unit, 3 * unit), Ok(()));
        assert_eq!(p.push(&b, d(9, 100), 2 * unit, 3 * unit), Err(Full::Total));
        assert_eq!(p.bytes(), 3 * unit);
        // A stale id closes nothing.
        assert!(p.close(&a, id_b).is_none());
        let got: Vec<u8> = p
            .close(&a, id_a)
            .unwrap()
            .iter()
            .map(|d| d.bytes[0])
            .collect();
        assert_eq!(got, [0, 1], "arrival order");
        assert_eq!(p.bytes(), unit);
        assert!(!p.waiting(&a));
        assert_eq!(p.close(&b, id_b).unwrap().len(), 1);
        assert!(p.is_empty() && p.bytes() == 0);
    }
}
