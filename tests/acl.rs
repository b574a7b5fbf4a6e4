//! ACL enforcement: publish and subscribe denials (`FE`, session kept),
//! all-or-nothing bulk subscribe, the subscribe checks that close the
//! reference's bypasses, and who may log in at all (T23).

mod common;

use common::{Raw, Session, Setup, TestServer};

const MARK: &str = "allowed/marker";

const ACL: &str = "\
_:
  sub: ['allowed/#', '+/xxx', 'data/+', 'wide/#']
  pub: ['allowed/#', 'a/xxx', 'xxx', 'data/x', 'wide/x']
full:
  sub: '#'
  pub: '#'
adminonly:
  admin: true
";

fn server() -> TestServer {
    TestServer::with(Setup::default().acl(ACL).user("full", "f"))
}

/// A publish the ACL does not allow is answered `FE`, nothing is delivered,
/// and the session goes on.
#[test]
fn publish_denied_is_fe_and_session_continues() {
    let srv = server();
    let mut watcher = Session::login(srv.addr, "full", "f");
    watcher.sub(&["#"]);
    let (mut anon, _) = Raw::anonymous(srv.addr);
    assert_eq!(anon.publish("secret/x", b"no"), 0xFE);
    assert_eq!(
        anon.publish("allowed", b"no: allowed/# does not allow allowed"),
        0xFE
    );
    assert_eq!(anon.nop(), 0x01);
    assert_eq!(anon.publish(MARK, b"yes"), 0x01);
    watcher.expect(MARK, b"yes");
    let stats = srv.stop();
    assert_eq!(stats.access_denied, 2, "{stats:?}");
}

/// A subscription the ACL does not allow is answered `FE` and the session
/// goes on.
#[test]
fn subscribe_denied_is_fe() {
    let srv = server();
    let mut s = Session::anonymous(srv.addr);
    assert_eq!(s.ctl.subscribe(&["secret/x"]), 0xFE);
    assert_eq!(s.ctl.subscribe(&["#"]), 0xFE);
    assert_eq!(s.ctl.nop(), 0x01);
    s.sub(&[MARK]);
}

/// Bulk subscribe is all or nothing: one denied topic gives `FE` and none
/// of the allowed topics in the same request is applied (the reference
/// applied the ones before the denied topic).
#[test]
fn bulk_subscribe_is_all_or_nothing() {
    let srv = server();
    let mut s = Session::anonymous(srv.addr);
    let mut publ = Session::login(srv.addr, "full", "f");
    s.sub(&[MARK]);
    assert_eq!(
        s.ctl.subscribe(&["allowed/one", "secret/x", "allowed/two"]),
        0xFE
    );
    // Too deep in the middle: FF, also nothing applied.
    let deep = "allowed/".repeat(40) + "x";
    assert_eq!(s.ctl.subscribe(&["allowed/three", &deep]), 0xFF);
    for t in ["allowed/one", "allowed/two", "allowed/three"] {
        assert_eq!(publ.ctl.publish(t, b"must not arrive"), 0x01);
    }
    assert_eq!(publ.ctl.publish(MARK, b"m"), 0x01);
    s.expect(MARK, b"m");
}

/// The reference's ACL bypass is closed: under the mask `+/xxx` the pattern
/// `/xxx` (which normalises to the one-level `xxx`) is denied, while
/// `a/xxx` is allowed and receives.
#[test]
fn leading_slash_does_not_bypass_the_acl() {
    let srv = server();
    let mut s = Session::anonymous(srv.addr);
    let mut publ = Session::login(srv.addr, "full", "f");
    s.sub(&[MARK]);
    assert_eq!(s.ctl.subscribe(&["/xxx"]), 0xFE);
    assert_eq!(s.ctl.subscribe(&["xxx"]), 0xFE);
    assert_eq!(s.ctl.subscribe(&["a/xxx"]), 0x01);
    assert_eq!(publ.ctl.publish("xxx", b"hidden"), 0x01);
    assert_eq!(publ.ctl.publish("a/xxx", b"visible"), 0x01);
    s.expect("a/xxx", b"visible");
    assert_eq!(publ.ctl.publish(MARK, b"m"), 0x01);
    s.expect(MARK, b"m");
}

/// A subscribe mask must cover the requested pattern: `data/+` allows
/// `data/+` and `data/x` but not `data/#` (which would reach deeper topics).
#[test]
fn mask_must_cover_the_pattern() {
    let srv = server();
    let mut s = Session::anonymous(srv.addr);
    assert_eq!(s.ctl.subscribe(&["data/#"]), 0xFE);
    assert_eq!(s.ctl.subscribe(&["data/x/y"]), 0xFE);
    assert_eq!(s.ctl.subscribe(&["data/+"]), 0x01);
    assert_eq!(s.ctl.subscribe(&["data/x"]), 0x01);
    assert_eq!(s.ctl.publish("data/x", b"1"), 0x01);
    s.expect("data/x", b"1");
}

/// The subscribe check uses the normalised pattern: `wide/#` allows
/// `/wide/x` and `//wide///x` (the reference denied them).
#[test]
fn normalised_pattern_is_checked() {
    let srv = server();
    let mut s = Session::anonymous(srv.addr);
    assert_eq!(s.ctl.subscribe(&["/wide/x"]), 0x01);
    assert_eq!(s.ctl.subscribe(&["//wide///x"]), 0x01);
    assert_eq!(s.ctl.publish("wide/x", b"1"), 0x01);
    s.expect("wide/x", b"1");
}

/// With `allow_anonymous: false` an empty login is refused (closed, no
/// token), while a user with a password still logs in.
#[test]
fn anonymous_disabled() {
    let srv = TestServer::with(
        Setup::default()
            .acl(ACL)
            .user("full", "f")
            .tweak(|c| c.allow_anonymous = false),
    );
    Raw::expect_login_refused(srv.addr, "", "");
    let (mut c, _) = Raw::control(srv.addr, "full", "f");
    assert_eq!(c.nop(), 0x01);
}

/// A user with a valid password but no ACL entry cannot log in.
#[test]
fn user_without_acl_entry_cannot_log_in() {
    let srv = TestServer::with(Setup::default().acl(ACL).user("noacl", "n"));
    Raw::expect_login_refused(srv.addr, "noacl", "n");
    let stats = srv.stop();
    assert_eq!(stats.login_failures, 1, "{stats:?}");
}

/// A user whose ACL entry has only `admin: true` logs in but may neither
/// publish nor subscribe.
#[test]
fn admin_only_user_cannot_pub_or_sub() {
    let srv = TestServer::with(Setup::default().acl(ACL).user("adminonly", "a"));
    let (mut c, _) = Raw::control(srv.addr, "adminonly", "a");
    assert_eq!(c.publish("x", b"1"), 0xFE);
    assert_eq!(c.subscribe(&["x"]), 0xFE);
    assert_eq!(c.subscribe(&["#"]), 0xFE);
    // Unsubscribe needs no permission.
    assert_eq!(c.unsubscribe(&["x"]), 0x01);
    assert_eq!(c.nop(), 0x01);
}
