//! Rate limiting for warnings that a misbehaving client (or many) can
//! trigger in bulk: at most a burst per kind per window, then one summary
//! line with how many were suppressed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Lines of one kind allowed per window.
const BURST: u32 = 10;
/// The window.
const WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Bucket {
    window_start: Instant,
    logged: u32,
    suppressed: u64,
}

/// Per-kind counters.
#[derive(Debug, Default)]
pub(crate) struct RateLog {
    buckets: HashMap<&'static str, Bucket>,
    /// Some kind has suppressed lines not yet reported.
    pending: bool,
}

fn report(kind: &str, b: &mut Bucket, now: Instant) {
    if b.suppressed > 0 {
        log::warn!(
            "{} similar warnings ({kind}) suppressed in the last {}s",
            b.suppressed,
            now.duration_since(b.window_start).as_secs()
        );
    }
    b.window_start = now;
    b.logged = 0;
    b.suppressed = 0;
}

impl RateLog {
    /// Reports the suppressed counts of windows that are over, so a count
    /// is never left unsaid because no later warning of its kind came. The
    /// loop calls this every turn; it is a flag check when nothing waits.
    pub(crate) fn flush(&mut self, now: Instant) {
        if !self.pending {
            return;
        }
        let mut still = false;
        for (kind, b) in &mut self.buckets {
            if b.suppressed > 0 && now.duration_since(b.window_start) >= WINDOW {
                report(kind, b, now);
            }
            still |= b.suppressed > 0;
        }
        self.pending = still;
    }

    /// Reports every suppressed count now (at shutdown).
    pub(crate) fn flush_all(&mut self, now: Instant) {
        for (kind, b) in &mut self.buckets {
            report(kind, b, now);
        }
        self.pending = false;
    }

    /// Logs `msg` at warn level unless the kind is over its burst. When a
    /// new window starts after suppression, says how many lines were dropped.
    pub(crate) fn warn(&mut self, kind: &'static str, now: Instant, msg: std::fmt::Arguments<'_>) {
        let b = self.buckets.entry(kind).or_insert(Bucket {
            window_start: now,
            logged: 0,
            suppressed: 0,
        });
        if now.duration_since(b.window_start) >= WINDOW {
            report(kind, b, now);
        }
        if b.logged < BURST {
            b.logged += 1;
            log::warn!("{msg}");
        } else {
            b.suppressed += 1;
            self.pending = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_suppresses() {
        let mut r = RateLog::default();
        let t0 = Instant::now();
        for _ in 0..25 {
            r.warn("x", t0, format_args!("m"));
        }
        let b = &r.buckets["x"];
        assert_eq!((b.logged, b.suppressed), (BURST, 15));
        r.flush(t0 + WINDOW / 2);
        assert_eq!(r.buckets["x"].suppressed, 15, "window not over yet");
        r.flush(t0 + WINDOW);
        assert_eq!(
            r.buckets["x"].suppressed, 0,
            "reported when the window ends"
        );
        assert!(!r.pending);
        r.warn("x", t0 + WINDOW, format_args!("m"));
        let b = &r.buckets["x"];
        assert_eq!((b.logged, b.suppressed), (1, 0));
    }
}
