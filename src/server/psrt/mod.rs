//! PSRT clients: the control socket (greeting, login, requests and their
//! one-byte replies) and the data socket (hello, then pushed messages),
//! as the phases drawn in `LIFECYCLE.md`.
//!
//! | file | owns |
//! |---|---|
//! | `state` | the phases and their data: `Session`, `DataLink` |
//! | `masks` | a session's set of subscribed masks |
//! | `handshake` | greeting, TLS switch (and its cap), login through the auth pipeline |
//! | `session` | starting and ending a session; binding a data socket |
//! | `control` | requests of a logged-in client |

pub(crate) mod control;
pub(crate) mod handshake;
pub(crate) mod masks;
pub(crate) mod reload;
pub(crate) mod session;
pub(crate) mod state;

#[cfg(test)]
mod admission_tests;
#[cfg(test)]
mod auth_tests;
#[cfg(test)]
mod tests;
