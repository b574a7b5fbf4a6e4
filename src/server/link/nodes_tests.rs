//! Unit tests of `nodes.rs`: `cluster.yml` parsing, the queue's byte bound
//! (drop oldest, never what is in flight), the total bound, the backoff with
//! jitter, and the receiving side's resend detection.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::nodes::*;
use super::outgoing::{FIRST_BACKOFF, MAX_BACKOFF, QUEUED_MESSAGE_OVERHEAD};

/// One 10-byte message on topic "t" as `queue_limits_and_backoff` counts it.
const EACH: usize = 11 + QUEUED_MESSAGE_OVERHEAD;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn reference_cluster_file_loads() {
    let dir = std::env::temp_dir().join(format!("psrt-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = write(
        &dir,
        "cluster.yml",
        "- path: node2:2873\n  user: repl\n  password: \"123\"\n  timeout: 5\n- path: /run/psrtd/node3.sock\n  user: repl\n  queue_bytes: 1000\n",
    );
    let nodes = load_nodes(&file).unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0].addr, NodeAddr::Tcp("node2:2873".into()));
    assert_eq!(
        (nodes[0].user.as_str(), nodes[0].password.as_str()),
        ("repl", "123")
    );
    assert_eq!(
        nodes[1].addr,
        NodeAddr::Unix("/run/psrtd/node3.sock".into())
    );
    assert_eq!(nodes[0].queue_bytes, DEFAULT_QUEUE_BYTES);
    assert_eq!(nodes[1].queue_bytes, 1000, "psrtd's own key");
    assert!(
        !format!("{:?}", nodes[0]).contains("123"),
        "no password in Debug"
    );

    for (text, needle) in [
        ("- path: nowhere\n", "host:port"),
        ("- path: n:1\n  colour: red\n", "unknown field `colour`"),
        ("- path: n:1\n  tls: true\n", "needs tls_ca"),
        (
            "- path: n:1\n  tls: true\n  tls_ca: missing.pem\n",
            "missing.pem",
        ),
        ("- path: x.sock\n  tls: true\n  tls_ca: ca.pem\n", "Unix"),
        ("{ path: n }\n", "invalid type"),
    ] {
        let f = write(&dir, "bad.yml", text);
        let e = load_nodes(&f).unwrap_err();
        assert!(e.to_string().contains(needle), "{text:?} -> {e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn queue_limits_and_backoff() {
    let now = Instant::now();
    let config = NodeConfig {
        path: "n:1".into(),
        addr: NodeAddr::Tcp("n:1".into()),
        user: String::new(),
        password: String::new(),
        tls: None,
        queue_bytes: 3 * EACH,
    };
    let mut node = Node::new(config, now);
    let r = |n: usize| Replica {
        priority: 0x7f,
        topic: "t".into(),
        message: Payload::new(&vec![0u8; n]),
        timestamp_ns: 0,
        seq: 0,
    };
    assert_eq!(node.push(r(10)), 0);
    assert_eq!(node.push(r(10)), 0);
    assert_eq!(node.push(r(10)), 0);
    node.in_flight = 1;
    node.in_flight_bytes = EACH;
    assert_eq!(
        node.push(r(10)),
        1,
        "bound passed: the oldest not in flight goes"
    );
    let seqs: Vec<u64> = node.queue.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [1, 3, 4]);
    node.pop();
    assert_eq!((node.in_flight, node.in_flight_bytes), (0, 0));
    assert_eq!(
        node.push(r(3 * EACH)),
        3,
        "everything older goes, then the new one"
    );
    assert_eq!(
        (node.queue.len(), node.queued_bytes, node.dropped),
        (0, 0, 4)
    );
    let within =
        |t: Option<Instant>, d: Duration| t.is_some_and(|t| t >= now + d && t <= now + d + d / 4);
    node.down(now);
    assert!(within(node.peer.retry_at, FIRST_BACKOFF));
    node.down(now);
    assert!(within(node.peer.retry_at, FIRST_BACKOFF * 2));
    for _ in 0..10 {
        node.down(now);
    }
    assert!(within(node.peer.retry_at, MAX_BACKOFF));
    node.online(now);
    node.down(now);
    assert!(within(node.peer.retry_at, FIRST_BACKOFF));
}

#[test]
fn the_total_bound_drops_from_the_longest_queue() {
    let now = Instant::now();
    let config = |path: &str| NodeConfig {
        path: path.into(),
        addr: NodeAddr::Tcp(path.into()),
        user: String::new(),
        password: String::new(),
        tls: None,
        queue_bytes: 1000,
    };
    let mut c = Cluster::new(vec![config("a:1"), config("b:1")], now);
    let r = || Replica {
        priority: 0x7f,
        topic: "t".into(),
        message: Payload::new(&[0u8; 9]),
        timestamp_ns: 0,
        seq: 0,
    };
    for _ in 0..3 {
        c.nodes[0].push(r());
    }
    c.nodes[1].push(r());
    let each = 10 + QUEUED_MESSAGE_OVERHEAD;
    assert_eq!(c.enforce_total(3 * each), [0], "a started dropping");
    assert_eq!((c.nodes[0].queue.len(), c.nodes[1].queue.len()), (2, 1));
    assert_eq!(c.nodes[0].queue[0].seq, 2, "the oldest went");
    assert_eq!(c.enforce_total(3 * each), Vec::<usize>::new());
    assert_eq!(c.nodes[0].dropped + c.nodes[1].dropped, 1);
}

#[test]
fn receiving_side_skips_resends() {
    let mut c = Cluster::default();
    assert!(c.first_time(7, 1));
    assert!(c.first_time(7, 2));
    assert!(!c.first_time(7, 2), "resent after a reconnect");
    assert!(!c.first_time(7, 1));
    assert!(c.first_time(8, 1), "another origin");
    assert!(c.first_time(7, 3));
}

#[test]
fn receiving_side_keeps_every_origin_while_they_interleave() {
    let mut c = Cluster::default();
    // Two origins taking turns: each keeps its own last number whether it
    // is the current one (`recent`) or parked in the table.
    for seq in 1..=50 {
        assert!(c.first_time(1, seq));
        assert!(c.first_time(2, seq * 2));
        assert!(!c.first_time(1, seq), "origin 1 resent {seq}");
    }
    assert!(!c.first_time(2, 100), "origin 2's last, after origin 1");
    assert!(c.first_time(2, 101));
    // Many origins: the table stays bounded and forgets, never refuses a
    // new number.
    for origin in 10..(10 + 3 * MAX_ORIGINS as u64) {
        assert!(c.first_time(origin, 1));
    }
    assert!(c.seen_len() <= MAX_ORIGINS);
}

#[test]
fn replicas_share_a_repeated_topic_and_keep_small_payloads_inline() {
    let mut c = Cluster::default();
    let a = c.topic_rc("plant/a");
    let b = c.topic_rc("plant/a");
    assert!(Rc::ptr_eq(&a, &b), "the same topic is one allocation");
    let other = c.topic_rc("plant/b");
    assert_eq!(&*other, "plant/b");
    assert!(!Rc::ptr_eq(&a, &other));
    let small = Payload::new(&[7u8; Payload::SHARE_FROM - 1]);
    assert!(matches!(small, Payload::Inline(_)));
    assert_eq!(small.len(), Payload::SHARE_FROM - 1);
    let large = Payload::new(&vec![9u8; Payload::SHARE_FROM]);
    assert!(matches!(large, Payload::Shared(_)));
    assert_eq!(large.bytes(), &vec![9u8; Payload::SHARE_FROM][..]);
}
