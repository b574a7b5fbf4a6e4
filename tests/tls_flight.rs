//! TLS edge cases of the PSRT handshake (issue #12, item 8): application
//! data that arrives in the same flight as the client's last handshake
//! records (TLS 1.3, and a resumed TLS 1.2 handshake, where the client
//! speaks last), and a ClientHello in the greeting's own write. Also item 9
//! over TLS: a data socket whose client shut down its sending side keeps
//! receiving.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::{IO_TIMEOUT, Setup, TempDir, TestServer};
use psrt::protocol::{
    DataHello, Login, Request, TOKEN_LEN, Token, encode_data_hello, encode_login, encode_request,
};
use psrt::server::config::TlsFiles;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore, StreamOwned};

/// A CA, and a server certificate for localhost it signed.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// A server with a TLS identity and a 60 s protocol timeout (handshakes
/// left pending by a test must not time out under it).
fn tls_server(pki: &Pki) -> (TestServer, TempDir) {
    let dir = TempDir::new("tls-flight");
    let files = TlsFiles {
        cert: dir.write("server.crt", &pki.cert_pem),
        key: dir.write("server.key", &pki.key_pem),
    };
    let srv = TestServer::with(Setup::default().tweak(move |c| {
        c.auth.tls = Some(files);
        c.timeout = Duration::from_secs(60);
    }));
    (srv, dir)
}

/// A client config trusting the test CA, for the given TLS versions.
fn client_config(
    pki: &Pki,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn login_frame() -> Vec<u8> {
    let mut f = Vec::new();
    encode_login(
        &Login {
            login: "",
            password: "",
        },
        &mut f,
    );
    f
}

fn hello_frame(token: Token) -> Vec<u8> {
    let mut f = Vec::new();
    encode_data_hello(
        &DataHello {
            token,
            timeout_sec: 60,
        },
        &mut f,
    );
    f
}

/// Greeting `EE magic 01` (with the ClientHello in the same write if
/// `hello_with_greeting`), then the handshake driven by hand: `app`
/// (plaintext) is written in ONE write together with the client's last
/// handshake records (its Finished in TLS 1.3 and in a resumed TLS 1.2
/// handshake; after the handshake otherwise). Then the greeting reply.
fn connect_with(
    sock: TcpStream,
    config: Arc<ClientConfig>,
    magic: u8,
    app: &[u8],
    hello_with_greeting: bool,
) -> Tls {
    let mut s = sock;
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut c = ClientConnection::new(config, name).unwrap();
    let mut first = vec![0xEE, magic, 0x01];
    if hello_with_greeting {
        while c.wants_write() {
            c.write_tls(&mut first).unwrap();
        }
    }
    s.write_all(&first).unwrap();
    while c.is_handshaking() {
        while c.wants_write() {
            c.write_tls(&mut s).unwrap();
        }
        let n = c.read_tls(&mut s).expect("handshake read");
        assert!(n > 0, "server closed during the handshake");
        c.process_new_packets().expect("handshake");
    }
    c.writer().write_all(app).unwrap();
    let mut flight = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut flight).unwrap();
    }
    s.write_all(&flight).unwrap();
    let mut tls = StreamOwned::new(c, s);
    let mut reply = [0u8; 4];
    tls.read_exact(&mut reply).expect("greeting reply");
    assert_eq!(reply, [0xEE, magic, 0x01, 0x00]);
    tls
}

fn read_byte(t: &mut Tls) -> u8 {
    let mut b = [0u8; 1];
    t.read_exact(&mut b).unwrap();
    b[0]
}

fn request(t: &mut Tls, req: &Request<'_>) -> u8 {
    let mut f = Vec::new();
    encode_request(req, &mut f);
    t.write_all(&f).unwrap();
    read_byte(t)
}

/// A control and a data socket whose login and data hello ride in the
/// handshake's last flight; then a message goes from one to the other.
/// Returns how the control socket's handshake went.
fn session_in_flight(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    hello_with_greeting: bool,
) -> Option<HandshakeKind> {
    let sock = TcpStream::connect(addr).unwrap();
    let mut ctl = connect_with(
        sock,
        config.clone(),
        0xAA,
        &login_frame(),
        hello_with_greeting,
    );
    let kind = ctl.conn.handshake_kind();
    let mut token = [0u8; TOKEN_LEN];
    ctl.read_exact(&mut token).expect("token");
    let sock = TcpStream::connect(addr).unwrap();
    let mut data = connect_with(
        sock,
        config.clone(),
        0xAB,
        &hello_frame(Token(token)),
        hello_with_greeting,
    );
    assert_eq!(read_byte(&mut data), 0x01, "data hello accepted");
    let topics = psrt::protocol::Topics::new(b"flight").unwrap();
    assert_eq!(request(&mut ctl, &Request::Subscribe(topics)), 0x01);
    let publish = Request::Publish {
        priority: 0x7f,
        topic: "flight",
        message: b"in flight",
    };
    assert_eq!(request(&mut ctl, &publish), 0x01);
    assert_eq!(read_message(&mut data), b"flight\0in flight");
    kind
}

/// The next pushed message frame's body (topic, NUL, message).
fn read_message(data: &mut Tls) -> Vec<u8> {
    let mut header = [0u8; 6];
    data.read_exact(&mut header).unwrap();
    assert_eq!(header[0], 0x01, "a message frame");
    let mut body = vec![0u8; u32::from_le_bytes(header[2..6].try_into().unwrap()) as usize];
    data.read_exact(&mut body).unwrap();
    body
}

/// TLS 1.3: the client's Finished and its login (or data hello) in one
/// write. Before the fix the server fed the decrypted login back into
/// rustls as ciphertext and answered with a DECODE_ERROR alert.
#[test]
fn login_in_the_last_flight_tls13() {
    let pki = pki();
    let (srv, _dir) = tls_server(&pki);
    let config = client_config(&pki, &[&rustls::version::TLS13]);
    for _ in 0..3 {
        session_in_flight(srv.addr, &config, false);
    }
}

/// TLS 1.2 resumed by session id: the client speaks last (CCS, Finished),
/// and its login comes in the same write.
#[test]
fn login_in_the_last_flight_tls12_resumed() {
    let pki = pki();
    let (srv, _dir) = tls_server(&pki);
    let config = client_config(&pki, &[&rustls::version::TLS12]);
    let first = session_in_flight(srv.addr, &config, false);
    assert_eq!(first, Some(HandshakeKind::Full));
    for _ in 0..3 {
        let again = session_in_flight(srv.addr, &config, false);
        assert_eq!(again, Some(HandshakeKind::Resumed), "session id resumption");
    }
}

/// The ClientHello in the same write as the plain greeting is handed to
/// rustls at the greeting, in both versions.
#[test]
fn client_hello_with_the_greeting() {
    let pki = pki();
    let (srv, _dir) = tls_server(&pki);
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let config = client_config(&pki, &[version]);
        session_in_flight(srv.addr, &config, true);
    }
}

/// A TLS data socket whose client shut down its sending side — after a
/// close_notify, or without one — keeps receiving messages.
#[test]
fn half_closed_tls_data_socket_keeps_receiving() {
    let pki = pki();
    let (srv, _dir) = tls_server(&pki);
    let config = client_config(&pki, &[&rustls::version::TLS13]);
    for close_notify in [true, false] {
        let sock = TcpStream::connect(srv.addr).unwrap();
        let mut ctl = connect_with(sock, config.clone(), 0xAA, &login_frame(), false);
        let mut token = [0u8; TOKEN_LEN];
        ctl.read_exact(&mut token).unwrap();
        let sock = TcpStream::connect(srv.addr).unwrap();
        let mut data = connect_with(
            sock,
            config.clone(),
            0xAB,
            &hello_frame(Token(token)),
            false,
        );
        assert_eq!(read_byte(&mut data), 0x01);
        let topics = psrt::protocol::Topics::new(b"half").unwrap();
        assert_eq!(request(&mut ctl, &Request::Subscribe(topics)), 0x01);
        if close_notify {
            data.conn.send_close_notify();
            while data.conn.wants_write() {
                data.conn.write_tls(&mut data.sock).unwrap();
            }
        }
        data.sock.shutdown(std::net::Shutdown::Write).unwrap();
        for i in 0..5u8 {
            let publish = Request::Publish {
                priority: 0x7f,
                topic: "half",
                message: &[i],
            };
            assert_eq!(request(&mut ctl, &publish), 0x01);
            assert_eq!(read_message(&mut data), [b'h', b'a', b'l', b'f', 0, i]);
        }
        assert_eq!(request(&mut ctl, &Request::Nop), 0x01);
    }
}
