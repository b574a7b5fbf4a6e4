//! Data hello: `decode_data_hello` must never panic, must call every prefix
//! of the 33-byte hello `Incomplete`, and must read back exactly what
//! `encode_data_hello` writes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psrt_fuzz::{check_frame, encoded};
use psrt_protocol::{DATA_HELLO_LEN, decode_data_hello, encode_data_hello};

fuzz_target!(|data: &[u8]| {
    check_frame(data, DATA_HELLO_LEN, |b| {
        Ok(decode_data_hello(b).map(|h| encoded(|out| encode_data_hello(&h, out))))
    });
});
