//! The spool in a bridge, driven through `dispatch` with a real writer
//! thread on a temp folder: messages beyond the memory queue wait on disk
//! and go out in order once the broker is there; acknowledged segments go;
//! unacknowledged messages survive a restart (a new bridge on the folder).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use psrt_protocol::Decoded;
use psrt_protocol::mqtt::{ConnectCode, Packet, decode_packet, encode_ack, encode_connack, kind};

use super::on_spool;
use super::spool::SpoolEvent;
use super::state::Bridges;
use crate::server::config::BridgeConfig;
use crate::server::conn::ConnId;
use crate::server::link::outgoing::QUEUED_MESSAGE_OVERHEAD;
use crate::server::testing::Harness;

fn config(dir: &Path) -> BridgeConfig {
    BridgeConfig {
        client_id: "psrtd-gw".into(),
        inbound: vec![],
        spool: Some(dir.to_path_buf()),
        spool_bytes: 1 << 20,
        keepalive: 10,
        inflight: 1024,
        // Ten messages of 100 bytes (topic + payload) in memory.
        ..super::state_tests::config(10 * (100 + QUEUED_MESSAGE_OVERHEAD))
    }
}

/// A harness with the bridge and its spool open; the writer's events
/// come out of the receiver.
fn harness(dir: &Path) -> (Harness, Receiver<SpoolEvent>) {
    let mut h = Harness::new();
    h.core.bridges = Bridges::new(&[config(dir)], h.core.now).unwrap();
    let (tx, rx) = mpsc::channel();
    let b = h.core.bridges.get_mut(0).unwrap();
    let warnings = b
        .open_spool(Box::new(move |e| tx.send(e).unwrap()))
        .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    (h, rx)
}

fn online(h: &mut Harness) -> ConnId {
    let id = h.connect_bridge(0);
    h.take_output(id);
    let mut ack = Vec::new();
    encode_connack(false, ConnectCode::Accepted, &mut ack);
    h.feed(id, &ack);
    id
}

/// Payloads of the PUBLISH packets written, acknowledging each.
fn drain(h: &mut Harness, id: ConnId, rx: &Receiver<SpoolEvent>, want: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while got.len() < want {
        let out = h.take_output(id);
        let mut rest = &out[..];
        let mut acks = Vec::new();
        while !rest.is_empty() {
            let Ok(Decoded::Frame { frame, len }) = decode_packet(rest, 1 << 20) else {
                panic!()
            };
            if let Packet::Publish(p) = frame {
                got.push(p.payload.to_vec());
                encode_ack(kind::PUBACK, p.packet_id.unwrap(), &mut acks);
            }
            rest = &rest[len..];
        }
        if acks.is_empty() {
            // Waiting for the spool: its answer goes to the loop.
            let event = rx
                .recv_timeout(Duration::from_secs(5))
                .expect("a spool read");
            on_spool(&mut h.cx(), 0, event);
        } else {
            h.feed(id, &acks);
        }
    }
    got
}

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("psrt-bridge-spool-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn beyond_memory_messages_wait_on_disk_and_go_out_in_order() {
    let dir = temp("order");
    let (mut h, rx) = harness(&dir);
    for i in 0..30u8 {
        h.publish_local("plant/x", &[i; 93]);
    }
    let b = h.core.bridges.get_mut(0).unwrap();
    assert_eq!((b.queue.len(), b.queued_messages(), b.dropped), (10, 30, 0));
    assert_eq!(b.spooled_bytes(), 30 * (8 + 10 + 7 + 93));
    let id = online(&mut h);
    let got = drain(&mut h, id, &rx, 30);
    let firsts: Vec<u8> = got.iter().map(|p| p[0]).collect();
    assert_eq!(firsts, (0..30).collect::<Vec<u8>>());
    let b = h.core.bridges.get_mut(0).unwrap();
    assert_eq!((b.sent, b.queued_messages()), (30, 0));
    drop(h);
    // Everything was acknowledged: nothing is replayed.
    let (mut h, _rx) = harness(&dir);
    assert_eq!(h.core.bridges.get_mut(0).unwrap().queued_messages(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unacknowledged_messages_survive_a_restart() {
    let dir = temp("restart");
    let (mut h, rx) = harness(&dir);
    for i in 0..20u8 {
        h.publish_local("plant/x", &[i; 93]);
    }
    let id = online(&mut h);
    // Five acknowledged, then psrtd stops.
    let got = drain(&mut h, id, &rx, 5);
    assert_eq!(got.len(), 10, "the whole memory window went out");
    drop(h);
    let (mut h, rx) = harness(&dir);
    let b = h.core.bridges.get_mut(0).unwrap();
    assert_eq!(b.queued_messages(), 10, "acknowledged: the first ten");
    h.publish_local("plant/x", &[20; 93]);
    let id = online(&mut h);
    let got = drain(&mut h, id, &rx, 11);
    let firsts: Vec<u8> = got.iter().map(|p| p[0]).collect();
    assert_eq!(firsts, (10..21).collect::<Vec<u8>>());
    drop(h);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_spool_bound_drops_the_oldest_segment() {
    let dir = temp("bound");
    let mut h = Harness::new();
    let mut c = config(&dir);
    // Segments of 64 KiB, four of them.
    c.spool_bytes = 256 << 10;
    h.core.bridges = Bridges::new(&[c], h.core.now).unwrap();
    let (tx, rx) = mpsc::channel();
    let b = h.core.bridges.get_mut(0).unwrap();
    b.open_spool(Box::new(move |e| tx.send(e).unwrap()))
        .unwrap();
    for i in 0..300u16 {
        let mut payload = vec![0u8; 900];
        payload[..2].copy_from_slice(&i.to_le_bytes());
        h.publish_local("plant/x", &payload);
    }
    let b = h.core.bridges.get_mut(0).unwrap();
    let dropped = b.dropped;
    assert!(dropped > 0 && dropped < 300, "{dropped}");
    assert!(b.spooled_bytes() <= 256 << 10);
    assert_eq!(b.queued_messages() + dropped, 300);
    assert_eq!(h.core.stats.bridge_dropped, dropped);
    // What is left goes out in order: the one in memory, then the newest.
    let id = online(&mut h);
    let got = drain(&mut h, id, &rx, (300 - dropped) as usize);
    let nums: Vec<u16> = got
        .iter()
        .map(|p| u16::from_le_bytes([p[0], p[1]]))
        .collect();
    assert_eq!(nums[0], 0, "in memory, kept");
    assert!(nums.windows(2).all(|w| w[0] < w[1]), "in order");
    assert_eq!(*nums.last().unwrap(), 299);
    assert_eq!(nums.len() as u64, 300 - dropped);
    drop(h);
    std::fs::remove_dir_all(&dir).unwrap();
}
