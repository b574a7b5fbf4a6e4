//! A TCP relay for tests that cut a path between two servers: it forwards
//! both ways until `set_cut(true)`, then drops what it reads and accepts
//! new connections only to close them, until `set_cut(false)`.

use std::net::TcpListener;
use std::time::Duration;

/// A TCP relay whose forwarding can be stopped (the peer "stops reading")
/// and restarted; every connection it relays is dropped when `cut` is set.
pub struct Relay {
    pub addr: std::net::SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    pub fn to(target: std::net::SocketAddr) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                if flag.load(Ordering::SeqCst) {
                    continue; // accepted and dropped: the link fails
                }
                let Ok(server) = std::net::TcpStream::connect(target) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let flag = flag.clone();
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        from.set_read_timeout(Some(Duration::from_millis(50)))
                            .unwrap();
                        let mut buf = [0u8; 65536];
                        loop {
                            if flag.load(Ordering::SeqCst) {
                                // Silent from now on: neither side hears more.
                                std::thread::sleep(Duration::from_secs(30));
                                return;
                            }
                            match from.read(&mut buf) {
                                Ok(0) => return,
                                Ok(_) if flag.load(Ordering::SeqCst) => {} // lost in the cut
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                                Err(e)
                                    if e.kind() == std::io::ErrorKind::WouldBlock
                                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                                Err(_) => return,
                            }
                        }
                    });
                }
            }
        });
        Self { addr, cut }
    }

    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::SeqCst);
    }
}
