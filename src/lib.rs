//! PSRT: the `psrtd` server, the blocking client library used by `psrt-cli`
//! and the tests, and (re-exported) the wire codec.
//!
//! * [`server`]: the single-threaded `mio` event loop (see `design` in the
//!   repository README).
//! * [`client`]: a blocking client on std sockets: control + data socket,
//!   keep-alive pinger, UDP sender.
//! * [`protocol`]: the `psrt-protocol` crate, the only place that knows wire
//!   bytes.
//! * [`passwd`]: `psrtd passwd`, which writes bcrypt lines into the password
//!   file without htpasswd.
//! * [`page_alloc`]: the global allocator of the binaries (the system's,
//!   with large blocks page-aligned for the kernel's copies).
//! * `term` (private): terminal modes for `psrt-cli --top` and the password
//!   prompt.
//! * `units` (private): the byte-size parser (`64MiB`, `1.5kb`) shared by
//!   the server's config and `psrt-cli`.

pub mod client;
pub mod page_alloc;
pub mod passwd;
pub mod server;
mod term;
mod units;

pub use psrt_protocol as protocol;
