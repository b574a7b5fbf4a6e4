//! The busiest topics, for the stats page: a bounded top-K table kept with
//! the space-saving algorithm (Metwally et al.), so memory stays flat
//! however many distinct topics are published.
//!
//! [`SLOTS`] slots each hold a topic and its counts. A publish to a tracked
//! topic adds to its slot; a publish to an untracked one takes over the slot
//! with the fewest messages and inherits that count as its `error` (the
//! count is then an overestimate by at most `error`). Any topic with more
//! than 1/`SLOTS` of all messages is guaranteed a slot.
//!
//! Cost per publish: the same topic as the previous publish is one length
//! and word-by-word comparison and two additions; otherwise one seeded hash of the topic and a probe
//! of a 256-entry index. A counted slot moves down a min-heap (usually not
//! at all: heavy topics settle at the bottom). Taking over a slot reuses its
//! string, so nothing is allocated once the slots' strings have grown to the
//! topics' lengths; topics are stored up to [`MAX_TOPIC`] bytes (longer ones
//! are counted under their first bytes and `…`).
//!
//! Rates are taken by [`TopTopics::roll`], once a second from the loop.

use std::time::Instant;

/// Topics tracked.
pub(crate) const SLOTS: usize = 128;
/// Index entries (a power of two, at most half full).
const INDEX: usize = 2 * SLOTS;
const EMPTY: u16 = u16::MAX;
/// Longest topic stored as is.
pub(crate) const MAX_TOPIC: usize = 256;

/// One tracked topic.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The topic (cut to [`MAX_TOPIC`] bytes).
    pub topic: String,
    hash: u64,
    /// Messages, an overestimate by at most `error`.
    pub count: u64,
    /// The count inherited when this topic took the slot over.
    pub error: u64,
    /// Bytes (topic + 1 + payload, as `c_pub_bytes`) since `since`.
    pub bytes: u64,
    /// When this topic took the slot.
    pub since: Instant,
    /// Messages and bytes per second over the last roll's interval.
    pub msg_rate: f64,
    /// Bytes per second over the same interval.
    pub byte_rate: f64,
    mark_count: u64,
    mark_bytes: u64,
    heap_pos: u16,
}

/// The table.
#[derive(Debug)]
pub(crate) struct TopTopics {
    slots: Vec<Slot>,
    /// Slot numbers, a min-heap by count.
    heap: Vec<u16>,
    /// Open addressing by hash: slot numbers or `EMPTY`.
    index: Box<[u16; INDEX]>,
    seed: [u64; 2],
    /// The slot of the previous publish.
    last: u16,
    rolled_at: Instant,
}

const K0: u64 = 0x9e37_79b9_7f4a_7c15;
const K1: u64 = 0xa076_1d64_78bd_642f;

/// 64 × 64 → 128-bit multiply, folded.
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// A seeded multiply-fold hash: fast, and with a random seed a client
/// cannot aim its topics at one index entry (at worst a probe walks the
/// 256 entries).
fn hash(seed: [u64; 2], bytes: &[u8]) -> u64 {
    let mut h = seed[0] ^ (bytes.len() as u64).wrapping_mul(K0);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let word = u64::from_le_bytes(c.try_into().unwrap_or_default());
        h = fold_mul(h ^ word, seed[1] | 1);
    }
    let mut tail = [0u8; 8];
    let rest = chunks.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    fold_mul(h ^ u64::from_le_bytes(tail), K1)
}

/// Byte equality without a library call for topics of 8 bytes or more
/// (word compares, the last one overlapping): the fast path's one test.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a == b;
    }
    let word =
        |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or_default());
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

/// Whether `stored` is `key` (plus `…` if `cut`).
fn is_stored_as(stored: &str, key: &str, cut: bool) -> bool {
    match stored.strip_suffix('…') {
        Some(prefix) if cut => prefix == key,
        _ => !cut && stored == key,
    }
}

/// `topic` as stored: whole, or its first bytes (at a char boundary) and `…`.
fn stored(topic: &str) -> (&str, bool) {
    if topic.len() <= MAX_TOPIC {
        return (topic, false);
    }
    let mut end = MAX_TOPIC - '…'.len_utf8();
    while !topic.is_char_boundary(end) {
        end -= 1;
    }
    (&topic[..end], true)
}

impl TopTopics {
    /// An empty table whose hash is keyed by `seed` (random per server).
    pub(crate) fn new(seed: [u64; 2], now: Instant) -> Self {
        Self {
            slots: Vec::with_capacity(SLOTS),
            heap: Vec::with_capacity(SLOTS),
            index: Box::new([EMPTY; INDEX]),
            seed,
            last: EMPTY,
            rolled_at: now,
        }
    }

    /// Counts one message of `bytes` on `topic`.
    #[inline]
    pub(crate) fn record(&mut self, topic: &str, bytes: u64, now: Instant) {
        if let Some(s) = self.slots.get(usize::from(self.last)) {
            if same(s.topic.as_bytes(), topic.as_bytes()) {
                return self.bump(self.last, bytes);
            }
        }
        self.record_other(topic, bytes, now);
    }

    /// A topic other than the previous publish's: found by hash, or given
    /// the slot with the fewest messages.
    #[inline(never)]
    fn record_other(&mut self, topic: &str, bytes: u64, now: Instant) {
        let (key, cut) = stored(topic);
        let h = hash(self.seed, key.as_bytes());
        let mut i = h as usize % INDEX;
        loop {
            let e = self.index[i];
            if e == EMPTY {
                break;
            }
            let s = &self.slots[usize::from(e)];
            if s.hash == h && is_stored_as(&s.topic, key, cut) {
                self.last = e;
                return self.bump(e, bytes);
            }
            i = (i + 1) % INDEX;
        }
        let n = if self.slots.len() < SLOTS {
            let n = self.slots.len() as u16;
            self.slots.push(Slot {
                topic: String::new(),
                hash: 0,
                count: 0,
                error: 0,
                bytes: 0,
                since: now,
                msg_rate: 0.0,
                byte_rate: 0.0,
                mark_count: 0,
                mark_bytes: 0,
                heap_pos: n,
            });
            self.heap.push(n);
            // Count 0 at the end of the heap: heap order holds.
            n
        } else {
            let n = self.heap[0];
            self.unindex(n);
            n
        };
        let s = &mut self.slots[usize::from(n)];
        s.topic.clear();
        s.topic.push_str(key);
        if cut {
            s.topic.push('…');
        }
        s.hash = h;
        s.error = s.count;
        s.mark_count = s.count;
        s.bytes = 0;
        s.mark_bytes = 0;
        s.since = now;
        s.msg_rate = 0.0;
        s.byte_rate = 0.0;
        let mut i = h as usize % INDEX;
        while self.index[i] != EMPTY {
            i = (i + 1) % INDEX;
        }
        self.index[i] = n;
        self.last = n;
        self.bump(n, bytes);
        let pos = self.slots[usize::from(n)].heap_pos;
        self.sift_up(usize::from(pos));
    }

    fn sift_up(&mut self, mut pos: usize) {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.count_at(parent) <= self.count_at(pos) {
                return;
            }
            self.swap(pos, parent);
            pos = parent;
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.slots[usize::from(self.heap[a])].heap_pos = a as u16;
        self.slots[usize::from(self.heap[b])].heap_pos = b as u16;
    }

    #[inline(always)]
    fn bump(&mut self, n: u16, bytes: u64) {
        let s = &mut self.slots[usize::from(n)];
        s.count += 1;
        s.bytes += bytes;
        let pos = usize::from(s.heap_pos);
        // A busy topic soon sits where it has no child: nothing to move.
        if 2 * pos + 1 < self.heap.len() {
            self.sift_down(pos);
        }
    }

    fn count_at(&self, pos: usize) -> u64 {
        self.slots[usize::from(self.heap[pos])].count
    }

    fn sift_down(&mut self, mut pos: usize) {
        loop {
            let left = 2 * pos + 1;
            if left >= self.heap.len() {
                return;
            }
            let right = left + 1;
            let child = if right < self.heap.len() && self.count_at(right) < self.count_at(left) {
                right
            } else {
                left
            };
            if self.count_at(child) >= self.count_at(pos) {
                return;
            }
            self.swap(pos, child);
            pos = child;
        }
    }

    /// Takes slot `n` out of the index (backward-shift deletion, so probes
    /// never meet a hole).
    fn unindex(&mut self, n: u16) {
        let mut hole = self.slots[usize::from(n)].hash as usize % INDEX;
        while self.index[hole] != n {
            if self.index[hole] == EMPTY {
                return;
            }
            hole = (hole + 1) % INDEX;
        }
        self.index[hole] = EMPTY;
        let mut i = hole;
        loop {
            i = (i + 1) % INDEX;
            let e = self.index[i];
            if e == EMPTY {
                return;
            }
            let home = self.slots[usize::from(e)].hash as usize % INDEX;
            // Move e back if the hole lies on its probe path home..=i.
            let dist_i = (i + INDEX - home) % INDEX;
            let dist_hole = (hole + INDEX - home) % INDEX;
            if dist_hole < dist_i {
                self.index[hole] = e;
                self.index[i] = EMPTY;
                hole = i;
            }
        }
    }

    /// Rates since the previous roll (at least a second apart: an earlier
    /// call does nothing). The loop calls this once a second.
    pub(crate) fn roll(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.rolled_at).as_secs_f64();
        if dt < 1.0 {
            return;
        }
        for s in &mut self.slots {
            s.msg_rate = s.count.saturating_sub(s.mark_count) as f64 / dt;
            s.byte_rate = s.bytes.saturating_sub(s.mark_bytes) as f64 / dt;
            s.mark_count = s.count;
            s.mark_bytes = s.bytes;
        }
        self.rolled_at = now;
    }

    /// Tracked topics.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The `n` busiest: most messages first, or (`by_rate`) most messages
    /// per second over the last interval first, then most messages.
    pub(crate) fn busiest(&self, n: usize, by_rate: bool) -> Vec<&Slot> {
        let largest_first = |v: u64| u64::MAX - v;
        let mut keys: Vec<(u64, u64, usize)> = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let count = largest_first(s.count);
                if by_rate {
                    // Rates are kept to 0.01 in the tables.
                    (largest_first((s.msg_rate * 100.0) as u64), count, i)
                } else {
                    (count, largest_first(s.bytes), i)
                }
            })
            .collect();
        keys.sort_unstable();
        keys.iter().take(n).map(|k| &self.slots[k.2]).collect()
    }
}

#[cfg(test)]
impl TopTopics {
    /// Checks the heap order, the heap positions and that every slot is
    /// found through the index under its own topic, once.
    pub(crate) fn check(&self) {
        for pos in 1..self.heap.len() {
            assert!(
                self.count_at((pos - 1) / 2) <= self.count_at(pos),
                "heap order"
            );
        }
        for (pos, &n) in self.heap.iter().enumerate() {
            assert_eq!(usize::from(self.slots[usize::from(n)].heap_pos), pos);
        }
        let indexed = self.index.iter().filter(|&&e| e != EMPTY).count();
        assert_eq!(indexed, self.slots.len(), "one index entry per slot");
        for (n, s) in self.slots.iter().enumerate() {
            let mut i = s.hash as usize % INDEX;
            while usize::from(self.index[i]) != n {
                assert_ne!(self.index[i], EMPTY, "slot {n} ({}) not found", s.topic);
                i = (i + 1) % INDEX;
            }
        }
    }

    /// The topic the next untracked topic takes the slot of.
    pub(crate) fn next_victim(&self) -> &str {
        &self.slots[usize::from(self.heap[0])].topic
    }

    /// A slot's string buffer (to see it is reused).
    pub(crate) fn buffer_of(&self, topic: &str) -> Option<*const u8> {
        self.slots
            .iter()
            .find(|s| s.topic == topic)
            .map(|s| s.topic.as_ptr())
    }
}
