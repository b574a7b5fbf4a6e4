//! The adaptive busy poll (`server.busy_poll_us`).
//!
//! After a loop turn that read a little socket input — a request, or part
//! of one — the loop may poll without sleeping for up to `busy_poll_us`
//! before it sleeps in `epoll_wait`. A client that sends its next request
//! as soon as it has its reply (every published PSRT client works that
//! way), or the rest of a request it wrote in two parts, is then served
//! without the server going to sleep and being woken again, which on a busy
//! or virtual machine costs more than the request itself.
//!
//! Whether it spins adapts to the traffic: it keeps a running score of how
//! often input came within `busy_poll_us` of such a turn — caught by a spin,
//! or seen when a sleep ended that soon — and spins while at least
//! [`OPEN_SCORE`] of them did (a client in a tight request/response loop:
//! nearly all). Below that (a trickle of requests, a paced publisher, an
//! idle gateway) it only probes: one spin in [`PROBE_EVERY`] such turns, and
//! a probe that catches input opens it again. Scores are kept apart after a
//! turn that wrote an answer and after one that did not (the rest of a
//! request comes within microseconds; the next request only when the client
//! wants to send it).
//!
//! It never spins when the loop had no input (an idle server sleeps as
//! before); nor after a turn that read [`BULK_TURN_BYTES`] or more (a bulk
//! transfer, where the clients need the CPU to copy more than the server
//! needs to be awake). A turn that read only the head of a large frame, or
//! its last few bytes, is a request turn like any other: its rest, or the
//! client's next message, comes within microseconds, and a sleeping server
//! makes the client pay for waking it — with one of its cores busy
//! copying, that is the bottleneck (BENCHMARKS.md, "Bulk rows"). Nor after
//! a busy turn (many ready sockets: clients sending at once are
//! batched better by sleeping until several have written); nor when the
//! loop has work queued (it polls without sleeping then anyway); nor past
//! the loop's next deadline. Costs are measured in BENCHMARKS.md ("Adaptive
//! busy poll").

use std::io;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

/// A turn that read this many bytes or more was a bulk transfer: no spin.
pub(super) const BULK_TURN_BYTES: usize = 64 * 1024;

/// A score of 1 (every recent poll saw input within the budget).
const ONE: u32 = 1024;

/// Spin while the score is at least this (3 in 4).
pub(super) const OPEN_SCORE: u32 = ONE * 3 / 4;

/// Below [`OPEN_SCORE`], one armed poll in this many spins (a probe).
pub(super) const PROBE_EVERY: u32 = 32;

/// Whether the next poll may spin, and the scores that decide it.
#[derive(Debug)]
pub(super) struct BusyPoll {
    budget: Duration,
    /// After a turn that wrote no answer, after one that did.
    scores: [Score; 2],
    /// Which score the next poll uses, if armed.
    armed: Option<usize>,
}

/// How often input came within the budget, recently: a moving average in
/// 1/1024, each poll weighing 1/8.
#[derive(Debug, Clone, Copy)]
struct Score {
    value: u32,
    /// Armed polls since the last probe, while below [`OPEN_SCORE`].
    since_probe: u32,
}

impl Score {
    fn open(&self) -> bool {
        self.value >= OPEN_SCORE
    }

    fn record(&mut self, soon: bool) {
        self.value -= self.value / 8;
        if soon {
            self.value += ONE / 8;
        }
    }
}

impl BusyPoll {
    /// `us` = 0: never spins.
    pub(super) fn new(us: u32) -> Self {
        let score = Score {
            value: ONE,
            since_probe: 0,
        };
        Self {
            budget: Duration::from_micros(u64::from(us)),
            scores: [score; 2],
            armed: None,
        }
    }

    /// After a turn that read `bytes_read` bytes of socket input, that
    /// `answered` (wrote output), `quiet` if it had few ready sockets: the
    /// next poll may spin if that was a request or two — not a bulk
    /// transfer, not a busy turn (many clients sending at once batch well
    /// without it).
    pub(super) fn after_turn(&mut self, bytes_read: usize, answered: bool, quiet: bool) {
        let request = !self.budget.is_zero() && quiet && (1..BULK_TURN_BYTES).contains(&bytes_read);
        self.armed = request.then_some(usize::from(answered));
    }

    /// Whether the next poll with `timeout` is an armed one (may spin, and
    /// scores how soon input comes).
    pub(super) fn spins(&self, timeout: Option<Duration>) -> bool {
        self.armed.is_some() && timeout != Some(Duration::ZERO)
    }

    /// Whether polls after a turn that `answered` (or not) spin, rather
    /// than only probe.
    #[cfg(test)]
    fn open(&self, answered: bool) -> bool {
        self.scores[usize::from(answered)].open()
    }

    /// Polls for events: when armed and the loop would otherwise sleep,
    /// first without sleeping for up to the budget if the score is open or
    /// a probe is due, then as asked; the score learns how soon input came.
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
        let score = &mut self.scores[which];
        let spin = score.open() || {
            score.since_probe += 1;
            score.since_probe >= PROBE_EVERY
        };
        let start = Instant::now();
        if spin {
            let probe = !score.open();
            score.since_probe = 0;
            // Never past the loop's next deadline.
            let limit = timeout.map_or(budget, |t| t.min(budget));
            loop {
                poll.poll(events, Some(Duration::ZERO))?;
                if !events.is_empty() {
                    score.record(true);
                    if probe {
                        // Caught: spin again, and stay if it keeps catching.
                        score.value = score.value.max(OPEN_SCORE);
                    }
                    return Ok(());
                }
                if start.elapsed() >= limit {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        let spent = start.elapsed();
        poll.poll(events, timeout.map(|t| t.saturating_sub(spent)))?;
        score.record(!events.is_empty() && start.elapsed() <= budget);
        Ok(())
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
        b.after_turn(17, true, true);
        assert!(b.spins(sleep), "after a request");
        assert!(b.spins(None), "before an unbounded sleep too");
        assert!(
            !b.spins(Some(Duration::ZERO)),
            "work queued: the loop does not sleep anyway"
        );
        b.after_turn(17, true, false);
        assert!(!b.spins(sleep), "a busy turn");
        b.after_turn(0, true, true);
        assert!(!b.spins(sleep), "a turn without input (timers, idle)");
        b.after_turn(BULK_TURN_BYTES, true, true);
        assert!(!b.spins(sleep), "a bulk transfer");
        b.after_turn(BULK_TURN_BYTES - 1, true, true);
        assert!(b.spins(sleep));
        let mut off = BusyPoll::new(0);
        off.after_turn(17, true, true);
        assert!(!off.spins(sleep), "0 = off");
    }

    /// A real `mio::Poll` with a `Waker` as the only event source.
    struct Rig {
        poll: Poll,
        waker: mio::Waker,
        events: Events,
    }

    impl Rig {
        fn new() -> Self {
            let poll = Poll::new().unwrap();
            let waker = mio::Waker::new(poll.registry(), mio::Token(7)).unwrap();
            Self {
                poll,
                waker,
                events: Events::with_capacity(8),
            }
        }

        /// An armed poll after a turn that `answered`; input is there at
        /// once if `soon`, else none comes before the loop's deadline.
        fn turn(&mut self, b: &mut BusyPoll, answered: bool, soon: bool) {
            b.after_turn(10, answered, true);
            let timeout = if soon {
                self.waker.wake().unwrap();
                Duration::from_secs(5)
            } else {
                Duration::from_micros(1)
            };
            b.poll(&mut self.poll, &mut self.events, Some(timeout))
                .unwrap();
            assert_eq!(self.events.is_empty(), !soon);
        }

        /// Misses until polls after a turn that `answered` only probe.
        fn close(&mut self, b: &mut BusyPoll, answered: bool) {
            while b.open(answered) {
                self.turn(b, answered, false);
            }
        }
    }

    #[test]
    fn misses_close_it_and_a_probe_that_catches_input_opens_it() {
        let mut rig = Rig::new();
        let mut b = BusyPoll::new(1000);
        assert!(b.open(true), "starts open");
        for _ in 0..100 {
            rig.turn(&mut b, true, true);
        }
        assert!(b.open(true), "a tight request/response loop keeps it open");
        let mut misses = 0;
        while b.open(true) {
            rig.turn(&mut b, true, false);
            misses += 1;
        }
        assert_eq!(misses, 3, "three misses in a row close it");
        // Closed: only every PROBE_EVERY-th armed poll spins.
        for _ in 0..PROBE_EVERY - 1 {
            rig.turn(&mut b, true, false);
        }
        assert_eq!(b.scores[1].since_probe, PROBE_EVERY - 1);
        // The probe catches input: open again, at the threshold ...
        rig.turn(&mut b, true, true);
        assert!(b.open(true));
        assert_eq!(b.scores[1].since_probe, 0);
        // ... so one more miss closes it again.
        rig.turn(&mut b, true, false);
        assert!(!b.open(true));
    }

    #[test]
    fn input_that_ends_sleeps_soon_opens_it_without_a_probe() {
        let mut rig = Rig::new();
        let mut b = BusyPoll::new(1000);
        rig.close(&mut b, true);
        let mut quick = 0;
        while !b.open(true) {
            rig.turn(&mut b, true, true);
            quick += 1;
            assert!(quick < PROBE_EVERY, "opened by the quick sleeps");
        }
        assert!(quick > 1, "one quick sleep is not enough");
    }

    #[test]
    fn a_paced_client_half_of_whose_requests_come_soon_keeps_it_closed() {
        let mut rig = Rig::new();
        let mut b = BusyPoll::new(1000);
        let mut open_polls = 0;
        for i in 0..400 {
            if b.open(true) {
                open_polls += 1;
            }
            rig.turn(&mut b, true, i % 2 == 0);
        }
        assert!(open_polls < 40, "spun in {open_polls} of 400");
    }

    #[test]
    fn turns_with_and_without_an_answer_learn_apart() {
        let mut rig = Rig::new();
        let mut b = BusyPoll::new(1000);
        // After answers nothing comes soon (a paced client) ...
        rig.close(&mut b, true);
        // ... while the rest of a request written in two parts always does.
        for _ in 0..10 {
            rig.turn(&mut b, false, true);
        }
        assert!(b.open(false));
        assert!(!b.open(true), "the other kind's hits do not open it");
    }
}
