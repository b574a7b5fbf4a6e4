//! Terminal helpers for the command-line tools (`psrt-cli --top`, `psrtd
//! passwd`): is a descriptor a terminal, its height, a termios mode that is
//! put back when it is dropped, and a password prompt without echo.
//!
//! Thin libc calls (termios, `isatty`, `TIOCGWINSZ`, `read`), each with its
//! `SAFETY` note. Nothing here is used by the server.

#![allow(unsafe_code)]

use std::io::{self, Write};
use std::os::fd::RawFd;

/// Standard input's descriptor.
pub(crate) const STDIN: RawFd = libc::STDIN_FILENO;
/// Standard output's descriptor.
pub(crate) const STDOUT: RawFd = libc::STDOUT_FILENO;

/// Ctrl-C, Ctrl-D, Ctrl-H, Ctrl-U, DEL: the keys the password prompt knows.
const CTRL_C: u8 = 0x03;
const CTRL_D: u8 = 0x04;
const BACKSPACE: u8 = 0x08;
const CTRL_U: u8 = 0x15;
const DELETE: u8 = 0x7f;

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

    /// For a password prompt: no echo, no line buffering, no signals (the
    /// prompt edits the line itself and takes Ctrl-C as "cancel", so the
    /// terminal is always put back); a read waits for one byte.
    pub(crate) fn hidden_line(fd: RawFd) -> io::Result<Self> {
        Self::apply(fd, |t| {
            t.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG);
            t.c_cc[libc::VMIN] = 1;
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

/// What one key does to the line being typed at a hidden prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edit {
    /// Keep reading.
    More,
    /// Enter: the line is complete.
    Done,
    /// Ctrl-C, or Ctrl-D on an empty line: give up.
    Cancel,
}

/// Applies one byte to `line`: Enter ends it, backspace/DEL removes the
/// last character (all its UTF-8 bytes), Ctrl-U clears the line, Ctrl-C
/// (or Ctrl-D on an empty line) cancels, other control bytes are ignored.
pub(crate) fn edit_line(line: &mut Vec<u8>, byte: u8) -> Edit {
    match byte {
        b'\r' | b'\n' => Edit::Done,
        CTRL_C => Edit::Cancel,
        CTRL_D if line.is_empty() => Edit::Cancel,
        BACKSPACE | DELETE => {
            // Drop UTF-8 continuation bytes, then the lead byte.
            while line.pop().is_some_and(|b| b & 0xC0 == 0x80) {}
            Edit::More
        }
        CTRL_U => {
            line.clear();
            Edit::More
        }
        b if b < 0x20 => Edit::More,
        b => {
            line.push(b);
            Edit::More
        }
    }
}

/// Lines typed at the terminal on stdin without echo. The mode is set
/// before the first prompt is printed and kept until this is dropped, so
/// nothing typed (or pasted) after a prompt is ever echoed.
pub(crate) struct HiddenInput {
    mode: Mode,
}

impl HiddenInput {
    /// Turns echo off on stdin (a terminal).
    pub(crate) fn open() -> io::Result<Self> {
        Ok(Self {
            mode: Mode::hidden_line(STDIN)?,
        })
    }

    /// Prints `prompt` on stderr and reads one line. `Ok(None)` if the user
    /// cancelled (Ctrl-C, Ctrl-D).
    pub(crate) fn ask(&self, prompt: &str) -> io::Result<Option<Vec<u8>>> {
        let mut err = io::stderr().lock();
        write!(err, "{prompt}")?;
        err.flush()?;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        let outcome = loop {
            match self.mode.read(&mut byte) {
                Ok(0) => break Edit::Cancel,
                Ok(_) => match edit_line(&mut line, byte[0]) {
                    Edit::More => {}
                    done => break done,
                },
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        // The Enter the user typed was not echoed.
        writeln!(err)?;
        Ok((outcome == Edit::Done).then_some(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(bytes: &[u8]) -> (Vec<u8>, Edit) {
        let mut line = Vec::new();
        for &b in bytes {
            match edit_line(&mut line, b) {
                Edit::More => {}
                done => return (line, done),
            }
        }
        (line, Edit::More)
    }

    #[test]
    fn hidden_line_editing() {
        assert_eq!(typed(b"secret\r"), (b"secret".to_vec(), Edit::Done));
        assert_eq!(typed(b"secret\n"), (b"secret".to_vec(), Edit::Done));
        assert_eq!(typed(b"secrex\x7ft\r").0, b"secret");
        assert_eq!(typed(b"ab\x08\x08\x08c\r").0, b"c");
        assert_eq!(typed(b"wrong\x15right\r").0, b"right");
        // Other control bytes (Esc, Tab, Ctrl-Z) are not part of a password.
        assert_eq!(typed(b"a\x1b\t\x1ab\r").0, b"ab");
        assert_eq!(typed(b"abc\x03").1, Edit::Cancel);
        assert_eq!(typed(b"\x04").1, Edit::Cancel);
        assert_eq!(typed(b"a\x04b\r").0, b"ab");
        // Backspace removes a whole UTF-8 character.
        let (line, _) = typed("pä\u{7f}ß€\u{7f}\r".as_bytes());
        assert_eq!(String::from_utf8(line).unwrap(), "pß");
        assert_eq!(typed(b"\x7f\x7fok\r").0, b"ok");
    }

    #[test]
    fn not_a_terminal() {
        // The test harness's stdin is not guaranteed to be anything, but a
        // closed descriptor number is never a terminal.
        assert!(!is_tty(-1));
        assert_eq!(rows(-1), None);
        assert!(Mode::keys(-1).is_err());
    }
}
