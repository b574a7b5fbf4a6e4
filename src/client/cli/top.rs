//! Top mode: count messages and payload bytes per topic and redraw a table
//! of the busiest topics at most once per second, cut to the terminal
//! height. Ctrl-C sends BYE and exits; the last table stays on screen.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use super::subscribe::POLL_INTERVAL;
use super::units::{format_bytes, format_count};
use super::{interrupted_bye, subscribe_all};
use crate::client::Client;

/// Shortest time between two redraws.
const REDRAW_INTERVAL: Duration = Duration::from_secs(1);
/// Rows assumed when the terminal size is unknown (not a terminal).
const FALLBACK_ROWS: u16 = 24;
/// Lines that are not topic rows: header, rule, and room for the prompt.
const CHROME_ROWS: usize = 4;
/// Clear the screen and move the cursor home.
const CLEAR: &str = "\x1b[2J\x1b[1;1H";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// Per-topic counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TopicStats {
    pub(crate) count: u64,
    pub(crate) bytes: u64,
}

/// Runs top mode.
pub(crate) fn run(client: &Client, topics: &[String], stop: &AtomicBool) -> Result<(), String> {
    let rx = subscribe_all(client, topics)?;
    let mut stats: HashMap<String, TopicStats> = HashMap::new();
    let mut dirty = true;
    let mut next_redraw = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            return interrupted_bye(client);
        }
        let now = Instant::now();
        if dirty && now >= next_redraw {
            let rows = usize::from(terminal_rows().unwrap_or(FALLBACK_ROWS));
            let table = render_table(&stats, rows.saturating_sub(CHROME_ROWS));
            let mut out = io::stdout().lock();
            if write!(out, "{CLEAR}{table}")
                .and_then(|()| out.flush())
                .is_err()
            {
                return client.bye().map_err(|e| e.to_string());
            }
            dirty = false;
            next_redraw = now + REDRAW_INTERVAL;
        }
        let wait = if dirty {
            next_redraw
                .saturating_duration_since(now)
                .min(POLL_INTERVAL)
        } else {
            POLL_INTERVAL
        };
        match rx.recv_timeout(wait) {
            Ok(message) => {
                let entry = stats.entry(message.topic).or_default();
                entry.count += 1;
                entry.bytes += message.data.len() as u64;
                dirty = true;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Err("the connection to the server was lost".into());
            }
        }
    }
}

/// The table: bold header `topic count bytes`, a dashed rule, then up to
/// `max_rows` topics by count (descending; ties by topic).
pub(crate) fn render_table(stats: &HashMap<String, TopicStats>, max_rows: usize) -> String {
    let mut rows: Vec<(&str, &TopicStats)> = stats.iter().map(|(t, s)| (t.as_str(), s)).collect();
    rows.sort_unstable_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(b.0)));
    rows.truncate(max_rows);
    let cells: Vec<[String; 3]> = rows
        .iter()
        .map(|(topic, s)| {
            [
                (*topic).to_owned(),
                format_count(s.count),
                format_bytes(s.bytes),
            ]
        })
        .collect();
    let header = ["topic", "count", "bytes"];
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let [tw, cw, bw] = widths;
    let mut out = format!(
        "{BOLD}{:<tw$}  {:>cw$}  {:>bw$}{RESET}\n",
        header[0], header[1], header[2]
    );
    out.push_str(&"-".repeat(tw + cw + bw + 4));
    out.push('\n');
    for [topic, count, bytes] in &cells {
        // Writing into a String cannot fail.
        let _ = writeln!(out, "{topic:<tw$}  {count:>cw$}  {bytes:>bw$}");
    }
    out
}

/// Rows of the terminal on stdout, if it is one.
#[allow(unsafe_code)]
fn terminal_rows() -> Option<u16> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which
    // points to a live, aligned, writable local of exactly that type; on
    // failure nothing is written and -1 is returned.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &raw mut size) };
    (rc == 0 && size.ws_row > 0).then_some(size.ws_row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_sorted_and_cut() {
        let mut stats = HashMap::new();
        for (topic, count, bytes) in [
            ("quiet", 1, 10),
            ("busy/topic", 12_345, 14_000),
            ("mid", 50, 410),
            ("also-mid", 50, 1),
        ] {
            stats.insert(topic.to_owned(), TopicStats { count, bytes });
        }
        let table = render_table(&stats, 3);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[0].contains("topic") && lines[0].starts_with(BOLD));
        assert!(lines[1].chars().all(|c| c == '-'));
        assert_eq!(lines[2], "busy/topic  12_345  14.00 KB");
        assert!(lines[3].starts_with("also-mid ") && lines[3].ends_with("1 B"));
        assert!(lines[4].starts_with("mid ") && lines[4].ends_with("410 B"));
        assert_eq!(render_table(&HashMap::new(), 10).lines().count(), 2);
    }
}
