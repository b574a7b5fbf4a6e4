//! SUBSCRIBE/SUBACK and UNSUBSCRIBE/UNSUBACK.
//!
//! ```text
//! SUBSCRIBE    82 RL | ID | (FILTER QOS)+        QOS: 00..02, upper bits 0
//! SUBACK       90 RL | ID | CODE+                CODE: 00, 01, 02 or 80 (failure)
//! UNSUBSCRIBE  A2 RL | ID | FILTER+
//! UNSUBACK     B0 02 | ID
//! ```

use super::header::{Reader, put_header, put_u16};
use super::{MqttError, QoS, kind};
use crate::DecodeError;

/// The filters of a SUBSCRIBE (each with its requested QoS) or an
/// UNSUBSCRIBE, validated at decode time and read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filters<'a> {
    raw: &'a [u8],
    with_qos: bool,
}

impl<'a> Filters<'a> {
    /// Validates a payload: at least one filter, each a string (followed by
    /// a QoS byte with reserved bits clear when `with_qos`).
    pub(crate) fn decode(raw: &'a [u8], with_qos: bool) -> Result<Self, DecodeError> {
        if raw.is_empty() {
            return Err(MqttError::Empty.into());
        }
        let mut r = Reader::new(raw);
        while !r.is_empty() {
            r.str("topic filter")?;
            if with_qos {
                let q = r.u8("requested QoS")?;
                if q > 2 {
                    return Err(MqttError::BadQos.into());
                }
            }
        }
        Ok(Self { raw, with_qos })
    }

    /// Filters for a SUBSCRIBE: each `(filter, QoS)`, written as the wire
    /// has them (for a client, tests and the fuzz seeds).
    pub fn encode_subscribe(list: &[(&str, QoS)], out: &mut Vec<u8>) {
        for (f, q) in list {
            super::header::put_bytes(out, f.as_bytes());
            out.push(*q as u8);
        }
    }

    /// Filters for an UNSUBSCRIBE.
    pub fn encode_unsubscribe(list: &[&str], out: &mut Vec<u8>) {
        for f in list {
            super::header::put_bytes(out, f.as_bytes());
        }
    }

    /// Wraps encoded filters (from [`Filters::encode_subscribe`] or
    /// [`Filters::encode_unsubscribe`]) after validating them.
    pub fn new(raw: &'a [u8], with_qos: bool) -> Result<Self, DecodeError> {
        Self::decode(raw, with_qos)
    }

    /// Each filter and its requested QoS (`AtMostOnce` for UNSUBSCRIBE).
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, QoS)> + Clone + 'a {
        let mut r = Reader::new(self.raw);
        let with_qos = self.with_qos;
        core::iter::from_fn(move || {
            // Validated in `decode`: these reads cannot fail.
            let filter = r.str("topic filter").ok()?;
            let qos = if with_qos {
                QoS::from_bits(r.u8("requested QoS").ok()?).ok()?
            } else {
                QoS::AtMostOnce
            };
            Some((filter, qos))
        })
    }

    /// Number of filters.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Never true for a decoded packet (kept for the `len` convention).
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The payload as sent.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
}

/// SUBACK return codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubAckCode {
    /// Granted at this QoS.
    Granted(QoS),
    /// 0x80: refused.
    Failure,
}

impl From<SubAckCode> for u8 {
    fn from(c: SubAckCode) -> Self {
        match c {
            SubAckCode::Granted(q) => q as Self,
            SubAckCode::Failure => 0x80,
        }
    }
}

pub(crate) fn decode_codes(codes: &[u8]) -> Result<&[u8], DecodeError> {
    if codes.is_empty() {
        return Err(MqttError::Empty.into());
    }
    if let Some(&bad) = codes.iter().find(|&&c| !matches!(c, 0 | 1 | 2 | 0x80)) {
        return Err(MqttError::BadCode(bad).into());
    }
    Ok(codes)
}

/// Appends a SUBACK with one code per filter (bytes from [`SubAckCode`]).
pub fn encode_suback(packet_id: u16, codes: &[u8], out: &mut Vec<u8>) {
    put_header(out, kind::SUBACK << 4, 2 + codes.len());
    put_u16(out, packet_id);
    out.extend_from_slice(codes);
}

/// Appends an UNSUBACK.
pub fn encode_unsuback(packet_id: u16, out: &mut Vec<u8>) {
    let [hi, lo] = packet_id.to_be_bytes();
    out.extend_from_slice(&[kind::UNSUBACK << 4, 2, hi, lo]);
}
