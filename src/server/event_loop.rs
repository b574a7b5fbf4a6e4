//! The server: one `mio::Poll`, the listeners, every connection in a `Slab`,
//! and the shared [`Core`] the phase handlers work on. `run` is the loop:
//!
//! ```text
//! poll (timeout = next deadline, 0 if a connection is still due input)
//!   → dispatch each event by token (accept, read + decode, writable, wake-ups, signals)
//!   → resume connections whose input budget ran out
//!   → flush: one write/writev per connection that has output
//!   → fire due timers (deadlines, beacons, write stalls, closing linger)
//! ```
//!
//! Nothing here blocks: sockets are non-blocking, bcrypt and file reads run
//! in the auth worker, and every buffer is bounded before it grows.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use log::{error, info};
use mio::{Events, Interest, Poll, Token, Waker};
use psrt_protocol::Token as ClientToken;
use ring::rand::SystemRandom;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use super::auth::AuthDb;
use super::auth::cache::VerifiedCache;
use super::auth::worker::{Job, LoopMsg, Ticket, Worker};
use super::config::Config;
use super::conn::{CloseReason, Conn, ConnId, Flushed, Phase, RxPool, TxPool};
use super::listener::Listener;
use super::matcher::Matcher;
use super::notify::Notifier;
use super::ratelog::RateLog;
use super::stats::Stats;
use super::throttle::LoginThrottle;
use super::timers::Timers;
use super::udp::Udp;

const WAKER: Token = Token(0);
const SIGNALS: Token = Token(1);
const STATS: Token = Token(2);
const FIRST_LISTENER: usize = 3;
const MAX_LISTENERS: usize = 64;
const FIRST_UDP: usize = FIRST_LISTENER + MAX_LISTENERS;
/// Slab key k is `Token(FIRST_CONN + k)`.
pub(crate) const FIRST_CONN: usize = FIRST_UDP + MAX_LISTENERS;
/// Input read from one connection per loop iteration before others get a turn.
const READ_BUDGET: usize = 256 * 1024;
/// How long accepting pauses after the process ran out of file descriptors.
pub(crate) const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Connections beyond the session limit allowed in the handshake phases.
pub(crate) const HANDSHAKE_HEADROOM: usize = 256;

/// State shared by every connection handler.
pub(crate) struct Core {
    pub(crate) config: Config,
    pub(crate) matcher: Matcher,
    pub(crate) auth: AuthDb,
    pub(crate) cache: VerifiedCache,
    pub(crate) worker: Worker,
    pub(crate) reload_queued: bool,
    pub(crate) reload_running: bool,
    pub(crate) tokens: HashMap<ClientToken, ConnId>,
    pub(crate) stats: Stats,
    pub(crate) timers: Timers,
    pub(crate) flush_list: Vec<ConnId>,
    pub(crate) ready_list: Vec<ConnId>,
    pub(crate) slow_scratch: Vec<ConnId>,
    pub(crate) rx_pool: RxPool,
    pub(crate) tx_pool: TxPool,
    /// Message sequence number, for once-per-client delivery.
    pub(crate) seq: u64,
    /// The loop's notion of now, taken once per iteration.
    pub(crate) now: Instant,
    pub(crate) next_serial: u64,
    pub(crate) per_ip: HashMap<IpAddr, usize>,
    pub(crate) per_user: HashMap<Box<str>, usize>,
    pub(crate) sessions: usize,
    pub(crate) throttle: LoginThrottle,
    /// Outgoing replication (empty without `cluster.config`).
    pub(crate) cluster: super::cluster::Cluster,
    pub(crate) ratelog: RateLog,
    /// When the server started (stats uptime).
    pub(crate) started: Instant,
    /// Host name for the stats endpoint.
    pub(crate) host: String,
    pub(crate) rng: SystemRandom,
}

impl Core {
    /// Puts a connection on the flush list (once).
    pub(crate) fn schedule_flush(&mut self, id: ConnId, conn: &mut Conn) {
        if !conn.in_flush_list {
            conn.in_flush_list = true;
            self.flush_list.push(id);
        }
    }

    /// Puts a connection on the ready list: its input is processed again
    /// next iteration even if no new event arrives.
    pub(crate) fn schedule_input(&mut self, id: ConnId, conn: &mut Conn) {
        if !conn.in_ready_list {
            conn.in_ready_list = true;
            self.ready_list.push(id);
        }
    }

    /// A warning of a kind that clients can trigger in bulk: rate limited
    /// per kind (see `ratelog`).
    pub(crate) fn warn(&mut self, kind: &'static str, msg: std::fmt::Arguments<'_>) {
        self.ratelog.warn(kind, self.now, msg);
    }

    /// Queues the connection's current deadline.
    pub(crate) fn rearm(&mut self, id: ConnId, conn: &mut Conn) {
        if let Some(at) = conn.due(self.config.timeout) {
            self.timers.arm(id, conn.serial, at, &mut conn.armed);
        }
    }
}

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
    pub(crate) poll: Poll,
    pub(crate) listeners: Vec<Listener>,
    pub(crate) stats_listener: Option<Listener>,
    pub(crate) udp: Udp,
    signals: Option<Signals>,
    pub(crate) conns: Slab<Conn>,
    pub(crate) core: Core,
    inbox: Receiver<LoopMsg>,
    handle: ShutdownHandle,
    pub(crate) notifier: Notifier,
    running: bool,
    pub(crate) accept_paused_until: Option<Instant>,
}

impl Server {
    /// Binds every listener of `config` and prepares the loop. `auth` is the
    /// database loaded at start (`AuthDb::load`).
    pub fn bind(config: Config, auth: AuthDb) -> io::Result<Self> {
        if config.bind.len() > MAX_LISTENERS || config.bind_udp.len() > MAX_LISTENERS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "at most {MAX_LISTENERS} TCP and {MAX_LISTENERS} UDP addresses are supported"
                ),
            ));
        }
        let poll = Poll::new()?;
        let mut listeners = Vec::new();
        for (i, addr) in config.bind.iter().enumerate() {
            let mut l = Listener::bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))?;
            poll.registry()
                .register(&mut l, Token(FIRST_LISTENER + i), Interest::READABLE)?;
            listeners.push(l);
        }
        let stats_listener = match &config.bind_stats {
            Some(addr) => {
                let mut l =
                    Listener::bind(&super::config::BindAddr::Tcp(addr.clone())).map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot bind stats {addr}: {e}"))
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
        let worker = Worker::spawn(tx.clone(), waker.clone())?;
        let cache = VerifiedCache::new()
            .map_err(|_| io::Error::other("no system random source for the login cache"))?;
        let now = Instant::now();
        let config_max_login_failures = config.max_login_failures;
        Ok(Self {
            poll,
            listeners,
            stats_listener,
            udp,
            signals: None,
            conns: Slab::new(),
            core: Core {
                config,
                matcher: Matcher::new(),
                auth,
                cache,
                worker,
                reload_queued: false,
                reload_running: false,
                tokens: HashMap::new(),
                stats: Stats::default(),
                timers: Timers::default(),
                flush_list: Vec::new(),
                ready_list: Vec::new(),
                slow_scratch: Vec::new(),
                rx_pool: RxPool::default(),
                tx_pool: TxPool::default(),
                seq: 0,
                now,
                next_serial: 0,
                per_ip: HashMap::new(),
                per_user: HashMap::new(),
                sessions: 0,
                throttle: LoginThrottle::new(config_max_login_failures),
                cluster: super::cluster::Cluster::default(),
                ratelog: RateLog::default(),
                started: now,
                host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_default(),
                rng: SystemRandom::new(),
            },
            inbox,
            handle: ShutdownHandle { tx, waker },
            notifier: Notifier::default(),
            running: true,
            accept_paused_until: None,
        })
    }

    /// Handles SIGHUP (reload) and SIGTERM/SIGINT (stop) on the loop. Only
    /// the process's main server should do this.
    pub fn handle_signals(&mut self) -> io::Result<()> {
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

    /// The bound TCP addresses, in `bind` order.
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(Listener::local_addr)
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
        let tcp = self.listeners.iter().map(Listener::describe);
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

    /// Runs until a shutdown is requested, then closes every connection.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        while self.running {
            let now = Instant::now();
            // Output queued by the timers (beacons, closes) must not wait
            // for the next deadline: poll without sleeping then.
            let idle = self.core.ready_list.is_empty()
                && self.core.flush_list.is_empty()
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
                ]
                .into_iter()
                .flatten()
                .min()
            } else {
                Some(Duration::ZERO)
            };
            match self.poll.poll(&mut events, timeout) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => other?,
            }
            self.core.now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    WAKER => self.on_wake(),
                    SIGNALS => self.on_signals(),
                    STATS => self.accept_stats(),
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
                        }
                    }
                    Token(t) => self.accept_all(t - FIRST_LISTENER),
                }
            }
            if self.accept_paused_until.is_some_and(|t| t <= self.core.now) {
                self.accept_paused_until = None;
                for i in 0..self.listeners.len() {
                    self.accept_all(i);
                }
                self.accept_stats();
            }
            self.resume_ready();
            for index in std::mem::take(&mut self.udp.backlog) {
                self.drain_udp(index);
            }
            self.flush_pending();
            self.fire_timers();
            self.notifier.tick(self.core.now);
            self.cluster_tick();
            self.core.ratelog.flush(self.core.now);
        }
        self.core.ratelog.flush_all(Instant::now());
        self.notifier.stopping();
        self.close_all();
        Ok(())
    }

    fn on_wake(&mut self) {
        while let Ok(msg) = self.inbox.try_recv() {
            match msg {
                LoopMsg::Shutdown => {
                    info!("shutdown requested");
                    self.running = false;
                }
                LoopMsg::Verified(v) => {
                    self.core.worker.in_flight = self.core.worker.in_flight.saturating_sub(1);
                    match v.ticket {
                        Ticket::Conn { conn, serial } => self.on_verified(conn, serial, v),
                        Ticket::Datagram(id) => self.on_datagram_verified(id, &v),
                    }
                }
                LoopMsg::Reloaded(result) => self.on_reloaded(*result),
                LoopMsg::Resolved { node, result } => self.on_resolved(node, result),
            }
        }
    }

    fn on_signals(&mut self) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        let pending: Vec<i32> = signals.pending().collect();
        for sig in pending {
            match sig {
                SIGHUP => self.request_reload(),
                SIGTERM | SIGINT if self.running => {
                    info!(
                        "terminating ({})",
                        if sig == SIGTERM { "SIGTERM" } else { "SIGINT" }
                    );
                    self.running = false;
                }
                _ => {}
            }
        }
    }

    /// Queues a reload of the auth files in the worker (SIGHUP).
    pub(crate) fn request_reload(&mut self) {
        if self.core.reload_running {
            self.core.reload_queued = true;
            return;
        }
        info!("reloading ACL, passwords, keys and the TLS identity");
        self.notifier.reloading();
        let files = self.core.config.auth.clone();
        if self.core.worker.submit(Job::Reload(files)).is_err() {
            error!("auth worker is gone: reload impossible");
            return;
        }
        self.core.reload_running = true;
    }

    fn on_writable(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.writable = true;
        if matches!(
            conn.phase,
            Phase::Link(super::conn::Link {
                step: super::conn::LinkStep::Connecting,
                ..
            })
        ) {
            return self.on_link_writable(id);
        }
        if !conn.tx.is_empty() || conn.stream.has_pending_output() {
            self.core.schedule_flush(id, conn);
        }
    }

    /// Reads until `WouldBlock`, the input budget, or a pause, decoding as it
    /// goes.
    pub(crate) fn on_readable(&mut self, id: ConnId) {
        let mut read = 0;
        loop {
            let Some(conn) = self.conns.get_mut(id) else {
                return;
            };
            if !conn.wants_input() {
                if matches!(conn.phase, Phase::Data(_)) {
                    self.drain_data_input(id);
                }
                return;
            }
            match conn.rx.read_from(&mut conn.stream, &mut self.core.rx_pool) {
                Ok(0) => {
                    self.close(id, CloseReason::PeerClosed);
                    return;
                }
                Ok(n) => {
                    read += n;
                    conn.last_input = self.core.now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.rx.release_if_empty(&mut self.core.rx_pool);
                    if matches!(conn.stream, super::conn::Transport::Tls(_)) {
                        self.check_tls_handshake(id);
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    self.close(id, CloseReason::Tls(e.to_string()));
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.close(id, CloseReason::Io(e.kind()));
                    return;
                }
            }
            self.process_input(id);
            // The budget bounds decoding work; reading the rest of one large
            // frame is only a copy, so it is not cut short (fewer loop turns
            // per megabyte message).
            if read >= READ_BUDGET {
                if let Some(conn) = self.conns.get_mut(id) {
                    if conn.rx.is_assembling() {
                        continue;
                    }
                    self.core.schedule_input(id, conn);
                }
                return;
            }
        }
    }

    /// A data socket is never read after its hello; input is discarded so
    /// the end of the stream is noticed.
    fn drain_data_input(&mut self, id: ConnId) {
        let mut scratch = [0u8; 4096];
        let mut budget = READ_BUDGET;
        while budget > 0 {
            let Some(conn) = self.conns.get_mut(id) else {
                return;
            };
            match conn.stream.read(&mut scratch) {
                Ok(0) => return self.close(id, CloseReason::PeerClosed),
                Ok(n) => budget = budget.saturating_sub(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.close(id, CloseReason::Io(e.kind())),
            }
        }
        if let Some(conn) = self.conns.get_mut(id) {
            self.core.schedule_input(id, conn);
        }
    }

    fn resume_ready(&mut self) {
        let ready = std::mem::take(&mut self.core.ready_list);
        for &id in &ready {
            let Some(conn) = self.conns.get_mut(id) else {
                continue;
            };
            if !conn.in_ready_list {
                continue;
            }
            conn.in_ready_list = false;
            self.process_input(id);
            self.on_readable(id);
        }
    }

    /// Writes every connection on the flush list once and reaps closing
    /// connections that have nothing left to write.
    fn flush_pending(&mut self) {
        while !self.core.flush_list.is_empty() {
            let list = std::mem::take(&mut self.core.flush_list);
            for id in list {
                self.flush_one(id);
            }
        }
    }

    fn flush_one(&mut self, id: ConnId) {
        let now = self.core.now;
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if !conn.in_flush_list {
            return;
        }
        conn.in_flush_list = false;
        if conn.writable && (!conn.tx.is_empty() || conn.stream.has_pending_output()) {
            let paused = !conn.wants_input();
            let before = conn.tx.len();
            let written = conn
                .tx
                .write_to(&mut conn.stream, &mut self.core.tx_pool)
                .and_then(|flushed| match flushed {
                    // Plaintext all taken: TLS ciphertext may still wait.
                    Flushed::Drained if !conn.stream.flush_pending()? => Ok(Flushed::Blocked),
                    other => Ok(other),
                });
            match written {
                Ok(flushed) => {
                    if conn.tx.len() < before {
                        conn.last_write = now;
                    }
                    if flushed == Flushed::Blocked {
                        conn.writable = false;
                    }
                    // Blocked: the write-stall deadline. Drained: a data
                    // socket's next beacon, earlier than the stall deadline
                    // armed while its queue was not empty.
                    self.core.rearm(id, conn);
                    if paused && conn.wants_input() {
                        self.core.schedule_input(id, conn);
                    }
                }
                Err(e) => return self.close(id, CloseReason::Io(e.kind())),
            }
        }
        if matches!(conn.phase, Phase::Data(_)) && conn.tx.messages() > self.core.config.data_queue
        {
            let reason = CloseReason::SlowConsumer {
                bytes: conn.tx.len(),
                messages: conn.tx.messages(),
            };
            return self.close(id, reason);
        }
        if let Phase::Closing(reason) = &conn.phase {
            if conn.tx.is_empty() {
                // Everything queued went out: end a TLS session cleanly, and
                // close once its last record is written too.
                if reason.keeps_output() {
                    conn.stream.close_notify();
                    if !conn.stream.flush_pending().unwrap_or(true) {
                        conn.writable = false;
                        return;
                    }
                }
                if !conn.stream.has_pending_output() {
                    self.remove_conn(id);
                }
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = self.core.now;
        while let Some((id, serial, at)) = self.core.timers.pop_due(now) {
            let Some(conn) = self.conns.get_mut(id) else {
                continue;
            };
            if conn.serial != serial || conn.armed != Some(at) {
                continue;
            }
            conn.armed = None;
            match conn.due(self.core.config.timeout) {
                Some(due) if due <= now => self.on_due(id),
                Some(due) => self.core.timers.arm(id, serial, due, &mut conn.armed),
                None => {}
            }
        }
    }

    /// A connection's deadline passed.
    fn on_due(&mut self, id: ConnId) {
        let now = self.core.now;
        let timeout = self.core.config.timeout;
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let stalled = !conn.tx.is_empty() && conn.last_write + timeout <= now;
        let reason = match &conn.phase {
            Phase::Closing(_) => return self.remove_conn(id),
            _ if stalled => CloseReason::WriteStall,
            Phase::Data(_) => {
                // Beacon: nothing was written for half the client's timeout.
                conn.tx.push_slice(&[0], false, &mut self.core.tx_pool);
                conn.last_write = now;
                self.core.schedule_flush(id, conn);
                self.core.rearm(id, conn);
                return;
            }
            Phase::Control(_) if conn.partial_since.is_some() => {
                CloseReason::Timeout("an incomplete request (too slow)")
            }
            Phase::Control(_) => CloseReason::Timeout("control (idle: no request)"),
            Phase::Link(super::conn::Link {
                step: super::conn::LinkStep::Idle,
                ..
            }) => return self.link_ping(id),
            Phase::Authenticating => return,
            other => CloseReason::Timeout(other.name()),
        };
        self.core.stats.timeouts += 1;
        self.close(id, reason);
    }
}
