//! systemd service notifications (`Type=notify`), without libsystemd:
//! `READY=1` once every listener is bound, `RELOADING=1` … `READY=1` around a
//! SIGHUP reload, `STOPPING=1` at shutdown, and `WATCHDOG=1` from the loop
//! at half the `WatchdogSec=` interval — so a stalled loop gets restarted.
//!
//! Messages are single non-blocking datagrams to `$NOTIFY_SOCKET`; when it is
//! not set (not under systemd) every call does nothing.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use log::debug;

/// The notification socket and the watchdog schedule.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    socket: Option<UnixDatagram>,
    path: String,
    watchdog: Option<Duration>,
    next_ping: Option<Instant>,
}

fn connect(path: &str) -> io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        socket.connect_addr(&addr)?;
    } else {
        socket.connect(path)?;
    }
    Ok(socket)
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` (honouring `WATCHDOG_PID`).
    pub(crate) fn from_env(now: Instant) -> Self {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET").and_then(|p| p.into_string().ok())
        else {
            return Self::default();
        };
        let socket = match connect(&path) {
            Ok(s) => Some(s),
            Err(e) => {
                log::warn!("NOTIFY_SOCKET {path}: {e}; systemd notifications disabled");
                None
            }
        };
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|pid| pid == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0 && for_us)
            .map(|u| Duration::from_micros(u / 2));
        Self {
            socket,
            path,
            watchdog,
            next_ping: watchdog.map(|w| now + w),
        }
    }

    fn send(&self, message: &str) {
        if let Some(s) = &self.socket {
            if let Err(e) = s.send(message.as_bytes()) {
                debug!("systemd notification to {} failed: {e}", self.path);
            }
        }
    }

    /// Every listener is bound: the service is up.
    pub(crate) fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// A reload starts.
    pub(crate) fn reloading(&self) {
        let usec = super::sys::monotonic_usec().unwrap_or(0);
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }

    /// Shutting down.
    pub(crate) fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// The next watchdog ping, for the poll timeout.
    pub(crate) fn next_ping(&self) -> Option<Instant> {
        self.next_ping
    }

    /// Pings the watchdog if it is due.
    pub(crate) fn tick(&mut self, now: Instant) {
        if let (Some(at), Some(every)) = (self.next_ping, self.watchdog) {
            if now >= at {
                self.send("WATCHDOG=1");
                self.next_ping = Some(now + every);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_the_socket() {
        let dir = std::env::temp_dir().join(format!("psrt-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let now = Instant::now();
        let mut n = Notifier {
            socket: Some(connect(path.to_str().unwrap()).unwrap()),
            path: path.display().to_string(),
            watchdog: Some(Duration::from_millis(10)),
            next_ping: Some(now),
        };
        let mut buf = [0u8; 256];
        let mut next = || {
            let len = listener.recv(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..len]).to_string()
        };
        n.ready("listening");
        assert_eq!(next(), "READY=1\nSTATUS=listening");
        n.reloading();
        assert!(next().starts_with("RELOADING=1\nMONOTONIC_USEC="));
        n.tick(now);
        assert_eq!(next(), "WATCHDOG=1");
        assert!(n.next_ping().unwrap() > now);
        n.stopping();
        assert_eq!(next(), "STOPPING=1");
        // Without NOTIFY_SOCKET nothing is sent and nothing fails.
        let quiet = Notifier::default();
        quiet.ready("x");
        assert!(quiet.next_ping().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
