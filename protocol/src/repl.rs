//! PUBLISH_REPL's second phase (the body after `02`), and the psrtd
//! replication extension (`REPL_HELLO 12`, `PUBLISH_REPL_SEQ 13`):
//! a whole replicated message in one frame with the origin's sequence
//! number, so a link can keep many in flight. A reference node does not know
//! these ops (it closes the connection); the sender then falls back to the
//! two-phase PUBLISH_REPL. See `protocol/README.md`.

use crate::wire::{LEN_BYTES, len_prefixed, put_len, topic_message, u64_at};
use crate::{DecodeError, Decoded, Limits, Op, Request};

/// Length of a PUBLISH_REPL_SEQ header after the op: `PRIO TIMESTAMP SEQ LEN`.
pub const REPL_SEQ_HEADER_LEN: usize = 1 + 8 + 8 + LEN_BYTES;

pub(crate) fn decode_publish_repl_seq<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Decoded<Request<'a>>, DecodeError> {
    let (Some(&priority), Some(timestamp_ns), Some(seq)) =
        (buf.first(), u64_at(buf, 1), u64_at(buf, 9))
    else {
        return Ok(Decoded::Incomplete {
            need: REPL_SEQ_HEADER_LEN - buf.len(),
        });
    };
    let rest = buf.get(17..).unwrap_or_default();
    let ((topic, message), len) = match topic_message(rest, limits.max_pub_size)? {
        Decoded::Frame { frame, len } => (frame, len),
        Decoded::Incomplete { need } => return Ok(Decoded::Incomplete { need }),
    };
    Ok(Decoded::Frame {
        frame: Request::PublishReplSeq {
            priority,
            timestamp_ns,
            seq,
            topic,
            message,
        },
        len: len + 17,
    })
}

/// Appends a PUBLISH_REPL_SEQ frame without its message (op, header, topic,
/// NUL), for a writer that sends the message from its own buffer.
pub fn encode_repl_seq_head(
    priority: u8,
    timestamp_ns: u64,
    seq: u64,
    topic: &str,
    message_len: usize,
    out: &mut Vec<u8>,
) {
    out.push(Op::PublishReplSeq.into());
    out.push(priority);
    out.extend_from_slice(&timestamp_ns.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    put_len(out, topic.len() + 1 + message_len);
    out.extend_from_slice(topic.as_bytes());
    out.push(0);
}

/// Second phase of PUBLISH_REPL: `PRIO TIMESTAMP(u64 LE ns) LEN MESSAGE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplBody<'a> {
    /// Priority byte from the origin node.
    pub priority: u8,
    /// Publish time on the origin node, ns since the Unix epoch.
    pub timestamp_ns: u64,
    /// The message.
    pub message: &'a [u8],
}

const REPL_HEADER: usize = 1 + 8;

/// Decodes a PUBLISH_REPL body; `LEN <= max_pub_size`.
pub fn decode_repl_body<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Decoded<ReplBody<'a>>, DecodeError> {
    let (Some(&priority), Some(timestamp_ns)) = (buf.first(), u64_at(buf, 1)) else {
        return Ok(Decoded::Incomplete {
            need: REPL_HEADER + LEN_BYTES - buf.len(),
        });
    };
    let rest = buf.get(REPL_HEADER..).unwrap_or_default();
    Ok(len_prefixed(rest, limits.max_pub_size)?
        .map(|message| ReplBody {
            priority,
            timestamp_ns,
            message,
        })
        .after_header(REPL_HEADER))
}

/// Length of a PUBLISH_REPL body's header (`PRIO TIMESTAMP LEN`).
pub const REPL_BODY_HEADER_LEN: usize = REPL_HEADER + LEN_BYTES;

/// Appends `PRIO TIMESTAMP LEN`: everything of a PUBLISH_REPL body but the
/// message, for a writer that sends a large message from its own buffer.
pub fn encode_repl_body_header(
    priority: u8,
    timestamp_ns: u64,
    message_len: usize,
    out: &mut Vec<u8>,
) {
    out.push(priority);
    out.extend_from_slice(&timestamp_ns.to_le_bytes());
    put_len(out, message_len);
}

/// Appends a PUBLISH_REPL body.
pub fn encode_repl_body(body: &ReplBody<'_>, out: &mut Vec<u8>) {
    encode_repl_body_header(body.priority, body.timestamp_ns, body.message.len(), out);
    out.extend_from_slice(body.message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode_request;

    #[test]
    fn publish_repl_seq_layout_and_limits() {
        let limits = Limits {
            max_pub_size: 8,
            ..Limits::default()
        };
        let mut v = Vec::new();
        encode_repl_seq_head(0x7f, 1, 2, "a/b", 4, &mut v);
        assert_eq!(v.len(), 1 + REPL_SEQ_HEADER_LEN + 4);
        assert_eq!(
            &v[18..22],
            &8u32.to_le_bytes(),
            "LEN = topic + NUL + message"
        );
        v.extend_from_slice(b"wxyz");
        assert!(matches!(
            decode_request(&v, &limits),
            Ok(Decoded::Frame { len: 30, .. })
        ));
        let mut big = Vec::new();
        encode_repl_seq_head(0x7f, 1, 2, "a/b", 5, &mut big);
        assert!(
            decode_request(&big, &limits).is_err(),
            "LEN above max_pub_size"
        );
        let mut no_topic = Vec::new();
        encode_repl_seq_head(0x7f, 1, 2, "", 0, &mut no_topic);
        assert_eq!(
            decode_request(&no_topic, &limits),
            Err(DecodeError::EmptyTopic)
        );
    }
}
