//! Reconnect storms are absorbed (issue #12, item 14): 2000 clients that
//! connect at the same moment — as when a gateway or switch comes back —
//! all get in promptly. The listen backlog defaults to the kernel's
//! `net.core.somaxconn` (`server.listen_backlog`); with mio's 128 the SYNs
//! beyond the accept queue were dropped and retried after 1, 3, 7 s …
//!
//! One thread starts every connect without waiting (non-blocking sockets
//! from 40 loopback source addresses, 50 each: under the pre-login
//! per-address cap), then drives them all with one `mio::Poll`: each sends
//! its greeting and anonymous login in one write and waits for the greeting
//! reply and the token. The kernel's own record decides whether the
//! backlog held: a client socket whose SYN (or handshake ACK) was dropped
//! had to retransmit it (`TCP_INFO`'s total retransmissions), which no
//! socket on loopback does otherwise; the time until the last one is in is
//! checked too, with a generous bound.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{TestServer, connect_from};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use psrt::protocol::{Login, TOKEN_LEN, encode_login};

const CLIENTS: usize = 2000;
const PER_ADDRESS: usize = 50;
/// Generous: on a quiet machine they are all in within a fraction of this;
/// with a 128 backlog the last ones wait for their third SYN retry or later.
const WITHIN: Duration = Duration::from_secs(10);
/// The test gives up (and fails) after this.
const GIVE_UP: Duration = Duration::from_secs(40);

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Sent,
    Done,
    Failed,
}

/// Segments this socket has retransmitted (its SYN included).
#[allow(unsafe_code)]
fn retransmissions(sock: &TcpStream) -> u32 {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero tcp_info is a valid value (plain integers).
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` and `len` are live and writable; the socket is open.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_total_retrans
}

/// The kernel's cap on listen backlogs.
fn somaxconn() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096)
}

struct Client {
    sock: TcpStream,
    state: State,
    got: Vec<u8>,
    done_after: Option<Duration>,
}

/// Every client's greeting reply and token arrive within [`WITHIN`], and
/// no connection lost a SYN to a full accept queue.
#[test]
fn two_thousand_clients_connect_at_once() {
    // Two descriptors per client (the server runs in this process).
    let fds = psrt::server::raise_nofile_limit().expect("raise the fd limit");
    let fd_room = usize::try_from(fds)
        .unwrap_or(usize::MAX)
        .saturating_sub(256)
        / 2;
    // The kernel caps every backlog at somaxconn (4096 since Linux 5.4).
    let n = CLIENTS.min(somaxconn() * 3 / 4).min(fd_room);
    if n < CLIENTS {
        eprintln!(
            "somaxconn {} and {fds} file descriptors: a storm of {n} clients",
            somaxconn()
        );
    }
    let srv = TestServer::start();
    let mut request = vec![0xEE, 0xAA, 0x00];
    encode_login(
        &Login {
            login: "",
            password: "",
        },
        &mut request,
    );
    let want = 4 + TOKEN_LEN;

    let poll_timeout = Some(Duration::from_millis(100));
    let mut poll = Poll::new().unwrap();
    let start = Instant::now();
    let mut clients: Vec<Client> = (0..n)
        .map(|i| {
            let src = Ipv4Addr::new(127, 0, 10, 1 + (i / PER_ADDRESS) as u8);
            let std = connect_from(src, srv.addr, true).expect("start a connect");
            let mut sock = TcpStream::from_std(std);
            poll.registry()
                .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)
                .unwrap();
            Client {
                sock,
                state: State::Connecting,
                got: Vec::new(),
                done_after: None,
            }
        })
        .collect();
    let started = start.elapsed();

    let mut events = Events::with_capacity(1024);
    let mut done = 0;
    let mut failed = 0;
    while done + failed < n && start.elapsed() < GIVE_UP {
        poll.poll(&mut events, poll_timeout).unwrap();
        for event in &events {
            let c = &mut clients[event.token().0];
            if c.state == State::Connecting && (event.is_writable() || event.is_error()) {
                match c.sock.take_error() {
                    Ok(None) if c.sock.peer_addr().is_ok() => {
                        c.sock.write_all(&request).expect("greeting and login");
                        c.state = State::Sent;
                    }
                    Ok(None) => continue, // not connected yet
                    _ => {
                        c.state = State::Failed;
                        failed += 1;
                        continue;
                    }
                }
            }
            if c.state != State::Sent {
                continue;
            }
            let mut buf = [0u8; 64];
            loop {
                match c.sock.read(&mut buf) {
                    Ok(0) => {
                        c.state = State::Failed;
                        failed += 1;
                        break;
                    }
                    Ok(n) => c.got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        c.state = State::Failed;
                        failed += 1;
                        break;
                    }
                }
            }
            if c.state == State::Sent && c.got.len() >= want {
                assert_eq!(c.got[..4], [0xEE, 0xAA, 0x01, 0x00], "greeting reply");
                c.state = State::Done;
                c.done_after = Some(start.elapsed());
                done += 1;
            }
        }
    }
    let mut times: Vec<Duration> = clients.iter().filter_map(|c| c.done_after).collect();
    times.sort_unstable();
    let pct = |p: usize| times.get(times.len().saturating_sub(1) * p / 100).copied();
    let retransmitted = clients
        .iter()
        .filter(|c| retransmissions(&c.sock) > 0)
        .count();
    eprintln!(
        "{n} connects started in {started:?}; in: {done}, failed: {failed}; \
         median {:?}, p99 {:?}, last {:?}; {retransmitted} had to retransmit",
        pct(50),
        pct(99),
        times.last()
    );
    assert_eq!(failed, 0, "connections refused or reset");
    assert_eq!(
        retransmitted, 0,
        "connections whose SYN or handshake ACK was dropped (accept queue full)"
    );
    assert_eq!(done, n, "not every client got in within {GIVE_UP:?}");
    let last = *times.last().unwrap();
    assert!(
        last <= WITHIN,
        "the last client got in after {last:?} (limit {WITHIN:?})"
    );
}
