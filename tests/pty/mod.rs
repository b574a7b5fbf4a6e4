//! A pseudo-terminal for integration tests that run a command-line tool as a
//! person at a terminal would (`psrt-cli --top`, `psrtd passwd`): the child
//! gets the pty as stdin, stdout, stderr and controlling terminal, so
//! termios, the window size and Ctrl-C (SIGINT from the line discipline)
//! are real. The test writes keys to the master side, reads everything
//! the child printed, and reads the terminal's mode after the child is
//! gone. Linux-only, libc only (the crate already depends on it).
#![allow(unsafe_code, dead_code, unreachable_pub)]

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Pty {
    master: File,
    /// Kept open so the terminal's mode can be read after the child exits.
    slave: File,
    output: Arc<Mutex<Vec<u8>>>,
}

fn check(rc: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(rc)
}

impl Pty {
    /// A new pty of `rows` x `cols`, in its default (cooked, echoing) mode.
    pub fn open(rows: u16, cols: u16) -> io::Result<Self> {
        // SAFETY: plain libc calls on descriptors this function owns; the
        // name buffer is live and its length is passed; every result is
        // checked before it is used.
        unsafe {
            let fd = check(
                libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC),
                "posix_openpt",
            )?;
            let master = File::from_raw_fd(fd);
            check(libc::grantpt(fd), "grantpt")?;
            check(libc::unlockpt(fd), "unlockpt")?;
            let mut name = [0 as libc::c_char; 128];
            let rc = libc::ptsname_r(fd, name.as_mut_ptr(), name.len());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            let path = CStr::from_ptr(name.as_ptr());
            let sfd = check(
                libc::open(
                    path.as_ptr(),
                    libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
                ),
                "open the pty slave",
            )?;
            let slave = File::from_raw_fd(sfd);
            let size = libc::winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            check(
                libc::ioctl(sfd, libc::TIOCSWINSZ, &raw const size),
                "TIOCSWINSZ",
            )?;
            let output = Arc::new(Mutex::new(Vec::new()));
            let mut reader = master.try_clone()?;
            let sink = Arc::clone(&output);
            // Ends with EIO once every slave descriptor is closed.
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = reader.read(&mut buf) {
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
            Ok(Self {
                master,
                slave,
                output,
            })
        }
    }

    /// Spawns `cmd` with the pty as its stdin, stdout, stderr and
    /// controlling terminal (a session of its own).
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<Child> {
        let io = || self.slave.try_clone().map(Stdio::from);
        cmd.stdin(io()?).stdout(io()?).stderr(io()?);
        // SAFETY: setsid and ioctl are async-signal-safe; nothing else runs
        // between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                check(libc::setsid(), "setsid")?;
                check(libc::ioctl(0, libc::TIOCSCTTY, 0), "TIOCSCTTY")?;
                Ok(())
            });
        }
        cmd.spawn()
    }

    /// Types `bytes` (as keys: `b"\x03"` is Ctrl-C).
    pub fn type_keys(&self, bytes: &[u8]) {
        (&self.master).write_all(bytes).expect("write to the pty");
    }

    /// Everything printed so far, lossily as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits until the output contains `needle`.
    pub fn wait_for(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits until `check` is true of the output.
    pub fn wait_until(&self, within: Duration, check: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if check(&self.text()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The terminal's local-mode flags (`ICANON`, `ECHO`, `ISIG`, …) and
    /// its `VMIN`.
    pub fn local_mode(&self) -> (libc::tcflag_t, libc::cc_t) {
        // SAFETY: termios is plain data, so zeroed is a valid value, and
        // tcgetattr writes into the live local.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            check(
                libc::tcgetattr(self.slave.as_raw_fd(), &raw mut t),
                "tcgetattr",
            )
            .expect("the pty's mode");
            (t.c_lflag, t.c_cc[libc::VMIN])
        }
    }
}

/// The text of the last screen a full-screen tool drew (after its last
/// cursor-home), without escape sequences.
pub fn last_screen(output: &str) -> String {
    let tail = output.rsplit("\x1b[H").next().unwrap_or(output);
    strip_escapes(tail)
}

/// `text` without CSI escape sequences (`ESC [ … final byte`).
pub fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out.replace('\r', "")
}

/// Waits for a child's exit code.
pub fn wait_exit(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}
