//! The client against scripted fake servers on `127.0.0.1:0` (and a Unix
//! socket), each in its own thread, with read timeouts everywhere. The
//! scripts write the server's bytes literally or with the protocol crate's
//! encoders and check the client's bytes exactly.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixListener;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::*;
use crate::protocol::{
    Decoded, Limits, Push, Reply, Request, UdpAuth, UdpCipher, UdpKey, UdpOp, decode_datagram,
    decode_request, decode_udp_body, encode_nop_beacon, encode_push, encode_udp_ack,
    open_udp_block,
};

pub(super) const IO_TIMEOUT: Duration = Duration::from_secs(10);
pub(super) const TOKEN: [u8; 32] = [7; 32];
pub(super) const ANONYMOUS: &[u8] = &[0x01, 0x00, 0x00, 0x00, 0x00];

/// Runs `script` with a listener on 127.0.0.1:0; returns the address.
pub(super) fn fake_server(
    script: impl FnOnce(TcpListener) + Send + 'static,
) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (addr, thread::spawn(move || script(listener)))
}

/// Accepts one connection, giving up after `IO_TIMEOUT`.
pub(super) fn accept(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                s.set_nodelay(true).unwrap();
                return s;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no client connected");
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

pub(super) fn expect(s: &mut impl Read, want: &[u8]) {
    let mut got = vec![0u8; want.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, want);
}

pub(super) fn expect_eof(s: &mut impl Read) {
    let mut byte = [0u8; 1];
    assert_eq!(
        s.read(&mut byte).unwrap(),
        0,
        "expected the client to close"
    );
}

/// Greeting and login on a control socket; checks the login frame.
pub(super) fn control_handshake(s: &mut (impl Read + Write), login_frame: &[u8]) {
    expect(s, &[0xEE, 0xAA, 0x00]);
    s.write_all(&[0xEE, 0xAA, 0x01, 0x00]).unwrap();
    expect(s, login_frame);
    s.write_all(&TOKEN).unwrap();
}

/// Greeting and hello on a data socket; checks the timeout byte.
pub(super) fn data_handshake(s: &mut TcpStream, timeout_byte: u8) {
    expect(s, &[0xEE, 0xAB, 0x00]);
    s.write_all(&[0xEE, 0xAB, 0x01, 0x00]).unwrap();
    expect(s, &TOKEN);
    expect(s, &[timeout_byte]);
    s.write_all(&[0x01]).unwrap();
}

/// Reads the next request that is not a NOP (NOPs from the pinger are
/// answered `01`) and returns its bytes.
pub(super) fn next_request(s: &mut (impl Read + Write)) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match decode_request(&buf, &Limits::default()).unwrap() {
            Decoded::Frame {
                frame: Request::Nop,
                ..
            } => {
                buf.clear();
                s.write_all(&[0x01]).unwrap();
            }
            Decoded::Frame { len, .. } => {
                assert_eq!(len, buf.len());
                return buf;
            }
            Decoded::Incomplete { .. } => {
                s.read_exact(&mut byte).unwrap();
                buf.push(byte[0]);
            }
        }
    }
}

/// Answers NOPs until the client closes.
pub(super) fn serve_nops_until_eof(s: &mut TcpStream) {
    let mut byte = [0u8; 1];
    while s.read(&mut byte).unwrap_or(0) == 1 {
        assert_eq!(byte[0], 0x00, "only NOPs expected");
        s.write_all(&[0x01]).unwrap();
    }
}

pub(super) fn config(addr: &str) -> Config {
    Config::new(addr).set_timeout(Duration::from_secs(5))
}

#[test]
fn client_types_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Client>();
    send_sync::<UdpClient>();
    send_sync::<Error>();
}

#[test]
fn handshake_bytes_are_exact_and_bye_closes() {
    let (addr, server) = fake_server(|l| {
        let mut control = accept(&l);
        control_handshake(&mut control, ANONYMOUS);
        let mut data = accept(&l);
        data_handshake(&mut data, 5);
        assert_eq!(next_request(&mut control), [0xFF]);
        control.write_all(&[0x01]).unwrap();
        expect_eof(&mut control);
        expect_eof(&mut data);
    });
    let client = Client::connect(&config(&addr)).unwrap();
    assert!(client.is_connected());
    client.bye().unwrap();
    assert!(!client.is_connected());
    assert!(matches!(client.nop(), Err(Error::Disconnected)));
    server.join().unwrap();
}

#[test]
fn credentials_short_timeout_and_pinger() {
    let (seen_tx, seen_rx) = mpsc::channel();
    let (addr, server) = fake_server(move |l| {
        let mut control = accept(&l);
        control_handshake(&mut control, b"\x0f\x00\x00\x00operator\x00s3cret");
        let mut data = accept(&l);
        // 0.3 s rounds down to 0, which is raised to 1.
        data_handshake(&mut data, 1);
        // Beacons keep the data socket alive however slow the machine is;
        // they stop when the client closes.
        thread::spawn(move || {
            while data.write_all(&[0x00]).is_ok() {
                thread::sleep(Duration::from_millis(100));
            }
        });
        // No request from the test: the pinger must send NOPs on its own.
        for _ in 0..2 {
            expect(&mut control, &[0x00]);
            control.write_all(&[0x01]).unwrap();
        }
        seen_tx.send(()).unwrap();
        serve_nops_until_eof(&mut control);
    });
    let cfg = config(&addr)
        .set_auth("operator", "s3cret")
        .set_timeout(Duration::from_millis(300));
    let client = Client::connect(&cfg).unwrap();
    seen_rx.recv_timeout(IO_TIMEOUT).unwrap();
    drop(client);
    server.join().unwrap();
}

#[test]
fn login_failure_is_eof_after_login() {
    let (addr, server) = fake_server(|l| {
        let mut control = accept(&l);
        expect(&mut control, &[0xEE, 0xAA, 0x00]);
        control.write_all(&[0xEE, 0xAA, 0x01, 0x00]).unwrap();
        expect(&mut control, b"\x06\x00\x00\x00user\x00x");
    });
    let err = Client::connect(&config(&addr).set_auth("user", "x")).unwrap_err();
    assert!(matches!(err, Error::LoginFailed), "{err:?}");
    assert!(err.is_access_denied());
    server.join().unwrap();
}

#[test]
fn bad_greeting_replies_are_protocol_errors() {
    for reply in [
        &[0xEE, 0xAA, 0x02, 0x00][..],
        &[0xEE, 0xAB, 0x01, 0x00],
        &[],
    ] {
        let (addr, server) = fake_server(move |l| {
            let mut control = accept(&l);
            expect(&mut control, &[0xEE, 0xAA, 0x00]);
            control.write_all(reply).unwrap();
        });
        let err = Client::connect(&config(&addr)).unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{reply:02x?}: {err:?}");
        server.join().unwrap();
    }
}

#[test]
fn data_hello_refused() {
    let (addr, server) = fake_server(|l| {
        let mut control = accept(&l);
        control_handshake(&mut control, ANONYMOUS);
        let mut data = accept(&l);
        expect(&mut data, &[0xEE, 0xAB, 0x00]);
        data.write_all(&[0xEE, 0xAB, 0x01, 0x00]).unwrap();
        expect(&mut data, &TOKEN);
        expect(&mut data, &[5]);
        data.write_all(&[0xFF]).unwrap();
        expect_eof(&mut control);
    });
    let err = Client::connect(&config(&addr)).unwrap_err();
    assert!(matches!(err, Error::Server(0xFF)), "{err:?}");
    server.join().unwrap();
}

#[test]
fn request_bytes_and_reply_mapping() {
    let (addr, server) = fake_server(|l| {
        let mut c = accept(&l);
        control_handshake(&mut c, ANONYMOUS);
        assert_eq!(next_request(&mut c), b"\x02\x04\x00\x00\x00a\x00b\x00");
        c.write_all(&[0xFE]).unwrap();
        assert_eq!(next_request(&mut c), b"\x01\x7f\x03\x00\x00\x00t\x00x");
        c.write_all(&[0xFF]).unwrap();
        // FF is not fatal: the session goes on.
        assert_eq!(next_request(&mut c), b"\x03\x02\x00\x00\x00a\x00");
        c.write_all(&[0x01]).unwrap();
        assert_eq!(next_request(&mut c), b"\x02\x02\x00\x00\x00z\x00");
        c.write_all(&[0x01]).unwrap();
        assert_eq!(next_request(&mut c), b"\x01\x10\x02\x00\x00\x00t\x00");
        c.write_all(&[0x42]).unwrap();
        expect_eof(&mut c);
    });
    let client = Client::connect(&config(&addr).disable_data_stream()).unwrap();
    assert!(client.take_receiver().is_none());
    assert!(matches!(
        client.recv_timeout(Duration::ZERO),
        Err(Error::NoDataStream)
    ));
    assert!(matches!(
        client.subscribe_bulk(&["a", "b"]),
        Err(Error::AccessDenied)
    ));
    assert!(matches!(
        client.publish(0x7F, "t", b"x"),
        Err(Error::Server(0xFF))
    ));
    assert!(client.is_connected());
    // Refused before sending: the server would close the connection.
    for bad in ["a/#", "", "t\0x"] {
        assert!(matches!(
            client.publish(0x7F, bad, b""),
            Err(Error::InvalidTopic(_))
        ));
    }
    assert!(matches!(
        client.subscribe_bulk(&["ok", "no\0pe"]),
        Err(Error::InvalidTopic(_))
    ));
    client.unsubscribe("a").unwrap();
    client.subscribe("z").unwrap();
    // An unknown reply byte: the stream can no longer be trusted.
    assert!(matches!(
        client.publish(0x10, "t", b""),
        Err(Error::Protocol(_))
    ));
    assert!(!client.is_connected());
    assert!(matches!(client.nop(), Err(Error::Disconnected)));
    server.join().unwrap();
}

#[test]
fn reply_timeout_closes_the_client() {
    let (addr, server) = fake_server(|l| {
        let mut c = accept(&l);
        control_handshake(&mut c, ANONYMOUS);
        assert_eq!(next_request(&mut c), b"\x02\x02\x00\x00\x00q\x00");
        // No reply; the client gives up and closes.
        expect_eof(&mut c);
    });
    let cfg = config(&addr)
        .disable_data_stream()
        .set_timeout(Duration::from_millis(500));
    let client = Client::connect(&cfg).unwrap();
    assert!(matches!(client.subscribe("q"), Err(Error::Timeout)));
    assert!(!client.is_connected());
    server.join().unwrap();
}

#[test]
fn pipelined_replies_are_counted() {
    let (addr, server) = fake_server(|l| {
        let mut c = accept(&l);
        control_handshake(&mut c, ANONYMOUS);
        for i in 0..3u8 {
            let req = next_request(&mut c);
            assert_eq!(req, [b"\x01\x7f\x03\x00\x00\x00p\x00", &[i][..]].concat());
        }
        c.write_all(&[0x01, 0xFE, 0x01]).unwrap();
        for _ in 0..2 {
            assert_eq!(next_request(&mut c)[0], 0x01);
        }
        // The NOP waits for these replies before it is sent.
        c.write_all(&[0x01, 0xFF]).unwrap();
        expect(&mut c, &[0x00]);
        c.write_all(&[0x01]).unwrap();
        serve_nops_until_eof(&mut c);
    });
    let client = Client::connect(&config(&addr).disable_data_stream()).unwrap();
    for i in 0..3u8 {
        client.publish_pipelined(0x7F, "p", &[i]).unwrap();
    }
    let report = client.wait_pipelined().unwrap();
    let want = PipelineReport {
        ok: 2,
        denied: 1,
        failed: 0,
    };
    assert_eq!(report, want);
    assert!(matches!(report.check(), Err(Error::AccessDenied)));
    client.publish_pipelined(0x7F, "q", b"").unwrap();
    client.publish_pipelined(0x7F, "q", b"").unwrap();
    // A plain request first collects the outstanding replies.
    client.nop().unwrap();
    let report = client.wait_pipelined().unwrap();
    assert_eq!((report.ok, report.failed, report.total()), (1, 1, 2));
    drop(client);
    server.join().unwrap();
}

fn sample_messages() -> Vec<Message> {
    let big: Vec<u8> = (0..=255u8).cycle().take(700).collect();
    vec![
        Message {
            topic: "a/b".into(),
            data: b"xyz".to_vec(),
            priority: 0x10,
        },
        Message {
            topic: String::new(),
            data: Vec::new(),
            priority: 0x7F,
        },
        Message {
            topic: "big".into(),
            data: big,
            priority: 0x7F,
        },
    ]
}

#[test]
fn data_frames_split_into_single_bytes_reassemble() {
    let (addr, server) = fake_server(|l| {
        let mut control = accept(&l);
        control_handshake(&mut control, ANONYMOUS);
        let mut data = accept(&l);
        data_handshake(&mut data, 5);
        let mut stream = Vec::new();
        for m in sample_messages() {
            encode_nop_beacon(&mut stream);
            encode_push(
                &Push {
                    priority: m.priority,
                    topic: &m.topic,
                    message: &m.data,
                },
                &mut stream,
            );
        }
        encode_nop_beacon(&mut stream);
        for b in &stream {
            data.write_all(std::slice::from_ref(b)).unwrap();
        }
        // The data socket ends: the client must notice and close.
        drop(data);
        serve_nops_until_eof(&mut control);
    });
    let client = Client::connect(&config(&addr)).unwrap();
    for want in sample_messages() {
        assert_eq!(client.recv_timeout(IO_TIMEOUT).unwrap(), want);
    }
    assert!(matches!(
        client.recv_timeout(IO_TIMEOUT),
        Err(Error::Disconnected)
    ));
    assert!(!client.is_connected());
    server.join().unwrap();
}

#[test]
fn silent_data_socket_disconnects_and_bad_frame_closes() {
    let (addr, server) = fake_server(|l| {
        let mut control = accept(&l);
        control_handshake(&mut control, ANONYMOUS);
        let mut data = accept(&l);
        data_handshake(&mut data, 1);
        // No beacon at all: the client's 1 s data read timeout expires.
        serve_nops_until_eof(&mut control);
        expect_eof(&mut data);
    });
    let cfg = config(&addr).set_timeout(Duration::from_millis(300));
    let client = Client::connect(&cfg).unwrap();
    let rx = client.take_receiver().unwrap();
    assert!(client.take_receiver().is_none());
    assert!(matches!(
        rx.recv_timeout(IO_TIMEOUT),
        Err(mpsc::RecvTimeoutError::Disconnected)
    ));
    assert!(!client.is_connected());
    server.join().unwrap();

    let (addr, server) = fake_server(|l| {
        let mut control = accept(&l);
        control_handshake(&mut control, ANONYMOUS);
        let mut data = accept(&l);
        data_handshake(&mut data, 5);
        data.write_all(&[0x00, 0x00, 0x07]).unwrap();
        serve_nops_until_eof(&mut control);
    });
    let client = Client::connect(&config(&addr)).unwrap();
    assert!(matches!(
        client.recv_timeout(IO_TIMEOUT),
        Err(Error::Disconnected)
    ));
    assert!(!client.is_connected());
    server.join().unwrap();
}

#[test]
fn unix_socket_session() {
    let path = std::env::temp_dir().join(format!("psrt-client-test-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let server = thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        control_handshake(&mut c, b"\x05\x00\x00\x00root\x00");
        assert_eq!(next_request(&mut c), b"\x01\x7f\x02\x00\x00\x00u\x00");
        c.write_all(&[0x01]).unwrap();
        assert_eq!(next_request(&mut c), [0xFF]);
        c.write_all(&[0x01]).unwrap();
    });
    let cfg = config(path.to_str().unwrap())
        .set_auth("root", "")
        .disable_data_stream();
    let client = Client::connect(&cfg).unwrap();
    client.publish(0x7F, "u", b"").unwrap();
    client.bye().unwrap();
    server.join().unwrap();
    let _ = std::fs::remove_file(&path);
}

/// What the UDP fake server saw: (auth summary, plain body) per datagram.
type Seen = mpsc::Receiver<(String, Vec<u8>)>;

/// A UDP fake server: answers each datagram with `acks[i]` (`None`: no
/// ack) and sends the decoded (auth, body) back over a channel.
fn udp_server(key: Option<[u8; 32]>, acks: Vec<Option<Reply>>) -> (String, Seen, JoinHandle<()>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut scratch = Vec::new();
        for ack in acks {
            let (n, peer) = socket.recv_from(&mut buf).unwrap();
            let datagram = decode_datagram(&buf[..n]).unwrap();
            let (who, body) = match datagram.auth {
                UdpAuth::Plain { login, password } => {
                    (format!("plain {login}:{password}"), datagram.body.to_vec())
                }
                UdpAuth::Encrypted {
                    cipher,
                    key_id,
                    nonce,
                    sealed,
                } => {
                    let key = UdpKey::new(key.as_ref().unwrap());
                    let body = open_udp_block(&key, cipher, &nonce, sealed, &mut scratch).unwrap();
                    (format!("{cipher:?} {key_id} {nonce:02x?}"), body.to_vec())
                }
            };
            tx.send((who, body)).unwrap();
            if let Some(code) = ack {
                let mut out = Vec::new();
                encode_udp_ack(code, &mut out);
                socket.send_to(&out, peer).unwrap();
            }
        }
    });
    (addr, rx, handle)
}

fn body_of(body: &[u8]) -> (UdpOp, String, Vec<u8>) {
    let b = decode_udp_body(body).unwrap();
    let p = b.publish.unwrap();
    assert_eq!(b.priority, 0x7F);
    (b.op, p.topic.to_owned(), p.data.to_vec())
}

#[test]
fn udp_plain_publish_and_ack_mapping() {
    let acks = vec![
        None,
        Some(Reply::Ok),
        Some(Reply::AccessDenied),
        Some(Reply::Error),
        None,
    ];
    let (addr, rx, server) = udp_server(None, acks);
    let mut client = UdpClient::connect(addr.as_str())
        .unwrap()
        .with_auth("u", "p")
        .with_timeout(Duration::from_secs(1));
    client.publish("t/1", b"no ack").unwrap();
    client.publish_confirmed("t/2", b"ok").unwrap();
    assert!(matches!(
        client.publish_confirmed("t/3", b""),
        Err(Error::AccessDenied)
    ));
    assert!(matches!(
        client.publish_confirmed("t/4", b""),
        Err(Error::Server(0xFF))
    ));
    assert!(matches!(
        client.publish_confirmed("t/5", b""),
        Err(Error::Timeout)
    ));
    let got: Vec<_> = rx.iter().take(5).collect();
    server.join().unwrap();
    assert!(got.iter().all(|(who, _)| who == "plain u:p"));
    assert_eq!(
        body_of(&got[0].1),
        (UdpOp::PublishNoAck, "t/1".into(), b"no ack".to_vec())
    );
    assert_eq!(
        body_of(&got[1].1),
        (UdpOp::Publish, "t/2".into(), b"ok".to_vec())
    );
}

#[test]
fn udp_encrypted_publish_uses_fresh_nonces() {
    let key: [u8; 32] = core::array::from_fn(|i| i as u8);
    for cipher in [UdpCipher::Aes256Gcm, UdpCipher::Aes128Gcm] {
        let (addr, rx, server) = udp_server(Some(key), vec![Some(Reply::Ok), None]);
        let mut client = UdpClient::connect(addr.as_str())
            .unwrap()
            .with_encryption("user1", &key, cipher)
            .unwrap();
        client.publish_confirmed("enc", b"secret").unwrap();
        client.publish("enc", b"secret").unwrap();
        let got: Vec<_> = rx.iter().take(2).collect();
        server.join().unwrap();
        assert!(got[0].0.starts_with(&format!("{cipher:?} user1 ")));
        assert_ne!(got[0].0, got[1].0, "a nonce was reused");
        assert_eq!(
            body_of(&got[0].1),
            (UdpOp::Publish, "enc".into(), b"secret".to_vec())
        );
        assert_eq!(body_of(&got[1].1).0, UdpOp::PublishNoAck);
    }
}
