//! Counters kept by the loop: plain integers (one thread, no atomics). The
//! names of the reference's `/status` counters are kept where they exist.

/// Server counters since start. Counters wrap like the reference's u64s.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Successful subscribe and unsubscribe topic operations.
    pub c_sub_ops: u64,
    /// PUBLISH frames accepted (valid and allowed).
    pub c_pub_messages: u64,
    /// Their `LEN`s.
    pub c_pub_bytes: u64,
    /// Message frames queued to data sockets.
    pub c_sent_messages: u64,
    /// Their bytes (whole frames).
    pub c_sent_bytes: u64,
    /// Data sockets dropped because their queue was full.
    pub slow_consumers: u64,
    /// Connections closed for a bad greeting.
    pub bad_greetings: u64,
    /// Failed logins.
    pub login_failures: u64,
    /// Connections refused by a limit.
    pub limit_refusals: u64,
    /// Connections refused because their address failed to log in too often.
    pub auth_blocked: u64,
    /// Data sockets dropped to keep all queues under `max_queued_bytes`.
    pub queue_cap_drops: u64,
    /// Requests answered `FE`.
    pub access_denied: u64,
    /// Connections closed for a protocol error.
    pub protocol_errors: u64,
    /// Connections closed by a timeout.
    pub timeouts: u64,
    /// UDP datagrams received.
    pub udp_datagrams: u64,
    /// UDP datagrams published.
    pub udp_messages: u64,
    /// UDP datagrams dropped (malformed, unauthenticated, oversize, backlog).
    pub udp_dropped: u64,
    /// Reloads applied.
    pub reloads_ok: u64,
    /// Reloads that kept the previous files because one failed to load.
    pub reloads_failed: u64,
}
