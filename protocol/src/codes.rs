//! Wire constants: op codes, reply codes, stream kinds, communication modes
//! and UDP auth types, each a `#[repr(u8)]` enum with `TryFrom<u8>`.

use crate::DecodeError;

/// Protocol version sent in greeting replies and UDP headers (u16 LE `01 00`).
pub const PROTOCOL_VERSION: u16 = 1;

/// IANA port of PSRT, TCP and UDP.
pub const DEFAULT_PORT: u16 = 2873;

/// Priority byte both published clients send. The server passes it through.
pub const DEFAULT_PRIORITY: u8 = 0x7F;

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident, $err:ident { $($(#[$vmeta:meta])* $variant:ident = $byte:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $byte,)+
        }

        impl TryFrom<u8> for $name {
            type Error = DecodeError;
            fn try_from(byte: u8) -> Result<Self, DecodeError> {
                match byte {
                    $($byte => Ok(Self::$variant),)+
                    other => Err(DecodeError::$err(other)),
                }
            }
        }

        impl From<$name> for u8 {
            fn from(v: $name) -> u8 {
                v as u8
            }
        }
    };
}

wire_enum!(
    /// Control-socket request op codes (and the UDP op codes, see [`UdpOp`]).
    Op, UnknownOp {
        /// Ping / keep-alive; answered with OK.
        Nop = 0x00,
        /// `PRIO LEN TOPIC 00 MESSAGE`.
        Publish = 0x01,
        /// `LEN TOPIC [00 TOPIC…]`.
        Subscribe = 0x02,
        /// `LEN TOPIC [00 TOPIC…]`.
        Unsubscribe = 0x03,
        /// Cluster replication: `LEN TOPIC`, then (after OK_WAITING) the body.
        PublishRepl = 0x11,
        /// psrtd extension: `ORIGIN(u64 LE)`; OK means the node takes
        /// [`Op::PublishReplSeq`] (a reference node closes: unknown op).
        ReplHello = 0x12,
        /// psrtd extension, one frame per message, pipelined:
        /// `PRIO TIMESTAMP(u64) SEQ(u64) LEN TOPIC 00 MESSAGE`.
        PublishReplSeq = 0x13,
        /// End of session: OK, then the server closes both sockets.
        Bye = 0xFF,
    }
);

wire_enum!(
    /// One-byte replies on the control socket (and the UDP ack code).
    Reply, UnknownReply {
        /// Success. Also the first byte of a pushed message frame.
        Ok = 0x01,
        /// PUBLISH_REPL: send the body now.
        OkWaiting = 0x02,
        /// PUBLISH_REPL: no local subscribers, do not send the body.
        NotRequired = 0xE0,
        /// Access denied by the ACL.
        AccessDenied = 0xFE,
        /// Any other error.
        Error = 0xFF,
    }
);

wire_enum!(
    /// Third byte of a greeting.
    CommMode, UnknownComm {
        /// Plain TCP (or a Unix socket).
        Plain = 0x00,
        /// TLS handshake follows the three greeting bytes.
        Tls = 0x01,
    }
);

wire_enum!(
    /// Op byte inside a UDP datagram.
    UdpOp, UnknownOp {
        /// Publish and send a 5-byte ack.
        Publish = 0x01,
        /// Publish without an ack.
        PublishNoAck = 0x21,
    }
);

wire_enum!(
    /// AES-GCM variant of an encrypted UDP datagram (its auth type byte).
    UdpCipher, UnknownAuth {
        /// AES-128-GCM with the first 16 bytes of the login's 32-byte key.
        Aes128Gcm = 0x02,
        /// AES-256-GCM with the whole 32-byte key.
        Aes256Gcm = 0x03,
    }
);

impl UdpOp {
    /// Whether the sender waits for an ack.
    pub fn wants_ack(self) -> bool {
        self == Self::Publish
    }
}

/// Which socket of a client a greeting opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// `EE AA`: requests and one-byte replies.
    Control,
    /// `EE AB`: messages pushed by the server.
    Data,
}

impl StreamKind {
    /// The two magic bytes that open this kind of stream.
    pub fn magic(self) -> [u8; 2] {
        match self {
            Self::Control => [0xEE, 0xAA],
            Self::Data => [0xEE, 0xAB],
        }
    }

    /// Recognises the two magic bytes.
    pub fn from_magic(magic: [u8; 2]) -> Result<Self, DecodeError> {
        match magic {
            [0xEE, 0xAA] => Ok(Self::Control),
            [0xEE, 0xAB] => Ok(Self::Data),
            other => Err(DecodeError::BadMagic(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips_or_is_rejected() {
        for b in 0..=u8::MAX {
            if let Ok(op) = Op::try_from(b) {
                assert_eq!(u8::from(op), b);
            } else {
                assert_eq!(Op::try_from(b), Err(DecodeError::UnknownOp(b)));
            }
            if let Ok(r) = Reply::try_from(b) {
                assert_eq!(u8::from(r), b);
            }
            if let Ok(c) = CommMode::try_from(b) {
                assert_eq!(u8::from(c), b);
            }
            if let Ok(o) = UdpOp::try_from(b) {
                assert_eq!(u8::from(o), b);
            }
            if let Ok(c) = UdpCipher::try_from(b) {
                assert_eq!(u8::from(c), b);
            }
        }
    }

    #[test]
    fn reference_byte_values() {
        assert_eq!(u8::from(Op::Nop), 0x00);
        assert_eq!(u8::from(Op::Publish), 0x01);
        assert_eq!(u8::from(Op::Subscribe), 0x02);
        assert_eq!(u8::from(Op::Unsubscribe), 0x03);
        assert_eq!(u8::from(Op::PublishRepl), 0x11);
        assert_eq!(u8::from(Op::Bye), 0xFF);
        assert_eq!(u8::from(Reply::Ok), 0x01);
        assert_eq!(u8::from(Reply::OkWaiting), 0x02);
        assert_eq!(u8::from(Reply::NotRequired), 0xE0);
        assert_eq!(u8::from(Reply::AccessDenied), 0xFE);
        assert_eq!(u8::from(Reply::Error), 0xFF);
        assert_eq!(u8::from(UdpOp::PublishNoAck), 0x21);
        assert_eq!(u8::from(UdpCipher::Aes128Gcm), 0x02);
        assert_eq!(u8::from(UdpCipher::Aes256Gcm), 0x03);
        assert!(Op::try_from(0x21).is_err(), "0x21 is UDP-only");
        assert!(
            UdpCipher::try_from(0x01).is_err(),
            "AUTH_KEY_PLAIN is rejected"
        );
        assert!(UdpOp::Publish.wants_ack());
        assert!(!UdpOp::PublishNoAck.wants_ack());
    }

    #[test]
    fn magic() {
        assert_eq!(
            StreamKind::from_magic([0xEE, 0xAA]),
            Ok(StreamKind::Control)
        );
        assert_eq!(StreamKind::from_magic([0xEE, 0xAB]), Ok(StreamKind::Data));
        assert_eq!(
            StreamKind::from_magic([0x47, 0x45]),
            Err(DecodeError::BadMagic([0x47, 0x45]))
        );
        assert_eq!(StreamKind::Data.magic(), [0xEE, 0xAB]);
    }
}
