//! Unit tests of the busiest-topics table: exact counts while the topics
//! fit, heavy hitters kept through a flood of distinct topics with memory
//! flat and slot strings reused, long topics cut, rates per roll.

use std::time::{Duration, Instant};

use super::top::{MAX_TOPIC, SLOTS, TopTopics};

fn table() -> (TopTopics, Instant) {
    let t0 = Instant::now();
    (TopTopics::new([0x1234, 0x5678], t0), t0)
}

/// (topic, count, error, bytes) of the `n` busiest.
fn busiest(t: &TopTopics, n: usize) -> Vec<(String, u64, u64, u64)> {
    t.busiest(n, false)
        .iter()
        .map(|s| (s.topic.clone(), s.count, s.error, s.bytes))
        .collect()
}

#[test]
fn counts_are_exact_while_the_topics_fit() {
    let (mut t, t0) = table();
    for i in 0..10 {
        t.record("plant/boiler", 20, t0);
        if i % 2 == 0 {
            t.record("plant/pump", 5, t0);
        }
        t.record(&format!("sensor/{i}"), 1, t0);
    }
    t.check();
    assert_eq!(t.len(), 12);
    assert_eq!(
        busiest(&t, 3),
        [
            ("plant/boiler".into(), 10, 0, 200),
            ("plant/pump".into(), 5, 0, 25),
            ("sensor/0".into(), 1, 0, 1),
        ]
    );
}

#[test]
fn heavy_topics_survive_a_flood_of_distinct_ones_in_flat_memory() {
    let (mut t, t0) = table();
    let mut hot = 0u64;
    let mut warm = 0u64;
    for i in 0..200_000u32 {
        match i % 20 {
            0 | 10 => {
                t.record("hot/topic", 100, t0);
                hot += 1;
            }
            5 => {
                t.record("warm/topic", 10, t0);
                warm += 1;
            }
            _ => t.record(&format!("flood/{i}"), 1, t0),
        }
        if i % 50_000 == 0 {
            t.check();
        }
    }
    t.check();
    assert_eq!(t.len(), SLOTS, "never more slots than SLOTS");
    let top = t.busiest(2, false);
    assert_eq!(top[0].topic, "hot/topic");
    assert_eq!(top[1].topic, "warm/topic");
    for (s, truth) in [(top[0], hot), (top[1], warm)] {
        assert!(
            s.count - s.error <= truth && truth <= s.count,
            "{}: {} - {} <= {truth} <= {}",
            s.topic,
            s.count,
            s.error,
            s.count
        );
    }
    // A flood topic's slot string is reused by the next flood topic that
    // takes its place: the same buffer, no new allocation.
    let victim = t.next_victim().to_string();
    assert!(victim.starts_with("flood/"));
    let buffer = t.buffer_of(&victim).unwrap();
    t.record("flood/x", 1, t0);
    assert_eq!(t.buffer_of("flood/x"), Some(buffer));
    t.check();
}

#[test]
fn long_topics_are_cut_at_a_char_boundary_and_counted_together() {
    let (mut t, t0) = table();
    let long_a = format!("{}/a", "é".repeat(MAX_TOPIC));
    let long_b = format!("{}/b", "é".repeat(MAX_TOPIC));
    t.record(&long_a, 1, t0);
    t.record(&long_b, 1, t0);
    t.record("short", 1, t0);
    t.check();
    let top = busiest(&t, 2);
    assert_eq!(top[0].1, 2, "one slot for the shared prefix");
    assert!(top[0].0.ends_with('…') && top[0].0.len() <= MAX_TOPIC);
    assert!(top[0].0.starts_with("éé"));
    assert_eq!(top[1].0, "short");
}

#[test]
fn the_previous_topic_is_compared_exactly_at_every_length() {
    let (mut t, t0) = table();
    for len in 0..40 {
        let a: String = (0..len)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        t.record(&a, 1, t0);
        for at in 0..len {
            // The same length, one byte different: another topic.
            let mut b = a.clone().into_bytes();
            b[at] = b'#';
            t.record(std::str::from_utf8(&b).unwrap(), 1, t0);
            t.record(&a, 1, t0);
        }
        let counts = t.busiest(SLOTS, false);
        let a_count = counts.iter().find(|s| s.topic == a).map(|s| s.count);
        assert_eq!(a_count, Some(len as u64 + 1), "{a:?}");
        t = TopTopics::new([1, 2], t0);
    }
    t.check();
}

#[test]
fn rates_are_taken_per_roll() {
    let (mut t, t0) = table();
    for _ in 0..10 {
        t.record("a", 100, t0);
    }
    t.roll(t0 + Duration::from_millis(500));
    assert_eq!(
        t.busiest(1, false)[0].msg_rate,
        0.0,
        "less than a second: no roll"
    );
    t.roll(t0 + Duration::from_secs(2));
    let a = t.busiest(1, false)[0];
    assert_eq!((a.msg_rate, a.byte_rate), (5.0, 500.0));
    t.roll(t0 + Duration::from_secs(3));
    assert_eq!(t.busiest(1, false)[0].msg_rate, 0.0, "nothing since");
}
