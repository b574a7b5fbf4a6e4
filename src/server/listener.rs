//! Listening sockets for the PSRT stream protocol: TCP (`host:port`) and
//! Unix (`*.sock` / `*.socket`, mode 0770, a stale socket file replaced, the
//! file removed when the listener is dropped), each with the configured
//! listen backlog (`server.listen_backlog`, default the kernel's
//! `somaxconn`), so a reconnect storm queues instead of losing SYNs.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use mio::event::Source;
use mio::net::{TcpListener, UnixListener};
use mio::{Interest, Registry, Token};

use super::config::BindAddr;
use super::conn::{Peer, Stream};
use super::sys;

/// A bound listener.
#[derive(Debug)]
pub(crate) enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix socket; the path is removed on drop.
    Unix {
        /// The socket.
        socket: UnixListener,
        /// Its file.
        path: PathBuf,
        /// The name peers get in logs.
        name: Rc<str>,
    },
}

impl Listener {
    /// Binds one address with a listen backlog of `backlog` connections. A
    /// hostname is resolved here (once, at start).
    pub(crate) fn bind(addr: &BindAddr, backlog: u32) -> io::Result<Self> {
        let listener = match addr {
            BindAddr::Tcp(spec) => {
                let mut last =
                    io::Error::new(io::ErrorKind::NotFound, format!("{spec}: no address"));
                let mut bound = None;
                for a in spec.to_socket_addrs()? {
                    match TcpListener::bind(a) {
                        Ok(l) => {
                            bound = Some(Self::Tcp(l));
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                bound.ok_or(last)?
            }
            BindAddr::Unix(path) => bind_unix(path)?,
        };
        match &listener {
            Self::Tcp(l) => sys::set_listen_backlog(l, backlog)?,
            Self::Unix { socket, .. } => sys::set_listen_backlog(socket, backlog)?,
        }
        Ok(listener)
    }

    /// Accepts one connection (`WouldBlock` when none is waiting).
    pub(crate) fn accept(&self) -> io::Result<(Stream, Peer)> {
        match self {
            Self::Tcp(l) => {
                let (s, addr) = l.accept()?;
                // Replies and small pushes must not wait for Nagle.
                s.set_nodelay(true)?;
                Ok((Stream::Tcp(s), Peer::Tcp(addr)))
            }
            Self::Unix { socket, name, .. } => {
                let (s, _) = socket.accept()?;
                Ok((Stream::Unix(s), Peer::Unix(name.clone())))
            }
        }
    }

    /// The bound TCP address (tests bind port 0).
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(l) => l.local_addr().ok(),
            Self::Unix { .. } => None,
        }
    }

    /// What this listens on, for logs.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "tcp:?".into(), |a| format!("tcp:{a}")),
            Self::Unix { path, .. } => format!("unix:{}", path.display()),
        }
    }
}

fn bind_unix(path: &Path) -> io::Result<Listener> {
    // Replace a stale socket left by a crash, but never delete anything else.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
    }
    let socket = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o770))?;
    Ok(Listener::Unix {
        socket,
        path: path.to_path_buf(),
        name: path.display().to_string().into(),
    })
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Self::Unix { path, .. } = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Source for Listener {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Self::Tcp(l) => l.register(r, t, i),
            Self::Unix { socket, .. } => socket.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Self::Tcp(l) => l.reregister(r, t, i),
            Self::Unix { socket, .. } => socket.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Self::Tcp(l) => l.deregister(r),
            Self::Unix { socket, .. } => socket.deregister(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_socket_lifecycle() {
        let dir = std::env::temp_dir().join(format!("psrt-listener-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.sock");
        let l = Listener::bind(&BindAddr::Unix(path.clone()), 64).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o770);
        // A second bind replaces the (now stale from its view) socket file.
        drop(l);
        assert!(!path.exists(), "removed on drop");
        let file = dir.join("x.sock");
        std::fs::write(&file, b"not a socket").unwrap();
        let err = Listener::bind(&BindAddr::Unix(file.clone()), 64).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(file.exists(), "a regular file is never deleted");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tcp_port_zero() {
        let l = Listener::bind(&BindAddr::Tcp("127.0.0.1:0".into()), 64).unwrap();
        assert!(l.local_addr().unwrap().port() > 0);
        assert!(l.describe().starts_with("tcp:127.0.0.1:"));
    }
}
