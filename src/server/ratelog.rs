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
}

impl RateLog {
    /// Logs `msg` at warn level unless the kind is over its burst. When a
    /// new window starts after suppression, says how many lines were dropped.
    pub(crate) fn warn(&mut self, kind: &'static str, now: Instant, msg: std::fmt::Arguments<'_>) {
        let b = self.buckets.entry(kind).or_insert(Bucket {
            window_start: now,
            logged: 0,
            suppressed: 0,
        });
        if now.duration_since(b.window_start) >= WINDOW {
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
        if b.logged < BURST {
            b.logged += 1;
            log::warn!("{msg}");
        } else {
            b.suppressed += 1;
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
        r.warn("x", t0 + WINDOW, format_args!("m"));
        let b = &r.buckets["x"];
        assert_eq!((b.logged, b.suppressed), (1, 0));
    }
}
