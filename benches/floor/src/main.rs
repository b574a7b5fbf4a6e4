//! psrt-floor: the least a PSRT server can do for `pbench --psrt-ack`.
//!
//! It speaks just enough PSRT for pbench: the control greeting, an
//! anonymous login (any login is accepted), the data-socket handshake,
//! SUBSCRIBE (acknowledged, not recorded) and PUBLISH, which is answered
//! with `0x01` and then forwarded byte for byte to every data socket.
//! One blocking thread per socket: a reply costs one `read` and two
//! `write`s, with no event loop, no matching, no queue. The distance of a
//! real server from this figure, measured in the same run, is what the
//! server adds to the round trip (issue 13).
//!
//! Usage: `psrt-floor ADDR` (e.g. `127.0.0.1:0`); prints `listening PORT`.
//! Not a server: no limits, no ACL, no topics. Benchmarks only.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

type Subscribers = Arc<Mutex<Vec<TcpStream>>>;

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = TcpListener::bind(&addr).expect("bind");
    println!("listening {}", listener.local_addr().unwrap().port());
    let subs: Subscribers = Arc::default();
    for stream in listener.incoming().flatten() {
        let subs = subs.clone();
        thread::spawn(move || {
            let _ = serve(stream, &subs);
        });
    }
}

fn serve(mut s: TcpStream, subs: &Subscribers) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let mut hello = [0u8; 3];
    s.read_exact(&mut hello)?;
    match hello {
        [0xEE, 0xAA, _] => {
            s.write_all(&[0xEE, 0xAA, 0x02, 0x00])?;
            let mut len = [0u8; 4];
            s.read_exact(&mut len)?;
            let mut login = vec![0u8; u32::from_le_bytes(len).min(4096) as usize];
            s.read_exact(&mut login)?;
            s.write_all(&[7u8; 32])?;
            control(s, subs)
        }
        [0xEE, 0xAB, _] => {
            s.write_all(&[0xEE, 0xAB, 0x02, 0x00])?;
            let mut token_and_timeout = [0u8; 33];
            s.read_exact(&mut token_and_timeout)?;
            s.write_all(&[0x01])?;
            subs.lock().unwrap().push(s);
            Ok(())
        }
        _ => Ok(()),
    }
}

fn control(mut s: TcpStream, subs: &Subscribers) -> std::io::Result<()> {
    // One read takes whatever has arrived; every complete frame in it is
    // answered and forwarded; a partial frame waits for the next read.
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = 0;
    loop {
        if have == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = s.read(&mut buf[have..])?;
        if n == 0 {
            return Ok(());
        }
        have += n;
        let mut at = 0;
        while let Some(len) = frame_len(&buf[at..have]) {
            let frame = &buf[at..at + len];
            match frame[0] {
                0x01 => {
                    s.write_all(&[0x01])?;
                    // A subscriber that has gone away is forgotten.
                    subs.lock().unwrap().retain_mut(|sub| sub.write_all(frame).is_ok());
                }
                0x00 | 0x02 | 0x03 => s.write_all(&[0x01])?,
                _ => return Ok(()),
            }
            at += len;
        }
        buf.copy_within(at..have, 0);
        have -= at;
    }
}

/// The length of the complete frame at the start of `b`, if it is all there:
/// NOP is one byte, PUBLISH is op, priority, u32 LE length, body;
/// SUBSCRIBE/UNSUBSCRIBE are op, u32 LE length, body.
fn frame_len(b: &[u8]) -> Option<usize> {
    let (head, at) = match *b.first()? {
        0x01 => (6, 2),
        0x02 | 0x03 => (5, 1),
        _ => return Some(1),
    };
    if b.len() < head {
        return None;
    }
    let len = head + u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    (b.len() >= len).then_some(len)
}
