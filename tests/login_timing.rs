//! Unknown users cost the same time as known ones (issue 12, item 12): with
//! a password file at bcrypt cost 10, a PSRT login or HTTP Basic request as
//! a user who is not in the file is checked against a decoy hash of the same
//! cost before it is refused, so user names cannot be found by timing. Only
//! ratios are asserted, never absolute times.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, Raw, Setup, TempDir, TestServer};

const ACL: &str = "_:\n  sub: '#'\nuser1:\n  sub: '#'\n  admin: true\n";

fn server(dir: &TempDir) -> TestServer {
    let passwd = dir.write(
        "passwd-cost10",
        &format!("user1:{}\n", bcrypt::hash("123", 10).unwrap()),
    );
    TestServer::with(Setup::default().acl(ACL).tweak(move |c| {
        c.auth.password_file = Some(passwd);
        // Every attempt here fails: the throttle must not cut them short.
        c.max_login_failures = 0;
    }))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// How long a refused PSRT login takes, greeting to close.
fn psrt_refusal(addr: SocketAddr, login: &str, password: &str) -> Duration {
    let started = Instant::now();
    Raw::expect_login_refused(addr, login, password);
    started.elapsed()
}

/// How long a `/status` request with Basic credentials takes to be answered
/// 401.
fn http_refusal(addr: SocketAddr, login: &str, password: &str) -> Duration {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let raw = format!("{login}:{password}").into_bytes();
    let mut b64 = String::new();
    for chunk in raw.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(
        s,
        "GET /status HTTP/1.1\r\nHost: t\r\nAuthorization: Basic {b64}\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let elapsed = started.elapsed();
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    elapsed
}

/// Alternating attempts, each with a new password (a repeated one would be
/// answered from the failed-login cache, for both kinds alike): the median
/// refusal of an unknown user takes at least half as long as that of a
/// wrong password for a known user (before: about 1 ms against a bcrypt
/// check).
fn assert_alike(kind: &str, refusal: impl Fn(&str, &str) -> Duration) {
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for n in 0..5 {
        known.push(refusal("user1", &format!("{kind}-wrong-{n}")));
        unknown.push(refusal("nobody", &format!("{kind}-wrong-{n}")));
    }
    let (known, unknown) = (median(known), median(unknown));
    eprintln!("{kind}: wrong password refused in {known:?}, unknown user in {unknown:?}");
    assert!(
        unknown * 2 >= known,
        "{kind}: an unknown user is refused in {unknown:?}, a wrong password in {known:?}"
    );
}

#[test]
fn unknown_users_take_as_long_as_wrong_passwords() {
    let dir = TempDir::new("timing");
    let srv = server(&dir);
    assert_alike("PSRT", |login, password| {
        psrt_refusal(srv.addr, login, password)
    });
    let stats_addr = srv.stats_addr.unwrap();
    assert_alike("HTTP Basic", |login, password| {
        http_refusal(stats_addr, login, password)
    });
    let stats = srv.stop();
    assert_eq!(stats.login_failures, 20);
}
