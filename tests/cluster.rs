//! Cluster replication between two real servers: messages published on one
//! node reach subscribers of the other through PUBLISH_REPL; nodes without
//! subscribers answer E0 and get no body; a node that is down at first gets
//! the queued messages once it is up; replicated messages are not sent back;
//! a pipelined burst arrives whole and in order; a node that restarts gets
//! what was published while it was down, once; three nodes in a full mesh;
//! a reference node (no extension) gets the two-phase exchange; the client
//! library fails over to the next address.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::relay::Relay;
use common::{Raw, Session, Setup, TestServer, http_get, wait_until};
use psrt::server::config::BindAddr;

/// ACL of a receiving node: `repl` may replicate; anonymous may pub/sub.
const NODE_ACL: &str =
    "_:\n  sub: '#'\n  pub: '#'\n  admin: true\nrepl:\n  replicator: true\nplain:\n  pub: '#'\n";

fn receiving_node() -> TestServer {
    TestServer::with(
        Setup::default()
            .acl(NODE_ACL)
            .user("repl", "s3cret")
            .user("plain", "pw"),
    )
}

fn node_entry(addr: std::net::SocketAddr, user: &str, password: &str) -> String {
    format!("- path: {addr}\n  user: {user}\n  password: {password:?}\n")
}

fn status(srv: &TestServer) -> String {
    http_get(srv.stats_addr.unwrap(), "/status").1
}

fn metric(srv: &TestServer, line_start: &str) -> Option<u64> {
    let (_, body) = http_get(srv.stats_addr.unwrap(), "/metrics");
    body.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Publishes on A arrive at B's subscribers; a topic B has no subscriber
/// for is answered E0 (counted, no body sent).
#[test]
fn publishes_reach_the_other_node() {
    let b = receiving_node();
    let a = TestServer::with(
        Setup::default()
            .acl(NODE_ACL)
            .cluster(&node_entry(b.addr, "repl", "s3cret")),
    );
    let mut sub = Session::anonymous(b.addr);
    sub.sub(&["x/#"]);
    assert!(
        wait_until(Duration::from_secs(5), || status(&a).contains("\"online\"")),
        "{}",
        status(&a)
    );
    let (mut publisher, _) = Raw::anonymous(a.addr);
    for i in 0..50u8 {
        assert_eq!(publisher.publish("x/1", &[i]), 0x01);
    }
    for i in 0..50u8 {
        assert_eq!(sub.recv(), ("x/1".to_string(), vec![i]), "in order");
    }
    assert_eq!(publisher.publish("nobody/listens", b"x"), 0x01);
    let node = format!("psrtd_cluster_not_required_total{{node=\"{}\"}}", b.addr);
    assert!(wait_until(Duration::from_secs(5), || metric(&a, &node) == Some(1)));
    let replicated = format!("psrtd_cluster_replicated_total{{node=\"{}\"}}", b.addr);
    assert_eq!(metric(&a, &replicated), Some(50));
    let json: serde_json::Value = serde_json::from_str(&status(&a)).unwrap();
    let node = &json["cluster_nodes"][b.addr.to_string()];
    assert_eq!(
        json["cluster"][b.addr.to_string()],
        "online",
        "the reference's shape"
    );
    assert_eq!(node["replicated"], 50, "{json}");
    assert_eq!(
        (node["queued_messages"].as_u64(), node["dropped"].as_u64()),
        (Some(0), Some(0))
    );
    let (_, page) = http_get(a.stats_addr.unwrap(), "/");
    assert!(page.contains("cluster_nodes"), "the stats page shows them");
}

/// A node that is down when the first messages are published gets them once
/// it is up (the queue holds them while the link retries).
#[test]
fn queued_messages_wait_for_a_node_that_is_down() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let b_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let a = TestServer::with(
        Setup::default()
            .acl(NODE_ACL)
            .cluster(&node_entry(b_addr, "repl", "s3cret")),
    );
    assert!(wait_until(Duration::from_secs(5), || status(&a)
        .contains("\"offline\"")));
    let (mut publisher, _) = Raw::anonymous(a.addr);
    assert_eq!(publisher.publish("late/t", b"queued"), 0x01);
    let b = TestServer::with(
        Setup::default()
            .acl(NODE_ACL)
            .user("repl", "s3cret")
            .tweak(move |c| c.bind = vec![BindAddr::Tcp(b_addr.to_string())]),
    );
    let mut sub = Session::anonymous(b.addr);
    sub.sub(&["late/#"]);
    assert_eq!(sub.recv(), ("late/t".to_string(), b"queued".to_vec()));
}

/// A login that is not a replicator on the node: the node answers FE, the
/// message is dropped and counted, and A keeps serving its own clients.
#[test]
fn non_replicator_login_is_refused_per_message() {
    let b = receiving_node();
    let a = TestServer::with(
        Setup::default()
            .acl(NODE_ACL)
            .cluster(&node_entry(b.addr, "plain", "pw")),
    );
    let mut local = Session::anonymous(a.addr);
    local.sub(&["t"]);
    let (mut publisher, _) = Raw::anonymous(a.addr);
    assert_eq!(publisher.publish("t", b"1"), 0x01);
    assert_eq!(local.recv().1, b"1");
    let dropped = format!("psrtd_cluster_dropped_total{{node=\"{}\"}}", b.addr);
    assert!(wait_until(Duration::from_secs(5), || metric(&a, &dropped) == Some(1)));
}

/// Two nodes replicating to each other (a full mesh): a message published
/// on A reaches B's subscriber once and is not sent back to A.
#[test]
fn replicated_messages_are_not_forwarded_again() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let b_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let a = TestServer::with(
        Setup::default()
            .acl(NODE_ACL)
            .user("repl", "s3cret")
            .cluster(&node_entry(b_addr, "repl", "s3cret")),
    );
    let b = TestServer::with(
        Setup::default()
            .acl(NODE_ACL)
            .user("repl", "s3cret")
            .cluster(&node_entry(a.addr, "repl", "s3cret"))
            .tweak(move |c| c.bind = vec![BindAddr::Tcp(b_addr.to_string())]),
    );
    let mut on_a = Session::anonymous(a.addr);
    on_a.sub(&["m/#"]);
    let mut on_b = Session::anonymous(b.addr);
    on_b.sub(&["m/#"]);
    assert!(wait_until(Duration::from_secs(8), || status(&a)
        .contains("\"online\"")
        && status(&b).contains("\"online\"")));
    let (mut publisher, _) = Raw::anonymous(a.addr);
    assert_eq!(publisher.publish("m/1", b"once"), 0x01);
    assert_eq!(on_a.recv().1, b"once");
    assert_eq!(on_b.recv().1, b"once");
    on_a.data.expect_silence(Duration::from_millis(500));
    on_b.data.expect_silence(Duration::from_millis(100));
}

/// A wrong password: the node refuses the login; the link stays down and is
/// retried, and A goes on serving its own clients.
#[test]
fn refused_login_keeps_the_node_offline() {
    let b = receiving_node();
    let a = TestServer::with(
        Setup::default()
            .acl(NODE_ACL)
            .cluster(&node_entry(b.addr, "repl", "wrong")),
    );
    let mut local = Session::anonymous(a.addr);
    local.sub(&["t"]);
    let (mut publisher, _) = Raw::anonymous(a.addr);
    assert_eq!(publisher.publish("t", b"x"), 0x01);
    assert_eq!(local.recv().1, b"x");
    std::thread::sleep(Duration::from_millis(1500));
    let s = status(&a);
    assert!(!s.contains("\"online\""), "{s}");
    let up = format!("psrtd_cluster_node_up{{node=\"{}\"}}", b.addr);
    assert_eq!(metric(&a, &up), Some(0));
}

/// A link over TLS (`tls: true`, `tls_ca`): the node's certificate is
/// checked against the CA and the name in `path`.
#[test]
fn replication_over_tls() {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cluster test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let dir = common::TempDir::new("cluster-tls");
    let files = psrt::server::config::TlsFiles {
        cert: dir.write("node.crt", &cert.pem()),
        key: dir.write("node.key", &key.serialize_pem()),
    };
    let ca_file = dir.write("ca.pem", &ca.pem());
    let b = TestServer::with(Setup::default().acl(NODE_ACL).user("repl", "s3cret").tweak(
        move |c| {
            c.auth.tls = Some(files);
            c.allow_no_tls = true;
        },
    ));
    let a = TestServer::with(Setup::default().acl(NODE_ACL).cluster(&format!(
        "- path: {}\n  user: repl\n  password: s3cret\n  tls: true\n  tls_ca: {}\n",
        b.addr,
        ca_file.display()
    )));
    let mut sub = Session::anonymous(b.addr);
    sub.sub(&["secure/#"]);
    assert!(
        wait_until(Duration::from_secs(5), || status(&a).contains("\"online\"")),
        "{}",
        status(&a)
    );
    let (mut publisher, _) = Raw::anonymous(a.addr);
    let big = vec![0xA5u8; 300_000];
    assert_eq!(publisher.publish("secure/t", &big), 0x01);
    assert_eq!(sub.recv(), ("secure/t".to_string(), big));
}

/// A receiving node on a fixed address, with room for long bursts.
fn node_at(addr: std::net::SocketAddr) -> TestServer {
    TestServer::with(
        Setup::default()
            .acl(NODE_ACL)
            .user("repl", "s3cret")
            .tweak(move |c| {
                c.bind = vec![BindAddr::Tcp(addr.to_string())];
                c.data_queue = 100_000;
                c.data_queue_bytes = 64 << 20;
            }),
    )
}

fn free_addr() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Publishes `range` on `topic` in one write (pipelined) and checks every
/// reply is `01`.
fn publish_burst(addr: std::net::SocketAddr, topic: &str, range: std::ops::Range<u32>) {
    let (mut publisher, _) = Raw::anonymous(addr);
    publisher.send(&common::numbered_publishes(topic, range.clone()));
    let replies = publisher.read_exact(range.len());
    assert!(replies.iter().all(|&r| r == 0x01));
}

/// Receives `range` in order on a thread of its own.
fn receive_in_order(
    mut sub: Session,
    range: std::ops::Range<u32>,
) -> std::thread::JoinHandle<Session> {
    std::thread::spawn(move || {
        for i in range {
            let (_, message) = sub.recv();
            assert_eq!(message, i.to_le_bytes(), "in publish order, none missing");
        }
        sub
    })
}

/// 5000 pipelined publishes on A all reach B's subscriber, in order (a
/// stop-and-wait link with a message-bounded queue delivered 1024).
#[test]
fn a_pipelined_burst_arrives_whole_and_in_order() {
    let b_addr = free_addr();
    let b = node_at(b_addr);
    let a = TestServer::with(
        Setup::default()
            .acl(NODE_ACL)
            .cluster(&node_entry(b.addr, "repl", "s3cret")),
    );
    let mut sub = Session::anonymous(b.addr);
    sub.sub(&["burst/#"]);
    assert!(wait_until(Duration::from_secs(5), || status(&a).contains("\"online\"")));
    let rx = receive_in_order(sub, 0..5000);
    publish_burst(a.addr, "burst/t", 0..5000);
    let mut sub = rx.join().unwrap();
    sub.data.expect_silence(Duration::from_millis(200));
    let dropped = format!("psrtd_cluster_dropped_total{{node=\"{}\"}}", b.addr);
    assert_eq!(metric(&a, &dropped), Some(0));
    let replicated = format!("psrtd_cluster_replicated_total{{node=\"{}\"}}", b.addr);
    assert!(wait_until(Duration::from_secs(5), || metric(
        &a,
        &replicated
    ) == Some(5000)));
}

/// B stops and starts again on the same address: what A published while B
/// was down waits in A's queue and arrives, in order, exactly once.
#[test]
fn a_node_restart_loses_nothing_below_the_bound() {
    let b_addr = free_addr();
    let b = node_at(b_addr);
    let a = TestServer::with(
        Setup::default()
            .acl(NODE_ACL)
            .cluster(&node_entry(b_addr, "repl", "s3cret")),
    );
    let mut sub = Session::anonymous(b.addr);
    sub.sub(&["r/#"]);
    assert!(wait_until(Duration::from_secs(5), || status(&a).contains("\"online\"")));
    let rx = receive_in_order(sub, 0..1000);
    publish_burst(a.addr, "r/t", 0..1000);
    drop(rx.join().unwrap());
    b.stop();
    assert!(wait_until(Duration::from_secs(5), || status(&a)
        .contains("\"offline\"")));
    publish_burst(a.addr, "r/t", 1000..4000);
    let queued = format!("psrtd_cluster_queued_messages{{node=\"{b_addr}\"}}");
    assert_eq!(metric(&a, &queued), Some(3000));
    assert!(
        wait_until(Duration::from_secs(10), || TcpListener::bind(b_addr)
            .is_ok()),
        "B's address is free again"
    );
    let b = node_at(b_addr);
    let mut sub = Session::anonymous(b.addr);
    sub.sub(&["r/#"]);
    let mut sub = receive_in_order(sub, 1000..4000).join().unwrap();
    sub.data.expect_silence(Duration::from_millis(300));
    assert_eq!(metric(&a, &queued), Some(0));
}

/// Client failover: of several addresses the first that answers is used (a
/// closed port is skipped); a server that refuses the login ends the try.
#[test]
fn the_client_connects_to_the_first_address_that_answers() {
    use psrt::client::{Client, Config, Error};
    let srv = receiving_node();
    let closed = free_addr();
    let client = Client::connect(&Config::new(&format!("{closed}, {}", srv.addr))).unwrap();
    client.subscribe("fo/#").unwrap();
    client.publish(0x7f, "fo/1", b"up").unwrap();
    let m = client.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!((m.topic.as_str(), m.data.as_slice()), ("fo/1", &b"up"[..]));
    client.bye().unwrap();
    let refused =
        Client::connect(&Config::new(&format!("{}, {closed}", srv.addr)).set_auth("repl", "wrong"));
    assert!(matches!(refused, Err(Error::LoginFailed)), "{refused:?}");
    let none = Client::connect(&Config::new(&format!("{closed},{closed}")));
    assert!(matches!(none, Err(Error::Io(_))), "{none:?}");
}

/// Three nodes, each listing the other two (a full mesh): a burst of
/// 20 000 pipelined publishes on A reaches subscribers on B and C whole and
/// in order; a message published on B reaches A and C exactly once.
#[test]
fn three_nodes_in_a_full_mesh() {
    let addrs = [free_addr(), free_addr(), free_addr()];
    let nodes: Vec<TestServer> = (0..3)
        .map(|i| {
            let others: String = (0..3)
                .filter(|&j| j != i)
                .map(|j| node_entry(addrs[j], "repl", "s3cret"))
                .collect();
            let me = addrs[i];
            TestServer::with(
                Setup::default()
                    .acl(NODE_ACL)
                    .user("repl", "s3cret")
                    .cluster(&others)
                    .tweak(move |c| {
                        c.bind = vec![BindAddr::Tcp(me.to_string())];
                        c.data_queue = 100_000;
                        c.data_queue_bytes = 64 << 20;
                    }),
            )
        })
        .collect();
    for n in &nodes {
        assert!(
            wait_until(Duration::from_secs(10), || !status(n)
                .contains("\"offline\"")
                && !status(n).contains("\"connecting\"")),
            "{}",
            status(n)
        );
    }
    let subscribe = |n: &TestServer| {
        let mut s = Session::anonymous(n.addr);
        s.sub(&["mesh/#"]);
        s
    };
    let (on_b, on_c) = (subscribe(&nodes[1]), subscribe(&nodes[2]));
    let rx_b = receive_in_order(on_b, 0..20_000);
    let rx_c = receive_in_order(on_c, 0..20_000);
    publish_burst(nodes[0].addr, "mesh/burst", 0..20_000);
    let mut on_b = rx_b.join().unwrap();
    let mut on_c = rx_c.join().unwrap();
    let mut on_a = subscribe(&nodes[0]);
    publish_burst(nodes[1].addr, "mesh/from-b", 7..8);
    for s in [&mut on_a, &mut on_b, &mut on_c] {
        assert_eq!(
            s.recv(),
            ("mesh/from-b".to_string(), 7u32.to_le_bytes().to_vec())
        );
    }
    for s in [&mut on_a, &mut on_b, &mut on_c] {
        s.data.expect_silence(Duration::from_millis(300));
    }
}

/// A node that speaks only the reference protocol (no op 12): it closes
/// the link at REPL_HELLO, and psrtd reconnects at once and replicates with
/// the two-phase PUBLISH_REPL, in order.
#[test]
fn a_reference_node_gets_the_two_phase_exchange() {
    use std::io::{Read, Write};
    use std::sync::mpsc;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let node_addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        let log_in = |s: &mut std::net::TcpStream| {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut greeting = [0u8; 3];
            s.read_exact(&mut greeting).unwrap();
            s.write_all(&[0xEE, 0xAA, 0x01, 0x00]).unwrap();
            let mut buf = Vec::new();
            loop {
                let mut b = [0u8; 1];
                s.read_exact(&mut b).unwrap();
                buf.push(b[0]);
                if let Ok(psrt_protocol::Decoded::Frame { .. }) = psrt_protocol::decode_login(&buf)
                {
                    break;
                }
            }
            s.write_all(&[7u8; 32]).unwrap();
        };
        let read = |s: &mut std::net::TcpStream, n: usize| {
            let mut v = vec![0u8; n];
            s.read_exact(&mut v).map(|_| v)
        };
        // First link: the unknown op closes it, as in the reference.
        let (mut s, _) = listener.accept().unwrap();
        log_in(&mut s);
        let op = read(&mut s, 1).unwrap()[0];
        tx.send(format!("op {op:#04x}")).unwrap();
        drop(s);
        let (mut s, _) = listener.accept().unwrap();
        log_in(&mut s);
        while let Ok(op) = read(&mut s, 1) {
            match op[0] {
                0x00 => s.write_all(&[0x01]).unwrap(),
                0x11 => {
                    let len = u32::from_le_bytes(read(&mut s, 4).unwrap().try_into().unwrap());
                    let topic = String::from_utf8(read(&mut s, len as usize).unwrap()).unwrap();
                    s.write_all(&[0x02]).unwrap();
                    let head = read(&mut s, 13).unwrap();
                    let len = u32::from_le_bytes(head[9..13].try_into().unwrap());
                    let msg = read(&mut s, len as usize).unwrap();
                    s.write_all(&[0x01]).unwrap();
                    tx.send(format!("{topic} {}", String::from_utf8_lossy(&msg)))
                        .unwrap();
                }
                other => panic!("op {other:#04x} on a reference link"),
            }
        }
    });
    let a = TestServer::with(
        Setup::default()
            .acl(NODE_ACL)
            .cluster(&node_entry(node_addr, "repl", "s3cret")),
    );
    let next = || rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(next(), "op 0x12", "psrtd tries its extension first");
    assert!(wait_until(Duration::from_secs(5), || status(&a).contains("\"online\"")));
    let (mut publisher, _) = Raw::anonymous(a.addr);
    for m in ["one", "two", "three"] {
        assert_eq!(publisher.publish("ref/t", m.as_bytes()), 0x01);
    }
    for m in ["one", "two", "three"] {
        assert_eq!(next(), format!("ref/t {m}"));
    }
}

/// The link goes silent (the relay stops forwarding): A's link deadline
/// closes it, messages published meanwhile wait, and when the path is back
/// they all arrive, in order, once.
#[test]
fn a_silent_link_is_detected_and_the_queue_arrives_when_it_is_back() {
    let b = node_at(free_addr());
    let relay = Relay::to(b.addr);
    let a = TestServer::with(
        Setup::default()
            .acl(NODE_ACL)
            .cluster(&node_entry(relay.addr, "repl", "s3cret"))
            .tweak(|c| c.timeout = Duration::from_secs(1)),
    );
    let mut sub = Session::anonymous(b.addr);
    sub.sub(&["cut/#"]);
    assert!(wait_until(Duration::from_secs(5), || status(&a).contains("\"online\"")));
    let rx = receive_in_order(sub, 0..3000);
    publish_burst(a.addr, "cut/t", 0..1000);
    std::thread::sleep(Duration::from_millis(300));
    relay.set_cut(true);
    publish_burst(a.addr, "cut/t", 1000..3000);
    assert!(
        wait_until(Duration::from_secs(5), || status(&a)
            .contains("\"offline\"")),
        "the deadline closes the silent link: {}",
        status(&a)
    );
    relay.set_cut(false);
    let mut sub = rx.join().unwrap();
    sub.data.expect_silence(Duration::from_millis(300));
    let reconnects = format!("psrtd_cluster_reconnects_total{{node=\"{}\"}}", relay.addr);
    assert!(wait_until(Duration::from_secs(5), || metric(
        &a,
        &reconnects
    )
    .is_some_and(|n| n >= 1)));
    let dropped = format!("psrtd_cluster_dropped_total{{node=\"{}\"}}", relay.addr);
    assert_eq!(metric(&a, &dropped), Some(0));
}
