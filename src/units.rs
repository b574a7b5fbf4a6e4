//! Byte sizes as people write them (`100`, `64MiB`, `1GiB`, `500mb`,
//! `1.5kb`): the one parser behind the server's config sizes
//! (`config/bridge.rs`) and `psrt-cli`'s payload sizes (`client/cli`).
//! Each caller words its own error message from [`SizeError`].

/// Largest value a fraction may give: every whole number up to 2^53 is
/// exact in an `f64`, so the rounded product casts to `u64` exactly.
const MAX_FRACTION_BYTES: f64 = (1u64 << 53) as f64;

/// Whether `1.5kb` is a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fraction {
    /// `1.5kb` = 1500 (rounded to a whole byte).
    Allowed,
    /// Whole numbers only.
    Refused,
}

/// Why a text is not a size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SizeError {
    /// The unit after the number is none of the known ones (as written,
    /// lower-cased).
    Unit(String),
    /// The number is missing, malformed, a refused fraction, or too large.
    Number,
}

/// Parses a byte size: a number with an optional unit, case-insensitive,
/// white space allowed around the unit. `b` = 1; `k`/`kb` = 1000,
/// `m`/`mb` = 1000², `g`/`gb` = 1000³; `ki`/`kib` = 1024, `mi`/`mib` = 1024²,
/// `gi`/`gib` = 1024³. A fraction (`1.5kb`) only if `fraction` allows it.
pub(crate) fn parse_size(text: &str, fraction: Fraction) -> Result<u64, SizeError> {
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
        other => return Err(SizeError::Unit(other.to_string())),
    };
    if let Ok(n) = number.parse::<u64>() {
        return n.checked_mul(multiplier).ok_or(SizeError::Number);
    }
    if fraction == Fraction::Refused {
        return Err(SizeError::Number);
    }
    let n: f64 = number.parse().map_err(|_| SizeError::Number)?;
    let bytes = (n * multiplier as f64).round();
    if !(0.0..=MAX_FRACTION_BYTES).contains(&bytes) {
        return Err(SizeError::Number);
    }
    // In range and already rounded: the cast is exact.
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_fractions() {
        let p = |t: &str| parse_size(t, Fraction::Allowed);
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
            assert_eq!(p(text), Ok(want), "{text}");
        }
        for bad in ["", "kb", "1.2.3", "99999999999999999999"] {
            assert_eq!(p(bad), Err(SizeError::Number), "{bad}");
        }
        assert_eq!(p("1xb"), Err(SizeError::Unit("xb".into())));
        assert_eq!(p("-1"), Err(SizeError::Unit("-1".into())));
        assert_eq!(p("1e3"), Err(SizeError::Unit("e3".into())));
        assert_eq!(p("20000000000gb"), Err(SizeError::Number));
        assert_eq!(p("9999999.5gb"), Err(SizeError::Number));
    }

    #[test]
    fn sizes_whole_only() {
        let p = |t: &str| parse_size(t, Fraction::Refused);
        assert_eq!(p("64MiB"), Ok(64 << 20));
        assert_eq!(p("1GiB"), Ok(1 << 30));
        assert_eq!(p("500 mb"), Ok(500_000_000));
        assert_eq!(p("2048"), Ok(2048));
        for bad in ["", "MiB", "1.5MiB", "99999999999999999999GiB"] {
            assert_eq!(p(bad), Err(SizeError::Number), "{bad}");
        }
        assert_eq!(p("12 parsecs"), Err(SizeError::Unit("parsecs".into())));
    }
}
