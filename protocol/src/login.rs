//! The login frame `LEN LOGIN 00 PASSWORD` sent on the control socket after
//! the greeting, and the 32-byte client token the server answers with.

use core::fmt;

use crate::wire::{len_prefixed, put_len, split_nul, utf8};
use crate::{DecodeError, Decoded};

/// Largest login frame body; a larger `LEN` is rejected before the body is
/// read (the reference's `MAX_AUTH_FRAME_SIZE`).
pub const MAX_LOGIN_FRAME_LEN: u32 = 1024;

/// The frame both published clients send for an anonymous login: `LEN = 1`
/// and a single NUL (empty login, empty password).
pub const ANONYMOUS_LOGIN_FRAME: [u8; 5] = [0x01, 0x00, 0x00, 0x00, 0x00];

/// Length of a client token.
pub const TOKEN_LEN: usize = 32;

/// Credentials from a login frame. Everything after the first NUL is the
/// password, NULs included.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Login<'a> {
    /// User name; empty for anonymous.
    pub login: &'a str,
    /// Password; empty for anonymous.
    pub password: &'a str,
}

impl Login<'_> {
    /// Empty login and empty password.
    pub fn is_anonymous(&self) -> bool {
        self.login.is_empty() && self.password.is_empty()
    }
}

impl fmt::Debug for Login<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print a password, not even in a test failure.
        f.debug_struct("Login")
            .field("login", &self.login)
            .field("password", &format_args!("<{} bytes>", self.password.len()))
            .finish()
    }
}

/// Decodes a login frame. `LEN > 1024`, a body without NUL (including an
/// empty body) and non-UTF-8 text are errors.
pub fn decode_login(buf: &[u8]) -> Result<Decoded<Login<'_>>, DecodeError> {
    let body = match len_prefixed(buf, MAX_LOGIN_FRAME_LEN)? {
        Decoded::Frame { frame, len } => (frame, len),
        Decoded::Incomplete { need } => return Ok(Decoded::Incomplete { need }),
    };
    let (bytes, len) = body;
    let (login, password) = split_nul(bytes).ok_or(DecodeError::MissingNul)?;
    Ok(Decoded::Frame {
        frame: Login {
            login: utf8(login)?,
            password: utf8(password)?,
        },
        len,
    })
}

/// Appends a login frame. An empty login and password give
/// [`ANONYMOUS_LOGIN_FRAME`].
pub fn encode_login(login: &Login<'_>, out: &mut Vec<u8>) {
    put_len(out, login.login.len() + 1 + login.password.len());
    out.extend_from_slice(login.login.as_bytes());
    out.push(0);
    out.extend_from_slice(login.password.as_bytes());
}

/// A client token: 32 random bytes that link a data socket to its control
/// session. It is a bearer secret, so `Debug` shows only a prefix.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub [u8; TOKEN_LEN]);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, ..] = self.0;
        write!(f, "Token({a:02x}{b:02x}{c:02x}{d:02x}…)")
    }
}

/// Decodes the 32 raw token bytes the server sends after a successful login.
pub fn decode_token(buf: &[u8]) -> Decoded<Token> {
    match buf.first_chunk::<TOKEN_LEN>() {
        Some(bytes) => Decoded::Frame {
            frame: Token(*bytes),
            len: TOKEN_LEN,
        },
        None => Decoded::Incomplete {
            need: TOKEN_LEN - buf.len(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(login: &'static str, password: &'static str, len: usize) -> Decoded<Login<'static>> {
        Decoded::Frame {
            frame: Login { login, password },
            len,
        }
    }

    type Row<'a> = (&'a [u8], Result<Decoded<Login<'a>>, DecodeError>);

    #[test]
    fn byte_table() {
        let table: &[Row<'_>] = &[
            // Anonymous, as both published clients send it, plus a trailing op byte.
            (&[0x01, 0, 0, 0, 0x00, 0x02], Ok(frame("", "", 5))),
            // "user1\0123"
            (
                b"\x09\x00\x00\x00user1\x00123",
                Ok(frame("user1", "123", 13)),
            ),
            // Everything after the first NUL is the password.
            (b"\x05\x00\x00\x00a\x00b\x00c", Ok(frame("a", "b\0c", 9))),
            // Empty login with a password, login with an empty password.
            (b"\x02\x00\x00\x00\x00p", Ok(frame("", "p", 6))),
            (b"\x02\x00\x00\x00u\x00", Ok(frame("u", "", 6))),
            // No NUL at all, and LEN 0.
            (b"\x03\x00\x00\x00abc", Err(DecodeError::MissingNul)),
            (&[0, 0, 0, 0], Err(DecodeError::MissingNul)),
            // The limit is exactly 1024; 1025 is refused before the body arrives.
            (
                &[0x01, 0x04, 0x00, 0x00],
                Err(DecodeError::FrameTooLarge {
                    len: 1025,
                    max: 1024,
                }),
            ),
            (
                &[0xFF, 0xFF, 0xFF, 0xFF],
                Err(DecodeError::FrameTooLarge {
                    len: u32::MAX,
                    max: 1024,
                }),
            ),
            (
                &[0x00, 0x04, 0x00, 0x00],
                Ok(Decoded::Incomplete { need: 1024 }),
            ),
            (b"\x03\x00\x00\x00\xff\x00a", Err(DecodeError::NotUtf8)),
            (b"\x03\x00\x00\x00a\x00\xff", Err(DecodeError::NotUtf8)),
            (&[0x01, 0x00], Ok(Decoded::Incomplete { need: 2 })),
        ];
        for (bytes, want) in table {
            assert_eq!(&decode_login(bytes), want, "{bytes:02x?}");
        }
    }

    #[test]
    fn anonymous_frame_is_what_encode_gives() {
        let mut out = Vec::new();
        let anon = Login {
            login: "",
            password: "",
        };
        assert!(anon.is_anonymous());
        encode_login(&anon, &mut out);
        assert_eq!(out, ANONYMOUS_LOGIN_FRAME);
    }

    #[test]
    fn split_at_every_index_and_round_trip() {
        let l = Login {
            login: "operator",
            password: "s3cret\0x",
        };
        let mut out = Vec::new();
        encode_login(&l, &mut out);
        for cut in 0..out.len() {
            let need = if cut < 4 { 4 - cut } else { out.len() - cut };
            assert_eq!(decode_login(&out[..cut]), Ok(Decoded::Incomplete { need }));
        }
        assert_eq!(
            decode_login(&out),
            Ok(Decoded::Frame {
                frame: l,
                len: out.len()
            })
        );
    }

    #[test]
    fn max_size_login_accepted() {
        let mut out = Vec::new();
        let password = "p".repeat(1024 - 2);
        encode_login(
            &Login {
                login: "u",
                password: &password,
            },
            &mut out,
        );
        assert!(matches!(
            decode_login(&out),
            Ok(Decoded::Frame { len: 1028, .. })
        ));
    }

    #[test]
    fn token() {
        let bytes: Vec<u8> = (0..40).collect();
        assert_eq!(decode_token(&bytes[..31]), Decoded::Incomplete { need: 1 });
        let Decoded::Frame { frame, len } = decode_token(&bytes) else {
            panic!("complete token");
        };
        assert_eq!(len, 32);
        assert_eq!(frame.0[31], 31);
        assert_eq!(format!("{frame:?}"), "Token(00010203…)");
        let secret = Login {
            login: "u",
            password: "hunter2",
        };
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
