//! `psrtd` on the command line: `-t` config checks that touch nothing
//! (T19), readable errors with file and line, `--help`, `--version`, bad
//! arguments, a bind failure at start, and the reference repository's
//! sample config.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use common::{TempDir, passwd, run_psrtd};

const WAIT: Duration = Duration::from_secs(10);
const ACL: &str = "_:\n  pub: '#'\n  sub: '#'\n";

/// A config in `dir` binding `port` on loopback and a Unix socket, with a
/// pid file; `server_extra`/`auth_extra` are appended to those sections.
fn config_text(dir: &TempDir, port: u16, server_extra: &str, proto_bind: Option<&str>) -> String {
    let bind = proto_bind.map_or_else(
        || {
            format!(
                "\n    - 127.0.0.1:{port}\n    - {}",
                dir.path("psrtd.sock").display()
            )
        },
        str::to_string,
    );
    format!(
        "server:\n  pid_file: {pid}\n{server_extra}proto:\n  bind: {bind}\n  timeout: 5\nauth:\n  allow_anonymous: true\n  acl: acl.yml\n",
        pid = dir.path("psrtd.pid").display(),
    )
}

/// Runs `psrtd -t -C config` and asserts it touched nothing.
fn check(dir: &TempDir, config: &Path) -> (Option<i32>, String) {
    let (code, out) = run_psrtd(&["-t", "-C", config.to_str().unwrap()], WAIT);
    assert!(!dir.path("psrtd.pid").exists(), "-t wrote a pid file");
    assert!(
        !dir.path("psrtd.sock").exists(),
        "-t created the unix socket"
    );
    (code, out)
}

/// `psrtd -t` on a valid config exits 0 and says "configuration OK",
/// without binding (the configured port is held by the test meanwhile),
/// writing the pid file or creating the Unix socket.
#[test]
fn test_config_ok_touches_nothing() {
    let dir = TempDir::new("t-ok");
    dir.write("acl.yml", ACL);
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let config = dir.write("config.yml", &config_text(&dir, port, "", None));
    let (code, out) = check(&dir, &config);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("configuration OK"), "{out}");
    drop(held);
}

/// Each invalid config makes `-t` exit 1 with a readable reason naming the
/// problem (and file:line where YAML knows it), leaving no files behind.
#[test]
fn test_config_invalid_variants() {
    let dir = TempDir::new("t-bad");
    let port = 1; // never bound by -t
    type Case<'a> = (&'a str, String, Option<&'a str>, &'a [&'a str]);
    let cases: Vec<Case<'_>> = vec![
        (
            "unknown key",
            config_text(&dir, port, "  foo: 1\n", None),
            Some(ACL),
            &["config.yml:3", "foo"],
        ),
        (
            "missing acl file",
            config_text(&dir, port, "", None),
            None,
            &["acl.yml", "cannot read"],
        ),
        (
            "broken acl yaml",
            config_text(&dir, port, "", None),
            Some("_:\n  pub: [x\n  sub: '#'\n"),
            &["acl.yml:"],
        ),
        (
            "unknown acl field",
            config_text(&dir, port, "", None),
            Some("_:\n  pub: '#'\n  color: red\n"),
            &["acl.yml:3", "color"],
        ),
        (
            "invalid bind",
            config_text(&dir, port, "", Some("nonsense")),
            Some(ACL),
            &["proto.bind", "nonsense"],
        ),
        (
            "yaml syntax error in config",
            "server: [\n".to_string(),
            Some(ACL),
            &["config.yml:"],
        ),
    ];
    for (what, text, acl, needles) in cases {
        let _ = std::fs::remove_file(dir.path("acl.yml"));
        if let Some(acl) = acl {
            dir.write("acl.yml", acl);
        }
        let config = dir.write("config.yml", &text);
        let (code, out) = check(&dir, &config);
        assert_eq!(code, Some(1), "{what}: code {code:?}: {out}");
        assert!(out.contains("configuration invalid"), "{what}: {out}");
        for needle in needles {
            assert!(out.contains(needle), "{what}: {needle:?} not in {out}");
        }
    }
    let (code, out) = run_psrtd(&["-t", "-C", dir.path("nope.yml").to_str().unwrap()], WAIT);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("nope.yml"), "{out}");
}

/// `--help` exits 0 and documents `-C` and `-t`; `--version` exits 0 with
/// the version; an unknown argument exits 2.
#[test]
fn help_version_and_bad_arguments() {
    let (code, out) = run_psrtd(&["--help"], WAIT);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("-C") && out.contains("-t"), "{out}");
    let (code, out) = run_psrtd(&["-h"], WAIT);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("--test-config"), "{out}");

    let (code, out) = run_psrtd(&["--version"], WAIT);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");

    for bad in [&["--bogus"][..], &["-t", "extra"], &["-C"]] {
        let (code, out) = run_psrtd(bad, WAIT);
        assert_eq!(code, Some(2), "{bad:?}: {out}");
        assert!(!out.is_empty(), "{bad:?}: a reason is printed");
    }
}

/// Starting (not `-t`) on a port that is already in use exits 1 with a
/// readable reason and leaves no pid file or Unix socket.
#[test]
fn bind_failure_at_start() {
    let dir = TempDir::new("busy");
    dir.write("acl.yml", ACL);
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let config = dir.write("config.yml", &config_text(&dir, port, "", None));
    let (code, out) = run_psrtd(&["-C", config.to_str().unwrap()], WAIT);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("cannot bind"), "{out}");
    assert!(out.contains(&port.to_string()), "{out}");
    assert!(!dir.path("psrtd.pid").exists());
    assert!(!dir.path("psrtd.sock").exists());
    drop(held);
}

/// A self-signed certificate and key for the sample config (generated in
/// process; `-t` parses and checks them).
fn write_cert_pair(dir: &TempDir) {
    std::fs::create_dir_all(dir.path("certs")).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    dir.write("certs/server.crt", &cert.pem());
    dir.write("certs/server.key", &key.serialize_pem());
}

/// `-t` checks the TLS identity: a key that does not belong to the
/// certificate, or a file that is not PEM, fails with the file named.
#[test]
fn test_config_checks_tls_files() {
    let dir = TempDir::new("tls-check");
    dir.write("acl.yml", "_:\n  sub: '#'\n");
    write_cert_pair(&dir);
    let other = rcgen::KeyPair::generate().unwrap();
    dir.write("certs/other.key", &other.serialize_pem());
    dir.write("certs/garbage.crt", "not a certificate\n");
    for (cert, key, want) in [
        ("certs/server.crt", "certs/server.key", None),
        ("certs/server.crt", "certs/other.key", Some("other.key")),
        ("certs/garbage.crt", "certs/server.key", Some("garbage.crt")),
        ("certs/missing.crt", "certs/server.key", Some("missing.crt")),
    ] {
        let config = dir.write(
            "config.yml",
            &format!("proto:\n  bind: 127.0.0.1:0\n  tls_cert: {cert}\n  tls_key: {key}\nauth:\n  acl: acl.yml\n"),
        );
        let (code, out) = run_psrtd(&["-t", "-C", config.to_str().unwrap()], WAIT);
        match want {
            None => assert_eq!(code, Some(0), "{out}"),
            Some(file) => {
                assert_eq!(code, Some(1), "{cert} {key}: {out}");
                assert!(out.contains(file), "{out}");
            }
        }
    }
}

/// The reference repository's `test-configs/config.yml` (workers,
/// latency_warn, license, TLS files, cluster config, a bind list with a
/// Unix socket, bind_udp, udp_frame_size) loads with `-t` when the files
/// it names exist, as does its ACL (which psrtd 0.3.6 itself could not
/// load).
#[test]
fn reference_sample_config_loads() {
    let dir = TempDir::new("reference");
    dir.write(
        "acl.yml",
        "_:\n  sub:\n    - '#'\n  pub:\n    - '#'\n  admin: true\ntest:\n  sub: [benchmark/#]\n  pub: [benchmark/#]\nuser1:\n  sub: '#'\n  pub: '#'\nadmin:\n  admin: true\nreplicator:\n  replicator: true\n",
    );
    dir.write(
        "psrt-passwd",
        &passwd(&[
            ("test", "123"),
            ("user1", "123"),
            ("replicator", "xxx"),
            ("admin", "123"),
        ]),
    );
    dir.write(
        "keys.yml",
        "_: 48055f55a3d9d9c24b4b1b47e4fdcbe9e1d6c07e5a5f1e40d9e6b4a4d4bf3d5a\nuser1: 26fd38045707792a9bc50f3761a58987c4a9362cf60389f341c28e37b1125d93\n",
    );
    dir.write(
        "cluster.yml",
        "- path: node2:2873\n  user: repl\n  password: \"123\"\n  timeout: 5\n",
    );
    dir.write("psrt-license.yml", "license: none\n");
    write_cert_pair(&dir);
    let config = dir.write(
        "config.yml",
        &format!(
            "server:
  workers: 4
  latency_warn: 500000
  data_queue: 1024
  max_topic_depth: 64
  max_topic_length: 1000000
  max_pub_size: 1100000
  pid_file: {pid}
  bind_stats: 0.0.0.0:8880
  license: psrt-license.yml
proto:
  bind:
    - 0.0.0.0:2873
    - {sock}
  bind_udp: 0.0.0.0:2873
  udp_frame_size: 8192
  tls_cert: certs/server.crt
  tls_key: certs/server.key
  allow_no_tls: true
  timeout: 10
auth:
  allow_anonymous: true
  password_file: psrt-passwd
  key_file: keys.yml
  acl: acl.yml
cluster:
  config: cluster.yml
",
            pid = dir.path("psrtd.pid").display(),
            sock = dir.path("psrtd.sock").display(),
        ),
    );
    let (code, out) = check(&dir, &config);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("configuration OK"), "{out}");
    assert!(out.contains("5 ACL entries, 4 users, 2 UDP keys"), "{out}");
}
