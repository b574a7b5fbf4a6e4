//! `psrtd`: a PSRT server on one `mio` event loop. `ARCHITECTURE.md` at the
//! repository root is the map; this table is its short form. Layers, from
//! the bottom (a module uses only modules in rows above it, or beside it in
//! the same row, never below — `tests/architecture.rs` checks there is no
//! import cycle):
//!
//! | layer | module | owns |
//! |---|---|---|
//! | base | [`config`] | `config.yml` (reference format) and the embedded default |
//! | base | `conn` | one socket, generic over its phase: transport (plain/TLS), input buffer, send queue, deadlines' inputs, close reasons |
//! | base | `stats`, `timers`, `ratelog`, `sys`, `notify`, `listener`, `admission` | the counter table, its rates and their history; the deadline heap; rate-limited warnings; OS knobs; systemd notifications; listening sockets (backlog: `somaxconn`); connections before login per address and TLS handshakes in progress |
//! | state | `auth` | passwords (and the decoy hash for unknown users), ACL, UDP keys, TLS identity, the bcrypt workers (logins queued before UDP checks), the login cache (verified and recently failed), the one auth pipeline (`auth::login`), the login throttle |
//! | state | `pubsub::matcher`, `pubsub::top`, `link::nodes`, `link::phase`, `bridge::state`, `bridge::phase`, `http::head`, `http::phase`, `psrt::state`, `mqtt::phase`, `mqtt::state` | the subscription tree; the busiest topics; cluster nodes and their queues; bridges and their queues; each protocol's phase types |
//! | state | `phase` | the server's `Phase`: `Psrt(..)`, `Http(..)`, `Link(..)`, `Mqtt(..)`, `Bridge(..)`, `Closing`; input wanted and deadlines per phase |
//! | state | `core` | `Core` (shared state), `Cx` (a handler's narrow context), `Effect` |
//! | handlers | `psrt`, `http`, `link`, `udp`, `mqtt`, `bridge` | the protocols: each a folder of handlers taking `Cx` |
//! | handlers | `pubsub` | the one publish pipeline, fan-out, and the outbox (slow-consumer policy) |
//! | dispatch | `dispatch` | the one place that routes input, deadlines, worker answers and closes to a protocol |
//! | loop | `event_loop` | `Server`: poll, accept, read, flush, timers, signals, worker wake-ups |
//!
//! Public API: [`Server`], [`ShutdownHandle`], [`Config`], [`AuthDb`],
//! [`Stats`] and a few loaders; [`config`] for its types; `fuzzing` (hidden)
//! for the fuzz targets. Everything else is `pub(crate)`.

pub(crate) mod admission;
pub(crate) mod auth;
pub(crate) mod bridge;
pub mod config;
pub(crate) mod conn;
pub(crate) mod core;
pub(crate) mod dispatch;
pub(crate) mod event_loop;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod http;
pub(crate) mod link;
pub(crate) mod listener;
pub(crate) mod mqtt;
pub(crate) mod notify;
pub(crate) mod phase;
pub(crate) mod psrt;
pub(crate) mod pubsub;
pub(crate) mod ratelog;
pub(crate) mod stats;
pub(crate) mod sys;
#[cfg(test)]
mod testing;
pub(crate) mod timers;
pub(crate) mod udp;

pub use auth::{ANONYMOUS, Acl, AclEntry, AuthDb, Keys, Passwords};
pub use config::{Config, ConfigError};
pub use event_loop::{Server, ShutdownHandle};
pub use link::nodes::{NodeConfig, load_nodes};
pub use stats::Stats;
pub use sys::raise_nofile_limit;
