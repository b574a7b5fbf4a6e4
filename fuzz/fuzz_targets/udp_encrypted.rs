//! Encrypted UDP: `decode_datagram` then `open_udp_block` under a fixed key,
//! with both ciphers, must never panic (a successful open yields the sealed
//! length minus the tag). Any input sealed as a body with
//! `encode_udp_encrypted` must decode and open to exactly that input under
//! either cipher; only an empty body is too short to send.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use psrt_fuzz::encoded;
use psrt_protocol::{
    Datagram, DecodeError, GCM_TAG_LEN, UdpAuth, UdpCipher, UdpKey, decode_datagram,
    decode_udp_body, encode_udp_encrypted, open_udp_block,
};

/// user1's key from the reference repository's keys.yml (the seeds use it).
static KEY: LazyLock<UdpKey> = LazyLock::new(|| {
    let hex = "26fd38045707792a9bc50f3761a58987c4a9362cf60389f341c28e37b1125d93";
    UdpKey::new(&psrt_protocol::parse_hex_key(hex).expect("64 hex characters"))
});
const NONCE: [u8; 12] = *b"psrt-fuzz-00";
const CIPHERS: [UdpCipher; 2] = [UdpCipher::Aes128Gcm, UdpCipher::Aes256Gcm];

fuzz_target!(|data: &[u8]| {
    let mut scratch = Vec::new();
    if let Ok(Datagram {
        auth: UdpAuth::Encrypted { nonce, sealed, .. },
        ..
    }) = decode_datagram(data)
    {
        for cipher in CIPHERS {
            if let Ok(body) = open_udp_block(&KEY, cipher, &nonce, sealed, &mut scratch) {
                assert_eq!(body.len(), sealed.len() - GCM_TAG_LEN);
                let _ = decode_udp_body(body);
            }
        }
    }
    for (cipher, key_id) in [(CIPHERS[0], ""), (CIPHERS[1], "user1")] {
        let datagram = encoded(|out| encode_udp_encrypted(&KEY, cipher, key_id, NONCE, data, out));
        match decode_datagram(&datagram) {
            Ok(Datagram {
                auth:
                    UdpAuth::Encrypted {
                        cipher: c,
                        key_id: k,
                        nonce,
                        sealed,
                    },
                body,
            }) => {
                assert_eq!((c, k, nonce, body), (cipher, key_id, NONCE, &[][..]));
                assert_eq!(
                    open_udp_block(&KEY, c, &nonce, sealed, &mut scratch),
                    Ok(data)
                );
            }
            other => assert!(
                data.is_empty() && other == Err(DecodeError::Truncated),
                "{other:?}"
            ),
        }
    }
});
