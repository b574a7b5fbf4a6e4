//! The auth workers: threads that run everything too slow for the event
//! loop — bcrypt verification, the file reads (and the decoy hash) of a
//! reload — and hand each result back through a channel and the loop's
//! `mio::Waker`. Name resolution for cluster links has a thread of its own
//! (`psrtd-resolve`), so a slow resolver never delays a login and a flood of
//! logins never delays a link.
//!
//! Two queues, so honest logins never wait behind a flood of datagrams:
//! *interactive* jobs (PSRT logins and HTTP Basic credentials, a
//! [`Ticket::Conn`]; reloads) are always taken before
//! *bulk* ones (plain-auth UDP datagrams, a [`Ticket::Datagram`]). Each
//! queue has its own cap on verifications in flight (`auth::login`), so a
//! full bulk queue never refuses a login either.
//!
//! Threads: `server.auth_workers`, or by default one per core less the one
//! the event loop needs, at least 1 and at most 4
//! ([`default_threads`]): bcrypt is CPU-bound, so more threads than spare
//! cores would only take CPU from the loop, and beyond four a flood of
//! guesses would merely burn more of the machine.

use std::collections::VecDeque;
use std::io;
use std::num::NonZeroUsize;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use mio::Waker;

use super::{AuthDb, Reloaded};
use crate::server::config::{AuthFiles, ConfigError};

/// Identifies who asked for a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ticket {
    /// A logging-in connection: its slab key and serial, so a reused slot
    /// never gets someone else's result. Interactive.
    Conn {
        /// Slab key of the connection.
        conn: usize,
        /// Serial number of the connection.
        serial: u64,
    },
    /// UDP datagrams parked until their (login, password) is verified. Bulk.
    Datagram(u64),
}

impl Ticket {
    /// Whether this check goes to the bulk queue.
    pub(crate) fn is_bulk(self) -> bool {
        matches!(self, Self::Datagram(_))
    }
}

/// An outgoing connection that needs its broker's or node's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outgoing {
    /// A cluster node, by index.
    Node(usize),
    /// A bridge, by key.
    Bridge(u32),
}

/// Work for the workers.
#[derive(Debug)]
pub(crate) enum Job {
    /// Check `password` against the bcrypt `hash`.
    Verify {
        /// Who asked.
        ticket: Ticket,
        /// Login (echoed back for the cache).
        login: String,
        /// The stored hash (or the decoy hash, see `decoy`).
        hash: Box<str>,
        /// The password the client sent.
        password: String,
        /// The login is not in the password file (or its hash is not
        /// bcrypt): `hash` is the decoy, run only so that the refusal takes
        /// as long as a real check.
        decoy: bool,
    },
    /// Re-read every auth file.
    Reload(AuthFiles),
    /// Re-read `config.yml` for its `bridges:` list (SIGHUP).
    ReloadBridges(std::path::PathBuf),
    /// Resolve a cluster node's or a bridge's `host:port` (DNS may block).
    Resolve {
        /// Who asks.
        target: Outgoing,
        /// `host:port`.
        spec: String,
    },
}

impl Job {
    fn is_bulk(&self) -> bool {
        matches!(self, Self::Verify { ticket, .. } if ticket.is_bulk())
    }
}

/// A finished verification.
#[derive(Debug)]
pub(crate) struct Verified {
    /// Who asked.
    pub ticket: Ticket,
    /// Login it was for.
    pub login: String,
    /// The hash it was checked against.
    pub hash: Box<str>,
    /// The password (kept for the cache digest; dropped right after).
    pub password: String,
    /// Whether bcrypt accepted it.
    pub ok: bool,
    /// Checked against the decoy hash (see [`Job::Verify`]).
    pub decoy: bool,
}

/// Messages to the event loop (from a worker, or a shutdown handle).
#[derive(Debug)]
pub(crate) enum LoopMsg {
    /// A verification finished.
    Verified(Verified),
    /// A reload finished: the new database and its warnings, or why the old
    /// one stays.
    Reloaded(Box<Result<Reloaded, ConfigError>>),
    /// A cluster node's or a bridge's address was resolved.
    Resolved {
        /// Who asked.
        target: Outgoing,
        /// Its addresses, or why there are none.
        result: std::io::Result<Vec<std::net::SocketAddr>>,
    },
    /// `config.yml` was read again: its bridges, or why it is refused.
    BridgesReloaded(Box<Result<Vec<crate::server::config::BridgeConfig>, ConfigError>>),
    /// A bridge's spool writer answered.
    Spool {
        /// The bridge's key.
        bridge: u32,
        /// What happened.
        event: crate::server::bridge::spool::SpoolEvent,
    },
    /// Stop the loop.
    Shutdown,
}

/// The two queues the threads take from.
#[derive(Debug, Default)]
struct Queues {
    interactive: VecDeque<Job>,
    bulk: VecDeque<Job>,
    /// Threads still running (a detached worker counts one that never runs).
    alive: usize,
    /// The loop dropped its handle: threads finish their job and stop.
    closed: bool,
}

impl Queues {
    /// The next job: interactive first.
    fn pop(&mut self) -> Option<Job> {
        self.interactive
            .pop_front()
            .or_else(|| self.bulk.pop_front())
    }
}

#[derive(Debug, Default)]
struct Shared {
    queues: Mutex<Queues>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        // A panicking job leaves the queues consistent: keep going.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Threads when `server.auth_workers` is 0: the cores less one for the
/// event loop, at least 1 and at most 4.
pub(crate) fn default_threads() -> usize {
    thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .saturating_sub(1)
        .clamp(1, 4)
}

/// The loop's handle on the worker threads.
#[derive(Debug)]
pub(crate) struct Worker {
    shared: Arc<Shared>,
    /// Interactive verifications (logins, HTTP Basic) sent and not yet
    /// answered.
    pub in_flight: usize,
    /// Bulk verifications (UDP datagrams) sent and not yet answered.
    pub in_flight_bulk: usize,
    /// The resolver thread's queue (`None` in unit tests: jobs stay queued).
    resolver: Option<Sender<Job>>,
}

/// Marks a thread gone when it ends (returns or panics).
struct Alive(Arc<Shared>);

impl Drop for Alive {
    fn drop(&mut self) {
        let mut q = self.0.lock();
        q.alive = q.alive.saturating_sub(1);
    }
}

impl Worker {
    /// Starts `threads` threads (at least one). Results go to `results`,
    /// each followed by a wake-up.
    pub(crate) fn spawn(
        results: Sender<LoopMsg>,
        waker: Arc<Waker>,
        threads: usize,
    ) -> io::Result<Self> {
        let shared = Arc::new(Shared::default());
        for n in 0..threads.max(1) {
            let (results, waker) = (results.clone(), waker.clone());
            shared.lock().alive += 1;
            let alive = Alive(shared.clone());
            let spawned = thread::Builder::new()
                .name(format!("psrtd-auth-{n}"))
                .spawn(move || run(&alive.0, &results, &waker));
            if let Err(e) = spawned {
                // The closure (and its `Alive`) was dropped: the count is right.
                if n == 0 {
                    return Err(e);
                }
                log::warn!("auth worker: started {n} of {threads} threads: {e}");
                break;
            }
        }
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        thread::Builder::new()
            .name("psrtd-resolve".into())
            .spawn(move || {
                // Ends when the loop drops its handle (the sender).
                while let Ok(job) = rx.recv() {
                    if results.send(execute(job)).is_err() {
                        return;
                    }
                    let _ = waker.wake();
                }
            })?;
        Ok(Self {
            shared,
            in_flight: 0,
            in_flight_bulk: 0,
            resolver: Some(tx),
        })
    }

    /// A worker with no thread whose jobs stay queued: unit tests drive
    /// handlers with it and answer by hand.
    #[cfg(test)]
    pub(crate) fn detached() -> Self {
        let shared = Arc::new(Shared::default());
        shared.lock().alive = 1;
        Self {
            shared,
            in_flight: 0,
            in_flight_bulk: 0,
            resolver: None,
        }
    }

    /// Queues a job. Fails only if every thread has died.
    pub(crate) fn submit(&mut self, job: Job) -> Result<(), Job> {
        let job = match (job, &self.resolver) {
            (job @ Job::Resolve { .. }, Some(resolver)) => {
                return resolver.send(job).map_err(|e| e.0);
            }
            (job, _) => job,
        };
        let counter = match &job {
            Job::Verify { ticket, .. } if ticket.is_bulk() => Some(&mut self.in_flight_bulk),
            Job::Verify { .. } => Some(&mut self.in_flight),
            _ => None,
        };
        {
            let mut q = self.shared.lock();
            if q.alive == 0 {
                return Err(job);
            }
            if job.is_bulk() {
                q.bulk.push_back(job);
            } else {
                q.interactive.push_back(job);
            }
        }
        self.shared.ready.notify_one();
        if let Some(n) = counter {
            *n += 1;
        }
        Ok(())
    }

    /// Verifications of `ticket`'s kind sent and not yet answered.
    pub(crate) fn pending(&self, ticket: Ticket) -> usize {
        if ticket.is_bulk() {
            self.in_flight_bulk
        } else {
            self.in_flight
        }
    }

    /// A verification came back: one fewer in flight.
    pub(crate) fn answered(&mut self, ticket: Ticket) {
        let n = if ticket.is_bulk() {
            &mut self.in_flight_bulk
        } else {
            &mut self.in_flight
        };
        *n = n.saturating_sub(1);
    }

    /// The queued jobs, taken in the order the threads would take them.
    #[cfg(test)]
    pub(crate) fn take_queued(&mut self) -> Vec<Job> {
        let mut q = self.shared.lock();
        std::iter::from_fn(|| q.pop()).collect()
    }
}

impl Drop for Worker {
    /// Threads finish the job they hold and stop; queued jobs are dropped.
    fn drop(&mut self) {
        let mut q = self.shared.lock();
        q.closed = true;
        q.interactive.clear();
        q.bulk.clear();
        drop(q);
        self.shared.ready.notify_all();
    }
}

/// One thread: takes jobs until the loop drops its handle.
fn run(shared: &Shared, results: &Sender<LoopMsg>, waker: &Waker) {
    loop {
        let job = {
            let mut q = shared.lock();
            loop {
                if q.closed {
                    return;
                }
                if let Some(job) = q.pop() {
                    break job;
                }
                q = shared.ready.wait(q).unwrap_or_else(PoisonError::into_inner);
            }
        };
        if results.send(execute(job)).is_err() {
            return;
        }
        // A failed wake means the poll is gone; the loop is ending anyway.
        let _ = waker.wake();
    }
}

fn execute(job: Job) -> LoopMsg {
    match job {
        Job::Verify {
            ticket,
            login,
            hash,
            password,
            decoy,
        } => {
            let ok = bcrypt::verify(&password, &hash).unwrap_or(false);
            LoopMsg::Verified(Verified {
                ticket,
                login,
                hash,
                password,
                ok,
                decoy,
            })
        }
        Job::Reload(files) => LoopMsg::Reloaded(Box::new(AuthDb::reload(&files))),
        Job::ReloadBridges(path) => LoopMsg::BridgesReloaded(Box::new(
            crate::server::config::Config::load(&path).map(|c| c.bridges),
        )),
        Job::Resolve { target, spec } => LoopMsg::Resolved {
            target,
            result: std::net::ToSocketAddrs::to_socket_addrs(spec.as_str()).map(Iterator::collect),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::config::AclSource;
    use mio::{Events, Poll, Token};
    use std::sync::mpsc::{Receiver, channel};
    use std::time::Duration;

    fn verify(ticket: Ticket, hash: &str, password: &str) -> Job {
        Job::Verify {
            ticket,
            login: "u".into(),
            hash: hash.into(),
            password: password.into(),
            decoy: false,
        }
    }

    fn conn(n: usize) -> Ticket {
        Ticket::Conn { conn: n, serial: 7 }
    }

    /// Waits for `n` messages.
    fn collect(poll: &mut Poll, rx: &Receiver<LoopMsg>, n: usize) -> Vec<LoopMsg> {
        let mut events = Events::with_capacity(4);
        let mut got = Vec::new();
        while got.len() < n {
            poll.poll(&mut events, Some(Duration::from_secs(10)))
                .unwrap();
            got.extend(rx.try_iter());
        }
        got
    }

    /// A resolution is answered while the only auth thread is busy with a
    /// slow bcrypt check.
    #[test]
    fn names_resolve_while_bcrypt_runs() {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
        let (tx, rx) = channel();
        let mut w = Worker::spawn(tx, waker, 1).unwrap();
        let hash = bcrypt::hash("pw", 12).unwrap();
        w.submit(verify(conn(1), &hash, "pw")).unwrap();
        w.submit(Job::Resolve {
            target: Outgoing::Node(3),
            spec: "127.0.0.1:2873".into(),
        })
        .unwrap();
        let got = collect(&mut poll, &rx, 2);
        assert!(
            matches!(&got[0], LoopMsg::Resolved { target: Outgoing::Node(3), result: Ok(a) } if a.len() == 1),
            "the resolution comes first"
        );
        assert!(matches!(&got[1], LoopMsg::Verified(v) if v.ok));
    }

    #[test]
    fn verifies_and_reloads_off_thread() {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
        let (tx, rx) = channel();
        let mut w = Worker::spawn(tx, waker, 1).unwrap();
        let hash = bcrypt::hash("123", 4).unwrap();
        for (n, pw) in ["123", "wrong"].into_iter().enumerate() {
            w.submit(verify(conn(n), &hash, pw)).unwrap();
        }
        w.submit(Job::Reload(AuthFiles {
            tls: None,
            acl: AclSource::AnonymousFullAccess,
            password_file: None,
            key_file: None,
        }))
        .unwrap();
        assert_eq!((w.in_flight, w.in_flight_bulk), (2, 0));
        let got = collect(&mut poll, &rx, 3);
        assert!(matches!(
            got[0],
            LoopMsg::Verified(Verified {
                ok: true,
                ticket: Ticket::Conn { conn: 0, .. },
                ..
            })
        ));
        assert!(matches!(
            got[1],
            LoopMsg::Verified(Verified {
                ok: false,
                ticket: Ticket::Conn { conn: 1, .. },
                ..
            })
        ));
        assert!(matches!(&got[2], LoopMsg::Reloaded(r) if r.is_ok()));
    }

    #[test]
    fn interactive_jobs_are_taken_before_bulk_ones() {
        let mut w = Worker::detached();
        for id in 0..3 {
            w.submit(verify(Ticket::Datagram(id), "h", "pw")).unwrap();
        }
        w.submit(verify(conn(1), "h", "pw")).unwrap();
        w.submit(Job::Resolve {
            target: Outgoing::Node(0),
            spec: "localhost:1".into(),
        })
        .unwrap();
        assert_eq!((w.in_flight, w.in_flight_bulk), (1, 3));
        assert_eq!(w.pending(conn(9)), 1);
        assert_eq!(w.pending(Ticket::Datagram(9)), 3);
        let order: Vec<String> = w
            .take_queued()
            .iter()
            .map(|j| match j {
                Job::Verify { ticket, .. } => format!("{ticket:?}"),
                Job::Resolve { .. } => "resolve".into(),
                Job::Reload(_) | Job::ReloadBridges(_) => "reload".into(),
            })
            .collect();
        assert_eq!(
            order,
            [
                "Conn { conn: 1, serial: 7 }",
                "resolve",
                "Datagram(0)",
                "Datagram(1)",
                "Datagram(2)"
            ]
        );
        w.answered(Ticket::Datagram(0));
        w.answered(conn(1));
        w.answered(conn(1));
        assert_eq!((w.in_flight, w.in_flight_bulk), (0, 2));
    }

    /// With one thread busy on a backlog of bulk checks, a login submitted
    /// after them is answered next.
    #[test]
    fn a_login_overtakes_a_backlog_of_datagram_checks() {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
        let (tx, rx) = channel();
        let mut w = Worker::spawn(tx, waker, 1).unwrap();
        let hash = bcrypt::hash("123", 5).unwrap();
        for id in 0..20 {
            w.submit(verify(Ticket::Datagram(id), &hash, "bad"))
                .unwrap();
        }
        w.submit(verify(conn(0), &hash, "123")).unwrap();
        let got = collect(&mut poll, &rx, 21);
        let at = got
            .iter()
            .position(|m| matches!(m, LoopMsg::Verified(v) if !v.ticket.is_bulk()))
            .unwrap();
        assert!(at <= 1, "the login came back {at}th, after bulk checks");
    }

    #[test]
    fn several_threads_and_a_clean_stop() {
        assert!((1..=4).contains(&default_threads()));
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
        let (tx, rx) = channel();
        let mut w = Worker::spawn(tx, waker, 3).unwrap();
        assert_eq!(w.shared.lock().alive, 3);
        let hash = bcrypt::hash("123", 4).unwrap();
        for n in 0..6 {
            w.submit(verify(conn(n), &hash, "123")).unwrap();
        }
        let got = collect(&mut poll, &rx, 6);
        assert!(
            got.iter()
                .all(|m| matches!(m, LoopMsg::Verified(v) if v.ok))
        );
        let shared = w.shared.clone();
        drop(w);
        for _ in 0..500 {
            if shared.lock().alive == 0 {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!("threads still running after the handle was dropped");
    }
}
