//! Replayed AES-GCM datagrams (issue 12, item 6): a datagram captured and
//! sent again is neither delivered nor acked a second time; it is counted in
//! `udp_replayed`.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{Raw, Setup, TestServer};
use psrt::protocol::{
    UdpCipher, UdpKey, UdpOp, encode_udp_body, encode_udp_encrypted, parse_hex_key,
};

const KEY: &str = "26fd38045707792a9bc50f3761a58987c4a9362cf60389f341c28e37b1125d93";

fn sealed(nonce: u8, topic: &str, data: &[u8]) -> Vec<u8> {
    let key = UdpKey::new(&parse_hex_key(KEY).unwrap());
    let mut body = Vec::new();
    encode_udp_body(UdpOp::Publish, 0x7f, topic, data, &mut body);
    let mut d = Vec::new();
    encode_udp_encrypted(
        &key,
        UdpCipher::Aes256Gcm,
        "user1",
        [nonce; 12],
        &body,
        &mut d,
    );
    d
}

/// Acks received on `sock` within `quiet` of the last one.
fn acks(sock: &UdpSocket, quiet: Duration) -> Vec<Vec<u8>> {
    sock.set_read_timeout(Some(quiet)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        got.push(buf[..n].to_vec());
    }
    got
}

/// The same encrypted datagram sent three times: delivered once, acked
/// once, two replays counted (before: acked and delivered three times).
#[test]
fn a_replayed_encrypted_datagram_is_delivered_and_acked_once() {
    let srv = TestServer::with(
        Setup::default()
            .acl("_:\n  sub: '#'\nuser1:\n  pub: 'data/#'\n")
            .keys(&format!("user1: {KEY}\n")),
    );
    let (mut ctl, token) = Raw::anonymous(srv.addr);
    let mut data = Raw::data(srv.addr, token, 60);
    assert_eq!(ctl.subscribe(&["#"]), 0x01);

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let once = sealed(1, "data/t", b"once");
    for _ in 0..3 {
        sock.send_to(&once, srv.udp_addr.unwrap()).unwrap();
    }
    let got = acks(&sock, Duration::from_millis(700));
    assert_eq!(got, [vec![0xEE, 0xAA, 0x01, 0x00, 0x01]], "one ack");
    // A fresh datagram is delivered right after the first: the replays
    // never were.
    sock.send_to(&sealed(2, "data/t", b"fresh"), srv.udp_addr.unwrap())
        .unwrap();
    assert_eq!(data.next_message().2, b"once");
    assert_eq!(data.next_message().2, b"fresh");
    assert_eq!(acks(&sock, Duration::from_millis(700)).len(), 1);
    data.expect_silence(Duration::from_millis(200));

    let started = Instant::now();
    let stats = srv.stop();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(stats.udp_messages, 2);
    assert_eq!(stats.udp_replayed, 2);
    assert_eq!(stats.udp_dropped, 0);
}
