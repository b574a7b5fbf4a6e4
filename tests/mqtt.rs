//! MQTT 3.1.1 against the real server (in-process, 127.0.0.1:0, read
//! timeouts everywhere): connects (anonymous, user, wrong password), one
//! topic space with PSRT clients under each protocol's rules, QoS 1 and 2,
//! ACL denial, the last will, keep-alive, persistent sessions and bad input.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Raw, Session, Setup, TestServer, http_get};
use psrt_protocol::Decoded;
use psrt_protocol::mqtt::{
    Connect, Filters, Packet, Protocol, Publish, QoS, Will, decode_packet, encode_packet,
};

/// A blocking MQTT client on the codec, for tests.
struct Mq {
    raw: Raw,
    /// The RETAIN flag of the last PUBLISH received.
    last_retain: bool,
}

fn bytes(p: &Packet<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    encode_packet(p, &mut v);
    v
}

/// A received packet, owned: kind and id or code, topic, payload, QoS.
#[derive(Debug, PartialEq, Eq)]
enum In {
    ConnAck(bool, u8),
    Publish(String, Vec<u8>, u8, Option<u16>),
    SubAck(Vec<u8>),
    Ack(&'static str, u16),
    PingResp,
}

impl Mq {
    fn connect_with(
        addr: SocketAddr,
        client_id: &str,
        clean: bool,
        keep_alive: u16,
        user: Option<(&str, &str)>,
        will: Option<Will<'_>>,
    ) -> (Self, In) {
        let mut raw = Raw::connect(addr);
        raw.send(&bytes(&Packet::Connect(Connect {
            protocol: Protocol::V311,
            clean_session: clean,
            keep_alive,
            client_id,
            will,
            username: user.map(|u| u.0),
            password: user.map(|u| u.1.as_bytes()),
        })));
        let mut c = Self {
            raw,
            last_retain: false,
        };
        let ack = c.recv();
        (c, ack)
    }

    fn anonymous(addr: SocketAddr, client_id: &str) -> Self {
        let (c, ack) = Self::connect_with(addr, client_id, true, 60, None, None);
        assert_eq!(ack, In::ConnAck(false, 0));
        c
    }

    fn recv(&mut self) -> In {
        loop {
            match decode_packet(&self.raw.rx, 1 << 24).expect("valid MQTT from the server") {
                Decoded::Frame { frame, len } => {
                    let got = match frame {
                        Packet::ConnAck(a) => In::ConnAck(a.session_present, a.code as u8),
                        Packet::Publish(p) => {
                            self.last_retain = p.retain;
                            In::Publish(p.topic.into(), p.payload.into(), p.qos as u8, p.packet_id)
                        }
                        Packet::SubAck { codes, .. } => In::SubAck(codes.into()),
                        Packet::PubAck(id) => In::Ack("puback", id),
                        Packet::PubRec(id) => In::Ack("pubrec", id),
                        Packet::PubComp(id) => In::Ack("pubcomp", id),
                        Packet::UnsubAck(id) => In::Ack("unsuback", id),
                        Packet::PingResp => In::PingResp,
                        other => panic!("unexpected {other:?}"),
                    };
                    self.raw.rx.drain(..len);
                    return got;
                }
                Decoded::Incomplete { need } => {
                    // Read until `need` more bytes are buffered, keeping order.
                    let have = self.raw.rx.len();
                    let mut front = self.raw.read_exact(have + need);
                    front.append(&mut self.raw.rx);
                    self.raw.rx = front;
                }
            }
        }
    }

    fn subscribe(&mut self, list: &[(&str, QoS)]) -> Vec<u8> {
        let mut raw = Vec::new();
        Filters::encode_subscribe(list, &mut raw);
        self.raw.send(&bytes(&Packet::Subscribe {
            packet_id: 1,
            filters: Filters::new(&raw, true).unwrap(),
        }));
        match self.recv() {
            In::SubAck(codes) => codes,
            other => panic!("{other:?}"),
        }
    }

    fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, id: u16) {
        self.publish_with(topic, payload, qos, id, false);
    }

    fn publish_with(&mut self, topic: &str, payload: &[u8], qos: QoS, id: u16, retain: bool) {
        self.raw.send(&bytes(&Packet::Publish(Publish {
            dup: false,
            qos,
            retain,
            topic,
            packet_id: (qos != QoS::AtMostOnce).then_some(id),
            payload,
        })));
    }

    fn expect(&mut self, topic: &str, payload: &[u8]) -> (u8, Option<u16>) {
        match self.recv() {
            In::Publish(t, p, qos, id) if t == topic && p == payload => (qos, id),
            other => panic!("expected {topic} {payload:?}, got {other:?}"),
        }
    }
}

impl Mq {
    /// PINGREQ, and PINGRESP as the next packet: nothing else was queued
    /// before it.
    fn nothing_more(&mut self) {
        self.raw.send(&bytes(&Packet::PingReq));
        assert_eq!(self.recv(), In::PingResp);
    }

    /// A PUBLISH with RETAIN=1 on `topic`, at QoS 0, `payload` as given.
    fn expect_retained(&mut self, topic: &str, payload: &[u8], qos: u8) {
        assert_eq!(self.expect(topic, payload).0, qos, "{topic}");
        assert!(self.last_retain, "{topic}: RETAIN=1");
    }
}

fn mqtt_addr(srv: &TestServer) -> SocketAddr {
    srv.mqtt_addr.expect("the test server has an MQTT listener")
}

#[test]
fn mqtt_and_psrt_share_one_topic_space_with_their_own_rules() {
    let acl = "_:\n  sub: '#'\n  pub: '#'\n  admin: true\n";
    let srv = TestServer::with(Setup::default().acl(acl));
    let addr = mqtt_addr(&srv);
    let mut m = Mq::anonymous(addr, "m");
    assert_eq!(m.subscribe(&[("a/#", QoS::AtLeastOnce)]), [1]);
    let mut p = Session::anonymous(srv.addr);
    p.sub(&["a/#"]);
    // PSRT publishes `a`: the MQTT `a/#` takes it (QoS 1: PSRT publishes are
    // acknowledged), the PSRT `a/#` does not.
    assert_eq!(p.ctl.publish("a", b"parent"), 0x01);
    let (qos, id) = m.expect("a", b"parent");
    assert_eq!((qos, id), (1, Some(1)));
    m.raw.send(&bytes(&Packet::PubAck(1)));
    // MQTT publishes a/b at QoS 1: PUBACK, and both subscribers get it.
    m.publish("a/b", b"from mqtt", QoS::AtLeastOnce, 10);
    let mut got = [m.recv(), m.recv()];
    got.sort_by_key(|i| format!("{i:?}"));
    assert_eq!(got[0], In::Ack("puback", 10));
    assert!(matches!(&got[1], In::Publish(t, _, 1, _) if t == "a/b"));
    p.expect("a/b", b"from mqtt");
    // No PSRT normalisation of MQTT topics: `a//b` reaches neither `a/b`.
    m.publish("a//b", b"raw", QoS::AtMostOnce, 0);
    assert_eq!(m.expect("a//b", b"raw").0, 0);
    p.expect("a//b", b"raw");
    // /status and /metrics count MQTT clients and messages by protocol.
    let stats_addr = srv.stats_addr.expect("stats endpoint");
    let (code, body) = http_get(stats_addr, "/status");
    assert_eq!(code, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["psrtd"]["mqtt"]["clients"], 1);
    assert_eq!(json["psrtd"]["counters"]["mqtt_pub_messages"], 2);
    assert_eq!(json["counters"]["c_pub_messages"], 1);
    let (_, metrics) = http_get(stats_addr, "/metrics");
    assert!(metrics.contains("psrtd_mqtt_clients 1"), "{metrics}");
    assert!(
        metrics.contains("psrtd_mqtt_pub_messages_total 2"),
        "{metrics}"
    );
    let stats = srv.stop();
    assert_eq!(stats.mqtt_pub_messages, 2);
    assert_eq!(stats.c_pub_messages, 1);
    assert!(stats.mqtt_connects >= 1);
}

#[test]
fn user_logins_wrong_password_and_acl_denial() {
    let acl = "_:\n  sub: 'pub/#'\n  pub: 'pub/#'\nu:\n  sub: ['u/#', 'pub/#']\n  pub: 'u/#'\n";
    let srv = TestServer::with(Setup::default().acl(acl).user("u", "right"));
    let addr = mqtt_addr(&srv);
    let (mut u, ack) = Mq::connect_with(addr, "u1", true, 60, Some(("u", "right")), None);
    assert_eq!(ack, In::ConnAck(false, 0));
    let (mut bad, ack) = Mq::connect_with(addr, "u2", true, 60, Some(("u", "wrong")), None);
    assert_eq!(ack, In::ConnAck(false, 5), "not authorized");
    bad.raw.expect_closed();
    assert_eq!(
        u.subscribe(&[("u/#", QoS::AtMostOnce), ("secret/#", QoS::AtMostOnce)]),
        [0, 0x80]
    );
    // A denied publish is acknowledged and dropped; the session goes on.
    u.publish("pub/x", b"denied", QoS::AtLeastOnce, 3);
    assert_eq!(u.recv(), In::Ack("puback", 3));
    u.publish("u/x", b"ok", QoS::AtMostOnce, 0);
    u.expect("u/x", b"ok");
    let stats = srv.stop();
    assert_eq!(stats.login_failures, 1);
    assert!(stats.access_denied >= 2);
}

#[test]
fn qos2_is_delivered_once_and_ping_is_answered() {
    let srv = TestServer::start();
    let addr = mqtt_addr(&srv);
    let mut sub = Mq::anonymous(addr, "sub");
    sub.subscribe(&[("q2", QoS::ExactlyOnce)]);
    let mut p = Mq::anonymous(addr, "p");
    p.publish("q2", b"exactly", QoS::ExactlyOnce, 42);
    assert_eq!(p.recv(), In::Ack("pubrec", 42));
    // A retransmission before PUBREL is not delivered again.
    p.publish("q2", b"exactly", QoS::ExactlyOnce, 42);
    assert_eq!(p.recv(), In::Ack("pubrec", 42));
    p.raw.send(&bytes(&Packet::PubRel(42)));
    assert_eq!(p.recv(), In::Ack("pubcomp", 42));
    p.raw.send(&bytes(&Packet::PingReq));
    assert_eq!(p.recv(), In::PingResp);
    assert_eq!(sub.expect("q2", b"exactly"), (1, Some(1)), "granted QoS 1");
    sub.raw.send(&bytes(&Packet::PingReq));
    assert_eq!(sub.recv(), In::PingResp, "nothing else came first");
}

#[test]
fn last_will_on_a_dropped_socket_and_keepalive() {
    let srv = TestServer::start();
    let addr = mqtt_addr(&srv);
    let mut watcher = Mq::anonymous(addr, "watcher");
    watcher.subscribe(&[("status/+", QoS::AtMostOnce)]);
    let will = Will {
        topic: "status/dev",
        message: b"offline",
        qos: QoS::AtMostOnce,
        retain: false,
    };
    let (dev, _) = Mq::connect_with(addr, "dev", true, 60, None, Some(will));
    drop(dev);
    watcher.expect("status/dev", b"offline");
    // Keep-alive 1 s and silence: closed after 1.5 s, the will published.
    let (mut quiet, _) = Mq::connect_with(addr, "quiet", true, 1, None, Some(will));
    quiet.raw.expect_closed_within(Duration::from_secs(4));
    watcher.expect("status/dev", b"offline");
    let stats = srv.stop();
    assert_eq!(stats.mqtt_wills, 2);
    assert!(stats.timeouts >= 1);
}

#[test]
fn persistent_session_resumes_with_what_came_while_away() {
    let srv = TestServer::start();
    let addr = mqtt_addr(&srv);
    let (mut c, ack) = Mq::connect_with(addr, "keep", false, 60, None, None);
    assert_eq!(ack, In::ConnAck(false, 0));
    c.subscribe(&[("d/#", QoS::AtLeastOnce)]);
    c.raw.send(&bytes(&Packet::Disconnect));
    c.raw.expect_closed();
    let mut p = Session::anonymous(srv.addr);
    assert_eq!(p.ctl.publish("d/1", b"while away"), 0x01);
    let (mut back, ack) = Mq::connect_with(addr, "keep", false, 60, None, None);
    assert_eq!(ack, In::ConnAck(true, 0), "session present");
    back.expect("d/1", b"while away");
}

#[test]
fn bad_input_closes_only_its_connection() {
    let srv = TestServer::with(Setup::default().tweak(|c| {
        c.mqtt.as_mut().unwrap().max_packet_size = 1000;
    }));
    let addr = mqtt_addr(&srv);
    let mut good = Mq::anonymous(addr, "good");
    good.subscribe(&[("t", QoS::AtMostOnce)]);
    for junk in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0xEE, 0xAA, 0x00],
        &[0x10, 0xff, 0xff, 0xff, 0x7f],
        &[0xc0, 0x00],
    ] {
        let mut raw = Raw::connect(addr);
        raw.send(junk);
        raw.expect_closed();
    }
    // Over the packet size limit after CONNECT: closed before the body.
    let mut big = Mq::anonymous(addr, "big");
    big.raw.send(&[0x30, 0xe9, 0x07]);
    big.raw.expect_closed();
    good.publish("t", b"still here", QoS::AtMostOnce, 0);
    good.expect("t", b"still here");
    let stats = srv.stop();
    assert_eq!(stats.protocol_errors, 5);
}

/// `psrtd -t` checks the `mqtt` section: a valid one is counted in the
/// summary without binding its port; a bad key or value fails with file and
/// line.
#[test]
fn psrtd_t_checks_the_mqtt_section() {
    let dir = common::TempDir::new("t-mqtt");
    dir.write("acl.yml", "_:\n  pub: '#'\n  sub: '#'\n");
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let base = "proto:\n  bind: 127.0.0.1:0\nauth:\n  allow_anonymous: true\n  acl: acl.yml\n";
    let good = dir.write(
        "good.yml",
        &format!("{base}mqtt:\n  bind: 127.0.0.1:{port}\n  max_inflight: 16\n"),
    );
    let (code, out) = common::run_psrtd(
        &["-t", "-C", good.to_str().unwrap()],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("1 MQTT listener(s)"), "{out}");
    drop(held);
    for (name, section, needle) in [
        (
            "key.yml",
            "mqtt:\n  bind: 127.0.0.1:1883\n  retained: true\n",
            "key.yml:8: mqtt: unknown field `retained`",
        ),
        (
            "retain.yml",
            "mqtt:\n  bind: 127.0.0.1:1883\n  retain: true\n  retain_bytes: 0\n",
            "mqtt.retain_bytes must be at least 1",
        ),
        (
            "tls.yml",
            "mqtt:\n  bind_tls: 127.0.0.1:8883\n",
            "mqtt.bind_tls",
        ),
    ] {
        let bad = dir.write(name, &format!("{base}{section}"));
        let (code, out) = common::run_psrtd(
            &["-t", "-C", bad.to_str().unwrap()],
            Duration::from_secs(10),
        );
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains(needle), "{name}: {out}");
    }
}

fn retaining(bytes: usize) -> TestServer {
    let acl = "_:\n  sub: '#'\n  pub: '#'\n  admin: true\n";
    TestServer::with(Setup::default().acl(acl).tweak(move |c| {
        let m = c.mqtt.as_mut().expect("mqtt section");
        m.retain = true;
        m.retain_bytes = bytes;
    }))
}

#[test]
fn retained_messages_reach_later_subscriptions_with_retain_set() {
    let srv = retaining(1 << 20);
    let addr = mqtt_addr(&srv);
    let mut live = Mq::anonymous(addr, "live");
    assert_eq!(live.subscribe(&[("ret/#", QoS::AtMostOnce)]), [0]);
    let mut m = Mq::anonymous(addr, "pub");
    m.publish_with("ret/a", b"v1", QoS::AtLeastOnce, 1, true);
    assert_eq!(m.recv(), In::Ack("puback", 1));
    m.publish_with("ret/b", b"b", QoS::AtMostOnce, 0, true);
    m.nothing_more();
    // Current subscribers get RETAIN=0.
    live.expect("ret/a", b"v1");
    assert!(!live.last_retain);
    live.expect("ret/b", b"b");
    assert!(!live.last_retain);
    // PSRT publishes are never retained.
    let mut p = Session::anonymous(srv.addr);
    assert_eq!(p.ctl.publish("ret/c", b"psrt"), 0x01);
    live.expect("ret/c", b"psrt");
    let mut late = Mq::anonymous(addr, "late");
    assert_eq!(late.subscribe(&[("ret/#", QoS::AtLeastOnce)]), [1]);
    late.expect_retained("ret/a", b"v1", 1);
    late.raw.send(&bytes(&Packet::PubAck(1)));
    late.expect_retained("ret/b", b"b", 0);
    late.nothing_more();
    // Replaced, then deleted by an empty payload.
    m.publish_with("ret/a", b"v2", QoS::AtMostOnce, 0, true);
    m.nothing_more();
    let mut again = Mq::anonymous(addr, "again");
    assert_eq!(again.subscribe(&[("ret/a", QoS::AtLeastOnce)]), [1]);
    again.expect_retained("ret/a", b"v2", 0);
    again.nothing_more();
    m.publish_with("ret/a", b"", QoS::AtMostOnce, 0, true);
    m.nothing_more();
    let mut gone = Mq::anonymous(addr, "gone");
    assert_eq!(gone.subscribe(&[("ret/+", QoS::AtMostOnce)]), [0]);
    gone.expect_retained("ret/b", b"b", 0);
    gone.nothing_more();
    // Visible as gauges.
    let stats_addr = srv.stats_addr.expect("stats endpoint");
    let (_, body) = http_get(stats_addr, "/status");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["psrtd"]["mqtt"]["retained_messages"], 1);
    assert_eq!(json["psrtd"]["mqtt"]["retained_bytes"], 5 + 1 + 96);
    let (_, metrics) = http_get(stats_addr, "/metrics");
    assert!(
        metrics.contains("psrtd_mqtt_retained_messages 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("psrtd_mqtt_retained_bytes 102"),
        "{metrics}"
    );
    srv.stop();
}

#[test]
fn retain_off_delivers_normally_and_keeps_nothing() {
    let srv = TestServer::start();
    let addr = mqtt_addr(&srv);
    let mut live = Mq::anonymous(addr, "live");
    live.subscribe(&[("off/#", QoS::AtMostOnce)]);
    let mut m = Mq::anonymous(addr, "pub");
    m.publish_with("off/a", b"v", QoS::AtLeastOnce, 3, true);
    assert_eq!(m.recv(), In::Ack("puback", 3));
    live.expect("off/a", b"v");
    assert!(!live.last_retain);
    let mut late = Mq::anonymous(addr, "late");
    assert_eq!(late.subscribe(&[("off/#", QoS::AtMostOnce)]), [0]);
    late.nothing_more();
    srv.stop();
}

#[test]
fn the_retained_store_refuses_what_exceeds_retain_bytes() {
    // Room for one 10-byte message on a 3-byte topic (+ 96 per entry).
    let srv = retaining(3 + 10 + 96);
    let addr = mqtt_addr(&srv);
    let mut m = Mq::anonymous(addr, "pub");
    m.publish_with("b/1", &[b'1'; 10], QoS::AtMostOnce, 0, true);
    m.publish_with("b/2", &[b'2'; 10], QoS::AtMostOnce, 0, true);
    m.nothing_more();
    let mut late = Mq::anonymous(addr, "late");
    late.subscribe(&[("b/#", QoS::AtMostOnce)]);
    late.expect_retained("b/1", &[b'1'; 10], 0);
    late.nothing_more();
    let stats = srv.stop();
    assert_eq!(stats.mqtt_retain_refused, 1);
}
