//! Cluster replication between three `psrtd` processes on loopback (the
//! binary, not in-process servers), each listing the other two: a burst of
//! 20 000 pipelined publishes on A reaches B's and C's subscribers whole
//! and in order; a message published on B reaches A and C exactly once; C
//! killed with SIGKILL and restarted gets what A published meanwhile, once;
//! C stopped (SIGSTOP: it reads nothing) gets the queued messages, in
//! order and once, after SIGCONT. Every child is killed when its node drops.

mod common;

use std::net::SocketAddr;
use std::ops::Range;
use std::thread::JoinHandle;
use std::time::Duration;

use common::nodes::{Node, mesh};
use common::{Raw, Session, wait_until};

const SIGSTOP: i32 = 19;
const SIGCONT: i32 = 18;

/// Publishes `range` (each number as 4 LE bytes) on `topic` in one write,
/// pipelined, and checks that every reply is `01`.
fn publish_burst(addr: SocketAddr, topic: &str, range: Range<u32>) {
    let (mut publisher, _) = Raw::anonymous(addr);
    publisher.send(&common::numbered_publishes(topic, range.clone()));
    let replies = publisher.read_exact(range.len());
    assert!(replies.iter().all(|&r| r == 0x01), "every publish took");
}

fn subscriber(node: &Node, mask: &str) -> Session {
    let mut s = Session::anonymous(node.addr);
    s.sub(&[mask]);
    s
}

/// Receives exactly `range`, in order, on a thread of its own (the data
/// socket waits at most `wait` for each message).
fn receive_in_order(mut sub: Session, range: Range<u32>, wait: Duration) -> JoinHandle<Session> {
    sub.data.s.set_read_timeout(Some(wait)).unwrap();
    std::thread::spawn(move || {
        for i in range {
            let (_, message) = sub.recv();
            assert_eq!(message, i.to_le_bytes(), "in publish order, none missing");
        }
        sub
    })
}

/// Nothing more arrives (no duplicate) within `quiet`.
fn no_more(subs: &mut [&mut Session], quiet: Duration) {
    for s in subs {
        s.data.expect_silence(quiet);
    }
}

/// Waits until A has nothing waiting for `peer` (every message acknowledged).
fn drained(a: &Node, peer: SocketAddr) -> bool {
    wait_until(Duration::from_secs(15), || {
        a.link_figure(peer, "queued_messages") == 0 && a.link_figure(peer, "in_flight") == 0
    })
}

#[test]
fn three_processes_a_burst_of_20000_on_a_reaches_b_and_c_whole_and_in_order() {
    let nodes = mesh(3);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let wait = Duration::from_secs(20);
    let on_b = receive_in_order(subscriber(b, "burst/#"), 0..20_000, wait);
    let on_c = receive_in_order(subscriber(c, "burst/#"), 0..20_000, wait);
    publish_burst(a.addr, "burst/t", 0..20_000);
    let (mut on_b, mut on_c) = (on_b.join().unwrap(), on_c.join().unwrap());
    no_more(&mut [&mut on_b, &mut on_c], Duration::from_millis(300));
    for peer in [b.addr, c.addr] {
        assert!(drained(a, peer));
        assert_eq!(a.link_figure(peer, "replicated"), 20_000);
        assert_eq!(a.link_figure(peer, "dropped"), 0);
    }
}

#[test]
fn three_processes_a_message_from_b_reaches_a_and_c_exactly_once() {
    let nodes = mesh(3);
    let mut subs: Vec<Session> = nodes.iter().map(|n| subscriber(n, "from-b/#")).collect();
    publish_burst(nodes[1].addr, "from-b/t", 7..8);
    for s in &mut subs {
        assert_eq!(
            s.recv(),
            ("from-b/t".to_owned(), 7u32.to_le_bytes().to_vec())
        );
    }
    // Replicated messages are not replicated again: no echo back to B, no
    // second copy on A or C through the other node.
    let mut refs: Vec<&mut Session> = subs.iter_mut().collect();
    no_more(&mut refs, Duration::from_millis(500));
}

#[test]
fn three_processes_a_killed_node_restarts_and_gets_what_it_missed_once() {
    let mut nodes = mesh(3);
    let (a_addr, c_addr) = (nodes[0].addr, nodes[2].addr);
    // Before: delivered and acknowledged, so nothing is in flight at the kill.
    let on_c = receive_in_order(
        subscriber(&nodes[2], "r/#"),
        0..1000,
        Duration::from_secs(10),
    );
    publish_burst(a_addr, "r/t", 0..1000);
    drop(on_c.join().unwrap());
    assert!(drained(&nodes[0], c_addr));

    nodes[2].kill();
    assert!(
        wait_until(Duration::from_secs(10), || nodes[0].link_status(c_addr)
            != "online"),
        "A sees C gone: {}",
        nodes[0].status()
    );
    let on_b = receive_in_order(
        subscriber(&nodes[1], "r/#"),
        1000..4000,
        Duration::from_secs(10),
    );
    publish_burst(a_addr, "r/t", 1000..4000);
    assert_eq!(nodes[0].link_figure(c_addr, "queued_messages"), 3000);

    // A is paused while C starts, so its link cannot deliver the queue
    // before C's new subscriber is there (C would answer "not required").
    nodes[0].signal(SIGSTOP);
    nodes[2].restart();
    let on_c = subscriber(&nodes[2], "r/#");
    nodes[0].signal(SIGCONT);
    let mut on_c = receive_in_order(on_c, 1000..4000, Duration::from_secs(20))
        .join()
        .unwrap();
    let mut on_b = on_b.join().unwrap();
    no_more(&mut [&mut on_c, &mut on_b], Duration::from_millis(500));
    assert!(drained(&nodes[0], c_addr));
    assert_eq!(nodes[0].link_figure(c_addr, "dropped"), 0);
    assert!(nodes[0].link_figure(c_addr, "reconnects") >= 1);
    // C rejoined both ways: its own publishes reach A.
    let mut on_a = subscriber(&nodes[0], "back/#");
    assert!(wait_until(Duration::from_secs(15), || nodes[2]
        .link_status(a_addr)
        == "online"));
    publish_burst(c_addr, "back/t", 9..10);
    assert_eq!(
        on_a.recv(),
        ("back/t".to_owned(), 9u32.to_le_bytes().to_vec())
    );
}

#[test]
fn three_processes_a_stopped_peer_gets_the_queued_messages_when_it_resumes() {
    let nodes = mesh(3);
    let (a, c) = (&nodes[0], &nodes[2]);
    let mut on_c = subscriber(c, "cut/#");
    // The subscriber's session stays well inside C's timeout (10 s).
    assert_eq!(on_c.ctl.nop(), 0x01);
    c.signal(SIGSTOP);
    // C reads nothing now: the link fills its window and the socket
    // buffers, the rest waits in A's queue.
    publish_burst(a.addr, "cut/t", 0..10_000);
    assert!(
        a.link_figure(c.addr, "queued_messages") > 0,
        "messages wait for the stopped node: {}",
        a.status()
    );
    std::thread::sleep(Duration::from_secs(2));
    c.signal(SIGCONT);
    let mut on_c = receive_in_order(on_c, 0..10_000, Duration::from_secs(20))
        .join()
        .unwrap();
    no_more(&mut [&mut on_c], Duration::from_millis(500));
    assert!(drained(a, c.addr));
    assert_eq!(a.link_figure(c.addr, "dropped"), 0);
    assert_eq!(a.link_figure(c.addr, "replicated"), 10_000);
}
