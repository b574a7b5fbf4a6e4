//! The control socket: greeting and login, then requests and their one-byte
//! replies, strictly in order. [`Control`] is a plain value without locks or
//! threads; [`Client`](super::Client) keeps it behind a mutex so that the
//! keep-alive pinger never interleaves with a request and its reply.
//!
//! Replies map to results here: `01` → `Ok`, `FE` → [`Error::AccessDenied`],
//! `FF` → [`Error::Server`] (the session stays usable, unlike in the
//! reference clients), anything else → [`Error::Protocol`].

use std::io::{Read, Write};
use std::mem;
use std::time::{Duration, Instant};

use super::stream::{Stream, read_exact_or_eof};
use super::tls::TlsSetup;
use super::{Config, Error};
use crate::protocol::{
    CommMode, Decoded, GREETING_REPLY_LEN, Greeting, Login, Reply, Request, StreamKind, TOKEN_LEN,
    Token, decode_greeting_reply, decode_token, encode_greeting, encode_login, encode_request,
    encode_topics, validate_publish_topic,
};

/// Most pipelined requests whose replies are left unread. At this count
/// [`Control::publish_pipelined`] reads replies first, so the replies can
/// never fill both socket buffers and stall the server (1 byte each).
const MAX_IN_FLIGHT: usize = 4096;

/// Replies of pipelined publishes, counted by outcome.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PipelineReport {
    /// Replies `01`.
    pub ok: u64,
    /// Replies `FE` (access denied).
    pub denied: u64,
    /// Replies `FF` (server error, e.g. a topic too deep).
    pub failed: u64,
}

impl PipelineReport {
    /// All replies counted.
    pub fn total(&self) -> u64 {
        self.ok + self.denied + self.failed
    }

    /// `Ok` if every reply was `01`; otherwise the error of the first kind
    /// seen in the order access denied, server error.
    pub fn check(&self) -> Result<(), Error> {
        if self.denied > 0 {
            Err(Error::AccessDenied)
        } else if self.failed > 0 {
            Err(Error::Server(Reply::Error.into()))
        } else {
            Ok(())
        }
    }
}

/// A logged-in control socket.
#[derive(Debug)]
pub(crate) struct Control {
    stream: Stream,
    /// Encoding scratch, reused for every request.
    out: Vec<u8>,
    /// Pipelined requests whose replies have not been read.
    in_flight: usize,
    /// Replies of pipelined requests read so far.
    report: PipelineReport,
    /// When the last request went out (for the pinger).
    last_sent: Instant,
}

/// Greets (with TLS if `tls` is given), logs in and returns the control
/// socket and the client token.
pub(crate) fn open(config: &Config, tls: Option<&TlsSetup>) -> Result<(Control, Token), Error> {
    let stream = Stream::connect(config, config.timeout())?;
    let mut out = Vec::new();
    let mut stream = greet(stream, StreamKind::Control, tls, config.timeout(), &mut out)?;
    out.clear();
    let login = Login {
        login: config.user(),
        password: config.password(),
    };
    encode_login(&login, &mut out);
    stream_write(&mut stream, &out)?;
    let mut token = [0u8; TOKEN_LEN];
    if !read_exact_or_eof(&mut stream, &mut token)? {
        return Err(Error::LoginFailed);
    }
    let Decoded::Frame { frame: token, .. } = decode_token(&token) else {
        return Err(Error::protocol("short client token"));
    };
    let control = Control {
        stream,
        out,
        in_flight: 0,
        report: PipelineReport::default(),
        last_sent: Instant::now(),
    };
    Ok((control, token))
}

/// Sends the greeting for `kind` (comm byte `01` and then the TLS handshake
/// within `timeout` if `tls` is given) and checks the server's reply.
/// Returns the stream to go on with: the TLS one after a handshake.
pub(crate) fn greet(
    mut stream: Stream,
    kind: StreamKind,
    tls: Option<&TlsSetup>,
    timeout: Duration,
    out: &mut Vec<u8>,
) -> Result<Stream, Error> {
    out.clear();
    let greeting = Greeting {
        kind,
        comm: if tls.is_some() {
            CommMode::Tls
        } else {
            CommMode::Plain
        },
    };
    encode_greeting(greeting, out);
    stream_write(&mut stream, out)?;
    if let Some(setup) = tls {
        stream = stream.start_tls(setup, timeout)?;
    }
    let mut reply = [0u8; GREETING_REPLY_LEN];
    if !read_exact_or_eof(&mut stream, &mut reply)? {
        return Err(Error::protocol(if tls.is_some() {
            "the server closed the connection after the greeting"
        } else {
            "the server closed the connection after the greeting (does it require TLS?)"
        }));
    }
    match decode_greeting_reply(&reply)? {
        Decoded::Frame { frame, .. } if frame == kind => Ok(stream),
        _ => Err(Error::protocol(format!(
            "unexpected greeting reply {reply:02x?}"
        ))),
    }
}

fn stream_write(stream: &mut Stream, bytes: &[u8]) -> Result<(), Error> {
    stream.write_all(bytes)?;
    Ok(())
}

/// Maps a one-byte reply to a result.
pub(crate) fn check_reply(byte: u8) -> Result<(), Error> {
    match Reply::try_from(byte)? {
        Reply::Ok => Ok(()),
        Reply::AccessDenied => Err(Error::AccessDenied),
        Reply::Error => Err(Error::Server(byte)),
        Reply::OkWaiting | Reply::NotRequired => Err(Error::protocol(format!(
            "unexpected reply {byte:#04x} to a request that is not PUBLISH_REPL"
        ))),
    }
}

/// Refuses, before sending, a publish topic the server would close the
/// connection for (empty, `+` or `#` anywhere) or cut short (a NUL).
pub(crate) fn check_publish_topic(topic: &str) -> Result<(), Error> {
    if topic.is_empty() {
        return Err(Error::InvalidTopic(
            "an empty topic cannot be published".into(),
        ));
    }
    check_no_nul(topic)?;
    validate_publish_topic(topic)
        .map_err(|_| Error::InvalidTopic("'+' and '#' cannot be published".to_owned()))
}

/// A NUL would end the topic early (and split a subscribe request).
fn check_no_nul(topic: &str) -> Result<(), Error> {
    if topic.contains('\0') {
        return Err(Error::InvalidTopic(format!(
            "{topic:?} contains a NUL byte"
        )));
    }
    Ok(())
}

impl Control {
    /// A second handle to the socket, for shutting it down from elsewhere.
    pub(crate) fn shutdown_handle(&self) -> Result<Stream, Error> {
        Ok(self.stream.shutdown_handle()?)
    }

    /// When the last request was written.
    pub(crate) fn last_sent(&self) -> Instant {
        self.last_sent
    }

    /// Sends one request and waits for its reply. Replies of earlier
    /// pipelined publishes are read first and kept for
    /// [`Control::take_pipelined`].
    pub(crate) fn request(&mut self, req: &Request<'_>) -> Result<(), Error> {
        if let Request::Publish { topic, .. } = req {
            check_publish_topic(topic)?;
        }
        self.collect_in_flight()?;
        self.out.clear();
        encode_request(req, &mut self.out);
        self.send_out()?;
        self.read_reply()
    }

    /// SUBSCRIBE (`subscribe = true`) or UNSUBSCRIBE for a list of topics.
    pub(crate) fn topics(&mut self, subscribe: bool, topics: &[&str]) -> Result<(), Error> {
        for topic in topics {
            check_no_nul(topic)?;
        }
        self.collect_in_flight()?;
        self.out.clear();
        encode_topics(subscribe, topics.iter().copied(), &mut self.out);
        self.send_out()?;
        self.read_reply()
    }

    /// Writes a PUBLISH without reading its reply.
    pub(crate) fn publish_pipelined(
        &mut self,
        priority: u8,
        topic: &str,
        message: &[u8],
    ) -> Result<(), Error> {
        check_publish_topic(topic)?;
        if self.in_flight >= MAX_IN_FLIGHT {
            self.collect_in_flight()?;
        }
        self.out.clear();
        encode_request(
            &Request::Publish {
                priority,
                topic,
                message,
            },
            &mut self.out,
        );
        self.send_out()?;
        self.in_flight += 1;
        Ok(())
    }

    /// Reads every outstanding pipelined reply and returns all counted since
    /// the last call.
    pub(crate) fn take_pipelined(&mut self) -> Result<PipelineReport, Error> {
        self.collect_in_flight()?;
        Ok(mem::take(&mut self.report))
    }

    fn send_out(&mut self) -> Result<(), Error> {
        stream_write(&mut self.stream, &self.out)?;
        self.last_sent = Instant::now();
        Ok(())
    }

    fn read_reply(&mut self) -> Result<(), Error> {
        let mut reply = [0u8; 1];
        if !read_exact_or_eof(&mut self.stream, &mut reply)? {
            return Err(Error::Disconnected);
        }
        check_reply(reply[0])
    }

    /// Reads the replies of all pipelined requests (several per read).
    fn collect_in_flight(&mut self) -> Result<(), Error> {
        let mut buf = [0u8; 512];
        while self.in_flight > 0 {
            let want = self.in_flight.min(buf.len());
            let Some(chunk) = buf.get_mut(..want) else {
                break;
            };
            let n = match self.stream.read(chunk) {
                Ok(0) => return Err(Error::Disconnected),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            for &byte in chunk.iter().take(n) {
                match check_reply(byte) {
                    Ok(()) => self.report.ok += 1,
                    Err(Error::AccessDenied) => self.report.denied += 1,
                    Err(Error::Server(_)) => self.report.failed += 1,
                    Err(e) => return Err(e),
                }
            }
            self.in_flight -= n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes() {
        assert!(check_reply(0x01).is_ok());
        assert!(matches!(check_reply(0xFE), Err(Error::AccessDenied)));
        assert!(matches!(check_reply(0xFF), Err(Error::Server(0xFF))));
        assert!(matches!(check_reply(0x02), Err(Error::Protocol(_))));
        assert!(matches!(check_reply(0xE0), Err(Error::Protocol(_))));
        assert!(matches!(check_reply(0x00), Err(Error::Protocol(_))));
        assert!(matches!(check_reply(0x42), Err(Error::Protocol(_))));
    }

    #[test]
    fn topics_checked_before_sending() {
        assert!(check_publish_topic("a/b").is_ok());
        assert!(check_publish_topic("/").is_ok());
        for bad in ["", "a/#", "a/+/c", "a+b", "a\0b"] {
            assert!(
                matches!(check_publish_topic(bad), Err(Error::InvalidTopic(_))),
                "{bad:?}"
            );
        }
        assert!(check_no_nul("a/#").is_ok());
        assert!(check_no_nul("x\0").is_err());
    }

    #[test]
    fn pipeline_report() {
        let r = PipelineReport {
            ok: 2,
            denied: 0,
            failed: 1,
        };
        assert_eq!(r.total(), 3);
        assert!(matches!(r.check(), Err(Error::Server(0xFF))));
        assert!(PipelineReport::default().check().is_ok());
    }
}
