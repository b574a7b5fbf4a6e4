//! systemd notifications (`Type=notify`): READY=1 once listening,
//! RELOADING=1 … READY=1 around SIGHUP, WATCHDOG=1 pings from the loop,
//! STOPPING=1 at SIGTERM (T16, T20).

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, Proc, TempDir, write_config};

struct Notifications(UnixDatagram);

impl Notifications {
    /// Waits for a datagram that starts with `prefix`, skipping others.
    fn expect(&self, prefix: &str) -> String {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut buf = [0u8; 512];
        loop {
            assert!(Instant::now() < deadline, "no {prefix:?} notification");
            let n = self.0.recv(&mut buf).expect("notification");
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            if msg.starts_with(prefix) {
                return msg;
            }
        }
    }
}

#[test]
fn ready_reload_watchdog_stopping() {
    let dir = TempDir::new("systemd");
    dir.write("acl.yml", "_:\n  sub: '#'\n");
    let config = write_config(&dir, "", "");
    let socket_path = dir.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let notes = Notifications(socket);
    let mut server = Proc::spawn_with_env(
        &["-C", config.to_str().unwrap()],
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let ready = notes.expect("READY=1");
    assert!(
        ready.contains("STATUS=listening on tcp:127.0.0.1:"),
        "{ready}"
    );
    // Pings at half of WatchdogSec, from the loop.
    notes.expect("WATCHDOG=1");
    notes.expect("WATCHDOG=1");
    server.signal(1);
    assert!(notes.expect("RELOADING=1").contains("MONOTONIC_USEC="));
    notes.expect("READY=1");
    server.signal(15);
    notes.expect("STOPPING=1");
    assert_eq!(server.wait_exit(Duration::from_secs(5)), Some(0));
}
