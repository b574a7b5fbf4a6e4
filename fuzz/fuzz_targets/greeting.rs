//! Greetings: `decode_greeting` and `decode_greeting_reply` must never panic,
//! must call every prefix of a greeting `Incomplete`, and must read back
//! exactly what `encode_greeting` / `encode_greeting_reply` write.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psrt_fuzz::{check_frame, encoded};
use psrt_protocol::{
    GREETING_LEN, GREETING_REPLY_LEN, decode_greeting, decode_greeting_reply, encode_greeting,
    encode_greeting_reply,
};

fuzz_target!(|data: &[u8]| {
    check_frame(data, GREETING_LEN, |b| {
        Ok(decode_greeting(b)?.map(|g| encoded(|out| encode_greeting(g, out))))
    });
    check_frame(data, GREETING_REPLY_LEN, |b| {
        Ok(decode_greeting_reply(b)?.map(|k| encoded(|out| encode_greeting_reply(k, out))))
    });
});
