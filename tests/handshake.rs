//! Greetings, logins and data-socket binding against the real server.

mod common;

use std::time::Duration;

use common::{Raw, Setup, TestServer};
use psrt::protocol::{StreamKind, Token};

#[test]
fn greeting_replies_and_anonymous_login() {
    let srv = TestServer::start();
    let (mut ctl, token) = Raw::anonymous(srv.addr);
    assert_eq!(ctl.request(&psrt::protocol::Request::Nop), 0x01);
    let mut data = Raw::data(srv.addr, token, 5);
    data.expect_silence(Duration::from_millis(100));
}

#[test]
fn bad_greetings_are_closed_without_a_reply() {
    let srv = TestServer::start();
    for bytes in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0x00, 0x50][..],
        &[0xEE, 0xAA, 0x02][..],
        &[0xEE, 0xAA, 0x01][..], // TLS: no identity configured
    ] {
        let mut c = Raw::connect(srv.addr);
        c.send(bytes);
        let got = c.expect_closed_within(Duration::from_secs(2));
        assert!(got.is_empty(), "{bytes:02x?} got {got:02x?}");
    }
}

#[test]
fn login_with_password_and_failures() {
    let srv = TestServer::with(
        Setup::default()
            .acl("_:\n  sub: '#'\nuser1:\n  pub: '#'\n  sub: '#'\nnoacl:\n")
            .user("user1", "123")
            .user("stranger", "pw")
            .tweak(|c| c.allow_anonymous = false),
    );
    let (mut c, _) = Raw::control(srv.addr, "user1", "123");
    assert_eq!(c.publish("a/b", b"x"), 0x01);
    // Second login is answered from the verified-login cache.
    let (mut c2, _) = Raw::control(srv.addr, "user1", "123");
    assert_eq!(c2.publish("a/b", b"x"), 0x01);

    for (login, password) in [
        ("user1", "wrong"),
        ("nobody", "x"),
        ("", ""),
        ("stranger", "pw"),
    ] {
        let mut c = Raw::connect(srv.addr);
        c.greet(StreamKind::Control);
        let mut f = Vec::new();
        psrt::protocol::encode_login(&psrt::protocol::Login { login, password }, &mut f);
        c.send(&f);
        let got = c.expect_closed();
        assert!(got.is_empty(), "{login}: no token expected");
    }
}

#[test]
fn oversize_login_frame_is_refused_before_its_body() {
    let srv = TestServer::start();
    let mut c = Raw::connect(srv.addr);
    c.greet(StreamKind::Control);
    c.send(&u32::MAX.to_le_bytes());
    c.expect_closed_within(Duration::from_secs(2));
}

#[test]
fn unknown_token_gets_ff_and_close() {
    let srv = TestServer::start();
    let mut d = Raw::connect(srv.addr);
    d.greet(StreamKind::Data);
    d.send(&[7u8; 33]);
    assert_eq!(d.expect_closed(), [0xFF]);
    let _ = Token([0; 32]);
}
