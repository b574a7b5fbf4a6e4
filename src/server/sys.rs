//! The few OS calls std does not wrap. This is the only module of the server
//! with `unsafe`, each call with its safety argument.
#![allow(unsafe_code)]

use std::io;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, so the connection
/// limits in the config, not an accidental default of 1024, decide how many
/// clients fit. Returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit read from the kernel above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// Asks for a socket receive buffer of `bytes` (the kernel caps it at
/// `net.core.rmem_max`). Returns the size the kernel granted.
pub(crate) fn set_recv_buffer(
    socket: &impl std::os::fd::AsRawFd,
    bytes: usize,
) -> io::Result<usize> {
    let fd = socket.as_raw_fd();
    let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `want` is a live c_int and `len` its size; `fd` is an open socket
    // owned by the caller for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const want).cast(),
            len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut got: libc::c_int = 0;
    let mut got_len = len;
    // SAFETY: `got` and `got_len` are live and writable; `fd` as above.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw mut got).cast(),
            &mut got_len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(got).unwrap_or(0))
}

/// Used when `/proc/sys/net/core/somaxconn` cannot be read: Linux's
/// default since 5.4.
const SOMAXCONN_FALLBACK: u32 = 4096;

/// The kernel's cap on listen backlogs (`net.core.somaxconn`): the default
/// backlog, so a reconnect storm waits in the accept queue instead of
/// having its SYNs dropped (each drop costs the client a 1 s retry).
pub(crate) fn somaxconn() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(SOMAXCONN_FALLBACK)
}

/// Sets the backlog of a listening socket (mio binds TCP with 128). On
/// Linux `listen(2)` on a socket that is already listening only changes its
/// backlog (the kernel caps it at `somaxconn`); called before the listener
/// is registered with the loop.
pub(crate) fn set_listen_backlog(
    socket: &impl std::os::fd::AsRawFd,
    backlog: u32,
) -> io::Result<()> {
    let backlog = libc::c_int::try_from(backlog).unwrap_or(libc::c_int::MAX);
    // SAFETY: listen(2) on a socket the caller owns for the duration of the
    // call; no memory is passed.
    if unsafe { libc::listen(socket.as_raw_fd(), backlog) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `CLOCK_MONOTONIC` in microseconds (systemd's `MONOTONIC_USEC`).
pub(crate) fn monotonic_usec() -> io::Result<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    Ok(secs * 1_000_000 + nanos / 1_000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn receive_buffer_grows() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let granted = super::set_recv_buffer(&s, 1 << 20).unwrap();
        assert!(granted >= 64 * 1024, "{granted}");
    }

    #[test]
    fn monotonic_clock_moves() {
        let a = super::monotonic_usec().unwrap();
        let b = super::monotonic_usec().unwrap();
        assert!(a > 0 && b >= a);
    }

    #[test]
    fn listen_backlog_is_raised() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let max = super::somaxconn();
        assert!(max >= 128, "{max}");
        super::set_listen_backlog(&l, max).unwrap();
        // Nothing accepts: the new backlog queues connections the old one
        // (128) would drop (a dropped SYN is retried only after 1 s).
        let addr = l.local_addr().unwrap();
        let n = max.min(600) as usize;
        let wait = std::time::Duration::from_millis(900);
        let held: Vec<_> = (0..n)
            .map(|i| {
                std::net::TcpStream::connect_timeout(&addr, wait)
                    .unwrap_or_else(|e| panic!("connect {i} of {n}: {e}"))
            })
            .collect();
        assert_eq!(held.len(), n);
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(
            super::set_listen_backlog(&u, 16).is_err(),
            "not a stream socket"
        );
    }

    #[test]
    fn soft_limit_reaches_hard_limit() {
        let n = super::raise_nofile_limit().unwrap();
        assert!(n >= 256);
    }
}
