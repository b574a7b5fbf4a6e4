//! Benchmark mode, after the reference `psrt-cli --benchmark`: W workers
//! (one blocking client and one thread each) run I iterations per stage.
//!
//! Stages: `subscribe` (to `benchmark/<id>/<i>`); for each payload size
//! `pub-<size>` (publish to a topic nobody reads) and `pub-read-<size>`
//! (publish to a topic the worker itself subscribed to; a reader thread
//! receives every message and checks its payload); finally `unsubscribe`,
//! which really unsubscribes (the reference subscribes again there). Stage
//! times are wall-clock, from the first request of any worker to the last
//! reply or message of all of them.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use super::units::{format_count, generated_payload};
use crate::client::{Client, Config, Message};
use crate::protocol::DEFAULT_PRIORITY;

/// Incoming queue per benchmark client. The reader drains it as fast as
/// the socket fills it; a smaller bound keeps 1 MB stages' memory in check.
const QUEUE_SIZE: usize = 1024;

/// Payload sizes: (name, bytes, iterations divisor).
const SIZES: [(&str, u64, u64); 5] = [
    ("10b", 10, 1),
    ("1kb", 1_000, 1),
    ("10kb", 10_000, 1),
    ("100kb", 100_000, 10),
    ("1mb", 1_000_000, 100),
];

/// One worker: an id, a client and its message receiver.
struct Worker {
    id: String,
    client: Client,
    rx: Receiver<Message>,
}

/// What one stage did.
struct StageResult {
    name: String,
    iters: u64,
    elapsed: Duration,
}

/// Runs the benchmark and prints the results table.
pub(crate) fn run(config: &Config, iterations: u64, workers: usize) -> Result<(), String> {
    let base = random_u32()?;
    let config = config.clone().set_queue_size(QUEUE_SIZE);
    let mut pool = Vec::with_capacity(workers);
    for index in 0..workers {
        let client = Client::connect(&config)
            .map_err(|e| format!("worker {index}: cannot connect to {}: {e}", config.path()))?;
        let rx = client
            .take_receiver()
            .ok_or("a benchmark client has no data stream")?;
        pool.push(Worker {
            id: format!("{base}/{index}"),
            client,
            rx,
        });
    }
    log::info!("benchmark: {workers} workers x {iterations} iterations");
    let result = run_stages(&mut pool, iterations);
    for w in &pool {
        if let Err(e) = w.client.bye() {
            log::warn!("worker {}: bye: {e}", w.id);
        }
    }
    print_results(&result?);
    Ok(())
}

fn run_stages(pool: &mut [Worker], iterations: u64) -> Result<Vec<StageResult>, String> {
    let mut results = Vec::new();
    results.push(stage(pool, "subscribe", iterations, |w| {
        for i in 0..iterations {
            w.client
                .subscribe(&format!("benchmark/{}/{i}", w.id))
                .map_err(|e| format!("subscribe: {e}"))?;
        }
        Ok(())
    })?);
    for (size_name, size, divisor) in SIZES {
        let payload = generated_payload(size)?;
        let count = iterations / divisor;
        let name = format!("pub-{size_name}");
        results.push(stage(pool, &name, count, |w| {
            publish_n(&w.client, &stage_topic(w, &name), &payload, count)
        })?);
        unsubscribe_all(pool, &name)?;

        let name = format!("pub-read-{size_name}");
        for w in pool.iter() {
            w.client
                .subscribe(&stage_topic(w, &name))
                .map_err(|e| format!("{name}: subscribe: {e}"))?;
        }
        results.push(stage(pool, &name, count, |w| {
            let topic = stage_topic(w, &name);
            let Worker { client, rx, .. } = w;
            let (topic, payload) = (topic.as_str(), payload.as_slice());
            thread::scope(|s| {
                let reader = s.spawn(move || read_n(rx, topic, payload, count));
                let published = publish_n(client, topic, payload, count);
                let read = reader
                    .join()
                    .unwrap_or_else(|_| Err("the reader thread panicked".into()));
                published.and(read)
            })
        })?);
        unsubscribe_all(pool, &name)?;
    }
    results.push(stage(pool, "unsubscribe", iterations, |w| {
        for i in 0..iterations {
            w.client
                .unsubscribe(&format!("benchmark/{}/{i}", w.id))
                .map_err(|e| format!("unsubscribe: {e}"))?;
        }
        Ok(())
    })?);
    Ok(results)
}

/// Runs `work` on every worker in parallel and times the whole stage.
fn stage(
    pool: &mut [Worker],
    name: &str,
    iters_per_worker: u64,
    work: impl Fn(&mut Worker) -> Result<(), String> + Sync,
) -> Result<StageResult, String> {
    println!("!!! stage started: {name}");
    let work = &work;
    let start = Instant::now();
    let outcomes: Vec<Result<(), String>> = thread::scope(|s| {
        let handles: Vec<_> = pool.iter_mut().map(|w| s.spawn(move || work(w))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a worker thread panicked".into()))
            })
            .collect()
    });
    let elapsed = start.elapsed();
    for (w, outcome) in pool.iter().zip(outcomes) {
        outcome.map_err(|e| format!("stage {name}, worker {}: {e}", w.id))?;
    }
    let iters = iters_per_worker * pool.len() as u64;
    println!(
        "*** stage completed: {name} ({} iters, {:.3} secs)",
        format_count(iters),
        elapsed.as_secs_f64()
    );
    Ok(StageResult {
        name: name.to_owned(),
        iters,
        elapsed,
    })
}

fn stage_topic(w: &Worker, stage: &str) -> String {
    format!("benchmark/{}/test/{stage}", w.id)
}

fn publish_n(client: &Client, topic: &str, payload: &[u8], count: u64) -> Result<(), String> {
    for _ in 0..count {
        client
            .publish(DEFAULT_PRIORITY, topic, payload)
            .map_err(|e| format!("publish to {topic}: {e}"))?;
    }
    Ok(())
}

/// Receives `count` messages and checks each one's topic and payload.
fn read_n(rx: &Receiver<Message>, topic: &str, payload: &[u8], count: u64) -> Result<(), String> {
    // Generous: the publisher may be slowed down by the same server.
    let timeout = Duration::from_secs(30);
    for n in 0..count {
        let message = match rx.recv_timeout(timeout) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!("reader: timed out after {n} of {count} messages"));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(format!(
                    "reader: connection lost after {n} of {count} messages"
                ));
            }
        };
        if message.topic != topic || message.data != payload {
            return Err(format!(
                "reader: message {n} differs from what was sent (topic {:?}, {} bytes)",
                message.topic,
                message.data.len()
            ));
        }
    }
    Ok(())
}

fn unsubscribe_all(pool: &[Worker], stage: &str) -> Result<(), String> {
    for w in pool {
        w.client
            .unsubscribe(&stage_topic(w, stage))
            .map_err(|e| format!("{stage}: unsubscribe: {e}"))?;
    }
    Ok(())
}

fn random_u32() -> Result<u32, String> {
    let mut bytes = [0u8; 4];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the system random generator failed".to_owned())?;
    Ok(u32::from_le_bytes(bytes))
}

fn print_results(results: &[StageResult]) {
    let rows: Vec<[String; 5]> = results.iter().map(result_row).collect();
    print!("{}", render_results(&rows));
}

/// One table row: name, iterations, seconds, milliseconds, iterations/s.
fn result_row(r: &StageResult) -> [String; 5] {
    let secs = r.elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        // Rounded down to whole iterations per second.
        format_count((r.iters as f64 / secs) as u64)
    } else {
        "-".to_owned()
    };
    [
        r.name.clone(),
        format_count(r.iters),
        format!("{secs:.3}"),
        format_count(u64::try_from(r.elapsed.as_millis()).unwrap_or(u64::MAX)),
        rate,
    ]
}

/// The results table, columns `stage iters secs msecs iters/s`, in run order.
fn render_results(rows: &[[String; 5]]) -> String {
    let header = ["stage", "iters", "secs", "msecs", "iters/s"];
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 5]| {
        let [w0, w1, w2, w3, w4] = widths;
        let [c0, c1, c2, c3, c4] = cells;
        format!("{c0:<w0$}  {c1:>w1$}  {c2:>w2$}  {c3:>w3$}  {c4:>w4$}\n")
    };
    let mut out = String::from("--- Benchmark results ---\n");
    out.push_str(&line(header));
    for row in rows {
        out.push_str(&line(row.each_ref().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_table() {
        let row = |name: &str, iters: u64, ms: u64| StageResult {
            name: name.into(),
            iters,
            elapsed: Duration::from_millis(ms),
        };
        let results = [row("subscribe", 40_000, 1_250), row("pub-1mb", 400, 0)];
        let rows: Vec<[String; 5]> = results.iter().map(result_row).collect();
        let table = render_results(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "--- Benchmark results ---");
        assert_eq!(lines[1], "stage       iters   secs  msecs  iters/s");
        assert_eq!(lines[2], "subscribe  40_000  1.250  1_250   32_000");
        assert_eq!(lines[3], "pub-1mb       400  0.000      0        -");
    }
}
