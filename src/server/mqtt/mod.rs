//! MQTT 3.1.1 (and 3.1) clients on the same loop, in the same topic space
//! as PSRT clients: one matcher, one ACL, one publish pipeline
//! (`Origin::Mqtt`), one auth pipeline. The phases are drawn in
//! `LIFECYCLE.md`; the wire codec is `psrt_protocol::mqtt`.
//!
//! | file | owns |
//! |---|---|
//! | `phase` | the phases and their deadlines: `TlsHandshake`, `Connect`, `Authenticating`, `Connected` |
//! | `state` | sessions, which outlive connections; the matcher id of a session |
//! | `connect` | the TLS start of a TLS listener; CONNECT: checks, the auth pipeline, CONNACK refusals |
//! | `session` | starting, taking over, resuming, ending and expiring sessions; the last will |
//! | `packets` | packets of a connected client: PUBLISH in, acks, (UN)SUBSCRIBE, PING, DISCONNECT |
//! | `outbound` | messages to MQTT clients: packets built once, the in-flight window, redelivery |
//! | `reload` | a SIGHUP reload applied to live sessions |
//! | `retain` | the retained-message store (`mqtt.retain`), bounded in bytes; no I/O, no `Core` |

pub(crate) mod connect;
pub(crate) mod outbound;
pub(crate) mod packets;
pub(crate) mod phase;
pub(crate) mod reload;
pub(crate) mod retain;
pub(crate) mod session;
pub(crate) mod state;

#[cfg(test)]
mod retain_tests;
#[cfg(test)]
mod tests;
