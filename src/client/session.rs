//! [`Client`]: a logged-in session with its control socket, optional data
//! socket and two helper threads (the data reader and the keep-alive
//! pinger). Requests from any thread are serialised by one mutex around the
//! control socket, so a request and its reply are never interleaved with
//! another request (the pinger's NOP included).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::control::{self, Control, PipelineReport};
use super::data;
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
    }

    fn lock_control(&self) -> MutexGuard<'_, Control> {
        // Control holds no invariant a panicking holder could break halfway
        // that a later request would trip over: it is closed on any error.
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the control socket if the client is still connected, and
    /// closes the client if `f` fails in a way that leaves the stream in an
    /// unknown state (see [`Error::keeps_session`]).
    fn with_control<T>(
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

    fn request(&self, req: &Request<'_>) -> Result<(), Error> {
        self.with_control(|c| c.request(req))
    }

    fn stop_pinger(&self) {
        *self.stop.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }
}

/// A blocking PSRT client.
///
/// All methods take `&self`: a `Client` can be shared between threads
/// (e.g. in an `Arc`); requests are then sent one at a time. Dropping it
/// closes both sockets without BYE.
///
/// ```no_run
/// use psrt::client::{Client, Config};
/// use std::time::Duration;
///
/// # fn main() -> Result<(), psrt::client::Error> {
/// let client = Client::connect(&Config::new("localhost:2873"))?;
/// client.subscribe("plant/+/temp")?;
/// client.publish(0x7F, "plant/1/temp", b"21.5")?;
/// let message = client.recv_timeout(Duration::from_secs(1))?;
/// println!("{}: {:?}", message.topic, message.data_as_str());
/// client.bye()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Client {
    shared: Arc<Shared>,
    messages: Mutex<Option<Receiver<Message>>>,
    pinger: Option<JoinHandle<()>>,
}

impl Client {
    /// Connects and logs in; with a data stream (the default), also opens
    /// and binds the data socket. Starts the pinger and the data reader.
    /// With [`Config::set_tls`] both sockets run TLS.
    ///
    /// Errors: [`Error::LoginFailed`] if the server closes the socket instead
    /// of sending a token; [`Error::Server`] if it refuses the data socket;
    /// [`Error::Tls`] if TLS cannot be set up or the handshake fails.
    ///
    /// Failover: a path of several addresses separated by commas
    /// (`node1:2873,node2:2873`) is tried in order; the first server that
    /// answers is used. A connection or TLS failure moves on to the next
    /// address; a server that answers and refuses (login, ACL) ends the
    /// attempt with its error. The error of the last address is returned.
    pub fn connect(config: &Config) -> Result<Self, Error> {
        let paths: Vec<&str> = config
            .path()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if paths.len() <= 1 {
            return Self::connect_one(config);
        }
        let mut last = Error::Disconnected;
        for path in paths {
            let mut one = config.clone();
            one.update_path(path);
            match Self::connect_one(&one) {
                Ok(client) => return Ok(client),
                Err(e @ (Error::Io(_) | Error::Tls(_) | Error::Timeout | Error::Disconnected)) => {
                    log::debug!("{path}: {e}; trying the next address");
                    last = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Connects to the one address of `config`.
    fn connect_one(config: &Config) -> Result<Self, Error> {
        let tls = TlsSetup::from_config(config)?;
        let (control, token) = control::open(config, tls.as_ref())?;
        log::debug!(
            "logged in to {} as {:?}{}",
            config.path(),
            config.user(),
            if tls.is_some() { " (TLS)" } else { "" }
        );
        let data = if config.need_data_stream() {
            Some(data::open(config, token, tls.as_ref())?)
        } else {
            None
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
        });
        // From here on, a failure must close the sockets: `client` drops.
        let mut client = Self {
            shared: Arc::clone(&shared),
            messages: Mutex::new(None),
            pinger: None,
        };
        if let Some(stream) = data {
            let (tx, rx) = mpsc::sync_channel(config.queue_size());
            let limits = config.data_limits();
            let reader_shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("psrt-data".into())
                .spawn(move || data::run_reader(stream, limits, tx, reader_shared))
                .map_err(Error::Io)?;
            client.messages = Mutex::new(Some(rx));
        }
        let interval = (config.timeout() / 2).max(MIN_PING_INTERVAL);
        client.pinger = Some(
            thread::Builder::new()
                .name("psrt-ping".into())
                .spawn(move || run_pinger(&shared, interval))
                .map_err(Error::Io)?,
        );
        Ok(client)
    }

    /// Whether the session is up: no BYE, no fatal error on either socket.
    pub fn is_connected(&self) -> bool {
        self.shared.is_connected()
    }

    /// Subscribes to one topic or mask (`+` one level, `#` the rest).
    pub fn subscribe(&self, topic: &str) -> Result<(), Error> {
        self.subscribe_bulk(&[topic])
    }

    /// Subscribes to several topics in one request. The server applies
    /// them in order and stops at the first refusal: the ones before it stay
    /// subscribed.
    pub fn subscribe_bulk(&self, topics: &[&str]) -> Result<(), Error> {
        self.shared.with_control(|c| c.topics(true, topics))
    }

    /// Unsubscribes from one topic or mask.
    pub fn unsubscribe(&self, topic: &str) -> Result<(), Error> {
        self.unsubscribe_bulk(&[topic])
    }

    /// Unsubscribes from several topics in one request.
    pub fn unsubscribe_bulk(&self, topics: &[&str]) -> Result<(), Error> {
        self.shared.with_control(|c| c.topics(false, topics))
    }

    /// Publishes and waits for the reply. `priority` is passed through to
    /// subscribers (use [`DEFAULT_PRIORITY`](crate::protocol::DEFAULT_PRIORITY)).
    pub fn publish(&self, priority: u8, topic: &str, message: &[u8]) -> Result<(), Error> {
        self.shared.request(&Request::Publish {
            priority,
            topic,
            message,
        })
    }

    /// Publishes without waiting for the reply; collect the replies with
    /// [`Client::wait_pipelined`]. Every 4096 unread replies are read here
    /// first. Any other request reads the outstanding replies before it is
    /// sent; they are still reported by the next `wait_pipelined`.
    pub fn publish_pipelined(
        &self,
        priority: u8,
        topic: &str,
        message: &[u8],
    ) -> Result<(), Error> {
        self.shared
            .with_control(|c| c.publish_pipelined(priority, topic, message))
    }

    /// Reads the replies of all pipelined publishes sent so far and returns
    /// their counts (since the previous call); [`PipelineReport::check`]
    /// turns them into a result.
    pub fn wait_pipelined(&self) -> Result<PipelineReport, Error> {
        self.shared.with_control(Control::take_pipelined)
    }

    /// Sends a NOP (keep-alive) and waits for the reply.
    pub fn nop(&self) -> Result<(), Error> {
        self.shared.request(&Request::Nop)
    }

    /// Ends the session: BYE, the reply, then both sockets are closed. The
    /// client is disconnected afterwards whatever the result.
    pub fn bye(&self) -> Result<(), Error> {
        let result = self.shared.request(&Request::Bye);
        self.shared.close();
        result
    }

    /// Takes the receiver of incoming messages, e.g. to read them in another
    /// thread. `None` without a data stream or if already taken. The channel
    /// ends when the client disconnects.
    pub fn take_receiver(&self) -> Option<Receiver<Message>> {
        self.messages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Waits up to `timeout` for the next message. [`Error::Timeout`] means
    /// only that none came; [`Error::Disconnected`] that none will.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message, Error> {
        let messages = self.messages.lock().unwrap_or_else(PoisonError::into_inner);
        let rx = messages.as_ref().ok_or(Error::NoDataStream)?;
        rx.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => Error::Timeout,
            RecvTimeoutError::Disconnected => Error::Disconnected,
        })
    }
}

impl Drop for Client {
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
