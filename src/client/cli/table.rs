//! The table of top mode, without I/O: messages and bytes per topic, their
//! rates per second (from the change between two refreshes and the time
//! between them), the sort column that `s` cycles through, and the text of
//! one screen.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::units::{format_bytes, format_count};

const BOLD: &str = "\x1b[1m";
const REVERSE: &str = "\x1b[7m";
const RESET: &str = "\x1b[0m";

/// The column the rows are sorted by (descending; ties by topic). The
/// reference cli toggles count and bytes with `s`; here `s` goes through
/// all four: count → msg/s → bytes → bytes/s → count.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SortBy {
    #[default]
    Count,
    CountRate,
    Bytes,
    ByteRate,
}

impl SortBy {
    /// The next column (the `s` key).
    pub(crate) fn next(self) -> Self {
        match self {
            Self::Count => Self::CountRate,
            Self::CountRate => Self::Bytes,
            Self::Bytes => Self::ByteRate,
            Self::ByteRate => Self::Count,
        }
    }

    /// The column's header.
    pub(crate) fn label(self) -> &'static str {
        HEADER[self.column()]
    }

    /// Index in [`HEADER`].
    fn column(self) -> usize {
        match self {
            Self::Count => 1,
            Self::CountRate => 2,
            Self::Bytes => 3,
            Self::ByteRate => 4,
        }
    }
}

const HEADER: [&str; 5] = ["topic", "count", "msg/s", "bytes", "bytes/s"];

/// One topic's totals and rates.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct TopicStats {
    pub(crate) count: u64,
    pub(crate) bytes: u64,
    /// Messages per second between the last two refreshes.
    pub(crate) count_rate: f64,
    /// Payload bytes per second between the last two refreshes.
    pub(crate) byte_rate: f64,
    /// `count` and `bytes` at the last refresh.
    seen_count: u64,
    seen_bytes: u64,
}

/// Every topic seen, and the rates of all of them together.
#[derive(Debug, Default)]
pub(crate) struct Table {
    topics: HashMap<String, TopicStats>,
    total_count_rate: f64,
    total_byte_rate: f64,
}

impl Table {
    /// Counts one message.
    pub(crate) fn record(&mut self, topic: String, payload_bytes: usize) {
        let entry = self.topics.entry(topic).or_default();
        entry.count += 1;
        entry.bytes += payload_bytes as u64;
    }

    /// Sets every rate from what arrived since the last refresh, `elapsed`
    /// ago. With no time elapsed the rates stay as they were.
    pub(crate) fn refresh(&mut self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        let (mut total_count, mut total_bytes) = (0.0, 0.0);
        for s in self.topics.values_mut() {
            s.count_rate = (s.count - s.seen_count) as f64 / secs;
            s.byte_rate = (s.bytes - s.seen_bytes) as f64 / secs;
            s.seen_count = s.count;
            s.seen_bytes = s.bytes;
            total_count += s.count_rate;
            total_bytes += s.byte_rate;
        }
        self.total_count_rate = total_count;
        self.total_byte_rate = total_bytes;
    }

    /// Topics seen.
    pub(crate) fn len(&self) -> usize {
        self.topics.len()
    }

    /// Up to `max` rows, sorted by `sort` (descending; ties by topic).
    pub(crate) fn sorted(&self, sort: SortBy, max: usize) -> Vec<(&str, &TopicStats)> {
        let mut rows: Vec<(&str, &TopicStats)> =
            self.topics.iter().map(|(t, s)| (t.as_str(), s)).collect();
        rows.sort_unstable_by(|a, b| {
            let order = match sort {
                SortBy::Count => b.1.count.cmp(&a.1.count),
                SortBy::Bytes => b.1.bytes.cmp(&a.1.bytes),
                SortBy::CountRate => b.1.count_rate.total_cmp(&a.1.count_rate),
                SortBy::ByteRate => b.1.byte_rate.total_cmp(&a.1.byte_rate),
            };
            order.then_with(|| a.0.cmp(b.0))
        });
        rows.truncate(max);
        rows
    }

    /// One screen: the bold header (the sort column in reverse video), a
    /// dashed rule, up to `max_rows` topics, and a status line with the
    /// sort column, the keys and the totals. Lines end with `\n`.
    pub(crate) fn render(&self, sort: SortBy, max_rows: usize, keys: bool) -> String {
        let cells: Vec<[String; 5]> = self
            .sorted(sort, max_rows)
            .into_iter()
            .map(|(topic, s)| {
                [
                    printable(topic),
                    format_count(s.count),
                    format_rate(s.count_rate),
                    format_bytes(s.bytes),
                    format_byte_rate(s.byte_rate),
                ]
            })
            .collect();
        let mut widths = HEADER.map(str::len);
        for row in &cells {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::from(BOLD);
        for (i, (name, w)) in HEADER.iter().zip(widths).enumerate() {
            let cell = if i == 0 {
                format!("{name:<w$}")
            } else {
                format!("  {name:>w$}")
            };
            if i == sort.column() {
                // Writing into a String cannot fail.
                let _ = write!(out, "{REVERSE}{cell}{RESET}{BOLD}");
            } else {
                out.push_str(&cell);
            }
        }
        out.push_str(RESET);
        out.push('\n');
        out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (HEADER.len() - 1)));
        out.push('\n');
        let [tw, cw, crw, bw, brw] = widths;
        for [topic, count, count_rate, bytes, byte_rate] in &cells {
            let _ = writeln!(
                out,
                "{topic:<tw$}  {count:>cw$}  {count_rate:>crw$}  {bytes:>bw$}  {byte_rate:>brw$}"
            );
        }
        let keys = if keys { "s: sort, q: quit; " } else { "" };
        let _ = writeln!(
            out,
            "sorted by {}; {keys}{} topic(s), {} msg/s, {}",
            sort.label(),
            format_count(self.len() as u64),
            format_rate(self.total_count_rate),
            format_byte_rate(self.total_byte_rate)
        );
        out
    }
}

/// Messages per second: one decimal below 10, else a whole `_`-grouped
/// number.
pub(crate) fn format_rate(rate: f64) -> String {
    if rate < 9.95 {
        format!("{rate:.1}")
    } else {
        // Non-negative and finite here; `as` saturates beyond u64.
        format_count(rate.round() as u64)
    }
}

/// Bytes per second: `0 B/s`, `14.00 KB/s`.
pub(crate) fn format_byte_rate(rate: f64) -> String {
    format!("{}/s", format_bytes(rate.round() as u64))
}

/// The topic with control characters escaped, so it cannot move the cursor
/// or break the table.
fn printable(topic: &str) -> String {
    topic
        .chars()
        .flat_map(|c| {
            let escaped = c.is_control().then(|| c.escape_default());
            escaped
                .into_iter()
                .flatten()
                .chain((!c.is_control()).then_some(c))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[(&str, u64, u64)]) -> Table {
        let mut t = Table::default();
        for &(topic, count, bytes) in rows {
            for i in 0..count {
                // Spread the bytes over the messages.
                let share = bytes / count + u64::from(i < bytes % count);
                t.record(topic.to_owned(), share as usize);
            }
        }
        t
    }

    /// The header cell in reverse video, trimmed.
    fn marked(header: &str) -> &str {
        let start = header.find(REVERSE).expect("a marked column") + REVERSE.len();
        let len = header[start..].find(RESET).expect("its end");
        header[start..start + len].trim()
    }

    fn topics(t: &Table, sort: SortBy) -> Vec<&str> {
        t.sorted(sort, 10)
            .into_iter()
            .map(|(topic, _)| topic)
            .collect()
    }

    #[test]
    fn rates_from_the_change_between_refreshes() {
        let mut t = table(&[("a", 10, 1000), ("b", 4, 40)]);
        t.refresh(Duration::from_secs(2));
        let a = t.topics["a"];
        assert_eq!((a.count_rate, a.byte_rate), (5.0, 500.0));
        assert_eq!(t.topics["b"].count_rate, 2.0);
        assert_eq!((t.total_count_rate, t.total_byte_rate), (7.0, 520.0));
        // 3 more messages on a in half a second; nothing on b.
        for _ in 0..3 {
            t.record("a".into(), 10);
        }
        t.refresh(Duration::from_millis(500));
        let a = t.topics["a"];
        assert_eq!((a.count, a.bytes), (13, 1030));
        assert_eq!((a.count_rate, a.byte_rate), (6.0, 60.0));
        assert_eq!(t.topics["b"].count_rate, 0.0);
        assert_eq!(t.topics["b"].count, 4, "totals are kept");
        // A refresh with no time elapsed changes nothing (no division by 0).
        t.record("b".into(), 1);
        t.refresh(Duration::ZERO);
        assert_eq!(t.topics["a"].count_rate, 6.0);
        assert!(t.topics["b"].count_rate.is_finite());
        // A topic first seen between refreshes gets its rate at the next.
        t.record("c".into(), 7);
        t.refresh(Duration::from_secs(1));
        assert_eq!(t.topics["c"].count_rate, 1.0);
        assert_eq!(
            t.topics["b"].count_rate, 1.0,
            "the message of the 0 s refresh"
        );
    }

    #[test]
    fn sort_columns_and_the_s_cycle() {
        // old: most messages in total, idle now; burst: busy now, large
        // payloads; chatty: many small messages now.
        let mut t = table(&[("old", 100, 100), ("burst", 1, 50_000), ("chatty", 2, 2)]);
        t.refresh(Duration::from_secs(1));
        t.record("burst".into(), 90_000);
        for _ in 0..5 {
            t.record("chatty".into(), 1);
        }
        t.refresh(Duration::from_secs(1));
        assert_eq!(topics(&t, SortBy::Count), ["old", "chatty", "burst"]);
        assert_eq!(topics(&t, SortBy::CountRate), ["chatty", "burst", "old"]);
        assert_eq!(topics(&t, SortBy::Bytes), ["burst", "old", "chatty"]);
        assert_eq!(topics(&t, SortBy::ByteRate), ["burst", "chatty", "old"]);
        // Ties by topic name; the cut keeps the first rows.
        let t = table(&[("b", 1, 1), ("a", 1, 1), ("c", 2, 0)]);
        assert_eq!(topics(&t, SortBy::Count), ["c", "a", "b"]);
        assert_eq!(t.sorted(SortBy::Count, 2).len(), 2);
        // `s` goes through all four and back.
        let mut sort = SortBy::default();
        let mut seen = vec![sort.label()];
        for _ in 0..4 {
            sort = sort.next();
            seen.push(sort.label());
        }
        assert_eq!(seen, ["count", "msg/s", "bytes", "bytes/s", "count"]);
    }

    #[test]
    fn screen_layout() {
        let mut t = table(&[
            ("quiet", 1, 10),
            ("busy/topic", 12_340, 14_000),
            ("mid", 50, 410),
            ("also-mid", 50, 1),
        ]);
        t.refresh(Duration::from_secs(10));
        let screen = t.render(SortBy::Count, 3, true);
        let lines: Vec<&str> = screen.lines().collect();
        assert_eq!(lines.len(), 6, "{screen}");
        assert!(lines[0].starts_with(BOLD) && lines[0].contains("topic"));
        assert_eq!(marked(lines[0]), "count");
        assert!(lines[1].chars().all(|c| c == '-'));
        assert_eq!(
            lines[2], "busy/topic  12_340  1_234  14.00 KB  1.40 KB/s",
            "{screen}"
        );
        assert!(lines[3].starts_with("also-mid ") && lines[3].contains(" 5.0 "));
        assert!(lines[4].starts_with("mid ") && lines[4].ends_with("41 B/s"));
        assert_eq!(
            lines[5],
            "sorted by count; s: sort, q: quit; 4 topic(s), 1_244 msg/s, 1.44 KB/s"
        );
        let screen = t.render(SortBy::ByteRate, 10, false);
        assert_eq!(marked(screen.lines().next().unwrap()), "bytes/s");
        assert!(
            screen
                .lines()
                .last()
                .unwrap()
                .starts_with("sorted by bytes/s; 4 topic")
        );
        // An empty table: header, rule, status.
        assert_eq!(
            Table::default()
                .render(SortBy::Count, 10, true)
                .lines()
                .count(),
            3
        );
    }

    #[test]
    fn rates_and_topics_print_safely() {
        assert_eq!(format_rate(0.0), "0.0");
        assert_eq!(format_rate(0.25), "0.2");
        assert_eq!(format_rate(9.94), "9.9");
        assert_eq!(format_rate(9.96), "10");
        assert_eq!(format_rate(1_234_567.4), "1_234_567");
        assert_eq!(format_byte_rate(0.0), "0 B/s");
        assert_eq!(format_byte_rate(14_000.2), "14.00 KB/s");
        assert_eq!(printable("a/b"), "a/b");
        assert_eq!(printable("a\x1b[2J\nb"), "a\\u{1b}[2J\\nb");
    }
}
