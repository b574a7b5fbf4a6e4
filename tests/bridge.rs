//! Bridges to a real MQTT broker: Debian's mosquitto, started and stopped
//! by each test on an ephemeral port in a temp dir; psrtd in-process with
//! a bridge to it. Out (PSRT publisher → broker subscriber), in (broker
//! publisher → PSRT subscriber), overlapping `in` and `out` without a
//! local duplicate, 1000 messages published while the broker is stopped
//! arriving in order after it restarts, the queue bound (oldest dropped,
//! counted), and a bad broker (a fake one) making the bridge reconnect.
//!
//! Without mosquitto the tests that need it say so and pass, unless `CI`
//! is set (then a missing broker is a failure: `tests/run.sh` installs it).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Session, Setup, TempDir, TestServer, http_get};
use psrt::server::Config;
use psrt::server::config::BridgeConfig;
use psrt_protocol::Decoded;
use psrt_protocol::mqtt::{
    Connect, Packet, Protocol, Publish, QoS, decode_from_server, encode_ack, encode_packet,
    encode_subscribe, kind,
};

const WAIT: Duration = Duration::from_secs(10);

/// The mosquitto binary, or `None` (with a note) outside CI.
fn mosquitto_bin() -> Option<PathBuf> {
    let found = [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "mosquitto is not installed (Debian: apt-get install mosquitto); CI must have it"
        );
        eprintln!("SKIPPED: mosquitto is not installed (apt-get install mosquitto)");
    }
    found
}

/// A free TCP port on 127.0.0.1 (bound and released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A mosquitto of our own: its port, config and persistence in a temp dir.
struct Broker {
    bin: PathBuf,
    port: u16,
    dir: TempDir,
    /// Lines after the first listener's (its TLS settings, more listeners).
    extra: String,
    child: Option<Child>,
}

impl Broker {
    fn start(bin: PathBuf) -> Self {
        Self::start_with(bin, free_port(), TempDir::new("mosquitto"), String::new())
    }

    fn start_with(bin: PathBuf, port: u16, dir: TempDir, extra: String) -> Self {
        let mut b = Self {
            bin,
            port,
            dir,
            extra,
            child: None,
        };
        b.restart();
        b
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts it (again, same port and persistence file) and waits until it
    /// takes connections.
    fn restart(&mut self) {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let conf = format!(
            "allow_anonymous true\npersistence true\npersistence_location {}/\nautosave_interval 0\nmax_queued_messages 100000\n{}listener {} 127.0.0.1\n{}",
            self.dir.0.display(),
            if root { "user root\n" } else { "" },
            self.port,
            self.extra,
        );
        let conf = self.dir.write("mosquitto.conf", &conf);
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        // Every listener of the config takes connections.
        let ports: Vec<u16> = std::iter::once(self.port)
            .chain(
                self.extra
                    .lines()
                    .filter_map(|l| l.strip_prefix("listener ")?.split(' ').next()?.parse().ok()),
            )
            .collect();
        let deadline = Instant::now() + WAIT;
        for port in ports {
            while TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err() {
                assert!(Instant::now() < deadline, "mosquitto did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGTERM (it saves its persistence file) and wait.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let deadline = Instant::now() + WAIT;
            while c.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "mosquitto did not stop");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A blocking MQTT client on the codec (the broker's side of the tests).
struct Mq {
    s: TcpStream,
    rx: Vec<u8>,
    next_id: u16,
}

fn encoded(p: &Packet<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    encode_packet(p, &mut v);
    v
}

impl Mq {
    fn connect(addr: SocketAddr, client_id: &str, clean: bool) -> Self {
        let s = TcpStream::connect(addr).expect("connect to the broker");
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut c = Self {
            s,
            rx: Vec::new(),
            next_id: 1,
        };
        c.send(&encoded(&Packet::Connect(Connect {
            protocol: Protocol::V311,
            clean_session: clean,
            keep_alive: 60,
            client_id,
            will: None,
            username: None,
            password: None,
        })));
        match c.recv().expect("CONNACK") {
            (kind::CONNACK, ..) => {}
            other => panic!("{other:?}"),
        }
        c
    }

    fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).unwrap();
    }

    /// The next packet: (kind, topic, payload); PUBLISH QoS 1 is acked.
    /// `None` if nothing came within the read timeout.
    fn recv(&mut self) -> Option<(u8, String, Vec<u8>)> {
        loop {
            match decode_from_server(&self.rx, 1 << 24).expect("valid MQTT") {
                Decoded::Frame { frame, len } => {
                    let got = match frame {
                        Packet::Publish(p) => {
                            if let Some(id) = p.packet_id {
                                let mut ack = Vec::new();
                                encode_ack(kind::PUBACK, id, &mut ack);
                                self.s.write_all(&ack).unwrap();
                            }
                            (kind::PUBLISH, p.topic.to_string(), p.payload.to_vec())
                        }
                        Packet::ConnAck(_) => (kind::CONNACK, String::new(), vec![]),
                        Packet::SubAck { codes, .. } => {
                            (kind::SUBACK, String::new(), codes.to_vec())
                        }
                        Packet::PubAck(_) => (kind::PUBACK, String::new(), vec![]),
                        other => panic!("unexpected {other:?}"),
                    };
                    self.rx.drain(..len);
                    return Some(got);
                }
                Decoded::Incomplete { .. } => {
                    let mut buf = [0u8; 65536];
                    match self.s.read(&mut buf) {
                        Ok(0) => panic!("the broker closed"),
                        Ok(n) => self.rx.extend_from_slice(&buf[..n]),
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                        {
                            return None;
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }
    }

    fn subscribe(&mut self, filter: &str, qos: QoS) {
        let mut v = Vec::new();
        encode_subscribe(self.next_id, [filter], qos, &mut v);
        self.next_id += 1;
        self.send(&v);
        match self.recv() {
            Some((kind::SUBACK, _, codes)) => assert_eq!(codes, [qos as u8]),
            other => panic!("{other:?}"),
        }
    }

    fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS) {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&encoded(&Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic,
            packet_id: (qos != QoS::AtMostOnce).then_some(id),
            payload,
        })));
        if qos == QoS::AtLeastOnce {
            assert!(matches!(self.recv(), Some((kind::PUBACK, ..))));
        }
    }

    /// The next PUBLISH's topic and payload.
    fn expect_publish(&mut self) -> (String, Vec<u8>) {
        match self.recv() {
            Some((kind::PUBLISH, t, p)) => (t, p),
            other => panic!("expected a PUBLISH, got {other:?}"),
        }
    }

    /// Nothing arrives for `quiet`.
    fn expect_silence(&mut self, quiet: Duration) {
        self.s.set_read_timeout(Some(quiet)).unwrap();
        let got = self.recv();
        self.s.set_read_timeout(Some(WAIT)).unwrap();
        assert!(got.is_none(), "unexpected {got:?}");
    }
}

/// The `bridges:` list of a config text, validated as `psrtd` does.
fn bridges(yaml: &str) -> Vec<BridgeConfig> {
    let text = format!("auth:\n  acl: acl.yml\nbridges:\n{yaml}");
    Config::parse(&text, std::path::Path::new("/tmp/config.yml"))
        .expect("valid bridges")
        .bridges
}

fn server(yaml: &str) -> TestServer {
    let list = bridges(yaml);
    TestServer::with(
        Setup::default()
            .acl("_:\n  sub: '#'\n  pub: '#'\n  admin: true\n")
            .tweak(move |c| c.bridges = list),
    )
}

fn status(srv: &TestServer) -> serde_json::Value {
    let (code, body) = http_get(srv.stats_addr.unwrap(), "/status");
    assert_eq!(code, 200);
    serde_json::from_str(&body).unwrap()
}

/// Waits until `/status` says bridge `name` is in `state`.
fn wait_state(srv: &TestServer, name: &str, state: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let s = status(srv);
        if s["bridges"][name]["state"] == state {
            return s["bridges"][name].clone();
        }
        assert!(
            Instant::now() < deadline,
            "bridge {name} not {state}: {}",
            s["bridges"]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `/status` bridge `name`'s `key` is `want`.
fn wait_figure(srv: &TestServer, name: &str, key: &str, want: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let b = status(srv)["bridges"][name].clone();
        if b[key] == want {
            return b;
        }
        assert!(Instant::now() < deadline, "{key} never {want}: {b}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `/status` bridge `name`'s `key` is `want` (any JSON value).
fn wait_figure_is(srv: &TestServer, name: &str, key: &str, want: impl Into<serde_json::Value>) {
    let want = want.into();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let b = status(srv)["bridges"][name].clone();
        if b[key] == want {
            return;
        }
        assert!(Instant::now() < deadline, "{key} never {want}: {b}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn bridge_yaml(port: u16, extra: &str) -> String {
    format!("  - name: cloud\n    url: mqtt://127.0.0.1:{port}\n    keepalive: 5\n{extra}")
}

#[test]
fn out_messages_reach_the_broker_in_order() {
    let Some(bin) = mosquitto_bin() else { return };
    let broker = Broker::start(bin);
    let mut sub = Mq::connect(broker.addr(), "t-out-sub", true);
    sub.subscribe("plant/#", QoS::AtLeastOnce);
    let srv = server(&bridge_yaml(broker.port, "    out: ['plant/#']\n"));
    wait_state(&srv, "cloud", "online");
    let mut publisher = Session::anonymous(srv.addr);
    assert_eq!(publisher.ctl.publish("other/x", b"not bridged"), 0x01);
    for i in 0..50 {
        assert_eq!(
            publisher
                .ctl
                .publish(&format!("plant/{}", i % 3), i.to_string().as_bytes()),
            0x01
        );
    }
    // MQTT's `plant/#` covers `plant` itself.
    assert_eq!(publisher.ctl.publish("plant", b"parent"), 0x01);
    for i in 0..50 {
        let got = sub.expect_publish();
        assert_eq!(
            got,
            (format!("plant/{}", i % 3), i.to_string().into_bytes())
        );
    }
    assert_eq!(
        sub.expect_publish(),
        ("plant".to_string(), b"parent".to_vec())
    );
    sub.expect_silence(Duration::from_millis(300));
    let b = wait_figure(&srv, "cloud", "sent", 51);
    assert_eq!(
        (b["queued_messages"].as_u64(), b["dropped"].as_u64()),
        (Some(0), Some(0))
    );
    let (_, metrics) = http_get(srv.stats_addr.unwrap(), "/metrics");
    assert!(
        metrics.contains("psrtd_bridge_sent_total{bridge=\"cloud\"} 51"),
        "{metrics}"
    );
    assert!(metrics.contains("psrtd_bridge_up{bridge=\"cloud\"} 1"));
}

#[test]
fn in_messages_are_published_locally() {
    let Some(bin) = mosquitto_bin() else { return };
    let broker = Broker::start(bin);
    let srv = server(&bridge_yaml(
        broker.port,
        "    in: ['cmd/#']\n    out: ['plant/#']\n",
    ));
    let mut local = Session::anonymous(srv.addr);
    local.sub(&["#"]);
    // Online, and the broker answered the SUBSCRIBE of `in`.
    wait_figure_is(&srv, "cloud", "subscribed", true);
    let mut remote = Mq::connect(broker.addr(), "t-in-pub", true);
    remote.publish("cmd/valve", b"open", QoS::AtLeastOnce);
    remote.publish("cmd/pump/1", b"stop", QoS::AtMostOnce);
    remote.publish("elsewhere", b"not subscribed", QoS::AtLeastOnce);
    local.expect("cmd/valve", b"open");
    local.expect("cmd/pump/1", b"stop");
    local.data.expect_silence(Duration::from_millis(300));
    let b = wait_figure(&srv, "cloud", "received", 2);
    assert_eq!(b["sent"], 0, "nothing matched out: {b}");
}

#[test]
fn overlapping_in_and_out_deliver_once() {
    let Some(bin) = mosquitto_bin() else { return };
    let broker = Broker::start(bin);
    let mut watcher = Mq::connect(broker.addr(), "t-overlap-watch", true);
    watcher.subscribe("sensors/#", QoS::AtLeastOnce);
    let srv = server(&bridge_yaml(
        broker.port,
        "    in: ['sensors/#']\n    out: ['sensors/#']\n",
    ));
    let mut local = Session::anonymous(srv.addr);
    local.sub(&["sensors/#"]);
    wait_figure_is(&srv, "cloud", "subscribed", true);
    let mut publisher = Session::anonymous(srv.addr);
    for i in 0..20 {
        assert_eq!(
            publisher
                .ctl
                .publish("sensors/t", format!("{i}").as_bytes()),
            0x01
        );
    }
    for i in 0..20 {
        local.expect("sensors/t", format!("{i}").as_bytes());
        assert_eq!(
            watcher.expect_publish(),
            ("sensors/t".into(), format!("{i}").into_bytes())
        );
    }
    // The broker sent all 20 back; none is delivered a second time.
    let b = wait_figure(&srv, "cloud", "echoes", 20);
    assert_eq!(b["received"], 0, "{b}");
    local.data.expect_silence(Duration::from_millis(300));
    // A message from another broker client is delivered locally once and
    // not sent back to the broker (it came from this bridge).
    let mut remote = Mq::connect(broker.addr(), "t-overlap-pub", true);
    remote.publish("sensors/h", b"55", QoS::AtLeastOnce);
    local.expect("sensors/h", b"55");
    assert_eq!(
        watcher.expect_publish(),
        ("sensors/h".into(), b"55".to_vec())
    );
    watcher.expect_silence(Duration::from_millis(300));
    local.data.expect_silence(Duration::from_millis(100));
    let b = wait_figure(&srv, "cloud", "received", 1);
    assert_eq!(b["sent"], 20, "{b}");
}

/// A persistent QoS 1 session at the broker subscribed to `plant/#`: the
/// broker keeps what arrives while `client_id` is away (across a restart).
fn persistent_subscription(broker: &Broker, client_id: &str) {
    let mut sub = Mq::connect(broker.addr(), client_id, false);
    sub.subscribe("plant/#", QoS::AtLeastOnce);
}

/// Publishes `plant/seq` with the payloads `0` to `n - 1` through psrtd.
fn publish_sequence(addr: SocketAddr, n: u32) {
    let mut publisher = Session::anonymous(addr);
    for i in 0..n {
        assert_eq!(
            publisher
                .ctl
                .publish("plant/seq", format!("{i}").as_bytes()),
            0x01
        );
    }
}

/// The persistent session `client_id` gets `plant/seq` `0` to `n - 1` in
/// order, and then nothing.
fn expect_sequence(broker: &Broker, client_id: &str, n: u32) {
    let mut sub = Mq::connect(broker.addr(), client_id, false);
    for i in 0..n {
        assert_eq!(
            sub.expect_publish(),
            ("plant/seq".into(), format!("{i}").into_bytes()),
            "message {i}"
        );
    }
    sub.expect_silence(Duration::from_millis(300));
}

#[test]
fn messages_published_while_the_broker_is_down_arrive_in_order() {
    let Some(bin) = mosquitto_bin() else { return };
    let mut broker = Broker::start(bin);
    persistent_subscription(&broker, "t-restart-sub");
    let srv = server(&bridge_yaml(broker.port, "    out: ['plant/#']\n"));
    wait_state(&srv, "cloud", "online");
    broker.stop();
    wait_state(&srv, "cloud", "offline");
    publish_sequence(srv.addr, 1000);
    let b = status(&srv)["bridges"]["cloud"].clone();
    assert_eq!(b["queued_messages"], 1000, "{b}");
    broker.restart();
    let b = wait_figure(&srv, "cloud", "sent", 1000);
    assert_eq!(
        (b["dropped"].as_u64(), b["reconnects"].as_u64()),
        (Some(0), Some(1))
    );
    expect_sequence(&broker, "t-restart-sub", 1000);
}

#[test]
fn the_queue_bound_drops_the_oldest() {
    let Some(bin) = mosquitto_bin() else { return };
    // The broker's port: held by a listener that never accepts (so no
    // other test's broker takes it, and the bridge gets no CONNACK).
    let hold = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hold.local_addr().unwrap().port();
    let srv = server(&bridge_yaml(
        port,
        "    out: ['q/#']\n    queue_bytes: 2300\n",
    ));
    let mut publisher = Session::anonymous(srv.addr);
    // 3 + 97 = 100 bytes each, plus 128 per queued message: 2300 bytes
    // hold the newest 10.
    for i in 0..100 {
        let payload = format!("{i:097}");
        assert_eq!(publisher.ctl.publish("q/1", payload.as_bytes()), 0x01);
    }
    let b = status(&srv)["bridges"]["cloud"].clone();
    assert_eq!(
        (b["queued_messages"].as_u64(), b["dropped"].as_u64()),
        (Some(10), Some(90)),
        "{b}"
    );
    assert_eq!(b["queued_bytes"], 2280);
    let (_, metrics) = http_get(srv.stats_addr.unwrap(), "/metrics");
    assert!(
        metrics.contains("psrtd_bridge_dropped_total{bridge=\"cloud\"} 90"),
        "{metrics}"
    );
    assert!(metrics.contains("psrtd_bridge_dropped_total 90"));
    // The broker comes.
    drop(hold);
    let broker = Broker::start_with(bin, port, TempDir::new("mosquitto"), String::new());
    let mut sub = Mq::connect(broker.addr(), "t-bound-sub", true);
    sub.subscribe("q/#", QoS::AtLeastOnce);
    // The broker took the 10 kept messages. The bridge may have sent some
    // before this subscriber subscribed: what it got is a run of the
    // newest ones, in order.
    let b = wait_figure(&srv, "cloud", "sent", 10);
    assert_eq!(b["queued_messages"], 0);
    sub.s
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut got = Vec::new();
    while let Some((kind::PUBLISH, _, payload)) = sub.recv() {
        got.push(String::from_utf8(payload).unwrap().parse::<u32>().unwrap());
    }
    assert!(got.iter().all(|&i| (90..100).contains(&i)), "{got:?}");
    assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "{got:?}");
}

/// A fake broker: takes connections and answers CONNECT with `reply`.
fn fake_broker(reply: &'static [u8]) -> (u16, std::sync::mpsc::Receiver<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = vec![0u8; 1024];
            let n = s.read(&mut buf).unwrap_or(0);
            let _ = s.write_all(reply);
            // Whatever the bridge does next (it should close).
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            buf.truncate(n);
            if tx.send(buf).is_err() {
                return;
            }
        }
    });
    (port, rx)
}

#[test]
fn bad_broker_input_closes_the_link_and_it_reconnects() {
    // CONNACK, then a PUBLISH announcing 256 MiB: refused from its header.
    let (port, rx) = fake_broker(b"\x20\x02\x00\x00\x30\xff\xff\xff\x7f");
    let srv = server(&bridge_yaml(port, "    out: ['a/#']\n    in: ['b/#']\n"));
    let first = rx.recv_timeout(WAIT).expect("a CONNECT");
    assert_eq!(first[0], 0x10, "CONNECT first: {first:02x?}");
    // Closed at once (the fake saw EOF), then tried again after the backoff.
    let second = rx.recv_timeout(WAIT).expect("a second connection");
    assert_eq!(second[0], 0x10);
    let s = status(&srv);
    assert!(
        s["psrtd"]["counters"]["protocol_errors"].as_u64() >= Some(1),
        "{s}"
    );
}

#[test]
fn a_refused_connect_is_retried() {
    // CONNACK 5: not authorised.
    let (port, rx) = fake_broker(b"\x20\x02\x00\x05");
    let srv = server(&bridge_yaml(
        port,
        "    out: ['a/#']\n    user: u\n    password: p\n    client_id: t-refused\n",
    ));
    let first = rx.recv_timeout(WAIT).expect("a CONNECT");
    // The CONNECT carries the user name and password (flags c2).
    assert_eq!(first[9], 0xc2, "{first:02x?}");
    rx.recv_timeout(WAIT).expect("tried again");
    assert_ne!(status(&srv)["bridges"]["cloud"]["state"], "online");
}

#[test]
fn a_spool_keeps_messages_across_a_psrtd_restart() {
    let Some(bin) = mosquitto_bin() else { return };
    let mut broker = Broker::start(bin);
    persistent_subscription(&broker, "t-spool-sub");
    broker.stop();
    let spool = TempDir::new("spool");
    let yaml = bridge_yaml(
        broker.port,
        &format!(
            "    out: ['plant/#']\n    queue_bytes: 4KiB\n    spool: {}\n    spool_bytes: 4MiB\n",
            spool.0.display()
        ),
    );
    let srv = server(&yaml);
    publish_sequence(srv.addr, 1000);
    let b = status(&srv)["bridges"]["cloud"].clone();
    assert_eq!(b["queued_messages"], 1000, "{b}");
    assert!(b["spooled_bytes"].as_u64() > Some(1000 * 20), "{b}");
    // psrtd stops (its spool writer finishes) and starts again.
    srv.stop();
    let srv = server(&yaml);
    let b = status(&srv)["bridges"]["cloud"].clone();
    assert_eq!(b["queued_messages"], 1000, "replayed from the spool: {b}");
    broker.restart();
    let b = wait_figure(&srv, "cloud", "sent", 1000);
    assert_eq!(
        (b["dropped"].as_u64(), b["queued_messages"].as_u64()),
        (Some(0), Some(0))
    );
    expect_sequence(&broker, "t-spool-sub", 1000);
    // Acknowledged: a third start replays nothing.
    srv.stop();
    let srv = server(&yaml);
    assert_eq!(status(&srv)["bridges"]["cloud"]["queued_messages"], 0);
}

/// psrtd's stats address, from its listening line.
fn stats_of(p: &common::Proc) -> SocketAddr {
    let line = p.wait_log("stats:http://", WAIT).expect("a stats listener");
    let start = line.find("stats:http://").unwrap() + "stats:http://".len();
    let rest = &line[start..];
    rest[..rest.find('/').unwrap()].parse().unwrap()
}

fn status_at(stats: SocketAddr) -> serde_json::Value {
    let (code, body) = http_get(stats, "/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits until `check` holds for `/status`'s bridges.
fn wait_bridges(stats: SocketAddr, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let b = status_at(stats)["bridges"].clone();
        if check(&b) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {b}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_applies_bridge_changes_and_keeps_the_others() {
    let Some(bin) = mosquitto_bin() else { return };
    let broker = Broker::start(bin);
    let dir = TempDir::new("bridge-reload");
    dir.write("acl.yml", "_:\n  sub: '#'\n  pub: '#'\n  admin: true\n");
    let base = std::fs::read_to_string(common::write_config(
        &dir,
        "  bind_stats: 127.0.0.1:0\n",
        "",
    ))
    .unwrap();
    let port = broker.port;
    let entry = |name: &str, out: &str| {
        format!(
            "  - name: {name}\n    url: mqtt://127.0.0.1:{port}\n    keepalive: 5\n    out: ['{out}']\n"
        )
    };
    let first = format!(
        "{base}bridges:\n{}{}{}",
        entry("keep", "keep/#"),
        entry("gone", "gone/#"),
        entry("changed", "changed/#")
    );
    let config = dir.write("config.yml", &first);
    let p = common::Proc::spawn(&["-C", config.to_str().unwrap()]);
    let addr = p.addr.expect("psrtd started");
    let stats = stats_of(&p);
    let all_online =
        |b: &serde_json::Value, names: &[&str]| names.iter().all(|n| b[*n]["state"] == "online");
    wait_bridges(stats, "three online", |b| {
        all_online(b, &["keep", "gone", "changed"])
    });
    // `gone` removed, `changed` forwards other topics, `new` added; and a
    // spooled bridge cannot be added by a reload (it is skipped, logged).
    let second = format!(
        "{base}bridges:\n{}{}{}  - name: spooled\n    url: mqtt://127.0.0.1:{port}\n    out: [x]\n    spool: {}\n",
        entry("keep", "keep/#"),
        entry("changed", "changed2/#"),
        entry("new", "new/#"),
        dir.path("spool").display()
    );
    dir.write("config.yml", &second);
    p.signal(1);
    wait_bridges(stats, "reloaded", |b| {
        b.get("gone").is_none()
            && b.get("spooled").is_none()
            && all_online(b, &["keep", "changed", "new"])
            && b["changed"]["reconnects"] == 1
    });
    assert!(
        p.wait_log("bridge spooled: not added", WAIT).is_some(),
        "{}",
        p.log_text()
    );
    let b = status_at(stats)["bridges"].clone();
    assert_eq!(b["keep"]["reconnects"], 0, "kept its connection: {b}");
    // What each bridge forwards now.
    let mut sub = Mq::connect(broker.addr(), "t-reload-sub", true);
    sub.subscribe("#", QoS::AtLeastOnce);
    let mut publisher = Session::anonymous(addr);
    for t in ["keep/x", "gone/x", "changed/x", "changed2/x", "new/x"] {
        assert_eq!(publisher.ctl.publish(t, b"1"), 0x01);
    }
    let mut got: Vec<String> = (0..3).map(|_| sub.expect_publish().0).collect();
    got.sort();
    assert_eq!(got, ["changed2/x", "keep/x", "new/x"]);
    sub.expect_silence(Duration::from_millis(300));
    // A broken config keeps the bridges as they are.
    dir.write(
        "config.yml",
        &format!("{base}bridges:\n  - name: bad\n    url: tcp://x\n"),
    );
    p.signal(1);
    assert!(
        p.wait_log("bridges not reloaded", WAIT).is_some(),
        "{}",
        p.log_text()
    );
    let b = status_at(stats)["bridges"].clone();
    assert!(all_online(&b, &["keep", "changed", "new"]), "{b}");
}

#[test]
fn mqtts_bridges_verify_the_broker_certificate() {
    let Some(bin) = mosquitto_bin() else { return };
    let pki = common::pki::pki();
    let dir = TempDir::new("mosquitto-tls");
    let ca = dir.write("ca.pem", &pki.ca_pem);
    let cert = dir.write("cert.pem", &pki.cert_pem);
    let key = dir.write("key.pem", &pki.key_pem);
    // The TLS listener, and a plain one for the test's subscriber.
    let plain = free_port();
    let extra = format!(
        "cafile {}\ncertfile {}\nkeyfile {}\nlistener {plain} 127.0.0.1\n",
        ca.display(),
        cert.display(),
        key.display()
    );
    let broker = Broker::start_with(bin, free_port(), dir, extra);
    let mut sub = Mq::connect(SocketAddr::from(([127, 0, 0, 1], plain)), "t-tls-sub", true);
    sub.subscribe("plant/#", QoS::AtLeastOnce);
    let other = common::pki::pki();
    let wrong_ca = broker.dir.write("other-ca.pem", &other.ca_pem);
    let yaml = format!(
        "  - name: cloud\n    url: mqtts://127.0.0.1:{port}\n    tls_ca: {}\n    out: ['plant/#']\n  - name: wrong\n    url: mqtts://127.0.0.1:{port}\n    tls_ca: {}\n    out: ['plant/#']\n",
        ca.display(),
        wrong_ca.display(),
        port = broker.port
    );
    let srv = server(&yaml);
    wait_state(&srv, "cloud", "online");
    let mut publisher = Session::anonymous(srv.addr);
    assert_eq!(publisher.ctl.publish("plant/tls", b"sealed"), 0x01);
    assert_eq!(
        sub.expect_publish(),
        ("plant/tls".into(), b"sealed".to_vec())
    );
    // The bridge whose CA did not sign the broker's certificate never
    // comes online; its message waits.
    let b = status(&srv)["bridges"]["wrong"].clone();
    assert_ne!(b["state"], "online", "{b}");
    assert_eq!(b["queued_messages"], 1, "{b}");
    sub.expect_silence(Duration::from_millis(300));
}
