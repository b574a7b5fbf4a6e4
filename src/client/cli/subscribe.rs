//! Subscribe mode: print every message as its topic, a `---` line and the
//! payload, until Ctrl-C (then BYE) or until the server goes away.

use std::borrow::Cow;
use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;

use super::{connection_lost, interrupted_bye, subscribe_all};
use crate::client::{Client, Message};

/// How often the loop looks at the Ctrl-C flag while no message comes.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Messages printed before stdout is flushed even if more are queued.
const FLUSH_EVERY: usize = 256;

/// Runs subscribe mode.
pub(crate) fn run(client: &Client, topics: &[String], stop: &AtomicBool) -> Result<(), String> {
    let rx = subscribe_all(client, topics)?;
    let mut out = BufWriter::new(io::stdout().lock());
    loop {
        if stop.load(Ordering::Relaxed) {
            return interrupted_bye(client);
        }
        let first = match rx.recv_timeout(POLL_INTERVAL) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(connection_lost(client));
            }
        };
        if let Err(e) = print_batch(&mut out, &first, &rx) {
            // E.g. `psrt-cli ... | head`: the reader is gone, so are we.
            log::debug!("stdout closed: {e}");
            return client.bye().map_err(|e| e.to_string());
        }
    }
}

/// Prints `first` and whatever else is queued (up to a bound), then flushes.
fn print_batch(out: &mut impl Write, first: &Message, rx: &Receiver<Message>) -> io::Result<()> {
    print_message(out, first)?;
    for _ in 1..FLUSH_EVERY {
        match rx.try_recv() {
            Ok(message) => print_message(out, &message)?,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
        }
    }
    out.flush()
}

fn print_message(out: &mut impl Write, message: &Message) -> io::Result<()> {
    writeln!(out, "{}", escape_controls(&message.topic))?;
    writeln!(out, "---")?;
    writeln!(out, "{}", render_payload(&message.data))
}

/// The payload as text if it is UTF-8 (control characters other than
/// newline and tab escaped, so a payload cannot drive the terminal),
/// otherwise as a list of hex bytes: `[0, 1, ff]`.
pub(crate) fn render_payload(data: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(data) {
        Ok(text) => escape_controls(text),
        Err(_) => Cow::Owned(format!("{data:x?}")),
    }
}

fn escape_controls(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.contains(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_rendering() {
        assert_eq!(render_payload(b"21.5"), "21.5");
        assert_eq!(render_payload(b"{\"a\":\n\t1}"), "{\"a\":\n\t1}");
        assert_eq!(render_payload("zürich".as_bytes()), "zürich");
        assert_eq!(render_payload(b"\x1b[2Jboo"), "\\u{1b}[2Jboo");
        assert_eq!(render_payload(&[0, 1, 0xff, 0x10]), "[0, 1, ff, 10]");
        assert_eq!(render_payload(b""), "");
    }

    #[test]
    fn message_layout() {
        let mut out = Vec::new();
        let message = Message {
            topic: "a/b".into(),
            data: b"hello".to_vec(),
            priority: 0x7F,
        };
        print_message(&mut out, &message).unwrap();
        assert_eq!(out, b"a/b\n---\nhello\n");
    }
}
