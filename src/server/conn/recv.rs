//! `RecvBuf`: a connection's input bytes. Frames are decoded in place from
//! `data()`; a partial frame stays until the rest arrives.
//!
//! The buffer is allocated only while it holds bytes: an idle connection owns
//! no input memory, and drained buffers go back to a small shared pool.
//!
//! A frame too large for a standard buffer is assembled on its own in a
//! shared buffer ([`SharedBuf`]), read up to its last byte and no further.
//! The buffer's memory follows the bytes received: it is reserved (address
//! space only) when the frame's header announces its length, and its pages
//! are touched in steps just ahead of what is read, so a peer that announces
//! a large frame and stalls costs one step, not the frame. All frames being
//! assembled together stay under the pool's budget (`max_partial_bytes`):
//! a read that would pass it fails with `ErrorKind::OutOfMemory`, and the
//! connection is closed.
//!
//! A publish can then hand that very buffer to every subscriber's send queue
//! ([`RecvBuf::shared_frame`]): a 1 MB message is never copied in user
//! space. Such buffers return to the pool once every queue has written
//! them, and are reused without being zeroed again.

use std::io::{self, Read};
use std::rc::Rc;

use super::send::SharedBuf;

/// Size of a pooled input buffer (also the most read per `read` call).
pub(crate) const RX_CHUNK: usize = 64 * 1024;
/// Pooled input buffers kept for reuse.
const RX_POOL_MAX: usize = 16;
/// Large-frame buffers kept for reuse.
const BIG_POOL_MAX: usize = 8;
/// How far ahead of the bytes received a large frame's buffer is filled.
const BIG_STEP: usize = 64 * 1024;

/// Free input buffers (zeroed once, reused without re-zeroing), and the
/// budget of large frames being received.
#[derive(Debug, Default)]
pub(crate) struct RxPool {
    free: Vec<Box<[u8]>>,
    /// Large-frame buffers; one is free when this pool holds its only handle.
    big: Vec<SharedBuf>,
    /// Bytes received of all large frames not yet complete or dropped.
    pub(crate) partial_total: usize,
    /// Limit of `partial_total` (0 = none).
    pub(crate) partial_budget: usize,
}

impl RxPool {
    fn take(&mut self) -> Box<[u8]> {
        self.free
            .pop()
            .unwrap_or_else(|| vec![0; RX_CHUNK].into_boxed_slice())
    }

    fn give(&mut self, buf: Box<[u8]>) {
        if buf.len() == RX_CHUNK && self.free.len() < RX_POOL_MAX {
            self.free.push(buf);
        }
    }

    /// A buffer for a `len`-byte frame: a free pooled one no more than twice
    /// that size (its pages already filled), or a new one with room for
    /// exactly that size (nothing filled yet).
    fn take_big(&mut self, len: usize) -> SharedBuf {
        let free = self.big.iter().position(|b| {
            Rc::strong_count(b) == 1
                && Rc::weak_count(b) == 0
                && (len..=len * 2).contains(&b.capacity())
        });
        match free {
            Some(i) => self.big.swap_remove(i),
            None => Rc::new(Vec::with_capacity(len)),
        }
    }

    fn give_big(&mut self, buf: SharedBuf) {
        if self.big.len() < BIG_POOL_MAX {
            self.big.push(buf);
        } else if let Some(i) = self.big.iter().position(|b| Rc::strong_count(b) == 1) {
            // Keep the pool's entries reusable: replace one that is free.
            self.big[i] = buf;
        }
    }
}

/// What one read got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Got {
    /// Bytes read (0: end of stream).
    pub n: usize,
    /// Fewer than there was room for: the socket had no more at that moment.
    pub short: bool,
}

/// One large frame being assembled: `buf[..filled]` of `len` bytes
/// (`buf.len()`, what is filled with zeroes or data, runs ahead of
/// `filled` by at most one step).
#[derive(Debug)]
struct BigFrame {
    buf: SharedBuf,
    filled: usize,
    len: usize,
}

/// Input bytes `buf[start..end]` (`buf.len()` is the capacity), or one
/// large frame in its own buffer.
#[derive(Debug, Default)]
pub(crate) struct RecvBuf {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Boxed: most connections never see a large frame, and an idle
    /// connection should cost as few bytes as possible.
    big: Option<Box<BigFrame>>,
}

impl RecvBuf {
    /// The unconsumed bytes.
    pub(crate) fn data(&self) -> &[u8] {
        match &self.big {
            Some(b) => b.buf.get(..b.filled).unwrap_or_default(),
            None => self.buf.get(self.start..self.end).unwrap_or_default(),
        }
    }

    /// The large frame in its shared buffer, once it is complete: exactly
    /// `data()`, as a buffer a send queue can hold without copying.
    pub(crate) fn shared_frame(&self) -> Option<(&SharedBuf, usize)> {
        self.big
            .as_ref()
            .filter(|b| b.filled == b.len)
            .map(|b| (&b.buf, b.len))
    }

    /// A large frame is being read into its own buffer and is not complete:
    /// reading it costs a copy and no decoding.
    pub(crate) fn is_assembling(&self) -> bool {
        self.big.as_ref().is_some_and(|b| b.filled < b.len)
    }

    /// Number of unconsumed bytes.
    pub(crate) fn len(&self) -> usize {
        match &self.big {
            Some(b) => b.filled,
            None => self.end - self.start,
        }
    }

    /// No unconsumed bytes.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops `n` decoded bytes from the front.
    pub(crate) fn consume(&mut self, n: usize, pool: &mut RxPool) {
        if let Some(big) = &self.big {
            // A large frame is only ever consumed whole (or dropped on close).
            if n >= big.filled {
                if let Some(big) = self.big.take() {
                    pool.partial_total -= big.filled;
                    pool.give_big(big.buf);
                }
            }
            return;
        }
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Makes room for `need` more bytes after the current data. The caller
    /// has already checked `need` against the frame limits. The current data
    /// is a prefix of one frame, so a frame that does not fit a standard
    /// buffer moves to a buffer of its own.
    pub(crate) fn reserve(&mut self, need: usize, pool: &mut RxPool) {
        if self.big.is_some() {
            return;
        }
        let want = self.len().saturating_add(need);
        if want <= RX_CHUNK {
            if self.buf.len() < RX_CHUNK {
                self.grow_small(RX_CHUNK);
            }
            return;
        }
        let mut buf = pool.take_big(want);
        let filled = self.len();
        let Some(vec) = Rc::get_mut(&mut buf) else {
            return self.grow_small(want);
        };
        if vec.len() < filled {
            vec.resize(filled, 0);
        }
        if let Some(dst) = vec.get_mut(..filled) {
            dst.copy_from_slice(self.data());
        }
        pool.partial_total += filled;
        self.big = Some(Box::new(BigFrame {
            buf,
            filled,
            len: want,
        }));
        self.start = 0;
        self.end = 0;
        self.release_if_empty(pool);
    }

    fn grow_small(&mut self, cap: usize) {
        let mut bigger = vec![0; cap.max(self.len())];
        bigger[..self.len()].copy_from_slice(self.data());
        self.end = self.len();
        self.start = 0;
        self.buf = bigger.into_boxed_slice();
    }

    /// One `read` into the free space; `n == 0` is end of stream.
    pub(crate) fn read_from(&mut self, src: &mut impl Read, pool: &mut RxPool) -> io::Result<Got> {
        if let Some(big) = &mut self.big {
            let Some(vec) = Rc::get_mut(&mut big.buf) else {
                return Err(io::Error::other("large-frame buffer is shared"));
            };
            // Fill one step ahead of what is read; a reused buffer is filled
            // already and takes the rest of the frame in one read. Never read
            // past the frame's last byte.
            let ahead = big.len.min(big.filled + BIG_STEP);
            if vec.len() < ahead {
                vec.resize(ahead, 0);
            }
            let end = big.len.min(vec.len());
            let room = end - big.filled;
            if pool.partial_budget > 0 && pool.partial_total + room > pool.partial_budget {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    "large frames being received exceed max_partial_bytes",
                ));
            }
            let Some(dst) = vec.get_mut(big.filled..end) else {
                return Err(io::Error::other("large-frame buffer too short"));
            };
            let n = src.read(dst)?;
            big.filled += n;
            pool.partial_total += n;
            return Ok(Got { n, short: n < room });
        }
        if self.buf.is_empty() {
            self.buf = pool.take();
        }
        if self.end == self.buf.len() {
            if self.start == 0 {
                // Full of one partial frame: the caller reserves what it needs.
                self.grow_small(self.buf.len() + RX_CHUNK);
            } else {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
        }
        let room = self.buf.len() - self.end;
        let n = src.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(Got { n, short: n < room })
    }

    /// Returns the buffer to the pool when nothing is left in it, so idle
    /// connections hold no input memory.
    pub(crate) fn release_if_empty(&mut self, pool: &mut RxPool) {
        if self.big.is_none() && self.is_empty() && !self.buf.is_empty() {
            pool.give(std::mem::take(&mut self.buf));
            self.start = 0;
            self.end = 0;
        }
    }

    /// Bytes allocated for this buffer.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.len() + self.big.as_ref().map_or(0, |b| b.buf.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_frames_survive_compaction() {
        let mut pool = RxPool::default();
        let mut rb = RecvBuf::default();
        assert_eq!(rb.capacity(), 0);
        let input: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut src = &input[..];
        rb.read_from(&mut src, &mut pool).unwrap();
        assert_eq!(rb.len(), RX_CHUNK);
        rb.consume(10, &mut pool);
        // Reading into a full buffer with a consumed front compacts it.
        rb.read_from(&mut src, &mut pool).unwrap();
        assert_eq!(rb.len(), RX_CHUNK);
        assert_eq!(rb.data()[0], 10);
        let n = rb.len();
        rb.consume(n, &mut pool);
        assert!(rb.is_empty());
        rb.release_if_empty(&mut pool);
        assert_eq!(rb.capacity(), 0, "an empty buffer is released");
        assert_eq!(pool.free.len(), 1, "and pooled");
    }

    #[test]
    fn large_frames_are_assembled_exactly_and_shared() {
        let mut pool = RxPool::default();
        let mut rb = RecvBuf::default();
        // A 100 000-byte frame followed by the next frame's first bytes.
        let frame: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut input = frame.clone();
        input.extend_from_slice(b"NEXT");
        let mut src = &input[..];
        rb.read_from(&mut src, &mut pool).unwrap();
        let have = rb.len();
        rb.reserve(frame.len() - have, &mut pool);
        assert!(rb.shared_frame().is_none(), "not complete yet");
        while rb.len() < frame.len() {
            assert!(rb.read_from(&mut src, &mut pool).unwrap().n > 0);
        }
        assert_eq!(src, b"NEXT", "nothing past the frame was read");
        assert_eq!(rb.data(), &frame[..]);
        let (shared, len) = rb.shared_frame().unwrap();
        assert_eq!(len, frame.len());
        let held = shared.clone(); // a send queue's handle
        rb.consume(frame.len(), &mut pool);
        assert!(rb.is_empty());
        assert_eq!(pool.big.len(), 1);
        // Still held by a queue: a new frame gets another buffer.
        let other = pool.take_big(frame.len());
        assert!(!Rc::ptr_eq(&other, &held));
        drop(held);
        pool.give_big(other);
        // Written by every queue: reused, no allocation.
        let again = pool.take_big(90_000);
        assert_eq!(again.capacity(), 100_000);
        assert!(
            pool.take_big(10_000).capacity() == 10_000,
            "too large to reuse for 10 kB"
        );
    }
}
