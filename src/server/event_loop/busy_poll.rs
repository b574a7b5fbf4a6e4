//! The optional busy poll (`server.busy_poll_us`, off by default).
//!
//! After a loop turn that read a little socket input — a request — the loop
//! polls without sleeping for up to `busy_poll_us` before it sleeps in
//! `epoll_wait`. A client that sends its next request as soon as it has its
//! reply (every published PSRT client works that way) is then served
//! without the server going to sleep and being woken again, which on a busy
//! or virtual machine costs more than the request itself.
//!
//! It never spins when the loop had no input (an idle server sleeps as
//! before); nor after a turn that read [`BULK_TURN_BYTES`] or more, or while
//! a large frame is arriving (a bulk transfer, where the clients need the
//! CPU more than the server needs to be awake); nor after a busy turn (many
//! ready sockets: clients sending at once are batched better by sleeping
//! until several have written); nor when the loop has work queued (it polls
//! without sleeping then anyway); nor past the loop's next deadline. The
//! price is CPU: up to `busy_poll_us` per turn that read a request, measured
//! in BENCHMARKS.md ("Busy poll").

use std::io;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

/// A turn that read this many bytes or more was a bulk transfer: no spin.
pub(super) const BULK_TURN_BYTES: usize = 64 * 1024;

/// Whether the next poll spins first, and for how long at most.
#[derive(Debug)]
pub(super) struct BusyPoll {
    budget: Duration,
    armed: bool,
}

impl BusyPoll {
    /// `us` = 0: never spins.
    pub(super) fn new(us: u32) -> Self {
        Self {
            budget: Duration::from_micros(u64::from(us)),
            armed: false,
        }
    }

    /// After a turn that read `bytes_read` bytes of socket input, `quiet`
    /// if it had few ready sockets, with `large_frame_pending` if a large
    /// frame is still being received: the next poll spins if that was a
    /// request or two — not a bulk transfer, not a busy turn (many clients
    /// sending at once batch well without it).
    pub(super) fn after_turn(&mut self, bytes_read: usize, quiet: bool, large_frame_pending: bool) {
        self.armed = !self.budget.is_zero()
            && quiet
            && !large_frame_pending
            && (1..BULK_TURN_BYTES).contains(&bytes_read);
    }

    /// Whether the next poll with `timeout` would spin first.
    pub(super) fn spins(&self, timeout: Option<Duration>) -> bool {
        self.armed && timeout != Some(Duration::ZERO)
    }

    /// Polls for events: first without sleeping, for up to the budget, when
    /// armed and the loop would otherwise sleep; then as asked.
    pub(super) fn poll(
        &mut self,
        poll: &mut Poll,
        events: &mut Events,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        if !self.spins(timeout) {
            return poll.poll(events, timeout);
        }
        // Never past the loop's next deadline.
        let budget = timeout.map_or(self.budget, |t| t.min(self.budget));
        let start = Instant::now();
        loop {
            poll.poll(events, Some(Duration::ZERO))?;
            if !events.is_empty() {
                return Ok(());
            }
            let spent = start.elapsed();
            if spent >= budget {
                self.armed = false;
                return poll.poll(events, timeout.map(|t| t.saturating_sub(spent)));
            }
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spins_only_after_a_request_sized_turn() {
        let mut b = BusyPoll::new(50);
        let sleep = Some(Duration::from_secs(1));
        assert!(!b.spins(sleep), "not before any input");
        b.after_turn(17, true, false);
        assert!(b.spins(sleep), "after a request");
        assert!(b.spins(None), "before an unbounded sleep too");
        assert!(
            !b.spins(Some(Duration::ZERO)),
            "work queued: the loop does not sleep anyway"
        );
        b.after_turn(17, true, true);
        assert!(!b.spins(sleep), "the rest of a large frame is on its way");
        b.after_turn(17, false, false);
        assert!(!b.spins(sleep), "a busy turn");
        b.after_turn(0, true, false);
        assert!(!b.spins(sleep), "a turn without input (timers, idle)");
        b.after_turn(BULK_TURN_BYTES, true, false);
        assert!(!b.spins(sleep), "a bulk transfer");
        b.after_turn(BULK_TURN_BYTES - 1, true, false);
        assert!(b.spins(sleep));
        let mut off = BusyPoll::new(0);
        off.after_turn(17, true, false);
        assert!(!off.spins(sleep), "0 = off");
    }

    #[test]
    fn an_armed_poll_returns_the_events_that_arrive_and_disarms_when_none_do() {
        use mio::{Token, Waker};

        let mut poll = Poll::new().unwrap();
        let waker = Waker::new(poll.registry(), Token(7)).unwrap();
        let mut events = Events::with_capacity(8);
        let mut b = BusyPoll::new(1000);
        b.after_turn(10, true, false);
        waker.wake().unwrap();
        b.poll(&mut poll, &mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(
            events.iter().map(|e| e.token()).collect::<Vec<_>>(),
            [Token(7)]
        );
        assert!(b.spins(Some(Duration::from_secs(5))), "still armed");
        // Nothing arrives: the spin ends, and the poll sleeps what is left
        // of its timeout (here none).
        b.poll(&mut poll, &mut events, Some(Duration::from_micros(1)))
            .unwrap();
        assert!(events.is_empty());
        assert!(!b.spins(Some(Duration::from_secs(5))), "disarmed");
    }
}
