//! Numbers for people: byte sizes in (`1kb`, `1KiB`, `100`), byte sizes and
//! counts out (`14.00 KB`, `1_234_567`), and the generated test payload.

/// Largest generated payload: a PUBLISH frame's length field is a u32.
const MAX_PAYLOAD_BYTES: u64 = u32::MAX as u64 - 1024;

/// Parses a byte size: a number with an optional unit, case-insensitive.
/// `b` = 1; `k`/`kb` = 1000, `m`/`mb` = 1000², `g`/`gb` = 1000³;
/// `ki`/`kib` = 1024, `mi`/`mib` = 1024², `gi`/`gib` = 1024³. A fraction is
/// allowed with a unit (`1.5kb`).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "ki" | "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mi" | "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gi" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    let bad = || format!("invalid size {text:?} (examples: 100, 10kb, 1KiB, 1mb)");
    if let Ok(n) = number.parse::<u64>() {
        return n.checked_mul(multiplier).ok_or_else(bad);
    }
    let n: f64 = number.parse().map_err(|_| bad())?;
    let bytes = (n * multiplier as f64).round();
    if !(0.0..=MAX_PAYLOAD_BYTES as f64).contains(&bytes) {
        return Err(bad());
    }
    // In range and already rounded: the cast is exact.
    Ok(bytes as u64)
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
        for (text, want) in [
            ("100", 100),
            ("0", 0),
            ("10b", 10),
            ("1kb", 1000),
            ("1KB", 1000),
            ("1k", 1000),
            ("1KiB", 1024),
            ("1kib", 1024),
            ("10kb", 10_000),
            ("1mb", 1_000_000),
            ("1MiB", 1_048_576),
            ("2 gb", 2_000_000_000),
            ("1.5kb", 1500),
            ("0.5KiB", 512),
        ] {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
        for bad in [
            "",
            "kb",
            "1xb",
            "-1",
            "1.2.3",
            "99999999999999999999",
            "1e3",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_size("20000000000gb").is_err());
        assert!(parse_size("9999999.5gb").is_err());
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
