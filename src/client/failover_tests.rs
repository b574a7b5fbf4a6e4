//! Failover against scripted fake servers (the helpers of `tests.rs`): a
//! lost server is replaced by the next address, whose script checks that
//! the subscriptions arrive again exactly as recorded (an unsubscribed
//! topic left out, a refused one sent as it was); with reconnect off the
//! client stays disconnected.

use std::io::Write;
use std::sync::mpsc;

use super::tests::{
    ANONYMOUS, IO_TIMEOUT, accept, config, control_handshake, data_handshake, expect_eof,
    fake_server, next_request,
};
use super::*;
use crate::protocol::{Push, Request, encode_push, encode_request, encode_topics};

fn topics_frame(subscribe: bool, topics: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_topics(subscribe, topics.iter().copied(), &mut out);
    out
}

/// Answers the next request (after any NOPs), checking its bytes.
fn answer(s: &mut std::net::TcpStream, want: &[u8], reply: u8) {
    assert_eq!(next_request(s), want);
    s.write_all(&[reply]).unwrap();
}

#[test]
fn a_lost_server_is_replaced_and_the_subscriptions_are_sent_again() {
    let (first, server_a) = fake_server(|l| {
        let mut control = accept(&l);
        control_handshake(&mut control, ANONYMOUS);
        let mut data = accept(&l);
        data_handshake(&mut data, 5);
        answer(&mut control, &topics_frame(true, &["a", "b"]), 0x01);
        answer(&mut control, &topics_frame(true, &["c"]), 0xFE);
        answer(&mut control, &topics_frame(false, &["b"]), 0x01);
        answer(&mut control, &topics_frame(true, &["d/#"]), 0x01);
        // The server goes away: both sockets close.
    });
    let (second, server_b) = fake_server(|l| {
        let mut control = accept(&l);
        control_handshake(&mut control, ANONYMOUS);
        let mut data = accept(&l);
        data_handshake(&mut data, 5);
        answer(&mut control, &topics_frame(true, &["a"]), 0x01);
        answer(&mut control, &topics_frame(true, &["c"]), 0xFE);
        answer(&mut control, &topics_frame(true, &["d/#"]), 0x01);
        let mut push = Vec::new();
        encode_push(
            &Push {
                priority: 0x7f,
                topic: "d/1",
                message: b"after",
            },
            &mut push,
        );
        data.write_all(&push).unwrap();
        let mut publish = Vec::new();
        encode_request(
            &Request::Publish {
                priority: 0x7f,
                topic: "d/2",
                message: b"x",
            },
            &mut publish,
        );
        answer(&mut control, &publish, 0x01);
        let mut bye = Vec::new();
        encode_request(&Request::Bye, &mut bye);
        answer(&mut control, &bye, 0x01);
        expect_eof(&mut control);
    });
    let client = Client::connect(&config(&format!("{first}, {second}"))).unwrap();
    assert_eq!(client.server(), first);
    client.subscribe_bulk(&["a", "b"]).unwrap();
    assert!(matches!(client.subscribe("c"), Err(Error::AccessDenied)));
    client.unsubscribe("b").unwrap();
    client.subscribe("d/#").unwrap();
    server_a.join().unwrap();
    let m = client.recv_timeout(IO_TIMEOUT).unwrap();
    assert_eq!(
        (m.topic.as_str(), m.data.as_slice()),
        ("d/1", &b"after"[..])
    );
    // The new server's push can arrive before the supervisor has recorded
    // the new link (it sends the subscriptions again first); a request
    // waits for that link, so the address is checked after one.
    client.publish(0x7f, "d/2", b"x").unwrap();
    assert_eq!(client.server(), second);
    assert!(client.is_connected());
    client.bye().unwrap();
    assert!(!client.is_connected());
    assert!(matches!(client.nop(), Err(Error::Disconnected)));
    server_b.join().unwrap();
}

#[test]
fn with_reconnect_off_a_lost_server_ends_the_client() {
    let (first, server) = fake_server(|l| {
        let mut control = accept(&l);
        control_handshake(&mut control, ANONYMOUS);
        let mut data = accept(&l);
        data_handshake(&mut data, 5);
    });
    let cfg = config(&format!("{first},127.0.0.1:9")).set_reconnect(false);
    let client = Client::connect(&cfg).unwrap();
    let rx = client.take_receiver().unwrap();
    server.join().unwrap();
    assert!(matches!(
        rx.recv_timeout(IO_TIMEOUT),
        Err(mpsc::RecvTimeoutError::Disconnected)
    ));
    assert!(!client.is_connected());
    assert!(matches!(
        client.publish(0x7f, "t", b"x"),
        Err(Error::Disconnected)
    ));
}
