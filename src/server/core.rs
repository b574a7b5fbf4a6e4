//! The state every handler shares ([`Core`]) and the narrow context a
//! handler is given ([`Cx`]): the core and the connection slab, nothing that
//! does I/O (no poll, no listeners, no sockets other than through the send
//! queues, no signals). Handlers queue what must happen to *other*
//! connections as [`Effect`]s; the loop applies them in one place
//! (`event_loop::io`), after the handler returns, so no handler ever sees a
//! connection vanish part-way through its own work.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use psrt_protocol::Token as ClientToken;
use ring::rand::{SecureRandom, SystemRandom};
use slab::Slab;

use super::admission::Admission;
use super::auth::AuthDb;
use super::auth::cache::LoginCache;
use super::auth::login::{self, Verdict};
use super::auth::throttle::{Block, LoginThrottle};
use super::auth::worker::{Ticket, Verified, Worker};
use super::bridge::state::Bridges;
use super::config::Config;
use super::conn::{CloseReason, ConnId, Peer, RxPool, TxPool};
use super::link::Cluster;
use super::mqtt::state::Sessions;
use super::phase::Conn;
use super::pubsub::Matcher;
use super::pubsub::top::TopTopics;
use super::ratelog::RateLog;
use super::stats::{History, Rates, Stats};
use super::timers::Timers;

/// Every connection, by slab key.
pub(crate) type Conns = Slab<Conn>;

/// What a handler wants done to a connection other than its own.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Close it (a replaced data socket, a slow consumer, a revoked session).
    Close(ConnId, CloseReason),
}

/// State shared by every connection handler.
pub(crate) struct Core {
    pub(crate) config: Config,
    pub(crate) matcher: Matcher,
    pub(crate) auth: AuthDb,
    /// Verified and recently failed password checks.
    pub(crate) cache: LoginCache,
    pub(crate) worker: Worker,
    pub(crate) reload_queued: bool,
    pub(crate) reload_running: bool,
    /// Session token → the control connection that owns it.
    pub(crate) tokens: HashMap<ClientToken, ConnId>,
    pub(crate) stats: Stats,
    /// The counters' rates over the last second.
    pub(crate) rates: Rates,
    /// The last two minutes of rates and gauges, for the page's charts.
    pub(crate) history: History,
    /// The busiest topics.
    pub(crate) topics: TopTopics,
    pub(crate) timers: Timers,
    pub(crate) flush_list: Vec<ConnId>,
    /// Connections with a reply queued (or a large push, queued before the
    /// reply it goes ahead of: `pubsub::deliver::PUSH_FIRST_MIN`): flushed
    /// before `flush_list`.
    pub(crate) reply_list: Vec<ConnId>,
    pub(crate) ready_list: Vec<ConnId>,
    /// Effects queued by handlers, applied by the loop.
    pub(crate) effects: Vec<Effect>,
    pub(crate) rx_pool: RxPool,
    pub(crate) tx_pool: TxPool,
    /// Message sequence number, for once-per-client delivery.
    pub(crate) seq: u64,
    /// The loop's notion of now, taken once per iteration (tests set it).
    pub(crate) now: Instant,
    /// [`Core::wall_ns`] of this turn, once read.
    wall_ns: Option<u64>,
    pub(crate) next_serial: u64,
    pub(crate) per_ip: HashMap<IpAddr, usize>,
    pub(crate) per_user: HashMap<Box<str>, usize>,
    /// Connections before login per address; TLS handshakes in progress.
    pub(crate) admission: Admission,
    /// Logged-in sessions: PSRT control connections and connected MQTT
    /// clients.
    pub(crate) sessions: usize,
    pub(crate) throttle: LoginThrottle,
    /// Outgoing replication (empty without `cluster.config`).
    pub(crate) cluster: Cluster,
    /// MQTT sessions (connected and away).
    pub(crate) mqtt: Sessions,
    /// Bridges to MQTT brokers (`bridges:`).
    pub(crate) bridges: Bridges,
    pub(crate) ratelog: RateLog,
    /// When the server started (stats uptime).
    pub(crate) started: Instant,
    /// Host name for the stats endpoint.
    pub(crate) host: String,
    pub(crate) rng: SystemRandom,
}

impl Core {
    /// A core for `config` and `auth`, with `worker` for slow jobs.
    pub(crate) fn new(
        config: Config,
        auth: AuthDb,
        worker: Worker,
        now: Instant,
    ) -> std::io::Result<Self> {
        let max_login_failures = config.max_login_failures;
        let mut rx_pool = RxPool::default();
        rx_pool.partial_budget = config.max_partial_bytes;
        let cache = LoginCache::new()
            .map_err(|_| std::io::Error::other("no system random source for the login cache"))?;
        let rng = SystemRandom::new();
        let mut seed = [0u8; 16];
        rng.fill(&mut seed)
            .map_err(|_| std::io::Error::other("no system random source for the topics table"))?;
        let (k0, k1) = seed.split_at(8);
        let seed = [k0, k1].map(|k| u64::from_le_bytes(k.try_into().unwrap_or_default()));
        Ok(Self {
            config,
            matcher: Matcher::new(),
            auth,
            cache,
            worker,
            reload_queued: false,
            reload_running: false,
            tokens: HashMap::new(),
            stats: Stats::default(),
            rates: Rates::new(&Stats::default(), now),
            history: History::default(),
            topics: TopTopics::new(seed, now),
            timers: Timers::default(),
            flush_list: Vec::new(),
            reply_list: Vec::new(),
            ready_list: Vec::new(),
            effects: Vec::new(),
            rx_pool,
            tx_pool: TxPool::default(),
            seq: 0,
            now,
            wall_ns: None,
            next_serial: 0,
            per_ip: HashMap::new(),
            per_user: HashMap::new(),
            admission: Admission::default(),
            sessions: 0,
            throttle: LoginThrottle::new(max_login_failures),
            cluster: Cluster::default(),
            mqtt: Sessions::default(),
            bridges: Bridges::default(),
            ratelog: RateLog::default(),
            started: now,
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
            rng,
        })
    }

    /// Sets the loop's notion of now (once per loop turn; tests move it):
    /// also the stamp counted messages queued from now on carry.
    pub(crate) fn set_now(&mut self, now: Instant) {
        self.now = now;
        self.tx_pool.stamp_us = self.clock_us(now);
        self.wall_ns = None;
    }

    /// Wall-clock time of this loop turn, ns since the epoch (read at the
    /// turn's first use: a turn that replicates a batch reads it once).
    pub(crate) fn wall_ns(&mut self) -> u64 {
        *self.wall_ns.get_or_insert_with(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        })
    }

    /// Once a second (the loop asks every turn): the counters' and the
    /// busiest topics' rates over the last interval, and the charts' point.
    pub(crate) fn sample(&mut self) {
        if self.rates.roll(&self.stats, self.now) {
            self.topics.roll(self.now);
            let gauges = [
                // PSRT sessions and connected MQTT clients.
                self.sessions as f64,
                self.matcher.len() as f64,
                self.tx_pool.queued_total as f64,
            ];
            self.history.push(&self.rates, gauges);
        }
    }

    /// `t` in µs since the server started, wrapping every 71 minutes (send
    /// queue latency stamps).
    pub(crate) fn clock_us(&self, t: Instant) -> u32 {
        // Truncation is the wrap.
        t.saturating_duration_since(self.started).as_micros() as u32
    }

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
        if let Some(at) = super::phase::due(conn, self.config.timeout) {
            self.timers.arm(id, conn.serial, at, &mut conn.armed);
        }
    }

    /// Asks the loop to close another connection once the current handler
    /// is done.
    pub(crate) fn close_later(&mut self, id: ConnId, reason: CloseReason) {
        self.effects.push(Effect::Close(id, reason));
    }

    /// A failed password check of `login` from `ip` (a PSRT login or HTTP
    /// Basic credentials): counted, and the brute-force throttle told.
    pub(crate) fn login_failed(&mut self, ip: Option<IpAddr>, login: &str) {
        self.stats.login_failures += 1;
        let Some(ip) = ip else {
            return;
        };
        for block in self.throttle.failure(ip, login, self.now) {
            match block {
                Block::Login(n, d) => log::warn!(
                    "{ip}: {n} failed logins as {login:?} within a minute: refusing that login from this address for {}s",
                    d.as_secs()
                ),
                Block::Address(n, d) => log::warn!(
                    "{ip}: {n} failed logins within a minute: refusing its connections for {}s",
                    d.as_secs()
                ),
            }
        }
    }

    /// Whether `login`'s attempts from `ip` are refused for now (counted and
    /// logged once per attempt, rate-limited).
    pub(crate) fn login_refused(&mut self, ip: Option<IpAddr>, login: &str) -> bool {
        let Some(left) = ip.and_then(|ip| self.throttle.login_blocked(ip, login, self.now)) else {
            return false;
        };
        self.stats.auth_blocked += 1;
        let ip = ip.map(|ip| ip.to_string()).unwrap_or_default();
        self.warn(
            "auth-block",
            format_args!(
                "{ip}: login {login:?} refused for {}s more after repeated failed logins",
                left.as_secs() + 1
            ),
        );
        true
    }

    /// Whether a new PSRT connection from `peer` must be refused: its
    /// address has `max_handshakes_per_ip` connections that have not logged
    /// in yet.
    pub(crate) fn prelogin_full(&self, peer: &Peer) -> bool {
        let max = self.config.max_handshakes_per_ip;
        peer.ip().is_some_and(|ip| self.admission.is_full(ip, max))
    }

    /// A PSRT connection was accepted: it counts against its address until
    /// [`handshake_over`](Self::handshake_over).
    pub(crate) fn handshake_started(&mut self, conn: &mut Conn) {
        if let (false, Some(ip)) = (conn.counted_handshake, conn.ip()) {
            self.admission.enter(ip);
            conn.counted_handshake = true;
        }
    }

    /// The connection logged in, bound its data socket, or is closing: it
    /// no longer counts against its address (once, whichever comes first).
    pub(crate) fn handshake_over(&mut self, conn: &mut Conn) {
        if std::mem::take(&mut conn.counted_handshake) {
            if let Some(ip) = conn.ip() {
                self.admission.leave(ip);
            }
        }
    }

    /// The one auth pipeline's check (`auth::login::check`) on this core's
    /// database, cache and worker.
    pub(crate) fn check_password(
        &mut self,
        ticket: Ticket,
        login: &str,
        password: &str,
    ) -> Verdict {
        login::check(
            &self.auth,
            &self.cache,
            &mut self.worker,
            self.now,
            ticket,
            login,
            password,
        )
    }

    /// The one auth pipeline's answer to a worker result
    /// (`auth::login::finish`).
    pub(crate) fn finish_password(&mut self, v: Verified) -> Verdict {
        login::finish(&self.auth, &mut self.cache, &mut self.worker, self.now, v)
    }

    /// Encodes `len` bytes straight into a connection's send queue (a
    /// cluster link's or a bridge's packets) and schedules its flush.
    pub(crate) fn push_encoded(
        &mut self,
        id: ConnId,
        conn: &mut Conn,
        len: usize,
        encode: impl FnOnce(&mut Vec<u8>),
    ) {
        conn.output_started(self.now);
        conn.tx.push_with(len, false, &mut self.tx_pool, encode);
        self.schedule_flush(id, conn);
    }

    /// Queues bytes on a connection and schedules its flush.
    /// A reply: its connection is flushed before the pushes of the same
    /// turn, so the requester can send its next request sooner.
    pub(crate) fn send(&mut self, id: ConnId, conn: &mut Conn, bytes: &[u8]) {
        self.queue_reply(id, conn, bytes, true);
    }

    /// Queues an answer nobody is waiting for (the acknowledgements of a
    /// pipelined replication link, whose sender keeps thousands of messages
    /// in flight): flushed with the pushes and after them, so that the
    /// sending node is not woken before the subscribers the messages are for.
    pub(crate) fn send_later(&mut self, id: ConnId, conn: &mut Conn, bytes: &[u8]) {
        self.queue_reply(id, conn, bytes, false);
    }

    fn queue_reply(&mut self, id: ConnId, conn: &mut Conn, bytes: &[u8], urgent: bool) {
        conn.output_started(self.now);
        conn.tx.push_slice(bytes, false, &mut self.tx_pool);
        if !conn.in_flush_list {
            conn.in_flush_list = true;
            if urgent {
                self.reply_list.push(id);
            } else {
                self.flush_list.push(id);
            }
        }
    }
}

/// What a handler works with: the shared core and the connections.
pub(crate) struct Cx<'a> {
    pub(crate) core: &'a mut Core,
    pub(crate) conns: &'a mut Conns,
}
