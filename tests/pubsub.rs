//! Publish / subscribe semantics against the real server: delivery, bulk
//! subscribe layouts, wildcards, normalisation, payload shapes, pipelining,
//! topic errors and PUBLISH_REPL.
//!
//! "Nothing was delivered" is always checked with a marker: the client is
//! also subscribed to a marker topic, the marker is published last, and the
//! next message on the data socket must be the marker (delivery to one
//! client is in publish order).

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Raw, Session, Setup, TestServer};
use psrt::protocol::{ReplBody, Request, encode_repl_body, encode_request};

const MARK: &str = "zz/marker";

/// Subscribes the session to the marker topic.
fn with_marker(s: &mut Session) {
    s.sub(&[MARK]);
}

/// Publishes the marker from `publisher` and asserts it is `s`'s next message.
fn expect_marker_next(publisher: &mut Raw, s: &mut Session) {
    assert_eq!(publisher.publish(MARK, b"mark"), 0x01);
    s.expect(MARK, b"mark");
}

/// A subscriber receives what is published to its topic, with the topic and
/// payload intact, and stops receiving after UNSUBSCRIBE.
#[test]
fn publish_subscribe_unsubscribe() {
    let srv = TestServer::start();
    let mut sub = Session::anonymous(srv.addr);
    let (mut publ, _) = Raw::anonymous(srv.addr);
    with_marker(&mut sub);
    sub.sub(&["a/b"]);
    assert_eq!(publ.publish("a/b", b"hello"), 0x01);
    sub.expect("a/b", b"hello");
    assert_eq!(publ.publish("a/c", b"other"), 0x01);
    expect_marker_next(&mut publ, &mut sub);

    assert_eq!(sub.ctl.unsubscribe(&["a/b"]), 0x01);
    assert_eq!(publ.publish("a/b", b"gone"), 0x01);
    expect_marker_next(&mut publ, &mut sub);
}

/// Bulk SUBSCRIBE works in both client layouts: the Rust client's (a NUL
/// after every topic) and the Python client's (topics joined by NUL); bulk
/// UNSUBSCRIBE likewise. Empty pieces are ignored.
#[test]
fn bulk_subscribe_both_layouts() {
    let srv = TestServer::start();
    let mut sub = Session::anonymous(srv.addr);
    let (mut publ, _) = Raw::anonymous(srv.addr);
    with_marker(&mut sub);
    // Rust layout.
    assert_eq!(sub.ctl.subscribe_raw(b"r/1\0r/2\0r/3\0"), 0x01);
    // Python layout.
    assert_eq!(sub.ctl.subscribe_raw(b"p/1\0p/2\0p/3"), 0x01);
    // Doubled NULs and an all-NUL body are harmless.
    assert_eq!(sub.ctl.subscribe_raw(b"\0\0d/1\0\0"), 0x01);
    assert_eq!(sub.ctl.subscribe_raw(b"\0\0"), 0x01);
    assert_eq!(sub.ctl.subscribe_raw(b""), 0x01);
    for t in ["r/1", "r/2", "r/3", "p/1", "p/2", "p/3", "d/1"] {
        assert_eq!(publ.publish(t, t.as_bytes()), 0x01);
        sub.expect(t, t.as_bytes());
    }
    assert_eq!(sub.ctl.unsubscribe_raw(b"r/1\0r/2\0"), 0x01);
    assert_eq!(sub.ctl.unsubscribe_raw(b"p/1\0p/2"), 0x01);
    for t in ["r/1", "r/2", "p/1", "p/2"] {
        assert_eq!(publ.publish(t, b"x"), 0x01);
    }
    assert_eq!(publ.publish("r/3", b"still"), 0x01);
    sub.expect("r/3", b"still");
    assert_eq!(publ.publish("p/3", b"still"), 0x01);
    sub.expect("p/3", b"still");
    expect_marker_next(&mut publ, &mut sub);
}

/// `+` matches exactly one level, an empty (trailing) one too, and not zero
/// or two levels.
#[test]
fn plus_matches_one_level_including_empty() {
    let srv = TestServer::start();
    let mut sub = Session::anonymous(srv.addr);
    let (mut publ, _) = Raw::anonymous(srv.addr);
    with_marker(&mut sub);
    sub.sub(&["w/+", "a/+/c"]);
    assert_eq!(publ.publish("w/x", b"1"), 0x01);
    sub.expect("w/x", b"1");
    assert_eq!(publ.publish("w/", b"empty level"), 0x01);
    sub.expect("w/", b"empty level");
    assert_eq!(publ.publish("a/b/c", b"2"), 0x01);
    sub.expect("a/b/c", b"2");
    for t in ["w", "w/x/y", "a/c", "a/b/c/d", "a/b/x"] {
        assert_eq!(publ.publish(t, b"no"), 0x01);
    }
    expect_marker_next(&mut publ, &mut sub);
}

/// `a/#` matches one or more further levels but not `a` itself; a lone `#`
/// matches every topic, the empty one (published as `/`) included.
#[test]
fn hash_semantics() {
    let srv = TestServer::start();
    let mut sub = Session::anonymous(srv.addr);
    let mut all = Session::anonymous(srv.addr);
    let (mut publ, _) = Raw::anonymous(srv.addr);
    with_marker(&mut sub);
    sub.sub(&["a/#"]);
    all.sub(&["#"]);

    assert_eq!(publ.publish("a", b"not for a/#"), 0x01);
    all.expect("a", b"not for a/#");
    assert_eq!(publ.publish("a/b", b"1"), 0x01);
    sub.expect("a/b", b"1");
    all.expect("a/b", b"1");
    assert_eq!(publ.publish("a/b/c/d", b"2"), 0x01);
    sub.expect("a/b/c/d", b"2");
    all.expect("a/b/c/d", b"2");
    assert_eq!(publ.publish("/", b"root"), 0x01);
    all.expect("", b"root");
    expect_marker_next(&mut publ, &mut sub);
    all.expect(MARK, b"mark");
}

/// A client whose several masks all match a topic gets the message once.
#[test]
fn delivered_once_when_several_masks_match() {
    let srv = TestServer::start();
    let mut sub = Session::anonymous(srv.addr);
    let (mut publ, _) = Raw::anonymous(srv.addr);
    with_marker(&mut sub);
    sub.sub(&["a/b", "a/+", "a/#", "#", "+/b", "+/+"]);
    assert_eq!(publ.publish("a/b", b"once"), 0x01);
    sub.expect("a/b", b"once");
    // `#` also matches the marker: it arrives once as well.
    expect_marker_next(&mut publ, &mut sub);
    assert_eq!(publ.publish("a/b", b"again"), 0x01);
    sub.expect("a/b", b"again");
    expect_marker_next(&mut publ, &mut sub);
}

/// Topics are normalised: `//a///b` is delivered as `a/b`, and a
/// subscription to `/x` receives messages published to `x`.
#[test]
fn topics_are_normalised() {
    let srv = TestServer::start();
    let mut sub = Session::anonymous(srv.addr);
    let (mut publ, _) = Raw::anonymous(srv.addr);
    sub.sub(&["a/b", "/x"]);
    assert_eq!(publ.publish("//a///b", b"1"), 0x01);
    sub.expect("a/b", b"1");
    assert_eq!(publ.publish("x", b"2"), 0x01);
    sub.expect("x", b"2");
    assert_eq!(publ.publish("/x", b"3"), 0x01);
    sub.expect("x", b"3");
    // Unsubscribing uses the normalised form too.
    assert_eq!(sub.ctl.unsubscribe(&["//x"]), 0x01);
    assert_eq!(publ.publish("x", b"gone"), 0x01);
    assert_eq!(publ.publish("a/b", b"4"), 0x01);
    sub.expect("a/b", b"4");
}

/// The priority byte is passed to subscribers unchanged.
#[test]
fn priority_byte_is_passed_through() {
    let srv = TestServer::start();
    let mut sub = Session::anonymous(srv.addr);
    let (mut publ, _) = Raw::anonymous(srv.addr);
    sub.sub(&["p"]);
    for prio in [0x00, 0x10, 0x7f, 0xff] {
        assert_eq!(publ.publish_prio(prio, "p", b"x"), 0x01);
        let (got, topic, msg) = sub.data.next_message();
        assert_eq!(
            (got, topic.as_str(), msg.as_slice()),
            (prio, "p", &b"x"[..])
        );
    }
}

/// Payload shapes survive the round trip: empty, with NULs (only the first
/// NUL of the frame ends the topic), and 1 MB of binary.
#[test]
fn payload_shapes() {
    let srv = TestServer::start();
    let mut sub = Session::anonymous(srv.addr);
    let (mut publ, _) = Raw::anonymous(srv.addr);
    sub.sub(&["bin"]);
    assert_eq!(publ.publish("bin", b""), 0x01);
    sub.expect("bin", b"");
    assert_eq!(publ.publish("bin", b"\0a\0\0b\0"), 0x01);
    sub.expect("bin", b"\0a\0\0b\0");
    let big: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert_eq!(publ.publish("bin", &big), 0x01);
    let (topic, got) = sub.recv();
    assert_eq!(topic, "bin");
    assert!(got == big, "1 MB payload differs");
}

/// A publisher subscribed to its own topic receives its own messages (no
/// "no-local").
#[test]
fn publisher_receives_its_own_messages() {
    let srv = TestServer::start();
    let mut s = Session::anonymous(srv.addr);
    s.sub(&["self"]);
    assert_eq!(s.ctl.publish("self", b"echo"), 0x01);
    s.expect("self", b"echo");
}

/// 10 000 PUBLISH frames written in one go, before any reply is read, are
/// all answered `01` in order, and a subscriber receives them all in order.
#[test]
fn pipelined_publishes_keep_order() {
    const N: u32 = 10_000;
    let srv = TestServer::start();
    let mut sub = Session::anonymous(srv.addr);
    sub.sub(&["pipe"]);
    let (mut publ, _) = Raw::anonymous(srv.addr);

    let frames = common::numbered_publishes("pipe", 0..N);
    // Read the subscriber on its own thread while the publisher writes.
    let reader = std::thread::spawn(move || {
        for i in 0..N {
            let (topic, msg) = sub.recv();
            assert_eq!(topic, "pipe");
            assert_eq!(msg, i.to_le_bytes(), "message {i} out of order");
        }
        sub
    });
    let mut writer = publ.s.try_clone().unwrap();
    let w = std::thread::spawn(move || writer.write_all(&frames).unwrap());
    let replies = publ.read_exact(N as usize);
    w.join().unwrap();
    assert!(replies.iter().all(|&r| r == 0x01), "every reply is 01");
    reader.join().expect("subscriber got all messages in order");
}

/// With `server.busy_poll_us` off and long (the default, 50, runs in every
/// other test), request/response, a large message, pipelining and a quiet
/// spell all behave the same.
#[test]
fn the_busy_poll_changes_no_behaviour() {
    for us in [0, 200] {
        let srv = TestServer::with(Setup::default().tweak(move |c| c.busy_poll_us = us));
        let mut sub = Session::anonymous(srv.addr);
        sub.sub(&["bp/#"]);
        let (mut publ, _) = Raw::anonymous(srv.addr);
        for i in 0..500u32 {
            assert_eq!(publ.publish("bp/rr", &i.to_le_bytes()), 0x01);
            sub.expect("bp/rr", &i.to_le_bytes());
        }
        let big: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        assert_eq!(publ.publish("bp/big", &big), 0x01);
        sub.expect("bp/big", &big);
        publ.send(&common::numbered_publishes("bp/pipe", 0..2000));
        assert!(publ.read_exact(2000).iter().all(|&r| r == 0x01));
        for i in 0..2000u32 {
            sub.expect("bp/pipe", &i.to_le_bytes());
        }
        // Quiet: the loop sleeps again; the next request is served as before.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(publ.publish("bp/rr", b"after"), 0x01);
        sub.expect("bp/rr", b"after");
    }
}

/// Publishing to a topic with `+` or `#` anywhere closes the connection.
#[test]
fn publish_to_wildcard_topic_closes() {
    let srv = TestServer::start();
    for topic in ["a/+", "#", "a/#", "a/b#c", "x+y"] {
        let (mut c, _) = Raw::anonymous(srv.addr);
        let mut f = Vec::new();
        encode_request(
            &Request::Publish {
                priority: 0x7f,
                topic,
                message: b"x",
            },
            &mut f,
        );
        c.send(&f);
        let got = c.expect_closed();
        assert!(got.is_empty(), "{topic}: no reply expected, got {got:02x?}");
    }
    // The server is fine afterwards.
    let (mut c, _) = Raw::anonymous(srv.addr);
    assert_eq!(c.nop(), 0x01);
}

/// A topic deeper than max_topic_depth is answered `FF` for publish,
/// subscribe and unsubscribe, and the session stays usable.
#[test]
fn too_deep_topic_is_ff_and_session_continues() {
    let srv = TestServer::with(Setup::default().tweak(|c| c.limits.max_topic_depth = 4));
    let mut s = Session::anonymous(srv.addr);
    let ok = "a/b/c/d/e"; // 4 slashes
    let deep = "a/b/c/d/e/f"; // 5 slashes
    assert_eq!(s.ctl.publish(deep, b"x"), 0xFF);
    assert_eq!(s.ctl.subscribe(&[deep]), 0xFF);
    assert_eq!(s.ctl.unsubscribe(&[deep]), 0xFF);
    // Slash runs do not count.
    assert_eq!(s.ctl.subscribe(&["//a//b//c//d//e"]), 0x01);
    assert_eq!(s.ctl.nop(), 0x01);
    assert_eq!(s.ctl.publish(ok, b"fine"), 0x01);
    s.expect(ok, b"fine");
}

/// UNSUBSCRIBE of something never subscribed is `01`; subscribing twice is
/// a no-op (one unsubscribe removes it).
#[test]
fn unsubscribe_unknown_and_double_subscribe() {
    let srv = TestServer::start();
    let mut s = Session::anonymous(srv.addr);
    let (mut publ, _) = Raw::anonymous(srv.addr);
    with_marker(&mut s);
    assert_eq!(s.ctl.unsubscribe(&["never/subscribed"]), 0x01);
    s.sub(&["twice"]);
    s.sub(&["twice"]);
    assert_eq!(publ.publish("twice", b"1"), 0x01);
    s.expect("twice", b"1");
    expect_marker_next(&mut publ, &mut s);
    assert_eq!(s.ctl.unsubscribe(&["twice"]), 0x01);
    assert_eq!(publ.publish("twice", b"2"), 0x01);
    expect_marker_next(&mut publ, &mut s);
    let stats = srv.stop();
    // marker + twice subscribed (the second is a no-op) + one unsubscribe.
    assert_eq!(stats.c_sub_ops, 3, "{stats:?}");
}

fn repl_setup() -> Setup {
    Setup::default()
        .acl(
            "_:\n  sub: '#'\n  pub: '#'\nrepl:\n  replicator: true\nplain:\n  pub: '#'\n  sub: '#'\n",
        )
        .user("repl", "r")
        .user("plain", "p")
}

/// PUBLISH_REPL by a replicator: `E0` when nobody subscribes; otherwise
/// `02`, then the body `PRIO TS LEN MSG` is answered `01` and delivered
/// with the sender's priority.
#[test]
fn publish_repl_by_a_replicator() {
    let srv = TestServer::with(repl_setup());
    let (mut repl, _) = Raw::control(srv.addr, "repl", "r");
    assert_eq!(repl.request(&Request::PublishRepl { topic: "r/t" }), 0xE0);

    let mut sub = Session::anonymous(srv.addr);
    sub.sub(&["r/+"]);
    assert_eq!(repl.request(&Request::PublishRepl { topic: "r/t" }), 0x02);
    let mut body = Vec::new();
    encode_repl_body(
        &ReplBody {
            priority: 0x33,
            timestamp_ns: 1_700_000_000_000_000_000,
            message: b"replicated\0payload",
        },
        &mut body,
    );
    repl.send(&body);
    assert_eq!(repl.read_byte(), 0x01);
    let (prio, topic, msg) = sub.data.next_message();
    assert_eq!(prio, 0x33);
    assert_eq!(topic, "r/t");
    assert_eq!(msg, b"replicated\0payload");
    // The session goes on normally.
    assert_eq!(repl.nop(), 0x01);
    assert_eq!(repl.request(&Request::PublishRepl { topic: "other" }), 0xE0);
}

/// Replication input is validated like a publish: a PUBLISH_REPL topic
/// with wildcards or over the depth limit is answered `FF` (no body is asked
/// for, nothing is delivered); a topic with doubled slashes is normalised.
#[test]
fn publish_repl_topics_are_validated() {
    let srv = TestServer::with(repl_setup().tweak(|c| c.limits.max_topic_depth = 100));
    let mut sub = Session::anonymous(srv.addr);
    sub.sub(&["#"]);
    let (mut repl, _) = Raw::control(srv.addr, "repl", "r");
    let deep = vec!["x"; 102].join("/");
    for bad in ["a/+/#", "a/#", "+", deep.as_str()] {
        assert_eq!(
            repl.request(&Request::PublishRepl { topic: bad }),
            0xFF,
            "{bad:?}"
        );
    }
    assert_eq!(repl.nop(), 0x01, "the link goes on");
    assert_eq!(repl.request(&Request::PublishRepl { topic: "a//b" }), 0x02);
    let mut body = Vec::new();
    encode_repl_body(
        &ReplBody {
            priority: 0,
            timestamp_ns: 1,
            message: b"ok",
        },
        &mut body,
    );
    repl.send(&body);
    assert_eq!(repl.read_byte(), 0x01);
    let (_, topic, msg) = sub.data.next_message();
    assert_eq!((topic.as_str(), msg.as_slice()), ("a/b", &b"ok"[..]));
}

/// PUBLISH_REPL by a user without `replicator: true` is `FE`, and the
/// session continues.
#[test]
fn publish_repl_by_a_non_replicator_is_denied() {
    let srv = TestServer::with(repl_setup());
    let mut sub = Session::anonymous(srv.addr);
    sub.sub(&["r/t"]);
    let (mut plain, _) = Raw::control(srv.addr, "plain", "p");
    assert_eq!(plain.request(&Request::PublishRepl { topic: "r/t" }), 0xFE);
    let (mut anon, _) = Raw::anonymous(srv.addr);
    assert_eq!(anon.request(&Request::PublishRepl { topic: "r/t" }), 0xFE);
    assert_eq!(plain.nop(), 0x01);
    assert_eq!(plain.publish("r/t", b"normal"), 0x01);
    sub.expect("r/t", b"normal");
    sub.data.expect_silence(Duration::from_millis(100));
}

/// `a/#/z` is the same subscription as `a/#` (everything after `#` is
/// ignored): subscribing both is one subscription, and unsubscribing either
/// name ends it — never a session that believes it is subscribed while the
/// server does not deliver.
#[test]
fn masks_after_hash_are_one_subscription() {
    let srv = TestServer::start();
    let mut sub = Session::anonymous(srv.addr);
    sub.sub(&["a/#", "a/#/z"]);
    let (mut publisher, _) = Raw::anonymous(srv.addr);
    assert_eq!(publisher.publish("a/x", b"1"), 0x01);
    assert_eq!(sub.recv().1, b"1");
    sub.data.expect_silence(Duration::from_millis(100));
    assert_eq!(sub.ctl.unsubscribe(&["a/#/z"]), 0x01);
    assert_eq!(publisher.publish("a/y", b"2"), 0x01);
    sub.data.expect_silence(Duration::from_millis(200));
    let stats = srv.stop();
    assert_eq!(stats.c_sub_ops, 2, "one subscribe, one unsubscribe");
}
