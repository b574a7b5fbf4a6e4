//! Client failover against real `psrtd` processes: the library, given
//! [A, B], moves to B when A is killed, resubscribes, and receives what is
//! published on B afterwards; it gives up with `Error::Unavailable` after
//! its reconnect timeout; random order spreads connects over both nodes;
//! `psrt-cli` subscribed with two addresses goes on printing when its node
//! is stopped, and exits 1 once no node is left for its reconnect timeout.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::nodes::{Node, free_addr};
use common::{Raw, wait_until};
use psrt::client::{Client, Config, Error};

const SIGTERM: i32 = 15;

fn two_nodes() -> (Node, Node) {
    (Node::standalone(), Node::standalone())
}

fn path(nodes: &[&Node]) -> String {
    nodes
        .iter()
        .map(|n| n.addr.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn publish(node: &Node, topic: &str, message: &[u8]) {
    let (mut publisher, _) = Raw::anonymous(node.addr);
    assert_eq!(publisher.publish(topic, message), 0x01);
}

#[test]
fn the_library_resubscribes_on_b_when_a_is_killed() {
    let (mut a, b) = two_nodes();
    let config = Config::new(&path(&[&a, &b])).set_timeout(Duration::from_secs(2));
    assert!(config.reconnect(), "on by default with two addresses");
    let client = Client::connect(&config).unwrap();
    assert_eq!(client.server(), a.addr.to_string(), "the first address");
    client.subscribe_bulk(&["fo/#", "other/1"]).unwrap();
    client.subscribe("gone/#").unwrap();
    client.unsubscribe("gone/#").unwrap();
    publish(&a, "fo/a", b"on A");
    let m = client.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        (m.topic.as_str(), m.data.as_slice()),
        ("fo/a", &b"on A"[..])
    );

    a.kill();
    // A publish made now either was in flight on A's dying connection (an
    // error, not sent again) or waits for the failover and goes to B.
    let started = Instant::now();
    let mut tries = 0;
    loop {
        tries += 1;
        match client.publish(0x7f, "fo/during", b"gap") {
            Ok(()) => break,
            Err(e @ (Error::Disconnected | Error::Io(_) | Error::Timeout)) if tries < 3 => {
                eprintln!("publish during the failover: {e}");
            }
            Err(e) => panic!("publish after the failover: {e}"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(client.is_connected());
    assert_eq!(client.server(), b.addr.to_string());
    // Sent on B after the resubscription: the client gets its own message.
    let m = client.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        (m.topic.as_str(), m.data.as_slice()),
        ("fo/during", &b"gap"[..])
    );

    publish(&b, "gone/x", b"unsubscribed before the failover");
    publish(&b, "other/1", b"second topic");
    publish(&b, "fo/b", b"on B");
    for (topic, data) in [("other/1", &b"second topic"[..]), ("fo/b", b"on B")] {
        let m = client.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((m.topic.as_str(), m.data.as_slice()), (topic, data));
    }
    assert!(matches!(
        client.recv_timeout(Duration::from_millis(300)),
        Err(Error::Timeout)
    ));
    client.bye().unwrap();
    assert!(!client.is_connected());
}

#[test]
fn the_library_gives_up_after_its_reconnect_timeout() {
    let mut a = Node::standalone();
    let closed = free_addr();
    let client = Client::connect(
        &Config::new(&format!("{},{closed}", a.addr))
            .set_timeout(Duration::from_secs(1))
            .set_reconnect_timeout(Duration::from_millis(1500)),
    )
    .unwrap();
    client.subscribe("t").unwrap();
    let rx = client.take_receiver().unwrap();
    let lost = Instant::now();
    let a_addr = a.addr.to_string();
    a.kill();
    // The channel ends once the client gives up; nothing is received.
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(10)),
        Err(mpsc::RecvTimeoutError::Disconnected)
    ));
    let took = lost.elapsed();
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    match client.publish(0x7f, "t", b"x") {
        // The lost node is tried last: its error is the one kept.
        Err(Error::Unavailable(why)) => assert!(why.contains(&a_addr), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(!client.is_connected());
}

#[test]
fn random_order_spreads_connects_over_both_nodes() {
    let (a, b) = two_nodes();
    let count = |randomize: bool, tries: usize| {
        let mut seen = BTreeMap::new();
        for _ in 0..tries {
            let config = Config::new(&path(&[&a, &b]))
                .set_randomize(randomize)
                .disable_data_stream();
            let client = Client::connect(&config).unwrap();
            *seen.entry(client.server()).or_insert(0) += 1;
            client.bye().unwrap();
        }
        seen
    };
    let listed = count(false, 5);
    assert_eq!(listed.get(&a.addr.to_string()), Some(&5), "{listed:?}");
    // 40 tries: both first at least once unless 40 coin flips agree (2^-39).
    let random = count(true, 40);
    assert_eq!(random.len(), 2, "{random:?}");
}

/// A `psrt-cli` child, killed on drop; its stdout lines on a channel.
struct Cli {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Everything psrt-cli wrote to stderr, once it has exited.
    errors: Option<std::thread::JoinHandle<String>>,
}

impl Cli {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_psrt-cli"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn psrt-cli");
        let stderr = child.stderr.take().unwrap();
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut { stderr }, &mut text);
            text
        });
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            errors: Some(errors),
        }
    }

    /// Publishes `message` on `topic` at `node` every 200 ms until the cli
    /// prints it (it may not be subscribed yet), for up to `within`.
    fn publish_until_printed(&self, node: &Node, topic: &str, message: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            publish(node, topic, message.as_bytes());
            let until = Instant::now() + Duration::from_millis(200);
            while let Ok(line) = self
                .lines
                .recv_timeout(until.saturating_duration_since(Instant::now()))
            {
                if line == message {
                    return;
                }
            }
        }
        panic!("psrt-cli did not print {message:?} within {within:?}");
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn psrt_cli_subscribe_keeps_receiving_when_its_node_stops() {
    let (mut a, b) = two_nodes();
    let (a_addr, b_addr) = (a.addr.to_string(), b.addr.to_string());
    let cli = Cli::spawn(&[
        &a_addr,
        &b_addr,
        "--timeout",
        "2",
        "--reconnect-timeout",
        "2",
        "-t",
        "cli/#",
    ]);
    cli.publish_until_printed(&a, "cli/1", "before", Duration::from_secs(10));
    // SIGTERM: psrtd closes its clients and exits; the cli moves to B.
    a.signal(SIGTERM);
    assert!(wait_until(Duration::from_secs(10), || a
        .proc
        .as_mut()
        .is_some_and(|p| p.child.try_wait().ok().flatten().is_some())));
    a.proc = None;
    cli.publish_until_printed(&b, "cli/2", "after", Duration::from_secs(15));
    let mut cli = cli;
    assert!(
        cli.child.try_wait().unwrap().is_none(),
        "psrt-cli still runs"
    );
    // No node left: after --reconnect-timeout psrt-cli gives up, exit 1.
    let mut b = b;
    b.kill();
    assert_eq!(
        common::wait_child(&mut cli.child, Duration::from_secs(15)),
        Some(1)
    );
    let errors = cli.errors.take().unwrap().join().unwrap();
    assert!(
        errors.contains("no server available") && errors.contains(&b_addr),
        "{errors}"
    );
}
