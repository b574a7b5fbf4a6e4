//! The auth worker: one thread that runs everything too slow for the event
//! loop — bcrypt verification and the file reads of a reload — and hands each
//! result back through a channel and the loop's `mio::Waker`.

use std::io;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread;

use mio::Waker;

use super::{AuthDb, Reloaded};
use crate::server::config::{AuthFiles, ConfigError};

/// Identifies who asked for a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ticket {
    /// A logging-in connection: its slab key and serial, so a reused slot
    /// never gets someone else's result.
    Conn {
        /// Slab key of the connection.
        conn: usize,
        /// Serial number of the connection.
        serial: u64,
    },
    /// A UDP datagram parked until its password is verified.
    Datagram(u64),
}

/// Work for the worker.
#[derive(Debug)]
pub(crate) enum Job {
    /// Check `password` against the bcrypt `hash`.
    Verify {
        /// Who asked.
        ticket: Ticket,
        /// Login (echoed back for the cache).
        login: String,
        /// The stored hash.
        hash: Box<str>,
        /// The password the client sent.
        password: String,
    },
    /// Re-read every auth file.
    Reload(AuthFiles),
    /// Resolve a cluster node's `host:port` (DNS may block).
    Resolve {
        /// Index of the node.
        node: usize,
        /// `host:port`.
        spec: String,
    },
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
}

/// Messages to the event loop (from the worker, or a shutdown handle).
#[derive(Debug)]
pub(crate) enum LoopMsg {
    /// A verification finished.
    Verified(Verified),
    /// A reload finished: the new database and its warnings, or why the old
    /// one stays.
    Reloaded(Box<Result<Reloaded, ConfigError>>),
    /// A cluster node's address was resolved.
    Resolved {
        /// Index of the node.
        node: usize,
        /// Its addresses, or why there are none.
        result: std::io::Result<Vec<std::net::SocketAddr>>,
    },
    /// Stop the loop.
    Shutdown,
}

/// The loop's handle on the worker thread.
#[derive(Debug)]
pub(crate) struct Worker {
    jobs: Sender<Job>,
    /// Verifications sent and not yet answered.
    pub in_flight: usize,
}

impl Worker {
    /// Starts the thread. Results go to `results`, followed by a wake-up.
    pub(crate) fn spawn(results: Sender<LoopMsg>, waker: Arc<Waker>) -> io::Result<Self> {
        let (jobs, inbox) = channel();
        thread::Builder::new()
            .name("psrtd-auth".into())
            .spawn(move || run(&inbox, &results, &waker))?;
        Ok(Self { jobs, in_flight: 0 })
    }

    /// A worker with no thread whose jobs are kept in a channel nobody
    /// reads: unit tests drive handlers with it and answer by hand.
    #[cfg(test)]
    pub(crate) fn detached() -> Self {
        let (jobs, inbox) = channel();
        std::mem::forget(inbox);
        Self { jobs, in_flight: 0 }
    }

    /// Queues a job. Fails only if the thread has died.
    pub(crate) fn submit(&mut self, job: Job) -> Result<(), Job> {
        let counts = matches!(job, Job::Verify { .. });
        self.jobs.send(job).map_err(|e| e.0)?;
        if counts {
            self.in_flight += 1;
        }
        Ok(())
    }
}

fn run(inbox: &Receiver<Job>, results: &Sender<LoopMsg>, waker: &Waker) {
    // Ends when the loop drops its `Worker` (the channel closes).
    while let Ok(job) = inbox.recv() {
        let msg = match job {
            Job::Verify {
                ticket,
                login,
                hash,
                password,
            } => {
                let ok = bcrypt::verify(&password, &hash).unwrap_or(false);
                LoopMsg::Verified(Verified {
                    ticket,
                    login,
                    hash,
                    password,
                    ok,
                })
            }
            Job::Reload(files) => LoopMsg::Reloaded(Box::new(AuthDb::reload(&files))),
            Job::Resolve { node, spec } => LoopMsg::Resolved {
                node,
                result: std::net::ToSocketAddrs::to_socket_addrs(spec.as_str())
                    .map(Iterator::collect),
            },
        };
        if results.send(msg).is_err() {
            return;
        }
        // A failed wake means the poll is gone; the loop is ending anyway.
        let _ = waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::config::AclSource;
    use mio::{Events, Poll, Token};
    use std::time::Duration;

    #[test]
    fn verifies_and_reloads_off_thread() {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
        let (tx, rx) = channel();
        let mut w = Worker::spawn(tx, waker).unwrap();
        let hash: Box<str> = bcrypt::hash("123", 4).unwrap().into();
        for (n, pw) in ["123", "wrong"].into_iter().enumerate() {
            w.submit(Job::Verify {
                ticket: Ticket::Conn { conn: n, serial: 7 },
                login: "u".into(),
                hash: hash.clone(),
                password: pw.into(),
            })
            .unwrap();
        }
        w.submit(Job::Reload(AuthFiles {
            tls: None,
            acl: AclSource::AnonymousFullAccess,
            password_file: None,
            key_file: None,
        }))
        .unwrap();
        assert_eq!(w.in_flight, 2);
        let mut events = Events::with_capacity(4);
        let mut got = Vec::new();
        while got.len() < 3 {
            poll.poll(&mut events, Some(Duration::from_secs(10)))
                .unwrap();
            got.extend(rx.try_iter());
        }
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
}
