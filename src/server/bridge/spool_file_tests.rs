//! Unit tests of the spool's files and writer thread (`spool.rs`): the
//! record format and its damage checks, reading back across segments and
//! restarts, reads that continue where the last stopped, the scan at start.

use super::*;

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("psrt-spool-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    d
}

/// A writer on a fresh folder for `tag`, and the events it sends.
fn started(tag: &str) -> (PathBuf, Spool, mpsc::Receiver<SpoolEvent>) {
    let d = dir(tag);
    let (tx, rx) = mpsc::channel();
    let notify = Box::new(move |e| tx.send(e).unwrap());
    let spool = Spool::start(d.clone(), &[], 0, notify).unwrap();
    (d, spool, rx)
}

/// Appends record `seq` to `segment`.
fn append(spool: &Spool, segment: u64, seq: u64, topic: &str, payload: &[u8]) {
    let mut v = Vec::new();
    encode_record(seq, topic, payload, &mut v);
    spool.append(segment, v);
}

/// Asks for the records from `from` on and waits for them.
fn read_back(
    spool: &Spool,
    rx: &mpsc::Receiver<SpoolEvent>,
    from: u64,
    max_bytes: usize,
) -> Vec<Record> {
    spool.read(from, max_bytes);
    match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
        SpoolEvent::Read(got) => got,
        other => panic!("{other:?}"),
    }
}

#[test]
fn records_round_trip_and_refuse_damage() {
    let mut v = Vec::new();
    encode_record(7, "plant/a", b"21.5", &mut v);
    encode_record(8, "", b"", &mut v);
    let (r, len) = decode_record(&v).unwrap().unwrap();
    assert_eq!(
        (r.seq, r.topic.as_str(), &r.payload[..]),
        (7, "plant/a", &b"21.5"[..])
    );
    let (r2, len2) = decode_record(&v[len..]).unwrap().unwrap();
    assert_eq!((r2.seq, len + len2), (8, v.len()));
    for cut in 0..len {
        assert_eq!(decode_record(&v[..cut]), Ok(None), "cut {cut}");
    }
    let mut bad = v.clone();
    bad[RECORD_HEAD + 3] ^= 1;
    assert_eq!(decode_record(&bad), Err("CRC mismatch"));
    let mut bad = v.clone();
    bad[0..4].copy_from_slice(&3u32.to_le_bytes());
    assert_eq!(decode_record(&bad), Err("impossible record length"));
    assert_eq!(segment_bytes(1 << 30), 16 << 20);
    assert_eq!(segment_bytes(1 << 20), 64 << 10);
}

#[test]
fn written_records_are_read_back_and_survive_a_restart() {
    let (d, spool, rx) = started("restart");
    for seq in 1..=5u64 {
        // Two segments: 1-3 and 4-5.
        let segment = if seq <= 3 { 1 } else { 4 };
        append(&spool, segment, seq, "t", &seq.to_le_bytes());
    }
    let got = read_back(&spool, &rx, 2, 1 << 20);
    let seqs: Vec<u64> = got.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [2, 3, 4, 5]);
    spool.acked(3);
    spool.delete(1);
    drop(spool);
    // A torn record at the end of the open segment.
    let mut f = OpenOptions::new()
        .append(true)
        .open(segment_path(&d, 4))
        .unwrap();
    f.write_all(&[9, 0, 0]).unwrap();
    let s = scan(&d).unwrap();
    assert_eq!(s.acked, 3);
    assert_eq!(s.segments.len(), 1);
    assert_eq!((s.segments[0].id, s.segments[0].last), (4, 5));
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(!segment_path(&d, 1).exists());
    // Cut back to the last whole record.
    let again = scan(&d).unwrap();
    assert!(again.warnings.is_empty());
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn small_reads_continue_where_the_last_stopped_and_any_start_works() {
    let (d, spool, rx) = started("cursor");
    // 3000 records of 100-byte payloads in three segments, so a segment
    // spans several read chunks and records straddle chunk ends.
    for seq in 1..=3000u64 {
        let segment = 1 + (seq - 1) / 1000 * 1000;
        append(&spool, segment, seq, "plant/t", &[seq as u8; 100]);
    }
    let read = |from: u64, max: usize| -> Vec<u64> {
        let got = read_back(&spool, &rx, from, max);
        for r in &got {
            assert_eq!(
                (r.topic.as_str(), &r.payload[..]),
                ("plant/t", &[r.seq as u8; 100][..])
            );
        }
        got.iter().map(|r| r.seq).collect()
    };
    // A replay in batches of about ten records: every record once, in
    // order, across segment ends.
    let mut next = 1;
    let mut seen = Vec::new();
    while next <= 3000 {
        let got = read(next, 1000);
        assert!(!got.is_empty() && got.len() <= 10, "{}", got.len());
        next = got.last().unwrap() + 1;
        seen.extend(got);
    }
    assert_eq!(seen, (1..=3000).collect::<Vec<u64>>());
    // Not where the last read stopped: from the segment holding it.
    assert_eq!(read(1500, 300), [1500, 1501, 1502]);
    assert_eq!(read(7, 200), [7, 8]);
    assert_eq!(read(9, 100), [9], "and on from there");
    // The cursor's segment deleted: found again from the others.
    spool.delete(1);
    assert_eq!(read(10, 100), [1001]);
    assert!(read(3001, 100).is_empty());
    drop(spool);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_fully_acknowledged_segment_is_removed_at_scan() {
    let d = dir("acked");
    fs::create_dir_all(&d).unwrap();
    let mut v = Vec::new();
    encode_record(1, "t", b"x", &mut v);
    fs::write(segment_path(&d, 1), &v).unwrap();
    fs::write(d.join("acked"), 1u64.to_le_bytes()).unwrap();
    let s = scan(&d).unwrap();
    assert!(s.segments.is_empty());
    assert!(!segment_path(&d, 1).exists());
    fs::remove_dir_all(&d).unwrap();
}
