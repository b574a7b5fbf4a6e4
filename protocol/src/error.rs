//! The two outcomes every decoder shares: a complete frame or "need more
//! bytes" ([`Decoded`]), and the typed reasons a byte sequence is not PSRT
//! ([`DecodeError`]), MQTT's included.

use core::fmt;

/// Outcome of offering buffered bytes to a decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<T> {
    /// One complete frame; the caller drops `len` bytes from the front of its
    /// buffer. `len` is never 0 and never more than the buffer offered.
    Frame {
        /// The decoded frame, borrowing from the caller's buffer.
        frame: T,
        /// Bytes the frame occupies at the front of the buffer.
        len: usize,
    },
    /// The buffer is a valid prefix; at least `need` more bytes are required
    /// (`need` is at least 1 and never more than the limit allows).
    Incomplete {
        /// Bytes still missing before the decoder can make progress.
        need: usize,
    },
}

impl<T> Decoded<T> {
    /// Maps the frame, keeping `len` and `need` as they are.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Decoded<U> {
        match self {
            Self::Frame { frame, len } => Decoded::Frame {
                frame: f(frame),
                len,
            },
            Self::Incomplete { need } => Decoded::Incomplete { need },
        }
    }

    /// Accounts for `n` bytes of header that were consumed before the
    /// sub-decoder ran: adds `n` to `len` (a complete frame).
    pub(crate) fn after_header(self, n: usize) -> Self {
        match self {
            Self::Frame { frame, len } => Self::Frame {
                frame,
                len: len.saturating_add(n),
            },
            incomplete @ Self::Incomplete { .. } => incomplete,
        }
    }

    /// Returns the frame if one is complete.
    pub fn frame(self) -> Option<T> {
        match self {
            Self::Frame { frame, .. } => Some(frame),
            Self::Incomplete { .. } => None,
        }
    }
}

/// Why a byte sequence is not a valid PSRT frame. Small and `Copy`: it never
/// carries input bytes, only what a log line needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The two magic bytes are neither `EE AA` nor `EE AB`.
    BadMagic([u8; 2]),
    /// The third greeting byte is neither `00` (plain) nor `01` (TLS).
    UnknownComm(u8),
    /// A protocol version other than 1.
    BadVersion(u16),
    /// An op byte that is not valid where it was read.
    UnknownOp(u8),
    /// A reply byte that is not a known reply code.
    UnknownReply(u8),
    /// A UDP authentication type other than `00`, `02` or `03`.
    UnknownAuth(u8),
    /// A length prefix above the limit for this frame.
    FrameTooLarge {
        /// The length the peer announced.
        len: u32,
        /// The largest length allowed here.
        max: u32,
    },
    /// A NUL separator that must be present is missing.
    MissingNul,
    /// The topic is empty where a topic is required.
    EmptyTopic,
    /// A login, password or topic that is not UTF-8.
    NotUtf8,
    /// A datagram that ends before its fixed fields do.
    Truncated,
    /// A data-stream byte that is neither a NOP beacon nor a message frame.
    UnknownFrame(u8),
    /// AES-GCM authentication failed (wrong key, tampered or truncated block).
    BadSeal,
    /// Not a valid MQTT packet (see [`crate::mqtt`]).
    Mqtt(crate::mqtt::MqttError),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic([a, b]) => write!(f, "bad magic bytes {a:02x} {b:02x}"),
            Self::UnknownComm(c) => write!(f, "unknown communication mode {c:#04x}"),
            Self::BadVersion(v) => write!(f, "unsupported protocol version {v}"),
            Self::UnknownOp(op) => write!(f, "unknown or unexpected op {op:#04x}"),
            Self::UnknownReply(r) => write!(f, "unknown reply code {r:#04x}"),
            Self::UnknownAuth(a) => write!(f, "unknown UDP auth type {a:#04x}"),
            Self::FrameTooLarge { len, max } => {
                write!(f, "frame length {len} above the limit {max}")
            }
            Self::MissingNul => f.write_str("missing NUL separator"),
            Self::EmptyTopic => f.write_str("empty topic"),
            Self::NotUtf8 => f.write_str("text is not UTF-8"),
            Self::Truncated => f.write_str("datagram truncated"),
            Self::UnknownFrame(b) => write!(f, "unknown data frame type {b:#04x}"),
            Self::BadSeal => f.write_str("AES-GCM authentication failed"),
            Self::Mqtt(e) => write!(f, "MQTT: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}
