//! The PSRT wire codec: every byte the server, the client library, the cli
//! and the fuzz targets put on or take off the wire goes through this crate.
//!
//! The crate is pure: no `std::io`, no sockets, no clock, no logging, no
//! serde. Decoders are incremental and borrow from the caller's buffer:
//!
//! ```
//! use psrt_protocol::{decode_request, Decoded, Limits, Request};
//!
//! let limits = Limits::default();
//! // NOP followed by the first byte of the next request.
//! let buf = [0x00, 0x01];
//! match decode_request(&buf, &limits) {
//!     Ok(Decoded::Frame { frame: Request::Nop, len: 1 }) => {}
//!     other => panic!("{other:?}"),
//! }
//! // A lone PUBLISH op byte is a valid prefix, not an error.
//! assert!(matches!(decode_request(&buf[1..], &limits), Ok(Decoded::Incomplete { .. })));
//! ```
//!
//! A decoder returns a frame and the number of bytes it used, or
//! [`Decoded::Incomplete`] with the number of bytes still missing, or a typed
//! [`DecodeError`]. Length prefixes are checked against [`Limits`] as soon as
//! they are visible, so a caller never has to buffer more than the limit.
//! Decoders never panic and never allocate.
//!
//! Every `decode_*` has its `encode_*` next to it in the same module; the
//! byte layouts are drawn in `protocol/README.md`.
//!
//! [`mqtt`] is the MQTT 3.1.1 codec, with the same rules: the server speaks
//! it on its MQTT listener, sharing the topic space with PSRT.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod codes;
mod data;
mod error;
mod greeting;
mod login;
pub mod mqtt;
mod repl;
mod request;
mod topic;
mod udp;
mod wire;

pub use codes::{
    CommMode, DEFAULT_PORT, DEFAULT_PRIORITY, Op, PROTOCOL_VERSION, Reply, StreamKind, UdpCipher,
    UdpOp,
};
pub use data::{
    DATA_HELLO_LEN, DataFrame, DataHello, PUSH_HEADER_LEN, Push, decode_data_frame,
    decode_data_hello, encode_data_hello, encode_nop_beacon, encode_push, encode_push_header,
    push_frame_len,
};
pub use error::{DecodeError, Decoded};
pub use greeting::{
    GREETING_LEN, GREETING_REPLY_LEN, Greeting, decode_greeting, decode_greeting_reply,
    encode_greeting, encode_greeting_reply,
};
pub use login::{
    ANONYMOUS_LOGIN_FRAME, Login, MAX_LOGIN_FRAME_LEN, TOKEN_LEN, Token, decode_login,
    decode_token, encode_login,
};
pub use repl::{
    REPL_BODY_HEADER_LEN, REPL_SEQ_HEADER_LEN, ReplBody, decode_repl_body, encode_repl_body,
    encode_repl_body_header, encode_repl_seq_head,
};
pub use request::{
    Request, Topics, decode_reply, decode_request, encode_reply, encode_request, encode_topics,
};
pub use topic::{
    TopicError, canonical_mask, mask_covers, mask_matches, normalize_publish_topic,
    normalize_topic, topic_depth, validate_mask, validate_publish_topic,
};
pub use udp::{
    AES_KEY_LEN, Datagram, GCM_NONCE_LEN, GCM_TAG_LEN, UDP_ACK_LEN, UdpAuth, UdpBody, UdpKey,
    UdpPublish, decode_datagram, decode_udp_ack, decode_udp_body, encode_udp_ack, encode_udp_body,
    encode_udp_encrypted, encode_udp_plain, open_udp_block, parse_hex_key,
};

/// Size limits applied by the decoders before any payload is buffered.
///
/// The defaults are the reference server's built-in values; a server copies
/// the values from its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest `LEN` of a PUBLISH frame (topic + NUL + message), and of the
    /// message of a PUBLISH_REPL body.
    pub max_pub_size: u32,
    /// Largest `LEN` of a SUBSCRIBE/UNSUBSCRIBE frame (all topics and their
    /// separators) and of a PUBLISH_REPL topic.
    pub max_topic_length: u32,
    /// Largest number of `/` in a normalised topic (N allows N+1 levels).
    pub max_topic_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pub_size: 1_100_000,
            max_topic_length: 1_000_000,
            max_topic_depth: 32,
        }
    }
}
