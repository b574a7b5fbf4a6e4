//! What wakes the loop besides sockets: answers from the auth worker
//! (bcrypt results, a reload's new database) and the resolver thread (a
//! node's addresses, tried in turn),
//! signals (SIGHUP reloads, SIGTERM/SIGINT stops), and the outgoing
//! connections' I/O (cluster links and bridges) — starting connects when a
//! retry time comes, and the outcome of a non-blocking connect (a link's
//! plain greeting then TLS; a bridge's TLS then CONNECT).

use std::io::{self, Write};
use std::net::SocketAddr;

use log::{error, info, warn};
use mio::net::{TcpStream, UnixStream};
use psrt_protocol::{CommMode, Greeting, StreamKind, encode_greeting};
use rustls::ClientConnection;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use super::Server;
use crate::server::auth::Reloaded;
use crate::server::auth::worker::{Job, LoopMsg, Outgoing, Ticket};
use crate::server::bridge::phase::{BridgeLink, BridgeStep};
use crate::server::bridge::{self};
use crate::server::config::ConfigError;
use crate::server::conn::{CloseReason, Peer, Stream, Transport};
use crate::server::dispatch;
use crate::server::link::nodes::NodeAddr;
use crate::server::link::outgoing::PeerStatus;
use crate::server::link::phase::{Link, LinkStep};
use crate::server::link::{self};
use crate::server::phase::Phase;
use crate::server::psrt;

impl Server {
    pub(super) fn on_wake(&mut self) {
        while let Ok(msg) = self.inbox.try_recv() {
            match msg {
                LoopMsg::Shutdown => {
                    info!("shutdown requested");
                    self.running = false;
                }
                LoopMsg::Verified(v) => {
                    self.core.worker.answered(v.ticket);
                    match v.ticket {
                        Ticket::Conn { conn, .. } => dispatch::on_verified(&mut self.cx(), conn, v),
                        Ticket::Datagram(id) => {
                            let mut cx = crate::server::core::Cx {
                                core: &mut self.core,
                                conns: &mut self.conns,
                            };
                            self.udp.on_verified(&mut cx, id, v);
                            dispatch::apply_effects(&mut cx);
                        }
                    }
                }
                LoopMsg::Reloaded(result) => self.on_reloaded(*result),
                LoopMsg::Resolved { target, result } => self.on_resolved(target, result),
                LoopMsg::BridgesReloaded(result) => match *result {
                    Ok(list) => {
                        let mut cx = self.cx();
                        bridge::reload::apply(&mut cx, list);
                        dispatch::apply_effects(&mut cx);
                    }
                    Err(e) => error!("bridges not reloaded, keeping them as they are: {e}"),
                },
                LoopMsg::Spool { bridge, event } => {
                    let mut cx = self.cx();
                    bridge::on_spool(&mut cx, bridge, event);
                    dispatch::apply_effects(&mut cx);
                }
            }
        }
    }

    pub(super) fn on_signals(&mut self) {
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
    fn request_reload(&mut self) {
        if self.core.reload_running {
            self.core.reload_queued = true;
            return;
        }
        info!("reloading ACL, passwords, keys, the TLS identity and the bridges");
        self.notifier.reloading();
        let files = self.core.config.auth.clone();
        if self.core.worker.submit(Job::Reload(files)).is_err() {
            error!("auth worker is gone: reload impossible");
            return;
        }
        if let Some(path) = self.core.config.source.clone() {
            // The bridges: config.yml is read and checked in the worker.
            let _ = self.core.worker.submit(Job::ReloadBridges(path));
        }
        self.core.reload_running = true;
    }

    /// The worker has read and parsed every auth file: the new database is
    /// swapped in whole and live sessions brought in line with it; a failed
    /// load keeps everything as it was.
    fn on_reloaded(&mut self, result: Result<Reloaded, ConfigError>) {
        self.core.reload_running = false;
        match result {
            Ok(Reloaded {
                mut db,
                warnings,
                tls_error,
            }) => {
                for w in warnings {
                    warn!("{w}");
                }
                if let Some(e) = tls_error {
                    error!(
                        "TLS identity not reloaded, keeping the certificate in use: {e} (the ACL, passwords and keys are reloaded)"
                    );
                    db.tls = self.core.auth.tls.clone();
                }
                info!("reload ok: {}", db.summary());
                self.core.auth = db;
                self.core.cache.clear();
                self.udp.after_reload(&self.core.auth.keys);
                self.core.stats.reloads_ok += 1;
                let mut cx = self.cx();
                psrt::reload::apply(&mut cx);
                crate::server::mqtt::reload::apply(&mut cx);
                dispatch::apply_effects(&mut cx);
            }
            Err(e) => {
                self.core.stats.reloads_failed += 1;
                error!("reload failed, keeping the previous ACL, passwords and keys: {e}");
            }
        }
        if std::mem::take(&mut self.core.reload_queued) {
            self.request_reload();
        } else {
            self.notifier.ready("reload finished");
        }
    }

    /// Starts links and bridges whose retry time has come: a Unix socket
    /// connects now; a host name is resolved in the resolver thread first
    /// (DNS may block), unless addresses of the last resolution are left.
    pub(super) fn cluster_tick(&mut self) {
        let now = self.core.now;
        for i in 0..self.core.cluster.nodes.len() {
            let node = &mut self.core.cluster.nodes[i];
            if !node.peer.due(now) {
                continue;
            }
            match node.config.addr.clone() {
                NodeAddr::Unix(path) => {
                    let stream = UnixStream::connect(&path).map(Stream::Unix);
                    let peer = Peer::Unix(path.display().to_string().into());
                    self.outgoing_connect(Outgoing::Node(i), stream, peer);
                }
                NodeAddr::Tcp(_) if !node.peer.addrs.is_empty() => {
                    if let Some(addr) = node.peer.addrs.pop_front() {
                        let stream = connect_tcp(addr);
                        self.outgoing_connect(Outgoing::Node(i), stream, Peer::Tcp(addr));
                    }
                }
                NodeAddr::Tcp(spec) => {
                    let job = Job::Resolve {
                        target: Outgoing::Node(i),
                        spec,
                    };
                    if self.core.worker.submit(job).is_err() {
                        self.core.cluster.nodes[i].down(now);
                    }
                }
            }
        }
        for key in 0..self.core.bridges.list.capacity() {
            let Some(b) = self.core.bridges.list.get_mut(key) else {
                continue;
            };
            if !b.peer.due(now) {
                continue;
            }
            let target = Outgoing::Bridge(key as u32);
            if let Some(addr) = b.peer.addrs.pop_front() {
                let stream = connect_tcp(addr);
                self.outgoing_connect(target, stream, Peer::Tcp(addr));
            } else {
                let spec = b.spec();
                if self
                    .core
                    .worker
                    .submit(Job::Resolve { target, spec })
                    .is_err()
                {
                    bridge::failed(&mut self.core, key as u32, "the resolver thread is gone");
                }
            }
        }
    }

    /// The resolver answered: every address is tried in turn, the first now.
    fn on_resolved(&mut self, target: Outgoing, result: io::Result<Vec<SocketAddr>>) {
        let why = match result {
            Ok(addrs) if !addrs.is_empty() => {
                let list = match target {
                    Outgoing::Node(i) => self
                        .core
                        .cluster
                        .nodes
                        .get_mut(i)
                        .map(|n| &mut n.peer.addrs),
                    Outgoing::Bridge(k) => self.core.bridges.get_mut(k).map(|b| &mut b.peer.addrs),
                };
                let Some(list) = list else {
                    return;
                };
                *list = addrs.into();
                let Some(first) = list.pop_front() else {
                    return;
                };
                let stream = connect_tcp(first);
                return self.outgoing_connect(target, stream, Peer::Tcp(first));
            }
            Ok(_) => "the name has no address".to_string(),
            Err(e) => format!("cannot resolve: {e}"),
        };
        self.outgoing_failed(target, &why);
    }

    fn outgoing_failed(&mut self, target: Outgoing, why: &str) {
        match target {
            Outgoing::Node(i) => link::failed(&mut self.core, i, why),
            Outgoing::Bridge(k) => bridge::failed(&mut self.core, k, why),
        }
    }

    /// Puts a connecting socket for a node or a bridge on the loop.
    fn outgoing_connect(&mut self, target: Outgoing, stream: io::Result<Stream>, peer: Peer) {
        let phase = match target {
            Outgoing::Node(node) => Phase::Link(Link {
                node,
                step: LinkStep::Connecting,
            }),
            Outgoing::Bridge(k) => {
                let Some(b) = self.core.bridges.get_mut(k) else {
                    return;
                };
                Phase::Bridge(BridgeLink {
                    bridge: k,
                    keepalive: b.config.keepalive,
                    step: BridgeStep::Connecting,
                })
            }
        };
        match stream.and_then(|s| self.insert_conn(s, peer, phase)) {
            Ok(id) => match target {
                Outgoing::Node(i) => {
                    if let Some(n) = self.core.cluster.nodes.get_mut(i) {
                        n.peer.conn = Some(id);
                    }
                }
                Outgoing::Bridge(k) => {
                    if let Some(b) = self.core.bridges.get_mut(k) {
                        b.peer.conn = Some(id);
                        b.peer.status = PeerStatus::Connecting;
                    }
                }
            },
            Err(e) => self.outgoing_failed(target, &format!("cannot connect: {e}")),
        }
    }

    /// The outcome of a non-blocking connect, once the socket is writable.
    fn connect_outcome(&mut self, id: usize) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(id) else {
            return Ok(());
        };
        if let Transport::Plain(Stream::Tcp(s)) = &conn.stream {
            if let Some(e) = s.take_error()? {
                return Err(e);
            }
            s.peer_addr()?;
        }
        Ok(())
    }

    /// A connecting bridge's socket became writable: on success TLS starts
    /// (`mqtts://`) and CONNECT is queued (rustls holds it until the
    /// handshake is done).
    pub(super) fn on_bridge_connected(&mut self, id: usize, key: u32) {
        let tls = match self.core.bridges.get_mut(key) {
            Some(b) => b.tls.clone(),
            None => return,
        };
        let result = self.connect_outcome(id).and_then(|()| {
            if let (Some((config, name)), Some(conn)) = (tls, self.conns.get_mut(id)) {
                let client = ClientConnection::new(config, name).map_err(io::Error::other)?;
                conn.stream.start_tls(client.into(), &[])?;
            }
            Ok(())
        });
        let mut cx = self.cx();
        match result {
            Ok(()) => {
                bridge::packets::on_connected(&mut cx, id);
                dispatch::on_tls_progress(&mut cx, id);
            }
            Err(e) => {
                let reason = CloseReason::Bridge(e.to_string());
                dispatch::close(&mut cx, id, reason);
                dispatch::apply_effects(&mut cx);
            }
        }
    }

    /// A connecting link's socket became writable: that is the connect's
    /// outcome. On success the greeting goes out (plain), and TLS starts if
    /// the node wants it.
    pub(super) fn on_link_connected(&mut self, id: usize, node: usize) {
        let Some(config) = self.core.cluster.nodes.get(node).map(|n| n.config.clone()) else {
            return;
        };
        let outcome = self.connect_outcome(id);
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let result = outcome.and_then(|()| {
            let comm = if config.tls.is_some() {
                CommMode::Tls
            } else {
                CommMode::Plain
            };
            let mut greeting = Vec::with_capacity(3);
            let kind = StreamKind::Control;
            encode_greeting(Greeting { kind, comm }, &mut greeting);
            // Three bytes on a fresh socket: written whole or the link fails.
            if conn.stream.write(&greeting)? != greeting.len() {
                return Err(io::ErrorKind::WriteZero.into());
            }
            if let Some((tls, name)) = &config.tls {
                let client =
                    ClientConnection::new(tls.clone(), name.clone()).map_err(io::Error::other)?;
                conn.stream.start_tls(client.into(), &[])?;
            }
            Ok(())
        });
        let mut cx = self.cx();
        match result {
            Ok(()) => {
                link::set_step(&mut cx, id, LinkStep::Greeting);
                dispatch::on_tls_progress(&mut cx, id);
            }
            Err(e) => {
                let peer = cx.conns[id].peer.to_string();
                let reason = CloseReason::Link(format!("cannot connect to {peer}: {e}"));
                dispatch::close(&mut cx, id, reason);
                dispatch::apply_effects(&mut cx);
            }
        }
    }
}

/// Starts a non-blocking connect for a cluster link or a bridge. No Nagle,
/// as on accepted sockets: a lone replicated message or bridged packet
/// must not wait for the peer's ACK of the previous write. (The pipelined
/// replication row did not move either way: there every write is large.)
fn connect_tcp(addr: std::net::SocketAddr) -> io::Result<Stream> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    Ok(Stream::Tcp(s))
}
