//! The data socket: its greeting and hello, and the reader thread that
//! reassembles pushed frames (they may arrive split anywhere) and hands the
//! messages to a bounded channel. NOP beacons only prove the socket is
//! alive; silence for longer than the read timeout ends the client.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use super::conn::Shared;
use super::control::{check_reply, greet};
use super::stream::{Stream, read_exact_or_eof};
use super::tls::TlsSetup;
use super::{Config, Error, Message};
use crate::protocol::{
    DataFrame, DataHello, DecodeError, Decoded, Limits, StreamKind, Token, decode_data_frame,
    encode_data_hello,
};

/// Bytes asked of the socket per read when no frame size is known yet.
const READ_CHUNK: usize = 64 * 1024;
/// Largest single read, also when a big frame is known to follow: the
/// buffer grows with the bytes that really arrive, not with announced sizes.
const MAX_READ_CHUNK: usize = 1024 * 1024;
/// An empty buffer larger than this is shrunk back after a big message.
const KEEP_CAPACITY: usize = 4 * MAX_READ_CHUNK;

/// Opens the data socket for `token`: greeting (and the TLS handshake if
/// `tls` is given), hello, reply `01`.
pub(crate) fn open(config: &Config, token: Token, tls: Option<&TlsSetup>) -> Result<Stream, Error> {
    let timeout_sec = config.data_timeout_byte();
    // The server beacons every TIMEOUT_SEC/2; never wait less than that.
    let read_timeout = config
        .timeout()
        .max(Duration::from_secs(u64::from(timeout_sec)));
    let stream = Stream::connect(config, read_timeout)?;
    let mut out = Vec::new();
    // The handshake gets the client timeout; reads then wait `read_timeout`.
    let mut stream = greet(stream, StreamKind::Data, tls, config.timeout(), &mut out)?;
    stream.set_timeouts(read_timeout)?;
    out.clear();
    encode_data_hello(&DataHello { token, timeout_sec }, &mut out);
    stream.write_all(&out)?;
    let mut reply = [0u8; 1];
    if !read_exact_or_eof(&mut stream, &mut reply)? {
        return Err(Error::protocol(
            "the server closed the data socket without answering the hello",
        ));
    }
    check_reply(reply[0])?;
    Ok(stream)
}

/// One decoded data-socket frame, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DataEvent {
    /// A NOP beacon.
    Beacon,
    /// A pushed message.
    Message(Message),
}

/// Buffers bytes of the data stream and cuts them into frames. The buffer
/// is zeroed once when it grows, not on every read.
#[derive(Debug)]
pub(crate) struct FrameBuffer {
    buf: Vec<u8>,
    /// First undecoded byte.
    start: usize,
    /// End of the bytes read so far; `buf[end..]` is free space.
    end: usize,
    /// Bytes the decoder last said it still needs.
    need: usize,
    limits: Limits,
}

impl FrameBuffer {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            end: 0,
            need: 1,
            limits,
        }
    }

    /// Appends bytes (used by the tests; the reader uses [`Self::fill_from`]).
    #[cfg(test)]
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.make_room(bytes.len());
        if let Some(free) = self.buf.get_mut(self.end..self.end + bytes.len()) {
            free.copy_from_slice(bytes);
            self.end += bytes.len();
        }
    }

    /// One read from `r` into the buffer; `Ok(0)` is end of stream.
    pub(crate) fn fill_from(&mut self, mut r: impl Read) -> io::Result<usize> {
        self.make_room(self.need.clamp(READ_CHUNK, MAX_READ_CHUNK));
        let n = match self.buf.get_mut(self.end..) {
            Some(free) => r.read(free)?,
            None => 0,
        };
        self.end += n;
        Ok(n)
    }

    /// The next complete frame, if the buffer holds one.
    pub(crate) fn next_frame(&mut self) -> Result<Option<DataEvent>, DecodeError> {
        let pending = self.buf.get(self.start..self.end).unwrap_or_default();
        let (event, len) = match decode_data_frame(pending, &self.limits)? {
            Decoded::Incomplete { need } => {
                self.need = need;
                return Ok(None);
            }
            Decoded::Frame {
                frame: DataFrame::Nop,
                len,
            } => (DataEvent::Beacon, len),
            Decoded::Frame {
                frame: DataFrame::Message(push),
                len,
            } => (
                DataEvent::Message(Message {
                    topic: push.topic.to_owned(),
                    data: push.message.to_vec(),
                    priority: push.priority,
                }),
                len,
            ),
        };
        self.start += len;
        self.need = 1;
        Ok(Some(event))
    }

    /// Makes at least `want` bytes free after `end`: moves undecoded bytes
    /// to the front, grows the buffer if that is not enough, and gives
    /// memory back after a big message.
    fn make_room(&mut self, want: usize) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > KEEP_CAPACITY {
                self.buf.truncate(READ_CHUNK);
                self.buf.shrink_to_fit();
            }
        }
        if self.buf.len() - self.end >= want {
            return;
        }
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.buf.len() - self.end < want {
            self.buf.resize(self.end + want, 0);
        }
    }
}

/// Body of the data reader thread: reads until the socket ends, then closes
/// the client (the reason is logged unless the client was closed on purpose).
pub(crate) fn run_reader(
    mut stream: Stream,
    limits: Limits,
    tx: SyncSender<Message>,
    shared: Arc<Shared>,
) {
    let reason = read_loop(&mut stream, limits, &tx);
    if shared.is_connected() {
        log::warn!("data socket closed: {reason}");
        shared.close();
    } else {
        log::debug!("data reader stopped: {reason}");
    }
}

/// Reads and delivers messages; returns why it stopped.
fn read_loop(stream: &mut Stream, limits: Limits, tx: &SyncSender<Message>) -> Error {
    let mut frames = FrameBuffer::new(limits);
    // Once the receiver is gone, keep reading (beacons keep the socket
    // alive) but drop the messages.
    let mut deliver = true;
    loop {
        match frames.fill_from(&mut *stream) {
            Ok(0) => return Error::Disconnected,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return e.into(),
        }
        loop {
            match frames.next_frame() {
                Ok(None) => break,
                Ok(Some(DataEvent::Beacon)) => {}
                Ok(Some(DataEvent::Message(message))) => {
                    if deliver && tx.send(message).is_err() {
                        deliver = false;
                    }
                }
                Err(e) => return e.into(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Push, encode_nop_beacon, encode_push};

    fn stream_bytes() -> (Vec<u8>, Vec<DataEvent>) {
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        encode_nop_beacon(&mut bytes);
        want.push(DataEvent::Beacon);
        let big: Vec<u8> = (0..=255).cycle().take(3000).collect();
        for (priority, topic, message) in [
            (0x7f, "a/b", &b"xyz"[..]),
            (0x10, "", &b""[..]),
            (0x7f, "big/one", &big[..]),
            (0x00, "t", &b"with\0nul"[..]),
        ] {
            encode_push(
                &Push {
                    priority,
                    topic,
                    message,
                },
                &mut bytes,
            );
            want.push(DataEvent::Message(Message {
                topic: topic.to_owned(),
                data: message.to_vec(),
                priority,
            }));
            encode_nop_beacon(&mut bytes);
            want.push(DataEvent::Beacon);
        }
        (bytes, want)
    }

    fn drain(frames: &mut FrameBuffer, got: &mut Vec<DataEvent>) {
        while let Some(event) = frames.next_frame().unwrap() {
            got.push(event);
        }
    }

    #[test]
    fn split_at_every_byte_boundary() {
        let (bytes, want) = stream_bytes();
        for cut in 0..=bytes.len() {
            let mut frames = FrameBuffer::new(Limits::default());
            let mut got = Vec::new();
            frames.push(&bytes[..cut]);
            drain(&mut frames, &mut got);
            frames.push(&bytes[cut..]);
            drain(&mut frames, &mut got);
            assert_eq!(got, want, "cut at {cut}");
        }
    }

    #[test]
    fn byte_by_byte_and_through_read() {
        let (bytes, want) = stream_bytes();
        let mut frames = FrameBuffer::new(Limits::default());
        let mut got = Vec::new();
        for b in &bytes {
            frames.push(std::slice::from_ref(b));
            drain(&mut frames, &mut got);
        }
        assert_eq!(got, want);

        // fill_from with a reader that returns 7 bytes at a time.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(7).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut src = Trickle(&bytes);
        let mut frames = FrameBuffer::new(Limits::default());
        let mut got = Vec::new();
        while frames.fill_from(&mut src).unwrap() > 0 {
            drain(&mut frames, &mut got);
        }
        assert_eq!(got, want);
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut frames = FrameBuffer::new(Limits::default());
        frames.push(&[0x02]);
        assert_eq!(frames.next_frame(), Err(DecodeError::UnknownFrame(2)));

        let limits = Limits {
            max_pub_size: 10,
            ..Limits::default()
        };
        let mut frames = FrameBuffer::new(limits);
        frames.push(&[0x01, 0x7f, 11, 0, 0, 0]);
        assert_eq!(
            frames.next_frame(),
            Err(DecodeError::FrameTooLarge { len: 11, max: 10 })
        );
    }
}
