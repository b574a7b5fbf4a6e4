//! PUBLISH and the four two-byte acknowledgements.
//!
//! ```text
//! PUBLISH  3F RL | TOPIC | [PACKET-ID if QoS > 0] | PAYLOAD (the rest)
//!          F: 8 DUP, 6 QoS (two bits), 1 RETAIN
//! PUBACK   40 02 ID      PUBREC 50 02 ID      PUBREL 62 02 ID      PUBCOMP 70 02 ID
//! ```

use super::header::{Reader, put_bytes, put_header, put_u16, remaining_length_len};
use super::{MqttError, QoS, kind};
use crate::DecodeError;

/// A PUBLISH packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish<'a> {
    /// Redelivery of an earlier attempt (QoS > 0 only).
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Topic name as sent (the codec does not judge it: see
    /// [`super::validate_topic_name`]).
    pub topic: &'a str,
    /// Present exactly when QoS > 0; never 0.
    pub packet_id: Option<u16>,
    /// The application message.
    pub payload: &'a [u8],
}

pub(crate) fn decode_publish(flags: u8, body: &[u8]) -> Result<Publish<'_>, DecodeError> {
    let qos = QoS::from_bits((flags >> 1) & 0b11)?;
    let dup = flags & 0b1000 != 0;
    if dup && qos == QoS::AtMostOnce {
        return Err(MqttError::DupAtQos0.into());
    }
    let mut r = Reader::new(body);
    let topic = r.str("topic name")?;
    let packet_id = match qos {
        QoS::AtMostOnce => None,
        _ => Some(r.packet_id()?),
    };
    Ok(Publish {
        dup,
        qos,
        retain: flags & 1 != 0,
        topic,
        packet_id,
        payload: r.rest(),
    })
}

/// Length of a PUBLISH with this topic, QoS and payload length, fixed
/// header included, and of its header alone (everything but the payload).
pub fn publish_header_len(topic_len: usize, qos: QoS, payload_len: usize) -> (usize, usize) {
    let id = if qos == QoS::AtMostOnce { 0 } else { 2 };
    let remaining = 2 + topic_len + id + payload_len;
    let header = 1 + remaining_length_len(remaining) + 2 + topic_len + id;
    (header + payload_len, header)
}

/// Appends everything of a PUBLISH but its payload (`payload_len` bytes
/// the caller appends, or queues from a shared buffer). `p.payload` is
/// not read. A packet id is written only for QoS > 0 (0 if missing).
pub fn encode_publish_header(p: &Publish<'_>, payload_len: usize, out: &mut Vec<u8>) {
    let mut first = kind::PUBLISH << 4 | (p.qos as u8) << 1;
    if p.dup && p.qos != QoS::AtMostOnce {
        first |= 0b1000;
    }
    if p.retain {
        first |= 1;
    }
    let id = if p.qos == QoS::AtMostOnce { 0 } else { 2 };
    put_header(out, first, 2 + p.topic.len() + id + payload_len);
    put_bytes(out, p.topic.as_bytes());
    if p.qos != QoS::AtMostOnce {
        put_u16(out, p.packet_id.unwrap_or(0));
    }
}

/// Appends PUBACK, PUBREC, PUBREL or PUBCOMP (`packet_kind`, see
/// [`super::kind`]) for `packet_id`.
pub fn encode_ack(packet_kind: u8, packet_id: u16, out: &mut Vec<u8>) {
    let flags = if packet_kind == kind::PUBREL {
        0b0010
    } else {
        0
    };
    let [hi, lo] = packet_id.to_be_bytes();
    out.extend_from_slice(&[packet_kind << 4 | flags, 2, hi, lo]);
}
