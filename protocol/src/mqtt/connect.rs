//! CONNECT (the first packet of a connection) and CONNACK (its answer).
//!
//! ```text
//! CONNECT  10 RL | 00 04 "MQTT" 04 | FLAGS | KEEPALIVE(u16) |
//!          CLIENT-ID [WILL-TOPIC WILL-MESSAGE] [USERNAME] [PASSWORD]
//!          FLAGS: 80 username, 40 password, 20 will retain,
//!                 18 will QoS, 04 will, 02 clean session, 01 reserved (0)
//! CONNACK  20 02 | SESSION-PRESENT (0/1) | RETURN CODE
//! ```
//!
//! MQTT 3.1 (`00 06 "MQIsdp" 03`) has the same layout and is accepted as
//! [`Protocol::V31`]. Any other level of `MQTT` (MQTT 5 is `05`) is
//! [`MqttError::UnsupportedLevel`], so a server can answer CONNACK 1.

use super::header::{Reader, put_bytes, put_header, put_u16};
use super::{MqttError, QoS, kind};
use crate::DecodeError;

/// The protocol a CONNECT names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `MQIsdp`, level 3.
    V31,
    /// `MQTT`, level 4.
    V311,
}

/// The last will: published by the server if the connection ends without
/// a DISCONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Will<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Payload.
    pub message: &'a [u8],
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
}

/// A CONNECT packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connect<'a> {
    /// Protocol name and level.
    pub protocol: Protocol,
    /// Start a new session (true) or resume a stored one.
    pub clean_session: bool,
    /// Seconds; 0 turns the keep-alive off.
    pub keep_alive: u16,
    /// May be empty (a server assigns one, clean sessions only).
    pub client_id: &'a str,
    /// The last will, if any.
    pub will: Option<Will<'a>>,
    /// User name.
    pub username: Option<&'a str>,
    /// Password (binary; only with a user name).
    pub password: Option<&'a [u8]>,
}

const USERNAME: u8 = 0x80;
const PASSWORD: u8 = 0x40;
const WILL_RETAIN: u8 = 0x20;
const WILL: u8 = 0x04;
const CLEAN: u8 = 0x02;
const RESERVED: u8 = 0x01;

pub(crate) fn decode_connect<'a>(r: &mut Reader<'a>) -> Result<Connect<'a>, DecodeError> {
    let name = r.bytes("protocol name")?;
    let level = r.u8("protocol level")?;
    let protocol = match (name, level) {
        (b"MQTT", 4) => Protocol::V311,
        (b"MQIsdp", 3) => Protocol::V31,
        (b"MQTT" | b"MQIsdp", level) => return Err(MqttError::UnsupportedLevel(level).into()),
        _ => return Err(MqttError::BadProtocolName.into()),
    };
    let flags = r.u8("connect flags")?;
    let will_qos = QoS::from_bits((flags >> 3) & 0b11)?;
    let has_will = flags & WILL != 0;
    let bad = flags & RESERVED != 0
        || (!has_will && (will_qos != QoS::AtMostOnce || flags & WILL_RETAIN != 0))
        || (flags & PASSWORD != 0 && flags & USERNAME == 0);
    if bad {
        return Err(MqttError::BadConnectFlags.into());
    }
    let keep_alive = r.u16("keep alive")?;
    let client_id = r.str("client identifier")?;
    let will = if has_will {
        Some(Will {
            topic: r.str("will topic")?,
            message: r.bytes("will message")?,
            qos: will_qos,
            retain: flags & WILL_RETAIN != 0,
        })
    } else {
        None
    };
    let username = match flags & USERNAME {
        0 => None,
        _ => Some(r.str("user name")?),
    };
    let password = match flags & PASSWORD {
        0 => None,
        _ => Some(r.bytes("password")?),
    };
    Ok(Connect {
        protocol,
        clean_session: flags & CLEAN != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
    })
}

impl Connect<'_> {
    /// Appends the packet. A password without a user name is not
    /// representable and is left out.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (name, level): (&[u8], u8) = match self.protocol {
            Protocol::V311 => (b"MQTT", 4),
            Protocol::V31 => (b"MQIsdp", 3),
        };
        let password = self.password.filter(|_| self.username.is_some());
        let mut flags = 0;
        let mut len = 2 + name.len() + 1 + 1 + 2 + 2 + self.client_id.len();
        if let Some(w) = &self.will {
            flags |= WILL | (w.qos as u8) << 3 | if w.retain { WILL_RETAIN } else { 0 };
            len += 4 + w.topic.len() + w.message.len();
        }
        if let Some(u) = self.username {
            flags |= USERNAME;
            len += 2 + u.len();
        }
        if let Some(p) = password {
            flags |= PASSWORD;
            len += 2 + p.len();
        }
        if self.clean_session {
            flags |= CLEAN;
        }
        put_header(out, kind::CONNECT << 4, len);
        put_bytes(out, name);
        out.push(level);
        out.push(flags);
        put_u16(out, self.keep_alive);
        put_bytes(out, self.client_id.as_bytes());
        if let Some(w) = &self.will {
            put_bytes(out, w.topic.as_bytes());
            put_bytes(out, w.message);
        }
        if let Some(u) = self.username {
            put_bytes(out, u.as_bytes());
        }
        if let Some(p) = password {
            put_bytes(out, p);
        }
    }
}

/// CONNACK return codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectCode {
    /// 0: connection accepted.
    Accepted = 0,
    /// 1: the server does not speak the requested protocol level.
    UnacceptableProtocol = 1,
    /// 2: client identifier refused.
    IdentifierRejected = 2,
    /// 3: server unavailable.
    ServerUnavailable = 3,
    /// 4: malformed user name or password.
    BadUserNameOrPassword = 4,
    /// 5: not authorized.
    NotAuthorized = 5,
}

impl TryFrom<u8> for ConnectCode {
    type Error = DecodeError;
    fn try_from(b: u8) -> Result<Self, DecodeError> {
        Ok(match b {
            0 => Self::Accepted,
            1 => Self::UnacceptableProtocol,
            2 => Self::IdentifierRejected,
            3 => Self::ServerUnavailable,
            4 => Self::BadUserNameOrPassword,
            5 => Self::NotAuthorized,
            other => return Err(MqttError::BadCode(other).into()),
        })
    }
}

/// A CONNACK packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnAck {
    /// The server resumed a stored session.
    pub session_present: bool,
    /// The return code.
    pub code: ConnectCode,
}

pub(crate) fn decode_connack(r: &mut Reader<'_>) -> Result<ConnAck, DecodeError> {
    let flags = r.u8("acknowledge flags")?;
    if flags > 1 {
        return Err(MqttError::BadConnectFlags.into());
    }
    Ok(ConnAck {
        session_present: flags == 1,
        code: ConnectCode::try_from(r.u8("return code")?)?,
    })
}

/// Appends a CONNACK.
pub fn encode_connack(session_present: bool, code: ConnectCode, out: &mut Vec<u8>) {
    out.extend_from_slice(&[kind::CONNACK << 4, 2, u8::from(session_present), code as u8]);
}
