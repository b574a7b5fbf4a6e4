//! Small, panic-free helpers for the fixed-width little-endian fields and
//! NUL-separated strings every frame is made of.

use crate::{DecodeError, Decoded};

/// Width of a `LEN` field (u32 LE).
pub(crate) const LEN_BYTES: usize = 4;

/// Reads a u32 LE at `at`, if the buffer has it.
pub(crate) fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(LEN_BYTES)?;
    let bytes: [u8; 4] = buf.get(at..end)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

/// Reads a u64 LE at `at`, if the buffer has it.
pub(crate) fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    let end = at.checked_add(8)?;
    let bytes: [u8; 8] = buf.get(at..end)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Decodes `LEN BODY` at the front of `buf` with `LEN <= max`, returning the
/// body. The limit is checked as soon as the four length bytes are visible,
/// before any body byte is required.
pub(crate) fn len_prefixed(buf: &[u8], max: u32) -> Result<Decoded<&[u8]>, DecodeError> {
    let Some(len) = u32_at(buf, 0) else {
        return Ok(Decoded::Incomplete {
            need: LEN_BYTES - buf.len(),
        });
    };
    if len > max {
        return Err(DecodeError::FrameTooLarge { len, max });
    }
    // len <= max <= u32::MAX, so the sum fits in usize on 32- and 64-bit targets.
    let total = LEN_BYTES.saturating_add(len as usize);
    match buf.get(LEN_BYTES..total) {
        Some(body) => Ok(Decoded::Frame {
            frame: body,
            len: total,
        }),
        None => Ok(Decoded::Incomplete {
            need: total - buf.len(),
        }),
    }
}

/// A length-prefixed `TOPIC 00 MESSAGE` body (`LEN <= max`), as PUBLISH
/// and PUBLISH_REPL_SEQ carry it: a non-empty UTF-8 topic, then everything
/// after the first NUL. `len` counts the length prefix.
pub(crate) fn topic_message(buf: &[u8], max: u32) -> Result<Decoded<(&str, &[u8])>, DecodeError> {
    let (body, len) = match len_prefixed(buf, max)? {
        Decoded::Frame { frame, len } => (frame, len),
        Decoded::Incomplete { need } => return Ok(Decoded::Incomplete { need }),
    };
    let (topic, message) = split_nul(body).ok_or(DecodeError::MissingNul)?;
    if topic.is_empty() {
        return Err(DecodeError::EmptyTopic);
    }
    Ok(Decoded::Frame {
        frame: (utf8(topic)?, message),
        len,
    })
}

/// Splits `bytes` at its first NUL: (before, after). `None` if there is none.
pub(crate) fn split_nul(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&b| b == 0)?;
    Some((bytes.get(..at)?, bytes.get(at + 1..)?))
}

/// UTF-8 check that maps to the codec's error.
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, DecodeError> {
    core::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8)
}

/// Appends a u32 LE length; `len` must already be known to fit.
pub(crate) fn put_len(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
}
