//! The server: one `mio::Poll`, the listeners, every connection in a `Slab`,
//! and the shared core the handlers work on. `run` is the loop:
//!
//! ```text
//! poll (timeout = next deadline, 0 if a connection is still due input)
//!   → once a second: counter and topic rates for the stats endpoint
//!   → dispatch each event by token (accept, read + decode, writable, wake-ups, signals)
//!   → resume connections whose input budget ran out
//!   → flush: one write/writev per connection that has output
//!   → enforce the global queue cap (`pubsub::outbox`)
//!   → fire due timers (deadlines, beacons, write stalls, closing linger)
//! ```
//!
//! Nothing here blocks: sockets are non-blocking, bcrypt, name resolution
//! and file reads run in the auth workers, and every buffer is bounded
//! before it grows. The loop's I/O is split over this file (set-up: the
//! listeners with their backlog, `server.listen_backlog`; the loop),
//! `io.rs` (accept, read, flush, timers, removal), `wake.rs` (worker
//! answers, signals, reloads, outgoing cluster links) and `busy_poll.rs`
//! (the optional spin before sleeping); protocol work is reached only
//! through `dispatch`.

mod busy_poll;
mod io;
mod wake;

use std::io as stdio;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use super::auth::AuthDb;
use super::auth::worker::{LoopMsg, Worker, default_threads};
use super::bridge::state::Bridges;
use super::config::{BindAddr, Config};
use super::core::{Conns, Core, Cx};
use super::link::Cluster;
use super::link::nodes::NodeConfig;
use super::listener::Listener;
use super::mqtt;
use super::notify::Notifier;
use super::phase::ListenerKind;
use super::stats::Stats;
use super::udp::Udp;
use busy_poll::BusyPoll;

const WAKER: Token = Token(0);
const SIGNALS: Token = Token(1);
const STATS: Token = Token(2);
const FIRST_LISTENER: usize = 3;
const MAX_LISTENERS: usize = 64;
const FIRST_UDP: usize = FIRST_LISTENER + MAX_LISTENERS;
/// Slab key k is `Token(FIRST_CONN + k)`.
const FIRST_CONN: usize = FIRST_UDP + MAX_LISTENERS;
/// A turn with at most this many ready sockets writes each request's
/// pushes right after it (latency); a busier one batches them (throughput).
const EAGER_TURN_EVENTS: usize = 2;

/// Stops a running server from another thread.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    tx: Sender<LoopMsg>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    /// Asks the loop to stop: it closes every connection and `run` returns.
    pub fn shutdown(&self) {
        if self.tx.send(LoopMsg::Shutdown).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// The PSRT server.
pub struct Server {
    poll: Poll,
    listeners: Vec<Listener>,
    /// Per listener: what it speaks, and whether TLS starts at accept.
    listener_kinds: Vec<(ListenerKind, bool)>,
    stats_listener: Option<Listener>,
    udp: Udp,
    signals: Option<Signals>,
    conns: Conns,
    core: Core,
    inbox: Receiver<LoopMsg>,
    handle: ShutdownHandle,
    notifier: Notifier,
    running: bool,
    accept_paused_until: Option<Instant>,
    /// `server.busy_poll_us`: whether the next poll spins first.
    busy: BusyPoll,
    /// Socket input bytes read in this loop turn (for `busy`).
    turn_read: usize,
    /// Whether this loop turn wrote to a socket (for `busy`).
    turn_wrote: bool,
}

impl Server {
    /// Binds every listener of `config` and prepares the loop. `auth` is the
    /// database loaded at start (`AuthDb::load`).
    pub fn bind(config: Config, auth: AuthDb) -> stdio::Result<Self> {
        let mut binds: Vec<(BindAddr, ListenerKind, bool)> = config
            .bind
            .iter()
            .map(|a| (a.clone(), ListenerKind::Psrt, false))
            .collect();
        if let Some(m) = &config.mqtt {
            binds.extend(
                m.bind
                    .iter()
                    .map(|a| (a.clone(), ListenerKind::Mqtt, false)),
            );
            binds.extend(
                m.bind_tls
                    .iter()
                    .map(|a| (BindAddr::Tcp(a.clone()), ListenerKind::Mqtt, true)),
            );
        }
        if binds.len() > MAX_LISTENERS || config.bind_udp.len() > MAX_LISTENERS {
            return Err(stdio::Error::new(
                stdio::ErrorKind::InvalidInput,
                format!(
                    "at most {MAX_LISTENERS} TCP and {MAX_LISTENERS} UDP addresses are supported"
                ),
            ));
        }
        let poll = Poll::new()?;
        let somaxconn = super::sys::somaxconn();
        let backlog = config.listen_backlog.unwrap_or(somaxconn);
        if backlog > somaxconn {
            log::warn!(
                "server.listen_backlog {backlog} is above net.core.somaxconn ({somaxconn}): the kernel uses {somaxconn}"
            );
        }
        let mut listeners = Vec::new();
        let mut listener_kinds = Vec::new();
        for (i, (addr, kind, tls)) in binds.into_iter().enumerate() {
            let mut l = Listener::bind(&addr, backlog)
                .map_err(|e| stdio::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))?;
            poll.registry()
                .register(&mut l, Token(FIRST_LISTENER + i), Interest::READABLE)?;
            listeners.push(l);
            listener_kinds.push((kind, tls));
        }
        let stats_listener = match &config.bind_stats {
            Some(addr) => {
                let mut l = Listener::bind(&BindAddr::Tcp(addr.clone()), backlog).map_err(|e| {
                    stdio::Error::new(e.kind(), format!("cannot bind stats {addr}: {e}"))
                })?;
                poll.registry()
                    .register(&mut l, STATS, Interest::READABLE)?;
                Some(l)
            }
            None => None,
        };
        let mut udp = Udp::bind(&config.bind_udp, config.udp_frame_size)?;
        for (i, socket) in udp.sockets.iter_mut().enumerate() {
            poll.registry()
                .register(socket, Token(FIRST_UDP + i), Interest::READABLE)?;
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, inbox) = channel();
        let threads = match config.auth_workers {
            0 => default_threads(),
            n => n,
        };
        let worker = Worker::spawn(tx.clone(), waker.clone(), threads)?;
        let mut core = Core::new(config, auth, worker, Instant::now())?;
        core.bridges = Bridges::new(&core.config.bridges, core.now)
            .map_err(|e| stdio::Error::new(stdio::ErrorKind::InvalidInput, e))?;
        for (key, b) in core.bridges.list.iter_mut() {
            let (tx, waker, bridge) = (tx.clone(), waker.clone(), key as u32);
            let notify = Box::new(move |event| {
                if tx.send(LoopMsg::Spool { bridge, event }).is_ok() {
                    let _ = waker.wake();
                }
            });
            let name = b.config.name.clone();
            let warnings = b.open_spool(notify).map_err(|e| {
                stdio::Error::new(
                    e.kind(),
                    format!("bridge {name}: cannot open its spool: {e}"),
                )
            })?;
            for w in warnings {
                log::warn!("bridge {name}: spool: {w}");
            }
            if b.queued_messages() > 0 {
                log::info!(
                    "bridge {name}: {} message(s) in its spool from before, sent first",
                    b.queued_messages()
                );
            }
        }
        let busy = BusyPoll::new(core.config.busy_poll_us);
        Ok(Self {
            poll,
            listeners,
            listener_kinds,
            stats_listener,
            udp,
            signals: None,
            conns: Conns::new(),
            core,
            inbox,
            handle: ShutdownHandle { tx, waker },
            notifier: Notifier::default(),
            running: true,
            accept_paused_until: None,
            busy,
            turn_read: 0,
            turn_wrote: false,
        })
    }

    /// Replicates to these nodes from now on (`cluster.yml`).
    pub fn replicate_to(&mut self, nodes: Vec<NodeConfig>) {
        self.core.cluster = Cluster::new(nodes, self.core.now);
    }

    /// Handles SIGHUP (reload) and SIGTERM/SIGINT (stop) on the loop. Only
    /// the process's main server should do this.
    pub fn handle_signals(&mut self) -> stdio::Result<()> {
        let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Sends systemd notifications (`$NOTIFY_SOCKET`): `READY=1` now, then
    /// reload, watchdog and stop notices. Only the process's main server
    /// should do this.
    pub fn notify_systemd(&mut self) {
        self.notifier = Notifier::from_env(Instant::now());
        let listening = self.describe_listeners().join(", ");
        self.notifier.ready(&format!("listening on {listening}"));
    }

    /// A handle that stops the loop from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// The bound PSRT TCP addresses, in `bind` order.
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.addrs_of(false)
    }

    /// The bound MQTT TCP addresses: `mqtt.bind`, then `mqtt.bind_tls`.
    pub fn mqtt_addrs(&self) -> Vec<SocketAddr> {
        self.addrs_of(true)
    }

    fn addrs_of(&self, mqtt: bool) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .zip(&self.listener_kinds)
            .filter(|(_, (kind, _))| (*kind == ListenerKind::Mqtt) == mqtt)
            .filter_map(|(l, _)| l.local_addr())
            .collect()
    }

    /// The bound stats address, if any.
    pub fn stats_addr(&self) -> Option<SocketAddr> {
        self.stats_listener.as_ref().and_then(Listener::local_addr)
    }

    /// The bound UDP addresses, in `bind_udp` order.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp.local_addrs()
    }

    /// What the server listens on, for the start-up log line.
    pub fn describe_listeners(&self) -> Vec<String> {
        let tcp = self
            .listeners
            .iter()
            .zip(&self.listener_kinds)
            .map(|(l, (kind, tls))| match (kind, tls) {
                (ListenerKind::Mqtt, false) => format!("mqtt+{}", l.describe()),
                (ListenerKind::Mqtt, true) => format!("mqtts+{}", l.describe()),
                _ => l.describe(),
            });
        let udp = self
            .udp
            .local_addrs()
            .into_iter()
            .map(|a| format!("udp:{a}"));
        let stats = self
            .stats_addr()
            .into_iter()
            .map(|a| format!("stats:http://{a}/"));
        tcp.chain(udp).chain(stats).collect()
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.core.stats
    }

    /// The handler context: the core and the connections.
    fn cx(&mut self) -> Cx<'_> {
        Cx {
            core: &mut self.core,
            conns: &mut self.conns,
        }
    }

    /// Runs until a shutdown is requested, then closes every connection.
    pub fn run(&mut self) -> stdio::Result<()> {
        let mut events = Events::with_capacity(1024);
        while self.running {
            let now = Instant::now();
            // Output queued by the timers (beacons, closes) must not wait
            // for the next deadline: poll without sleeping then.
            let idle = self.core.ready_list.is_empty()
                && self.core.flush_list.is_empty()
                && self.core.reply_list.is_empty()
                && self.udp.backlog.is_empty();
            let timeout = if idle {
                [
                    self.core.timers.until_next(now),
                    self.accept_paused_until
                        .map(|t| t.saturating_duration_since(now)),
                    self.notifier
                        .next_ping()
                        .map(|t| t.saturating_duration_since(now)),
                    self.core
                        .cluster
                        .next_retry()
                        .map(|t| t.saturating_duration_since(now)),
                    self.core
                        .bridges
                        .next_retry()
                        .map(|t| t.saturating_duration_since(now)),
                    self.core
                        .mqtt
                        .next_expiry
                        .map(|t| t.saturating_duration_since(now)),
                ]
                .into_iter()
                .flatten()
                .min()
            } else {
                Some(Duration::ZERO)
            };
            match self.busy.poll(&mut self.poll, &mut events, timeout) {
                Err(e) if e.kind() == stdio::ErrorKind::Interrupted => continue,
                other => other?,
            }
            self.turn_read = 0;
            self.turn_wrote = false;
            self.core.set_now(Instant::now());
            self.core.sample();
            // A quiet turn (few ready sockets: clients that wait for each
            // answer) writes the pushes a request caused right after its
            // reply; a busy turn batches them into one write per socket at
            // the end of the turn.
            let eager = events.iter().nth(EAGER_TURN_EVENTS).is_none();
            for event in events.iter() {
                match event.token() {
                    WAKER => self.on_wake(),
                    SIGNALS => self.on_signals(),
                    STATS => self.accept_from(None),
                    Token(t) if (FIRST_UDP..FIRST_CONN).contains(&t) => {
                        self.drain_udp(t - FIRST_UDP)
                    }
                    Token(t) if t >= FIRST_CONN => {
                        let id = t - FIRST_CONN;
                        if event.is_writable() {
                            self.on_writable(id);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.on_readable(id);
                            if eager {
                                self.flush_pending();
                            } else {
                                self.flush_replies();
                            }
                        }
                    }
                    Token(t) => self.accept_from(Some(t - FIRST_LISTENER)),
                }
            }
            if self.accept_paused_until.is_some_and(|t| t <= self.core.now) {
                self.accept_paused_until = None;
                for i in 0..self.listeners.len() {
                    self.accept_from(Some(i));
                }
                self.accept_from(None);
            }
            self.resume_ready();
            for index in std::mem::take(&mut self.udp.backlog) {
                self.drain_udp(index);
            }
            self.flush_pending();
            self.enforce_queue_cap();
            self.fire_timers();
            self.notifier.tick(self.core.now);
            self.cluster_tick();
            if self
                .core
                .mqtt
                .next_expiry
                .is_some_and(|t| t <= self.core.now)
            {
                mqtt::session::expire(&mut self.cx());
            }
            self.core.ratelog.flush(self.core.now);
            self.busy.after_turn(self.turn_read, self.turn_wrote, eager);
        }
        self.core.ratelog.flush_all(Instant::now());
        self.notifier.stopping();
        self.close_all();
        Ok(())
    }
}
