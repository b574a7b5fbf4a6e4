//! Stats endpoint request heads: `parse_head` must never panic, never accept
//! a head longer than 8 KiB, never call a head of 8 KiB or more incomplete
//! (the connection would buffer without bound), and report a head length
//! within the input. Every rejection is a 4xx.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psrt::server::fuzzing::{Head, MAX_HEAD, decode_base64, parse_head};

fuzz_target!(|data: &[u8]| {
    match parse_head(data) {
        Head::Get { len, .. } => assert!(len > 0 && len <= data.len() && len <= MAX_HEAD),
        Head::Incomplete => assert!(data.len() < MAX_HEAD),
        Head::Reject(status, _) => assert!(status.starts_with('4'), "{status}"),
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decode_base64(text);
    }
});
