//! Admission before login: how many connections each source address holds
//! in the PSRT handshake phases (greeting, TLS handshake, login, bcrypt
//! check, data hello), and how many TLS handshakes run at once. Both are
//! bounded (`server.max_handshakes_per_ip`, `server.max_tls_handshakes`),
//! so one address cannot take every slot and a flood of ClientHellos cannot
//! hold unbounded TLS state. Plain counts: the loop and the handshake
//! handlers decide when a connection enters or leaves; every way out (login,
//! data socket bound, handshake done, any close) must leave exactly once,
//! which the connection's `counted_handshake` flag and the TLS phase itself
//! make sure of.

use std::collections::HashMap;
use std::net::IpAddr;

/// Connections in the handshake phases, per source address, and TLS
/// handshakes in progress.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    per_ip: HashMap<IpAddr, usize>,
    tls: usize,
}

impl Admission {
    /// `max` (0 = no limit) connections from `ip` are in their handshake
    /// already: a new one is refused.
    pub(crate) fn is_full(&self, ip: IpAddr, max: usize) -> bool {
        max > 0 && self.handshakes_from(ip) >= max
    }

    /// Counts a new connection from `ip` (admitted: see [`is_full`](Self::is_full)).
    pub(crate) fn enter(&mut self, ip: IpAddr) {
        *self.per_ip.entry(ip).or_insert(0) += 1;
    }

    /// A connection counted by [`enter`](Self::enter) logged in, bound its
    /// data socket or closed.
    pub(crate) fn leave(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// Connections from `ip` in their handshake.
    pub(crate) fn handshakes_from(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }

    /// Starts a TLS handshake unless `max` (0 = no limit) are running.
    pub(crate) fn start_tls(&mut self, max: usize) -> bool {
        if max > 0 && self.tls >= max {
            return false;
        }
        self.tls += 1;
        true
    }

    /// A TLS handshake ended: done, failed, timed out or closed.
    pub(crate) fn tls_ended(&mut self) {
        self.tls = self.tls.saturating_sub(1);
    }

    /// TLS handshakes in progress.
    #[cfg(test)]
    pub(crate) fn tls_handshakes(&self) -> usize {
        self.tls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_address_counts_are_capped_and_released() {
        let mut a = Admission::default();
        let (x, y): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        a.enter(x);
        assert!(!a.is_full(x, 2));
        a.enter(x);
        assert!(a.is_full(x, 2), "a third from one address is refused");
        assert!(!a.is_full(y, 2), "another address is not affected");
        assert!(!a.is_full(x, 0), "0: no limit");
        a.enter(y);
        assert_eq!(a.handshakes_from(x), 2);
        a.leave(x);
        assert!(!a.is_full(x, 2), "a slot freed is usable again");
        a.leave(x);
        a.leave(y);
        assert!(a.per_ip.is_empty(), "no entry left for idle addresses");
        a.leave(y);
        assert_eq!(a.handshakes_from(y), 0, "an extra leave is harmless");
    }

    #[test]
    fn tls_handshakes_are_capped() {
        let mut a = Admission::default();
        assert!(a.start_tls(2) && a.start_tls(2));
        assert!(!a.start_tls(2));
        a.tls_ended();
        assert_eq!(a.tls_handshakes(), 1);
        assert!(a.start_tls(2));
        assert!(a.start_tls(0), "0: no limit");
    }
}
