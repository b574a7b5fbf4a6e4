//! Unit tests of UDP datagram handling with no socket (acks are not sent):
//! plain-auth datagrams waiting with their pair's one bcrypt check (answered
//! by hand), its bounds, the login cache both ways, and AES-GCM replays.

use std::net::SocketAddr;
use std::path::Path;

use psrt_protocol::{
    UdpCipher, UdpKey, UdpOp, encode_push_header, encode_udp_body, encode_udp_encrypted,
    encode_udp_plain,
};

use super::Udp;
use crate::server::auth::worker::{Ticket, Verified};
use crate::server::auth::{Acl, AuthDb, Keys, Passwords};
use crate::server::config::Config;
use crate::server::conn::ConnId;
use crate::server::testing::{Harness, topics};

const KEY: [u8; 32] = [7; 32];

/// `_` subscribes to everything; `s` publishes under `s/`, with password
/// `pw` and the AES key [`KEY`].
fn harness() -> Harness {
    let acl_text = "_:\n  sub: '#'\ns:\n  pub: 's/#'\n";
    let acl = Acl::parse(acl_text, Path::new("acl.yml")).unwrap();
    let (mut passwords, _) = Passwords::parse(&format!("s:{}\n", bcrypt::hash("pw", 4).unwrap()));
    passwords.make_decoy(4).unwrap();
    let hex: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
    let (keys, warnings) =
        Keys::parse(&format!("s: {hex}\n"), Path::new("keys.yml"), &acl).unwrap();
    assert!(warnings.is_empty());
    Harness::with(
        Config::embedded_default(),
        AuthDb {
            acl,
            passwords,
            keys,
            ..AuthDb::default()
        },
    )
}

fn src() -> SocketAddr {
    "192.0.2.9:4000".parse().unwrap()
}

fn body(n: u8) -> Vec<u8> {
    let mut b = Vec::new();
    encode_udp_body(UdpOp::PublishNoAck, 0x7f, "s/t", &[n], &mut b);
    b
}

fn plain(password: &str, n: u8) -> Vec<u8> {
    let mut d = Vec::new();
    encode_udp_plain("s", password, &body(n), &mut d);
    d
}

fn sealed(nonce: u8, n: u8) -> Vec<u8> {
    let mut d = Vec::new();
    let key = UdpKey::new(&KEY);
    encode_udp_encrypted(
        &key,
        UdpCipher::Aes256Gcm,
        "s",
        [nonce; 12],
        &body(n),
        &mut d,
    );
    d
}

/// A datagram arrives on socket 0.
fn arrive(h: &mut Harness, udp: &mut Udp, datagram: &[u8]) {
    udp.on_datagram(&mut h.cx(), 0, src(), datagram);
}

/// The worker's answer for check `id` of `s` with `password`.
fn answer(h: &mut Harness, udp: &mut Udp, id: u64, password: &str, ok: bool) {
    h.core.worker.answered(Ticket::Datagram(id));
    let v = Verified {
        ticket: Ticket::Datagram(id),
        login: "s".into(),
        hash: h.core.auth.passwords.get("s").unwrap().hash.clone(),
        password: password.into(),
        ok,
        decoy: false,
    };
    udp.on_verified(&mut h.cx(), id, v);
}

/// An anonymous subscriber to `#`: its data socket.
fn subscriber(h: &mut Harness) -> ConnId {
    let (control, data) = h.client();
    h.feed(control, &topics(true, &["#"]));
    assert_eq!(h.take_output(control), [0x01]);
    data
}

/// The payloads a subscriber's data socket received.
fn received(h: &mut Harness, data: ConnId) -> Vec<u8> {
    let out = h.take_output(data);
    let mut frame = Vec::new();
    encode_push_header(0x7f, "s/t", 1, &mut frame);
    frame.push(0);
    assert_eq!(out.len() % frame.len(), 0, "{out:?}");
    out.chunks(frame.len()).map(|f| f[f.len() - 1]).collect()
}

#[test]
fn datagrams_wait_with_their_pairs_one_check_and_are_published_in_order() {
    let mut h = harness();
    let data = subscriber(&mut h);
    let mut udp = Udp::default();
    for n in 0..5 {
        arrive(&mut h, &mut udp, &plain("pw", n));
    }
    assert_eq!(h.core.worker.in_flight_bulk, 1, "one bcrypt job for five");
    assert_eq!(h.core.worker.in_flight, 0, "not in the logins' queue");
    assert!(received(&mut h, data).is_empty());
    answer(&mut h, &mut udp, 1, "pw", true);
    assert_eq!(received(&mut h, data), [0, 1, 2, 3, 4], "in arrival order");
    assert!(udp.parked.is_empty());
    // Cached now: published at once.
    arrive(&mut h, &mut udp, &plain("pw", 5));
    assert_eq!(received(&mut h, data), [5]);
    assert_eq!(h.core.worker.in_flight_bulk, 0);
    assert_eq!(
        (h.core.stats.udp_messages, h.core.stats.udp_dropped),
        (6, 0)
    );
}

#[test]
fn a_failed_check_drops_its_datagrams_and_a_repeat_costs_no_bcrypt() {
    let mut h = harness();
    let data = subscriber(&mut h);
    let mut udp = Udp::default();
    for n in 0..3 {
        arrive(&mut h, &mut udp, &plain("bad", n));
    }
    // Another pair has its own check; it is not held up by the first.
    arrive(&mut h, &mut udp, &plain("pw", 9));
    assert_eq!(h.core.worker.in_flight_bulk, 2);
    answer(&mut h, &mut udp, 1, "bad", false);
    assert_eq!(h.core.stats.udp_dropped, 3);
    assert!(received(&mut h, data).is_empty());
    arrive(&mut h, &mut udp, &plain("bad", 4));
    assert_eq!(h.core.stats.udp_dropped, 4, "refused from the cache");
    assert_eq!(h.core.worker.in_flight_bulk, 1, "no new job");
    answer(&mut h, &mut udp, 2, "pw", true);
    assert_eq!(received(&mut h, data), [9]);
    // A stale or unknown answer changes nothing.
    answer(&mut h, &mut udp, 77, "pw", true);
    assert_eq!(
        h.core.stats.login_failures, 0,
        "UDP failures are not logins"
    );
}

#[test]
fn unknown_logins_are_dropped_at_once() {
    let mut h = harness();
    let mut udp = Udp::default();
    let mut d = Vec::new();
    encode_udp_plain("ghost", "pw", &body(0), &mut d);
    arrive(&mut h, &mut udp, &d);
    assert_eq!(h.core.stats.udp_dropped, 1);
    assert_eq!(h.core.worker.in_flight_bulk, 0, "no decoy check for UDP");
    assert!(udp.parked.is_empty());
}

#[test]
fn waiting_is_bounded_per_check_and_in_total() {
    let mut h = harness();
    let data = subscriber(&mut h);
    let mut udp = Udp::default();
    let one = plain("pw", 0).len() + size_of::<super::parked::Datagram>();
    h.core.config.udp_pending_bytes_per_check = 3 * one;
    h.core.config.udp_pending_bytes = 4 * one;
    for n in 0..5 {
        arrive(&mut h, &mut udp, &plain("pw", n));
    }
    assert_eq!(h.core.stats.udp_dropped, 2, "three wait, two are dropped");
    // A second pair gets what is left of the total.
    for n in 0..3 {
        arrive(&mut h, &mut udp, &plain("p2", n));
    }
    assert_eq!(h.core.stats.udp_dropped, 4);
    answer(&mut h, &mut udp, 1, "pw", true);
    assert_eq!(received(&mut h, data), [0, 1, 2]);
    assert_eq!(udp.parked.bytes(), one);
}

#[test]
fn replayed_encrypted_datagrams_are_counted_and_dropped() {
    let mut h = harness();
    let data = subscriber(&mut h);
    let mut udp = Udp::default();
    let d = sealed(1, 0);
    for _ in 0..3 {
        arrive(&mut h, &mut udp, &d);
    }
    assert_eq!(received(&mut h, data), [0], "delivered once");
    assert_eq!(h.core.stats.udp_replayed, 2);
    assert_eq!(h.core.stats.udp_dropped, 0, "replays are counted apart");
    arrive(&mut h, &mut udp, &sealed(2, 1));
    assert_eq!(received(&mut h, data), [1], "a new nonce is delivered");
    // A forgery reusing a seen nonce is a failed seal, not a replay.
    let mut forged = sealed(2, 1);
    *forged.last_mut().unwrap() ^= 1;
    arrive(&mut h, &mut udp, &forged);
    assert_eq!(h.core.stats.udp_dropped, 1);
    assert_eq!(h.core.stats.udp_replayed, 2);
    // Beyond the window a replay is not detected (documented).
    h.core.config.udp_replay_window = 16;
    for nonce in 3..20 {
        arrive(&mut h, &mut udp, &sealed(nonce, 2));
    }
    arrive(&mut h, &mut udp, &d);
    assert_eq!(h.core.stats.udp_replayed, 2);
    assert_eq!(received(&mut h, data).len(), 18);
    // A reload that removes the key forgets its window.
    udp.after_reload(&Keys::default());
    assert!(udp.replay.is_empty());
}
