//! Topic rules, on `MASK 00 PATTERN 00 TOPIC` (UTF-8): nothing may panic.
//! Normalising is idempotent and leaves no `//` and no leading `/`, and the
//! depth limit fails exactly when the normalised depth is above it. A mask
//! covers itself; if `mask_covers(m, p)` and `mask_matches(p, t)` then
//! `mask_matches(m, t)`; `validate_publish_topic` fails exactly on `+` or `#`,
//! and a publishable topic matches itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psrt_protocol::{
    TopicError, mask_covers, mask_matches, normalize_topic, topic_depth, validate_publish_topic,
};

const DEPTH: usize = 4;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\0');
    let [m, p, t] = [(); 3].map(|()| parts.next().unwrap_or_default());
    for s in [m, p, t] {
        let n = normalize_topic(s, usize::MAX).expect("no depth limit");
        assert!(!n.contains("//") && !n.starts_with('/'), "{s:?} -> {n:?}");
        assert_eq!(normalize_topic(&n, usize::MAX).ok().as_deref(), Some(&*n));
        let depth = topic_depth(&n);
        match normalize_topic(s, DEPTH) {
            Ok(limited) => assert!(limited == n && depth <= DEPTH),
            Err(e) => assert!(e == TopicError::TooDeep { depth, max: DEPTH } && depth > DEPTH),
        }
    }
    assert!(mask_covers(m, m), "{m:?}");
    if mask_covers(m, p) && mask_matches(p, t) {
        assert!(mask_matches(m, t), "{m:?} covers {p:?} ~ {t:?}");
    }
    let wild = t.contains(['+', '#']);
    assert_eq!(validate_publish_topic(t).is_err(), wild);
    assert!(wild || mask_matches(t, t));
});
