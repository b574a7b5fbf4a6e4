//! TLS edge cases of the PSRT handshake (issue #12, item 8): application
//! data that arrives in the same flight as the client's last handshake
//! records (TLS 1.3, and a resumed TLS 1.2 handshake, where the client
//! speaks last), a ClientHello in the greeting's own write, and the cap on
//! handshakes in progress at once (`server.max_tls_handshakes`, default 64),
//! which stays exact whichever way a handshake ends. Also item 9 over TLS:
//! a data socket whose client shut down its sending side keeps receiving.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pki::{Pki, pki};
use common::{IO_TIMEOUT, Raw, Setup, TempDir, TestServer, connect_from};
use psrt::protocol::{
    DataHello, Login, Request, TOKEN_LEN, Token, encode_data_hello, encode_login, encode_request,
};
use psrt::server::config::TlsFiles;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore, StreamOwned};

/// The default `server.max_tls_handshakes`.
const DEFAULT_TLS_CAP: usize = 64;

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

/// A TLS handshake left half-done: greeting and ClientHello sent, the
/// server's first flight read, nothing more. Keeps the client side so the
/// test can finish it later.
struct Pending {
    conn: ClientConnection,
    sock: TcpStream,
}

impl Pending {
    fn start(src: Ipv4Addr, addr: SocketAddr, config: &Arc<ClientConfig>) -> Self {
        let mut sock = connect_from(src, addr, false).expect("connect");
        let name = ServerName::try_from("localhost").unwrap();
        let mut conn = ClientConnection::new(config.clone(), name).unwrap();
        let mut first = vec![0xEE, 0xAA, 0x01];
        while conn.wants_write() {
            conn.write_tls(&mut first).unwrap();
        }
        sock.write_all(&first).unwrap();
        // The server answered: this connection holds a handshake slot.
        let n = conn.read_tls(&mut sock).expect("server's first flight");
        assert!(n > 0, "closed instead of a ServerHello");
        conn.process_new_packets().unwrap();
        Self { conn, sock }
    }

    /// Completes the handshake and logs in.
    fn finish(mut self) {
        while self.conn.is_handshaking() {
            while self.conn.wants_write() {
                self.conn.write_tls(&mut self.sock).unwrap();
            }
            if !self.conn.is_handshaking() {
                break;
            }
            assert!(self.conn.read_tls(&mut self.sock).unwrap() > 0);
            self.conn.process_new_packets().unwrap();
        }
        let mut tls = StreamOwned::new(self.conn, self.sock);
        let mut reply = [0u8; 4];
        tls.read_exact(&mut reply).unwrap();
        tls.write_all(&login_frame()).unwrap();
        let mut token = [0u8; TOKEN_LEN];
        tls.read_exact(&mut token).unwrap();
        assert_eq!(request(&mut tls, &Request::Nop), 0x01);
    }

    /// Sends a record rustls cannot parse: the server ends the handshake
    /// with an error.
    fn garble(mut self) {
        self.sock.write_all(&[0x17; 64]).unwrap();
        let mut rest = Vec::new();
        let _ = self.sock.read_to_end(&mut rest);
    }
}

/// Source addresses for the pending handshakes: 16 per address keeps each
/// address far under the pre-login per-address cap.
fn source(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 3, 10 + (i / 16) as u8)
}

/// Opens `n` pending handshakes.
fn fill(addr: SocketAddr, config: &Arc<ClientConfig>, n: usize) -> Vec<Pending> {
    (0..n)
        .map(|i| Pending::start(source(i), addr, config))
        .collect()
}

/// A TLS greeting is closed at once, with nothing sent.
fn expect_refused(addr: SocketAddr) {
    let mut c = Raw::connect_from(Ipv4Addr::new(127, 0, 3, 99), addr);
    c.send(&[0xEE, 0xAA, 0x01]);
    let got = c.expect_closed_within(Duration::from_secs(3));
    assert!(got.is_empty(), "nothing is sent to a refused TLS greeting");
}

/// The cap on handshakes in progress: with 64 pending the 65th TLS greeting
/// is closed (counted as a limit refusal), while plain clients and the
/// pending handshakes go on. Ending the 64 in every way — completed, broken
/// by garbage, dropped by the client — frees exactly 64 slots: 64 new ones
/// fit again and the 65th is refused again.
#[test]
fn tls_handshakes_are_capped() {
    let pki = pki();
    let (srv, _dir) = tls_server(&pki);
    let config = client_config(&pki, &[&rustls::version::TLS13]);
    let mut pending = fill(srv.addr, &config, DEFAULT_TLS_CAP);
    expect_refused(srv.addr);
    let (mut plain, _) = Raw::anonymous(srv.addr);
    assert_eq!(plain.nop(), 0x01, "plain clients are not held up");

    let mut by_way = [0usize; 3];
    for (i, p) in pending.drain(..).enumerate() {
        match i % 3 {
            0 => p.finish(),
            1 => p.garble(),
            _ => drop(p),
        }
        by_way[i % 3] += 1;
    }
    assert_eq!(by_way.iter().sum::<usize>(), DEFAULT_TLS_CAP);
    // A dropped connection leaves the phase once the server has read its
    // end: retry until all slots are back, then they must all be there.
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        let mut held = Vec::new();
        let all = (0..DEFAULT_TLS_CAP).all(|i| {
            let mut sock = connect_from(source(i), srv.addr, false).unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let mut conn = ClientConnection::new(config.clone(), name).unwrap();
            let mut first = vec![0xEE, 0xAA, 0x01];
            while conn.wants_write() {
                conn.write_tls(&mut first).unwrap();
            }
            sock.write_all(&first).unwrap();
            let ok = matches!(conn.read_tls(&mut sock), Ok(n) if n > 0);
            held.push(Pending { conn, sock });
            ok
        });
        if all {
            break held;
        }
        assert!(Instant::now() < deadline, "handshake slots were not freed");
        drop(held);
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(again.len(), DEFAULT_TLS_CAP);
    expect_refused(srv.addr);
    assert_eq!(plain.nop(), 0x01);
    drop(again);
    let stats = srv.stop();
    assert!(stats.limit_refusals >= 2, "{stats:?}");
}
