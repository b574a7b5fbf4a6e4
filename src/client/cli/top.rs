//! Top mode: count messages and payload bytes per topic and redraw the table
//! of the busiest topics (`table.rs`) once per second with totals and rates
//! per second, cut to the terminal height.
//!
//! Keys, when stdin is a terminal: `s` switches the sort column (count,
//! msg/s, bytes, bytes/s), `q` quits. The terminal is put in single-key mode
//! without echo for as long as top runs and put back before it returns, on
//! every path (`q`, Ctrl-C, SIGTERM, a lost connection, a closed stdout).
//! Keys are read without blocking, between messages, so neither a busy
//! topic nor a quiet one delays them. Ctrl-C sends BYE and exits 0; the
//! last table stays on screen.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use super::table::{SortBy, Table};
use super::{connection_lost, interrupted_bye, subscribe_all};
use crate::client::{Client, Message};
use crate::term::{self, Mode, STDIN, STDOUT};

/// Time between two refreshes of the rates (and redraws).
const REDRAW_INTERVAL: Duration = Duration::from_secs(1);
/// Longest time a key (or Ctrl-C) waits to be seen.
const KEY_POLL: Duration = Duration::from_millis(50);
/// Messages taken from the queue in one go before the keys are looked at.
const DRAIN_MAX: usize = 4096;
/// Rows assumed when the terminal size is unknown (not a terminal).
const FALLBACK_ROWS: u16 = 24;
/// Lines that are not topic rows: header, rule, status, and the cursor's.
const CHROME_ROWS: usize = 4;
/// Clear the screen and move the cursor home (the first draw).
const CLEAR: &str = "\x1b[2J\x1b[H";
/// Cursor home (later draws overwrite in place, without flicker).
const HOME: &str = "\x1b[H";
/// Clear to the end of the line, and to the end of the screen.
const CLEAR_LINE: &str = "\x1b[K";
const CLEAR_BELOW: &str = "\x1b[J";

/// Why the loop ended without an error.
enum Exit {
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// The `q` key.
    Quit,
    /// stdout was closed (e.g. `| head`).
    OutputClosed,
    /// The message channel ended: the connection is lost (and, with
    /// several addresses, no other node answered).
    Lost,
}

/// What the keys typed since the last look ask for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Keys {
    /// How many times `s` was pressed.
    sort_steps: usize,
    quit: bool,
}

/// Runs top mode.
pub(crate) fn run(client: &Client, topics: &[String], stop: &AtomicBool) -> Result<(), String> {
    let rx = subscribe_all(client, topics)?;
    let keys = if term::is_tty(STDIN) {
        Mode::keys(STDIN)
            .map_err(|e| log::debug!("no single-key input ({e}): s and q are off"))
            .ok()
    } else {
        None
    };
    let outcome = watch(&rx, keys.as_ref(), stop);
    // Put the terminal back before anything else is printed.
    drop(keys);
    match outcome? {
        Exit::Interrupted => interrupted_bye(client),
        Exit::Quit | Exit::OutputClosed => client.bye().map_err(|e| format!("bye: {e}")),
        Exit::Lost => Err(connection_lost(client)),
    }
}

fn watch(rx: &Receiver<Message>, keys: Option<&Mode>, stop: &AtomicBool) -> Result<Exit, String> {
    let mut table = Table::default();
    let mut sort = SortBy::default();
    let mut last_refresh = Instant::now();
    let mut next_redraw = last_refresh;
    let mut next_key_poll = last_refresh;
    let mut first_draw = true;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(Exit::Interrupted);
        }
        let now = Instant::now();
        let mut redraw = false;
        if let Some(mode) = keys.filter(|_| now >= next_key_poll) {
            mode.reapply_if_changed();
            let typed = read_keys(mode);
            if typed.quit {
                return Ok(Exit::Quit);
            }
            for _ in 0..typed.sort_steps {
                sort = sort.next();
            }
            redraw = typed.sort_steps > 0;
            next_key_poll = now + KEY_POLL;
        }
        if now >= next_redraw {
            table.refresh(now - last_refresh);
            last_refresh = now;
            next_redraw = now + REDRAW_INTERVAL;
            redraw = true;
        }
        if redraw {
            if draw(&table, sort, keys.is_some(), first_draw).is_err() {
                return Ok(Exit::OutputClosed);
            }
            first_draw = false;
        }
        let wait = next_redraw
            .min(next_key_poll)
            .saturating_duration_since(now);
        match rx.recv_timeout(wait.min(KEY_POLL)) {
            Ok(message) => {
                table.record(message.topic, message.data.len());
                if drain(rx, &mut table) {
                    return Ok(Exit::Lost);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(Exit::Lost),
        }
    }
}

/// Counts what is queued, up to [`DRAIN_MAX`] messages; `true` if the
/// channel has ended.
fn drain(rx: &Receiver<Message>, table: &mut Table) -> bool {
    for _ in 0..DRAIN_MAX {
        match rx.try_recv() {
            Ok(message) => table.record(message.topic, message.data.len()),
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Disconnected) => return true,
        }
    }
    false
}

/// Reads the keys typed since the last look, without waiting.
fn read_keys(mode: &Mode) -> Keys {
    let mut buf = [0u8; 64];
    let mut keys = Keys::default();
    while let Ok(n @ 1..) = mode.read(&mut buf) {
        let more = parse_keys(&buf[..n]);
        keys.sort_steps += more.sort_steps;
        keys.quit |= more.quit;
        if n < buf.len() {
            break;
        }
    }
    keys
}

/// `s`/`S` = next sort column, `q`/`Q` = quit; anything else is ignored.
fn parse_keys(bytes: &[u8]) -> Keys {
    Keys {
        sort_steps: bytes
            .iter()
            .filter(|b| b.eq_ignore_ascii_case(&b's'))
            .count(),
        quit: bytes.iter().any(|b| b.eq_ignore_ascii_case(&b'q')),
    }
}

/// Writes one screen. The first clears the terminal; later ones overwrite
/// it line by line and clear what is left below.
fn draw(table: &Table, sort: SortBy, keys: bool, first: bool) -> io::Result<()> {
    let rows = usize::from(term::rows(STDOUT).unwrap_or(FALLBACK_ROWS));
    let screen = table.render(sort, rows.saturating_sub(CHROME_ROWS), keys);
    let mut text = String::with_capacity(screen.len() + 64);
    text.push_str(if first { CLEAR } else { HOME });
    for line in screen.lines() {
        text.push_str(line);
        text.push_str(CLEAR_LINE);
        text.push('\n');
    }
    text.push_str(CLEAR_BELOW);
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(parse_keys(b""), Keys::default());
        assert_eq!(
            parse_keys(b"sS"),
            Keys {
                sort_steps: 2,
                quit: false
            }
        );
        assert!(parse_keys(b"xq").quit && parse_keys(b"Q").quit);
        // Arrow keys and other bytes do nothing.
        assert_eq!(parse_keys(b"\x1b[A\x1b[Bx "), Keys::default());
    }
}
