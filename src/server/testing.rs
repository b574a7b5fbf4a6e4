//! A server's state without sockets, for the handlers' unit tests: the
//! core, the slab, detached connections, a clock the test moves, and
//! helpers that speak PSRT from the client side. Input goes through the same
//! `dispatch` the loop uses; output is read from the send queues.

use std::time::{Duration, Instant};

use psrt_protocol::Decoded;
use psrt_protocol::mqtt::{Filters, Packet, QoS, decode_packet, encode_packet};
use psrt_protocol::{
    CommMode, DataHello, Greeting, Login, Request, StreamKind, TOKEN_LEN, Token, encode_data_hello,
    encode_greeting, encode_login, encode_request, encode_topics,
};

use super::auth::worker::Worker;
use super::auth::{AclEntry, AuthDb};
use super::bridge::packets::on_connected;
use super::bridge::phase::{BridgeLink, BridgeStep};
use super::config::Config;
use super::conn::{ConnId, test_pair};
use super::core::{Conns, Core, Cx, Effect};
use super::dispatch;
use super::phase::{Conn, ListenerKind, Phase};
use super::psrt::state::{Phase as Psrt, Session};
use super::pubsub::outbox;
use super::pubsub::pipeline::{self, Message, Origin};

/// The state of a server with the embedded default config (anonymous
/// pub/sub) unless built `with` another; its worker keeps jobs unanswered.
pub(crate) struct Harness {
    pub(crate) core: Core,
    pub(crate) conns: Conns,
    /// The clock's start.
    pub(crate) t0: Instant,
}

impl Harness {
    pub(crate) fn new() -> Self {
        let config = Config::embedded_default();
        let (auth, _) = AuthDb::load(&config.auth).expect("embedded auth");
        Self::with(config, auth)
    }

    pub(crate) fn with(config: Config, auth: AuthDb) -> Self {
        let t0 = Instant::now();
        Self {
            core: Core::new(config, auth, Worker::detached(), t0).expect("core"),
            conns: Conns::new(),
            t0,
        }
    }

    pub(crate) fn cx(&mut self) -> Cx<'_> {
        Cx {
            core: &mut self.core,
            conns: &mut self.conns,
        }
    }

    /// Adds a detached connection in `phase`, its deadline armed.
    pub(crate) fn add(&mut self, phase: Phase) -> ConnId {
        self.core.next_serial += 1;
        let (stream, peer) = test_pair();
        let conn = Conn::new(stream, peer, self.core.next_serial, phase, self.core.now);
        let id = self.conns.insert(conn);
        let conn = &mut self.conns[id];
        self.core.rearm(id, conn);
        id
    }

    /// A socket of bridge `key` that just connected (the loop's part:
    /// the bridge's connection, its retry time taken), CONNECT queued.
    pub(crate) fn connect_bridge(&mut self, key: u32) -> ConnId {
        let keepalive = self
            .core
            .bridges
            .get_mut(key)
            .expect("bridge")
            .config
            .keepalive;
        let id = self.add(Phase::Bridge(BridgeLink {
            bridge: key,
            keepalive,
            step: BridgeStep::Connecting,
        }));
        if let Some(b) = self.core.bridges.get_mut(key) {
            b.peer.conn = Some(id);
            b.peer.retry_at = None;
        }
        on_connected(&mut self.cx(), id);
        id
    }

    /// A local client's PUBLISH (QoS 1, every permission) through the one
    /// pipeline, its effects applied.
    pub(crate) fn publish_local(&mut self, topic: &str, payload: &[u8]) {
        let acl = AclEntry::full();
        let msg = Message::new(topic, payload, QoS::AtLeastOnce);
        pipeline::publish(&mut self.cx(), Origin::Client(&acl), msg).unwrap();
        dispatch::apply_effects(&mut self.cx());
    }

    /// A new connection on a PSRT listener, counted against its address
    /// until it logs in, binds its data socket or closes (as the loop does).
    pub(crate) fn accept(&mut self) -> ConnId {
        let id = self.add(ListenerKind::Psrt.first_phase());
        self.core.handshake_started(&mut self.conns[id]);
        id
    }

    /// Moves the clock.
    pub(crate) fn advance(&mut self, by: Duration) {
        let now = self.core.now + by;
        self.core.set_now(now);
    }

    /// Bytes arrive on a connection and are handled as the loop would.
    pub(crate) fn feed(&mut self, id: ConnId, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let conn = &mut self.conns[id];
            if matches!(conn.phase, Phase::Closing(_)) {
                return;
            }
            let n = match conn.rx.read_from(&mut rest, &mut self.core.rx_pool) {
                Ok(got) => got.n,
                Err(e) => {
                    let mut cx = self.cx();
                    dispatch::close(
                        &mut cx,
                        id,
                        crate::server::conn::CloseReason::read_error(&e),
                    );
                    return dispatch::apply_effects(&mut cx);
                }
            };
            assert!(n > 0, "the input buffer took nothing");
            let mut cx = self.cx();
            dispatch::on_bytes_read(&mut cx, id);
            dispatch::process_input(&mut cx, id);
        }
    }

    /// What is queued for a connection, written out through the send
    /// queue's write path (and counted as the loop's flush counts it).
    pub(crate) fn take_output(&mut self, id: ConnId) -> Vec<u8> {
        let now_us = self.core.tx_pool.stamp_us;
        outbox::before_write(&mut self.cx(), id, now_us);
        let conn = &mut self.conns[id];
        let messages = conn.tx.messages();
        let mut out = Vec::new();
        conn.tx
            .write_to(&mut out, &mut self.core.tx_pool)
            .expect("a Vec takes everything");
        let mqtt = matches!(self.conns[id].phase, Phase::Mqtt(_));
        outbox::count_written(&mut self.core.stats, &mut self.core.tx_pool, mqtt);
        let done = messages - self.conns[id].tx.messages();
        outbox::credit(&mut self.cx(), id, done as u64, 0);
        out
    }

    /// Effects still queued (dispatch applies them, so normally none).
    pub(crate) fn effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.core.effects)
    }

    /// The phase of a connection.
    pub(crate) fn phase(&self, id: ConnId) -> &Phase {
        &self.conns[id].phase
    }

    /// The session of a logged-in control connection.
    pub(crate) fn session(&self, id: ConnId) -> &Session {
        match &self.conns[id].phase {
            Phase::Psrt(Psrt::Control(s)) => s,
            other => panic!("not a session: {}", other.name()),
        }
    }

    /// A plain control connection logged in as `login`; returns it and its
    /// token (the greeting reply and token are taken from its output).
    pub(crate) fn login(&mut self, login: &str, password: &str) -> (ConnId, Token) {
        let id = self.accept();
        self.feed(id, &greeting(StreamKind::Control));
        self.feed(id, &login_frame(login, password));
        let out = self.take_output(id);
        assert_eq!(
            out.len(),
            4 + TOKEN_LEN,
            "greeting reply and token: {out:?}"
        );
        let token = Token(out[4..].try_into().expect("token"));
        (id, token)
    }

    /// A logged-in anonymous client with a bound data socket: (control,
    /// data).
    pub(crate) fn client(&mut self) -> (ConnId, ConnId) {
        let (control, token) = self.login("", "");
        let data = self.accept();
        self.feed(data, &greeting(StreamKind::Data));
        self.feed(data, &data_hello(token, 10));
        let out = self.take_output(data);
        assert_eq!(out.last(), Some(&0x01), "data hello answered OK");
        (control, data)
    }
}

/// A plain greeting for `kind`.
pub(crate) fn greeting(kind: StreamKind) -> Vec<u8> {
    let mut v = Vec::new();
    encode_greeting(
        Greeting {
            kind,
            comm: CommMode::Plain,
        },
        &mut v,
    );
    v
}

/// A login frame.
pub(crate) fn login_frame(login: &str, password: &str) -> Vec<u8> {
    let mut v = Vec::new();
    encode_login(&Login { login, password }, &mut v);
    v
}

/// A data hello.
pub(crate) fn data_hello(token: Token, timeout_sec: u8) -> Vec<u8> {
    let mut v = Vec::new();
    encode_data_hello(&DataHello { token, timeout_sec }, &mut v);
    v
}

/// A control request.
pub(crate) fn request(req: &Request<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    encode_request(req, &mut v);
    v
}

/// A PUBLISH.
pub(crate) fn publish(topic: &str, message: &[u8]) -> Vec<u8> {
    request(&Request::Publish {
        priority: 0x7f,
        topic,
        message,
    })
}

/// A SUBSCRIBE (`true`) or UNSUBSCRIBE of several masks.
pub(crate) fn topics(subscribe: bool, masks: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    encode_topics(subscribe, masks.iter().copied(), &mut v);
    v
}

/// An MQTT packet's bytes.
pub(crate) fn encode_mqtt(p: &Packet<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    encode_packet(p, &mut v);
    v
}

/// An MQTT SUBSCRIBE of `list` with packet id `id`.
pub(crate) fn mqtt_subscribe(id: u16, list: &[(&str, QoS)]) -> Vec<u8> {
    let mut raw = Vec::new();
    Filters::encode_subscribe(list, &mut raw);
    encode_mqtt(&Packet::Subscribe {
        packet_id: id,
        filters: Filters::new(&raw, true).unwrap(),
    })
}

/// Every MQTT packet a server wrote in `bytes`: `connack SP CODE`,
/// `publish QOS ID TOPIC PAYLOAD[ retain][ dup]`, `suback CODES`, or its
/// Debug.
pub(crate) fn mqtt_packets(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Ok(Decoded::Frame { frame, len }) = decode_packet(rest, u32::MAX >> 4) else {
            panic!("not MQTT: {rest:02x?}");
        };
        out.push(match frame {
            Packet::ConnAck(a) => {
                format!("connack {} {}", u8::from(a.session_present), a.code as u8)
            }
            Packet::Publish(p) => format!(
                "publish {} {:?} {} {}{}{}",
                p.qos as u8,
                p.packet_id,
                p.topic,
                String::from_utf8_lossy(p.payload),
                if p.retain { " retain" } else { "" },
                if p.dup { " dup" } else { "" }
            ),
            Packet::SubAck { codes, .. } => format!("suback {codes:?}"),
            other => format!("{other:?}"),
        });
        rest = &rest[len..];
    }
    out
}
