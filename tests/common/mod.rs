//! Shared helpers for the integration tests: a real server on an ephemeral
//! port (in-process on its own thread, or the `psrtd` binary as a child
//! process), temp folders with ACL/password files, and a raw-socket client
//! built on the protocol crate's encoders. Every read has a timeout.
#![allow(dead_code, unreachable_pub)]

pub mod nodes;
pub mod pki;
pub mod relay;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use psrt::protocol::{
    CommMode, DataFrame, DataHello, Decoded, Greeting, Limits, Login, Request, StreamKind,
    TOKEN_LEN, Token, Topics, decode_data_frame, encode_data_hello, encode_greeting, encode_login,
    encode_request,
};
use psrt::server::Stats;
use psrt::server::config::{AclSource, BindAddr};
use psrt::server::{AuthDb, Config, Server, ShutdownHandle};

/// Pipelined PUBLISH frames for every number of `range` on `topic` (the
/// number as its 4 little-endian bytes), to write at once.
pub fn numbered_publishes(topic: &str, range: std::ops::Range<u32>) -> Vec<u8> {
    let mut frames = Vec::new();
    for i in range {
        encode_request(
            &Request::Publish {
                priority: 0x7f,
                topic,
                message: &i.to_le_bytes(),
            },
            &mut frames,
        );
    }
    frames
}

/// Read timeout of every test socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A temp folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let n = NEXT_DIR.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("psrt-it-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write test file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An htpasswd file body with bcrypt (cost 4) hashes.
pub fn passwd(users: &[(&str, &str)]) -> String {
    users
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", bcrypt::hash(p, 4).expect("bcrypt")))
        .collect()
}

/// ACL giving anonymous `_` full publish/subscribe.
pub const ACL_ANON_ALL: &str = "_:\n  sub: '#'\n  pub: '#'\n";

/// Test server options: ACL text, users, and a config tweak.
pub struct Setup {
    pub acl: String,
    pub users: Vec<(String, String)>,
    pub keys: Option<String>,
    /// `cluster.yml` text: nodes this server replicates to.
    pub cluster: Option<String>,
    pub tweak: Box<dyn FnOnce(&mut Config) + Send>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            acl: ACL_ANON_ALL.into(),
            users: Vec::new(),
            keys: None,
            cluster: None,
            tweak: Box::new(|_| {}),
        }
    }
}

impl Setup {
    pub fn acl(mut self, acl: &str) -> Self {
        self.acl = acl.into();
        self
    }

    pub fn user(mut self, login: &str, password: &str) -> Self {
        self.users.push((login.into(), password.into()));
        self
    }

    pub fn keys(mut self, keys: &str) -> Self {
        self.keys = Some(keys.into());
        self
    }

    pub fn cluster(mut self, cluster_yml: &str) -> Self {
        self.cluster = Some(cluster_yml.into());
        self
    }

    pub fn tweak(mut self, f: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.tweak = Box::new(f);
        self
    }

    /// Writes the files and builds the config (bind 127.0.0.1:0, anonymous on).
    pub fn config(self, dir: &TempDir) -> Config {
        let mut c = Config::embedded_default();
        c.bind = vec![BindAddr::Tcp("127.0.0.1:0".into())];
        c.bind_udp = vec!["127.0.0.1:0".into()];
        c.bind_stats = Some("127.0.0.1:0".into());
        if let Some(m) = &mut c.mqtt {
            m.bind = vec![BindAddr::Tcp("127.0.0.1:0".into())];
        }
        c.auth.acl = AclSource::File(dir.write("acl.yml", &self.acl));
        if !self.users.is_empty() {
            let users: Vec<(&str, &str)> = self
                .users
                .iter()
                .map(|(u, p)| (u.as_str(), p.as_str()))
                .collect();
            c.auth.password_file = Some(dir.write("passwd", &passwd(&users)));
        }
        if let Some(keys) = &self.keys {
            c.auth.key_file = Some(dir.write("keys.yml", keys));
        }
        if let Some(cluster) = &self.cluster {
            c.cluster_file = Some(dir.write("cluster.yml", cluster));
        }
        (self.tweak)(&mut c);
        c
    }
}

/// A server running in this process on its own thread.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The UDP publish socket (None if the tweak removed `bind_udp`).
    pub udp_addr: Option<SocketAddr>,
    /// The stats endpoint (None if the tweak removed `bind_stats`).
    pub stats_addr: Option<SocketAddr>,
    /// The MQTT listener (None if the tweak removed the `mqtt` section).
    pub mqtt_addr: Option<SocketAddr>,
    pub dir: TempDir,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<Stats>>,
}

impl TestServer {
    /// Anonymous full access, defaults otherwise.
    pub fn start() -> Self {
        Self::with(Setup::default())
    }

    pub fn with(setup: Setup) -> Self {
        let dir = TempDir::new("srv");
        let config = setup.config(&dir);
        let (tx, rx) = mpsc::channel();
        // The server holds Rc frames and is !Send: build it on its thread.
        let thread = std::thread::spawn(move || {
            let (auth, _) = AuthDb::load(&config.auth).expect("load auth files");
            let nodes = config
                .cluster_file
                .as_deref()
                .map(|f| psrt::server::load_nodes(f).expect("cluster.yml"))
                .unwrap_or_default();
            let mut server = Server::bind(config, auth).expect("bind test server");
            server.replicate_to(nodes);
            let udp = server.udp_addrs().first().copied();
            let stats = server.stats_addr();
            let mqtt = server.mqtt_addrs().first().copied();
            tx.send((
                server.tcp_addrs()[0],
                udp,
                stats,
                mqtt,
                server.shutdown_handle(),
            ))
            .expect("report address");
            server.run().expect("event loop");
            server.stats().clone()
        });
        let (addr, udp_addr, stats_addr, mqtt_addr, handle) =
            rx.recv_timeout(IO_TIMEOUT).expect("server started");
        Self {
            addr,
            udp_addr,
            stats_addr,
            mqtt_addr,
            dir,
            handle,
            thread: Some(thread),
        }
    }

    /// Stops the server and returns its counters.
    pub fn stop(mut self) -> Stats {
        self.handle.shutdown();
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("server thread")
    }

    /// `host:port` for the client library.
    pub fn path(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.handle.shutdown();
            let _ = t.join();
        }
    }
}

/// A raw socket speaking PSRT through the protocol crate's encoders.
pub struct Raw {
    pub s: TcpStream,
    pub rx: Vec<u8>,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        Self { s, rx: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("send");
    }

    /// One read, retried when a signal interrupts it (EINTR is not an
    /// error); a timeout or a socket error is.
    fn read_some(&mut self, buf: &mut [u8], what: &str) -> usize {
        loop {
            match self.s.read(buf) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                other => return other.unwrap_or_else(|e| panic!("{what}: {e}")),
            }
        }
    }

    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        while self.rx.len() < n {
            let mut buf = [0u8; 65536];
            let got = self.read_some(&mut buf, "read");
            assert!(got > 0, "closed after {} of {n} bytes", self.rx.len());
            self.rx.extend_from_slice(&buf[..got]);
        }
        self.rx.drain(..n).collect()
    }

    pub fn read_byte(&mut self) -> u8 {
        self.read_exact(1)[0]
    }

    /// Asserts the server closes the connection (EOF or reset) within
    /// `within`, ignoring any bytes before that; returns them.
    pub fn expect_closed_within(&mut self, within: Duration) -> Vec<u8> {
        let deadline = Instant::now() + within;
        let mut seen = std::mem::take(&mut self.rx);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "connection still open after {within:?}");
            self.s.set_read_timeout(Some(left)).unwrap();
            let mut buf = [0u8; 65536];
            match self.s.read(&mut buf) {
                Ok(0) => return seen,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                    ) =>
                {
                    return seen;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("connection still open after {within:?}")
                }
                Err(e) => panic!("unexpected read error {e}"),
            }
        }
    }

    pub fn expect_closed(&mut self) -> Vec<u8> {
        self.expect_closed_within(IO_TIMEOUT)
    }

    /// Asserts nothing arrives for `quiet` (the connection stays open).
    /// A signal interrupting the wait (EINTR) is not an error: the wait
    /// goes on for the time left.
    pub fn expect_silence(&mut self, quiet: Duration) {
        let deadline = Instant::now() + quiet;
        let mut buf = [0u8; 1];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.s.set_read_timeout(Some(left)).unwrap();
            match self.s.read(&mut buf) {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                other => panic!("expected silence, got {other:?}"),
            }
        }
        self.s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    }

    pub fn greet(&mut self, kind: StreamKind) {
        let mut g = Vec::new();
        encode_greeting(
            Greeting {
                kind,
                comm: CommMode::Plain,
            },
            &mut g,
        );
        self.send(&g);
        let reply = self.read_exact(4);
        assert_eq!(reply, [g[0], g[1], 0x01, 0x00]);
    }

    /// Greeting + login; returns the token.
    pub fn control(addr: SocketAddr, login: &str, password: &str) -> (Self, Token) {
        let mut c = Self::connect(addr);
        c.greet(StreamKind::Control);
        let mut f = Vec::new();
        encode_login(&Login { login, password }, &mut f);
        c.send(&f);
        let token: [u8; TOKEN_LEN] = c.read_exact(TOKEN_LEN).try_into().unwrap();
        (c, Token(token))
    }

    pub fn anonymous(addr: SocketAddr) -> (Self, Token) {
        Self::control(addr, "", "")
    }

    /// A data socket bound to `token`.
    pub fn data(addr: SocketAddr, token: Token, timeout_sec: u8) -> Self {
        let mut d = Self::connect(addr);
        d.greet(StreamKind::Data);
        let mut f = Vec::new();
        encode_data_hello(&DataHello { token, timeout_sec }, &mut f);
        d.send(&f);
        assert_eq!(d.read_byte(), 0x01, "data hello accepted");
        d
    }

    /// Sends one request and returns its reply byte.
    pub fn request(&mut self, req: &Request<'_>) -> u8 {
        let mut f = Vec::new();
        encode_request(req, &mut f);
        self.send(&f);
        self.read_byte()
    }

    pub fn publish(&mut self, topic: &str, message: &[u8]) -> u8 {
        self.request(&Request::Publish {
            priority: 0x7f,
            topic,
            message,
        })
    }

    pub fn subscribe(&mut self, topics: &[&str]) -> u8 {
        let body = join_topics(topics);
        self.request(&Request::Subscribe(Topics::new(&body).unwrap()))
    }

    pub fn unsubscribe(&mut self, topics: &[&str]) -> u8 {
        let body = join_topics(topics);
        self.request(&Request::Unsubscribe(Topics::new(&body).unwrap()))
    }

    /// Next pushed message (beacons skipped): (priority, topic, message).
    pub fn next_message(&mut self) -> (u8, String, Vec<u8>) {
        let limits = Limits {
            max_pub_size: u32::MAX,
            ..Limits::default()
        };
        loop {
            match decode_data_frame(&self.rx, &limits).expect("valid data frame") {
                Decoded::Frame { frame, len } => {
                    let out = match frame {
                        DataFrame::Nop => None,
                        DataFrame::Message(p) => {
                            Some((p.priority, p.topic.to_string(), p.message.to_vec()))
                        }
                    };
                    self.rx.drain(..len);
                    if let Some(m) = out {
                        return m;
                    }
                }
                Decoded::Incomplete { .. } => {
                    let mut buf = [0u8; 65536];
                    let n = self.read_some(&mut buf, "read data socket");
                    assert!(n > 0, "data socket closed");
                    self.rx.extend_from_slice(&buf[..n]);
                }
            }
        }
    }
}

/// Topics joined by NUL (the Python client's layout).
pub fn join_topics(topics: &[&str]) -> Vec<u8> {
    topics.join("\0").into_bytes()
}

/// The `psrtd` binary under test: `$PSRTD_BIN` (the test command sets it to
/// the release build) or the one cargo built for this test run.
pub fn psrtd_bin() -> PathBuf {
    std::env::var_os("PSRTD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_psrtd")))
}

/// `psrtd` as a child process; its log lines are collected.
pub struct Proc {
    pub child: Child,
    pub addr: Option<SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
    /// The threads collecting stdout and stderr (done at the pipes' EOF).
    readers: Vec<JoinHandle<()>>,
}

impl Proc {
    /// Starts `psrtd ARGS`, and if it binds TCP, waits for its listening line.
    pub fn spawn(args: &[&str]) -> Self {
        let mut p = Self::spawn_no_wait(args);
        p.addr = p.wait_log("listening on", IO_TIMEOUT).and_then(|line| {
            let start = line.find("tcp:")? + 4;
            let rest = &line[start..];
            let end = rest.find([',', ' ']).unwrap_or(rest.len());
            rest[..end].parse().ok()
        });
        p
    }

    /// Waits for a log line containing `needle`; returns it.
    pub fn wait_log(&self, needle: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return Some(l.clone());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn signal(&self, sig: i32) {
        // The test crate may use libc; the server's own unsafe is confined to sys.rs.
        let rc = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(rc.success());
    }

    /// Waits for exit; returns the exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        wait_child(&mut self.child, within)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `psrtd ARGS` to completion; returns (exit code, stdout+stderr).
pub fn run_psrtd(args: &[&str], within: Duration) -> (Option<i32>, String) {
    let mut p = Proc::spawn_no_wait(args);
    let code = p.wait_exit(within);
    if code.is_some() {
        // All output is in once both pipes reach EOF.
        for r in std::mem::take(&mut p.readers) {
            let _ = r.join();
        }
    }
    (code, p.log_text())
}

impl Proc {
    /// Starts `psrtd ARGS` without waiting for a listening line.
    pub fn spawn_no_wait(args: &[&str]) -> Self {
        Self::spawn_with_env(args, &[])
    }

    /// Starts `psrtd ARGS` with extra environment variables.
    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(psrtd_bin())
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn psrtd");
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            }));
        }
        Self {
            child,
            addr: None,
            log,
            readers,
        }
    }
}

/// Writes a config file for the binary in `dir` (bind 127.0.0.1:0).
pub fn write_config(dir: &TempDir, extra_server: &str, extra_auth: &str) -> PathBuf {
    let text = format!(
        "server:\n  data_queue: 1024\n  pid_file: {}\n{extra_server}proto:\n  bind: 127.0.0.1:0\n  timeout: 5\nauth:\n  allow_anonymous: true\n  acl: acl.yml\n{extra_auth}",
        dir.path("psrtd.pid").display()
    );
    dir.write("config.yml", &text)
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// A logged-in client: control socket plus a bound data socket whose
/// beacon interval (30 s) is far beyond any test, so silence checks hold.
pub struct Session {
    pub ctl: Raw,
    pub data: Raw,
    pub token: Token,
}

impl Session {
    /// Data-socket TIMEOUT_SEC used by [`Session`]: beacons every 30 s.
    pub const QUIET_TIMEOUT_SEC: u8 = 60;

    pub fn login(addr: SocketAddr, login: &str, password: &str) -> Self {
        let (ctl, token) = Raw::control(addr, login, password);
        let data = Raw::data(addr, token, Self::QUIET_TIMEOUT_SEC);
        Self { ctl, data, token }
    }

    pub fn anonymous(addr: SocketAddr) -> Self {
        Self::login(addr, "", "")
    }

    /// Subscribes (Python layout) and asserts `01`.
    pub fn sub(&mut self, topics: &[&str]) {
        assert_eq!(self.ctl.subscribe(topics), 0x01, "subscribe {topics:?}");
    }

    /// Next message as (topic, payload).
    pub fn recv(&mut self) -> (String, Vec<u8>) {
        let (_, topic, message) = self.data.next_message();
        (topic, message)
    }

    /// Asserts the next message is exactly `topic` / `message`.
    pub fn expect(&mut self, topic: &str, message: &[u8]) {
        let (t, m) = self.recv();
        assert_eq!(
            (t.as_str(), m.as_slice()),
            (topic, message),
            "unexpected message"
        );
    }
}

impl Raw {
    /// PUBLISH with an explicit priority byte; returns the reply.
    pub fn publish_prio(&mut self, priority: u8, topic: &str, message: &[u8]) -> u8 {
        self.request(&Request::Publish {
            priority,
            topic,
            message,
        })
    }

    /// SUBSCRIBE with a raw body (any NUL layout); returns the reply.
    pub fn subscribe_raw(&mut self, body: &[u8]) -> u8 {
        self.request(&Request::Subscribe(Topics::new(body).unwrap()))
    }

    /// UNSUBSCRIBE with a raw body; returns the reply.
    pub fn unsubscribe_raw(&mut self, body: &[u8]) -> u8 {
        self.request(&Request::Unsubscribe(Topics::new(body).unwrap()))
    }

    pub fn nop(&mut self) -> u8 {
        self.request(&Request::Nop)
    }

    /// Greeting, then sends a login frame and asserts the server closes
    /// without sending a token.
    pub fn expect_login_refused(addr: SocketAddr, login: &str, password: &str) {
        let mut c = Self::connect(addr);
        c.greet(StreamKind::Control);
        let mut f = Vec::new();
        encode_login(&Login { login, password }, &mut f);
        c.send(&f);
        let got = c.expect_closed();
        assert!(
            got.is_empty(),
            "login {login:?}: no token expected, got {got:02x?}"
        );
    }
}

/// Waits until `text()` contains `needle` at least `count` times.
pub fn wait_count(text: impl Fn() -> String, needle: &str, count: usize, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if text().matches(needle).count() >= count {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A GET on the stats endpoint: (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect stats");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    let (head, body) = out.split_once("\r\n\r\n").expect("response head");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (code, body.to_string())
}

/// Polls `check` every 20 ms until it returns true or `within` passes.
pub fn wait_until(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// Waits up to `within` for a child process to exit; its exit code, or
/// None if it is still running.
pub fn wait_child(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP socket bound to the loopback address `src` (any of 127.0.0.0/8)
/// and connected to `dst`, so one test can be many client addresses. With
/// `nonblocking` the connect only starts (the socket is non-blocking and
/// becomes writable once connected); otherwise it is a blocking socket with
/// the usual timeouts.
#[allow(unsafe_code)]
pub fn connect_from(
    src: std::net::Ipv4Addr,
    dst: SocketAddr,
    nonblocking: bool,
) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(dst) = dst else {
        panic!("IPv4 only");
    };
    let sockaddr = |a: std::net::SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let flags =
        libc::SOCK_STREAM | libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, flags, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket nobody else owns; the stream closes it.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let from = sockaddr(std::net::SocketAddrV4::new(src, 0));
    // SAFETY: `from` is a live sockaddr_in of `len` bytes.
    if unsafe { libc::bind(fd, (&raw const from).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let to = sockaddr(dst);
    // SAFETY: `to` is a live sockaddr_in of `len` bytes.
    if unsafe { libc::connect(fd, (&raw const to).cast(), len) } != 0 {
        let e = std::io::Error::last_os_error();
        if !(nonblocking && e.raw_os_error() == Some(libc::EINPROGRESS)) {
            return Err(e);
        }
    }
    if !nonblocking {
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
    }
    Ok(stream)
}

impl Raw {
    /// [`Raw::connect`] from the loopback address `src`.
    pub fn connect_from(src: std::net::Ipv4Addr, addr: SocketAddr) -> Self {
        let s = connect_from(src, addr, false).expect("connect");
        Self { s, rx: Vec::new() }
    }
}
