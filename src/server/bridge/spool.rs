//! A bridge's spool on disk: every message for the broker, in publish
//! order, so that what the broker has not acknowledged survives a psrtd
//! restart. The loop decides (segment rotation, deletion, the bound, what
//! to read back); one writer thread per spool does the file I/O, so the
//! loop never waits for a disk.
//!
//! Layout: one folder per bridge (`spool:`), segment files named after
//! their first record's sequence number (`00000000000000000001.seg`), and
//! `acked` (the last sequence number the broker acknowledged, 8 bytes LE).
//! A record is
//!
//! ```text
//! LEN u32 LE | CRC32 u32 LE (of the LEN bytes that follow) |
//! SEQ u64 LE | TOPIC-LEN u16 LE | TOPIC | PAYLOAD
//! ```
//!
//! * **fsync policy**: a segment is fsynced when it is sealed (it reached
//!   [`segment_bytes`]) and at shutdown; the open segment at most every
//!   [`FSYNC_INTERVAL`] while it has unsynced records. The writer takes
//!   every record queued and writes them in one go as soon as it has them,
//!   so a psrtd crash loses only records not yet handed to the kernel
//!   (microseconds' worth; the page cache keeps the rest), and a power loss
//!   at most the last second.
//! * **replay**: at start the folder is scanned (CRC of every record); a
//!   torn or corrupt record ends its segment (logged). Records after
//!   `acked` are sent again, in order (at least once: a message acknowledged
//!   after the last `acked` write is sent again after a crash). Records are
//!   read back in chunks as the memory queue empties; a read continues at
//!   the byte where the last one stopped, so each byte is read once.
//! * **deletion**: a sealed segment goes once every record in it is
//!   acknowledged. **Bound**: when `spool_bytes` would be passed, the
//!   oldest segment goes (its records not yet read back are dropped,
//!   counted, logged once per episode).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The open segment is fsynced at most this often while it has new records.
pub(crate) const FSYNC_INTERVAL: Duration = Duration::from_secs(1);
/// LEN and CRC before a record's body.
const RECORD_HEAD: usize = 8;
/// SEQ and TOPIC-LEN at the start of a body.
const BODY_HEAD: usize = 10;
/// A record longer than this is corrupt (a topic and a payload of the
/// largest publish fit far below it).
const MAX_RECORD: usize = 1 << 30;
/// Bytes read from a segment file at a time when reading records back.
const READ_CHUNK: usize = 64 << 10;

/// A segment's size: a sixteenth of the bound, 64 KiB to 16 MiB.
pub(crate) fn segment_bytes(spool_bytes: u64) -> u64 {
    (spool_bytes / 16).clamp(64 << 10, 16 << 20)
}

/// Appends one record.
pub(crate) fn encode_record(seq: u64, topic: &str, payload: &[u8], out: &mut Vec<u8>) {
    let topic = &topic.as_bytes()[..topic.len().min(u16::MAX as usize)];
    let len = BODY_HEAD + topic.len() + payload.len();
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(topic.len() as u16).to_le_bytes());
    out.extend_from_slice(topic);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start + RECORD_HEAD..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// Sequence number.
    pub seq: u64,
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
}

/// Reads the record at the front of `buf`: `Ok(None)` if it is cut short
/// (a torn tail), `Err` if it is corrupt (CRC, length, UTF-8).
pub(crate) fn decode_record(buf: &[u8]) -> Result<Option<(Record, usize)>, &'static str> {
    let Some(head) = buf.get(..RECORD_HEAD) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if !(BODY_HEAD..=MAX_RECORD).contains(&len) {
        return Err("impossible record length");
    }
    let Some(body) = buf.get(RECORD_HEAD..RECORD_HEAD + len) else {
        return Ok(None);
    };
    if crc32fast::hash(body) != crc {
        return Err("CRC mismatch");
    }
    let seq = u64::from_le_bytes(body[..8].try_into().map_err(|_| "short")?);
    let topic_len = u16::from_le_bytes([body[8], body[9]]) as usize;
    let Some(topic) = body.get(BODY_HEAD..BODY_HEAD + topic_len) else {
        return Err("topic runs past the record");
    };
    let topic = std::str::from_utf8(topic).map_err(|_| "topic is not UTF-8")?;
    Ok(Some((
        Record {
            seq,
            topic: topic.to_string(),
            payload: body[BODY_HEAD + topic_len..].to_vec(),
        },
        RECORD_HEAD + len,
    )))
}

/// A segment as the loop tracks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Its first record's sequence number (its file name).
    pub id: u64,
    /// Its last record's.
    pub last: u64,
    /// Bytes in the file.
    pub bytes: u64,
}

/// What a scan at start found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Segments, oldest first, with records after `acked`.
    pub segments: Vec<Segment>,
    /// The last acknowledged sequence number (0: none).
    pub acked: u64,
    /// Problems found (one line each: file, offset, what).
    pub warnings: Vec<String>,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// Reads the folder: every segment's records checked; a corrupt or torn
/// record ends its segment (the file is cut there, so appends stay
/// readable). Runs before the loop starts.
pub(crate) fn scan(dir: &Path) -> io::Result<Scan> {
    fs::create_dir_all(dir)?;
    let mut out = Scan::default();
    if let Ok(bytes) = fs::read(dir.join("acked")) {
        if let Ok(b) = <[u8; 8]>::try_from(bytes.as_slice()) {
            out.acked = u64::from_le_bytes(b);
        }
    }
    let mut ids: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    ids.sort_unstable();
    for id in ids {
        let path = segment_path(dir, id);
        let data = fs::read(&path)?;
        let mut at = 0;
        let mut last = None;
        loop {
            match decode_record(&data[at..]) {
                Ok(Some((r, len))) => {
                    last = Some(r.seq);
                    at += len;
                }
                Ok(None) if at == data.len() => break,
                Ok(None) => {
                    out.warnings.push(format!(
                        "{}: a record cut short at byte {at} (torn write): the segment ends there",
                        path.display()
                    ));
                    break;
                }
                Err(why) => {
                    out.warnings.push(format!(
                        "{}: {why} at byte {at}: the segment ends there",
                        path.display()
                    ));
                    break;
                }
            }
        }
        if at < data.len() {
            OpenOptions::new()
                .write(true)
                .open(&path)?
                .set_len(at as u64)?;
        }
        match last {
            Some(last) if last > out.acked => out.segments.push(Segment {
                id,
                last,
                bytes: at as u64,
            }),
            _ => fs::remove_file(&path)?,
        }
    }
    Ok(out)
}

/// Work for the writer thread, in order.
#[derive(Debug)]
enum Cmd {
    /// Append records to a segment (created if new; the previous one is
    /// sealed first).
    Append { segment: u64, bytes: Vec<u8> },
    /// Delete a segment.
    Delete(u64),
    /// Read records from `from` on, across segments, up to `max_bytes`.
    Read { from: u64, max_bytes: usize },
    /// The broker acknowledged everything up to this sequence number.
    Acked(u64),
}

/// What the writer thread tells the loop.
#[derive(Debug)]
pub(crate) enum SpoolEvent {
    /// Records read back (possibly none).
    Read(Vec<Record>),
    /// A file operation failed (the spool goes on; the message says what).
    Failed(String),
}

/// The loop's handle on a spool's writer thread. Dropping it finishes
/// every queued write, fsyncs, writes `acked` and joins the thread.
#[derive(Debug)]
pub(crate) struct Spool {
    tx: Option<Sender<Cmd>>,
    thread: Option<JoinHandle<()>>,
}

impl Spool {
    /// Starts the writer for `dir`; `notify` delivers its events to the loop.
    pub(crate) fn start(
        dir: PathBuf,
        segments: &[Segment],
        acked: u64,
        notify: Box<dyn Fn(SpoolEvent) + Send>,
    ) -> io::Result<Self> {
        fs::create_dir_all(&dir)?;
        let (tx, rx) = mpsc::channel();
        let ids: VecDeque<u64> = segments.iter().map(|s| s.id).collect();
        let thread = std::thread::Builder::new()
            .name("psrtd-spool".into())
            .spawn(move || {
                let mut w = Writer {
                    dir,
                    ids,
                    open: None,
                    dirty: false,
                    synced: Instant::now(),
                    acked,
                    acked_written: acked,
                    notify,
                    cursor: None,
                };
                loop {
                    match rx.recv_timeout(FSYNC_INTERVAL) {
                        Ok(cmd) => {
                            w.run(cmd);
                            // Everything queued now, then one write.
                            while let Ok(cmd) = rx.try_recv() {
                                w.run(cmd);
                            }
                            w.flush();
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                    if w.dirty && w.synced.elapsed() >= FSYNC_INTERVAL {
                        w.sync();
                    }
                }
                w.sync();
                w.write_acked();
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn send(&self, cmd: Cmd) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(cmd);
        }
    }

    /// Appends encoded records to segment `segment`.
    pub(crate) fn append(&self, segment: u64, bytes: Vec<u8>) {
        self.send(Cmd::Append { segment, bytes });
    }

    /// Deletes segment `id`.
    pub(crate) fn delete(&self, id: u64) {
        self.send(Cmd::Delete(id));
    }

    /// Asks for records from sequence number `from` on.
    pub(crate) fn read(&self, from: u64, max_bytes: usize) {
        self.send(Cmd::Read { from, max_bytes });
    }

    /// Everything up to `seq` is acknowledged.
    pub(crate) fn acked(&self, seq: u64) {
        self.send(Cmd::Acked(seq));
    }
}

impl Spool {
    /// Lets the writer finish on its own (queued writes, fsync, `acked`)
    /// without waiting for it: a bridge removed by a reload.
    pub(crate) fn detach(mut self) {
        drop(self.tx.take());
        drop(self.thread.take());
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Writer {
    dir: PathBuf,
    /// Segment ids on disk, oldest first.
    ids: VecDeque<u64>,
    /// The segment being appended to; records are buffered and written
    /// once the command queue is empty (or before a read or an fsync).
    open: Option<(u64, BufWriter<File>)>,
    dirty: bool,
    synced: Instant,
    acked: u64,
    acked_written: u64,
    notify: Box<dyn Fn(SpoolEvent) + Send>,
    /// Where the last read stopped.
    cursor: Option<ReadCursor>,
}

impl Writer {
    fn fail(&self, what: String) {
        (self.notify)(SpoolEvent::Failed(what));
    }

    fn flush(&mut self) {
        if let Some((id, f)) = &mut self.open {
            if let Err(e) = f.flush() {
                let what = format!("writing segment {id}: {e}");
                self.fail(what);
            }
        }
    }

    fn sync(&mut self) {
        self.flush();
        if let Some((id, f)) = &self.open {
            if let Err(e) = f.get_ref().sync_data() {
                let what = format!("fsync of segment {id}: {e}");
                self.fail(what);
            }
        }
        self.dirty = false;
        self.synced = Instant::now();
    }

    fn write_acked(&mut self) {
        if self.acked == self.acked_written {
            return;
        }
        let tmp = self.dir.join("acked.tmp");
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(&self.acked.to_le_bytes())?;
            f.sync_data()?;
            fs::rename(&tmp, self.dir.join("acked"))
        })();
        match result {
            Ok(()) => self.acked_written = self.acked,
            Err(e) => self.fail(format!("writing acked: {e}")),
        }
    }

    fn run(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Append { segment, bytes } => {
                if self.open.as_ref().is_some_and(|(id, _)| *id != segment) {
                    // Sealed: fsynced and closed.
                    self.sync();
                    self.open = None;
                }
                if self.open.is_none() {
                    let path = segment_path(&self.dir, segment);
                    match OpenOptions::new().create(true).append(true).open(&path) {
                        Ok(f) => {
                            if self.ids.back() != Some(&segment) {
                                self.ids.push_back(segment);
                            }
                            self.open = Some((segment, BufWriter::with_capacity(256 << 10, f)));
                        }
                        Err(e) => {
                            return self.fail(format!("cannot open {}: {e}", path.display()));
                        }
                    }
                }
                if let Some((id, f)) = &mut self.open {
                    if let Err(e) = f.write_all(&bytes) {
                        let what = format!("writing segment {id}: {e}");
                        return self.fail(what);
                    }
                    self.dirty = true;
                }
            }
            Cmd::Delete(id) => {
                if self.open.as_ref().is_some_and(|(open, _)| *open == id) {
                    self.open = None;
                    self.dirty = false;
                }
                self.ids.retain(|&i| i != id);
                // The acked mark first: a crash between the two replays
                // nothing acknowledged.
                self.write_acked();
                let path = segment_path(&self.dir, id);
                if let Err(e) = fs::remove_file(&path) {
                    if e.kind() != io::ErrorKind::NotFound {
                        self.fail(format!("cannot delete {}: {e}", path.display()));
                    }
                }
            }
            Cmd::Read { from, max_bytes } => {
                self.flush();
                let records = self.read(from, max_bytes);
                (self.notify)(SpoolEvent::Read(records));
            }
            Cmd::Acked(seq) => self.acked = self.acked.max(seq),
        }
    }

    /// Records with `seq >= from`, oldest first, up to `max_bytes` of
    /// topics and payloads (at least one). A read that continues where the
    /// last one stopped starts at that byte of that segment; any other
    /// starts at the segment holding `from`. Either reads the files in
    /// chunks and stops once it has enough, so a replay reads each byte
    /// once however small the memory queue.
    fn read(&mut self, from: u64, max_bytes: usize) -> Vec<Record> {
        let mut out = Vec::new();
        let mut size = 0;
        let resume = self
            .cursor
            .take()
            .filter(|c| c.next_seq == from)
            .and_then(|c| Some((self.ids.iter().position(|&id| id == c.id)?, c.offset)));
        // Else the segment holding `from`: the last one starting at or
        // before it.
        let (start, mut offset) =
            resume.unwrap_or_else(|| (self.ids.iter().rposition(|&id| id <= from).unwrap_or(0), 0));
        let ids: Vec<u64> = self.ids.iter().skip(start).copied().collect();
        let mut chunk = vec![0; READ_CHUNK];
        for id in ids {
            let path = segment_path(&self.dir, id);
            let opened = File::open(&path).and_then(|mut f| {
                f.seek(SeekFrom::Start(offset))?;
                Ok(f)
            });
            let mut file = match opened {
                Ok(f) => f,
                Err(e) => {
                    self.fail(format!("cannot read {}: {e}", path.display()));
                    offset = 0;
                    continue;
                }
            };
            // `buf` holds the file's bytes from `offset` on; `at` of them
            // are decoded.
            let mut buf = Vec::new();
            let mut at = 0;
            'segment: loop {
                loop {
                    match decode_record(&buf[at..]) {
                        Ok(Some((r, len))) => {
                            at += len;
                            if r.seq < from {
                                continue;
                            }
                            size += r.topic.len() + r.payload.len();
                            let next_seq = r.seq + 1;
                            out.push(r);
                            if size >= max_bytes {
                                self.cursor = Some(ReadCursor {
                                    next_seq,
                                    id,
                                    offset: offset + at as u64,
                                });
                                return out;
                            }
                        }
                        Ok(None) => break,
                        // Damaged: the rest of this segment is skipped
                        // (the loop counts what is missing as dropped).
                        Err(_) => break 'segment,
                    }
                }
                buf.drain(..at);
                offset += at as u64;
                at = 0;
                match file.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.fail(format!("cannot read {}: {e}", path.display()));
                        break;
                    }
                }
            }
            offset = 0;
        }
        out
    }
}

/// Where the last read stopped (see [`Writer::read`]).
#[derive(Debug, Clone, Copy)]
struct ReadCursor {
    /// The sequence number a read continuing there asks for.
    next_seq: u64,
    /// The segment, and the byte after the last record returned.
    id: u64,
    offset: u64,
}

#[cfg(test)]
#[path = "spool_file_tests.rs"]
mod tests;
