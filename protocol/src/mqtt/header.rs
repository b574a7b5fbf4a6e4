//! The MQTT fixed header (packet type, flags, remaining length) and the
//! field readers and writers every packet body is made of: big-endian
//! `u16`, length-prefixed UTF-8 strings and binary data.
//!
//! ```text
//! +-----------+-----------+------------------------+------------------+
//! | type<<4   | flags     | remaining length 1..4  | body (RL bytes)  |
//! +-----------+-----------+------------------------+------------------+
//!       byte 0 (4 + 4 bits)   7 bits per byte, low first; bit 7 = more
//! ```

use super::MqttError;
use crate::{DecodeError, Decoded};

/// Largest remaining length the four-byte encoding can carry.
pub const MAX_REMAINING_LENGTH: u32 = 268_435_455;

/// The fixed header of a complete packet: its first byte, where its body
/// starts and how long the whole packet is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    /// Byte 0: packet type (high nibble) and flags (low nibble).
    pub first: u8,
    /// Bytes before the body (1 + length bytes).
    pub body_at: usize,
    /// The whole packet.
    pub total: usize,
}

/// Reads the fixed header at the front of `buf`. The remaining length is
/// checked against `max_remaining` as soon as its last byte is visible, so
/// `Incomplete { need }` never asks for more than the limit allows.
/// Non-minimal length encodings and a fifth length byte are malformed.
pub(crate) fn decode_header(
    buf: &[u8],
    max_remaining: u32,
) -> Result<Decoded<Header>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(Decoded::Incomplete { need: 2 });
    };
    check_first_byte(first)?;
    let mut value: u32 = 0;
    for i in 0..4usize {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(Decoded::Incomplete { need: 1 });
        };
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 != 0 {
            continue;
        }
        if i > 0 && b == 0 {
            return Err(MqttError::BadRemainingLength.into());
        }
        if value > max_remaining {
            return Err(DecodeError::FrameTooLarge {
                len: value,
                max: max_remaining,
            });
        }
        let body_at = 2 + i;
        // value <= max_remaining <= u32::MAX: fits in usize.
        let total = body_at.saturating_add(value as usize);
        if buf.len() < total {
            return Ok(Decoded::Incomplete {
                need: total - buf.len(),
            });
        }
        return Ok(Decoded::Frame {
            frame: Header {
                first,
                body_at,
                total,
            },
            len: total,
        });
    }
    Err(MqttError::BadRemainingLength.into())
}

/// The packet type and its flags, judged as soon as byte 0 is visible (so
/// a stray protocol on the port fails at once): types 0 and 15 are
/// reserved; PUBREL, SUBSCRIBE and UNSUBSCRIBE need flags `0010`, other
/// types but PUBLISH `0000`; a PUBLISH may not ask for QoS 3.
fn check_first_byte(first: u8) -> Result<(), DecodeError> {
    let (kind, flags) = (first >> 4, first & 0x0f);
    let expected = match kind {
        0 | 15 => return Err(MqttError::ReservedType(kind).into()),
        3 if flags & 0b0110 == 0b0110 => return Err(MqttError::BadQos.into()),
        3 => flags,
        6 | 8 | 10 => 0b0010,
        _ => 0,
    };
    if flags != expected {
        return Err(MqttError::BadFlags { kind, flags }.into());
    }
    Ok(())
}

/// Bytes the remaining-length field takes for `len`.
pub fn remaining_length_len(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Appends the fixed header: `first` then `len` as a remaining length
/// (callers keep `len <= MAX_REMAINING_LENGTH`; larger is clamped).
pub(crate) fn put_header(out: &mut Vec<u8>, first: u8, len: usize) {
    out.push(first);
    let mut n = len.min(MAX_REMAINING_LENGTH as usize);
    loop {
        let byte = (n % 128) as u8;
        n /= 128;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Appends a big-endian `u16`.
pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a length-prefixed string or binary field (callers keep it
/// within 65535 bytes; longer is cut).
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len().min(usize::from(u16::MAX));
    put_u16(out, len as u16);
    out.extend_from_slice(bytes.get(..len).unwrap_or_default());
}

/// A cursor over a complete packet body: running past its end is a
/// malformed packet, never "need more bytes".
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let (&b, rest) = self.buf.split_first().ok_or(MqttError::Truncated(what))?;
        self.buf = rest;
        Ok(b)
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let hi = self.u8(what)?;
        let lo = self.u8(what)?;
        Ok(u16::from_be_bytes([hi, lo]))
    }

    /// A non-zero packet identifier.
    pub(crate) fn packet_id(&mut self) -> Result<u16, DecodeError> {
        match self.u16("packet identifier")? {
            0 => Err(MqttError::ZeroPacketId.into()),
            id => Ok(id),
        }
    }

    pub(crate) fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u16(what)?);
        if self.buf.len() < len {
            return Err(MqttError::Truncated(what).into());
        }
        let (field, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(field)
    }

    /// A UTF-8 string without U+0000.
    pub(crate) fn str(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        utf8(self.bytes(what)?)
    }

    /// Everything left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// The body must be used up.
    pub(crate) fn end(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(MqttError::TrailingBytes.into())
        }
    }
}

/// MQTT strings are UTF-8 without U+0000.
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, DecodeError> {
    let s = core::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8)?;
    if s.contains('\0') {
        return Err(MqttError::NulInString.into());
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(bytes: &[u8], max: u32) -> Result<Decoded<(usize, usize)>, DecodeError> {
        decode_header(bytes, max).map(|d| d.map(|h| (h.body_at, h.total)))
    }

    #[test]
    fn remaining_length_table() {
        // (value, encoding) from the standard's table 2.4, and its edges.
        let table: [(usize, &[u8]); 8] = [
            (0, &[0x00]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xff, 0xff, 0x7f]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xff, 0xff, 0xff, 0x7f]),
        ];
        for (value, enc) in table {
            let mut out = Vec::new();
            put_header(&mut out, 0x30, value);
            assert_eq!(&out[1..], enc, "{value}");
            assert_eq!(remaining_length_len(value), enc.len());
            let got = header(&out, MAX_REMAINING_LENGTH).unwrap();
            let want_total = 1 + enc.len() + value;
            if value == 0 {
                assert_eq!(
                    got,
                    Decoded::Frame {
                        frame: (2, 2),
                        len: 2
                    }
                );
            } else {
                assert_eq!(got, Decoded::Incomplete { need: value });
            }
            assert_eq!(want_total - out.len(), value);
        }
    }

    #[test]
    fn limits_and_malformed_lengths() {
        // Over the limit: refused on the length alone, no body needed.
        assert_eq!(
            header(&[0x30, 0x81, 0x01], 128),
            Err(DecodeError::FrameTooLarge { len: 129, max: 128 })
        );
        assert_eq!(
            header(&[0x30, 0x80, 0x01], 128),
            Ok(Decoded::Incomplete { need: 128 })
        );
        // A fifth length byte, and non-minimal encodings.
        assert_eq!(
            header(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], u32::MAX),
            Err(MqttError::BadRemainingLength.into())
        );
        assert_eq!(
            header(&[0x30, 0x80, 0x00], u32::MAX),
            Err(MqttError::BadRemainingLength.into())
        );
        assert_eq!(header(&[], 10), Ok(Decoded::Incomplete { need: 2 }));
        assert_eq!(header(&[0x30], 10), Ok(Decoded::Incomplete { need: 1 }));
        assert_eq!(
            header(&[0x30, 0x80], 10_000),
            Ok(Decoded::Incomplete { need: 1 })
        );
    }

    #[test]
    fn strings() {
        assert_eq!(utf8(b"a/b"), Ok("a/b"));
        assert_eq!(utf8(b"a\0b"), Err(MqttError::NulInString.into()));
        assert_eq!(utf8(b"\xff"), Err(DecodeError::NotUtf8));
        let mut r = Reader::new(b"\x00\x02hi\x00\x05ab");
        assert_eq!(r.str("s"), Ok("hi"));
        assert_eq!(r.str("t"), Err(MqttError::Truncated("t").into()));
    }
}
