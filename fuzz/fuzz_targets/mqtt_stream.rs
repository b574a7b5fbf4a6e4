//! MQTT, pipelined: `mqtt::decode_packet` over back-to-back packets must
//! never panic, never ask for more than the limit allows, call every prefix
//! of a packet `Incomplete`, and read back exactly what `encode_packet`
//! writes. Every PUBLISH topic and (UN)SUBSCRIBE filter also goes through
//! the topic rules: a valid filter's PSRT masks match exactly the topics
//! the filter matches under MQTT rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psrt_fuzz::{check_frame, encoded};
use psrt_protocol::mask_matches;
use psrt_protocol::mqtt::{
    Packet, decode_packet, encode_packet, filter_masks, filter_matches, validate_filter,
    validate_topic_name,
};

/// A small limit, so that both "too large" and complete packets are reachable.
const MAX_REMAINING: u32 = 300;
/// Fixed header (1 + 2 length bytes) + body.
const MAX_PACKET: usize = 3 + MAX_REMAINING as usize;

fn check_filter(filter: &str, topics: &[&str]) {
    if validate_filter(filter).is_err() {
        return;
    }
    let (mask, parent) = filter_masks(filter);
    for t in topics {
        let psrt = mask_matches(mask, t) || parent.is_some_and(|p| mask_matches(p, t));
        assert_eq!(psrt, filter_matches(filter, t), "{filter:?} {t:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut topics: Vec<&str> = vec!["", "a", "a/b", "/", "a//b"];
    while let Some(len) = check_frame(rest, MAX_PACKET, |b| {
        Ok(decode_packet(b, MAX_REMAINING)?.map(|p| encoded(|out| encode_packet(&p, out))))
    }) {
        if let Ok(psrt_protocol::Decoded::Frame { frame, .. }) = decode_packet(rest, MAX_REMAINING)
        {
            match frame {
                Packet::Publish(p) if validate_topic_name(p.topic).is_ok() => {
                    assert!(filter_matches(p.topic, p.topic));
                    topics.push(p.topic);
                }
                Packet::Subscribe { filters, .. } | Packet::Unsubscribe { filters, .. } => {
                    for (f, _) in filters.iter() {
                        check_filter(f, &topics);
                    }
                }
                _ => {}
            }
        }
        rest = &rest[len..];
    }
});
