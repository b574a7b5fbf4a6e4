//! `psrtd` processes as cluster nodes on loopback: each node has fixed
//! (chosen free) TCP and stats ports, so the others' `cluster.yml` can name
//! it and it can restart on the same address; a config with a `replicator`
//! account (`repl`, bcrypt password file) and anonymous full access; the
//! child is killed when the node is dropped.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use super::{Proc, TempDir, http_get, passwd, wait_until};

/// ACL of every node: anonymous may publish, subscribe and read the stats;
/// `repl` is the replicator the other nodes log in as.
pub const NODE_ACL: &str = "_:\n  sub: '#'\n  pub: '#'\n  admin: true\nrepl:\n  replicator: true\n";
/// The replicator's password on every node.
pub const REPL_PASSWORD: &str = "s3cret-repl";

/// A free loopback address (bound, then released for the child to take).
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// One `psrtd` process with its files.
pub struct Node {
    pub addr: SocketAddr,
    pub stats: SocketAddr,
    pub dir: TempDir,
    pub proc: Option<Proc>,
}

impl Node {
    /// Writes the files of a node on `addr` that replicates to `peers`
    /// (none: a standalone server) and starts it; `None` if the process did
    /// not come up on its address (a port taken since it was chosen).
    pub fn try_start(addr: SocketAddr, peers: &[SocketAddr]) -> Option<Self> {
        let mut node = Self::prepare(addr, peers);
        let config = node.dir.path("config.yml");
        let p = Proc::spawn(&["-C", config.to_str().unwrap()]);
        if p.addr != Some(addr) {
            eprintln!("{addr} did not start: {}", p.log_text());
            return None;
        }
        node.proc = Some(p);
        Some(node)
    }

    /// A standalone node (no cluster) on a free port; a port taken before
    /// the node bound it is replaced by another (up to three tries).
    pub fn standalone() -> Self {
        (0..3)
            .find_map(|_| Self::try_start(free_addr(), &[]))
            .expect("a standalone node on a free port")
    }

    fn prepare(addr: SocketAddr, peers: &[SocketAddr]) -> Self {
        let dir = TempDir::new("node");
        let stats = free_addr();
        dir.write("acl.yml", NODE_ACL);
        dir.write("passwd", &passwd(&[("repl", REPL_PASSWORD)]));
        let cluster: String = peers
            .iter()
            .map(|p| format!("- path: {p}\n  user: repl\n  password: {REPL_PASSWORD}\n"))
            .collect();
        let cluster_section = if peers.is_empty() {
            String::new()
        } else {
            dir.write("cluster.yml", &cluster);
            "cluster:\n  config: cluster.yml\n".to_owned()
        };
        let config = format!(
            "server:\n  data_queue: 100000\n  data_queue_bytes: 67108864\n  pid_file: {}\n  \
             bind_stats: {stats}\nproto:\n  bind: {addr}\n  timeout: 10\nauth:\n  \
             allow_anonymous: true\n  acl: acl.yml\n  password_file: passwd\n{cluster_section}",
            dir.path("psrtd.pid").display()
        );
        dir.write("config.yml", &config);
        Self {
            addr,
            stats,
            dir,
            proc: None,
        }
    }

    /// Starts the process (again) on the same files and addresses.
    pub fn restart(&mut self) {
        assert!(self.proc.is_none(), "already running");
        assert!(
            wait_until(Duration::from_secs(10), || TcpListener::bind(self.addr)
                .is_ok()
                && TcpListener::bind(self.stats).is_ok()),
            "{} is free",
            self.addr
        );
        let config = self.dir.path("config.yml");
        let p = Proc::spawn(&["-C", config.to_str().unwrap()]);
        assert_eq!(p.addr, Some(self.addr), "psrtd started: {}", p.log_text());
        self.proc = Some(p);
    }

    fn proc(&self) -> &Proc {
        self.proc.as_ref().expect("node running")
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self) {
        let mut p = self.proc.take().expect("node running");
        p.child.kill().unwrap();
        p.child.wait().unwrap();
    }

    /// Sends a signal (`libc`-style number) to the running process.
    pub fn signal(&self, sig: i32) {
        self.proc().signal(sig);
    }

    pub fn log_text(&self) -> String {
        self.proc.as_ref().map(Proc::log_text).unwrap_or_default()
    }

    /// `/status` as JSON.
    pub fn status(&self) -> serde_json::Value {
        let (code, body) = http_get(self.stats, "/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The `cluster` object of `/status`: node → `online`/`connecting`/`offline`.
    pub fn link_status(&self, peer: SocketAddr) -> String {
        self.status()["cluster"][peer.to_string()]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// One per-node figure of `/status` `cluster_nodes` (e.g. `queued_messages`).
    pub fn link_figure(&self, peer: SocketAddr, key: &str) -> u64 {
        self.status()["cluster_nodes"][peer.to_string()][key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} of {peer} in {}", self.status()))
    }
}

/// Starts a full mesh of `n` nodes (each lists the others) and waits until
/// every link is online. If a chosen port was taken before its node bound
/// it, the mesh is started again on new ports (up to three times).
pub fn mesh(n: usize) -> Vec<Node> {
    for _ in 0..3 {
        let addrs: Vec<SocketAddr> = (0..n).map(|_| free_addr()).collect();
        let nodes: Option<Vec<Node>> = addrs
            .iter()
            .map(|&me| {
                let peers: Vec<SocketAddr> = addrs.iter().copied().filter(|&a| a != me).collect();
                Node::try_start(me, &peers)
            })
            .collect();
        if let Some(nodes) = nodes {
            wait_online(&nodes, &addrs);
            return nodes;
        }
    }
    panic!("no {n}-node mesh could be started on free ports");
}

fn wait_online(nodes: &[Node], addrs: &[SocketAddr]) {
    for node in nodes {
        for &peer in addrs.iter().filter(|&&a| a != node.addr) {
            assert!(
                wait_until(Duration::from_secs(15), || node.link_status(peer)
                    == "online"),
                "{} -> {peer}: {}\n{}",
                node.addr,
                node.status(),
                node.log_text()
            );
        }
    }
}
