//! UDP publish datagrams, plain and AES-GCM encrypted, and the 5-byte ack.
//!
//! ```text
//! plain      EE AA 01 00  00  LOGIN 00 PASSWORD 00  BODY
//! encrypted  EE AA 01 00  02|03  KEY_ID 00  NONCE(12)  SEAL(BODY) TAG(16)
//! BODY       OP PRIO TOPIC 00 DATA        OP = 01 (ack) | 21 (no ack)
//! ack        EE AA 01 00 CODE             CODE = 01 | FE | FF
//! ```
//!
//! Type `02` is AES-128-GCM keyed with the first 16 bytes of the login's
//! 32-byte key, `03` is AES-256-GCM with all of it; the AAD is empty and the
//! tag follows the ciphertext. An empty KEY_ID names the key `_`.

use core::fmt;

use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::wire::{split_nul, utf8};
use crate::{DecodeError, PROTOCOL_VERSION, Reply, StreamKind, UdpCipher, UdpOp};

/// Length of an AES-GCM nonce.
pub const GCM_NONCE_LEN: usize = 12;
/// Length of an AES-GCM tag.
pub const GCM_TAG_LEN: usize = 16;
/// Length of a key in `keys.yml` (64 hex characters).
pub const AES_KEY_LEN: usize = 32;
/// Length of an ack datagram.
pub const UDP_ACK_LEN: usize = 5;

const HEADER_LEN: usize = 4;
const AUTH_PLAIN: u8 = 0x00;
/// Smallest encrypted block: nonce, tag and one byte of ciphertext.
const MIN_SEALED_BLOCK: usize = GCM_NONCE_LEN + GCM_TAG_LEN + 1;

/// How a datagram authenticates.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum UdpAuth<'a> {
    /// Login and password, checked against the password file.
    Plain {
        /// User name; empty for anonymous.
        login: &'a str,
        /// Password; empty for anonymous.
        password: &'a str,
    },
    /// AES-GCM with the key of `key_id`.
    Encrypted {
        /// Which AES-GCM variant.
        cipher: UdpCipher,
        /// The login whose key seals the body; empty means `_`.
        key_id: &'a str,
        /// The nonce.
        nonce: [u8; GCM_NONCE_LEN],
        /// Ciphertext followed by the tag.
        sealed: &'a [u8],
    },
}

impl fmt::Debug for UdpAuth<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain { login, .. } => f
                .debug_struct("Plain")
                .field("login", login)
                .finish_non_exhaustive(),
            Self::Encrypted {
                cipher,
                key_id,
                sealed,
                ..
            } => f
                .debug_struct("Encrypted")
                .field("cipher", cipher)
                .field("key_id", key_id)
                .field("sealed_len", &sealed.len())
                .finish_non_exhaustive(),
        }
    }
}

/// A decoded datagram: its credentials and, for plain datagrams, the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// Credentials or key.
    pub auth: UdpAuth<'a>,
    /// The plain body; empty for encrypted datagrams (see [`open_udp_block`]).
    pub body: &'a [u8],
}

/// Checks `EE AA 01 00`, the header of datagrams and acks alike.
fn check_header(&[m0, m1, v0, v1]: &[u8; HEADER_LEN]) -> Result<(), DecodeError> {
    if StreamKind::from_magic([m0, m1])? != StreamKind::Control {
        return Err(DecodeError::BadMagic([m0, m1]));
    }
    let version = u16::from_le_bytes([v0, v1]);
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::BadVersion(version));
    }
    Ok(())
}

fn put_header(out: &mut Vec<u8>) {
    out.extend_from_slice(&StreamKind::Control.magic());
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
}

/// Decodes the envelope of a datagram. Every error here means "send no ack":
/// the sender is not yet known to be who it claims.
pub fn decode_datagram(buf: &[u8]) -> Result<Datagram<'_>, DecodeError> {
    let Some((header, rest)) = buf.split_first_chunk::<HEADER_LEN>() else {
        return Err(DecodeError::Truncated);
    };
    check_header(header)?;
    let Some((&auth, rest)) = rest.split_first() else {
        return Err(DecodeError::Truncated);
    };
    let (login, rest) = split_nul(rest).ok_or(DecodeError::MissingNul)?;
    let login = utf8(login)?;
    if auth == AUTH_PLAIN {
        let (password, body) = split_nul(rest).ok_or(DecodeError::MissingNul)?;
        return Ok(Datagram {
            auth: UdpAuth::Plain {
                login,
                password: utf8(password)?,
            },
            body,
        });
    }
    let cipher = UdpCipher::try_from(auth)?;
    if rest.len() < MIN_SEALED_BLOCK {
        return Err(DecodeError::Truncated);
    }
    let Some((nonce, sealed)) = rest.split_first_chunk::<GCM_NONCE_LEN>() else {
        return Err(DecodeError::Truncated);
    };
    Ok(Datagram {
        auth: UdpAuth::Encrypted {
            cipher,
            key_id: login,
            nonce: *nonce,
            sealed,
        },
        body: &[],
    })
}

/// A login's AES key, expanded once for both ciphers.
pub struct UdpKey {
    aes128: LessSafeKey,
    aes256: LessSafeKey,
}

impl UdpKey {
    /// Expands a 32-byte key.
    pub fn new(raw: &[u8; AES_KEY_LEN]) -> Self {
        let (short, _) = raw.split_at(16);
        // Both lengths are the ciphers' key lengths, so construction cannot fail.
        let expand = |alg, bytes: &[u8]| {
            UnboundKey::new(alg, bytes)
                .map(LessSafeKey::new)
                .map_err(|_| DecodeError::BadSeal)
        };
        match (expand(&AES_128_GCM, short), expand(&AES_256_GCM, raw)) {
            (Ok(aes128), Ok(aes256)) => Self { aes128, aes256 },
            _ => unreachable_key(),
        }
    }

    fn for_cipher(&self, cipher: UdpCipher) -> &LessSafeKey {
        match cipher {
            UdpCipher::Aes128Gcm => &self.aes128,
            UdpCipher::Aes256Gcm => &self.aes256,
        }
    }
}

#[allow(clippy::panic)]
#[cold]
fn unreachable_key() -> ! {
    // ring accepts every 16-byte AES-128 and 32-byte AES-256 key.
    panic!("AES key of the cipher's own length rejected")
}

impl fmt::Debug for UdpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UdpKey(<redacted>)")
    }
}

/// Parses a key as written in `keys.yml`: exactly 64 hex characters.
pub fn parse_hex_key(hex: &str) -> Option<[u8; AES_KEY_LEN]> {
    let hex = hex.as_bytes();
    if hex.len() != AES_KEY_LEN * 2 {
        return None;
    }
    let mut key = [0u8; AES_KEY_LEN];
    for (byte, pair) in key.iter_mut().zip(hex.chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        *byte = (hex_digit(*hi)? << 4) | hex_digit(*lo)?;
    }
    Some(key)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decrypts and authenticates an encrypted block into `scratch` and returns
/// the plain body.
pub fn open_udp_block<'s>(
    key: &UdpKey,
    cipher: UdpCipher,
    nonce: &[u8; GCM_NONCE_LEN],
    sealed: &[u8],
    scratch: &'s mut Vec<u8>,
) -> Result<&'s [u8], DecodeError> {
    scratch.clear();
    scratch.extend_from_slice(sealed);
    let plain = key
        .for_cipher(cipher)
        .open_in_place(
            Nonce::assume_unique_for_key(*nonce),
            Aad::empty(),
            scratch.as_mut_slice(),
        )
        .map_err(|_| DecodeError::BadSeal)?;
    Ok(plain)
}

/// The decrypted or plain body of a datagram: what to do with it, and the
/// publish itself, whose errors are answered with `FF` when an ack is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpBody<'a> {
    /// Publish with or without ack.
    pub op: UdpOp,
    /// Priority byte, passed through.
    pub priority: u8,
    /// Topic and data, or why they are invalid.
    pub publish: Result<UdpPublish<'a>, DecodeError>,
}

/// Topic and data of a UDP publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPublish<'a> {
    /// The topic as sent (not yet normalised).
    pub topic: &'a str,
    /// The message.
    pub data: &'a [u8],
}

/// Decodes `OP PRIO TOPIC 00 DATA`. An `Err` means "send no ack" (the op is
/// unknown or the topic is empty); problems after the op is known are in
/// [`UdpBody::publish`].
pub fn decode_udp_body(body: &[u8]) -> Result<UdpBody<'_>, DecodeError> {
    let Some((&[op, priority], rest)) = body.split_first_chunk::<2>() else {
        return Err(DecodeError::Truncated);
    };
    if rest.first().is_none_or(|&b| b == 0) {
        return Err(DecodeError::EmptyTopic);
    }
    let op = UdpOp::try_from(op)?;
    let publish = split_nul(rest)
        .ok_or(DecodeError::MissingNul)
        .and_then(|(topic, data)| {
            Ok(UdpPublish {
                topic: utf8(topic)?,
                data,
            })
        });
    Ok(UdpBody {
        op,
        priority,
        publish,
    })
}

/// Appends a body `OP PRIO TOPIC 00 DATA`.
pub fn encode_udp_body(op: UdpOp, priority: u8, topic: &str, data: &[u8], out: &mut Vec<u8>) {
    out.push(op.into());
    out.push(priority);
    out.extend_from_slice(topic.as_bytes());
    out.push(0);
    out.extend_from_slice(data);
}

fn encode_header(auth: u8, login: &str, out: &mut Vec<u8>) {
    put_header(out);
    out.push(auth);
    out.extend_from_slice(login.as_bytes());
    out.push(0);
}

/// Appends a plain datagram around an encoded body.
pub fn encode_udp_plain(login: &str, password: &str, body: &[u8], out: &mut Vec<u8>) {
    encode_header(AUTH_PLAIN, login, out);
    out.extend_from_slice(password.as_bytes());
    out.push(0);
    out.extend_from_slice(body);
}

/// Appends an encrypted datagram: seals `body` with `key` under `nonce`. The
/// caller must never reuse a nonce with the same key.
pub fn encode_udp_encrypted(
    key: &UdpKey,
    cipher: UdpCipher,
    key_id: &str,
    nonce: [u8; GCM_NONCE_LEN],
    body: &[u8],
    out: &mut Vec<u8>,
) {
    encode_header(cipher.into(), key_id, out);
    out.extend_from_slice(&nonce);
    let start = out.len();
    out.extend_from_slice(body);
    let Some(in_out) = out.get_mut(start..) else {
        return;
    };
    // Sealing only fails for inputs beyond AES-GCM's 64 GiB limit.
    if let Ok(tag) = key.for_cipher(cipher).seal_in_place_separate_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::empty(),
        in_out,
    ) {
        out.extend_from_slice(tag.as_ref());
    }
}

/// Appends the 5-byte ack `EE AA 01 00 CODE`.
pub fn encode_udp_ack(code: Reply, out: &mut Vec<u8>) {
    put_header(out);
    out.push(code.into());
}

/// Decodes an ack datagram (client side).
pub fn decode_udp_ack(buf: &[u8]) -> Result<Reply, DecodeError> {
    let Some((header, [code, ..])) = buf.split_first_chunk::<HEADER_LEN>() else {
        return Err(DecodeError::Truncated);
    };
    check_header(header)?;
    Reply::try_from(*code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// user1's key from the reference repository's keys.yml.
    const USER1_KEY: &str = "26fd38045707792a9bc50f3761a58987c4a9362cf60389f341c28e37b1125d93";

    fn body(op: UdpOp, topic: &str, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_udp_body(op, 0x7f, topic, data, &mut out);
        out
    }

    #[test]
    fn plain_byte_layout() {
        let mut d = Vec::new();
        encode_udp_plain(
            "user1",
            "123",
            &body(UdpOp::Publish, "abcxxx", b"hello"),
            &mut d,
        );
        let mut want = vec![0xEE, 0xAA, 0x01, 0x00, 0x00];
        want.extend_from_slice(b"user1\x00123\x00\x01\x7fabcxxx\x00hello");
        assert_eq!(d, want);
        let dg = decode_datagram(&d).unwrap();
        assert_eq!(
            dg.auth,
            UdpAuth::Plain {
                login: "user1",
                password: "123"
            }
        );
        let b = decode_udp_body(dg.body).unwrap();
        assert_eq!(b.op, UdpOp::Publish);
        assert_eq!(b.priority, 0x7f);
        assert_eq!(
            b.publish,
            Ok(UdpPublish {
                topic: "abcxxx",
                data: b"hello"
            })
        );
        // pbench's anonymous no-ack datagram.
        let anon = b"\xEE\xAA\x01\x00\x00\x00\x00\x21\x7fbench/t0\x00payload";
        let dg = decode_datagram(anon).unwrap();
        assert_eq!(
            dg.auth,
            UdpAuth::Plain {
                login: "",
                password: ""
            }
        );
        assert_eq!(decode_udp_body(dg.body).unwrap().op, UdpOp::PublishNoAck);
    }

    #[test]
    fn envelope_errors_send_no_ack() {
        let table: &[(&[u8], DecodeError)] = &[
            (&[0xEE, 0xAA, 0x01, 0x00], DecodeError::Truncated),
            (
                &[0xEE, 0xAB, 0x01, 0x00, 0x00],
                DecodeError::BadMagic([0xEE, 0xAB]),
            ),
            (
                &[0x45, 0x45, 0x01, 0x00, 0x00],
                DecodeError::BadMagic([0x45, 0x45]),
            ),
            (
                &[0xEE, 0xAA, 0x02, 0x00, 0x00, 0, 0],
                DecodeError::BadVersion(2),
            ),
            (
                &[0xEE, 0xAA, 0x01, 0x00, 0x01, 0, 0],
                DecodeError::UnknownAuth(1),
            ),
            (
                &[0xEE, 0xAA, 0x01, 0x00, 0x04, 0, 0],
                DecodeError::UnknownAuth(4),
            ),
            (b"\xEE\xAA\x01\x00\x00user", DecodeError::MissingNul),
            (b"\xEE\xAA\x01\x00\x00user\x00pass", DecodeError::MissingNul),
            (b"\xEE\xAA\x01\x00\x00\xff\x00p\x00", DecodeError::NotUtf8),
            (b"\xEE\xAA\x01\x00\x00u\x00\xff\x00", DecodeError::NotUtf8),
            // 28 bytes after the key id: one short of nonce + tag + 1.
            (
                &[&[0xEE, 0xAA, 0x01, 0x00, 0x03, 0x00][..], &[0u8; 28]].concat(),
                DecodeError::Truncated,
            ),
        ];
        for (bytes, want) in table {
            assert_eq!(decode_datagram(bytes), Err(*want), "{bytes:02x?}");
        }
    }

    #[test]
    fn body_errors() {
        assert_eq!(decode_udp_body(&[0x01]), Err(DecodeError::Truncated));
        assert_eq!(decode_udp_body(&[0x01, 0x7f]), Err(DecodeError::EmptyTopic));
        assert_eq!(
            decode_udp_body(b"\x01\x7f\x00data"),
            Err(DecodeError::EmptyTopic)
        );
        assert_eq!(
            decode_udp_body(b"\x05\x7ft\x00"),
            Err(DecodeError::UnknownOp(5))
        );
        // The op is known: these are answered with FF when an ack is wanted.
        let b = decode_udp_body(b"\x01\x7ftopic").unwrap();
        assert_eq!(b.publish, Err(DecodeError::MissingNul));
        let b = decode_udp_body(b"\x21\x7f\xff\x00x").unwrap();
        assert_eq!(b.publish, Err(DecodeError::NotUtf8));
        // A priority byte of 0 is just a priority.
        let b = decode_udp_body(b"\x01\x00t\x00").unwrap();
        assert_eq!(b.priority, 0);
        assert_eq!(
            b.publish,
            Ok(UdpPublish {
                topic: "t",
                data: b""
            })
        );
    }

    #[test]
    fn encrypted_round_trip_both_ciphers() {
        let raw = parse_hex_key(USER1_KEY).unwrap();
        let key = UdpKey::new(&raw);
        let plain = body(UdpOp::Publish, "mytopic", b"hello");
        for cipher in [UdpCipher::Aes128Gcm, UdpCipher::Aes256Gcm] {
            let nonce = [7u8; 12];
            let mut d = Vec::new();
            encode_udp_encrypted(&key, cipher, "user1", nonce, &plain, &mut d);
            assert_eq!(d[4], u8::from(cipher));
            assert_eq!(d.len(), 5 + 6 + 12 + plain.len() + 16);
            let dg = decode_datagram(&d).unwrap();
            let UdpAuth::Encrypted {
                cipher: c,
                key_id,
                nonce: n,
                sealed,
            } = dg.auth
            else {
                panic!("{dg:?}");
            };
            assert_eq!((c, key_id, n), (cipher, "user1", nonce));
            let mut scratch = Vec::new();
            let opened = open_udp_block(&key, c, &n, sealed, &mut scratch).unwrap();
            assert_eq!(opened, plain);
            // Tampering, a wrong cipher or a wrong key fail authentication.
            let mut bad = sealed.to_vec();
            bad[0] ^= 1;
            assert_eq!(
                open_udp_block(&key, c, &n, &bad, &mut scratch),
                Err(DecodeError::BadSeal)
            );
            let other = if c == UdpCipher::Aes128Gcm {
                UdpCipher::Aes256Gcm
            } else {
                UdpCipher::Aes128Gcm
            };
            assert_eq!(
                open_udp_block(&key, other, &n, sealed, &mut scratch),
                Err(DecodeError::BadSeal)
            );
            let wrong = UdpKey::new(&[1u8; 32]);
            assert_eq!(
                open_udp_block(&wrong, c, &n, sealed, &mut scratch),
                Err(DecodeError::BadSeal)
            );
        }
    }

    #[test]
    fn aes128_uses_the_first_16_key_bytes() {
        let raw = parse_hex_key(USER1_KEY).unwrap();
        let mut changed_tail = raw;
        changed_tail[16..].fill(0);
        let plain = body(UdpOp::PublishNoAck, "t", b"x");
        let mut d = Vec::new();
        encode_udp_encrypted(
            &UdpKey::new(&raw),
            UdpCipher::Aes128Gcm,
            "",
            [1; 12],
            &plain,
            &mut d,
        );
        let UdpAuth::Encrypted {
            nonce,
            sealed,
            key_id,
            ..
        } = decode_datagram(&d).unwrap().auth
        else {
            panic!()
        };
        assert_eq!(key_id, "");
        let mut scratch = Vec::new();
        let key = UdpKey::new(&changed_tail);
        assert_eq!(
            open_udp_block(&key, UdpCipher::Aes128Gcm, &nonce, sealed, &mut scratch).unwrap(),
            plain
        );
        assert!(open_udp_block(&key, UdpCipher::Aes256Gcm, &nonce, sealed, &mut scratch).is_err());
    }

    #[test]
    fn hex_keys() {
        assert!(parse_hex_key(USER1_KEY).is_some());
        assert_eq!(
            parse_hex_key(&USER1_KEY.to_uppercase()),
            parse_hex_key(USER1_KEY)
        );
        assert!(parse_hex_key(&USER1_KEY[..62]).is_none());
        assert!(parse_hex_key(&format!("{USER1_KEY}00")).is_none());
        assert!(parse_hex_key(&USER1_KEY.replace('a', "g")).is_none());
        assert_eq!(format!("{:?}", UdpKey::new(&[0; 32])), "UdpKey(<redacted>)");
    }

    #[test]
    fn acks() {
        for code in [Reply::Ok, Reply::AccessDenied, Reply::Error] {
            let mut out = Vec::new();
            encode_udp_ack(code, &mut out);
            assert_eq!(out[..4], [0xEE, 0xAA, 0x01, 0x00]);
            assert_eq!(out.len(), UDP_ACK_LEN);
            assert_eq!(decode_udp_ack(&out), Ok(code));
        }
        assert_eq!(
            decode_udp_ack(&[0xEE, 0xAA, 1, 0]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode_udp_ack(&[0xEE, 0xAB, 1, 0, 1]),
            Err(DecodeError::BadMagic([0xEE, 0xAB]))
        );
    }
}
