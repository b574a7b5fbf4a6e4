//! Outgoing replication links: one connection per cluster node, made by this
//! server and driven on the same event loop as the client connections.
//!
//! ```text
//! Connecting → Greeting → Login → Idle ⇄ AwaitTopic → (E0) Idle
//!                                           └ (02) AwaitBody → (01) Idle
//!                                 Idle → AwaitNop → Idle   (keep-alive)
//! ```
//!
//! Names are resolved in the auth worker (DNS may block); connects are
//! non-blocking; every step has the protocol timeout as its deadline.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use log::info;
use mio::net::{TcpStream, UnixStream};
use psrt_protocol::{
    CommMode, Decoded, Greeting, Login, REPL_BODY_HEADER_LEN, Reply, Request, StreamKind,
    decode_greeting_reply, decode_reply, decode_token, encode_greeting, encode_login,
    encode_repl_body_header, encode_request,
};
use rustls::ClientConnection;

use super::auth::worker::Job;
use super::cluster::{NodeAddr, NodeConfig, Replica};
use super::conn::{CloseReason, ConnId, Link, LinkStep, Peer, Phase, Stream};
use super::event_loop::Server;
use super::handshake::{Step, frame};

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Server {
    /// Replicates to these nodes from now on (`cluster.yml`).
    pub fn replicate_to(&mut self, nodes: Vec<NodeConfig>) {
        self.core.cluster = super::cluster::Cluster::new(nodes, self.core.now);
    }

    /// Queues a locally published message to every node.
    pub(crate) fn replicate(&mut self, priority: u8, topic: &str, message: &[u8]) {
        if self.core.cluster.is_empty() {
            return;
        }
        let replica = Replica {
            priority,
            topic: topic.into(),
            message: message.into(),
            timestamp_ns: now_ns(),
        };
        let (max_messages, max_bytes) = (
            self.core.config.data_queue,
            self.core.config.data_queue_bytes,
        );
        for i in 0..self.core.cluster.nodes.len() {
            let node = &mut self.core.cluster.nodes[i];
            if node.push(replica.clone(), max_messages, max_bytes) {
                if let Some(id) = node.link {
                    self.link_send_next(id);
                }
            } else {
                let path = node.config.path.clone();
                self.core.warn(
                    "cluster",
                    format_args!("node {path}: replication queue full, message dropped"),
                );
            }
        }
    }

    /// Starts links whose retry time has come.
    pub(crate) fn cluster_tick(&mut self) {
        let now = self.core.now;
        for i in 0..self.core.cluster.nodes.len() {
            let node = &mut self.core.cluster.nodes[i];
            if node.link.is_some() || node.retry_at.is_none_or(|t| t > now) {
                continue;
            }
            node.retry_at = None;
            match node.config.addr.clone() {
                NodeAddr::Unix(path) => {
                    let stream = UnixStream::connect(&path).map(Stream::Unix);
                    let peer = Peer::Unix(path.display().to_string().into());
                    self.link_connect(i, stream, peer);
                }
                NodeAddr::Tcp(spec) => {
                    if self
                        .core
                        .worker
                        .submit(Job::Resolve { node: i, spec })
                        .is_err()
                    {
                        self.core.cluster.nodes[i].down(now);
                    }
                }
            }
        }
    }

    /// The worker resolved a node's address.
    pub(crate) fn on_resolved(&mut self, node: usize, result: io::Result<Vec<SocketAddr>>) {
        let addr = match result {
            Ok(addrs) if !addrs.is_empty() => addrs[0],
            Ok(_) => return self.link_failed(node, "the name has no address"),
            Err(e) => return self.link_failed(node, &format!("cannot resolve: {e}")),
        };
        let stream = TcpStream::connect(addr).map(Stream::Tcp);
        self.link_connect(node, stream, Peer::Tcp(addr));
    }

    fn link_failed(&mut self, node: usize, why: &str) {
        let now = self.core.now;
        let Some(n) = self.core.cluster.nodes.get_mut(node) else {
            return;
        };
        n.down(now);
        let path = n.config.path.clone();
        self.core.warn(
            "cluster",
            format_args!("node {path}: {why}; retrying later"),
        );
    }

    fn link_connect(&mut self, node: usize, stream: io::Result<Stream>, peer: Peer) {
        let phase = Phase::Link(Link {
            node,
            step: LinkStep::Connecting,
        });
        match stream.and_then(|s| self.insert_conn(s, peer, phase)) {
            Ok(id) => {
                if let Some(n) = self.core.cluster.nodes.get_mut(node) {
                    n.link = Some(id);
                }
            }
            Err(e) => self.link_failed(node, &format!("cannot connect: {e}")),
        }
    }

    /// A link's socket became writable: while connecting, that is the
    /// connect's outcome. On success the greeting goes out (plain), and TLS
    /// starts if the node wants it.
    pub(crate) fn on_link_writable(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let Phase::Link(Link {
            node,
            step: LinkStep::Connecting,
        }) = conn.phase
        else {
            return;
        };
        let Some(config) = self.core.cluster.nodes.get(node).map(|n| n.config.clone()) else {
            return;
        };
        let result = (|| -> io::Result<()> {
            if let super::conn::Transport::Plain(Stream::Tcp(s)) = &conn.stream {
                if let Some(e) = s.take_error()? {
                    return Err(e);
                }
                s.peer_addr()?;
            }
            let comm = if config.tls.is_some() {
                CommMode::Tls
            } else {
                CommMode::Plain
            };
            let mut greeting = Vec::with_capacity(3);
            encode_greeting(
                Greeting {
                    kind: StreamKind::Control,
                    comm,
                },
                &mut greeting,
            );
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
        })();
        match result {
            Ok(()) => {
                self.set_link_step(id, LinkStep::Greeting);
                if let Some(conn) = self.conns.get_mut(id) {
                    if conn.stream.has_pending_output() {
                        self.core.schedule_flush(id, conn);
                    }
                }
            }
            Err(e) => {
                let peer = conn.peer.to_string();
                self.close(
                    id,
                    CloseReason::Link(format!("cannot connect to {peer}: {e}")),
                );
            }
        }
    }

    fn set_link_step(&mut self, id: ConnId, step: LinkStep) {
        let now = self.core.now;
        if let Some(conn) = self.conns.get_mut(id) {
            if let Phase::Link(link) = &conn.phase {
                let node = link.node;
                conn.set_phase(Phase::Link(Link { node, step }), now);
                self.core.rearm(id, conn);
            }
        }
    }

    /// Encodes `len` bytes straight into the link's send queue.
    fn link_push(&mut self, id: ConnId, len: usize, encode: impl FnOnce(&mut Vec<u8>)) {
        let conn = &mut self.conns[id];
        conn.tx
            .push_with(len, false, &mut self.core.tx_pool, encode);
        self.core.schedule_flush(id, conn);
    }

    /// A link connection ended: the node is down until its retry time.
    pub(crate) fn link_closed(&mut self, id: ConnId, link: Link, reason: Option<String>) {
        let now = self.core.now;
        let Some(n) = self.core.cluster.nodes.get_mut(link.node) else {
            return;
        };
        if n.link != Some(id) {
            return;
        }
        n.down(now);
        let hint = if link.step == LinkStep::Login {
            " (login refused? check user, password and the node's ACL)"
        } else {
            ""
        };
        let path = n.config.path.clone();
        let why = reason.unwrap_or_default();
        self.core.warn(
            "cluster",
            format_args!(
                "node {path}: link down in {:?}: {why}{hint}; retrying later",
                link.step
            ),
        );
    }

    /// Sends the next queued message's topic, if the link is idle.
    fn link_send_next(&mut self, id: ConnId) {
        let Some(Phase::Link(Link {
            node,
            step: LinkStep::Idle,
        })) = self.conns.get(id).map(|c| &c.phase)
        else {
            return;
        };
        let node = *node;
        let Some(topic) = self.core.cluster.nodes[node]
            .queue
            .front()
            .map(|r| r.topic.clone())
        else {
            return;
        };
        self.link_push(id, 1 + 4 + topic.len(), |v| {
            encode_request(&Request::PublishRepl { topic: &topic }, v)
        });
        self.set_link_step(id, LinkStep::AwaitTopic);
    }

    /// Deadline of an idle link: a keep-alive NOP.
    pub(crate) fn link_ping(&mut self, id: ConnId) {
        self.link_push(id, 1, |v| encode_request(&Request::Nop, v));
        self.set_link_step(id, LinkStep::AwaitNop);
    }

    /// Replies (and the greeting reply and token) from the node.
    pub(crate) fn on_link_input(&mut self, id: ConnId, data: &[u8]) -> Result<Step, CloseReason> {
        let Some(Phase::Link(Link { node, step })) = self.conns.get(id).map(|c| &c.phase) else {
            return Err(CloseReason::Link("not a link".into()));
        };
        let (node, step) = (*node, *step);
        match step {
            LinkStep::Greeting => {
                let (kind, len) = match frame(decode_greeting_reply(data))? {
                    Ok(f) => f,
                    Err(step) => return Ok(step),
                };
                if kind != StreamKind::Control {
                    return Err(CloseReason::Link(
                        "node answered with a data greeting".into(),
                    ));
                }
                let (user, password) = {
                    let c = &self.core.cluster.nodes[node].config;
                    (c.user.clone(), c.password.clone())
                };
                self.link_push(id, 4 + user.len() + 1 + password.len(), |v| {
                    encode_login(
                        &Login {
                            login: &user,
                            password: &password,
                        },
                        v,
                    );
                });
                self.set_link_step(id, LinkStep::Login);
                Ok(Step::Used(len))
            }
            LinkStep::Login => {
                let len = match decode_token(data) {
                    Decoded::Frame { len, .. } => len,
                    Decoded::Incomplete { need } => return Ok(Step::Need(need)),
                };
                let n = &mut self.core.cluster.nodes[node];
                n.online();
                info!(
                    "replicating to node {} as {:?}",
                    n.config.path, n.config.user
                );
                self.set_link_step(id, LinkStep::Idle);
                self.link_send_next(id);
                Ok(Step::Used(len))
            }
            LinkStep::AwaitTopic | LinkStep::AwaitBody | LinkStep::AwaitNop => {
                let (reply, len) = match frame(decode_reply(data))? {
                    Ok(f) => f,
                    Err(step) => return Ok(step),
                };
                self.on_link_reply(id, node, step, reply)?;
                Ok(Step::Used(len))
            }
            LinkStep::Connecting | LinkStep::Idle => Err(CloseReason::Link(
                "the node sent bytes nobody asked for".into(),
            )),
        }
    }

    fn on_link_reply(
        &mut self,
        id: ConnId,
        node: usize,
        step: LinkStep,
        reply: Reply,
    ) -> Result<(), CloseReason> {
        let n = &mut self.core.cluster.nodes[node];
        match (step, reply) {
            (LinkStep::AwaitTopic, Reply::NotRequired) => {
                n.not_required += 1;
                n.pop();
            }
            (LinkStep::AwaitTopic, Reply::OkWaiting) => {
                let Some(r) = n.queue.front().cloned() else {
                    return Err(CloseReason::Link("queue emptied mid-request".into()));
                };
                // The payload is shared by every node's queue: it goes into
                // the send queue as it is, never copied.
                self.link_push(id, REPL_BODY_HEADER_LEN, |v| {
                    encode_repl_body_header(r.priority, r.timestamp_ns, r.message.len(), v);
                });
                let conn = &mut self.conns[id];
                let len = r.message.len();
                conn.tx
                    .push_shared(r.message, len, false, &mut self.core.tx_pool);
                self.set_link_step(id, LinkStep::AwaitBody);
                return Ok(());
            }
            (LinkStep::AwaitTopic, Reply::AccessDenied) => {
                n.dropped += 1;
                n.pop();
                let (path, user) = (n.config.path.clone(), n.config.user.clone());
                self.core.warn("cluster", format_args!(
                        "node {path}: {user:?} is not a replicator there (ACL replicator: true); message dropped"
                    ),
                );
            }
            (LinkStep::AwaitBody, Reply::Ok) => {
                n.sent += 1;
                n.pop();
            }
            (LinkStep::AwaitNop, Reply::Ok) => {}
            (_, other) => {
                return Err(CloseReason::Link(format!(
                    "unexpected reply {:#04x} to a replication request",
                    u8::from(other)
                )));
            }
        }
        self.set_link_step(id, LinkStep::Idle);
        self.link_send_next(id);
        Ok(())
    }
}
