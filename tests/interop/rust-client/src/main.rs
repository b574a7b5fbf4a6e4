//! Interop check: drives a running psrtd with the published `psrt` client
//! crate (0.3.8, async, tokio) and exits non-zero on the first mismatch.
//!
//! usage: psrt-interop-rust-client [--udp UDP_ADDR --udp-key HEX] ADDR USER PASSWORD [CA_PEM OTHER_CA_PEM]
//!        psrt-interop-rust-client gen-certs DIR
//!
//! The server must allow anonymous logins with pub+sub `#`, and USER must be
//! allowed to subscribe `interop/#` and publish `interop/#` only (see the
//! interop-rust stage of tests/run.sh, which writes exactly that ACL).
//! With CA_PEM and OTHER_CA_PEM the TLS checks run too: the server must then
//! also accept TLS with a certificate for localhost and 127.0.0.1 signed by
//! CA_PEM (OTHER_CA_PEM signed nothing). `gen-certs DIR` writes such files
//! (ca.pem, server.crt, server.key, other-ca.pem).
//! With `--udp` the crate's `UdpClient` publishes to UDP_ADDR too: plain
//! (USER/PASSWORD and anonymous) and AES-256-GCM with USER's key from the
//! server's keys.yml (`--udp-key`, 64 hex chars).
//! Every await has a deadline, and the whole run has one too, so it never hangs.

mod certs;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use psrt::client::{Client, Config, UdpClient};
use psrt::{ErrorKind, Message, DEFAULT_PRIORITY};

/// Deadline of one step (a connect, a command, a receive).
const STEP: Duration = Duration::from_secs(15);
/// Deadline of the whole run.
const TOTAL: Duration = Duration::from_secs(180);
/// Client timeout: the crate pings every floor(timeout)/2 s.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle time in the keep-alive check: longer than the server's 5 s timeout.
const IDLE: Duration = Duration::from_secs(6);
/// How long a UDP check waits for an ack that must not come (on 127.0.0.1 a
/// real one takes well under a millisecond).
const NO_ACK: Duration = Duration::from_secs(2);

type Rx = async_channel::Receiver<Message>;

struct Args {
    addr: String,
    user: String,
    password: String,
    /// PEM contents of the CA that signed the server certificate, and of one
    /// that did not.
    tls: Option<(String, String)>,
    /// The server's UDP address and USER's 32-byte key.
    udp: Option<(String, Vec<u8>)>,
}

const USAGE: &str = "usage: psrt-interop-rust-client [--udp UDP_ADDR --udp-key HEX] \
                     ADDR USER PASSWORD [CA_PEM OTHER_CA_PEM]\n       \
                     psrt-interop-rust-client gen-certs DIR";

/// 64 hex chars -> 32 bytes.
fn parse_key(hex: &str) -> Result<Vec<u8>, String> {
    let bad = || format!("--udp-key: expected 64 hex characters, got {hex:?}");
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    (0..64)
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad()))
        .collect()
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let read = |path: &String| {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))
    };
    let (mut udp_addr, mut udp_key, mut v) = (None, None, Vec::new());
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--udp" => udp_addr = Some(it.next().ok_or(USAGE)?.clone()),
            "--udp-key" => udp_key = Some(parse_key(it.next().ok_or(USAGE)?)?),
            _ => v.push(arg.clone()),
        }
    }
    let udp = match (udp_addr, udp_key) {
        (Some(addr), Some(key)) => Some((addr, key)),
        (None, None) => None,
        _ => return Err(format!("--udp and --udp-key go together\n{USAGE}")),
    };
    let (addr, user, password, tls) = match v.as_slice() {
        [addr, user, password] => (addr, user, password, None),
        [addr, user, password, ca, other] => {
            (addr, user, password, Some((read(ca)?, read(other)?)))
        }
        _ => return Err(USAGE.into()),
    };
    Ok(Args {
        addr: addr.clone(),
        user: user.clone(),
        password: password.clone(),
        tls,
        udp,
    })
}

/// Awaits `fut` for at most STEP.
async fn step<T>(what: &str, fut: impl std::future::Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(STEP, fut)
        .await
        .map_err(|_| format!("{what}: no result within {STEP:?}"))
}

/// Awaits a client call that must succeed.
async fn ok<T>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, psrt::Error>>,
) -> Result<T, String> {
    step(what, fut)
        .await?
        .map_err(|e| format!("{what}: expected success, got error {:?}: {e}", e.kind()))
}

/// Awaits a client call that must fail with `kind`.
async fn fails<T>(
    what: &str,
    kind: ErrorKind,
    fut: impl std::future::Future<Output = Result<T, psrt::Error>>,
) -> Result<psrt::Error, String> {
    match step(what, fut).await? {
        Ok(_) => Err(format!("{what}: expected error {kind:?}, got success")),
        Err(e) if e.kind() == kind => Ok(e),
        Err(e) => Err(format!(
            "{what}: expected error {kind:?}, got {:?}: {e}",
            e.kind()
        )),
    }
}

async fn recv(what: &str, rx: &Rx) -> Result<Message, String> {
    step(what, rx.recv())
        .await?
        .map_err(|_| format!("{what}: the data channel closed"))
}

/// Receives one message and checks its topic and payload.
async fn expect_msg(what: &str, rx: &Rx, topic: &str, data: &[u8]) -> Result<(), String> {
    let m = recv(&format!("{what} (waiting for {topic:?})"), rx).await?;
    if m.topic() != topic {
        return Err(format!(
            "{what}: expected a message on {topic:?}, got one on {:?} ({} bytes)",
            m.topic(),
            m.data().len()
        ));
    }
    if m.data() != data {
        return Err(format!(
            "{what}: topic {topic:?}: payload differs: expected {} bytes {:?}, got {} bytes {:?}",
            data.len(),
            preview(data),
            m.data().len(),
            preview(m.data())
        ));
    }
    Ok(())
}

fn preview(d: &[u8]) -> &[u8] {
    &d[..d.len().min(16)]
}

fn no_more(what: &str, rx: &Rx) -> Result<(), String> {
    match rx.try_recv() {
        Ok(m) => Err(format!(
            "{what}: unexpected extra message on {:?} ({} bytes)",
            m.topic(),
            m.data().len()
        )),
        Err(_) => Ok(()),
    }
}

fn check(what: &str, cond: bool) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(format!("{what}: check failed"))
    }
}

fn pass(what: &str) {
    println!("ok   {what}");
}

async fn publish(c: &Client, what: &str, topic: &str, data: &[u8]) -> Result<(), String> {
    ok(
        what,
        c.publish(DEFAULT_PRIORITY, topic.to_owned(), data.to_vec()),
    )
    .await
}

fn config(a: &Args) -> Config {
    Config::new(&a.addr)
        .set_auth(&a.user, &a.password)
        .set_timeout(CLIENT_TIMEOUT)
        .build()
}

/// TLS sessions kept open over the idle check.
struct TlsHold {
    sub: Client,
    rx: Rx,
    publisher: Client,
}

/// The crate's TLS (native-tls, the CA as a PEM string) against psrtd's
/// rustls: by IP and by DNS name, small and 1 MiB messages, TLS and plain
/// sessions mixed, and a CA that did not sign the certificate.
async fn tls_checks(a: &Args, ca: &str, other_ca: &str, anon: &Client) -> Result<TlsHold, String> {
    let port = a
        .addr
        .rsplit_once(':')
        .map(|(_, port)| port)
        .ok_or("ADDR has no port")?;
    let tls = |path: &str, ca: &str| {
        Config::new(path)
            .set_timeout(CLIENT_TIMEOUT)
            .set_tls(true)
            .set_tls_ca(Some(ca.to_owned()))
    };

    // A CA that did not sign the server certificate: the connect fails.
    let what = "TLS connect with a CA that did not sign the server certificate";
    match step(what, Client::connect(&tls(&a.addr, other_ca).build())).await? {
        Ok(_) => return Err(format!("{what}: expected an error, got a session")),
        Err(e) => pass(&format!("{what} fails: {:?}: {e}", e.kind())),
    }

    // By IP (the certificate's IP SAN), as the restricted user.
    let mut sub = ok(
        "TLS connect to 127.0.0.1 with user/password",
        Client::connect(&tls(&a.addr, ca).set_auth(&a.user, &a.password).build()),
    )
    .await?;
    let rx = sub
        .take_data_channel()
        .ok_or("TLS take_data_channel: expected Some")?;
    ok("TLS subscribe", sub.subscribe("interop/tls/#".to_owned())).await?;
    pass("TLS connect by IP address (user/password, data stream)");

    // By DNS name (localhost), anonymous, without a data stream.
    let by_name = format!("localhost:{port}");
    let publisher = ok(
        "TLS connect to localhost",
        Client::connect(&tls(&by_name, ca).disable_data_stream().build()),
    )
    .await?;
    check("TLS publisher is_connected", publisher.is_connected())?;
    pass("TLS connect by DNS name (anonymous, no data stream)");

    let big: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    for (what, data) in [("small", &b"hello over TLS"[..]), ("1 MiB", &big[..])] {
        publish(
            &publisher,
            &format!("TLS publish {what}"),
            "interop/tls/a",
            data,
        )
        .await?;
        expect_msg(&format!("TLS receive {what}"), &rx, "interop/tls/a", data).await?;
    }
    pass("TLS publish and receive, small and 1 MiB");

    // A plain session publishes to the TLS subscriber.
    publish(
        anon,
        "plain publish to a TLS subscriber",
        "interop/tls/b",
        b"mixed",
    )
    .await?;
    expect_msg(
        "TLS receive from a plain session",
        &rx,
        "interop/tls/b",
        b"mixed",
    )
    .await?;
    // The restricted user's ACL holds over TLS too.
    fails(
        "TLS publish outside the user's pub ACL",
        ErrorKind::AccessDenied,
        sub.publish(DEFAULT_PRIORITY, "denied/tls".to_owned(), b"x".to_vec()),
    )
    .await?;
    check("TLS session usable after a denial", sub.is_connected())?;
    pass("plain to TLS delivery; ACL denial over TLS keeps the session");
    Ok(TlsHold { sub, rx, publisher })
}

/// A UDP publish that must fail with the crate's error for a non-OK ack:
/// `Io`, "Server response error XX" (XX = the code in lower-case hex).
async fn udp_refused(
    what: &str,
    code: &str,
    fut: impl std::future::Future<Output = Result<(), psrt::Error>>,
) -> Result<(), String> {
    let e = fails(what, ErrorKind::Io, fut).await?;
    let want = format!("Server response error {code}");
    check(
        &format!("{what}: error message {e:?} names {want:?}"),
        e.to_string().contains(&want),
    )
}

/// A confirmed UDP publish that must get no ack at all: still waiting after
/// NO_ACK. Deliberate in psrtd (README.md, "Where psrtd deliberately
/// differs"): nothing goes back to a source that did not authenticate, so
/// the crate's `publish_confirmed` (which has no timeout of its own) would
/// wait forever where the reference answers FE.
async fn udp_no_ack(
    what: &str,
    fut: impl std::future::Future<Output = Result<(), psrt::Error>>,
) -> Result<(), String> {
    match tokio::time::timeout(NO_ACK, fut).await {
        Err(_) => Ok(()),
        Ok(r) => Err(format!(
            "{what}: expected no ack within {NO_ACK:?}, got {r:?}"
        )),
    }
}

/// The crate's `UdpClient` against the server's UDP listener: plain
/// (user/password and anonymous) and AES-256-GCM, confirmed and not, seen
/// by a TCP subscriber of the same crate.
async fn udp_checks(a: &Args, udp_addr: &str, key: &[u8]) -> Result<(), String> {
    // An anonymous subscriber (the `_` ACL may subscribe anything), so that
    // it also sees whether a denied topic got through.
    let sub_cfg = Config::new(&a.addr).set_timeout(CLIENT_TIMEOUT).build();
    let mut sub = ok("UDP: subscriber connect", Client::connect(&sub_cfg)).await?;
    let rx = sub
        .take_data_channel()
        .ok_or("UDP: take_data_channel: expected Some")?;
    ok(
        "UDP: subscribe",
        sub.subscribe_bulk(vec!["interop/udp/#".to_owned(), "denied/udp".to_owned()]),
    )
    .await?;
    let udp =
        |what: &'static str| async move { ok(what, UdpClient::connect(udp_addr.to_owned())).await };

    // Plain, with the user's login and password.
    let plain = udp("UDP connect (plain)")
        .await?
        .with_auth(&a.user, &a.password);
    let binary: Vec<u8> = (0..=255u8).collect();
    ok(
        "UDP plain publish_confirmed",
        plain.publish_confirmed("interop/udp/plain", &binary),
    )
    .await?;
    expect_msg("UDP plain confirmed", &rx, "interop/udp/plain", &binary).await?;
    ok(
        "UDP plain publish (no ack)",
        plain.publish("interop/udp/plain", b"no ack"),
    )
    .await?;
    expect_msg("UDP plain unconfirmed", &rx, "interop/udp/plain", b"no ack").await?;
    pass("UdpClient with_auth: publish_confirmed and publish delivered to a TCP subscriber");

    // Anonymous: no with_auth (empty login and password), the `_` ACL.
    let anon = udp("UDP connect (anonymous)").await?;
    ok(
        "UDP anonymous publish_confirmed",
        anon.publish_confirmed("interop/udp/anon", b"anon"),
    )
    .await?;
    expect_msg("UDP anonymous", &rx, "interop/udp/anon", b"anon").await?;
    pass("UdpClient anonymous publish_confirmed delivered");

    // AES-256-GCM with the user's key.
    let sealed = udp("UDP connect (AES-256)")
        .await?
        .with_encryption_auth(&a.user, key);
    ok(
        "UDP AES-256 publish_confirmed",
        sealed.publish_confirmed("interop/udp/aes", b"sealed"),
    )
    .await?;
    expect_msg("UDP AES-256 confirmed", &rx, "interop/udp/aes", b"sealed").await?;
    ok(
        "UDP AES-256 publish (no ack)",
        sealed.publish("interop/udp/aes", b"sealed, no ack"),
    )
    .await?;
    expect_msg(
        "UDP AES-256 unconfirmed",
        &rx,
        "interop/udp/aes",
        b"sealed, no ack",
    )
    .await?;
    pass("UdpClient with_encryption_auth (AES-256-GCM): confirmed and not, delivered");

    // Outside the user's pub ACL: FE, which the crate reports as an Io error.
    udp_refused(
        "UDP plain publish outside the pub ACL",
        "fe",
        plain.publish_confirmed("denied/udp", b"x"),
    )
    .await?;
    udp_refused(
        "UDP AES-256 publish outside the pub ACL",
        "fe",
        sealed.publish_confirmed("denied/udp", b"x"),
    )
    .await?;
    // A wildcard is no publish topic: FF.
    udp_refused(
        "UDP publish to a wildcard topic",
        "ff",
        plain.publish_confirmed("interop/udp/+", b"x"),
    )
    .await?;
    pass("UDP ACL denial -> Err(Io, \"Server response error fe\"); wildcard topic -> ff");

    // Not authenticated: no ack at all (deliberate, see udp_no_ack).
    let wrong_pw = udp("UDP connect (wrong password)")
        .await?
        .with_auth(&a.user, "wrong-password");
    udp_no_ack(
        "UDP plain publish with a wrong password",
        wrong_pw.publish_confirmed("interop/udp/plain", b"must not arrive"),
    )
    .await?;
    let wrong_key = udp("UDP connect (wrong key)")
        .await?
        .with_encryption_auth(&a.user, &[0x5a; 32]);
    udp_no_ack(
        "UDP AES-256 publish with a wrong key",
        wrong_key.publish_confirmed("interop/udp/aes", b"must not arrive"),
    )
    .await?;
    pass(&format!(
        "UDP wrong password / wrong key: no ack within {NO_ACK:?} (deliberate: no answer to unauthenticated sources)"
    ));

    // Many, mixed, in order: one UDP socket is read in order.
    let n = 300;
    for i in 0..n {
        let (c, data) = (if i % 2 == 0 { &plain } else { &sealed }, format!("{i}"));
        if i % 3 == 0 {
            ok(
                "UDP publish_confirmed (many)",
                c.publish_confirmed("interop/udp/many", data.as_bytes()),
            )
            .await?;
        } else {
            ok(
                "UDP publish (many)",
                c.publish("interop/udp/many", data.as_bytes()),
            )
            .await?;
        }
    }
    for i in 0..n {
        expect_msg(
            "UDP many (in order)",
            &rx,
            "interop/udp/many",
            format!("{i}").as_bytes(),
        )
        .await?;
    }
    // Nothing refused above was delivered: a sentinel comes next.
    ok(
        "UDP sentinel",
        anon.publish_confirmed("interop/udp/end", b"end"),
    )
    .await?;
    expect_msg("UDP sentinel first", &rx, "interop/udp/end", b"end").await?;
    no_more("after the UDP checks", &rx)?;
    pass(&format!(
        "UDP: {n} plain and AES-256 publishes (every third confirmed) in order; nothing refused was delivered"
    ));
    ok("UDP: subscriber bye", sub.bye()).await?;
    Ok(())
}

async fn run(a: &Args) -> Result<(), String> {
    // Login failures: wrong password and unknown user.
    for (what, user, password) in [
        (
            "login with a wrong password",
            a.user.as_str(),
            "wrong-password",
        ),
        ("login as an unknown user", "no-such-user", "x"),
    ] {
        let cfg = Config::new(&a.addr)
            .set_auth(user, password)
            .set_timeout(CLIENT_TIMEOUT);
        fails(what, ErrorKind::AccessDenied, Client::connect(&cfg)).await?;
        pass(what);
    }

    // Anonymous (no set_auth), without a data stream: publisher for later.
    let anon_cfg = Config::new(&a.addr)
        .set_timeout(CLIENT_TIMEOUT)
        .disable_data_stream()
        .build();
    let anon = ok("anonymous connect", Client::connect(&anon_cfg)).await?;
    check("anonymous client is_connected", anon.is_connected())?;
    pass("anonymous connect (no data stream)");

    // The user's session, with its data channel.
    let mut c = ok("connect with user/password", Client::connect(&config(a))).await?;
    check("client is_connected", c.is_connected())?;
    let rx = c
        .take_data_channel()
        .ok_or("take_data_channel: expected Some on the first call")?;
    check(
        "take_data_channel: None on the second call",
        c.take_data_channel().is_none(),
    )?;
    pass("connect with Config::new(path).set_auth(..).set_timeout(..)");

    // subscribe + publish (own session) + receive.
    let single = "interop/rust/single";
    ok("subscribe", c.subscribe(single.to_owned())).await?;
    publish(&c, "publish (own session)", single, b"hello").await?;
    expect_msg("receive own publish", &rx, single, b"hello").await?;
    pass("subscribe, publish, receive from take_data_channel()");

    // Cross-session delivery: the anonymous client publishes.
    publish(&anon, "publish (anonymous)", single, b"from anon").await?;
    expect_msg(
        "receive another session's publish",
        &rx,
        single,
        b"from anon",
    )
    .await?;
    pass("delivery from another session");

    // subscribe_bulk (the crate ends every topic with NUL), incl. wildcards.
    let bulk = vec![
        "interop/rust/bulk/a".to_owned(),
        "interop/rust/bulk/b".to_owned(),
        "interop/rust/wild/+/x".to_owned(),
        "interop/rust/tree/#".to_owned(),
    ];
    ok("subscribe_bulk", c.subscribe_bulk(bulk.clone())).await?;
    let cases: [(&str, &[u8]); 4] = [
        ("interop/rust/bulk/a", b"a"),
        ("interop/rust/bulk/b", b"b"),
        ("interop/rust/wild/q/x", b"plus"),
        ("interop/rust/tree/1/2/3", b"hash"),
    ];
    // Non-matching topics are published first: they must never arrive.
    // (`a/#` matches one or more further levels, not `a` itself.)
    for t in [
        "interop/rust/bulk/c",
        "interop/rust/wild/q/y",
        "interop/rust/wild/q/r/x",
        "interop/rust/tree",
    ] {
        publish(&anon, "publish (no subscriber)", t, b"nope").await?;
    }
    for (t, d) in cases {
        publish(&anon, "publish (bulk)", t, d).await?;
    }
    for (t, d) in cases {
        expect_msg("receive (bulk/wildcards)", &rx, t, d).await?;
    }
    no_more("after bulk/wildcards", &rx)?;
    pass("subscribe_bulk with exact, + and # masks; non-matching topics not delivered");

    // Binary payload (every byte value, NULs included) and an empty one.
    let binary: Vec<u8> = (0..=255u8).cycle().take(1024).collect();
    publish(&anon, "publish binary", single, &binary).await?;
    expect_msg("receive binary", &rx, single, &binary).await?;
    publish(&anon, "publish empty", single, b"").await?;
    expect_msg("receive empty", &rx, single, b"").await?;
    pass("binary and empty payloads");

    // 1 MiB round trip.
    let big: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    publish(&c, "publish 1 MiB", single, &big).await?;
    expect_msg("receive 1 MiB", &rx, single, &big).await?;
    pass("1 MiB payload round trip");

    // Many messages, in order.
    let n = 1000;
    let many = "interop/rust/bulk/a";
    let started = Instant::now();
    for i in 0..n {
        publish(&anon, "publish many", many, format!("{i}").as_bytes()).await?;
    }
    for i in 0..n {
        expect_msg(
            "receive many (in order)",
            &rx,
            many,
            format!("{i}").as_bytes(),
        )
        .await?;
    }
    no_more("after many", &rx)?;
    pass(&format!(
        "{n} messages received in publish order ({:?})",
        started.elapsed()
    ));

    // Publish denied: AccessDenied, and the session stays usable.
    let e = fails(
        "publish outside the user's pub ACL",
        ErrorKind::AccessDenied,
        c.publish(DEFAULT_PRIORITY, "denied/x".to_owned(), b"x".to_vec()),
    )
    .await?;
    check("still connected after a denied publish", c.is_connected())?;
    publish(&c, "publish after the denial", single, b"still here").await?;
    expect_msg("receive after the denial", &rx, single, b"still here").await?;
    pass(&format!(
        "publish denied -> AccessDenied ({e}), session still usable"
    ));

    // Subscribe denied: also AccessDenied, non-fatal for this crate.
    fails(
        "subscribe outside the user's sub ACL",
        ErrorKind::AccessDenied,
        c.subscribe("other/topic".to_owned()),
    )
    .await?;
    check("still connected after a denied subscribe", c.is_connected())?;
    publish(&anon, "publish after the sub denial", single, b"ok").await?;
    expect_msg("receive after the sub denial", &rx, single, b"ok").await?;
    pass("subscribe denied -> AccessDenied, session still usable");

    // unsubscribe / unsubscribe_bulk: nothing more arrives on those topics.
    ok("unsubscribe", c.unsubscribe(single.to_owned())).await?;
    ok(
        "unsubscribe_bulk",
        c.unsubscribe_bulk(vec![bulk[0].clone(), bulk[1].clone(), bulk[2].clone()]),
    )
    .await?;
    for t in [
        single,
        "interop/rust/bulk/a",
        "interop/rust/bulk/b",
        "interop/rust/wild/q/x",
    ] {
        publish(&anon, "publish to an unsubscribed topic", t, b"gone").await?;
    }
    // Still subscribed to tree/#: a sentinel that must come first.
    publish(&anon, "publish sentinel", "interop/rust/tree/end", b"end").await?;
    expect_msg(
        "only the sentinel after unsubscribe",
        &rx,
        "interop/rust/tree/end",
        b"end",
    )
    .await?;
    no_more("after unsubscribe", &rx)?;
    pass("unsubscribe and unsubscribe_bulk");

    // TLS (if asked for); its sessions idle along with the plain ones.
    let tls_hold = match &a.tls {
        Some((ca, other_ca)) => Some(tls_checks(a, ca, other_ca, &anon).await?),
        None => None,
    };

    // Keep-alive: idle longer than the server timeout; the pinger keeps us in.
    tokio::time::sleep(IDLE).await;
    check("connected after idling", c.is_connected())?;
    check("anonymous connected after idling", anon.is_connected())?;
    publish(
        &anon,
        "publish after idling",
        "interop/rust/tree/idle",
        b"idle",
    )
    .await?;
    expect_msg(
        "receive after idling",
        &rx,
        "interop/rust/tree/idle",
        b"idle",
    )
    .await?;
    pass(&format!(
        "idle {IDLE:?} (> server timeout): still connected (pings)"
    ));
    if let Some(hold) = tls_hold {
        check(
            "TLS subscriber connected after idling",
            hold.sub.is_connected(),
        )?;
        check(
            "TLS publisher connected after idling",
            hold.publisher.is_connected(),
        )?;
        publish(
            &hold.publisher,
            "TLS publish after idling",
            "interop/tls/idle",
            b"idle",
        )
        .await?;
        expect_msg(
            "TLS receive after idling",
            &hold.rx,
            "interop/tls/idle",
            b"idle",
        )
        .await?;
        ok("TLS bye", hold.sub.bye()).await?;
        ok("TLS bye (publisher)", hold.publisher.bye()).await?;
        check("TLS not connected after bye", !hold.sub.is_connected())?;
        pass(&format!("TLS sessions idle {IDLE:?}: still connected; bye"));
    }

    // bye: clean close, the data channel ends.
    ok("bye", c.bye()).await?;
    check("not connected after bye", !c.is_connected())?;
    match step("data channel after bye", async {
        loop {
            if rx.recv().await.is_err() {
                return;
            }
        }
    })
    .await
    {
        Ok(()) => {}
        Err(e) => return Err(e),
    }
    ok("bye (anonymous)", anon.bye()).await?;
    check("anonymous not connected after bye", !anon.is_connected())?;
    pass("bye; the data channel closes");

    // The server still accepts new sessions.
    let again = ok("reconnect", Client::connect(&config(a))).await?;
    ok("bye after reconnect", again.bye()).await?;
    pass("reconnect after bye");

    if let Some((udp_addr, key)) = &a.udp {
        udp_checks(a, udp_addr, key).await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let [cmd, dir] = argv.as_slice() {
        if cmd == "gen-certs" {
            return match certs::generate(std::path::Path::new(dir)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("gen-certs: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    }
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "psrt crate {} against {} (user {}{}{})",
        psrt::VERSION,
        args.addr,
        args.user,
        if args.tls.is_some() { ", with TLS" } else { "" },
        match &args.udp {
            Some((udp, _)) => format!(", UDP {udp}"),
            None => String::new(),
        }
    );
    match tokio::time::timeout(TOTAL, run(&args)).await {
        Ok(Ok(())) => {
            println!("PASS: psrt crate {} interop", psrt::VERSION);
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("FAIL: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("FAIL: the run did not finish within {TOTAL:?}");
            ExitCode::FAILURE
        }
    }
}
