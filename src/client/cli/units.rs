//! Numbers for people: byte sizes in (`1kb`, `1KiB`, `100`), byte sizes and
//! counts out (`14.00 KB`, `1_234_567`), and the generated test payload.
//! The size parser itself is the crate's (`crate::units`).

use crate::units::{Fraction, SizeError, parse_size as parse_size_as};

/// Largest generated payload: a PUBLISH frame's length field is a u32.
const MAX_PAYLOAD_BYTES: u64 = u32::MAX as u64 - 1024;

/// Parses a payload size (`100`, `1kb`, `1KiB`, `1.5kb`): the crate's
/// parser, fractions allowed, with a message for the command line.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    parse_size_as(text, Fraction::Allowed).map_err(|e| match e {
        SizeError::Unit(unit) => format!("unknown size unit {unit:?} in {:?}", text.trim()),
        SizeError::Number => format!(
            "invalid size {:?} (examples: 100, 10kb, 1KiB, 1mb)",
            text.trim()
        ),
    })
}

/// The payload `0, 1, 2, …, 255, 0, 1, …` of `size` bytes.
pub(crate) fn generated_payload(size: u64) -> Result<Vec<u8>, String> {
    if size > MAX_PAYLOAD_BYTES {
        return Err(format!("payload size {size} is above the protocol limit"));
    }
    let len = usize::try_from(size).map_err(|_| format!("payload size {size} is too large"))?;
    let mut payload = Vec::new();
    payload
        .try_reserve_exact(len)
        .map_err(|_| format!("cannot allocate a payload of {size} bytes"))?;
    payload.extend((0..=u8::MAX).cycle().take(len));
    Ok(payload)
}

/// Bytes in the largest decimal unit below the value: `410 B`, `14.00 KB`.
pub(crate) fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        // 999.995 would print as "1000.00".
        if value < 999.995 {
            break;
        }
        value /= 1000.0;
        unit = next;
    }
    format!("{value:.2} {unit}")
}

/// A count with `_` between thousands: `1_234_567`.
pub(crate) fn format_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push('_');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size(" 1.5kb "), Ok(1500));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(
            parse_size("1xb"),
            Err("unknown size unit \"xb\" in \"1xb\"".to_string())
        );
        assert!(parse_size("-1").is_err());
        assert!(parse_size("1e3").is_err());
        for bad in ["", "kb", "1.2.3", "20000000000gb"] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.starts_with("invalid size"), "{bad}: {err}");
        }
    }

    #[test]
    fn payload() {
        let p = generated_payload(258).unwrap();
        assert_eq!(p.len(), 258);
        assert_eq!((p[0], p[1], p[255], p[256], p[257]), (0, 1, 255, 0, 1));
        assert!(generated_payload(0).unwrap().is_empty());
        assert!(generated_payload(u64::MAX).is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(410), "410 B");
        assert_eq!(format_bytes(14_000), "14.00 KB");
        assert_eq!(format_bytes(999_999), "1.00 MB");
        assert_eq!(format_bytes(1_500_000), "1.50 MB");
        assert_eq!(format_bytes(u64::MAX), "18.45 EB");
        assert_eq!(format_count(0), "0");
        assert_eq!(format_count(999), "999");
        assert_eq!(format_count(1000), "1_000");
        assert_eq!(format_count(1_234_567), "1_234_567");
    }
}
