//! Login: `decode_login` must never panic, must refuse `LEN > 1024` before the
//! body arrives, must call every prefix of a login frame `Incomplete`, and
//! must read back exactly what `encode_login` writes. `decode_token` likewise
//! for the 32-byte token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psrt_fuzz::{check_frame, encoded};
use psrt_protocol::{MAX_LOGIN_FRAME_LEN, TOKEN_LEN, decode_login, decode_token, encode_login};

fuzz_target!(|data: &[u8]| {
    check_frame(data, 4 + MAX_LOGIN_FRAME_LEN as usize, |b| {
        Ok(decode_login(b)?.map(|l| encoded(|out| encode_login(&l, out))))
    });
    check_frame(data, TOKEN_LEN, |b| {
        Ok(decode_token(b).map(|t| t.0.to_vec()))
    });
});
