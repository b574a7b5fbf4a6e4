//! Connection deadlines in one min-heap, read lazily.
//!
//! A connection's deadline moves on every request, so the heap is not
//! updated then. Instead each connection keeps the earliest instant it has
//! queued (`Conn::armed`); a new entry is pushed only when the deadline moves
//! *earlier*. When an entry fires, the loop recomputes the connection's real
//! deadline and either acts or re-arms. Entries carry the connection serial,
//! so a reused slab slot never receives a stale timer.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// A queued deadline: (when, slab key, serial).
type Entry = Reverse<(Instant, usize, u64)>;

/// The deadline heap.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Entry>,
}

impl Timers {
    /// Makes sure an entry at or before `at` exists for this connection.
    pub(crate) fn arm(&mut self, id: usize, serial: u64, at: Instant, armed: &mut Option<Instant>) {
        if armed.is_none_or(|current| at < current) {
            self.heap.push(Reverse((at, id, serial)));
            *armed = Some(at);
        }
    }

    /// Pops the next entry due at `now`: (slab key, serial, the entry's time).
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(usize, u64, Instant)> {
        let &Reverse((at, id, serial)) = self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        Some((id, serial, at))
    }

    /// Time until the next entry, for the poll timeout.
    pub(crate) fn until_next(&self, now: Instant) -> Option<Duration> {
        self.heap
            .peek()
            .map(|Reverse((at, _, _))| at.saturating_duration_since(now))
    }

    /// Entries queued (including stale ones).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// No entries.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_earlier_deadlines_push() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        let mut armed = None;
        timers.arm(1, 10, t0 + Duration::from_secs(5), &mut armed);
        timers.arm(1, 10, t0 + Duration::from_secs(6), &mut armed);
        assert_eq!(
            timers.len(),
            1,
            "a later deadline is found when the entry fires"
        );
        timers.arm(1, 10, t0 + Duration::from_secs(1), &mut armed);
        assert_eq!(timers.len(), 2);
        assert_eq!(armed, Some(t0 + Duration::from_secs(1)));
        assert_eq!(timers.until_next(t0), Some(Duration::from_secs(1)));
        assert_eq!(timers.pop_due(t0), None);
        let (id, serial, at) = timers.pop_due(t0 + Duration::from_secs(2)).unwrap();
        assert_eq!((id, serial, at), (1, 10, t0 + Duration::from_secs(1)));
        assert_eq!(timers.pop_due(t0 + Duration::from_secs(2)), None);
        assert!(timers.pop_due(t0 + Duration::from_secs(9)).is_some());
        assert!(timers.is_empty());
    }
}
