//! `RecvBuf`: a connection's input bytes. Frames are decoded in place from
//! `data()`; a partial frame stays until the rest arrives.
//!
//! The buffer is allocated only while it holds bytes: an idle connection owns
//! no input memory, and drained buffers go back to a small shared pool.

use std::io::{self, Read};

/// Size of a pooled input buffer (also the most read per `read` call).
pub const RX_CHUNK: usize = 64 * 1024;
/// Pooled input buffers kept for reuse.
const RX_POOL_MAX: usize = 16;

/// Free input buffers (zeroed once, reused without re-zeroing).
#[derive(Debug, Default)]
pub struct RxPool {
    free: Vec<Vec<u8>>,
}

impl RxPool {
    fn take(&mut self) -> Vec<u8> {
        self.free.pop().unwrap_or_else(|| vec![0; RX_CHUNK])
    }

    fn give(&mut self, buf: Vec<u8>) {
        if buf.len() == RX_CHUNK && self.free.len() < RX_POOL_MAX {
            self.free.push(buf);
        }
    }
}

/// Input bytes `buf[start..end]`; `buf.len()` is the capacity.
#[derive(Debug, Default)]
pub struct RecvBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl RecvBuf {
    /// The unconsumed bytes.
    pub fn data(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    /// Number of unconsumed bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// No unconsumed bytes.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Drops `n` decoded bytes from the front.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Makes room for `need` more bytes after the current data. The caller
    /// has already checked `need` against the frame limits.
    pub fn reserve(&mut self, need: usize) {
        let want = self.len().saturating_add(need);
        if want > self.buf.len() {
            let mut bigger = vec![0; want.max(RX_CHUNK)];
            bigger[..self.len()].copy_from_slice(self.data());
            self.end = self.len();
            self.start = 0;
            self.buf = bigger;
        }
    }

    /// One `read` into the free space; `Ok(0)` is end of stream.
    pub fn read_from(&mut self, src: &mut impl Read, pool: &mut RxPool) -> io::Result<usize> {
        if self.buf.is_empty() {
            self.buf = pool.take();
        }
        if self.end == self.buf.len() {
            if self.start == 0 {
                // Full of one partial frame: the caller reserves what it needs.
                self.reserve(RX_CHUNK);
            } else {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
        }
        let n = src.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Returns the buffer to the pool when nothing is left in it, so idle
    /// connections hold no input memory.
    pub fn release_if_empty(&mut self, pool: &mut RxPool) {
        if self.is_empty() && !self.buf.is_empty() {
            pool.give(std::mem::take(&mut self.buf));
            self.start = 0;
            self.end = 0;
        }
    }

    /// Bytes allocated for this buffer.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_frames_survive_compaction_and_growth() {
        let mut pool = RxPool::default();
        let mut rb = RecvBuf::default();
        assert_eq!(rb.capacity(), 0);
        let input: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut src = &input[..];
        rb.read_from(&mut src, &mut pool).unwrap();
        assert_eq!(rb.len(), RX_CHUNK);
        rb.consume(10);
        // Reading into a full buffer with a consumed front compacts it.
        rb.read_from(&mut src, &mut pool).unwrap();
        assert_eq!(rb.len(), RX_CHUNK);
        assert_eq!(rb.data()[0], 10);
        // A frame larger than the buffer: reserve grows it.
        rb.reserve(100_000);
        while !src.is_empty() {
            rb.read_from(&mut src, &mut pool).unwrap();
        }
        assert_eq!(rb.data(), &input[10..]);
        let n = rb.len();
        rb.consume(n);
        assert!(rb.is_empty());
        rb.release_if_empty(&mut pool);
        assert_eq!(rb.capacity(), 0, "an empty buffer is released");
        assert!(pool.free.is_empty(), "oversized buffers are not pooled");
        let mut small = &input[..5];
        rb.read_from(&mut small, &mut pool).unwrap();
        rb.consume(5);
        rb.release_if_empty(&mut pool);
        assert_eq!(pool.free.len(), 1);
    }
}
