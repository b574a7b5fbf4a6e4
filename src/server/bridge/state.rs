//! A bridge's state, kept by the loop across its connections: the outgoing
//! queue (publish order; the first `in_flight` messages were sent on the
//! current connection and wait for their PUBACK), the reconnect schedule,
//! the echo filter and the counters `/status` shows.
//!
//! The queue is bounded by `queue_bytes` (topic + payload of every queued
//! message). When a new message would pass it, the oldest messages not in
//! flight are dropped, counted, and logged once per episode (the episode
//! ends when the queue is back under half its bound).

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use psrt_protocol::mqtt::filter_matches;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use slab::Slab;

use super::echo::Echo;
use super::spool::{self, Record, Segment, Spool, SpoolEvent};
use crate::server::config::BridgeConfig;
use crate::server::conn::SharedBuf;
use crate::server::link::outgoing::{OutgoingPeer, QUEUED_MESSAGE_OVERHEAD};

/// Every bridge, by a key that stays while the bridge exists.
#[derive(Debug, Default)]
pub(crate) struct Bridges {
    /// The bridges.
    pub list: Slab<Bridge>,
}

impl Bridges {
    /// Bridges for `configs`, each first tried at `now`.
    pub(crate) fn new(configs: &[BridgeConfig], now: Instant) -> Result<Self, String> {
        let mut list = Slab::new();
        for c in configs {
            let b = Bridge::new(c.clone(), now).map_err(|e| format!("bridge {}: {e}", c.name))?;
            list.insert(b);
        }
        Ok(Self { list })
    }

    /// The earliest pending connect, for the poll timeout.
    pub(crate) fn next_retry(&self) -> Option<Instant> {
        self.list.iter().filter_map(|(_, b)| b.peer.retry_at).min()
    }

    /// The bridge with this key.
    pub(crate) fn get_mut(&mut self, key: u32) -> Option<&mut Bridge> {
        self.list.get_mut(key as usize)
    }
}

/// A message waiting to go to the broker.
#[derive(Debug, Clone)]
pub(crate) struct OutMsg {
    /// Topic (as published locally).
    pub topic: Rc<str>,
    /// Payload, shared with the pipeline's copy.
    pub payload: SharedBuf,
    /// Packet id of the last send (QoS 1), 0 before the first.
    pub packet_id: u16,
    /// Sent at least once (a resend carries DUP).
    pub sent_before: bool,
    /// PUBACK received (popped once everything before it is too).
    pub acked: bool,
    /// Sequence number on this bridge (the spool's record number).
    pub seq: u64,
}

impl OutMsg {
    /// What it counts against `queue_bytes`.
    pub(crate) fn size(&self) -> usize {
        self.topic.len() + self.payload.len() + QUEUED_MESSAGE_OVERHEAD
    }
}

/// One bridge.
#[derive(Debug)]
pub(crate) struct Bridge {
    /// Its configuration.
    pub config: BridgeConfig,
    /// `mqtts://`: client settings and the name the certificate must have.
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    /// Messages not yet acknowledged by the broker, in publish order.
    pub queue: VecDeque<OutMsg>,
    /// Bytes of those (topics + payloads).
    pub queued_bytes: usize,
    /// Messages at the front sent on the current connection, not acked.
    pub in_flight: usize,
    pub(super) next_packet_id: u16,
    /// The connection, its status, addresses, retry time and backoff,
    /// reconnects, the drop episode (shared with cluster nodes).
    pub peer: OutgoingPeer,
    /// Messages sent that may come back through `in` (overlap).
    pub echo: Echo,
    /// Messages the broker acknowledged (QoS 1) or that were written (QoS 0).
    pub sent: u64,
    /// Messages received from the broker and published locally.
    pub received: u64,
    /// Messages dropped: queue bound, or refused locally.
    pub dropped: u64,
    /// Echoes of our own messages not delivered again.
    pub echoes: u64,
    /// Filters the broker refused in SUBACKs.
    pub refused_filters: u64,
    /// The SUBACK of this connection's SUBSCRIBE arrived.
    pub subscribed: bool,
    /// The next message's sequence number.
    pub next_seq: u64,
    /// The spool on disk, if configured.
    pub spool: Option<SpoolState>,
}

/// What the loop keeps of a bridge's spool: the segments on disk and which
/// messages are only there (sequence numbers `disk_next..next_seq`, read
/// back into memory as the memory queue empties).
#[derive(Debug)]
pub(crate) struct SpoolState {
    /// The writer thread.
    pub handle: Spool,
    /// Segments on disk, oldest first (the last one is being appended to).
    pub segments: VecDeque<Segment>,
    /// Bytes of those.
    pub bytes: u64,
    /// The first message not in memory.
    pub disk_next: u64,
    /// A read is on its way.
    pub read_pending: bool,
}

/// TLS client settings for a broker: its CA file's certificates, the host
/// as the certificate name.
fn tls_client(pem: &[u8], host: &str) -> Result<(Arc<ClientConfig>, ServerName<'static>), String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("not a PEM certificate: {e:?}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("unusable CA certificate: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| format!("{host:?} is not a valid TLS server name"))?;
    Ok((Arc::new(config), name))
}

impl Bridge {
    /// A bridge for `config`, first tried at `now`.
    pub(crate) fn new(config: BridgeConfig, now: Instant) -> Result<Self, String> {
        let tls = Self::tls_for(&config)?;
        Ok(Self {
            config,
            tls,
            queue: VecDeque::new(),
            queued_bytes: 0,
            in_flight: 0,
            next_packet_id: 1,
            peer: OutgoingPeer::new(now),
            echo: Echo::default(),
            sent: 0,
            received: 0,
            dropped: 0,
            echoes: 0,
            refused_filters: 0,
            subscribed: false,
            next_seq: 1,
            spool: None,
        })
    }

    /// The TLS client settings `config` asks for (`mqtts://`).
    pub(crate) fn tls_for(
        config: &BridgeConfig,
    ) -> Result<Option<(Arc<ClientConfig>, ServerName<'static>)>, String> {
        match &config.tls_ca_pem {
            Some(pem) => tls_client(pem, &config.host).map(Some),
            None => Ok(None),
        }
    }

    /// Opens the spool on disk (before the loop runs: the folder is read
    /// and every record checked). Messages found there after the last
    /// acknowledged one are queued again, first. Returns the scan's
    /// warnings.
    pub(crate) fn open_spool(
        &mut self,
        notify: Box<dyn Fn(SpoolEvent) + Send>,
    ) -> std::io::Result<Vec<String>> {
        let Some(dir) = self.config.spool.clone() else {
            return Ok(Vec::new());
        };
        let scan = spool::scan(&dir)?;
        let handle = Spool::start(dir, &scan.segments, scan.acked, notify)?;
        let first = scan.segments.first().map_or(scan.acked + 1, |s| s.id);
        let last = scan.segments.last().map_or(scan.acked, |s| s.last);
        self.next_seq = last.max(scan.acked) + 1;
        self.spool = Some(SpoolState {
            handle,
            bytes: scan.segments.iter().map(|s| s.bytes).sum(),
            segments: scan.segments.into(),
            disk_next: first.max(scan.acked + 1),
            read_pending: false,
        });
        Ok(scan.warnings)
    }

    /// Messages waiting: in memory and only on disk.
    pub(crate) fn queued_messages(&self) -> u64 {
        let disk = self
            .spool
            .as_ref()
            .map_or(0, |s| self.next_seq.saturating_sub(s.disk_next));
        self.queue.len() as u64 + disk
    }

    /// Bytes of the spool on disk.
    pub(crate) fn spooled_bytes(&self) -> u64 {
        self.spool.as_ref().map_or(0, |s| s.bytes)
    }

    /// `host:port` for the resolver.
    pub(crate) fn spec(&self) -> String {
        format!("{}:{}", self.config.host, self.config.port)
    }

    /// Whether a local topic goes to the broker (an `out` filter matches).
    pub(crate) fn forwards(&self, topic: &str) -> bool {
        self.config.out.iter().any(|f| filter_matches(f, topic))
    }

    /// Whether a broker topic is covered by an `in` filter (the default
    /// permission of inbound publishes, and the echo filter's scope).
    pub(crate) fn subscribed(&self, topic: &str) -> bool {
        self.config.inbound.iter().any(|f| filter_matches(f, topic))
    }

    /// Queues a message; beyond `queue_bytes` the oldest messages not in
    /// flight are dropped (the new one too if nothing else can go).
    /// Returns how many were dropped.
    pub(crate) fn push(&mut self, mut msg: OutMsg) -> u64 {
        msg.seq = self.next_seq;
        self.next_seq += 1;
        if self.spool.is_some() {
            return self.push_spooled(msg);
        }
        self.queued_bytes += msg.size();
        self.queue.push_back(msg);
        let mut dropped = 0;
        while self.queued_bytes > self.config.queue_bytes && self.queue.len() > self.in_flight {
            if let Some(m) = self.queue.remove(self.in_flight) {
                self.queued_bytes -= m.size();
                dropped += 1;
            }
        }
        self.dropped += dropped;
        dropped
    }

    /// With a spool: the message is written to it; it is kept in memory
    /// too if nothing is waiting on disk only and the memory queue has
    /// room. Beyond `spool_bytes` the oldest segment goes; its messages
    /// not in memory are dropped (returned).
    fn push_spooled(&mut self, msg: OutMsg) -> u64 {
        let Some(sp) = self.spool.as_mut() else {
            return 0;
        };
        let mut record = Vec::with_capacity(32 + msg.topic.len() + msg.payload.len());
        spool::encode_record(msg.seq, &msg.topic, &msg.payload, &mut record);
        let len = record.len() as u64;
        let seg_bytes = spool::segment_bytes(self.config.spool_bytes);
        let mut dropped = 0;
        while sp.bytes + len > self.config.spool_bytes {
            let Some(old) = sp.segments.pop_front() else {
                break;
            };
            sp.handle.delete(old.id);
            sp.bytes -= old.bytes;
            let gone_to = (old.last + 1).min(msg.seq);
            if gone_to > sp.disk_next {
                dropped += gone_to - sp.disk_next;
                sp.disk_next = gone_to;
            }
        }
        let new_segment = sp
            .segments
            .back()
            .is_none_or(|b| b.bytes > 0 && b.bytes + len > seg_bytes);
        if new_segment {
            sp.segments.push_back(Segment {
                id: msg.seq,
                last: msg.seq,
                bytes: 0,
            });
        }
        if let Some(back) = sp.segments.back_mut() {
            back.last = msg.seq;
            back.bytes += len;
            sp.handle.append(back.id, record);
        }
        sp.bytes += len;
        if sp.disk_next == msg.seq && self.queued_bytes + msg.size() <= self.config.queue_bytes {
            sp.disk_next += 1;
            self.queued_bytes += msg.size();
            self.queue.push_back(msg);
        }
        self.dropped += dropped;
        dropped
    }

    /// With a spool: asks for messages waiting on disk once the memory
    /// queue is at most half full.
    pub(crate) fn refill(&mut self) {
        let (queued, bound) = (self.queued_bytes, self.config.queue_bytes);
        let Some(sp) = self.spool.as_mut() else {
            return;
        };
        if sp.read_pending || sp.disk_next >= self.next_seq || queued > bound / 2 {
            return;
        }
        sp.read_pending = true;
        sp.handle.read(sp.disk_next, bound - queued);
    }

    /// Records read back from the spool join the memory queue, in order.
    /// Records that should be there but are not (a failed write, a
    /// corrupt file) are counted as dropped. Returns how many were.
    pub(crate) fn spool_read(&mut self, records: Vec<Record>) -> u64 {
        let next_seq = self.next_seq;
        let Some(sp) = self.spool.as_mut() else {
            return 0;
        };
        sp.read_pending = false;
        let mut dropped = 0;
        let empty = records.is_empty();
        for r in records {
            if r.seq < sp.disk_next {
                continue;
            }
            if r.seq >= next_seq {
                break;
            }
            dropped += r.seq - sp.disk_next;
            sp.disk_next = r.seq + 1;
            let msg = OutMsg {
                topic: r.topic.into(),
                payload: Rc::new(r.payload),
                packet_id: 0,
                sent_before: false,
                acked: false,
                seq: r.seq,
            };
            self.queued_bytes += msg.size();
            self.queue.push_back(msg);
        }
        if empty && sp.disk_next < next_seq {
            dropped += next_seq - sp.disk_next;
            sp.disk_next = next_seq;
        }
        self.dropped += dropped;
        dropped
    }

    /// The broker acknowledged everything up to `seq`: the spool's segments
    /// that hold nothing newer go (the one being appended to only once
    /// full).
    pub(crate) fn spool_acked(&mut self, seq: u64) {
        let seg_bytes = spool::segment_bytes(self.config.spool_bytes);
        let Some(sp) = self.spool.as_mut() else {
            return;
        };
        sp.handle.acked(seq);
        while let Some(front) = sp.segments.front() {
            let sealed = sp.segments.len() > 1 || front.bytes >= seg_bytes;
            if front.last > seq || !sealed {
                break;
            }
            sp.handle.delete(front.id);
            sp.bytes -= front.bytes;
            sp.segments.pop_front();
        }
    }

    /// The next packet id (1..=65535; the window is far smaller, so ids in
    /// flight never repeat).
    pub(crate) fn take_packet_id(&mut self) -> u16 {
        let id = self.next_packet_id;
        self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
        id
    }

    /// A PUBACK: marks the message in flight with this id and pops every
    /// acknowledged message at the front. False if no message in flight
    /// has the id (a stray acknowledgement: ignored).
    pub(crate) fn ack(&mut self, packet_id: u16) -> bool {
        let Some(i) = (0..self.in_flight).find(|&i| {
            let m = &self.queue[i];
            m.packet_id == packet_id && !m.acked
        }) else {
            return false;
        };
        self.queue[i].acked = true;
        let mut last = None;
        while self.in_flight > 0 && self.queue.front().is_some_and(|m| m.acked) {
            last = self.pop_front().map(|m| m.seq);
            self.in_flight -= 1;
            self.sent += 1;
        }
        if let Some(seq) = last {
            self.spool_acked(seq);
        }
        true
    }

    /// Removes the front message.
    pub(crate) fn pop_front(&mut self) -> Option<OutMsg> {
        let m = self.queue.pop_front()?;
        self.queued_bytes -= m.size();
        Some(m)
    }

    /// The drop episode is over: the queue (the spool, if there is one)
    /// is below half its bound (true once, for the log line).
    pub(crate) fn drop_episode_over(&mut self) -> bool {
        let (used, bound) = match &self.spool {
            Some(sp) => (sp.bytes, self.config.spool_bytes),
            None => (self.queued_bytes as u64, self.config.queue_bytes as u64),
        };
        self.peer.drop_episode_over(used, bound)
    }

    /// The connection failed or could not be made: messages in flight are
    /// kept (sent again, with DUP, on the next connection) and the next
    /// attempt waits for the backoff with jitter. Returns the delay.
    pub(crate) fn down(&mut self, now: Instant) -> Duration {
        self.subscribed = false;
        self.in_flight = 0;
        for m in &mut self.queue {
            m.acked = false;
        }
        self.peer.down(now)
    }
}
