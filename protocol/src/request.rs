//! Control-socket requests (`op` + body) and the one-byte replies, including
//! both phases of PUBLISH_REPL.
//!
//! ```text
//! NOP          00
//! PUBLISH      01 PRIO LEN(u32 LE) TOPIC 00 MESSAGE      LEN <= max_pub_size
//! SUBSCRIBE    02 LEN TOPIC [00 TOPIC]... [00]           LEN <= max_topic_length
//! UNSUBSCRIBE  03 LEN TOPIC [00 TOPIC]... [00]           LEN <= max_topic_length
//! PUBLISH_REPL 11 LEN TOPIC                               LEN <= max_topic_length
//!   then, after a 02 reply: PRIO TIMESTAMP(u64 LE ns) LEN MESSAGE
//! REPL_HELLO   12 ORIGIN(u64 LE)                          psrtd extension
//! PUBLISH_REPL_SEQ 13 PRIO TIMESTAMP(u64 LE ns) SEQ(u64 LE) LEN TOPIC 00 MESSAGE
//!                                                         psrtd extension, LEN <= max_pub_size
//! BYE          FF
//! ```

#[cfg(test)]
use crate::repl::{ReplBody, decode_repl_body, encode_repl_body};
use crate::repl::{decode_publish_repl_seq, encode_repl_seq_head};
use crate::wire::{LEN_BYTES, len_prefixed, put_len, topic_message, u64_at, utf8};
use crate::{DecodeError, Decoded, Limits, Op, Reply};

/// One control request, borrowing its text and payload from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// Keep-alive.
    Nop,
    /// Publish `message` to `topic` (raw, not yet normalised).
    Publish {
        /// Reserved priority byte, passed through to subscribers.
        priority: u8,
        /// The topic as sent: non-empty UTF-8 before the first NUL.
        topic: &'a str,
        /// Everything after the first NUL; may be empty and may contain NULs.
        message: &'a [u8],
    },
    /// Subscribe to one or more masks.
    Subscribe(Topics<'a>),
    /// Unsubscribe from one or more masks.
    Unsubscribe(Topics<'a>),
    /// First phase of a replicated publish: the topic, taken as is.
    PublishRepl {
        /// The topic as sent by the replicating node.
        topic: &'a str,
    },
    /// psrtd extension: the replicating node's id for this process's life;
    /// answered `01` by psrtd (a reference node closes on the unknown op).
    ReplHello {
        /// Random id of the origin node, for duplicate detection.
        origin: u64,
    },
    /// psrtd extension: a whole replicated message in one frame, so many can
    /// be in flight; answered `01` (delivered), `E0` (no subscriber), `FE`
    /// (not a replicator) or `FF` (bad topic), one reply per frame in order.
    PublishReplSeq {
        /// Priority byte from the origin node.
        priority: u8,
        /// Publish time on the origin node, ns since the Unix epoch.
        timestamp_ns: u64,
        /// The origin's sequence number for this destination (increasing).
        seq: u64,
        /// The topic (normalised by the origin; validated again).
        topic: &'a str,
        /// The message.
        message: &'a [u8],
    },
    /// End the session.
    Bye,
}

/// The body of a SUBSCRIBE or UNSUBSCRIBE: topics separated by NULs. Empty
/// pieces (doubled or trailing NULs) are skipped; every piece is UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topics<'a> {
    raw: &'a [u8],
}

impl<'a> Topics<'a> {
    /// Validates a raw body: every NUL-separated piece must be UTF-8.
    pub fn new(raw: &'a [u8]) -> Result<Self, DecodeError> {
        for piece in raw.split(|&b| b == 0) {
            utf8(piece)?;
        }
        Ok(Self { raw })
    }

    /// The non-empty topics, in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + Clone + 'a {
        self.raw
            .split(|&b| b == 0)
            .filter(|piece| !piece.is_empty())
            // Validated in `new`; a piece that is not UTF-8 cannot occur.
            .filter_map(|piece| core::str::from_utf8(piece).ok())
    }

    /// The body exactly as it was sent.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// No topic at all (an empty body or only NULs).
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

/// Decodes one control request from the front of `buf`.
pub fn decode_request<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Decoded<Request<'a>>, DecodeError> {
    let Some((&op, rest)) = buf.split_first() else {
        return Ok(Decoded::Incomplete { need: 1 });
    };
    let decoded = match Op::try_from(op)? {
        Op::Nop => Decoded::Frame {
            frame: Request::Nop,
            len: 0,
        },
        Op::Bye => Decoded::Frame {
            frame: Request::Bye,
            len: 0,
        },
        Op::Publish => decode_publish(rest, limits)?,
        Op::Subscribe => decode_topics(rest, limits)?.map(Request::Subscribe),
        Op::Unsubscribe => decode_topics(rest, limits)?.map(Request::Unsubscribe),
        Op::PublishRepl => match len_prefixed(rest, limits.max_topic_length)? {
            Decoded::Frame { frame, len } => Decoded::Frame {
                frame: Request::PublishRepl {
                    topic: utf8(frame)?,
                },
                len,
            },
            Decoded::Incomplete { need } => Decoded::Incomplete { need },
        },
        Op::ReplHello => match u64_at(rest, 0) {
            Some(origin) => Decoded::Frame {
                frame: Request::ReplHello { origin },
                len: 8,
            },
            None => Decoded::Incomplete {
                need: 8 - rest.len(),
            },
        },
        Op::PublishReplSeq => decode_publish_repl_seq(rest, limits)?,
    };
    Ok(decoded.after_header(1))
}

fn decode_publish<'a>(buf: &'a [u8], limits: &Limits) -> Result<Decoded<Request<'a>>, DecodeError> {
    let Some((&priority, rest)) = buf.split_first() else {
        return Ok(Decoded::Incomplete {
            need: 1 + LEN_BYTES,
        });
    };
    let ((topic, message), len) = match topic_message(rest, limits.max_pub_size)? {
        Decoded::Frame { frame, len } => (frame, len),
        Decoded::Incomplete { need } => return Ok(Decoded::Incomplete { need }),
    };
    Ok(Decoded::Frame {
        frame: Request::Publish {
            priority,
            topic,
            message,
        },
        len: len + 1,
    })
}

fn decode_topics<'a>(buf: &'a [u8], limits: &Limits) -> Result<Decoded<Topics<'a>>, DecodeError> {
    match len_prefixed(buf, limits.max_topic_length)? {
        Decoded::Frame { frame, len } => Ok(Decoded::Frame {
            frame: Topics::new(frame)?,
            len,
        }),
        Decoded::Incomplete { need } => Ok(Decoded::Incomplete { need }),
    }
}

/// Appends a request exactly as [`decode_request`] would read it back.
pub fn encode_request(req: &Request<'_>, out: &mut Vec<u8>) {
    match req {
        Request::Nop => out.push(Op::Nop.into()),
        Request::Bye => out.push(Op::Bye.into()),
        Request::Publish {
            priority,
            topic,
            message,
        } => {
            out.push(Op::Publish.into());
            out.push(*priority);
            put_len(out, topic.len() + 1 + message.len());
            out.extend_from_slice(topic.as_bytes());
            out.push(0);
            out.extend_from_slice(message);
        }
        Request::Subscribe(topics) | Request::Unsubscribe(topics) => {
            let op = if matches!(req, Request::Subscribe(_)) {
                Op::Subscribe
            } else {
                Op::Unsubscribe
            };
            out.push(op.into());
            put_len(out, topics.raw.len());
            out.extend_from_slice(topics.raw);
        }
        Request::PublishRepl { topic } => {
            out.push(Op::PublishRepl.into());
            put_len(out, topic.len());
            out.extend_from_slice(topic.as_bytes());
        }
        Request::ReplHello { origin } => {
            out.push(Op::ReplHello.into());
            out.extend_from_slice(&origin.to_le_bytes());
        }
        Request::PublishReplSeq {
            priority,
            timestamp_ns,
            seq,
            topic,
            message,
        } => {
            encode_repl_seq_head(*priority, *timestamp_ns, *seq, topic, message.len(), out);
            out.extend_from_slice(message);
        }
    }
}

/// Appends a SUBSCRIBE (`subscribe = true`) or UNSUBSCRIBE frame for a list of
/// topics, each followed by a NUL (the Rust client's layout).
pub fn encode_topics<'t>(
    subscribe: bool,
    topics: impl IntoIterator<Item = &'t str> + Clone,
    out: &mut Vec<u8>,
) {
    let op = if subscribe {
        Op::Subscribe
    } else {
        Op::Unsubscribe
    };
    out.push(op.into());
    let body_len: usize = topics.clone().into_iter().map(|t| t.len() + 1).sum();
    put_len(out, body_len);
    for topic in topics {
        out.extend_from_slice(topic.as_bytes());
        out.push(0);
    }
}

/// Decodes a one-byte reply.
pub fn decode_reply(buf: &[u8]) -> Result<Decoded<Reply>, DecodeError> {
    match buf.first() {
        Some(&b) => Ok(Decoded::Frame {
            frame: Reply::try_from(b)?,
            len: 1,
        }),
        None => Ok(Decoded::Incomplete { need: 1 }),
    }
}

/// Appends a one-byte reply.
pub fn encode_reply(reply: Reply, out: &mut Vec<u8>) {
    out.push(reply.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        max_pub_size: 64,
        max_topic_length: 32,
        max_topic_depth: 8,
    };

    fn dec(bytes: &[u8]) -> Result<Decoded<Request<'_>>, DecodeError> {
        decode_request(bytes, &L)
    }

    fn publish<'a>(
        priority: u8,
        topic: &'a str,
        message: &'a [u8],
        len: usize,
    ) -> Decoded<Request<'a>> {
        Decoded::Frame {
            frame: Request::Publish {
                priority,
                topic,
                message,
            },
            len,
        }
    }

    #[test]
    fn publish_byte_table() {
        // 01 PRIO LEN "a/b" 00 "xyz", then the first byte of the next request.
        let ok = b"\x01\x10\x07\x00\x00\x00a/b\x00xyz\x00";
        assert_eq!(dec(ok), Ok(publish(0x10, "a/b", b"xyz", 13)));
        // Empty message; message containing NULs.
        assert_eq!(
            dec(b"\x01\x7f\x02\x00\x00\x00t\x00"),
            Ok(publish(0x7f, "t", b"", 8))
        );
        assert_eq!(
            dec(b"\x01\x7f\x05\x00\x00\x00t\x00a\x00b"),
            Ok(publish(0x7f, "t", b"a\0b", 11))
        );
        // No NUL, empty topic, non-UTF-8 topic.
        assert_eq!(
            dec(b"\x01\x7f\x01\x00\x00\x00t"),
            Err(DecodeError::MissingNul)
        );
        assert_eq!(
            dec(b"\x01\x7f\x02\x00\x00\x00\x00x"),
            Err(DecodeError::EmptyTopic)
        );
        assert_eq!(
            dec(b"\x01\x7f\x02\x00\x00\x00\xc3\x00"),
            Err(DecodeError::NotUtf8)
        );
        // A message need not be UTF-8.
        assert_eq!(
            dec(b"\x01\x7f\x03\x00\x00\x00t\x00\xff"),
            Ok(publish(0x7f, "t", b"\xff", 9))
        );
        // LEN equal to the limit is fine; one more is refused without the body.
        let mut at_limit = vec![0x01, 0x7f, 64, 0, 0, 0, b't', 0];
        at_limit.resize(6 + 64, b'm');
        assert!(matches!(dec(&at_limit), Ok(Decoded::Frame { len: 70, .. })));
        assert_eq!(
            dec(&[0x01, 0x7f, 65, 0, 0, 0]),
            Err(DecodeError::FrameTooLarge { len: 65, max: 64 })
        );
        assert_eq!(
            dec(&[0x01, 0x7f, 0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::FrameTooLarge {
                len: u32::MAX,
                max: 64
            })
        );
        assert_eq!(
            dec(&[0x01, 0x7f, 64, 0, 0, 0]),
            Ok(Decoded::Incomplete { need: 64 })
        );
        assert_eq!(dec(&[0x01]), Ok(Decoded::Incomplete { need: 5 }));
        assert_eq!(dec(&[0x01, 0x7f, 3]), Ok(Decoded::Incomplete { need: 3 }));
    }

    #[test]
    fn reference_push_example_is_a_publish_frame() {
        // The reference facts' pushed frame for "xyz" on "a/b" with prio 0x10
        // is byte-identical to the publish frame.
        let bytes = [
            0x01, 0x10, 0x07, 0, 0, 0, 0x61, 0x2f, 0x62, 0x00, 0x78, 0x79, 0x7a,
        ];
        assert_eq!(dec(&bytes), Ok(publish(0x10, "a/b", b"xyz", 13)));
    }

    #[test]
    fn simple_ops() {
        assert_eq!(
            dec(&[0x00]),
            Ok(Decoded::Frame {
                frame: Request::Nop,
                len: 1
            })
        );
        assert_eq!(
            dec(&[0xFF, 0x00]),
            Ok(Decoded::Frame {
                frame: Request::Bye,
                len: 1
            })
        );
        assert_eq!(dec(&[]), Ok(Decoded::Incomplete { need: 1 }));
        for op in [0x04, 0x10, 0x21, 0x7f, 0xEE] {
            assert_eq!(dec(&[op]), Err(DecodeError::UnknownOp(op)), "{op:#x}");
        }
    }

    #[test]
    fn subscribe_byte_table() {
        // Rust client layout: each topic followed by NUL.
        let rust = b"\x02\x08\x00\x00\x00a/b\x00c/#\x00";
        let Ok(Decoded::Frame {
            frame: Request::Subscribe(t),
            len: 13,
        }) = dec(rust)
        else {
            panic!("{:?}", dec(rust));
        };
        assert_eq!(t.iter().collect::<Vec<_>>(), ["a/b", "c/#"]);
        // Python layout: joined by NUL, no trailing NUL.
        let py = b"\x03\x07\x00\x00\x00a/b\x00c/#";
        let Ok(Decoded::Frame {
            frame: Request::Unsubscribe(t),
            len: 12,
        }) = dec(py)
        else {
            panic!("{:?}", dec(py));
        };
        assert_eq!(t.iter().collect::<Vec<_>>(), ["a/b", "c/#"]);
        // Empty body and only NULs: no topics, not an error.
        let Ok(Decoded::Frame {
            frame: Request::Subscribe(t),
            ..
        }) = dec(b"\x02\x00\x00\x00\x00")
        else {
            panic!()
        };
        assert!(t.is_empty());
        let Ok(Decoded::Frame {
            frame: Request::Subscribe(t),
            ..
        }) = dec(b"\x02\x03\x00\x00\x00\x00\x00\x00")
        else {
            panic!()
        };
        assert!(t.is_empty());
        // Any piece not UTF-8 rejects the whole frame.
        assert_eq!(
            dec(b"\x02\x04\x00\x00\x00a\x00\xff\x00"),
            Err(DecodeError::NotUtf8)
        );
        // LEN limit: equal ok, above refused before the body.
        let mut eq = vec![0x02, 32, 0, 0, 0];
        eq.resize(5 + 32, b'x');
        assert!(matches!(dec(&eq), Ok(Decoded::Frame { len: 37, .. })));
        assert_eq!(
            dec(&[0x02, 33, 0, 0, 0]),
            Err(DecodeError::FrameTooLarge { len: 33, max: 32 })
        );
    }

    #[test]
    fn publish_repl_both_phases() {
        let req = b"\x11\x03\x00\x00\x00a/b";
        assert_eq!(
            dec(req),
            Ok(Decoded::Frame {
                frame: Request::PublishRepl { topic: "a/b" },
                len: 8
            })
        );
        assert_eq!(
            dec(&[0x11, 33, 0, 0, 0]),
            Err(DecodeError::FrameTooLarge { len: 33, max: 32 })
        );
        let body = ReplBody {
            priority: 0x7f,
            timestamp_ns: 0x0102_0304_0506_0708,
            message: b"hello",
        };
        let mut out = Vec::new();
        encode_repl_body(&body, &mut out);
        assert_eq!(
            out,
            b"\x7f\x08\x07\x06\x05\x04\x03\x02\x01\x05\x00\x00\x00hello"
        );
        for cut in 0..out.len() {
            assert!(matches!(
                decode_repl_body(&out[..cut], &L),
                Ok(Decoded::Incomplete { need }) if need >= 1 && need <= out.len() - cut
            ));
        }
        assert_eq!(
            decode_repl_body(&out, &L),
            Ok(Decoded::Frame {
                frame: body,
                len: out.len()
            })
        );
        let mut big = vec![0x7f; 9];
        big.extend_from_slice(&65u32.to_le_bytes());
        assert_eq!(
            decode_repl_body(&big, &L),
            Err(DecodeError::FrameTooLarge { len: 65, max: 64 })
        );
    }

    #[test]
    fn replies() {
        assert_eq!(decode_reply(&[]), Ok(Decoded::Incomplete { need: 1 }));
        assert_eq!(
            decode_reply(&[0xE0]),
            Ok(Decoded::Frame {
                frame: Reply::NotRequired,
                len: 1
            })
        );
        assert_eq!(decode_reply(&[0x55]), Err(DecodeError::UnknownReply(0x55)));
        let mut out = Vec::new();
        encode_reply(Reply::AccessDenied, &mut out);
        encode_reply(Reply::OkWaiting, &mut out);
        assert_eq!(out, [0xFE, 0x02]);
    }

    #[test]
    fn every_request_splits_and_round_trips() {
        let topics = Topics::new(b"a\0b/+\0").unwrap();
        let requests = [
            Request::Nop,
            Request::Bye,
            Request::Publish {
                priority: 0x7f,
                topic: "x/y",
                message: b"\0\x01payload",
            },
            Request::Subscribe(topics),
            Request::Unsubscribe(topics),
            Request::PublishRepl { topic: "r/t" },
            Request::ReplHello {
                origin: 0x0102_0304_0506_0708,
            },
            Request::PublishReplSeq {
                priority: 0x7f,
                timestamp_ns: 42,
                seq: 7,
                topic: "s/q",
                message: b"\0body",
            },
        ];
        // All requests back to back, as a pipelining client sends them.
        let mut stream = Vec::new();
        for r in &requests {
            encode_request(r, &mut stream);
        }
        let mut rest = &stream[..];
        for want in &requests {
            let Ok(Decoded::Frame { frame, len }) = dec(rest) else {
                panic!("{:?}", dec(rest));
            };
            assert_eq!(&frame, want);
            for cut in 0..len {
                assert!(
                    matches!(dec(&rest[..cut]), Ok(Decoded::Incomplete { need }) if need >= 1 && need <= len - cut),
                    "{want:?} cut at {cut}"
                );
            }
            let mut again = Vec::new();
            encode_request(&frame, &mut again);
            assert_eq!(again, rest[..len]);
            rest = &rest[len..];
        }
        assert!(rest.is_empty());
    }

    #[test]
    fn encode_topics_layout() {
        let mut out = Vec::new();
        encode_topics(true, ["a", "b/c"], &mut out);
        assert_eq!(out, b"\x02\x06\x00\x00\x00a\x00b/c\x00");
        out.clear();
        encode_topics(false, ["z"], &mut out);
        assert_eq!(out, b"\x03\x02\x00\x00\x00z\x00");
    }
}
