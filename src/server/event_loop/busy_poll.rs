//! The adaptive busy poll (`server.busy_poll_us`).
//!
//! After a loop turn that read a little socket input — a request, or part
//! of one — the loop may poll without sleeping for a while before it sleeps
//! in `epoll_wait`. A client that sends its next request as soon as it has
//! its reply (every published PSRT client works that way), or the rest of a
//! request it wrote in two parts, is then served without the server going
//! to sleep and being woken again, which on a busy or virtual machine costs
//! more than the request itself.
//!
//! How long it spins adapts to the traffic, the way Linux's KVM halt polling
//! does, separately after a turn that wrote an answer and after one that
//! did not (the rest of a request comes within microseconds; the next
//! request only when the client wants to send it): the spin window is
//! `busy_poll_us` while spins catch input, is halved by every spin that
//! catches nothing and is 0 below [`MIN_WINDOW`]. From 0 it comes back
//! when a sleep was ended by input within `busy_poll_us`, or when one probe
//! spin in [`PROBE_EVERY`] catches something. So a client in a tight
//! request/response loop gets the spin, and a trickle of requests (gaps
//! longer than the budget) costs at most one probe of `busy_poll_us` per
//! `PROBE_EVERY` requests.
//!
//! It never spins when the loop had no input (an idle server sleeps as
//! before); nor after a turn that read [`BULK_TURN_BYTES`] or more, or that
//! received a large frame or part of one (a bulk transfer, where the
//! clients need the CPU to copy more than the server needs to be awake); nor after a busy turn (many
//! ready sockets: clients sending at once are batched better by sleeping
//! until several have written); nor when the loop has work queued (it polls
//! without sleeping then anyway); nor past the loop's next deadline. Costs
//! are measured in BENCHMARKS.md ("Busy poll").

use std::io;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

/// A turn that read this many bytes or more was a bulk transfer: no spin.
pub(super) const BULK_TURN_BYTES: usize = 64 * 1024;

/// A spin window shorter than this is not worth it: 0.
const MIN_WINDOW: Duration = Duration::from_micros(5);

/// With the window at 0, one request turn in this many spins the full
/// budget once to find out whether the traffic changed.
pub(super) const PROBE_EVERY: u32 = 32;

/// The spin windows and whether the next poll uses one.
#[derive(Debug)]
pub(super) struct BusyPoll {
    budget: Duration,
    /// After a turn that wrote no answer, after one that did.
    windows: [Window; 2],
    /// Which window the next poll uses, if armed.
    armed: Option<usize>,
}

/// One adaptive spin window.
#[derive(Debug, Clone, Copy)]
struct Window {
    spin: Duration,
    /// Armed polls since the last probe, while `spin` is 0.
    since_probe: u32,
}

impl BusyPoll {
    /// `us` = 0: never spins.
    pub(super) fn new(us: u32) -> Self {
        let budget = Duration::from_micros(u64::from(us));
        let window = Window {
            spin: budget,
            since_probe: 0,
        };
        Self {
            budget,
            windows: [window; 2],
            armed: None,
        }
    }

    /// After a turn that read `bytes_read` bytes of socket input, that
    /// `answered` (wrote output), `quiet` if it had few ready sockets, with
    /// `large_frame` if it received a large frame whole or one is still
    /// arriving: the next poll may spin if that was a request or two — not
    /// a bulk transfer, not a busy turn (many clients sending at once batch
    /// well without it).
    pub(super) fn after_turn(
        &mut self,
        bytes_read: usize,
        answered: bool,
        quiet: bool,
        large_frame: bool,
    ) {
        let request = !self.budget.is_zero()
            && quiet
            && !large_frame
            && (1..BULK_TURN_BYTES).contains(&bytes_read);
        self.armed = request.then_some(usize::from(answered));
    }

    /// Whether the next poll with `timeout` is an armed one (spins, probes
    /// or learns from how soon input comes).
    pub(super) fn spins(&self, timeout: Option<Duration>) -> bool {
        self.armed.is_some() && timeout != Some(Duration::ZERO)
    }

    /// The current spin window after a turn that `answered` or not (0
    /// while only probing).
    #[cfg(test)]
    pub(super) fn window(&self, answered: bool) -> Duration {
        self.windows[usize::from(answered)].spin
    }

    /// Polls for events: when armed and the loop would otherwise sleep,
    /// first without sleeping for the current window (or a probe), then as
    /// asked; the window adapts to how soon input came.
    pub(super) fn poll(
        &mut self,
        poll: &mut Poll,
        events: &mut Events,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let (true, Some(which)) = (self.spins(timeout), self.armed.take()) else {
            return poll.poll(events, timeout);
        };
        let budget = self.budget;
        let w = &mut self.windows[which];
        let spin = if !w.spin.is_zero() {
            w.spin
        } else {
            w.since_probe += 1;
            if w.since_probe >= PROBE_EVERY {
                w.since_probe = 0;
                budget
            } else {
                Duration::ZERO
            }
        };
        let start = Instant::now();
        if !spin.is_zero() {
            // Never past the loop's next deadline.
            let limit = timeout.map_or(spin, |t| t.min(spin));
            loop {
                poll.poll(events, Some(Duration::ZERO))?;
                if !events.is_empty() {
                    w.restore(budget);
                    return Ok(());
                }
                if start.elapsed() >= limit {
                    break;
                }
                std::hint::spin_loop();
            }
            // Caught nothing: halve the window.
            w.spin = spin / 2;
            if w.spin < MIN_WINDOW {
                w.spin = Duration::ZERO;
            }
        }
        let spent = start.elapsed();
        poll.poll(events, timeout.map(|t| t.saturating_sub(spent)))?;
        // Input came within the budget while sleeping: a spin would have
        // caught it.
        if !events.is_empty() && start.elapsed() <= budget {
            w.restore(budget);
        }
        Ok(())
    }
}

impl Window {
    /// Input came soon enough for a spin to catch it: the whole window.
    fn restore(&mut self, budget: Duration) {
        self.spin = budget;
        self.since_probe = 0;
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
        b.after_turn(17, true, true, false);
        assert!(b.spins(sleep), "after a request");
        assert!(b.spins(None), "before an unbounded sleep too");
        assert!(
            !b.spins(Some(Duration::ZERO)),
            "work queued: the loop does not sleep anyway"
        );
        b.after_turn(17, true, true, true);
        assert!(!b.spins(sleep), "a large frame arrived or is arriving");
        b.after_turn(17, true, false, false);
        assert!(!b.spins(sleep), "a busy turn");
        b.after_turn(0, true, true, false);
        assert!(!b.spins(sleep), "a turn without input (timers, idle)");
        b.after_turn(BULK_TURN_BYTES, true, true, false);
        assert!(!b.spins(sleep), "a bulk transfer");
        b.after_turn(BULK_TURN_BYTES - 1, true, true, false);
        assert!(b.spins(sleep));
        let mut off = BusyPoll::new(0);
        off.after_turn(17, true, true, false);
        assert!(!off.spins(sleep), "0 = off");
    }

    /// A real `mio::Poll` with a `Waker` as the only event source.
    fn poll_with_waker() -> (Poll, mio::Waker, Events) {
        let poll = Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(7)).unwrap();
        (poll, waker, Events::with_capacity(8))
    }

    #[test]
    fn an_armed_poll_returns_the_events_that_arrive_and_halves_its_window_when_none_do() {
        let (mut poll, waker, mut events) = poll_with_waker();
        let mut b = BusyPoll::new(1000);
        let budget = Duration::from_micros(1000);
        assert_eq!(b.window(true), budget, "starts at the budget");
        b.after_turn(10, true, true, false);
        waker.wake().unwrap();
        b.poll(&mut poll, &mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(
            events.iter().map(|e| e.token()).collect::<Vec<_>>(),
            [mio::Token(7)]
        );
        assert_eq!(b.window(true), budget, "a hit keeps the window");
        assert!(
            !b.spins(Some(Duration::from_secs(5))),
            "each turn arms the next poll anew"
        );
        // Nothing arrives: the spin ends at the loop's deadline (1 µs), the
        // poll sleeps what is left of it (none), and the window halves.
        b.after_turn(10, true, true, false);
        b.poll(&mut poll, &mut events, Some(Duration::from_micros(1)))
            .unwrap();
        assert!(events.is_empty());
        assert_eq!(b.window(true), budget / 2);
        // Misses go on halving it down to 0 (below MIN_WINDOW).
        let mut misses = 1;
        while !b.window(true).is_zero() {
            b.after_turn(10, true, true, false);
            b.poll(&mut poll, &mut events, Some(Duration::from_micros(1)))
                .unwrap();
            misses += 1;
            assert!(misses < 20, "the window shrinks to 0");
        }
        assert_eq!(misses, 8, "1000 µs halved until it is under 5 µs");
    }

    #[test]
    fn from_zero_the_window_comes_back_by_a_quick_sleep_or_by_a_probe() {
        let (mut poll, waker, mut events) = poll_with_waker();
        let mut b = BusyPoll::new(1000);
        let budget = Duration::from_micros(1000);
        let miss = |b: &mut BusyPoll, poll: &mut Poll, events: &mut Events| {
            b.after_turn(10, true, true, false);
            b.poll(poll, events, Some(Duration::from_micros(1)))
                .unwrap();
            assert!(events.is_empty());
        };
        while !b.window(true).is_zero() {
            miss(&mut b, &mut poll, &mut events);
        }
        // A sleep ended by input well within the budget: a spin would have
        // caught it, so the window is back.
        b.after_turn(10, true, true, false);
        waker.wake().unwrap();
        b.poll(&mut poll, &mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(!events.is_empty());
        assert_eq!(b.window(true), budget);
        while !b.window(true).is_zero() {
            miss(&mut b, &mut poll, &mut events);
        }
        // Input only ever after the deadline: PROBE_EVERY - 1 armed polls
        // do not spin, the next probes with the whole budget; its miss
        // halves the probe, its hit restores the window.
        for _ in 0..PROBE_EVERY - 1 {
            miss(&mut b, &mut poll, &mut events);
            assert!(b.window(true).is_zero(), "no spin between probes");
        }
        b.after_turn(10, true, true, false);
        waker.wake().unwrap();
        // Without the event pending first, the probe would spin the budget.
        b.poll(&mut poll, &mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(!events.is_empty());
        assert_eq!(b.window(true), budget, "a probe that catches input");
        while !b.window(true).is_zero() {
            miss(&mut b, &mut poll, &mut events);
        }
        for _ in 0..PROBE_EVERY - 1 {
            miss(&mut b, &mut poll, &mut events);
        }
        miss(&mut b, &mut poll, &mut events);
        assert_eq!(b.window(true), budget / 2, "a probe that catches nothing");
    }

    #[test]
    fn turns_with_and_without_an_answer_learn_apart() {
        let (mut poll, waker, mut events) = poll_with_waker();
        let mut b = BusyPoll::new(1000);
        let budget = Duration::from_micros(1000);
        // After answers nothing comes soon (a paced client) ...
        for _ in 0..8 {
            b.after_turn(10, true, true, false);
            b.poll(&mut poll, &mut events, Some(Duration::from_micros(1)))
                .unwrap();
        }
        assert!(b.window(true).is_zero());
        // ... while the rest of a request written in two parts always does.
        b.after_turn(10, false, true, false);
        waker.wake().unwrap();
        b.poll(&mut poll, &mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(!events.is_empty());
        assert_eq!(b.window(false), budget);
        assert!(b.window(true).is_zero(), "a hit of the other kind");
    }
}
