//! One connection of a client: [`Shared`] (the control socket behind a
//! mutex, the flags and the handles that wake blocked readers) and
//! [`Conn`] (that plus its pinger thread; the data reader runs on its own).
//! Requests from any thread are serialised by the control mutex, so a
//! request and its reply are never interleaved with another request (the
//! pinger's NOP included). A [`Client`](super::Client) holds one `Conn` at
//! a time; after a failover it holds a new one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::control::{self, Control};
use super::data;
use super::failover::Signal;
use super::stream::Stream;
use super::tls::TlsSetup;
use super::{Config, Error, Message};
use crate::protocol::Request;

/// The pinger never pings more often than this, whatever the timeout.
const MIN_PING_INTERVAL: Duration = Duration::from_millis(50);

/// State shared by the client handle and its threads.
#[derive(Debug)]
pub(crate) struct Shared {
    control: Mutex<Control>,
    connected: AtomicBool,
    /// Second handles of the sockets, to wake blocked readers on close.
    control_closer: Stream,
    data_closer: Option<Stream>,
    /// Set when the client is dropped; wakes the pinger.
    stop: Mutex<bool>,
    wake: Condvar,
    /// Raised on close, for the failover supervisor.
    lost: Option<Arc<Signal>>,
}

impl Shared {
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Marks the client disconnected and shuts both sockets down.
    pub(crate) fn close(&self) {
        self.connected.store(false, Ordering::Release);
        self.control_closer.shutdown();
        if let Some(data) = &self.data_closer {
            data.shutdown();
        }
        if let Some(lost) = &self.lost {
            lost.raise();
        }
    }

    pub(crate) fn lock_control(&self) -> MutexGuard<'_, Control> {
        // Control holds no invariant a panicking holder could break halfway
        // that a later request would trip over: it is closed on any error.
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the control socket if the client is still connected, and
    /// closes the client if `f` fails in a way that leaves the stream in an
    /// unknown state (see [`Error::keeps_session`]).
    pub(crate) fn with_control<T>(
        &self,
        f: impl FnOnce(&mut Control) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut control = self.lock_control();
        if !self.is_connected() {
            return Err(Error::Disconnected);
        }
        let result = f(&mut control);
        if let Err(e) = &result
            && !e.keeps_session()
        {
            // Still under the lock: no other request (the pinger's NOP)
            // may slip in before the client is marked closed.
            self.close();
        }
        drop(control);
        result
    }

    pub(crate) fn request(&self, req: &Request<'_>) -> Result<(), Error> {
        self.with_control(|c| c.request(req))
    }

    fn stop_pinger(&self) {
        *self.stop.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }
}

/// The sockets and helper threads of one server. Dropping it stops the
/// pinger, closes both sockets (without BYE) and joins the pinger; the data
/// reader exits on the shutdown (it is not joined).
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) shared: Arc<Shared>,
    pinger: Option<JoinHandle<()>>,
}

impl Conn {
    /// Connects and logs in to the one address of `config`; with a data
    /// stream, opens it and starts its reader, which sends to `tx`. Starts
    /// the pinger. `lost` is raised when the connection closes.
    pub(crate) fn open(
        config: &Config,
        tx: Option<SyncSender<Message>>,
        lost: Option<Arc<Signal>>,
    ) -> Result<Self, Error> {
        let tls = TlsSetup::from_config(config)?;
        let (control, token) = control::open(config, tls.as_ref())?;
        log::debug!(
            "logged in to {} as {:?}{}",
            config.path(),
            config.user(),
            if tls.is_some() { " (TLS)" } else { "" }
        );
        let data = match (&tx, config.need_data_stream()) {
            (Some(_), true) => Some(data::open(config, token, tls.as_ref())?),
            _ => None,
        };
        let control_closer = control.shutdown_handle()?;
        let data_closer = data.as_ref().map(Stream::shutdown_handle).transpose()?;
        let shared = Arc::new(Shared {
            control: Mutex::new(control),
            connected: AtomicBool::new(true),
            control_closer,
            data_closer,
            stop: Mutex::new(false),
            wake: Condvar::new(),
            lost,
        });
        // From here on, a failure must close the sockets: `conn` drops.
        let mut conn = Self {
            shared: Arc::clone(&shared),
            pinger: None,
        };
        if let (Some(stream), Some(tx)) = (data, tx) {
            let limits = config.data_limits();
            let reader_shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("psrt-data".into())
                .spawn(move || data::run_reader(stream, limits, tx, reader_shared))
                .map_err(Error::Io)?;
        }
        let interval = (config.timeout() / 2).max(MIN_PING_INTERVAL);
        conn.pinger = Some(
            thread::Builder::new()
                .name("psrt-ping".into())
                .spawn(move || run_pinger(&shared, interval))
                .map_err(Error::Io)?,
        );
        Ok(conn)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shared.stop_pinger();
        // Closing first wakes a pinger that waits for a reply. The data
        // reader exits on the shutdown too (or, if it is blocked on a full
        // queue, once the receiver is read or dropped); it is not joined.
        self.shared.close();
        if let Some(pinger) = self.pinger.take() {
            let _ = pinger.join();
        }
    }
}

/// Body of the pinger thread: a NOP whenever no request went out for
/// `interval`, until the client stops or a NOP fails.
fn run_pinger(shared: &Shared, interval: Duration) {
    loop {
        let idle = shared.lock_control().last_sent().elapsed();
        let wait = if idle >= interval {
            if let Err(e) = shared.request(&Request::Nop) {
                if shared.is_connected() {
                    log::warn!("keep-alive NOP failed: {e}");
                } else {
                    log::debug!("pinger stopped: {e}");
                    return;
                }
            }
            interval
        } else {
            interval.saturating_sub(idle)
        };
        let stop = shared.stop.lock().unwrap_or_else(PoisonError::into_inner);
        let (stop, _) = shared
            .wake
            .wait_timeout_while(stop, wait, |stop| !*stop)
            .unwrap_or_else(PoisonError::into_inner);
        if *stop {
            return;
        }
    }
}
