//! Terminal helpers for the command-line tools (`psrt-cli --top`): is a
//! descriptor a terminal, its height, and a termios mode that is put back
//! when it is dropped.
//!
//! Thin libc calls (termios, `isatty`, `TIOCGWINSZ`, `read`), each with its
//! `SAFETY` note. Nothing here is used by the server.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

/// Standard input's descriptor.
pub(crate) const STDIN: RawFd = libc::STDIN_FILENO;
/// Standard output's descriptor.
pub(crate) const STDOUT: RawFd = libc::STDOUT_FILENO;

/// Whether `fd` is a terminal.
pub(crate) fn is_tty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor number; an invalid one
    // gives 0 (and errno), never undefined behaviour.
    unsafe { libc::isatty(fd) == 1 }
}

/// Rows of the terminal on `fd`, if it is one and knows its size.
pub(crate) fn rows(fd: RawFd) -> Option<u16> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which
    // points to a live, aligned, writable local of exactly that type; on
    // failure nothing is written and -1 is returned.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &raw mut size) };
    (rc == 0 && size.ws_row > 0).then_some(size.ws_row)
}

fn get_attr(fd: RawFd) -> io::Result<libc::termios> {
    // SAFETY: termios is plain old data (integers and a byte array), so the
    // all-zero value is valid; tcgetattr overwrites it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is to a live, writable local of the right type.
    if unsafe { libc::tcgetattr(fd, &raw mut t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(t)
}

fn set_attr(fd: RawFd, t: &libc::termios) -> io::Result<()> {
    // SAFETY: tcsetattr only reads the termios behind the pointer, which is a
    // valid reference for the whole call.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The fields a mode changes, for comparing two termios values.
fn mode_fields(t: &libc::termios) -> (libc::tcflag_t, u8, u8) {
    (t.c_lflag, t.c_cc[libc::VMIN], t.c_cc[libc::VTIME])
}

/// A terminal mode on one descriptor, put back as it was when dropped (on
/// every return path, errors included; not after a panic, which aborts in
/// the release build — nothing in the tools panics on input).
pub(crate) struct Mode {
    fd: RawFd,
    saved: libc::termios,
    applied: libc::termios,
}

impl Mode {
    /// Single keys for an interactive screen: no line buffering, no echo,
    /// and a read that returns at once with what is there (0 bytes if
    /// nothing was typed). Ctrl-C and Ctrl-Z still raise their signals.
    pub(crate) fn keys(fd: RawFd) -> io::Result<Self> {
        Self::apply(fd, |t| {
            t.c_lflag &= !(libc::ICANON | libc::ECHO);
            t.c_cc[libc::VMIN] = 0;
            t.c_cc[libc::VTIME] = 0;
        })
    }

    fn apply(fd: RawFd, change: impl FnOnce(&mut libc::termios)) -> io::Result<Self> {
        let saved = get_attr(fd)?;
        let mut applied = saved;
        change(&mut applied);
        set_attr(fd, &applied)?;
        Ok(Self { fd, saved, applied })
    }

    /// Applies the mode again if something changed it (after Ctrl-Z and
    /// `fg` the shell may have put its own mode back). One `tcgetattr`.
    pub(crate) fn reapply_if_changed(&self) {
        if let Ok(now) = get_attr(self.fd) {
            if mode_fields(&now) != mode_fields(&self.applied) {
                let _ = set_attr(self.fd, &self.applied);
            }
        }
    }

    /// Reads what is there (in `keys` mode: at once, 0 = nothing typed).
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes, and
        // read writes at most that many.
        let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
        // A negative count is the error case; any other value fits usize.
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }
}

impl Drop for Mode {
    fn drop(&mut self) {
        let _ = set_attr(self.fd, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_a_terminal() {
        // The test harness's stdin is not guaranteed to be anything, but a
        // closed descriptor number is never a terminal.
        assert!(!is_tty(-1));
        assert_eq!(rows(-1), None);
        assert!(Mode::keys(-1).is_err());
    }
}
