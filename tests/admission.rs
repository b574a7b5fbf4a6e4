//! Connections before login are capped per source address (issue #12,
//! item 11; `server.max_handshakes_per_ip`, default 64): one address cannot
//! hold every slot, clients from other addresses still get in, and a
//! connection stops counting once it is logged in or closed. The test
//! clients bind loopback addresses of their own (127.0.0.0/8).

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::{Raw, Setup, TestServer};
use psrt::protocol::{Login, StreamKind, TOKEN_LEN, encode_login};

/// The default `server.max_handshakes_per_ip`.
const DEFAULT_CAP: usize = 64;

fn login(c: &mut Raw) {
    let mut f = Vec::new();
    encode_login(
        &Login {
            login: "",
            password: "",
        },
        &mut f,
    );
    c.send(&f);
    assert_eq!(c.read_exact(TOKEN_LEN).len(), TOKEN_LEN, "a token");
}

/// From one address, the cap's worth of connections that never log in are
/// served (each gets its greeting reply); more from that address are
/// closed at once without a byte; another address still logs in; when one
/// of the held connections logs in or goes away, its address gets a slot
/// back. Each refusal counts as a limit refusal.
#[test]
fn connections_before_login_are_capped_per_address() {
    // Held connections must not reach their handshake deadline mid-test.
    let srv = TestServer::with(Setup::default().tweak(|c| c.timeout = Duration::from_secs(60)));
    let crowded = Ipv4Addr::new(127, 0, 0, 1);
    let mut held: Vec<Raw> = (0..DEFAULT_CAP)
        .map(|_| {
            let mut c = Raw::connect_from(crowded, srv.addr);
            c.greet(StreamKind::Control);
            c
        })
        .collect();
    for _ in 0..5 {
        let mut extra = Raw::connect_from(crowded, srv.addr);
        let got = extra.expect_closed_within(Duration::from_secs(3));
        assert!(got.is_empty(), "nothing is sent to a refused connection");
    }

    let mut other = Raw::connect_from(Ipv4Addr::new(127, 0, 0, 2), srv.addr);
    other.greet(StreamKind::Control);
    login(&mut other);
    assert_eq!(other.nop(), 0x01, "another address logs in");

    // A held connection logs in: it no longer counts, so one more fits.
    let mut first = held.swap_remove(0);
    login(&mut first);
    assert_eq!(first.nop(), 0x01);
    let mut next = Raw::connect_from(crowded, srv.addr);
    next.greet(StreamKind::Control);
    held.push(next);
    let mut extra = Raw::connect_from(crowded, srv.addr);
    assert!(
        extra
            .expect_closed_within(Duration::from_secs(3))
            .is_empty()
    );

    // One held connection goes away: once the server has read its close,
    // the address has a slot again.
    drop(held.pop());
    let mut again = None;
    let freed = common::wait_until(Duration::from_secs(5), || {
        again = try_greet(crowded, &srv);
        again.is_some()
    });
    assert!(freed, "the slot of a closed connection was never freed");
    let mut again = again.expect("greeted");
    login(&mut again);
    assert_eq!(again.nop(), 0x01);
    assert_eq!(first.nop(), 0x01);
    drop(held);
    let stats = srv.stop();
    assert!(stats.limit_refusals >= 6, "{stats:?}");
}

/// A greeting from `src`, if the server takes the connection.
fn try_greet(src: Ipv4Addr, srv: &TestServer) -> Option<Raw> {
    use std::io::Read;
    let mut c = Raw::connect_from(src, srv.addr);
    c.send(&[0xEE, 0xAA, 0x00]);
    let mut reply = [0u8; 4];
    c.s.read_exact(&mut reply).ok()?;
    assert_eq!(reply, [0xEE, 0xAA, 0x01, 0x00]);
    Some(c)
}
