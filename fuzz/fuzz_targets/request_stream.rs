//! Control socket, pipelined: `decode_request` over back-to-back requests
//! (with the second-phase `decode_repl_body` right after a PUBLISH_REPL) must
//! never panic, must never ask for more than the limits allow, must call every
//! prefix of a request `Incomplete`, and must read back exactly what
//! `encode_request` / `encode_repl_body` write. `decode_reply` likewise over a
//! stream of one-byte replies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psrt_fuzz::{check_frame, check_stream, encoded};
use psrt_protocol::{
    Limits, Op, REPL_SEQ_HEADER_LEN, decode_repl_body, decode_reply, decode_request,
    encode_repl_body, encode_reply, encode_request,
};

/// Small limits, so that both "too large" and complete frames are reachable.
const LIMITS: Limits = Limits {
    max_pub_size: 300,
    max_topic_length: 100,
    max_topic_depth: 8,
};
/// The largest request: PUBLISH_REPL_SEQ, `13 PRIO TIMESTAMP SEQ LEN` + body
/// (a PUBLISH is `01 PRIO LEN` + body, 16 bytes less).
const MAX_REQUEST: usize = 1 + REPL_SEQ_HEADER_LEN + LIMITS.max_pub_size as usize;
/// `PRIO TIMESTAMP LEN` + message.
const MAX_REPL_BODY: usize = 13 + LIMITS.max_pub_size as usize;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Some(len) = check_frame(rest, MAX_REQUEST, |b| {
        Ok(decode_request(b, &LIMITS)?.map(|r| encoded(|out| encode_request(&r, out))))
    }) {
        let op = rest[0];
        rest = &rest[len..];
        if op != u8::from(Op::PublishRepl) {
            continue;
        }
        let Some(len) = check_frame(rest, MAX_REPL_BODY, |b| {
            Ok(decode_repl_body(b, &LIMITS)?.map(|r| encoded(|out| encode_repl_body(&r, out))))
        }) else {
            break;
        };
        rest = &rest[len..];
    }
    check_stream(data, 1, |b| {
        Ok(decode_reply(b)?.map(|r| encoded(|out| encode_reply(r, out))))
    });
});
