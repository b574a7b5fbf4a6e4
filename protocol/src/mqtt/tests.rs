//! Codec tests: byte tables for each packet, every packet split at every
//! index, round trips, and malformed input.

use super::*;

const MAX: u32 = 1000;

fn dec(bytes: &[u8]) -> Result<Decoded<Packet<'_>>, DecodeError> {
    decode_packet(bytes, MAX)
}

fn packet(bytes: &[u8]) -> Packet<'_> {
    match dec(bytes) {
        Ok(Decoded::Frame { frame, len }) if len == bytes.len() => frame,
        other => panic!("{bytes:02x?}: {other:?}"),
    }
}

fn mqtt_err(bytes: &[u8]) -> MqttError {
    match dec(bytes) {
        Err(DecodeError::Mqtt(e)) => e,
        other => panic!("{bytes:02x?}: {other:?}"),
    }
}

/// paho-mqtt's CONNECT: client id "c1", clean session, keep-alive 60,
/// user "u", password "pw", will "w/t" = "bye" at QoS 1 retained.
const PAHO_CONNECT: &[u8] =
    b"\x10\x1f\x00\x04MQTT\x04\xee\x00\x3c\x00\x02c1\x00\x03w/t\x00\x03bye\x00\x01u\x00\x02pw";

#[test]
fn connect_byte_table() {
    let Packet::Connect(c) = packet(PAHO_CONNECT) else {
        panic!()
    };
    assert_eq!(c.protocol, Protocol::V311);
    assert!(c.clean_session);
    assert_eq!(c.keep_alive, 60);
    assert_eq!(c.client_id, "c1");
    assert_eq!(
        c.will,
        Some(Will {
            topic: "w/t",
            message: b"bye",
            qos: QoS::AtLeastOnce,
            retain: true
        })
    );
    assert_eq!(c.username, Some("u"));
    assert_eq!(c.password, Some(&b"pw"[..]));
    // mosquitto_sub -V mqttv31: MQIsdp level 3, empty client id is fine here.
    let v31 = b"\x10\x0e\x00\x06MQIsdp\x03\x02\x00\x0a\x00\x00";
    let Packet::Connect(c) = packet(v31) else {
        panic!()
    };
    assert_eq!(
        (c.protocol, c.client_id, c.username),
        (Protocol::V31, "", None)
    );
}

#[test]
fn connect_refusals() {
    // MQTT 5 CONNECT: the level is reported so the server can answer 1.
    assert_eq!(
        mqtt_err(b"\x10\x0d\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x00"),
        MqttError::UnsupportedLevel(5)
    );
    assert_eq!(
        mqtt_err(b"\x10\x0c\x00\x04MQTX\x04\x02\x00\x3c\x00\x00"),
        MqttError::BadProtocolName
    );
    // Reserved flag; password without user name; will QoS without will.
    for flags in [0x03u8, 0x42, 0x0a, 0x22] {
        let mut p = b"\x10\x0c\x00\x04MQTT\x04".to_vec();
        p.extend_from_slice(&[flags, 0, 60, 0, 0]);
        assert_eq!(mqtt_err(&p), MqttError::BadConnectFlags, "{flags:#x}");
    }
    // Will QoS 3.
    assert_eq!(
        mqtt_err(b"\x10\x0c\x00\x04MQTT\x04\x1e\x00\x3c\x00\x00"),
        MqttError::BadQos
    );
    // Client id running past the end; a byte after the last field.
    assert_eq!(
        mqtt_err(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x05"),
        MqttError::Truncated("client identifier")
    );
    assert_eq!(
        mqtt_err(b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x00\x99"),
        MqttError::TrailingBytes
    );
    // Flags on a CONNECT.
    assert_eq!(
        mqtt_err(b"\x11\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"),
        MqttError::BadFlags { kind: 1, flags: 1 }
    );
}

#[test]
fn publish_byte_table() {
    let q0 = b"\x30\x08\x00\x03a/bxyz";
    assert_eq!(
        packet(q0),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "a/b",
            packet_id: None,
            payload: b"xyz",
        })
    );
    let q1 = b"\x3b\x07\x00\x01t\x12\x34hi";
    let Packet::Publish(p) = packet(q1) else {
        panic!()
    };
    assert_eq!((p.dup, p.qos, p.retain), (true, QoS::AtLeastOnce, true));
    assert_eq!((p.packet_id, p.payload), (Some(0x1234), &b"hi"[..]));
    // Empty payload; QoS 2.
    let Packet::Publish(p) = packet(b"\x34\x05\x00\x01t\x00\x07") else {
        panic!()
    };
    assert_eq!(
        (p.qos, p.packet_id, p.payload),
        (QoS::ExactlyOnce, Some(7), &b""[..])
    );
    assert_eq!(mqtt_err(b"\x36\x05\x00\x01t\x00\x07"), MqttError::BadQos);
    assert_eq!(mqtt_err(b"\x38\x03\x00\x01t"), MqttError::DupAtQos0);
    assert_eq!(
        mqtt_err(b"\x32\x05\x00\x01t\x00\x00"),
        MqttError::ZeroPacketId
    );
    assert_eq!(mqtt_err(b"\x30\x04\x00\x02a\x00"), MqttError::NulInString);
    assert_eq!(dec(b"\x30\x03\x00\x01\xff"), Err(DecodeError::NotUtf8));
    // The length is judged before the body: nothing else is needed.
    assert_eq!(
        dec(b"\x30\xe9\x07"),
        Err(DecodeError::FrameTooLarge {
            len: 1001,
            max: MAX
        })
    );
    assert_eq!(dec(b"\x30\xe8\x07"), Ok(Decoded::Incomplete { need: 1000 }));
}

#[test]
fn acks_pings_and_flags() {
    assert_eq!(packet(b"\x40\x02\x00\x01"), Packet::PubAck(1));
    assert_eq!(packet(b"\x50\x02\xff\xff"), Packet::PubRec(0xffff));
    assert_eq!(packet(b"\x62\x02\x00\x02"), Packet::PubRel(2));
    assert_eq!(packet(b"\x70\x02\x00\x03"), Packet::PubComp(3));
    assert_eq!(packet(b"\xb0\x02\x00\x04"), Packet::UnsubAck(4));
    assert_eq!(packet(b"\xc0\x00"), Packet::PingReq);
    assert_eq!(packet(b"\xd0\x00"), Packet::PingResp);
    assert_eq!(packet(b"\xe0\x00"), Packet::Disconnect);
    assert_eq!(
        mqtt_err(b"\x60\x02\x00\x02"),
        MqttError::BadFlags { kind: 6, flags: 0 }
    );
    assert_eq!(mqtt_err(b"\xc0\x01\x00"), MqttError::TrailingBytes);
    assert_eq!(
        mqtt_err(b"\x40\x01\x00"),
        MqttError::Truncated("packet identifier")
    );
    assert_eq!(mqtt_err(b"\x00\x00"), MqttError::ReservedType(0));
    assert_eq!(mqtt_err(b"\xf0\x00"), MqttError::ReservedType(15));
    assert_eq!(
        packet(b"\x20\x02\x01\x05"),
        Packet::ConnAck(ConnAck {
            session_present: true,
            code: ConnectCode::NotAuthorized
        })
    );
    assert_eq!(mqtt_err(b"\x20\x02\x00\x06"), MqttError::BadCode(6));
}

#[test]
fn subscribe_byte_table() {
    let sub = b"\x82\x0f\x00\x0a\x00\x03a/#\x01\x00\x04+/b/\x00";
    let Packet::Subscribe { packet_id, filters } = packet(sub) else {
        panic!()
    };
    assert_eq!(packet_id, 10);
    let got: Vec<_> = filters.iter().collect();
    assert_eq!(got, [("a/#", QoS::AtLeastOnce), ("+/b/", QoS::AtMostOnce)]);
    assert_eq!(filters.len(), 2);
    assert_eq!(mqtt_err(b"\x82\x02\x00\x01"), MqttError::Empty);
    assert_eq!(
        mqtt_err(b"\x82\x06\x00\x01\x00\x01a\x04"),
        MqttError::BadQos
    );
    assert_eq!(
        mqtt_err(b"\x82\x05\x00\x01\x00\x01a"),
        MqttError::Truncated("requested QoS")
    );
    let unsub = b"\xa2\x08\x00\x02\x00\x01a\x00\x01b";
    let Packet::Unsubscribe { packet_id, filters } = packet(unsub) else {
        panic!()
    };
    assert_eq!(packet_id, 2);
    let got: Vec<_> = filters.iter().map(|(f, _)| f).collect();
    assert_eq!(got, ["a", "b"]);
    assert_eq!(
        packet(b"\x90\x04\x00\x0a\x01\x80"),
        Packet::SubAck {
            packet_id: 10,
            codes: &[1, 0x80]
        }
    );
    assert_eq!(mqtt_err(b"\x90\x03\x00\x0a\x03"), MqttError::BadCode(3));
}

/// One of every packet type, built with the encoders.
fn every_packet(store: &mut Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut sub = Vec::new();
    Filters::encode_subscribe(
        &[("a/#", QoS::AtLeastOnce), ("b", QoS::ExactlyOnce)],
        &mut sub,
    );
    let mut unsub = Vec::new();
    Filters::encode_unsubscribe(&["a/#", "+"], &mut unsub);
    store.push(sub);
    store.push(unsub);
    let (sub, unsub) = (&store[0], &store[1]);
    let big = vec![0xa5u8; 300];
    let packets = [
        Packet::Connect(Connect {
            protocol: Protocol::V311,
            clean_session: false,
            keep_alive: 30,
            client_id: "dev-1",
            will: Some(Will {
                topic: "dev/1/status",
                message: b"offline",
                qos: QoS::ExactlyOnce,
                retain: false,
            }),
            username: Some("user"),
            password: Some(b"\0secret"),
        }),
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: ConnectCode::Accepted,
        }),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "t",
            packet_id: None,
            payload: &big,
        }),
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "a/b/c",
            packet_id: Some(65535),
            payload: b"",
        }),
        Packet::PubAck(1),
        Packet::PubRec(2),
        Packet::PubRel(3),
        Packet::PubComp(4),
        Packet::Subscribe {
            packet_id: 5,
            filters: Filters::new(sub, true).unwrap(),
        },
        Packet::SubAck {
            packet_id: 5,
            codes: &[1, 0x80],
        },
        Packet::Unsubscribe {
            packet_id: 6,
            filters: Filters::new(unsub, false).unwrap(),
        },
        Packet::UnsubAck(6),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect,
    ];
    packets
        .iter()
        .map(|p| {
            let mut v = Vec::new();
            encode_packet(p, &mut v);
            v
        })
        .collect()
}

#[test]
fn every_packet_splits_and_round_trips() {
    let mut store = Vec::new();
    let encoded = every_packet(&mut store);
    let stream: Vec<u8> = encoded.concat();
    let mut rest = &stream[..];
    for want in &encoded {
        let Ok(Decoded::Frame { frame, len }) = dec(rest) else {
            panic!("{:?}", dec(rest));
        };
        assert_eq!(len, want.len());
        for cut in 0..len {
            assert!(
                matches!(dec(&rest[..cut]), Ok(Decoded::Incomplete { need }) if need >= 1 && need <= len - cut),
                "{frame:?} cut at {cut}: {:?}",
                dec(&rest[..cut])
            );
        }
        let mut again = Vec::new();
        encode_packet(&frame, &mut again);
        assert_eq!(again, want[..]);
        rest = &rest[len..];
    }
    assert!(rest.is_empty());
}

#[test]
fn publish_header_helpers_agree_with_the_encoder() {
    for (topic, qos, payload_len) in [
        ("a", QoS::AtMostOnce, 0usize),
        ("a/b", QoS::AtLeastOnce, 200),
        ("x", QoS::AtMostOnce, 20_000),
    ] {
        let p = Publish {
            dup: false,
            qos,
            retain: false,
            topic,
            packet_id: (qos != QoS::AtMostOnce).then_some(9),
            payload: b"",
        };
        let mut out = Vec::new();
        encode_publish_header(&p, payload_len, &mut out);
        let (total, header) = publish_header_len(topic.len(), qos, payload_len);
        assert_eq!(out.len(), header);
        out.resize(total, 0);
        let Packet::Publish(back) = decode_packet(&out, MAX_REMAINING_LENGTH)
            .unwrap()
            .frame()
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (back.topic, back.qos, back.payload.len()),
            (topic, qos, payload_len)
        );
    }
    let mut ack = Vec::new();
    encode_ack(kind::PUBREL, 0x0102, &mut ack);
    assert_eq!(ack, [0x62, 2, 1, 2]);
    let mut c = Vec::new();
    encode_connack(false, ConnectCode::NotAuthorized, &mut c);
    assert_eq!(c, [0x20, 2, 0, 5]);
}
