//! MQTT, the client's side (psrtd's bridges): `mqtt::decode_from_server`
//! over back-to-back packets from a broker must never panic, never ask for
//! more than the limit allows, call every prefix of a packet `Incomplete`,
//! read back exactly what `encode_packet` writes, and never accept a packet
//! type only a client sends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psrt_fuzz::{check_frame, encoded};
use psrt_protocol::Decoded;
use psrt_protocol::mqtt::{Packet, decode_from_server, encode_packet};

/// A small limit, so that both "too large" and complete packets are reachable.
const MAX_REMAINING: u32 = 300;
/// Fixed header (1 + 2 length bytes) + body.
const MAX_PACKET: usize = 3 + MAX_REMAINING as usize;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Some(len) = check_frame(rest, MAX_PACKET, |b| {
        Ok(decode_from_server(b, MAX_REMAINING)?.map(|p| encoded(|out| encode_packet(&p, out))))
    }) {
        if let Ok(Decoded::Frame { frame, .. }) = decode_from_server(rest, MAX_REMAINING) {
            assert!(
                !matches!(
                    frame,
                    Packet::Connect(_)
                        | Packet::Subscribe { .. }
                        | Packet::Unsubscribe { .. }
                        | Packet::PingReq
                        | Packet::Disconnect
                ),
                "a client-only packet from a server: {frame:?}"
            );
        }
        rest = &rest[len..];
    }
});
