//! TLS on the control and data sockets: the `01` greeting byte, then a
//! rustls handshake, then the whole PSRT session encrypted; refusals when
//! TLS is missing or plain is forbidden; the handshake deadline (the
//! reference had none).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::pki::{Pki, pki};
use common::{IO_TIMEOUT, Raw, Setup, TempDir, TestServer};
use psrt::protocol::{
    DataHello, Login, Request, TOKEN_LEN, Token, encode_data_hello, encode_login, encode_request,
};
use psrt::server::config::TlsFiles;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A server with a TLS identity (plain connections allowed unless `plain`
/// is false).
fn tls_server(pki: &Pki, plain: bool) -> (TestServer, TempDir) {
    let dir = TempDir::new("tls");
    let files = TlsFiles {
        cert: dir.write("server.crt", &pki.cert_pem),
        key: dir.write("server.key", &pki.key_pem),
    };
    let srv = TestServer::with(Setup::default().tweak(move |c| {
        c.auth.tls = Some(files);
        c.allow_no_tls = plain;
    }));
    (srv, dir)
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn client_config(pki: &Pki) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Plain `EE Ax 01`, then TLS, then the (encrypted) greeting reply.
fn tls_connect(addr: SocketAddr, pki: &Pki, magic: u8) -> Tls {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(&[0xEE, magic, 0x01]).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(client_config(pki), name).unwrap();
    let mut tls = StreamOwned::new(conn, s);
    let mut reply = [0u8; 4];
    tls.read_exact(&mut reply).unwrap();
    assert_eq!(reply, [0xEE, magic, 0x01, 0x00]);
    tls
}

fn read_byte(t: &mut Tls) -> u8 {
    let mut b = [0u8; 1];
    t.read_exact(&mut b).unwrap();
    b[0]
}

fn send(t: &mut Tls, req: &Request<'_>) -> u8 {
    let mut f = Vec::new();
    encode_request(req, &mut f);
    t.write_all(&f).unwrap();
    read_byte(t)
}

/// Anonymous control + data session, both over TLS.
fn tls_session(addr: SocketAddr, pki: &Pki) -> (Tls, Tls) {
    let mut ctl = tls_connect(addr, pki, 0xAA);
    let mut f = Vec::new();
    encode_login(
        &Login {
            login: "",
            password: "",
        },
        &mut f,
    );
    ctl.write_all(&f).unwrap();
    let mut token = [0u8; TOKEN_LEN];
    ctl.read_exact(&mut token).unwrap();
    let mut data = tls_connect(addr, pki, 0xAB);
    f.clear();
    encode_data_hello(
        &DataHello {
            token: Token(token),
            timeout_sec: 60,
        },
        &mut f,
    );
    data.write_all(&f).unwrap();
    assert_eq!(read_byte(&mut data), 0x01);
    (ctl, data)
}

/// Subscribe and publish over TLS, small and 1 MB messages, to a TLS and a
/// plain subscriber; BYE gets its reply before the close.
#[test]
fn pubsub_over_tls() {
    let pki = pki();
    let (srv, _dir) = tls_server(&pki, true);
    let (mut ctl, mut data) = tls_session(srv.addr, &pki);
    assert_eq!(
        send(
            &mut ctl,
            &Request::Subscribe(psrt::protocol::Topics::new(b"t/#").unwrap())
        ),
        0x01
    );
    let (mut plain_sub, token) = Raw::anonymous(srv.addr);
    let mut plain_data = Raw::data(srv.addr, token, 60);
    assert_eq!(plain_sub.subscribe(&["t/#"]), 0x01);

    let (mut publisher, _) = tls_session(srv.addr, &pki);
    let big: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
    for message in [&b"hello"[..], &big[..]] {
        let req = Request::Publish {
            priority: 0x7f,
            topic: "t/x",
            message,
        };
        assert_eq!(send(&mut publisher, &req), 0x01);
        // The TLS subscriber: frame header, topic, message.
        let mut header = [0u8; 6];
        data.read_exact(&mut header).unwrap();
        assert_eq!(header[0], 0x01);
        let len = u32::from_le_bytes(header[2..6].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len];
        data.read_exact(&mut body).unwrap();
        assert_eq!(&body[..4], b"t/x\0");
        assert_eq!(&body[4..], message);
        assert_eq!(plain_data.next_message().2, message);
    }
    assert_eq!(send(&mut ctl, &Request::Bye), 0x01);
    let mut rest = Vec::new();
    let _ = ctl.read_to_end(&mut rest);
    assert!(rest.is_empty());
}

/// A server without an identity closes TLS greetings; a TLS-only server
/// closes plain ones; garbage instead of a ClientHello is closed.
#[test]
fn refusals() {
    let pki = pki();
    let no_tls = TestServer::start();
    let mut c = Raw::connect(no_tls.addr);
    c.send(&[0xEE, 0xAA, 0x01]);
    assert!(c.expect_closed_within(Duration::from_secs(2)).is_empty());

    let (tls_only, _dir) = tls_server(&pki, false);
    let mut c = Raw::connect(tls_only.addr);
    c.send(&[0xEE, 0xAA, 0x00]);
    assert!(c.expect_closed_within(Duration::from_secs(2)).is_empty());
    // TLS still works there.
    let (mut ctl, _data) = tls_session(tls_only.addr, &pki);
    assert_eq!(send(&mut ctl, &Request::Nop), 0x01);

    let mut garbage = Raw::connect(tls_only.addr);
    garbage.send(&[0xEE, 0xAA, 0x01]);
    garbage.send(b"GET / HTTP/1.1\r\n\r\n");
    garbage.expect_closed_within(Duration::from_secs(2));
}

/// A client that starts TLS and then goes silent is closed at the phase
/// deadline.
#[test]
fn handshake_has_a_deadline() {
    let pki = pki();
    let dir = TempDir::new("tls-deadline");
    let files = TlsFiles {
        cert: dir.write("server.crt", &pki.cert_pem),
        key: dir.write("server.key", &pki.key_pem),
    };
    let srv = TestServer::with(Setup::default().tweak(move |c| {
        c.auth.tls = Some(files);
        c.timeout = Duration::from_secs(1);
    }));
    let mut c = Raw::connect(srv.addr);
    c.send(&[0xEE, 0xAA, 0x01]);
    c.expect_closed_within(Duration::from_millis(2500));
}

/// SIGHUP rotates the certificate: new handshakes present the new one,
/// sessions already open go on (T18). A broken new key keeps the old pair —
/// and does not hold back the ACL change made in the same reload.
#[test]
fn sighup_rotates_the_certificate() {
    let (old, new) = (pki(), pki());
    let dir = TempDir::new("tls-rotate");
    dir.write("acl.yml", "_:\n  sub: '#'\n  pub: '#'\n");
    dir.write("server.crt", &old.cert_pem);
    dir.write("server.key", &old.key_pem);
    let config = dir.write(
        "config.yml",
        "proto:\n  bind: 127.0.0.1:0\n  tls_cert: server.crt\n  tls_key: server.key\nauth:\n  allow_anonymous: true\n  acl: acl.yml\n",
    );
    let server = common::Proc::spawn(&["-C", config.to_str().unwrap()]);
    let addr = server.addr.expect("listening");
    let (mut before, _) = tls_session(addr, &old);

    // A key that does not match, and an ACL change: the ACL applies, the
    // old certificate and key stay.
    dir.write("server.crt", &new.cert_pem);
    dir.write("acl.yml", "_:\n  sub: '#'\n  pub: [allowed/#]\n");
    server.signal(1);
    assert!(
        server
            .wait_log("TLS identity not reloaded", IO_TIMEOUT)
            .is_some(),
        "{}",
        server.log_text()
    );
    assert!(
        server.wait_log("reload ok", IO_TIMEOUT).is_some(),
        "{}",
        server.log_text()
    );
    let (mut still_old, _) = tls_session(addr, &old);
    assert_eq!(send(&mut still_old, &Request::Nop), 0x01);
    let publish = |topic| Request::Publish {
        priority: 0,
        topic,
        message: b"m",
    };
    assert_eq!(
        send(&mut still_old, &publish("other")),
        0xFE,
        "the new ACL applies"
    );
    assert_eq!(send(&mut still_old, &publish("allowed/x")), 0x01);

    dir.write("server.key", &new.key_pem);
    server.signal(1);
    assert!(
        common::wait_count(|| server.log_text(), "reload ok", 2, IO_TIMEOUT),
        "{}",
        server.log_text()
    );
    let (mut after, _) = tls_session(addr, &new);
    assert_eq!(send(&mut after, &Request::Nop), 0x01);
    assert_eq!(
        send(&mut before, &Request::Nop),
        0x01,
        "open sessions continue"
    );
}
