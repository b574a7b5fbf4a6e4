//! Data socket, client side: `decode_data_frame` over back-to-back beacons and
//! pushed messages must never panic, must never ask for more than the limit
//! allows, must call every prefix of a frame `Incomplete`, and must read back
//! exactly what `encode_nop_beacon` / `encode_push` write.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psrt_fuzz::{check_stream, encoded};
use psrt_protocol::{
    DataFrame, Limits, PUSH_HEADER_LEN, decode_data_frame, encode_nop_beacon, encode_push,
    push_frame_len,
};

const LIMITS: Limits = Limits {
    max_pub_size: 300,
    max_topic_length: 100,
    max_topic_depth: 8,
};

fuzz_target!(|data: &[u8]| {
    check_stream(data, PUSH_HEADER_LEN + 300, |b| {
        Ok(decode_data_frame(b, &LIMITS)?.map(|f| {
            encoded(|out| match f {
                DataFrame::Nop => encode_nop_beacon(out),
                DataFrame::Message(push) => {
                    encode_push(&push, out);
                    assert_eq!(
                        out.len(),
                        push_frame_len(push.topic.len(), push.message.len())
                    );
                }
            })
        }))
    });
});
