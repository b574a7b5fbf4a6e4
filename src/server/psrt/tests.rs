//! Unit tests of the PSRT handlers, driven through `dispatch` with byte
//! slices and a clock the test sets (no sockets).

use std::time::Duration;

use psrt_protocol::{Request, StreamKind, Token, encode_push_header};

use crate::server::auth::Passwords;
use crate::server::auth::worker::{Ticket, Verified};
use crate::server::conn::CloseReason;
use crate::server::dispatch;
use crate::server::phase::Phase;
use crate::server::psrt::state::Phase as Psrt;
use crate::server::testing::{
    Harness, data_hello, greeting, login_frame, publish, request, topics,
};

/// The pushed frame a subscriber receives for a publish.
fn pushed(topic: &str, message: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    encode_push_header(0x7f, topic, message.len(), &mut v);
    v.extend_from_slice(message);
    v
}

fn closing(h: &Harness, id: usize) -> Option<&CloseReason> {
    match h.phase(id) {
        Phase::Closing(r) => Some(r),
        _ => None,
    }
}

#[test]
fn greeting_then_anonymous_login_issues_a_token() {
    let mut h = Harness::new();
    let id = h.accept();
    // Split at every index: the greeting arrives a byte at a time.
    for b in greeting(StreamKind::Control) {
        h.feed(id, &[b]);
    }
    assert!(matches!(h.phase(id), Phase::Psrt(Psrt::Login)));
    assert_eq!(h.take_output(id), [0xEE, 0xAA, 0x01, 0x00]);
    h.feed(id, &login_frame("", ""));
    let token = h.take_output(id);
    assert_eq!(token.len(), 32);
    let session = h.session(id);
    assert_eq!(&*session.login, "_");
    assert_eq!(session.token, Token(token.try_into().unwrap()));
    assert_eq!(h.core.sessions, 1);
}

#[test]
fn bad_greeting_closes_and_counts() {
    let mut h = Harness::new();
    let id = h.accept();
    h.feed(id, b"GET / HTTP/1.1\r\n");
    assert!(matches!(closing(&h, id), Some(CloseReason::BadGreeting(_))));
    assert_eq!(h.core.stats.bad_greetings, 1);
    assert!(h.take_output(id).is_empty(), "nothing is answered");
}

#[test]
fn anonymous_login_refused_when_disabled() {
    let mut h = Harness::new();
    h.core.config.allow_anonymous = false;
    let id = h.accept();
    h.feed(id, &greeting(StreamKind::Control));
    h.feed(id, &login_frame("", ""));
    assert!(matches!(closing(&h, id), Some(CloseReason::LoginFailed(_))));
    assert_eq!(h.core.stats.login_failures, 1);
    assert_eq!(h.core.sessions, 0);
}

/// With a password file, an unknown user costs a bcrypt check against the
/// decoy hash (as long as a wrong password), then is refused as unknown.
/// Without one (the embedded default) there is nothing to hide: refused at
/// once.
#[test]
fn unknown_user_costs_a_decoy_check() {
    let mut h = Harness::new();
    let id = h.accept();
    h.feed(id, &greeting(StreamKind::Control));
    h.feed(id, &login_frame("nobody", "secret"));
    assert!(
        matches!(closing(&h, id), Some(CloseReason::LoginFailed(why)) if why.contains("unknown user"))
    );
    assert_eq!(h.core.worker.in_flight, 0, "no password file: no decoy");

    let (mut passwords, _) = Passwords::parse(&format!("u:{}\n", bcrypt::hash("pw", 4).unwrap()));
    passwords.make_decoy(4).unwrap();
    let decoy: Box<str> = passwords.decoy().unwrap().into();
    h.core.auth.passwords = passwords;
    let id = h.accept();
    h.feed(id, &greeting(StreamKind::Control));
    h.feed(id, &login_frame("nobody", "secret"));
    assert!(matches!(h.phase(id), Phase::Psrt(Psrt::Authenticating)));
    assert_eq!(h.core.worker.in_flight, 1);
    let v = Verified {
        ticket: Ticket::Conn {
            conn: id,
            serial: h.conns[id].serial,
        },
        login: "nobody".into(),
        hash: decoy,
        password: "secret".into(),
        ok: false,
        decoy: true,
    };
    dispatch::on_verified(&mut h.cx(), id, v);
    assert!(
        matches!(closing(&h, id), Some(CloseReason::LoginFailed(why)) if why.contains("unknown user")),
        "{:?}",
        h.phase(id)
    );
    assert_eq!(h.core.stats.login_failures, 2);
    // Repeated: refused from the login cache, like a repeated wrong password.
    let id = h.accept();
    h.feed(id, &greeting(StreamKind::Control));
    h.feed(id, &login_frame("nobody", "secret"));
    assert!(
        matches!(closing(&h, id), Some(CloseReason::LoginFailed(why)) if why.contains("unknown user"))
    );
    assert_eq!(h.core.worker.in_flight, 1);
}

#[test]
fn publish_reaches_each_subscriber_once() {
    let mut h = Harness::new();
    let (sub, sub_data) = h.client();
    let (other, other_data) = h.client();
    let (publisher, _) = h.client();
    // Two masks of one client match: it still gets the message once.
    h.feed(sub, &topics(true, &["a/#", "a/+"]));
    h.feed(other, &topics(true, &["b/#"]));
    assert_eq!(h.take_output(sub), [0x01]);
    h.feed(publisher, &publish("a/x", b"hello"));
    assert_eq!(h.take_output(publisher), [0x01]);
    assert_eq!(h.take_output(sub_data), pushed("a/x", b"hello"));
    assert!(h.take_output(other_data).is_empty());
    assert_eq!(h.core.stats.c_pub_messages, 1);
    assert_eq!(h.core.stats.c_sent_messages, 1);
    assert_eq!(h.core.stats.c_sub_ops, 3);
}

#[test]
fn publish_topic_is_normalised_before_delivery() {
    let mut h = Harness::new();
    let (sub, data) = h.client();
    h.feed(sub, &topics(true, &["a/b"]));
    h.take_output(sub);
    let (publisher, _) = h.client();
    h.feed(publisher, &publish("/a//b", b"x"));
    assert_eq!(h.take_output(publisher), [0x01]);
    assert_eq!(h.take_output(data), pushed("a/b", b"x"));
}

#[test]
fn wildcard_publish_closes_the_session() {
    let mut h = Harness::new();
    let (publisher, data) = h.client();
    h.feed(publisher, &publish("a/+", b"x"));
    assert_eq!(closing(&h, publisher), Some(&CloseReason::WildcardPublish));
    assert_eq!(
        closing(&h, data),
        Some(&CloseReason::SessionEnded),
        "its data socket follows"
    );
    assert_eq!(h.core.stats.protocol_errors, 1);
    assert_eq!(h.core.sessions, 0);
    assert!(h.core.tokens.is_empty());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut h = Harness::new();
    let (c, _) = h.client();
    let mut burst = topics(true, &["x"]);
    burst.extend(request(&Request::Nop));
    burst.extend(publish("x", b"1"));
    burst.extend(topics(false, &["x"]));
    h.feed(c, &burst);
    assert_eq!(h.take_output(c), [0x01, 0x01, 0x01, 0x01]);
    assert_eq!(h.session(c).masks.iter().count(), 0);
    assert_eq!(h.core.matcher.len(), 0);
}

#[test]
fn bye_is_answered_then_closes() {
    let mut h = Harness::new();
    let (c, data) = h.client();
    h.feed(c, &request(&Request::Bye));
    assert_eq!(closing(&h, c), Some(&CloseReason::Bye));
    assert_eq!(
        h.take_output(c),
        [0x01],
        "the OK is flushed before the close"
    );
    assert_eq!(closing(&h, data), Some(&CloseReason::SessionEnded));
}

#[test]
fn data_hello_with_unknown_token_is_refused() {
    let mut h = Harness::new();
    let data = h.accept();
    h.feed(data, &greeting(StreamKind::Data));
    h.feed(data, &data_hello(Token([9; 32]), 5));
    assert_eq!(closing(&h, data), Some(&CloseReason::UnknownToken));
    assert_eq!(h.take_output(data), [0xEE, 0xAB, 0x01, 0x00, 0xFF]);
}

#[test]
fn a_new_data_socket_replaces_the_old() {
    let mut h = Harness::new();
    let (control, token) = h.login("", "");
    let first = h.accept();
    h.feed(first, &greeting(StreamKind::Data));
    h.feed(first, &data_hello(token, 4));
    let second = h.accept();
    h.feed(second, &greeting(StreamKind::Data));
    h.feed(second, &data_hello(token, 4));
    assert_eq!(closing(&h, first), Some(&CloseReason::Replaced));
    assert!(matches!(h.phase(second), Phase::Psrt(Psrt::Data(_))));
    assert_eq!(h.session(control).data, Some(second));
    // Closing the replaced socket does not unlink the new one.
    assert!(h.effects().is_empty());
}

#[test]
fn data_socket_beacons_at_half_the_client_timeout() {
    let mut h = Harness::new();
    let (_, token) = h.login("", "");
    let data = h.accept();
    h.feed(data, &greeting(StreamKind::Data));
    h.feed(data, &data_hello(token, 4));
    h.take_output(data);
    let due = crate::server::phase::due(&h.conns[data], h.core.config.timeout).unwrap();
    assert_eq!(due, h.core.now + Duration::from_secs(2));
    h.advance(Duration::from_secs(2));
    dispatch::on_due(&mut h.cx(), data);
    assert_eq!(h.take_output(data), [0x00], "a NOP beacon");
    assert!(matches!(h.phase(data), Phase::Psrt(Psrt::Data(_))));
}

#[test]
fn handshake_deadline_is_fixed_from_the_phase_start() {
    let mut h = Harness::new();
    let id = h.accept();
    let timeout = h.core.config.timeout;
    h.advance(timeout / 2);
    h.feed(id, &[0xEE]);
    let due = crate::server::phase::due(&h.conns[id], timeout).unwrap();
    assert_eq!(due, h.t0 + timeout, "dripping bytes does not extend it");
    h.advance(timeout);
    dispatch::on_due(&mut h.cx(), id);
    assert!(matches!(closing(&h, id), Some(CloseReason::Timeout(_))));
    assert_eq!(h.core.stats.timeouts, 1);
}

#[test]
fn idle_control_socket_times_out() {
    let mut h = Harness::new();
    let (c, _) = h.client();
    let timeout = h.core.config.timeout;
    h.advance(timeout - Duration::from_millis(1));
    h.feed(c, &request(&Request::Nop));
    h.take_output(c);
    let due = crate::server::phase::due(&h.conns[c], timeout).unwrap();
    assert_eq!(
        due,
        h.core.now + timeout,
        "a request restarts the idle clock"
    );
    h.advance(timeout);
    dispatch::on_due(&mut h.cx(), c);
    assert_eq!(
        closing(&h, c),
        Some(&CloseReason::Timeout("control (idle: no request)"))
    );
}

#[test]
fn a_partial_request_gets_a_progress_deadline() {
    let mut h = Harness::new();
    let (c, _) = h.client();
    let timeout = h.core.config.timeout;
    let frame = publish("t", &[7u8; 4000]);
    h.feed(c, &frame[..3000]);
    let clock = h.session(c).clock;
    assert_eq!(clock.partial_since, Some(h.core.now));
    h.advance(timeout + Duration::from_millis(10));
    dispatch::on_due(&mut h.cx(), c);
    assert_eq!(
        closing(&h, c),
        Some(&CloseReason::Timeout("an incomplete request (too slow)"))
    );
}

#[test]
fn a_replicated_message_is_acknowledged_after_the_push_it_caused() {
    use std::sync::Arc;

    use psrt_protocol::encode_repl_seq_head;

    use crate::server::auth::acl::AclEntry;

    let mut h = Harness::new();
    let (sub, sub_data) = h.client();
    h.feed(sub, &topics(true, &["#"]));
    assert_eq!(h.take_output(sub), [0x01]);
    let (repl, _) = h.login("", "");
    if let Phase::Psrt(Psrt::Control(s)) = &mut h.conns[repl].phase {
        let mut acl = AclEntry::full();
        acl.replicator = true;
        s.acl = Arc::new(acl);
    }
    h.feed(repl, &request(&Request::ReplHello { origin: 9 }));
    assert_eq!(h.take_output(repl), [0x01]);
    h.core.reply_list.clear();
    h.core.flush_list.clear();
    for id in [sub, sub_data, repl] {
        h.conns[id].in_flush_list = false;
    }
    let mut frame = Vec::new();
    encode_repl_seq_head(0x7f, 1, 1, "plant/t", 2, &mut frame);
    frame.extend_from_slice(b"42");
    h.feed(repl, &frame);
    // The pipelined link's sender does not wait for this answer: it goes
    // out with the pushes, after them, not ahead of them as a reply would.
    assert!(h.core.reply_list.is_empty());
    assert_eq!(h.core.flush_list, [sub_data, repl]);
    assert_eq!(h.take_output(sub_data), pushed("plant/t", b"42"));
    assert_eq!(h.take_output(repl), [0x01]);
}

#[test]
fn a_large_push_is_written_before_the_publishers_reply() {
    use crate::server::pubsub::deliver::PUSH_FIRST_MIN;

    let mut h = Harness::new();
    let (publisher, _) = h.client();
    let (sub, sub_data) = h.client();
    h.feed(sub, &topics(true, &["plant/#"]));
    assert_eq!(h.take_output(sub), [0x01]);
    let flushed_in_order = |h: &mut Harness, topic: &str, message: &[u8]| {
        h.core.reply_list.clear();
        h.core.flush_list.clear();
        for id in [publisher, sub, sub_data] {
            h.conns[id].in_flush_list = false;
        }
        h.feed(publisher, &publish(topic, message));
        let order = (h.core.reply_list.clone(), h.core.flush_list.clone());
        if topic.starts_with("plant/") {
            assert_eq!(h.take_output(sub_data), pushed(topic, message));
        }
        assert_eq!(h.take_output(publisher), [0x01]);
        order
    };
    let small = vec![1u8; PUSH_FIRST_MIN - 100];
    assert_eq!(
        flushed_in_order(&mut h, "plant/t", &small),
        (vec![publisher], vec![sub_data]),
        "a small push goes after the reply"
    );
    let large = vec![7u8; PUSH_FIRST_MIN];
    assert_eq!(
        flushed_in_order(&mut h, "other/cam", &large),
        (vec![publisher], vec![]),
        "no subscriber: nothing pushed"
    );
    assert!(h.take_output(sub_data).is_empty());
    assert_eq!(
        flushed_in_order(&mut h, "plant/cam", &large),
        (vec![sub_data, publisher], vec![]),
        "a large one ahead of it, on the reply list"
    );
}
