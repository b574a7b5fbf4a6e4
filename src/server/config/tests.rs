//! Unit tests of `config.yml` parsing: the reference files, the new keys,
//! and the errors with file and line.

use super::*;

fn parse_mqtt(text: &str) -> Result<Config, String> {
    parse(text).map_err(|e| e.to_string())
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/psrtd/config.yml"))
}

/// The reference repository's test config, with its paths.
const REFERENCE: &str = r#"
server:
  workers: 4
  latency_warn: 500000
  data_queue: 1024
  max_topic_depth: 64
  max_topic_length: 1000000
  max_pub_size: 1100000
  pid_file: /tmp/psrtd.pid
  bind_stats: 0.0.0.0:8880
  license: /opt/workstuff/psrt-license.yml
proto:
  bind:
    - 0.0.0.0:2873
    - /tmp/psrt.sock
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
"#;

#[test]
fn reference_config_loads() {
    let c = parse(REFERENCE).unwrap();
    assert_eq!(
        c.bind,
        [
            BindAddr::Tcp("0.0.0.0:2873".into()),
            BindAddr::Unix("/tmp/psrt.sock".into())
        ]
    );
    assert_eq!(c.bind_udp, ["0.0.0.0:2873"]);
    assert_eq!(c.timeout, Duration::from_secs(10));
    assert_eq!(c.limits.max_topic_depth, 64);
    assert_eq!(c.limits.max_pub_size, 1_100_000);
    assert_eq!(c.data_queue, 1024);
    assert_eq!(
        c.auth.acl,
        AclSource::File("/etc/psrtd/acl.yml".into()),
        "relative paths are taken from the config folder"
    );
    assert_eq!(
        c.auth.password_file.as_deref(),
        Some(Path::new("/etc/psrtd/psrt-passwd"))
    );
    assert!(c.allow_anonymous);
    assert_eq!(
        c.auth.tls,
        Some(TlsFiles {
            cert: "/etc/psrtd/certs/server.crt".into(),
            key: "/etc/psrtd/certs/server.key".into()
        })
    );
    assert_eq!(c.ignored.len(), 2, "workers and license: {:?}", c.ignored);
    assert_eq!(
        c.cluster_file.as_deref(),
        Some(Path::new("/etc/psrtd/cluster.yml"))
    );
    assert_eq!(
        c.cluster_queue_total,
        super::DEFAULT_CLUSTER_QUEUE_TOTAL,
        "the reference file has no total: the default"
    );
    assert_eq!(c.pid_file.as_deref(), Some(Path::new("/tmp/psrtd.pid")));
}

#[test]
fn minimal_reference_config_and_defaults() {
    let c = parse(
            "server:\n  pid_file: /tmp/x.pid\n  latency_warn: 0\n  data_queue: 10\n  max_topic_depth: 8\n  max_topic_length: 100\n  max_pub_size: 1000\nproto:\n  bind: 127.0.0.1:2873\n  bind_udp: []\n  allow_no_tls: true\nauth:\n  allow_anonymous: false\n  acl: /etc/psrtd/acl.yml\n",
        )
        .unwrap();
    assert_eq!(c.bind, [BindAddr::Tcp("127.0.0.1:2873".into())]);
    assert!(c.bind_udp.is_empty());
    assert_eq!(c.timeout, Duration::from_secs(5));
    assert_eq!(c.data_queue_bytes, DEFAULT_DATA_QUEUE_BYTES);
    assert!(!c.allow_anonymous);
    assert!(c.ignored.is_empty());
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let e = parse("server:\n  data_queue: 5\n  foo: 1\nauth:\n  acl: a.yml\n").unwrap_err();
    assert_eq!(e.line, Some(3), "{e}");
    assert!(
        e.to_string().starts_with("/etc/psrtd/config.yml:3: "),
        "{e}"
    );
    assert!(e.message.contains("unknown field `foo`"), "{e}");
}

#[test]
fn invalid_values() {
    for (text, needle) in [
        ("auth:\n  allow_anonymous: true\n", "auth.acl is required"),
        ("proto:\n  timeout: -1\nauth:\n  acl: a\n", "proto.timeout"),
        ("proto:\n  bind: nonsense\nauth:\n  acl: a\n", "proto.bind"),
        (
            "server:\n  bind_stats: localhost:80\nauth:\n  acl: a\n",
            "bind_stats",
        ),
        ("server:\n  data_queue: 0\nauth:\n  acl: a\n", "data_queue"),
        (
            "proto:\n  bind_udp: 2873\nauth:\n  acl: a\n",
            "2: proto: an address string",
        ),
        ("proto:\n  bind_udp: '2873'\nauth:\n  acl: a\n", "bind_udp"),
        (
            "proto:\n  udp_frame_size: 10\nauth:\n  acl: a\n",
            "udp_frame_size",
        ),
        (
            "server:\n  max_pub_size: 1000\n  data_queue_bytes: 100\nauth:\n  acl: a\n",
            "data_queue_bytes",
        ),
        (
            "server:\n  data_queue_bytes: 2000000\n  max_queued_bytes: 1000000\nauth:\n  acl: a\n",
            "max_queued_bytes",
        ),
        ("proto:\n  tls_cert: c.pem\nauth:\n  acl: a\n", "tls_key"),
        (
            "proto:\n  tls_key: k.pem\nauth:\n  acl: a\n",
            "tls_cert is missing",
        ),
        ("proto:\n  tls_pkcs12: id.p12\nauth:\n  acl: a\n", "PKCS#12"),
        (
            "proto:\n  allow_no_tls: false\nauth:\n  acl: a\n",
            "allow_no_tls",
        ),
        (
            "server:\n  data_queue: many\nauth:\n  acl: a\n",
            "invalid type",
        ),
    ] {
        let e = parse(text).unwrap_err();
        assert!(e.to_string().contains(needle), "{text:?} -> {e}");
    }
}

#[test]
fn embedded_default_is_loopback_and_anonymous() {
    let c = Config::embedded_default();
    assert_eq!(c.bind, [BindAddr::Tcp("127.0.0.1:2873".into())]);
    assert_eq!(c.bind_udp, ["127.0.0.1:2873"]);
    assert!(c.allow_anonymous);
    assert_eq!(c.auth.acl, AclSource::AnonymousFullAccess);
    assert!(c.source.is_none());
}

#[test]
fn auth_worker_and_udp_waiting_keys() {
    let c = parse("auth:\n  acl: a\n").unwrap();
    let d = Config::embedded_default();
    for c in [&c, &d] {
        assert_eq!(c.auth_workers, 0, "automatic");
        assert_eq!(c.udp_pending_bytes, 4 << 20);
        assert_eq!(c.udp_pending_bytes_per_check, 256 << 10);
        assert_eq!(c.udp_replay_window, 4096);
    }
    let c = parse(
        "server:\n  auth_workers: 2\n  udp_pending_bytes: 1000\n  udp_replay_window: 64\nauth:\n  acl: a\n",
    )
    .unwrap();
    assert_eq!(c.auth_workers, 2);
    assert_eq!(
        (c.udp_pending_bytes, c.udp_pending_bytes_per_check),
        (1000, 1000),
        "the per-check default is capped by the total"
    );
    assert_eq!(c.udp_replay_window, 64);
    let c = parse("server:\n  udp_pending_bytes: 0\nauth:\n  acl: a\n").unwrap();
    assert_eq!(c.udp_pending_bytes_per_check, 0, "0: nothing waits");
    for (text, needle) in [
        ("server:\n  auth_workers: 65\n", "server.auth_workers"),
        (
            "server:\n  udp_pending_bytes: 10\n  udp_pending_bytes_per_check: 11\n",
            "udp_pending_bytes_per_check: 11 is above",
        ),
        ("server:\n  udp_replay_window: 1\n", "udp_replay_window"),
        (
            "server:\n  udp_replay_window: 2000000\n",
            "udp_replay_window",
        ),
    ] {
        let e = parse(&format!("{text}auth:\n  acl: a\n")).unwrap_err();
        assert!(e.to_string().contains(needle), "{text:?} -> {e}");
    }
}

#[test]
fn listen_backlog_defaults_to_somaxconn_and_parses() {
    let c = parse("auth:\n  acl: a\n").unwrap();
    assert_eq!(c.listen_backlog, None, "the kernel's somaxconn");
    assert_eq!(Config::embedded_default().listen_backlog, None);
    let c = parse("server:\n  listen_backlog: 1024\nauth:\n  acl: a\n").unwrap();
    assert_eq!(c.listen_backlog, Some(1024));
    for bad in ["0", "4294967295"] {
        let e = parse(&format!(
            "server:\n  listen_backlog: {bad}\nauth:\n  acl: a\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("server.listen_backlog"), "{e}");
    }
}

#[test]
fn busy_poll_is_100_us_by_default_can_be_turned_off_and_is_bounded() {
    assert_eq!(parse("auth:\n  acl: a\n").unwrap().busy_poll_us, 100);
    assert_eq!(
        Config::embedded_default().busy_poll_us,
        DEFAULT_BUSY_POLL_US
    );
    let c = parse("server:\n  busy_poll_us: 0\nauth:\n  acl: a\n").unwrap();
    assert_eq!(c.busy_poll_us, 0);
    let c = parse("server:\n  busy_poll_us: 20\nauth:\n  acl: a\n").unwrap();
    assert_eq!(c.busy_poll_us, 20);
    let c = parse("server:\n  busy_poll_us: 1000\nauth:\n  acl: a\n").unwrap();
    assert_eq!(c.busy_poll_us, MAX_BUSY_POLL_US);
    for bad in ["1001", "-5", "fast"] {
        let e = parse(&format!(
            "server:\n  busy_poll_us: {bad}\nauth:\n  acl: a\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("busy_poll_us"), "{bad}: {e}");
    }
}

#[test]
fn admission_keys_have_safe_defaults_and_parse() {
    let c = parse("auth:\n  acl: a\n").unwrap();
    assert_eq!((c.max_handshakes_per_ip, c.max_tls_handshakes), (64, 64));
    let d = Config::embedded_default();
    assert_eq!((d.max_handshakes_per_ip, d.max_tls_handshakes), (64, 64));
    let c =
        parse("server:\n  max_handshakes_per_ip: 0\n  max_tls_handshakes: 8\nauth:\n  acl: a\n")
            .unwrap();
    assert_eq!(c.max_handshakes_per_ip, 0, "0 turns the cap off");
    assert_eq!(c.max_tls_handshakes, 8);
    let e = parse("server:\n  max_tls_handshakes: -1\nauth:\n  acl: a\n").unwrap_err();
    assert!(e.to_string().contains("server.max_tls_handshakes"), "{e}");
}

// The `mqtt` section (`mqtt.rs`).

#[test]
fn no_section_no_listener_and_the_embedded_default() {
    let c = parse_mqtt("auth:\n  acl: a.yml\n").unwrap();
    assert!(c.mqtt.is_none());
    let d = Config::embedded_default();
    let m = d.mqtt.unwrap();
    assert_eq!(m.bind, [BindAddr::Tcp("127.0.0.1:1883".into())]);
    assert_eq!(m.max_packet_size, d.limits.max_pub_size);
}

#[test]
fn section_keys_and_defaults() {
    let c = parse_mqtt(
        "server:\n  max_pub_size: 5000\nproto:\n  tls_cert: c.pem\n  tls_key: k.pem\nmqtt:\n  bind: [0.0.0.0:1883, /run/psrtd/mqtt.sock]\n  bind_tls: 0.0.0.0:8883\n  max_keepalive: 600\n  max_inflight: 10\n  session_expiry: 60\nauth:\n  acl: a.yml\n",
    )
    .unwrap();
    let m = c.mqtt.unwrap();
    assert_eq!(
        m.bind,
        [
            BindAddr::Tcp("0.0.0.0:1883".into()),
            BindAddr::Unix("/run/psrtd/mqtt.sock".into())
        ]
    );
    assert_eq!(m.bind_tls, ["0.0.0.0:8883"]);
    assert_eq!(m.max_packet_size, 5000, "defaults to server.max_pub_size");
    assert_eq!((m.max_keepalive, m.max_inflight), (600, 10));
    assert_eq!(m.session_expiry.as_secs(), 60);
    assert!(!m.retain, "retain is off by default");
    assert_eq!(m.retain_bytes, 16 << 20);
    let c = parse_mqtt(
        "mqtt:\n  bind: 127.0.0.1:1883\n  retain: true\n  retain_bytes: 4096\nauth:\n  acl: a.yml\n",
    )
    .unwrap();
    let m = c.mqtt.unwrap();
    assert_eq!((m.retain, m.retain_bytes), (true, 4096));
    assert!(!Config::embedded_default().mqtt.unwrap().retain);
}

#[test]
fn invalid_sections() {
    for (text, needle) in [
        ("mqtt:\n  bind: 1883\n", "mqtt: an address string"),
        ("mqtt:\n  bind: nonsense\n", "mqtt.bind"),
        ("mqtt:\n  bind_tls: 0.0.0.0:8883\n", "TLS identity"),
        (
            "mqtt:\n  bind: 127.0.0.1:1883\n  retained: true\n",
            "unknown field `retained`",
        ),
        (
            "mqtt:\n  bind: 127.0.0.1:1883\n  retain: true\n  retain_bytes: 0\n",
            "mqtt.retain_bytes",
        ),
        (
            "mqtt:\n  bind: 127.0.0.1:1883\n  retain: yes please\n",
            "retain",
        ),
        ("mqtt: {}\n", "no listener"),
        (
            "mqtt:\n  bind: 127.0.0.1:1883\n  max_packet_size: 3\n",
            "max_packet_size",
        ),
        (
            "mqtt:\n  bind: 127.0.0.1:1883\n  max_inflight: 0\n",
            "max_inflight",
        ),
        (
            "mqtt:\n  bind: 127.0.0.1:1883\n  max_keepalive: 0\n",
            "max_keepalive",
        ),
    ] {
        let e = parse_mqtt(&format!("{text}auth:\n  acl: a.yml\n")).unwrap_err();
        assert!(e.contains(needle), "{text:?} -> {e}");
    }
}

// The `bridges` list (`bridge.rs`).

#[test]
fn bridges_keys_and_defaults() {
    let c = parse_mqtt(
        "auth:\n  acl: a.yml\nbridges:\n  - name: cloud\n    url: mqtt://broker.example:1884\n    user: gw7\n    password: secret\n    client_id: psrtd-gw7\n    out: ['plant/#']\n    in: ['cmd/#', '+/x']\n    qos: 0\n    queue_bytes: 8MiB\n    keepalive: 60\n    inflight: 1024\n  - name: edge-2\n    url: mqtt://10.0.0.2\n    out: ['#']\n",
    )
    .unwrap();
    assert_eq!(c.bridges.len(), 2);
    let b = &c.bridges[0];
    assert_eq!((b.host.as_str(), b.port), ("broker.example", 1884));
    assert_eq!(b.user.as_deref(), Some("gw7"));
    assert_eq!(b.inbound, ["cmd/#", "+/x"]);
    assert_eq!(
        (b.qos, b.queue_bytes, b.keepalive, b.inflight),
        (0, 8 << 20, 60, 1024)
    );
    assert!(!format!("{b:?}").contains("secret"), "no password in logs");
    let d = &c.bridges[1];
    assert_eq!((d.port, d.qos, d.queue_bytes), (1883, 1, 64 << 20));
    assert!(d.client_id.starts_with("psrtd-") && d.client_id.ends_with("-edge-2"));
    assert!(d.inbound.is_empty() && d.tls_ca_pem.is_none());
    assert!(Config::embedded_default().bridges.is_empty());
}

#[test]
fn invalid_bridges() {
    let one = |extra: &str| {
        format!("auth:\n  acl: a.yml\nbridges:\n  - name: b\n    url: mqtt://h:1883\n{extra}")
    };
    for (text, needle) in [
        (one("    out: [a]\n    qos: 2\n"), "qos: 2"),
        (one(""), "nothing to bridge"),
        (one("    out: ['a/#/b']\n"), "not an MQTT filter"),
        (one("    in: ['a+']\n"), "not an MQTT filter"),
        (one("    out: [a]\n    queue_bytes: 12 parsecs\n"), "not a size"),
        (one("    out: [a]\n    queue_bytes: 100\n"), "below 1KiB"),
        (one("    out: [a]\n    password: p\n"), "password without user"),
        (one("    out: [a]\n    tls_ca: ca.pem\n"), "only for mqtts"),
        (one("    out: [a]\n    inflight: 5000\n"), "inflight"),
        (one("    out: [a]\n    keepalive: 1\n"), "keepalive"),
        (one("    out: [a]\n    spool_bytes: 1GiB\n"), "spool_bytes without spool"),
        (one("    out: [a]\n    retain: true\n"), "unknown field `retain`"),
        (
            "auth:\n  acl: a.yml\nbridges:\n  - name: b\n    url: mqtts://h\n    out: [a]\n"
                .into(),
            "needs tls_ca",
        ),
        (
            "auth:\n  acl: a.yml\nbridges:\n  - name: b\n    url: mqtts://h\n    tls_ca: /nonexistent/ca.pem\n    out: [a]\n"
                .into(),
            "cannot read",
        ),
        (
            "auth:\n  acl: a.yml\nbridges:\n  - name: b\n    url: tcp://h\n    out: [a]\n".into(),
            "mqtt:// or mqtts://",
        ),
        (
            "auth:\n  acl: a.yml\nbridges:\n  - name: 'a b'\n    url: mqtt://h\n    out: [a]\n"
                .into(),
            "must be 1 to 64",
        ),
        (
            "auth:\n  acl: a.yml\nbridges:\n  - {name: b, url: 'mqtt://h', out: [a]}\n  - {name: b, url: 'mqtt://g', out: [a]}\n"
                .into(),
            "used twice",
        ),
    ] {
        let e = parse_mqtt(&text).unwrap_err();
        assert!(e.contains(needle), "{text:?} -> {e}");
        assert!(e.contains("bridges") || e.contains("unknown field"), "{e}");
    }
}
