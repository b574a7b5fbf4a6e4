//! MQTT 3.1.1 (and 3.1) control packets: [`decode_packet`] reads any of the
//! fourteen packet types from the front of a buffer, [`encode_packet`]
//! writes one back byte for byte, and a few `encode_*` helpers build the
//! packets a server sends without a [`Packet`] value. Pure like the rest of
//! the crate: no I/O, no allocation, and the remaining length is checked
//! against the caller's limit before any body byte is needed.
//!
//! | file | owns |
//! |---|---|
//! | `header` | fixed header, remaining length, field readers/writers |
//! | `client` | the client's side: decoding what a server sends, SUBSCRIBE, PINGREQ |
//! | `connect` | CONNECT, CONNACK |
//! | `publish` | PUBLISH and its acknowledgements |
//! | `subscribe` | SUBSCRIBE/SUBACK, UNSUBSCRIBE/UNSUBACK |
//! | `topic` | topic-name and filter rules, MQTT matching, the PSRT masks of a filter |
//!
//! Multi-byte integers are big-endian (unlike PSRT); strings are a `u16`
//! length and UTF-8 without U+0000. What the decoder refuses is a
//! [`MqttError`] inside [`DecodeError::Mqtt`]: the server closes the
//! connection on any of them (the standard's rule for a malformed packet).

mod client;
mod connect;
mod header;
mod publish;
mod subscribe;
mod topic;

#[cfg(test)]
mod tests;

use core::fmt;

pub use client::{DISCONNECT, PINGREQ, decode_from_server, encode_subscribe, subscribe_len};
pub use connect::{ConnAck, Connect, ConnectCode, Protocol, Will, encode_connack};
pub use header::{MAX_REMAINING_LENGTH, remaining_length_len};
pub use publish::{Publish, encode_ack, encode_publish_header, publish_header_len};
pub use subscribe::{Filters, SubAckCode, encode_suback, encode_unsuback};
pub use topic::{
    MqttTopicError, filter_masks, filter_matches, validate_filter, validate_topic_name,
};

use crate::{DecodeError, Decoded};
use header::{Reader, decode_header, put_header};

/// Quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    /// At most once.
    AtMostOnce = 0,
    /// At least once (PUBACK).
    AtLeastOnce = 1,
    /// Exactly once (PUBREC, PUBREL, PUBCOMP).
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS of a two-bit field; 3 is malformed.
    pub fn from_bits(bits: u8) -> Result<Self, DecodeError> {
        match bits {
            0 => Ok(Self::AtMostOnce),
            1 => Ok(Self::AtLeastOnce),
            2 => Ok(Self::ExactlyOnce),
            _ => Err(MqttError::BadQos.into()),
        }
    }
}

/// Why bytes are not a valid MQTT packet. Small and `Copy` like
/// [`DecodeError`], which carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MqttError {
    /// Packet type 0 or 15.
    ReservedType(u8),
    /// Fixed-header flags that this packet type does not allow.
    BadFlags {
        /// The packet type.
        kind: u8,
        /// The flags sent.
        flags: u8,
    },
    /// A fifth length byte, or a length not in its shortest encoding.
    BadRemainingLength,
    /// QoS 3, or a QoS byte with reserved bits set.
    BadQos,
    /// A field runs past the end of the packet.
    Truncated(&'static str),
    /// Bytes left after the last field.
    TrailingBytes,
    /// A packet identifier of 0.
    ZeroPacketId,
    /// A string containing U+0000.
    NulInString,
    /// A CONNECT whose protocol name is neither `MQTT` nor `MQIsdp`.
    BadProtocolName,
    /// A CONNECT with a protocol level this codec does not speak (MQTT 5
    /// is 5): a server answers CONNACK 1 and closes.
    UnsupportedLevel(u8),
    /// A CONNECT with inconsistent or reserved flags.
    BadConnectFlags,
    /// A DUP flag on a QoS 0 PUBLISH.
    DupAtQos0,
    /// A SUBSCRIBE or UNSUBSCRIBE with no filter, or a SUBACK with no code.
    Empty,
    /// A reserved CONNACK or SUBACK byte.
    BadCode(u8),
    /// A packet type only the other side sends (a client reading CONNECT,
    /// SUBSCRIBE, UNSUBSCRIBE, PINGREQ or DISCONNECT from a server).
    WrongDirection(u8),
}

impl From<MqttError> for DecodeError {
    fn from(e: MqttError) -> Self {
        Self::Mqtt(e)
    }
}

impl fmt::Display for MqttError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReservedType(t) => write!(f, "reserved packet type {t}"),
            Self::BadFlags { kind, flags } => {
                write!(f, "flags {flags:#x} not allowed on packet type {kind}")
            }
            Self::BadRemainingLength => f.write_str("malformed remaining length"),
            Self::BadQos => f.write_str("invalid QoS"),
            Self::Truncated(what) => write!(f, "{what} runs past the end of the packet"),
            Self::TrailingBytes => f.write_str("bytes after the last field"),
            Self::ZeroPacketId => f.write_str("packet identifier 0"),
            Self::NulInString => f.write_str("string contains U+0000"),
            Self::BadProtocolName => f.write_str("protocol name is not MQTT"),
            Self::UnsupportedLevel(l) => write!(f, "unsupported protocol level {l}"),
            Self::BadConnectFlags => f.write_str("invalid CONNECT flags"),
            Self::DupAtQos0 => f.write_str("DUP set on a QoS 0 PUBLISH"),
            Self::Empty => f.write_str("no topic filter or return code"),
            Self::BadCode(c) => write!(f, "reserved return code {c:#04x}"),
            Self::WrongDirection(t) => write!(f, "packet type {t} is not sent by a server"),
        }
    }
}

/// Packet types (the high nibble of byte 0).
pub mod kind {
    /// CONNECT.
    pub const CONNECT: u8 = 1;
    /// CONNACK.
    pub const CONNACK: u8 = 2;
    /// PUBLISH.
    pub const PUBLISH: u8 = 3;
    /// PUBACK.
    pub const PUBACK: u8 = 4;
    /// PUBREC.
    pub const PUBREC: u8 = 5;
    /// PUBREL.
    pub const PUBREL: u8 = 6;
    /// PUBCOMP.
    pub const PUBCOMP: u8 = 7;
    /// SUBSCRIBE.
    pub const SUBSCRIBE: u8 = 8;
    /// SUBACK.
    pub const SUBACK: u8 = 9;
    /// UNSUBSCRIBE.
    pub const UNSUBSCRIBE: u8 = 10;
    /// UNSUBACK.
    pub const UNSUBACK: u8 = 11;
    /// PINGREQ.
    pub const PINGREQ: u8 = 12;
    /// PINGRESP.
    pub const PINGRESP: u8 = 13;
    /// DISCONNECT.
    pub const DISCONNECT: u8 = 14;
}

/// One MQTT control packet, borrowing its strings and payload from the
/// input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// C→S: the first packet of a connection.
    Connect(Connect<'a>),
    /// S→C: the answer to CONNECT.
    ConnAck(ConnAck),
    /// Either way: a message.
    Publish(Publish<'a>),
    /// QoS 1 acknowledgement.
    PubAck(u16),
    /// QoS 2, step 1 (received).
    PubRec(u16),
    /// QoS 2, step 2 (release).
    PubRel(u16),
    /// QoS 2, step 3 (complete).
    PubComp(u16),
    /// C→S: topic filters with their requested QoS.
    Subscribe {
        /// Packet identifier.
        packet_id: u16,
        /// At least one (filter, QoS).
        filters: Filters<'a>,
    },
    /// S→C: one return code per filter (`0`, `1`, `2` or `0x80`).
    SubAck {
        /// Packet identifier.
        packet_id: u16,
        /// The codes, in filter order (validated).
        codes: &'a [u8],
    },
    /// C→S: topic filters to remove.
    Unsubscribe {
        /// Packet identifier.
        packet_id: u16,
        /// At least one filter.
        filters: Filters<'a>,
    },
    /// S→C: UNSUBSCRIBE done.
    UnsubAck(u16),
    /// C→S: keep-alive.
    PingReq,
    /// S→C: keep-alive answer.
    PingResp,
    /// C→S: clean end of the connection (no will).
    Disconnect,
}

/// Decodes the packet at the front of `buf`. `max_remaining` bounds the
/// remaining length (everything after the fixed header); a larger one is
/// [`DecodeError::FrameTooLarge`] before any body byte is asked for.
pub fn decode_packet(buf: &[u8], max_remaining: u32) -> Result<Decoded<Packet<'_>>, DecodeError> {
    let header = match decode_header(buf, max_remaining)? {
        Decoded::Frame { frame, .. } => frame,
        Decoded::Incomplete { need } => return Ok(Decoded::Incomplete { need }),
    };
    let body = buf
        .get(header.body_at..header.total)
        .ok_or(MqttError::BadRemainingLength)?;
    let packet = decode_body(header.first, body)?;
    Ok(Decoded::Frame {
        frame: packet,
        len: header.total,
    })
}

fn decode_body(first: u8, body: &[u8]) -> Result<Packet<'_>, DecodeError> {
    // Type and flags were checked with the fixed header.
    let (kind, flags) = (first >> 4, first & 0x0f);
    if kind == kind::PUBLISH {
        return publish::decode_publish(flags, body).map(Packet::Publish);
    }
    let mut r = Reader::new(body);
    let packet = match kind {
        kind::CONNECT => Packet::Connect(connect::decode_connect(&mut r)?),
        kind::CONNACK => Packet::ConnAck(connect::decode_connack(&mut r)?),
        kind::PUBACK => Packet::PubAck(r.packet_id()?),
        kind::PUBREC => Packet::PubRec(r.packet_id()?),
        kind::PUBREL => Packet::PubRel(r.packet_id()?),
        kind::PUBCOMP => Packet::PubComp(r.packet_id()?),
        kind::SUBSCRIBE => Packet::Subscribe {
            packet_id: r.packet_id()?,
            filters: Filters::decode(r.rest(), true)?,
        },
        kind::SUBACK => Packet::SubAck {
            packet_id: r.packet_id()?,
            codes: subscribe::decode_codes(r.rest())?,
        },
        kind::UNSUBSCRIBE => Packet::Unsubscribe {
            packet_id: r.packet_id()?,
            filters: Filters::decode(r.rest(), false)?,
        },
        kind::UNSUBACK => Packet::UnsubAck(r.packet_id()?),
        kind::PINGREQ => Packet::PingReq,
        kind::PINGRESP => Packet::PingResp,
        _ => Packet::Disconnect,
    };
    r.end()?;
    Ok(packet)
}

/// Appends `packet` exactly as [`decode_packet`] reads it back.
pub fn encode_packet(packet: &Packet<'_>, out: &mut Vec<u8>) {
    match packet {
        Packet::Connect(c) => c.encode(out),
        Packet::ConnAck(a) => encode_connack(a.session_present, a.code, out),
        Packet::Publish(p) => {
            encode_publish_header(p, p.payload.len(), out);
            out.extend_from_slice(p.payload);
        }
        Packet::PubAck(id) => encode_ack(kind::PUBACK, *id, out),
        Packet::PubRec(id) => encode_ack(kind::PUBREC, *id, out),
        Packet::PubRel(id) => encode_ack(kind::PUBREL, *id, out),
        Packet::PubComp(id) => encode_ack(kind::PUBCOMP, *id, out),
        Packet::Subscribe { packet_id, filters } => {
            put_header(out, kind::SUBSCRIBE << 4 | 0b0010, 2 + filters.raw().len());
            header::put_u16(out, *packet_id);
            out.extend_from_slice(filters.raw());
        }
        Packet::SubAck { packet_id, codes } => encode_suback(*packet_id, codes, out),
        Packet::Unsubscribe { packet_id, filters } => {
            put_header(
                out,
                kind::UNSUBSCRIBE << 4 | 0b0010,
                2 + filters.raw().len(),
            );
            header::put_u16(out, *packet_id);
            out.extend_from_slice(filters.raw());
        }
        Packet::UnsubAck(id) => encode_unsuback(*id, out),
        Packet::PingReq => out.extend_from_slice(&[kind::PINGREQ << 4, 0]),
        Packet::PingResp => out.extend_from_slice(&PINGRESP),
        Packet::Disconnect => out.extend_from_slice(&[kind::DISCONNECT << 4, 0]),
    }
}

/// PINGRESP, whole.
pub const PINGRESP: [u8; 2] = [kind::PINGRESP << 4, 0];
