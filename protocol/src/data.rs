//! The data socket: the client's hello (32-byte token + timeout byte) and
//! what the server pushes afterwards, message frames and NOP beacons.
//!
//! ```text
//! hello     TOKEN(32) TIMEOUT_SEC(u8)              -> reply 01 or FF
//! message   01 PRIO LEN(u32 LE) TOPIC 00 MESSAGE      LEN = |TOPIC| + 1 + |MESSAGE|
//! beacon    00
//! ```
//!
//! A pushed message frame has the layout of a PUBLISH request, so a publish
//! whose topic is already normalised can be forwarded byte for byte.

use crate::wire::{len_prefixed, put_len, split_nul, utf8};
use crate::{DecodeError, Decoded, Limits, Op, Reply, TOKEN_LEN, Token};

/// Length of a data hello.
pub const DATA_HELLO_LEN: usize = TOKEN_LEN + 1;

/// Bytes before the topic in a pushed frame: `01 PRIO LEN`.
pub const PUSH_HEADER_LEN: usize = 1 + 1 + 4;

/// The data socket's first frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHello {
    /// Token the server returned on the control socket.
    pub token: Token,
    /// The client's read timeout in whole seconds; the server beacons at half
    /// of it. Clients send `floor(timeout)`, so 0 is possible.
    pub timeout_sec: u8,
}

/// Decodes a data hello.
pub fn decode_data_hello(buf: &[u8]) -> Decoded<DataHello> {
    match buf.first_chunk::<DATA_HELLO_LEN>() {
        Some(bytes) => {
            let [token @ .., timeout_sec] = *bytes;
            Decoded::Frame {
                frame: DataHello {
                    token: Token(token),
                    timeout_sec,
                },
                len: DATA_HELLO_LEN,
            }
        }
        None => Decoded::Incomplete {
            need: DATA_HELLO_LEN - buf.len(),
        },
    }
}

/// Appends a data hello.
pub fn encode_data_hello(hello: &DataHello, out: &mut Vec<u8>) {
    out.extend_from_slice(&hello.token.0);
    out.push(hello.timeout_sec);
}

/// A message pushed to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Push<'a> {
    /// The publisher's priority byte.
    pub priority: u8,
    /// The normalised topic; may be empty (a publish to `/`).
    pub topic: &'a str,
    /// The message.
    pub message: &'a [u8],
}

/// One frame on the data socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFrame<'a> {
    /// Keep-alive beacon.
    Nop,
    /// A message.
    Message(Push<'a>),
}

/// Decodes one data-socket frame (client side). `LEN` is limited by
/// `limits.max_pub_size`.
pub fn decode_data_frame<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Decoded<DataFrame<'a>>, DecodeError> {
    let Some((&kind, rest)) = buf.split_first() else {
        return Ok(Decoded::Incomplete { need: 1 });
    };
    if kind == u8::from(Op::Nop) {
        return Ok(Decoded::Frame {
            frame: DataFrame::Nop,
            len: 1,
        });
    }
    if kind != u8::from(Reply::Ok) {
        return Err(DecodeError::UnknownFrame(kind));
    }
    let Some((&priority, rest)) = rest.split_first() else {
        return Ok(Decoded::Incomplete { need: 5 });
    };
    let (body, len) = match len_prefixed(rest, limits.max_pub_size)? {
        Decoded::Frame { frame, len } => (frame, len),
        Decoded::Incomplete { need } => return Ok(Decoded::Incomplete { need }),
    };
    let (topic, message) = split_nul(body).ok_or(DecodeError::MissingNul)?;
    Ok(Decoded::Frame {
        frame: DataFrame::Message(Push {
            priority,
            topic: utf8(topic)?,
            message,
        }),
        len: len + 2,
    })
}

/// Total length of a pushed frame for a topic and a message.
pub fn push_frame_len(topic_len: usize, message_len: usize) -> usize {
    PUSH_HEADER_LEN + topic_len + 1 + message_len
}

/// Appends `01 PRIO LEN TOPIC 00`: everything of a pushed frame but the
/// message, for a writer that sends a large message from its own buffer.
pub fn encode_push_header(priority: u8, topic: &str, message_len: usize, out: &mut Vec<u8>) {
    out.push(Reply::Ok.into());
    out.push(priority);
    put_len(out, topic.len() + 1 + message_len);
    out.extend_from_slice(topic.as_bytes());
    out.push(0);
}

/// Appends a whole pushed frame.
pub fn encode_push(push: &Push<'_>, out: &mut Vec<u8>) {
    encode_push_header(push.priority, push.topic, push.message.len(), out);
    out.extend_from_slice(push.message);
}

/// Appends a NOP beacon.
pub fn encode_nop_beacon(out: &mut Vec<u8>) {
    out.push(Op::Nop.into());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Request, decode_request};

    const L: Limits = Limits {
        max_pub_size: 64,
        max_topic_length: 32,
        max_topic_depth: 8,
    };

    #[test]
    fn hello() {
        let mut bytes: Vec<u8> = (1..=32).collect();
        assert_eq!(decode_data_hello(&bytes), Decoded::Incomplete { need: 1 });
        bytes.push(30);
        bytes.push(0xAA); // not part of the hello
        let Decoded::Frame { frame, len } = decode_data_hello(&bytes) else {
            panic!()
        };
        assert_eq!(len, 33);
        assert_eq!(frame.timeout_sec, 30);
        assert_eq!(frame.token.0[0], 1);
        assert_eq!(frame.token.0[31], 32);
        let mut out = Vec::new();
        encode_data_hello(&frame, &mut out);
        assert_eq!(out, bytes[..33]);
    }

    #[test]
    fn reference_push_example() {
        // "xyz" published to "a/b" with prio 0x10.
        let want = [
            0x01, 0x10, 0x07, 0, 0, 0, 0x61, 0x2f, 0x62, 0x00, 0x78, 0x79, 0x7a,
        ];
        let push = Push {
            priority: 0x10,
            topic: "a/b",
            message: b"xyz",
        };
        let mut out = Vec::new();
        encode_push(&push, &mut out);
        assert_eq!(out, want);
        assert_eq!(push_frame_len(3, 3), want.len());
        assert_eq!(
            decode_data_frame(&want, &L),
            Ok(Decoded::Frame {
                frame: DataFrame::Message(push),
                len: 13
            })
        );
        // Same bytes as the publish request: forwarding needs no re-encoding.
        assert!(matches!(
            decode_request(&want, &L),
            Ok(Decoded::Frame {
                frame: Request::Publish { topic: "a/b", .. },
                len: 13
            })
        ));
    }

    #[test]
    fn stream_of_beacons_and_messages_splits() {
        let mut stream = Vec::new();
        encode_nop_beacon(&mut stream);
        let frames = [
            Push {
                priority: 0x7f,
                topic: "",
                message: b"to the empty topic",
            },
            Push {
                priority: 0,
                topic: "t",
                message: b"",
            },
        ];
        for p in &frames {
            encode_push(p, &mut stream);
            encode_nop_beacon(&mut stream);
        }
        let mut rest = &stream[..];
        let mut seen = Vec::new();
        while !rest.is_empty() {
            let Ok(Decoded::Frame { frame, len }) = decode_data_frame(rest, &L) else {
                panic!("{:?}", decode_data_frame(rest, &L));
            };
            for cut in 0..len {
                assert!(matches!(
                    decode_data_frame(&rest[..cut], &L),
                    Ok(Decoded::Incomplete { need }) if need >= 1 && need <= len - cut
                ));
            }
            seen.push(frame);
            rest = &rest[len..];
        }
        assert_eq!(
            seen,
            [
                DataFrame::Nop,
                DataFrame::Message(frames[0]),
                DataFrame::Nop,
                DataFrame::Message(frames[1]),
                DataFrame::Nop
            ]
        );
    }

    #[test]
    fn malformed_frames() {
        assert_eq!(
            decode_data_frame(&[0x02], &L),
            Err(DecodeError::UnknownFrame(2))
        );
        assert_eq!(
            decode_data_frame(&[0x01, 0x7f, 65, 0, 0, 0], &L),
            Err(DecodeError::FrameTooLarge { len: 65, max: 64 })
        );
        assert_eq!(
            decode_data_frame(b"\x01\x7f\x01\x00\x00\x00t", &L),
            Err(DecodeError::MissingNul)
        );
        assert_eq!(
            decode_data_frame(b"\x01\x7f\x02\x00\x00\x00\xff\x00", &L),
            Err(DecodeError::NotUtf8)
        );
    }
}
