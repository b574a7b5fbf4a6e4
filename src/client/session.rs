//! [`Client`]: a logged-in session. It holds one [`Conn`] at a time (the
//! control socket, the optional data socket and their two helper threads,
//! the data reader and the keep-alive pinger: `conn.rs`). With reconnect
//! on (several addresses, see [`Config::set_reconnect`]) a supervisor
//! thread (`failover.rs`) replaces a lost `Conn` with one to another node;
//! the message channel and the list of subscriptions belong to the client
//! and outlive every `Conn`.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::conn::{Conn, Shared};
use super::control::{Control, PipelineReport};
use super::failover::{self, Signal, Subscriptions};
use super::{Config, Error, Message};
use crate::protocol::Request;

/// Where a client is.
#[derive(Debug)]
pub(crate) enum State {
    /// A connection is open (it may have just been lost: see
    /// [`Shared::is_connected`]).
    Up,
    /// The supervisor is connecting to another node.
    Reconnecting,
    /// Reconnecting failed; the error of the last address.
    Failed(String),
    /// BYE or drop.
    Closed,
}

/// The current connection, its address and the state, under one mutex.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) conn: Option<Conn>,
    pub(crate) addr: String,
    pub(crate) state: State,
}

/// What a client and its failover supervisor share.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) link: Mutex<Link>,
    /// Notified whenever `link` changes.
    pub(crate) changed: Condvar,
    /// Raised when a connection closes (or the client is closed).
    pub(crate) lost: Arc<Signal>,
    /// Every topic subscribed, for resubscribing after a reconnect.
    pub(crate) subscriptions: Mutex<Subscriptions>,
    /// The sending end of the message channel, cloned for each new data
    /// reader; dropped when the client closes or gives up, which ends the
    /// channel once the last reader exits. `None` without reconnect (the
    /// one reader holds the only sender).
    pub(crate) tx: Mutex<Option<SyncSender<Message>>>,
}

impl Inner {
    pub(crate) fn lock_link(&self) -> MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn sender(&self) -> Option<SyncSender<Message>> {
        self.tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Ends the client's side of the message channel.
    pub(crate) fn drop_sender(&self) {
        self.tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// Marks the client closed and takes its connection.
    fn close(&self) -> Option<Conn> {
        let conn = {
            let mut link = self.lock_link();
            link.state = State::Closed;
            link.conn.take()
        };
        self.changed.notify_all();
        self.lost.raise();
        self.drop_sender();
        conn
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
///
/// Failover (several addresses, reconnect on):
///
/// ```no_run
/// use psrt::client::{Client, Config};
///
/// # fn main() -> Result<(), psrt::client::Error> {
/// let config = Config::new("node1:2873,node2:2873,node3:2873").set_randomize(true);
/// let client = Client::connect(&config)?;
/// client.subscribe("plant/#")?; // resubscribed on the next node if this one goes away
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Client {
    inner: Arc<Inner>,
    messages: Mutex<Option<Receiver<Message>>>,
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
    /// (`node1:2873,node2:2873`) is tried in order (in a random order with
    /// [`Config::set_randomize`]); the first server that answers is used. A
    /// connection or TLS failure moves on to the next address; a server
    /// that answers and refuses (login, ACL) ends the attempt with its
    /// error. The error of the last address is returned.
    ///
    /// With [`Config::reconnect`] on (the default with several addresses),
    /// a supervisor thread watches the connection. When it is lost (the
    /// server closes or stops answering), the other addresses are tried
    /// first and the lost one last, in rounds 100 ms apart at first,
    /// doubling up to 2 s, for at most [`Config::reconnect_timeout`]; on
    /// the new node the data socket is bound again and every subscription
    /// is sent again, before any other request (any failure there, a
    /// refused login included, moves on to the next address). Meanwhile:
    ///
    /// * a request that was in flight when the connection was lost returns
    ///   its error ([`Error::Disconnected`], [`Error::Io`] or
    ///   [`Error::Timeout`]) and is **not** sent again: the old node may
    ///   have taken it, so a retry could deliver a publish twice. Retrying
    ///   it is the caller's choice;
    /// * a request made while the client reconnects waits for the new node
    ///   (up to the reconnect timeout) and is sent there;
    /// * received messages keep arriving on the same channel
    ///   ([`Client::recv_timeout`], [`Client::take_receiver`]); messages
    ///   published while no node had this client subscribed are not
    ///   received;
    /// * if no node can be reached in time, requests return
    ///   [`Error::Unavailable`] and the message channel ends.
    pub fn connect(config: &Config) -> Result<Self, Error> {
        let addrs = config.addresses();
        let reconnect = config.reconnect();
        let (tx, rx) = if config.need_data_stream() {
            let (tx, rx) = mpsc::sync_channel(config.queue_size());
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let lost = Arc::new(Signal::default());
        let signal = reconnect.then(|| Arc::clone(&lost));
        let (conn, addr) = if addrs.len() <= 1 {
            let conn = Conn::open(config, tx.clone(), signal)?;
            (
                conn,
                addrs
                    .first()
                    .copied()
                    .unwrap_or_else(|| config.path())
                    .to_owned(),
            )
        } else {
            connect_first(config, &addrs, tx.as_ref(), signal.as_ref())?
        };
        let inner = Arc::new(Inner {
            config: config.clone(),
            link: Mutex::new(Link {
                conn: Some(conn),
                addr,
                state: State::Up,
            }),
            changed: Condvar::new(),
            lost,
            subscriptions: Mutex::new(Subscriptions::default()),
            tx: Mutex::new(if reconnect { tx } else { None }),
        });
        let client = Self {
            inner: Arc::clone(&inner),
            messages: Mutex::new(rx),
        };
        if reconnect {
            thread::Builder::new()
                .name("psrt-failover".into())
                .spawn(move || failover::supervise(&inner))
                .map_err(Error::Io)?;
        }
        Ok(client)
    }

    /// The address of the server the client is on (or was on last).
    pub fn server(&self) -> String {
        self.inner.lock_link().addr.clone()
    }

    /// The current connection. While the client reconnects (or has lost
    /// its connection and the supervisor has not started yet), waits for
    /// the new one, up to the reconnect timeout.
    fn session(&self) -> Result<Arc<Shared>, Error> {
        let reconnect = self.inner.config.reconnect();
        // The supervisor checks its bound between attempts, and one attempt
        // (control and data socket) may take two timeouts.
        let config = &self.inner.config;
        let deadline = Instant::now() + config.reconnect_timeout() + config.timeout() * 2;
        let mut link = self.inner.lock_link();
        loop {
            match &link.state {
                State::Closed => return Err(Error::Disconnected),
                State::Failed(why) => return Err(Error::Unavailable(why.clone())),
                State::Up => {
                    if let Some(conn) = &link.conn
                        && (conn.shared.is_connected() || !reconnect)
                    {
                        return Ok(Arc::clone(&conn.shared));
                    }
                }
                State::Reconnecting => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Disconnected);
            }
            link = self
                .inner
                .changed
                .wait_timeout(link, left.min(failover::POLL))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Runs `f` on the current connection's control socket.
    fn with_control<T>(
        &self,
        f: impl FnOnce(&mut Control) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.session()?.with_control(f)
    }

    /// Whether the session is up: no BYE, no fatal error on either socket,
    /// not reconnecting.
    pub fn is_connected(&self) -> bool {
        let link = self.inner.lock_link();
        matches!(link.state, State::Up)
            && link.conn.as_ref().is_some_and(|c| c.shared.is_connected())
    }

    /// Subscribes to one topic or mask (`+` one level, `#` the rest).
    pub fn subscribe(&self, topic: &str) -> Result<(), Error> {
        self.subscribe_bulk(&[topic])
    }

    /// Subscribes to several topics in one request. The server applies
    /// them in order and stops at the first refusal: the ones before it stay
    /// subscribed. With reconnect on, the request is remembered (a refused
    /// one too: sent again as it was, it gets the same partial result from
    /// a node with the same ACL) and sent again after a failover.
    pub fn subscribe_bulk(&self, topics: &[&str]) -> Result<(), Error> {
        self.topics(true, topics)
    }

    /// Unsubscribes from one topic or mask.
    pub fn unsubscribe(&self, topic: &str) -> Result<(), Error> {
        self.unsubscribe_bulk(&[topic])
    }

    /// Unsubscribes from several topics in one request.
    pub fn unsubscribe_bulk(&self, topics: &[&str]) -> Result<(), Error> {
        self.topics(false, topics)
    }

    fn topics(&self, subscribe: bool, topics: &[&str]) -> Result<(), Error> {
        let record = self.inner.config.reconnect();
        self.with_control(|c| {
            let result = c.topics(subscribe, topics);
            // Recorded under the control lock: the supervisor takes that
            // lock before it reads the list, so no answered request is
            // missed by a resubscription.
            // Answered: `01`, or refused by the server (not a topic the
            // client refused to send).
            let answered = matches!(result, Ok(()) | Err(Error::AccessDenied | Error::Server(_)));
            if record && answered {
                let mut subs = self
                    .inner
                    .subscriptions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if subscribe {
                    subs.subscribed(topics);
                } else if result.is_ok() {
                    subs.unsubscribed(topics);
                }
            }
            result
        })
    }

    /// Publishes and waits for the reply. `priority` is passed through to
    /// subscribers (use [`DEFAULT_PRIORITY`](crate::protocol::DEFAULT_PRIORITY)).
    /// During a failover, see [`Client::connect`]: a publish in flight when
    /// the node goes away returns the error and is not sent again; a
    /// publish made while reconnecting waits and goes to the new node.
    pub fn publish(&self, priority: u8, topic: &str, message: &[u8]) -> Result<(), Error> {
        self.session()?.request(&Request::Publish {
            priority,
            topic,
            message,
        })
    }

    /// Publishes without waiting for the reply; collect the replies with
    /// [`Client::wait_pipelined`]. Every 4096 unread replies are read here
    /// first. Any other request reads the outstanding replies before it is
    /// sent; they are still reported by the next `wait_pipelined`. Replies
    /// outstanding when a connection is lost are lost with it (the next
    /// call returns the error).
    pub fn publish_pipelined(
        &self,
        priority: u8,
        topic: &str,
        message: &[u8],
    ) -> Result<(), Error> {
        self.with_control(|c| c.publish_pipelined(priority, topic, message))
    }

    /// Reads the replies of all pipelined publishes sent so far and returns
    /// their counts (since the previous call); [`PipelineReport::check`]
    /// turns them into a result.
    pub fn wait_pipelined(&self) -> Result<PipelineReport, Error> {
        self.with_control(Control::take_pipelined)
    }

    /// Sends a NOP (keep-alive) and waits for the reply.
    pub fn nop(&self) -> Result<(), Error> {
        self.session()?.request(&Request::Nop)
    }

    /// Ends the session: BYE, the reply, then both sockets are closed. The
    /// client is disconnected afterwards whatever the result (and does not
    /// reconnect).
    pub fn bye(&self) -> Result<(), Error> {
        let Some(conn) = self.inner.close() else {
            return Err(Error::Disconnected);
        };
        let result = conn.shared.request(&Request::Bye);
        drop(conn);
        result
    }

    /// Takes the receiver of incoming messages, e.g. to read them in another
    /// thread. `None` without a data stream or if already taken. The channel
    /// ends when the client disconnects (with reconnect on: when it is
    /// closed or gives up reconnecting).
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
        // The supervisor, if any, sees `Closed` and exits (it is not
        // joined: it may be in a connect attempt; it closes what it opens).
        drop(self.inner.close());
    }
}

/// The first pass over several addresses (see [`Client::connect`]).
fn connect_first(
    config: &Config,
    addrs: &[&str],
    tx: Option<&SyncSender<Message>>,
    lost: Option<&Arc<Signal>>,
) -> Result<(Conn, String), Error> {
    let mut last = Error::Disconnected;
    for addr in failover::order(addrs, config.randomize(), None, failover::random_u64) {
        let mut one = config.clone();
        one.update_path(addr);
        match Conn::open(&one, tx.cloned(), lost.cloned()) {
            Ok(conn) => return Ok((conn, addr.to_owned())),
            Err(e @ (Error::Io(_) | Error::Tls(_) | Error::Timeout | Error::Disconnected)) => {
                log::debug!("{addr}: {e}; trying the next address");
                last = e;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last)
}
