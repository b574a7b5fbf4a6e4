//! Unit tests of admission before login: the per-address count of
//! connections that have not logged in (`max_handshakes_per_ip`) ends once
//! at login, at a data socket's bind and at every close; the cap on TLS
//! handshakes in progress (`max_tls_handshakes`) refuses the greeting
//! beyond it and stays exact through every way out of the phase; the
//! ClientHello that came with the greeting goes to rustls at once.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use psrt_protocol::StreamKind;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use super::state::Phase as Psrt;
use crate::server::auth::AuthDb;
use crate::server::config::Config;
use crate::server::conn::{CloseReason, ConnId};
use crate::server::dispatch;
use crate::server::phase::Phase;
use crate::server::testing::{Harness, data_hello, greeting, login_frame};

/// The address every harness connection comes from.
fn peer_ip(h: &Harness, id: ConnId) -> IpAddr {
    h.conns[id].ip().expect("a TCP peer")
}

fn closing(h: &Harness, id: ConnId) -> Option<&CloseReason> {
    match h.phase(id) {
        Phase::Closing(r) => Some(r),
        _ => None,
    }
}

#[test]
fn prelogin_count_ends_at_login_bind_and_every_close() {
    let mut h = Harness::new();
    let ids: Vec<ConnId> = (0..5).map(|_| h.accept()).collect();
    let ip = peer_ip(&h, ids[0]);
    let count = |h: &Harness| h.core.admission.handshakes_from(ip);
    assert_eq!(count(&h), 5);

    // Logged in: no longer counts.
    h.feed(ids[0], &greeting(StreamKind::Control));
    h.feed(ids[0], &login_frame("", ""));
    let token = h.session(ids[0]).token;
    assert_eq!(count(&h), 4);
    // A data socket bound to the session: no longer counts.
    h.feed(ids[1], &greeting(StreamKind::Data));
    h.feed(ids[1], &data_hello(token, 10));
    assert!(matches!(h.phase(ids[1]), Phase::Psrt(Psrt::Data(_))));
    assert_eq!(count(&h), 3);
    // A bad greeting closes.
    h.feed(ids[2], b"GET / HTTP/1.1\r\n");
    assert!(closing(&h, ids[2]).is_some());
    assert_eq!(count(&h), 2);
    // The login phase times out.
    h.feed(ids[3], &greeting(StreamKind::Control));
    h.take_output(ids[3]);
    h.advance(h.core.config.timeout + Duration::from_millis(1));
    dispatch::on_due(&mut h.cx(), ids[3]);
    assert!(matches!(closing(&h, ids[3]), Some(CloseReason::Timeout(_))));
    assert_eq!(count(&h), 1);
    // The peer goes away; closing twice, or closing a logged-in session,
    // does not count again.
    for id in [ids[4], ids[4], ids[0], ids[1]] {
        dispatch::close(&mut h.cx(), id, CloseReason::PeerClosed);
        dispatch::apply_effects(&mut h.cx());
    }
    assert_eq!(count(&h), 0);
    assert!(
        h.conns.iter().all(|(_, c)| !c.counted_handshake),
        "every flag cleared"
    );
}

/// A harness whose server has a TLS identity (a fresh self-signed
/// certificate for localhost); the certificate is returned for clients.
fn tls_harness(max_tls_handshakes: usize) -> (Harness, CertificateDer<'static>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let der = cert.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    let mut config = Config::embedded_default();
    config.max_tls_handshakes = max_tls_handshakes;
    let (mut auth, _) = AuthDb::load(&config.auth).unwrap();
    auth.tls = Some(Arc::new(server));
    (Harness::with(config, auth), der)
}

/// The bytes of a client's first flight: its ClientHello.
fn client_hello(ca: &CertificateDer<'static>) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut out).unwrap();
    }
    out
}

const TLS_GREETING: [u8; 3] = [0xEE, 0xAA, 0x01];

#[test]
fn tls_greeting_beyond_the_cap_is_refused() {
    let (mut h, _) = tls_harness(2);
    let a = h.accept();
    let b = h.accept();
    h.feed(a, &TLS_GREETING);
    h.feed(b, &TLS_GREETING);
    assert!(matches!(h.phase(a), Phase::Psrt(Psrt::TlsHandshake(_))));
    assert_eq!(h.core.admission.tls_handshakes(), 2);
    let c = h.accept();
    h.feed(c, &TLS_GREETING);
    assert_eq!(
        closing(&h, c),
        Some(&CloseReason::Limit("max_tls_handshakes"))
    );
    assert_eq!(h.core.stats.limit_refusals, 1);
    assert_eq!(h.core.stats.tls_handshake_refusals, 1);
    assert_eq!(
        h.core.admission.tls_handshakes(),
        2,
        "the refused one never counted"
    );
    // Plain greetings are not affected.
    let d = h.accept();
    h.feed(d, &greeting(StreamKind::Control));
    assert!(matches!(h.phase(d), Phase::Psrt(Psrt::Login)));
    // A slot freed is taken again.
    dispatch::close(&mut h.cx(), a, CloseReason::PeerClosed);
    let e = h.accept();
    h.feed(e, &TLS_GREETING);
    assert!(matches!(h.phase(e), Phase::Psrt(Psrt::TlsHandshake(_))));
    assert_eq!(h.core.admission.tls_handshakes(), 2);
}

#[test]
fn tls_handshake_count_ends_at_every_close() {
    let (mut h, ca) = tls_harness(0);
    let hello = client_hello(&ca);
    let tls = |h: &Harness| h.core.admission.tls_handshakes();

    // The ClientHello in the same read as the greeting is handed to rustls
    // there: its answer (ServerHello …) waits for the socket.
    let with_hello = h.accept();
    h.feed(with_hello, &[&TLS_GREETING[..], &hello].concat());
    assert!(matches!(
        h.phase(with_hello),
        Phase::Psrt(Psrt::TlsHandshake(_))
    ));
    assert!(h.conns[with_hello].stream.has_pending_output());
    assert!(
        h.conns[with_hello].rx.is_empty(),
        "all of it went to rustls"
    );
    assert_eq!(tls(&h), 1);

    // Garbage instead of a ClientHello, in the greeting's read: closed at
    // the greeting, after the phase began (so the count ends too).
    let garbage = h.accept();
    h.feed(
        garbage,
        &[&TLS_GREETING[..], b"GET / HTTP/1.1\r\n\r\n"].concat(),
    );
    assert!(matches!(closing(&h, garbage), Some(CloseReason::Tls(_))));
    assert_eq!(tls(&h), 1);

    // Plaintext input while the handshake is still running is a close.
    let early = h.accept();
    h.feed(early, &TLS_GREETING);
    assert_eq!(tls(&h), 2);
    h.feed(early, &login_frame("", ""));
    assert!(matches!(closing(&h, early), Some(CloseReason::Tls(_))));
    assert_eq!(tls(&h), 1);

    // A handshake that never finishes times out.
    let silent = h.accept();
    h.feed(silent, &TLS_GREETING);
    assert_eq!(tls(&h), 2);
    h.advance(h.core.config.timeout + Duration::from_millis(1));
    for id in [silent, with_hello] {
        dispatch::on_due(&mut h.cx(), id);
    }
    assert!(matches!(closing(&h, silent), Some(CloseReason::Timeout(_))));
    assert!(matches!(
        closing(&h, with_hello),
        Some(CloseReason::Timeout(_))
    ));
    assert_eq!(tls(&h), 0);
    // A close of a closed connection counts nothing.
    dispatch::close(&mut h.cx(), silent, CloseReason::Shutdown);
    assert_eq!(tls(&h), 0);
    assert_eq!(h.core.stats.tls_handshake_refusals, 0);
}
