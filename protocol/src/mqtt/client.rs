//! The client's side of MQTT 3.1.1, for psrtd's bridges (an outgoing
//! connection to a broker): what a client sends — CONNECT (see
//! [`super::Connect::encode`]), SUBSCRIBE, PUBLISH, PUBACK, PINGREQ,
//! DISCONNECT — and [`decode_from_server`], which reads what a server may
//! send and refuses what only a client sends.
//!
//! ```text
//! server → client: CONNACK 20 02 SP RC | PUBLISH 3F RL .. | PUBACK 40 02 ID
//!                  PUBREC 50 | PUBREL 62 | PUBCOMP 70 | SUBACK 90 RL ID CODE+
//!                  UNSUBACK B0 02 ID | PINGRESP D0 00
//! client only:     CONNECT 10, SUBSCRIBE 82, UNSUBSCRIBE A2, PINGREQ C0,
//!                  DISCONNECT E0  → MqttError::WrongDirection
//! ```

use super::header::{put_bytes, put_header, put_u16};
use super::{MqttError, Packet, QoS, decode_packet, kind};
use crate::{DecodeError, Decoded};

/// PINGREQ, whole.
pub const PINGREQ: [u8; 2] = [kind::PINGREQ << 4, 0];
/// DISCONNECT, whole.
pub const DISCONNECT: [u8; 2] = [kind::DISCONNECT << 4, 0];

/// Decodes the packet at the front of `buf` as a client reads it: like
/// [`decode_packet`], but a packet type only a client sends (CONNECT,
/// SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT) is
/// [`MqttError::WrongDirection`], judged from byte 0 alone.
pub fn decode_from_server(
    buf: &[u8],
    max_remaining: u32,
) -> Result<Decoded<Packet<'_>>, DecodeError> {
    if let Some(&first) = buf.first() {
        let k = first >> 4;
        if matches!(
            k,
            kind::CONNECT | kind::SUBSCRIBE | kind::UNSUBSCRIBE | kind::PINGREQ | kind::DISCONNECT
        ) {
            return Err(MqttError::WrongDirection(k).into());
        }
    }
    decode_packet(buf, max_remaining)
}

/// Bytes a SUBSCRIBE for `filters` takes, fixed header included.
pub fn subscribe_len<'a>(filters: impl IntoIterator<Item = &'a str>) -> usize {
    let body = 2 + filters.into_iter().map(|f| 2 + f.len() + 1).sum::<usize>();
    1 + super::remaining_length_len(body) + body
}

/// Appends a SUBSCRIBE of every filter at `qos`. Each filter is written as
/// given (the caller validated it; a filter longer than 65535 bytes is
/// truncated at that length by the string writer's contract, so keep them
/// short).
pub fn encode_subscribe<'a>(
    packet_id: u16,
    filters: impl IntoIterator<Item = &'a str> + Clone,
    qos: QoS,
    out: &mut Vec<u8>,
) {
    let body = 2 + filters
        .clone()
        .into_iter()
        .map(|f| 2 + f.len() + 1)
        .sum::<usize>();
    put_header(out, kind::SUBSCRIBE << 4 | 0b0010, body);
    put_u16(out, packet_id);
    for f in filters {
        put_bytes(out, f.as_bytes());
        out.push(qos as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        Connect, ConnectCode, Filters, Protocol, Publish, encode_ack, encode_connack,
        encode_packet, encode_publish_header, encode_suback, encode_unsuback,
    };
    use super::*;

    const MAX: u32 = 1000;

    /// Every packet a server sends, back to back.
    fn server_stream() -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut lens = Vec::new();
        let mark = |out: &Vec<u8>, lens: &mut Vec<usize>| {
            lens.push(out.len() - lens.iter().sum::<usize>());
        };
        encode_connack(false, ConnectCode::Accepted, &mut out);
        mark(&out, &mut lens);
        encode_suback(7, &[1, 0, 0x80], &mut out);
        mark(&out, &mut lens);
        let p = Publish {
            dup: true,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "cmd/valve",
            packet_id: Some(9),
            payload: b"open",
        };
        encode_publish_header(&p, 4, &mut out);
        out.extend_from_slice(b"open");
        mark(&out, &mut lens);
        let big = vec![0x5au8; 200];
        let p0 = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: true,
            topic: "a",
            packet_id: None,
            payload: &big,
        };
        encode_packet(&Packet::Publish(p0), &mut out);
        mark(&out, &mut lens);
        for k in [kind::PUBACK, kind::PUBREC, kind::PUBREL, kind::PUBCOMP] {
            encode_ack(k, 65535, &mut out);
            mark(&out, &mut lens);
        }
        encode_unsuback(3, &mut out);
        mark(&out, &mut lens);
        encode_packet(&Packet::PingResp, &mut out);
        mark(&out, &mut lens);
        (out, lens)
    }

    #[test]
    fn every_server_packet_splits_at_every_index() {
        let (stream, lens) = server_stream();
        let mut rest = &stream[..];
        for len in lens {
            let Ok(Decoded::Frame { frame, len: got }) = decode_from_server(rest, MAX) else {
                panic!("{:02x?}", &rest[..len]);
            };
            assert_eq!(got, len, "{frame:?}");
            for cut in 0..len {
                assert!(
                    matches!(decode_from_server(&rest[..cut], MAX),
                        Ok(Decoded::Incomplete { need }) if need >= 1 && need <= len - cut),
                    "{frame:?} cut at {cut}"
                );
            }
            let mut again = Vec::new();
            encode_packet(&frame, &mut again);
            assert_eq!(again, rest[..len]);
            rest = &rest[len..];
        }
        assert!(rest.is_empty());
    }

    #[test]
    fn client_packets_are_refused_from_a_server() {
        let connect = Connect {
            protocol: Protocol::V311,
            clean_session: true,
            keep_alive: 30,
            client_id: "psrtd",
            will: None,
            username: None,
            password: None,
        };
        let mut c = Vec::new();
        connect.encode(&mut c);
        let mut s = Vec::new();
        encode_subscribe(1, ["a/#"], QoS::AtLeastOnce, &mut s);
        let mut u = Vec::new();
        let mut raw = Vec::new();
        Filters::encode_unsubscribe(&["a"], &mut raw);
        encode_packet(
            &Packet::Unsubscribe {
                packet_id: 2,
                filters: Filters::new(&raw, false).unwrap(),
            },
            &mut u,
        );
        for (bytes, k) in [
            (&c[..], kind::CONNECT),
            (&s[..], kind::SUBSCRIBE),
            (&u[..], kind::UNSUBSCRIBE),
            (&PINGREQ[..], kind::PINGREQ),
            (&DISCONNECT[..], kind::DISCONNECT),
        ] {
            // Refused from the first byte on.
            for cut in 1..=bytes.len() {
                assert_eq!(
                    decode_from_server(&bytes[..cut], MAX),
                    Err(DecodeError::Mqtt(MqttError::WrongDirection(k))),
                    "{bytes:02x?} cut {cut}"
                );
            }
            // The direction-blind decoder still reads them.
            assert!(matches!(
                decode_packet(bytes, MAX),
                Ok(Decoded::Frame { .. })
            ));
        }
        assert_eq!(
            decode_from_server(&[], MAX),
            Ok(Decoded::Incomplete { need: 2 })
        );
    }

    #[test]
    fn subscribe_encoder_byte_table_and_length() {
        let mut s = Vec::new();
        encode_subscribe(10, ["cmd/#", "x"], QoS::AtLeastOnce, &mut s);
        assert_eq!(s, b"\x82\x0e\x00\x0a\x00\x05cmd/#\x01\x00\x01x\x01");
        assert_eq!(subscribe_len(["cmd/#", "x"]), s.len());
        let Ok(Decoded::Frame {
            frame: Packet::Subscribe { packet_id, filters },
            len,
        }) = decode_packet(&s, MAX)
        else {
            panic!()
        };
        assert_eq!((packet_id, len), (10, s.len()));
        let got: Vec<_> = filters.iter().collect();
        assert_eq!(got, [("cmd/#", QoS::AtLeastOnce), ("x", QoS::AtLeastOnce)]);
        // A long filter list needs a two-byte remaining length.
        let many: Vec<String> = (0..40).map(|i| format!("plant/{i}/#")).collect();
        let mut s = Vec::new();
        encode_subscribe(1, many.iter().map(String::as_str), QoS::AtMostOnce, &mut s);
        assert_eq!(subscribe_len(many.iter().map(String::as_str)), s.len());
        assert!(matches!(decode_packet(&s, MAX), Ok(Decoded::Frame { len, .. }) if len == s.len()));
        assert_eq!(PINGREQ, [0xc0, 0]);
    }

    #[test]
    fn oversize_and_malformed_server_input() {
        // A PUBLISH announcing more than the limit: refused before its body.
        assert_eq!(
            decode_from_server(b"\x30\xe9\x07", MAX),
            Err(DecodeError::FrameTooLarge {
                len: 1001,
                max: MAX
            })
        );
        // QoS 3, a fifth length byte, a reserved CONNACK code.
        assert!(decode_from_server(b"\x36\x00", MAX).is_err());
        assert!(decode_from_server(b"\x30\xff\xff\xff\xff\x01", u32::MAX).is_err());
        assert!(decode_from_server(b"\x20\x02\x00\x09", MAX).is_err());
    }
}
