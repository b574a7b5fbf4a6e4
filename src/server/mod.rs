//! `psrtd`: a PSRT server on one `mio` event loop.
//!
//! Layout (one concept per module):
//!
//! | module | owns |
//! |---|---|
//! | [`event_loop`] | `Server`: poll, listeners, the connection slab, read/flush/timer dispatch |
//! | `accept`, `teardown` | taking connections into the slab; closing and removing them |
//! | `handshake` | input dispatch by phase; greeting, login, sessions, data-socket binding |
//! | `control` | requests of logged-in clients; delivery to subscribers |
//! | `reload` | applying a SIGHUP reload to live sessions |
//! | [`cluster`], `link` | outgoing replication: `cluster.yml`, per-node queues, the links on the loop |
//! | [`http`] | the stats endpoint: page, JSON, Prometheus, health |
//! | [`conn`] | one socket: phase, input buffer, send queue, deadlines |
//! | [`matcher`] | the subscription tree |
//! | [`auth`] | passwords, ACL, UDP keys, the bcrypt worker, the verified-login cache |
//! | [`config`] | `config.yml` (reference format) and the embedded default |
//! | [`timers`] | the deadline heap |
//! | `udp` | UDP publish datagrams (plain and AES-GCM) |
//! | [`tls`] | rustls identity loading and the TLS transport |
//! | [`stats`] | counters |
//! | `notify` | systemd notifications: ready, reloading, stopping, watchdog |
//! | `listener`, `ratelog`, `throttle` | listening sockets; rate-limited warnings; login brute-force refusals |

mod accept;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod conn;
mod control;
pub mod event_loop;
mod handshake;
pub mod http;
mod link;
mod listener;
pub mod matcher;
mod notify;
mod ratelog;
mod reload;
pub mod stats;
pub mod sys;
mod teardown;
mod throttle;
pub mod timers;
pub mod tls;
mod udp;

pub use auth::AuthDb;
pub use config::{Config, ConfigError};
pub use event_loop::{Server, ShutdownHandle};
