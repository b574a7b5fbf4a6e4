//! The contract every incremental `psrt-protocol` decoder keeps, checked in
//! one place so that each fuzz target stays a few lines long.
//!
//! For the frame at the front of a buffer:
//!
//! * decoding never panics;
//! * a complete frame has `0 < len <= buf.len()` and `len <= max_len`;
//! * every strict prefix of it is `Incomplete { need }` with
//!   `1 <= need <= len - cut` (never an error: "need more" is not a failure);
//! * re-encoding the decoded frame gives back exactly the `len` bytes used;
//! * an `Incomplete { need }` for the whole buffer has `1 <= need <= max_len`.
#![forbid(unsafe_code)]

use psrt_protocol::{DecodeError, Decoded};

/// A decoder followed by its encoder: decodes the frame at the front of a
/// buffer and returns the bytes the matching `encode_*` writes for it.
pub trait Reencode: Fn(&[u8]) -> Result<Decoded<Vec<u8>>, DecodeError> {}

impl<F: Fn(&[u8]) -> Result<Decoded<Vec<u8>>, DecodeError>> Reencode for F {}

/// Runs an `encode_*` function into a fresh buffer.
pub fn encoded(encode: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    encode(&mut out);
    out
}

/// Checks the contract for the frame at the front of `buf` and returns its
/// length, or `None` when `buf` starts with an error or an incomplete frame.
/// `max_len` is the largest frame the decoder's limits allow.
pub fn check_frame(buf: &[u8], max_len: usize, reencode: impl Reencode) -> Option<usize> {
    let (bytes, len) = match reencode(buf) {
        Ok(Decoded::Frame { frame, len }) => (frame, len),
        Ok(Decoded::Incomplete { need }) => {
            assert!((1..=max_len).contains(&need), "need {need} of {max_len}");
            return None;
        }
        Err(_) => return None,
    };
    assert!(len > 0 && len <= buf.len() && len <= max_len, "len {len}");
    for cut in 0..len {
        match reencode(&buf[..cut]) {
            Ok(Decoded::Incomplete { need }) => {
                assert!(
                    need >= 1 && need <= len - cut,
                    "cut {cut} of {len}: need {need}"
                );
            }
            other => panic!("cut {cut} of {len}: {other:?}"),
        }
    }
    assert_eq!(bytes, buf[..len], "re-encoded frame differs");
    Some(len)
}

/// Decodes frames back to back, as a pipelining peer sends them, checking
/// each one with [`check_frame`]. Returns the bytes consumed.
pub fn check_stream(data: &[u8], max_len: usize, reencode: impl Reencode) -> usize {
    let mut used = 0;
    while let Some(len) = check_frame(&data[used..], max_len, &reencode) {
        used += len;
    }
    used
}
