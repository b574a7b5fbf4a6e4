//! The stats endpoint's tables as JSON, for the page and for scripts:
//! `/topics` (the busiest topics, from the bounded table in `pubsub::top`),
//! `/clients` (logged-in clients, the first N by a sort key), `/history`
//! (the charts' last two minutes) and the cluster links that `/status` adds
//! under `psrtd.links`.
//!
//! Times are µs since the Unix epoch, like `/status`'s `time`; rates are per
//! second over the loop's last interval (about a second, on the server's
//! clock).

use std::cmp::Reverse;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::head::{ClientQuery, SortKey, TopicQuery};
use crate::server::conn::{ConnId, Transport};
use crate::server::core::{Conns, Core};
use crate::server::phase::{Conn, Phase};
use crate::server::psrt::state::{Phase as Psrt, Session};
use crate::server::pubsub::top::SLOTS;
use crate::server::stats::SERIES;

/// Now, in µs since the epoch.
pub(crate) fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A loop instant in µs since the epoch (`now_us` is the epoch time of
/// `core.now`).
fn unix_us_at(core: &Core, now_us: u64, t: Instant) -> u64 {
    now_us.saturating_sub(core.now.saturating_duration_since(t).as_micros() as u64)
}

/// A rate rounded to 0.01.
fn rate(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `/topics`: the `limit` busiest topics (at most the table's slots), by
/// messages or by their rate now.
pub(crate) fn topics_json(core: &Core, q: TopicQuery) -> String {
    let now_us = unix_us();
    let mut slots = core.topics.busiest(SLOTS);
    if q.by_rate {
        // Stable: equal rates keep the order by messages.
        slots.sort_by(|a, b| b.msg_rate.total_cmp(&a.msg_rate));
    }
    slots.truncate(q.limit as usize);
    let rows: Vec<Value> = slots
        .into_iter()
        .map(|s| {
            json!({
                "topic": s.topic,
                "messages": s.count,
                "error": s.error,
                "bytes": s.bytes,
                "messages_per_sec": rate(s.msg_rate),
                "bytes_per_sec": rate(s.byte_rate),
                "since": unix_us_at(core, now_us, s.since),
            })
        })
        .collect();
    json!({
        "time": now_us,
        "sort": if q.by_rate { "rate" } else { "messages" },
        "interval": rate(core.rates.interval),
        "slots": SLOTS,
        "tracked": core.topics.len(),
        "topics": rows,
    })
    .to_string()
}

/// A logged-in client: its control connection, session and data socket.
struct Client<'a> {
    control: &'a Conn,
    session: &'a Session,
    data: Option<&'a Conn>,
}

impl Client<'_> {
    fn queued(&self) -> usize {
        self.data.map_or(0, |d| d.tx.len())
    }

    /// A numeric sort key, the first row having the largest.
    fn key(&self, sort: SortKey) -> u64 {
        match sort {
            SortKey::Queued => self.queued() as u64,
            SortKey::Sent => self.session.sent,
            SortKey::Dropped => self.session.dropped,
            SortKey::Subscriptions => self.session.masks.len() as u64,
            // Oldest first: the earliest login has the largest key.
            SortKey::Since | SortKey::Login => 0,
        }
    }

    fn protocol(&self) -> &'static str {
        match (&self.control.stream, self.control.peer.is_unix()) {
            (_, true) => "psrt (unix)",
            (Transport::Tls(_), _) => "psrt+tls",
            _ => "psrt",
        }
    }
}

/// Every logged-in client, by control connection.
fn clients(conns: &Conns) -> Vec<(ConnId, Client<'_>)> {
    conns
        .iter()
        .filter_map(|(id, c)| match &c.phase {
            Phase::Psrt(Psrt::Control(session)) => Some((
                id,
                Client {
                    control: c,
                    session,
                    data: session
                        .data
                        .and_then(|d| conns.get(d))
                        .filter(|d| matches!(d.phase, Phase::Psrt(Psrt::Data(_)))),
                },
            )),
            _ => None,
        })
        .collect()
}

/// `/clients`: the first `limit` clients by `sort`, and how many there are.
pub(crate) fn clients_json(core: &Core, conns: &Conns, q: ClientQuery) -> String {
    let now_us = unix_us();
    let mut all = clients(conns);
    let total = all.len();
    let limit = (q.limit as usize).min(total);
    // Ties (and `since`) go by login time, oldest first, then connection.
    let order = |a: &(ConnId, Client<'_>), b: &(ConnId, Client<'_>)| {
        match q.sort {
            SortKey::Login => a.1.session.login.cmp(&b.1.session.login),
            sort => Reverse(a.1.key(sort)).cmp(&Reverse(b.1.key(sort))),
        }
        .then(a.1.control.phase_since.cmp(&b.1.control.phase_since))
        .then(a.0.cmp(&b.0))
    };
    if limit > 0 && limit < total {
        all.select_nth_unstable_by(limit - 1, order);
        all.truncate(limit);
    }
    all.sort_unstable_by(order);
    let rows: Vec<Value> = all
        .iter()
        .take(limit)
        .map(|(id, c)| {
            json!({
                "id": id,
                "login": c.session.login,
                "address": c.control.peer.to_string(),
                "protocol": c.protocol(),
                "subscriptions": c.session.masks.len(),
                "data_socket": c.data.is_some(),
                "queued_bytes": c.queued(),
                "queued_messages": c.data.map_or(0, |d| d.tx.messages()),
                "sent": c.session.sent,
                "dropped": c.session.dropped,
                "since": unix_us_at(core, now_us, c.control.phase_since),
            })
        })
        .collect();
    json!({
        "time": now_us,
        "count": total,
        "sort": q.sort.as_str(),
        "clients": rows,
    })
    .to_string()
}

/// `/status`'s `psrtd.links`: each cluster node's link and queue.
pub(crate) fn links(core: &Core) -> Value {
    core.cluster
        .nodes
        .iter()
        .map(|n| {
            json!({
                "node": n.config.path,
                "status": n.status.as_str(),
                "queued": n.queue.len(),
                "queued_bytes": n.queued_bytes,
                "sent": n.sent,
                "not_required": n.not_required,
                "dropped": n.dropped,
            })
        })
        .collect()
}

/// `/history`: one column per series (and `time`), oldest first, one value
/// per interval.
pub(crate) fn history_json(core: &Core) -> String {
    let now_us = unix_us();
    let points = &core.history.points;
    let mut series = serde_json::Map::new();
    let times: Vec<u64> = points
        .iter()
        .map(|(at, _)| unix_us_at(core, now_us, *at))
        .collect();
    series.insert("time".into(), times.into());
    for (i, name) in SERIES.iter().enumerate() {
        let column: Vec<f64> = points.iter().map(|(_, v)| rate(v[i])).collect();
        series.insert((*name).into(), column.into());
    }
    json!({
        "time": now_us,
        "interval": crate::server::stats::RATE_INTERVAL.as_secs_f64(),
        "series": series,
    })
    .to_string()
}
