//! `SendQueue`: a connection's outgoing bytes, written with one `writev` per
//! flush instead of one syscall per frame.
//!
//! Small frames are copied into shared-nothing 16 KiB chunks (taken from a
//! pool and returned when written); a large frame built once for many
//! subscribers is queued as a [`SharedBuf`] and never copied again. For data
//! sockets the queue also counts whole messages, for the `data_queue` limit,
//! and its bytes count in the server-wide total: owned bytes as they are
//! queued and written, a shared frame once however many queues hold it.
//!
//! Each counted message keeps, next to its end offset, the loop-turn time it
//! was queued at (µs since the server started, wrapping every 71 minutes):
//! when it is written whole, the write time minus that stamp is its
//! delivery latency, summed for `c_sent_latency`. No clock is read here; the
//! loop sets [`TxPool::stamp_us`] once per turn and [`TxPool::write_us`]
//! before each write.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

/// A buffer several send queues hold at once (a large frame, built or read
/// once). A `Vec` inside, so a frame being received can grow in place
/// before it is shared.
pub(crate) type SharedBuf = Rc<Vec<u8>>;

/// Capacity of a pooled output chunk.
pub(crate) const TX_CHUNK: usize = 16 * 1024;
/// Pooled output chunks kept for reuse.
const TX_POOL_MAX: usize = 64;
/// Message-ends capacity above which a drained queue keeps its buffer.
const KEEP_ENDS: usize = 32;
/// Most chunks handed to one `writev`.
const MAX_IOV: usize = 64;

/// Free output chunks, and the bytes queued in all counted queues (the
/// data sockets), for the server-wide queue limit.
#[derive(Debug, Default)]
pub(crate) struct TxPool {
    free: Vec<Vec<u8>>,
    /// Memory held by every queue marked with [`SendQueue::count_in_total`]:
    /// their unwritten owned bytes, plus each shared frame they hold, once.
    pub queued_total: usize,
    /// Shared frames held by counted queues: address → (length, holders).
    shared: HashMap<usize, (usize, u32)>,
    /// Counted queues: messages written whole, their bytes and the sum of
    /// their latencies (µs), since the last [`TxPool::take_written`].
    written: Written,
    /// The current loop turn's time (µs since start, wrapping): stamped on
    /// each counted message as it is queued.
    pub stamp_us: u32,
    /// The time of the write being made (µs since start, wrapping).
    pub write_us: u32,
}

/// What counted queues wrote whole since the last [`TxPool::take_written`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    /// Messages.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The sum of their latencies, queued → written, in µs.
    pub latency_us: u64,
}

/// A counted message in a queue: where it ends in the stream, its length,
/// and when it was queued (µs since start, wrapping). 16 bytes.
#[derive(Debug, Clone, Copy)]
struct End {
    end: u64,
    len: u32,
    queued_us: u32,
}

impl TxPool {
    fn take(&mut self) -> Vec<u8> {
        self.free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(TX_CHUNK))
    }

    fn give(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() == TX_CHUNK && self.free.len() < TX_POOL_MAX {
            buf.clear();
            self.free.push(buf);
        }
    }

    /// Messages written whole by counted queues, their bytes and latencies,
    /// since the last call.
    pub(crate) fn take_written(&mut self) -> Written {
        std::mem::take(&mut self.written)
    }

    /// A counted queue took a handle on a shared frame: its bytes count
    /// once, when the first counted queue holds it.
    fn hold_shared(&mut self, frame: &SharedBuf) {
        let entry = self
            .shared
            .entry(frame.as_ptr() as usize)
            .or_insert((frame.len(), 0));
        if entry.1 == 0 {
            self.queued_total += entry.0;
        }
        entry.1 += 1;
    }

    /// A counted queue is done with a shared frame (written or dropped).
    fn release_shared(&mut self, frame: &SharedBuf) {
        let key = frame.as_ptr() as usize;
        if let Some(entry) = self.shared.get_mut(&key) {
            entry.1 -= 1;
            if entry.1 == 0 {
                self.queued_total -= entry.0;
                self.shared.remove(&key);
            }
        }
    }
}

#[derive(Debug)]
enum Chunk {
    Owned(Vec<u8>),
    /// The first `usize` bytes of a buffer shared with other queues.
    Shared(SharedBuf, usize),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Owned(v) => v,
            Self::Shared(s, len) => s.get(..*len).unwrap_or_default(),
        }
    }
}

/// What a flush achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// Everything was written.
    Drained,
    /// The socket buffer is full; wait for WRITABLE.
    Blocked,
}

/// Outgoing bytes of one connection.
#[derive(Debug, Default)]
pub(crate) struct SendQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    head: usize,
    /// Unwritten bytes.
    bytes: usize,
    /// Counted messages not yet written whole, oldest first.
    ends: VecDeque<End>,
    /// Bytes appended since the connection began.
    appended: u64,
    /// Bytes written since the connection began.
    written: u64,
    /// Whether this queue's bytes count in `TxPool::queued_total`.
    in_total: bool,
}

impl SendQueue {
    /// Unwritten bytes.
    pub(crate) fn len(&self) -> usize {
        self.bytes
    }

    /// From now on this queue's bytes count in the pool's `queued_total`.
    pub(crate) fn count_in_total(&mut self, pool: &mut TxPool) {
        if self.in_total {
            return;
        }
        self.in_total = true;
        for (i, chunk) in self.chunks.iter().enumerate() {
            match chunk {
                Chunk::Owned(v) => {
                    pool.queued_total += v.len() - if i == 0 { self.head } else { 0 }
                }
                Chunk::Shared(frame, _) => pool.hold_shared(frame),
            }
        }
    }

    /// Nothing to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Counted messages not yet fully written.
    pub(crate) fn messages(&self) -> usize {
        self.ends.len()
    }

    /// When the oldest counted message not yet written whole was queued
    /// (µs since start, wrapping).
    pub(crate) fn oldest_stamp(&self) -> Option<u32> {
        self.ends.front().map(|e| e.queued_us)
    }

    /// Up to `max` bytes from the start of the oldest counted message not
    /// yet written whole, unless its writing has begun (its first bytes are
    /// gone then). For log lines, not for the hot path.
    pub(crate) fn oldest_head(&self, max: usize) -> Option<Vec<u8>> {
        let e = self.ends.front()?;
        let start = e.end - u64::from(e.len);
        let mut skip = usize::try_from(start.checked_sub(self.written)?).ok()?;
        let mut out = Vec::with_capacity(max.min(e.len as usize));
        for (i, chunk) in self.chunks.iter().enumerate() {
            let bytes = chunk.bytes();
            let bytes = if i == 0 { &bytes[self.head..] } else { bytes };
            if skip >= bytes.len() {
                skip -= bytes.len();
                continue;
            }
            let take = (bytes.len() - skip).min(max - out.len());
            out.extend_from_slice(&bytes[skip..skip + take]);
            skip = 0;
            if out.len() == max {
                break;
            }
        }
        Some(out)
    }

    /// Appends `len` bytes produced by `fill`, which must push exactly `len`
    /// bytes. Counts one message if `count`.
    pub(crate) fn push_with(
        &mut self,
        len: usize,
        count: bool,
        pool: &mut TxPool,
        fill: impl FnOnce(&mut Vec<u8>),
    ) {
        let fits =
            matches!(self.chunks.back(), Some(Chunk::Owned(v)) if v.capacity() - v.len() >= len);
        if !fits {
            let buf = if len <= TX_CHUNK {
                pool.take()
            } else {
                Vec::with_capacity(len)
            };
            self.chunks.push_back(Chunk::Owned(buf));
        }
        if let Some(Chunk::Owned(v)) = self.chunks.back_mut() {
            let before = v.len();
            fill(v);
            let pushed = v.len() - before;
            debug_assert_eq!(pushed, len, "fill pushed a different length");
            if self.in_total {
                pool.queued_total += pushed;
            }
            self.account(pushed, count, pool.stamp_us);
        }
    }

    /// Appends bytes by copying them.
    pub(crate) fn push_slice(&mut self, bytes: &[u8], count: bool, pool: &mut TxPool) {
        self.push_with(bytes.len(), count, pool, |v| v.extend_from_slice(bytes));
    }

    /// Appends the first `len` bytes of a buffer shared with other queues
    /// (no copy).
    pub(crate) fn push_shared(
        &mut self,
        frame: SharedBuf,
        len: usize,
        count: bool,
        pool: &mut TxPool,
    ) {
        let len = len.min(frame.len());
        if self.in_total {
            pool.hold_shared(&frame);
        }
        self.chunks.push_back(Chunk::Shared(frame, len));
        self.account(len, count, pool.stamp_us);
    }

    fn account(&mut self, len: usize, count: bool, queued_us: u32) {
        self.bytes += len;
        self.appended += len as u64;
        if count {
            self.ends.push_back(End {
                end: self.appended,
                len: u32::try_from(len).unwrap_or(u32::MAX),
                queued_us,
            });
        }
    }

    /// Writes as much as the socket takes: one `writev` per call of up to
    /// 64 chunks, repeated until drained or `WouldBlock`.
    pub(crate) fn write_to(
        &mut self,
        dst: &mut impl Write,
        pool: &mut TxPool,
    ) -> io::Result<Flushed> {
        while !self.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut n_iov = 0;
            for (i, chunk) in self.chunks.iter().take(MAX_IOV).enumerate() {
                let bytes = chunk.bytes();
                iov[i] = IoSlice::new(if i == 0 { &bytes[self.head..] } else { bytes });
                n_iov = i + 1;
            }
            let result = if n_iov == 1 {
                dst.write(&iov[0])
            } else {
                dst.write_vectored(&iov[..n_iov])
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.advance(n, pool),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.release();
        Ok(Flushed::Drained)
    }

    fn advance(&mut self, mut n: usize, pool: &mut TxPool) {
        self.bytes -= n;
        self.written += n as u64;
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.bytes().len() - self.head;
            let owned = matches!(front, Chunk::Owned(_));
            if self.in_total && owned {
                pool.queued_total -= n.min(left);
            }
            if n < left {
                self.head += n;
                break;
            }
            n -= left;
            self.head = 0;
            match self.chunks.pop_front() {
                Some(Chunk::Owned(v)) => pool.give(v),
                Some(Chunk::Shared(frame, _)) if self.in_total => pool.release_shared(&frame),
                _ => {}
            }
        }
        while let Some(&End {
            end,
            len,
            queued_us,
        }) = self.ends.front()
        {
            if end > self.written {
                break;
            }
            self.ends.pop_front();
            if self.in_total {
                let w = &mut pool.written;
                w.messages += 1;
                w.bytes += u64::from(len);
                w.latency_us += u64::from(pool.write_us.wrapping_sub(queued_us));
            }
        }
    }

    /// An empty queue gives its small buffers back, so a connection that
    /// goes idle holds no output memory (one allocation per flush that had
    /// output, not per message). A message-ends buffer that grew past
    /// [`KEEP_ENDS`] belongs to a busy subscriber and is kept, so bursts do
    /// not regrow it on every flush.
    fn release(&mut self) {
        if self.chunks.capacity() > 0 {
            self.chunks = VecDeque::new();
        }
        if self.ends.capacity() > 0 && self.ends.capacity() <= KEEP_ENDS {
            self.ends = VecDeque::new();
        }
    }

    /// A copy of the unwritten bytes (unit tests look at what a handler
    /// queued).
    #[cfg(test)]
    pub(crate) fn contents(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes);
        for (i, chunk) in self.chunks.iter().enumerate() {
            let bytes = chunk.bytes();
            out.extend_from_slice(if i == 0 { &bytes[self.head..] } else { bytes });
        }
        out
    }

    /// Drops everything queued (a slow consumer being disconnected).
    pub(crate) fn clear(&mut self, pool: &mut TxPool) {
        for (i, chunk) in self.chunks.drain(..).enumerate() {
            let head = if i == 0 { self.head } else { 0 };
            match chunk {
                Chunk::Owned(v) => {
                    if self.in_total {
                        pool.queued_total -= v.len() - head;
                    }
                    pool.give(v);
                }
                Chunk::Shared(frame, _) if self.in_total => pool.release_shared(&frame),
                Chunk::Shared(..) => {}
            }
        }
        self.head = 0;
        self.bytes = 0;
        self.ends.clear();
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `cap` bytes per call, then blocks.
    struct Trickle {
        out: Vec<u8>,
        per_call: usize,
        budget: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls += 1;
            let mut room = self.per_call.min(self.budget);
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(room);
                self.out.extend_from_slice(&b[..take]);
                room -= take;
                n += take;
            }
            self.budget -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn small_frames_coalesce_into_one_write() {
        let mut pool = TxPool::default();
        let mut q = SendQueue::default();
        for i in 0..1000u32 {
            q.push_slice(&i.to_le_bytes(), true, &mut pool);
        }
        assert_eq!(q.messages(), 1000);
        assert_eq!(q.len(), 4000);
        let mut w = Trickle {
            out: vec![],
            per_call: usize::MAX,
            budget: usize::MAX,
            calls: 0,
        };
        assert_eq!(q.write_to(&mut w, &mut pool).unwrap(), Flushed::Drained);
        assert_eq!(w.calls, 1, "one syscall for 1000 frames");
        assert_eq!(q.messages(), 0);
        assert!(q.is_empty());
        assert_eq!(pool.free.len(), 1, "the chunk went back to the pool");
        let want: Vec<u8> = (0..1000u32).flat_map(|i| i.to_le_bytes()).collect();
        assert_eq!(w.out, want);
    }

    #[test]
    fn partial_writes_keep_order_and_message_counts() {
        let mut pool = TxPool::default();
        let mut q = SendQueue::default();
        let big: SharedBuf = Rc::new((0..50_000u32).map(|i| i as u8).collect());
        q.push_slice(b"head", true, &mut pool);
        q.push_shared(big.clone(), big.len(), true, &mut pool);
        q.push_slice(b"tail", true, &mut pool);
        q.push_with(3, false, &mut pool, |v| v.extend_from_slice(b"abc"));
        assert_eq!(q.messages(), 3);
        let mut w = Trickle {
            out: vec![],
            per_call: 7,
            budget: 10,
            calls: 0,
        };
        assert_eq!(q.write_to(&mut w, &mut pool).unwrap(), Flushed::Blocked);
        assert_eq!(w.out.len(), 10);
        assert_eq!(q.messages(), 2, "the 4-byte head message is complete");
        w.budget = usize::MAX;
        w.per_call = 4096;
        assert_eq!(q.write_to(&mut w, &mut pool).unwrap(), Flushed::Drained);
        let mut want = b"head".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b"tailabc");
        assert_eq!(w.out, want);
        assert_eq!(q.messages(), 0);
    }

    #[test]
    fn counted_queues_keep_the_pool_total() {
        let mut pool = TxPool::default();
        let mut control = SendQueue::default();
        let mut data = SendQueue::default();
        data.push_slice(b"01", false, &mut pool);
        data.count_in_total(&mut pool);
        assert_eq!(
            pool.queued_total, 2,
            "bytes already queued count from then on"
        );
        control.push_slice(b"not counted", false, &mut pool);
        let frame: SharedBuf = Rc::new(vec![7u8; 100]);
        data.push_shared(frame.clone(), 100, true, &mut pool);
        assert_eq!(pool.queued_total, 102);
        // A second counted queue holding the same frame adds nothing.
        let mut other = SendQueue::default();
        other.count_in_total(&mut pool);
        other.push_shared(frame.clone(), 100, true, &mut pool);
        assert_eq!(pool.queued_total, 102, "a shared frame counts once");
        let mut w = Trickle {
            out: vec![],
            per_call: 50,
            budget: 60,
            calls: 0,
        };
        assert_eq!(data.write_to(&mut w, &mut pool).unwrap(), Flushed::Blocked);
        assert_eq!(
            pool.queued_total, 100,
            "owned bytes written; the frame is still held"
        );
        data.clear(&mut pool);
        assert_eq!(
            pool.queued_total, 100,
            "the other queue still holds the frame"
        );
        other.clear(&mut pool);
        assert_eq!(pool.queued_total, 0);
        assert!(pool.shared.is_empty());
    }

    #[test]
    fn large_frames_get_their_own_chunk_and_clear_frees() {
        let mut pool = TxPool::default();
        let mut q = SendQueue::default();
        q.push_with(TX_CHUNK * 2, true, &mut pool, |v| {
            v.resize(v.len() + TX_CHUNK * 2, 7)
        });
        q.push_slice(b"x", true, &mut pool);
        assert_eq!(q.len(), TX_CHUNK * 2 + 1);
        q.clear(&mut pool);
        assert!(q.is_empty());
        assert_eq!(q.messages(), 0);
        assert_eq!(pool.free.len(), 1, "only the standard chunk is pooled");
    }

    #[test]
    fn written_messages_carry_their_latency_and_counts() {
        let mut pool = TxPool::default();
        let mut q = SendQueue::default();
        q.count_in_total(&mut pool);
        pool.stamp_us = u32::MAX - 9; // the µs clock wraps between the two
        q.push_slice(b"abcd", true, &mut pool);
        pool.stamp_us = 5;
        q.push_slice(b"efgh", true, &mut pool);
        q.push_slice(b"beacon", false, &mut pool);
        assert_eq!(q.oldest_stamp(), Some(u32::MAX - 9));
        assert_eq!(q.oldest_head(3).as_deref(), Some(&b"abc"[..]));
        pool.write_us = 100;
        let mut w = Trickle {
            out: vec![],
            per_call: 6,
            budget: 6,
            calls: 0,
        };
        assert_eq!(q.write_to(&mut w, &mut pool).unwrap(), Flushed::Blocked);
        let first = pool.take_written();
        assert_eq!((first.messages, first.bytes, first.latency_us), (1, 4, 110));
        assert_eq!(q.oldest_head(4), None, "its first bytes are written");
        w.budget = usize::MAX;
        pool.write_us = 1005;
        q.write_to(&mut w, &mut pool).unwrap();
        assert_eq!(pool.take_written().latency_us, 1000);
        assert_eq!(pool.take_written(), Written::default(), "taken once");
    }
}
