//! UDP publish against the real server: plain and AES-GCM datagrams reach
//! TCP subscribers, acks carry 01/FE/FF, and nothing is sent back to a
//! source that did not authenticate (T21).

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{Raw, Setup, TestServer};
use psrt::client::{Error, UdpClient};
use psrt::protocol::{
    UdpCipher, UdpKey, UdpOp, encode_udp_body, encode_udp_encrypted, encode_udp_plain,
    parse_hex_key,
};

const USER1_KEY: &str = "26fd38045707792a9bc50f3761a58987c4a9362cf60389f341c28e37b1125d93";
const ANON_KEY: &str = "48055f55a4d0dbf9e21a3c6b09c1c10faa3a2e4fd4a2f9a1e0b8ff9c3a1d3d5a";

fn server() -> TestServer {
    TestServer::with(
        Setup::default()
            .acl("_:\n  sub: '#'\n  pub: 'anon/#'\nuser1:\n  pub: 'data/#'\n")
            .user("user1", "123")
            .keys(&format!("user1: {USER1_KEY}\n_: {ANON_KEY}\n")),
    )
}

/// A subscriber to `#` (anonymous).
fn subscriber(srv: &TestServer) -> (Raw, Raw) {
    let (mut ctl, token) = Raw::anonymous(srv.addr);
    let data = Raw::data(srv.addr, token, 30);
    assert_eq!(ctl.subscribe(&["#"]), 0x01);
    (ctl, data)
}

fn udp(srv: &TestServer) -> UdpClient {
    UdpClient::connect(srv.udp_addr.expect("udp bound"))
        .unwrap()
        .with_timeout(Duration::from_millis(700))
}

/// Plain datagrams, anonymous and with a password, with and without ack,
/// arrive at TCP subscribers with the normalised topic.
#[test]
fn plain_publish_is_delivered_and_acked() {
    let srv = server();
    let (_ctl, mut data) = subscriber(&srv);
    let mut anon = udp(&srv);
    anon.publish_confirmed("anon/x", b"one").unwrap();
    assert_eq!(
        data.next_message(),
        (0x7f, "anon/x".into(), b"one".to_vec())
    );
    anon.publish("//anon///y", b"two").unwrap();
    assert_eq!(data.next_message().1, "anon/y");

    // The first datagram waits for bcrypt in the worker, the second hits the cache.
    let mut user = udp(&srv).with_auth("user1", "123");
    for i in 0..3u8 {
        user.publish_confirmed("data/t", &[i]).unwrap();
        assert_eq!(data.next_message().2, [i]);
    }
}

/// Authenticated but not allowed → FE; a bad topic → FF; the ACL of the
/// login applies.
#[test]
fn acks_carry_access_and_error_codes() {
    let srv = server();
    let mut anon = udp(&srv);
    assert!(matches!(
        anon.publish_confirmed("data/t", b"x"),
        Err(Error::AccessDenied)
    ));
    let mut user = udp(&srv).with_auth("user1", "123");
    assert!(matches!(
        user.publish_confirmed("anon/t", b"x"),
        Err(Error::AccessDenied)
    ));
    // Too deep for the default depth limit of 32.
    let deep = "data/".to_string() + &"x/".repeat(40) + "y";
    assert!(matches!(
        user.publish_confirmed(&deep, b"x"),
        Err(Error::Server(0xFF))
    ));
}

/// Wrong passwords, unknown users and unknown keys get no ack at all.
#[test]
fn unauthenticated_sources_get_no_reply() {
    let srv = server();
    let mut wrong = udp(&srv).with_auth("user1", "nope");
    assert!(matches!(
        wrong.publish_confirmed("data/t", b"x"),
        Err(Error::Timeout)
    ));
    let mut ghost = udp(&srv).with_auth("ghost", "x");
    assert!(matches!(
        ghost.publish_confirmed("data/t", b"x"),
        Err(Error::Timeout)
    ));
    let mut bad_key = udp(&srv)
        .with_encryption("user1", &[9u8; 32], UdpCipher::Aes256Gcm)
        .unwrap();
    assert!(matches!(
        bad_key.publish_confirmed("data/t", b"x"),
        Err(Error::Timeout)
    ));
    // Garbage.
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    raw.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    raw.send_to(b"\xEE\xAA\x01\x00\x07junk", srv.udp_addr.unwrap())
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(raw.recv_from(&mut buf).is_err(), "no reply to garbage");
}

/// AES-128 and AES-256 datagrams sealed with the login's key (and the `_`
/// key for an empty key id) are delivered; AES-128 uses the first 16 bytes.
#[test]
fn encrypted_publish_both_ciphers() {
    let srv = server();
    let (_ctl, mut data) = subscriber(&srv);
    let key = parse_hex_key(USER1_KEY).unwrap();
    for cipher in [UdpCipher::Aes128Gcm, UdpCipher::Aes256Gcm] {
        let mut c = udp(&srv).with_encryption("user1", &key, cipher).unwrap();
        c.publish_confirmed("data/enc", format!("{cipher:?}").as_bytes())
            .unwrap();
        assert_eq!(data.next_message().2, format!("{cipher:?}").into_bytes());
    }
    let anon_key = parse_hex_key(ANON_KEY).unwrap();
    let mut c = udp(&srv)
        .with_encryption("", &anon_key, UdpCipher::Aes256Gcm)
        .unwrap();
    c.publish_confirmed("anon/enc", b"k").unwrap();
    assert_eq!(data.next_message().1, "anon/enc");

    // The same datagram built by hand with the protocol crate.
    let mut body = Vec::new();
    encode_udp_body(UdpOp::PublishNoAck, 0x10, "data/raw", b"hand", &mut body);
    let mut d = Vec::new();
    encode_udp_encrypted(
        &UdpKey::new(&key),
        UdpCipher::Aes128Gcm,
        "user1",
        [3; 12],
        &body,
        &mut d,
    );
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    raw.send_to(&d, srv.udp_addr.unwrap()).unwrap();
    assert_eq!(
        data.next_message(),
        (0x10, "data/raw".into(), b"hand".to_vec())
    );
}

/// A datagram longer than udp_frame_size is dropped, not truncated and
/// delivered (the reference delivered the truncated payload with an OK ack).
#[test]
fn oversize_datagram_is_dropped_not_truncated() {
    let srv = TestServer::with(Setup::default().tweak(|c| c.udp_frame_size = 512));
    let (_ctl, mut data) = subscriber(&srv);
    let addr = srv.udp_addr.unwrap();
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    raw.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut body = Vec::new();
    encode_udp_body(UdpOp::Publish, 0x7f, "big", &[7u8; 600], &mut body);
    let mut d = Vec::new();
    encode_udp_plain("", "", &body, &mut d);
    raw.send_to(&d, addr).unwrap();
    let mut buf = [0u8; 16];
    assert!(
        raw.recv_from(&mut buf).is_err(),
        "no ack for an oversize datagram"
    );
    // A datagram that fits still works, and is the next message delivered.
    body.clear();
    encode_udp_body(UdpOp::Publish, 0x7f, "small", &[1u8; 100], &mut body);
    d.clear();
    encode_udp_plain("", "", &body, &mut d);
    raw.send_to(&d, addr).unwrap();
    let (n, _) = raw.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], [0xEE, 0xAA, 0x01, 0x00, 0x01]);
    assert_eq!(data.next_message().1, "small");
    let stats = srv.stop();
    assert_eq!(stats.udp_dropped, 1);
    assert_eq!(stats.udp_messages, 1);
}

/// Anonymous UDP follows allow_anonymous: refused without an ack.
#[test]
fn anonymous_udp_follows_allow_anonymous() {
    let srv = TestServer::with(Setup::default().tweak(|c| c.allow_anonymous = false));
    let mut anon = udp(&srv);
    assert!(matches!(
        anon.publish_confirmed("t", b"x"),
        Err(Error::Timeout)
    ));
}
