//! Stream greetings: the client's three bytes `EE AA|AB COMM` and the
//! server's four-byte reply `EE AA|AB 01 00` (magic + protocol version).

use crate::{CommMode, DecodeError, Decoded, PROTOCOL_VERSION, StreamKind};

/// Length of a client greeting.
pub const GREETING_LEN: usize = 3;
/// Length of the server's greeting reply.
pub const GREETING_REPLY_LEN: usize = 4;

/// A client greeting: which stream it opens and whether TLS follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Greeting {
    /// Control or data stream.
    pub kind: StreamKind,
    /// Plain or TLS.
    pub comm: CommMode,
}

/// Decodes the client greeting. Magic bytes are checked as soon as they
/// arrive, so random input is rejected after two bytes.
pub fn decode_greeting(buf: &[u8]) -> Result<Decoded<Greeting>, DecodeError> {
    let kind = match buf {
        [a, b, ..] => StreamKind::from_magic([*a, *b])?,
        [0xEE] | [] => {
            return Ok(Decoded::Incomplete {
                need: GREETING_LEN - buf.len(),
            });
        }
        [other] => return Err(DecodeError::BadMagic([*other, 0])),
    };
    let Some(&comm) = buf.get(2) else {
        return Ok(Decoded::Incomplete { need: 1 });
    };
    Ok(Decoded::Frame {
        frame: Greeting {
            kind,
            comm: CommMode::try_from(comm)?,
        },
        len: GREETING_LEN,
    })
}

/// Appends a client greeting.
pub fn encode_greeting(g: Greeting, out: &mut Vec<u8>) {
    out.extend_from_slice(&g.kind.magic());
    out.push(g.comm.into());
}

/// Decodes the server's greeting reply: the stream kind it echoes. Any
/// version other than [`PROTOCOL_VERSION`] is an error.
pub fn decode_greeting_reply(buf: &[u8]) -> Result<Decoded<StreamKind>, DecodeError> {
    let Some(&[a, b, v0, v1]) = buf.first_chunk::<GREETING_REPLY_LEN>() else {
        return Ok(Decoded::Incomplete {
            need: GREETING_REPLY_LEN - buf.len(),
        });
    };
    let kind = StreamKind::from_magic([a, b])?;
    let version = u16::from_le_bytes([v0, v1]);
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::BadVersion(version));
    }
    Ok(Decoded::Frame {
        frame: kind,
        len: GREETING_REPLY_LEN,
    })
}

/// Appends the server's greeting reply for `kind`.
pub fn encode_greeting_reply(kind: StreamKind, out: &mut Vec<u8>) {
    out.extend_from_slice(&kind.magic());
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    type Row<'a> = (&'a [u8], Result<Decoded<Greeting>, DecodeError>);

    #[test]
    fn byte_table() {
        let table: &[Row<'_>] = &[
            (&[], Ok(Decoded::Incomplete { need: 3 })),
            (&[0xEE], Ok(Decoded::Incomplete { need: 2 })),
            (&[0xEE, 0xAA], Ok(Decoded::Incomplete { need: 1 })),
            (
                &[0xEE, 0xAA, 0x00, 0x99],
                Ok(Decoded::Frame {
                    frame: Greeting {
                        kind: StreamKind::Control,
                        comm: CommMode::Plain,
                    },
                    len: 3,
                }),
            ),
            (
                &[0xEE, 0xAB, 0x01],
                Ok(Decoded::Frame {
                    frame: Greeting {
                        kind: StreamKind::Data,
                        comm: CommMode::Tls,
                    },
                    len: 3,
                }),
            ),
            (&[0xEE, 0xAA, 0x02], Err(DecodeError::UnknownComm(2))),
            (b"GET / HTTP/1.1", Err(DecodeError::BadMagic(*b"GE"))),
            // A TLS ClientHello on a plain port.
            (
                &[0x16, 0x03, 0x01],
                Err(DecodeError::BadMagic([0x16, 0x03])),
            ),
            (&[0x16], Err(DecodeError::BadMagic([0x16, 0]))),
        ];
        for (bytes, want) in table {
            assert_eq!(&decode_greeting(bytes), want, "{bytes:02x?}");
        }
    }

    #[test]
    fn reply_round_trip_and_errors() {
        for kind in [StreamKind::Control, StreamKind::Data] {
            let mut out = Vec::new();
            encode_greeting_reply(kind, &mut out);
            assert_eq!(out[2..], [0x01, 0x00]);
            for cut in 0..out.len() {
                assert!(matches!(
                    decode_greeting_reply(&out[..cut]),
                    Ok(Decoded::Incomplete { need }) if need == out.len() - cut
                ));
            }
            assert_eq!(
                decode_greeting_reply(&out),
                Ok(Decoded::Frame {
                    frame: kind,
                    len: 4
                })
            );
        }
        assert_eq!(
            decode_greeting_reply(&[0xEE, 0xAA, 0x02, 0x00]),
            Err(DecodeError::BadVersion(2))
        );
        let mut out = Vec::new();
        encode_greeting_reply(StreamKind::Control, &mut out);
        assert_eq!(out, [0xEE, 0xAA, 0x01, 0x00]);
    }

    #[test]
    fn greeting_round_trip() {
        for kind in [StreamKind::Control, StreamKind::Data] {
            for comm in [CommMode::Plain, CommMode::Tls] {
                let g = Greeting { kind, comm };
                let mut out = Vec::new();
                encode_greeting(g, &mut out);
                assert_eq!(
                    decode_greeting(&out),
                    Ok(Decoded::Frame { frame: g, len: 3 })
                );
            }
        }
    }
}
