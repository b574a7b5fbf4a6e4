//! The stats endpoint's tables as JSON, for the page and for scripts:
//! `/topics` (the busiest topics, from the bounded table in `pubsub::top`),
//! `/clients` (logged-in PSRT and connected MQTT clients, the first N by a
//! sort key), `/history`
//! (the charts' last two minutes) and the cluster links that `/status` adds
//! under `psrtd.links`.
//!
//! Times are µs since the Unix epoch, like `/status`'s `time`; rates are per
//! second over the loop's last interval (about a second, on the server's
//! clock).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::head::{ClientQuery, SortKey, TopicQuery};
use crate::server::conn::{ConnId, Transport};
use crate::server::core::{Conns, Core};
use crate::server::mqtt::phase::Phase as Mqtt;
use crate::server::phase::{Conn, Phase};
use crate::server::psrt::state::Phase as Psrt;
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
    let rows: Vec<Value> = core
        .topics
        .busiest(q.limit as usize, q.by_rate)
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

/// A logged-in client: a PSRT session (its control connection and data
/// socket) or a connected MQTT client (one connection, its session).
struct Client<'a> {
    /// The control connection, or the MQTT connection.
    conn: &'a Conn,
    login: &'a str,
    subscriptions: usize,
    sent: u64,
    dropped: u64,
    /// Where its messages queue: the data socket, or the MQTT connection.
    outbox: Option<&'a Conn>,
    mqtt: bool,
}

impl Client<'_> {
    fn queued(&self) -> usize {
        self.outbox.map_or(0, |d| d.tx.len())
    }

    /// The numeric sort key: the first row has the smallest. `since` is
    /// the login's age order (oldest first); `login` sorts by name instead.
    fn key(&self, sort: SortKey, started: Instant) -> u64 {
        let largest_first = |v: u64| u64::MAX - v;
        match sort {
            SortKey::Queued => largest_first(self.queued() as u64),
            SortKey::Sent => largest_first(self.sent),
            SortKey::Dropped => largest_first(self.dropped),
            SortKey::Subscriptions => largest_first(self.subscriptions as u64),
            SortKey::Since | SortKey::Login => self.age_order(started),
        }
    }

    /// Login time in ns since the server started (ties: oldest first).
    fn age_order(&self, started: Instant) -> u64 {
        self.conn
            .phase_since
            .saturating_duration_since(started)
            .as_nanos() as u64
    }

    fn protocol(&self) -> &'static str {
        let tls = matches!(self.conn.stream, Transport::Tls(_));
        match (self.mqtt, tls, self.conn.peer.is_unix()) {
            (true, true, _) => "mqtt+tls",
            (true, false, _) => "mqtt",
            (false, _, true) => "psrt (unix)",
            (false, true, _) => "psrt+tls",
            (false, false, _) => "psrt",
        }
    }
}

/// The logged-in client on connection `id` (a PSRT control connection or
/// a connected MQTT client).
fn client<'a>(core: &'a Core, conns: &'a Conns, id: ConnId) -> Option<Client<'a>> {
    let conn = conns.get(id)?;
    match &conn.phase {
        Phase::Psrt(Psrt::Control(session)) => Some(Client {
            conn,
            login: &session.login,
            subscriptions: session.masks.len(),
            sent: session.sent,
            dropped: session.dropped,
            outbox: session
                .data
                .and_then(|d| conns.get(d))
                .filter(|d| matches!(d.phase, Phase::Psrt(Psrt::Data(_)))),
            mqtt: false,
        }),
        Phase::Mqtt(Mqtt::Connected(link)) => {
            let session = core.mqtt.slab.get(link.session)?;
            Some(Client {
                conn,
                login: &session.login,
                subscriptions: session.filters.len(),
                sent: session.sent,
                dropped: session.dropped,
                outbox: Some(conn),
                mqtt: true,
            })
        }
        _ => None,
    }
}

/// `/clients`: the first `limit` clients by `sort`, and how many there are.
/// Rows are ordered by plain keys (`sort_unstable` on tuples: one sort
/// instantiation each for numbers and for names), ties by login time, then
/// connection.
pub(crate) fn clients_json(core: &Core, conns: &Conns, q: ClientQuery) -> String {
    let now_us = unix_us();
    let ids: Vec<ConnId> = if q.sort == SortKey::Login {
        let mut keys: Vec<(&str, u64, ConnId)> = conns
            .iter()
            .filter_map(|(id, _)| client(core, conns, id).map(|c| (c, id)))
            .map(|(c, id)| (c.login, c.age_order(core.started), id))
            .collect();
        keys.sort_unstable();
        keys.into_iter().map(|k| k.2).collect()
    } else {
        let mut keys: Vec<(u64, u64, ConnId)> = conns
            .iter()
            .filter_map(|(id, _)| client(core, conns, id).map(|c| (c, id)))
            .map(|(c, id)| (c.key(q.sort, core.started), c.age_order(core.started), id))
            .collect();
        keys.sort_unstable();
        keys.into_iter().map(|k| k.2).collect()
    };
    let total = ids.len();
    let all = ids
        .into_iter()
        .take(q.limit as usize)
        .filter_map(|id| client(core, conns, id).map(|c| (id, c)));
    let rows: Vec<Value> = all
        .map(|(id, c)| {
            json!({
                "id": id,
                "login": c.login,
                "address": c.conn.peer.to_string(),
                "protocol": c.protocol(),
                "subscriptions": c.subscriptions,
                "data_socket": c.outbox.is_some(),
                "queued_bytes": c.queued(),
                "queued_messages": c.outbox.map_or(0, |d| d.tx.messages()),
                "sent": c.sent,
                "dropped": c.dropped,
                "since": unix_us_at(core, now_us, c.conn.phase_since),
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
