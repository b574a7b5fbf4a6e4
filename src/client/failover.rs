//! Client failover: the order in which a client tries its addresses (as
//! listed, or shuffled), the list of subscriptions it sends again on a new
//! node, and the supervisor thread that replaces a lost connection.
//!
//! The supervisor waits for the [`Signal`] a connection raises when it
//! closes, takes the lost [`Conn`] out of the client, and tries the other
//! addresses (the lost one last) in rounds with a doubling pause, until one
//! logs in, binds its data socket and takes every subscription again, or
//! until the reconnect timeout has passed ([`State::Failed`], the message
//! channel ends). Requests wait for it in `Client::session`.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::Error;
use super::conn::Conn;
use super::session::{Inner, State};

/// How often waiters look again even without a notification.
pub(crate) const POLL: Duration = Duration::from_millis(100);
/// How often the supervisor looks at a connection that raised no signal.
const WATCH: Duration = Duration::from_secs(1);
/// The pause after the first round over all addresses; it doubles.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause between two rounds.
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// A flag raised by a closing connection, waited for by the supervisor.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    raised: Mutex<bool>,
    wake: Condvar,
}

impl Signal {
    pub(crate) fn raise(&self) {
        *self.raised.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }

    /// Waits until raised or `timeout` passed, and lowers the flag.
    fn wait(&self, timeout: Duration) {
        let raised = self.raised.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut raised, _) = self
            .wake
            .wait_timeout_while(raised, timeout, |raised| !*raised)
            .unwrap_or_else(PoisonError::into_inner);
        *raised = false;
    }
}

/// The subscribe requests to send again after a reconnect, in order. A
/// topic is in at most one request (subscribing again moves it to the
/// newest), so the list is bounded by the topics subscribed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Subscriptions {
    requests: Vec<Vec<String>>,
}

impl Subscriptions {
    /// A SUBSCRIBE of `topics` was answered.
    pub(crate) fn subscribed(&mut self, topics: &[&str]) {
        self.unsubscribed(topics);
        if !topics.is_empty() {
            self.requests
                .push(topics.iter().map(|&t| t.to_owned()).collect());
        }
    }

    /// An UNSUBSCRIBE of `topics` was answered `01`.
    pub(crate) fn unsubscribed(&mut self, topics: &[&str]) {
        for request in &mut self.requests {
            request.retain(|t| !topics.contains(&t.as_str()));
        }
        self.requests.retain(|r| !r.is_empty());
    }

    /// The requests, oldest first.
    pub(crate) fn requests(&self) -> &[Vec<String>] {
        &self.requests
    }
}

/// The order to try `addrs` in: as listed, or shuffled with `random`
/// (Fisher–Yates) if `randomize`. After losing `lost`, the addresses
/// listed after it come first (then those before it) and `lost` itself is
/// last, so a client moves on to another node and comes back only if no
/// other answers.
pub(crate) fn order<'a>(
    addrs: &[&'a str],
    randomize: bool,
    lost: Option<&str>,
    mut random: impl FnMut() -> u64,
) -> Vec<&'a str> {
    let mut order = addrs.to_vec();
    let mut others = order.len();
    if let Some(i) = lost.and_then(|lost| order.iter().position(|&a| a == lost)) {
        order.rotate_left(i + 1);
        others -= 1;
    }
    if randomize && let Some(head) = order.get_mut(..others) {
        for i in (1..head.len()).rev() {
            let bound = u64::try_from(i + 1).unwrap_or(u64::MAX);
            let j = usize::try_from(random() % bound).unwrap_or(0);
            head.swap(i, j);
        }
    }
    order
}

/// A random number from std's `RandomState` (a per-process random key,
/// advanced for every instance), mixed with the clock. Not for secrets:
/// only to spread clients over nodes.
pub(crate) fn random_u64() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    RandomState::new().hash_one(nanos)
}

/// The pause after `round` full rounds: 100 ms doubling to 2 s, plus up
/// to a quarter at random (clients that lost the same node do not retry in
/// step).
fn pause(round: u32, random: u64) -> Duration {
    let base = FIRST_PAUSE
        .saturating_mul(1u32 << round.min(8))
        .min(MAX_PAUSE);
    let quarter = u64::try_from(base.as_millis() / 4).unwrap_or(0);
    base + Duration::from_millis(random % (quarter + 1))
}

/// Body of the supervisor thread: until the client is closed or gives up,
/// waits for its connection to be lost and replaces it.
pub(crate) fn supervise(inner: &Arc<Inner>) {
    loop {
        inner.lost.wait(WATCH);
        let (old, lost_addr) = {
            let mut link = inner.lock_link();
            match link.state {
                State::Closed | State::Failed(_) => return,
                State::Reconnecting => continue,
                State::Up => {}
            }
            if link.conn.as_ref().is_some_and(|c| c.shared.is_connected()) {
                continue;
            }
            link.state = State::Reconnecting;
            (link.conn.take(), link.addr.clone())
        };
        inner.changed.notify_all();
        if let Some(old) = old {
            // A request answered on the old connection has recorded its
            // subscription once this lock is free.
            drop(old.shared.lock_control());
            drop(old);
        }
        log::warn!("lost the connection to {lost_addr}; failing over");
        let outcome = reconnect(inner, &lost_addr);
        let mut link = inner.lock_link();
        if matches!(link.state, State::Closed) {
            return;
        }
        match outcome {
            Ok((conn, addr)) => {
                log::info!("failed over from {lost_addr} to {addr}");
                link.conn = Some(conn);
                link.addr = addr;
                link.state = State::Up;
            }
            Err(why) => {
                log::error!("failover from {lost_addr} gave up: {why}");
                link.state = State::Failed(why);
                drop(link);
                inner.drop_sender();
                inner.changed.notify_all();
                return;
            }
        }
        drop(link);
        inner.changed.notify_all();
    }
}

fn closed(inner: &Inner) -> bool {
    matches!(inner.lock_link().state, State::Closed)
}

/// Tries the addresses in rounds until one takes the client (login, data
/// socket, subscriptions) or the reconnect timeout has passed.
fn reconnect(inner: &Inner, lost: &str) -> Result<(Conn, String), String> {
    let config = &inner.config;
    let start = Instant::now();
    let mut last = String::from("no address");
    let mut round = 0;
    loop {
        let addrs = config.addresses();
        for addr in order(&addrs, config.randomize(), Some(lost), random_u64) {
            if closed(inner) {
                return Err("the client was closed".into());
            }
            match connect_to(inner, addr) {
                Ok(conn) => return Ok((conn, addr.to_owned())),
                Err(e) => {
                    log::debug!("failover: {addr}: {e}");
                    last = format!("{addr}: {e}");
                }
            }
            if start.elapsed() >= config.reconnect_timeout() {
                return Err(last);
            }
        }
        let until = Instant::now() + pause(round, random_u64());
        round += 1;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || closed(inner) {
                break;
            }
            inner.lost.wait(left);
        }
        if start.elapsed() >= config.reconnect_timeout() {
            return Err(last);
        }
    }
}

/// Connects to `addr` and sends every subscription again.
fn connect_to(inner: &Inner, addr: &str) -> Result<Conn, Error> {
    let mut one = inner.config.clone();
    one.update_path(addr);
    let conn = Conn::open(&one, inner.sender(), Some(Arc::clone(&inner.lost)))?;
    let requests = inner
        .subscriptions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for request in requests.requests() {
        let topics: Vec<&str> = request.iter().map(String::as_str).collect();
        match conn.shared.with_control(|c| c.topics(true, &topics)) {
            Ok(()) => {}
            // Refused here as it was when first sent (or the ACLs differ):
            // the client goes on with what the node allows.
            Err(e) if e.keeps_session() => {
                log::warn!("resubscribing {topics:?} on {addr}: {e}");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic "random" source for the tests.
    fn counter(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed;
        move || {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            x >> 33
        }
    }

    #[test]
    fn listed_order_and_the_lost_address_last() {
        let addrs = ["a:1", "b:2", "c:3"];
        let never = || unreachable!("no randomness without randomize");
        assert_eq!(order(&addrs, false, None, never), ["a:1", "b:2", "c:3"]);
        assert_eq!(
            order(&addrs, false, Some("a:1"), never),
            ["b:2", "c:3", "a:1"]
        );
        assert_eq!(
            order(&addrs, false, Some("b:2"), never),
            ["c:3", "a:1", "b:2"]
        );
        assert_eq!(
            order(&addrs, false, Some("c:3"), never),
            ["a:1", "b:2", "c:3"]
        );
        // An address no longer listed: the list as it is.
        assert_eq!(order(&addrs, false, Some("z:9"), never), addrs);
        assert!(order(&[], true, Some("a:1"), counter(1)).is_empty());
        assert_eq!(order(&["a:1"], true, Some("a:1"), counter(1)), ["a:1"]);
    }

    #[test]
    fn random_order_is_a_permutation_and_varies() {
        let addrs = ["a:1", "b:2", "c:3", "d:4"];
        let mut firsts = std::collections::BTreeSet::new();
        let mut rng = counter(7);
        for _ in 0..200 {
            let got = order(&addrs, true, None, &mut rng);
            let mut sorted = got.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, addrs, "a permutation");
            firsts.insert(got[0]);
            // After a loss the lost address stays last.
            let got = order(&addrs, true, Some("b:2"), &mut rng);
            assert_eq!(got.last(), Some(&"b:2"));
        }
        assert_eq!(firsts.len(), 4, "every address comes first sometimes");
    }

    #[test]
    fn std_random_source_spreads_two_nodes() {
        let addrs = ["a:1", "b:2"];
        let a_first = (0..400)
            .filter(|_| order(&addrs, true, None, random_u64)[0] == "a:1")
            .count();
        assert!((100..=300).contains(&a_first), "{a_first} of 400");
    }

    #[test]
    fn pauses_double_up_to_the_cap_with_jitter() {
        assert_eq!(pause(0, 0), FIRST_PAUSE);
        assert_eq!(pause(1, 0), FIRST_PAUSE * 2);
        assert_eq!(pause(30, 0), MAX_PAUSE);
        assert_eq!(pause(0, 25), FIRST_PAUSE + Duration::from_millis(25));
        assert!(pause(30, u64::MAX) <= MAX_PAUSE + MAX_PAUSE / 4);
    }

    #[test]
    fn subscriptions_are_replayed_once_per_topic() {
        let mut subs = Subscriptions::default();
        subs.subscribed(&["a/#", "b"]);
        subs.subscribed(&["c"]);
        subs.subscribed(&["b", "d"]);
        assert_eq!(
            subs.requests(),
            [
                vec!["a/#".to_owned()],
                vec!["c".into()],
                vec!["b".into(), "d".into()]
            ]
        );
        subs.unsubscribed(&["c", "a/#", "zz"]);
        assert_eq!(subs.requests(), [vec!["b".to_owned(), "d".into()]]);
        subs.subscribed(&[]);
        subs.unsubscribed(&["b", "d"]);
        assert!(subs.requests().is_empty());
    }

    #[test]
    fn the_signal_wakes_and_resets() {
        let signal = Arc::new(Signal::default());
        signal.raise();
        let t = Instant::now();
        signal.wait(Duration::from_secs(5));
        assert!(t.elapsed() < Duration::from_secs(1), "raised: no wait");
        let t = Instant::now();
        signal.wait(Duration::from_millis(50));
        assert!(t.elapsed() >= Duration::from_millis(50), "lowered again");
        let other = Arc::clone(&signal);
        let raiser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            other.raise();
        });
        let t = Instant::now();
        signal.wait(Duration::from_secs(5));
        assert!(t.elapsed() < Duration::from_secs(2));
        raiser.join().unwrap();
    }
}
