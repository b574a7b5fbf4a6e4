//! The client library and psrt-cli over TLS against the real server: a CA
//! and a server certificate made with rcgen at test time, the server started
//! in-process with them. Covers pub/sub (small, 1 MB, pipelined), the
//! keep-alive over TLS, bye, every way the handshake or its setup can fail,
//! and psrt-cli's --tls / --tls-ca in publish, subscribe and benchmark mode.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::pki::{Pki, pki, pki_for};
use common::{IO_TIMEOUT, Setup, TempDir, TestServer};
use psrt::client::{Client, Config, Error};
use psrt::protocol::DEFAULT_PRIORITY;
use psrt::server::config::TlsFiles;

/// A server with `setup` and the TLS identity of `pki`; `tweak` changes
/// the rest of the config.
fn tls_server_with(
    pki: &Pki,
    setup: Setup,
    tweak: impl FnOnce(&mut psrt::server::Config) + Send + 'static,
) -> (TestServer, TempDir) {
    let dir = TempDir::new("client-tls");
    let files = TlsFiles {
        cert: dir.write("server.crt", &pki.cert_pem),
        key: dir.write("server.key", &pki.key_pem),
    };
    let srv = TestServer::with(setup.tweak(move |c| {
        c.auth.tls = Some(files);
        tweak(c);
    }));
    (srv, dir)
}

fn tls_server(pki: &Pki) -> (TestServer, TempDir) {
    tls_server_with(pki, Setup::default(), |_| {})
}

fn tls_config(path: &str, pki: &Pki) -> Config {
    Config::new(path)
        .set_tls(true)
        .set_tls_ca(Some(pki.ca_pem.clone()))
}

fn tls_error(result: Result<Client, Error>) -> String {
    match result {
        Err(Error::Tls(text)) => text,
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 256) as u8).collect()
}

/// Subscribe, publish small, 1 MB and pipelined messages between two TLS
/// clients (one by IP, one by DNS name), then bye.
#[test]
fn pubsub_small_big_pipelined_and_bye() {
    let pki = pki();
    let (srv, _dir) = tls_server(&pki);
    let sub = Client::connect(&tls_config(&srv.path(), &pki)).unwrap();
    let by_name = format!("localhost:{}", srv.addr.port());
    let publisher = Client::connect(&tls_config(&by_name, &pki).disable_data_stream()).unwrap();
    sub.subscribe("tls/#").unwrap();

    let big = payload(1_000_000);
    for message in [&b"hello over tls"[..], &[][..], &big[..]] {
        publisher
            .publish(DEFAULT_PRIORITY, "tls/a", message)
            .unwrap();
        let got = sub.recv_timeout(IO_TIMEOUT).unwrap();
        assert_eq!(got.topic, "tls/a");
        assert_eq!(got.data.len(), message.len());
        assert!(got.data == message, "payload differs");
    }

    // The subscriber publishes to itself: control and data socket in use
    // at the same time, each over its own TLS session.
    sub.publish(0x10, "tls/self", b"me").unwrap();
    let got = sub.recv_timeout(IO_TIMEOUT).unwrap();
    assert_eq!(
        (got.topic.as_str(), &got.data[..], got.priority),
        ("tls/self", &b"me"[..], 0x10)
    );

    let n = 2000;
    for i in 0..n {
        publisher
            .publish_pipelined(DEFAULT_PRIORITY, "tls/many", format!("{i}").as_bytes())
            .unwrap();
    }
    let report = publisher.wait_pipelined().unwrap();
    assert_eq!(report.ok, n);
    for i in 0..n {
        let got = sub.recv_timeout(IO_TIMEOUT).unwrap();
        assert_eq!(got.data, format!("{i}").as_bytes());
    }

    sub.unsubscribe("tls/#").unwrap();
    publisher.nop().unwrap();
    publisher.bye().unwrap();
    assert!(!publisher.is_connected());
    sub.bye().unwrap();
    assert!(!sub.is_connected());
    assert!(matches!(sub.nop(), Err(Error::Disconnected)));
}

/// With a 1 s server timeout the pinger's NOPs (control, under the mutex)
/// and the server's beacons (data, read by the reader thread) keep a TLS
/// session alive well past it.
#[test]
fn keepalive_over_tls() {
    let pki = pki();
    let (srv, _dir) = tls_server_with(&pki, Setup::default(), |c| {
        c.timeout = Duration::from_secs(1);
    });
    let config = tls_config(&srv.path(), &pki).set_timeout(Duration::from_secs(1));
    let client = Client::connect(&config).unwrap();
    client.subscribe("idle/#").unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(client.is_connected());
    client
        .publish(DEFAULT_PRIORITY, "idle/x", b"still")
        .unwrap();
    assert_eq!(client.recv_timeout(IO_TIMEOUT).unwrap().data, b"still");
    client.bye().unwrap();
}

/// Login over TLS: a user with a password, and a refused login reported
/// as such (the server closes the TLS session, as it closes a plain one).
#[test]
fn login_over_tls() {
    let pki = pki();
    let setup = Setup::default()
        .acl("op:\n  sub: '#'\n  pub: '#'\n")
        .user("op", "op-secret");
    let (srv, _dir) = tls_server_with(&pki, setup, |c| c.allow_anonymous = false);
    let client =
        Client::connect(&tls_config(&srv.path(), &pki).set_auth("op", "op-secret")).unwrap();
    client.subscribe("a").unwrap();
    client.publish(DEFAULT_PRIORITY, "a", b"1").unwrap();
    assert_eq!(client.recv_timeout(IO_TIMEOUT).unwrap().data, b"1");
    client.bye().unwrap();
    for (user, password) in [("op", "wrong"), ("nobody", "x"), ("", "")] {
        let config = tls_config(&srv.path(), &pki).set_auth(user, password);
        match Client::connect(&config) {
            Err(Error::LoginFailed) => {}
            other => panic!("{user:?}/{password:?}: {other:?}"),
        }
    }
}

/// A CA that did not sign the server certificate, and a certificate for
/// another name: the handshake fails with a TLS error saying why.
#[test]
fn handshake_verification_failures() {
    let pki = pki();
    let (srv, _dir) = tls_server(&pki);
    let other = pki_for(&["localhost", "127.0.0.1"]);
    let text = tls_error(Client::connect(&tls_config(&srv.path(), &other)));
    assert!(text.contains("UnknownIssuer"), "{text}");

    let wrong_name = pki_for(&["psrt.invalid"]);
    let (srv2, _dir2) = tls_server(&wrong_name);
    let text = tls_error(Client::connect(&tls_config(&srv2.path(), &wrong_name)));
    assert!(text.contains("not valid for name"), "{text}");

    // The server is fine after the failed handshakes.
    let ok = Client::connect(&tls_config(&srv.path(), &pki)).unwrap();
    ok.bye().unwrap();
}

/// A TLS client against a server without TLS is closed after the greeting
/// byte `01`; a plain client against a TLS-only server after `00`.
#[test]
fn tls_and_plain_mismatches() {
    let pki = pki();
    let plain = TestServer::start();
    let started = Instant::now();
    let text = tls_error(Client::connect(&tls_config(&plain.path(), &pki)));
    assert!(text.contains("closed the connection"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3));

    let (tls_only, _dir) = tls_server_with(&pki, Setup::default(), |c| {
        c.allow_no_tls = false;
    });
    match Client::connect(&Config::new(&tls_only.path())) {
        Err(Error::Protocol(text)) => assert!(text.contains("require TLS"), "{text}"),
        other => panic!("{other:?}"),
    }
    let ok = Client::connect(&tls_config(&tls_only.path(), &pki)).unwrap();
    ok.bye().unwrap();
}

/// The CA from a file; the setup errors that need no network.
#[test]
fn ca_file_and_setup_errors() {
    let pki = pki();
    let (srv, dir) = tls_server(&pki);
    let ca = dir.write("ca.pem", &pki.ca_pem);
    let config = Config::new(&srv.path()).set_tls(true).set_tls_ca_file(&ca);
    let client = Client::connect(&config).unwrap();
    client.bye().unwrap();

    let text = tls_error(Client::connect(&Config::new(&srv.path()).set_tls(true)));
    assert!(text.contains("CA certificate is needed"), "{text}");
    let text = tls_error(Client::connect(
        &Config::new(&srv.path())
            .set_tls(true)
            .set_tls_ca_file(dir.path("missing.pem")),
    ));
    assert!(text.contains("missing.pem"), "{text}");
    let text = tls_error(Client::connect(&tls_config("/tmp/psrt-none.sock", &pki)));
    assert!(text.contains("Unix socket"), "{text}");
    // A CA without TLS is just unused.
    let plain =
        Client::connect(&Config::new(&srv.path()).set_tls_ca(Some(pki.ca_pem.clone()))).unwrap();
    plain.bye().unwrap();
}

// ------------------------------------------------------------ psrt-cli ---

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_psrt-cli"))
}

/// Runs psrt-cli to completion (it has its own --timeout; this bounds the
/// wait anyway).
fn run_cli(args: &[&str]) -> Output {
    let mut child = cli()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn psrt-cli");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("psrt-cli {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("psrt-cli output")
}

/// A psrt-cli child killed on drop; its stdout lines come through a channel.
struct CliChild {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl CliChild {
    fn spawn(args: &[&str]) -> Self {
        let mut child = cli()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn psrt-cli");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// SIGTERM, then the exit code (the cli says bye on SIGTERM).
    fn terminate(&mut self) -> Option<i32> {
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(ok.success());
        common::wait_child(&mut self.child, IO_TIMEOUT)
    }
}

impl Drop for CliChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// psrt-cli subscribe and publish with --tls --tls-ca; a 1 MiB publish
/// received by the library; a wrong CA and a missing CA file fail cleanly.
#[test]
fn cli_publish_and_subscribe_over_tls() {
    let pki = pki();
    let (srv, dir) = tls_server(&pki);
    let ca = dir.write("ca.pem", &pki.ca_pem);
    let ca = ca.to_str().unwrap();
    let path = srv.path();

    let mut sub = CliChild::spawn(&[&path, "--tls", "--tls-ca", ca, "-t", "cli/#"]);
    // The subscription is in place once a publish gets through; until
    // then, publish again.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    'outer: while Instant::now() < deadline {
        let out = run_cli(&[
            &path,
            "--tls",
            "--tls-ca",
            ca,
            "-t",
            "cli/x",
            "-m",
            "hello tls",
        ]);
        assert!(
            out.status.success(),
            "publish: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        while let Ok(line) = sub.lines.recv_timeout(Duration::from_millis(300)) {
            seen.push(line);
            if seen.ends_with(&["cli/x".into(), "---".into(), "hello tls".into()]) {
                break 'outer;
            }
        }
    }
    assert!(
        seen.ends_with(&["cli/x".into(), "---".into(), "hello tls".into()]),
        "subscriber printed {seen:?}"
    );
    assert_eq!(sub.terminate(), Some(0), "subscriber exit code");

    // --tls-ca alone implies --tls; a generated 1 MiB payload.
    let lib_sub = Client::connect(&tls_config(&path, &pki)).unwrap();
    lib_sub.subscribe("cli/big").unwrap();
    let out = run_cli(&[&path, "--tls-ca", ca, "-t", "cli/big", "-m", "==1MiB"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = lib_sub.recv_timeout(IO_TIMEOUT).unwrap();
    assert!(got.data == payload(1024 * 1024), "1 MiB payload differs");
    lib_sub.bye().unwrap();

    // A CA that did not sign the certificate: exit 1, one line saying why.
    let other = dir.write("other-ca.pem", &pki_for(&["localhost"]).ca_pem);
    let out = run_cli(&[
        &path,
        "--tls",
        "--tls-ca",
        other.to_str().unwrap(),
        "-t",
        "cli/x",
        "-m",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TLS") && stderr.contains("UnknownIssuer"),
        "{stderr}"
    );

    let missing = dir.path("missing.pem");
    let out = run_cli(&[
        &path,
        "--tls-ca",
        missing.to_str().unwrap(),
        "-t",
        "cli/x",
        "-m",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing.pem"), "{stderr}");

    // --tls without a CA is refused before connecting.
    let out = run_cli(&[&path, "--tls", "-t", "cli/x", "-m", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-ca"));
}

/// The benchmark (several workers, each with its own TLS sessions, 1 MB
/// messages in the last stage) over TLS.
#[test]
fn cli_benchmark_over_tls() {
    let pki = pki();
    let (srv, dir) = tls_server(&pki);
    let ca = dir.write("ca.pem", &pki.ca_pem);
    let out = run_cli(&[
        &srv.path(),
        "--tls-ca",
        ca.to_str().unwrap(),
        "--benchmark",
        "--benchmark-workers",
        "2",
        "--benchmark-iterations",
        "200",
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("pub-read-1mb"), "{text}");
}
