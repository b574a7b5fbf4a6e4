//! The `server:` keys that bound the auth workers' load and what waits for
//! them: `auth_workers`, `udp_pending_bytes`, `udp_pending_bytes_per_check`
//! and `udp_replay_window`, with their defaults and ranges.

/// Plain-auth UDP bytes waiting for password checks, all together.
pub(super) const DEFAULT_UDP_PENDING_BYTES: usize = 4 * 1024 * 1024;
/// The same, for one (login, password) check.
pub(super) const DEFAULT_UDP_PENDING_BYTES_PER_CHECK: usize = 256 * 1024;
/// AES-GCM nonces remembered per UDP key.
pub(super) const DEFAULT_UDP_REPLAY_WINDOW: usize = 4096;
/// `server.auth_workers` at most.
const MAX_AUTH_WORKERS: usize = 64;
/// `server.udp_replay_window`'s range.
const UDP_REPLAY_WINDOW_RANGE: std::ops::RangeInclusive<usize> = 16..=1 << 20;

/// The validated values.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct WorkLimits {
    pub(super) auth_workers: usize,
    pub(super) udp_pending_bytes: usize,
    pub(super) udp_pending_bytes_per_check: usize,
    pub(super) udp_replay_window: usize,
}

impl WorkLimits {
    /// Defaults for the keys not given; why a value is refused.
    pub(super) fn parse(
        auth_workers: Option<usize>,
        udp_pending_bytes: Option<usize>,
        udp_pending_bytes_per_check: Option<usize>,
        udp_replay_window: Option<usize>,
    ) -> Result<Self, String> {
        let auth_workers = auth_workers.unwrap_or(0);
        if auth_workers > MAX_AUTH_WORKERS {
            return Err(format!(
                "server.auth_workers: {auth_workers} is too many (0 = automatic, at most {MAX_AUTH_WORKERS})"
            ));
        }
        let total = udp_pending_bytes.unwrap_or(DEFAULT_UDP_PENDING_BYTES);
        let per_check = udp_pending_bytes_per_check
            .unwrap_or_else(|| DEFAULT_UDP_PENDING_BYTES_PER_CHECK.min(total));
        if per_check > total {
            return Err(format!(
                "server.udp_pending_bytes_per_check: {per_check} is above udp_pending_bytes ({total})"
            ));
        }
        let window = udp_replay_window.unwrap_or(DEFAULT_UDP_REPLAY_WINDOW);
        if !UDP_REPLAY_WINDOW_RANGE.contains(&window) {
            return Err(format!(
                "server.udp_replay_window: {window} is out of range ({} to {})",
                UDP_REPLAY_WINDOW_RANGE.start(),
                UDP_REPLAY_WINDOW_RANGE.end()
            ));
        }
        Ok(Self {
            auth_workers,
            udp_pending_bytes: total,
            udp_pending_bytes_per_check: per_check,
            udp_replay_window: window,
        })
    }
}
