//! Durations as Kubernetes writes them (`metav1.Duration`: Go's `time.ParseDuration` syntax).
//!
//! The same strings are read by CEL's `duration()` in the CRD rules, so Buoy parses exactly that
//! grammar (`1s`, `100ms`, `1m30s`, `1.5s`), not a friendlier one that the API server would reject.

use std::{fmt, str::FromStr, time::Duration as StdDuration};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The pattern the CRD schema enforces; kept in step with [`parse`].
pub(crate) const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// A non-negative duration written as a Go duration string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub StdDuration);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: {reason} (use a number and a unit: ns, us, ms, s, m, h; e.g. 100ms, 1s, 1m30s)"
)]
/// A duration that does not parse, with the input and why.
pub struct DurationError {
    input: String,
    reason: &'static str,
}

impl Duration {
    /// No time.
    pub const ZERO: Duration = Duration(StdDuration::ZERO);

    /// `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Duration(StdDuration::from_millis(ms))
    }

    /// `s` seconds.
    pub const fn from_secs(s: u64) -> Self {
        Duration(StdDuration::from_secs(s))
    }

    /// As a `std::time::Duration`.
    pub fn as_std(&self) -> StdDuration {
        self.0
    }

    /// Whole milliseconds, truncated like CEL's `duration.getMilliseconds()`.
    pub fn as_millis(&self) -> u128 {
        self.0.as_millis()
    }

    /// Whether it is no time.
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

/// Parses a Go duration string (without sign: Buoy has no negative durations).
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    if input == "0" {
        return Ok(Duration::ZERO);
    }
    if input.is_empty() {
        return Err(err("empty"));
    }
    let mut rest = input;
    let mut total: u128 = 0; // nanoseconds
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &after_dot[..frac_len];
            rest = &after_dot[frac_len..];
            if frac_part.is_empty() {
                return Err(err("a decimal point must be followed by digits"));
            }
        }
        if int_part.is_empty() {
            return Err(err("expected a number"));
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(rest.len(), |(i, _)| i);
        let unit: u128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        rest = &rest[unit_len..];
        let whole: u128 = int_part.parse().map_err(|_| err("number too large"))?;
        let mut value = whole.checked_mul(unit).ok_or_else(|| err("too large"))?;
        // Fractions are scaled digit by digit so that `1.5s` is exact, as in Go.
        let mut scale = unit;
        for digit in frac_part.bytes() {
            scale /= 10;
            value += u128::from(digit - b'0') * scale;
        }
        total = total.checked_add(value).ok_or_else(|| err("too large"))?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| err("too large"))?;
    // The remainder of a division by 1e9 always fits in u32.
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration(StdDuration::new(secs, nanos)))
}

impl FromStr for Duration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

impl fmt::Display for Duration {
    /// The shortest exact spelling: `0s`, `100ms`, `1s`, `1m30s`, `1.5s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        let (h, rem) = (nanos / 3_600_000_000_000, nanos % 3_600_000_000_000);
        let (m, rem) = (rem / 60_000_000_000, rem % 60_000_000_000);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if rem == 0 {
            return Ok(());
        }
        if h == 0 && m == 0 && rem < 1_000_000_000 {
            return if rem % 1_000_000 == 0 {
                write!(f, "{}ms", rem / 1_000_000)
            } else if rem % 1_000 == 0 {
                write!(f, "{}us", rem / 1_000)
            } else {
                write!(f, "{rem}ns")
            };
        }
        let (s, frac) = (rem / 1_000_000_000, rem % 1_000_000_000);
        if frac == 0 {
            write!(f, "{s}s")
        } else {
            let digits = format!("{frac:09}");
            write!(f, "{s}.{}s", digits.trim_end_matches('0'))
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 32,
            "pattern": DURATION_PATTERN,
            "description": "A duration such as 100ms, 1s or 1m30s (units: ns, us, ms, s, m, h)."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let ms = |s: &str| parse(s).map(|d| d.0.as_nanos());
        assert_eq!(ms("1s"), Ok(1_000_000_000));
        assert_eq!(ms("100ms"), Ok(100_000_000));
        assert_eq!(ms("1m30s"), Ok(90_000_000_000));
        assert_eq!(ms("1.5s"), Ok(1_500_000_000));
        assert_eq!(ms("40.95s"), Ok(40_950_000_000));
        assert_eq!(ms("1h"), Ok(3_600_000_000_000));
        assert_eq!(ms("250us"), Ok(250_000));
        assert_eq!(ms("0"), Ok(0));
        assert_eq!(ms("0s"), Ok(0));
    }

    #[test]
    fn rejects_bad_durations_with_reason() {
        for bad in [
            "",
            "1",
            "s",
            "1x",
            "-1s",
            "1.s",
            ".5s",
            "1 s",
            "99999999999999999999999h",
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.to_string().contains("invalid duration"), "{bad}: {e}");
        }
        assert!(parse("1").unwrap_err().to_string().contains("missing unit"));
        assert!(
            parse("5d")
                .unwrap_err()
                .to_string()
                .contains("unknown unit")
        );
    }

    #[test]
    fn displays_shortest_exact_form() {
        for s in [
            "0s", "10ms", "1s", "1.5s", "40.95s", "1m30s", "1h", "2h0m5s", "250us", "7ns",
        ] {
            let d = parse(s).unwrap();
            let shown = d.to_string();
            assert_eq!(parse(&shown).unwrap(), d, "{s} shown as {shown}");
        }
        assert_eq!(Duration::from_millis(100).to_string(), "100ms");
        assert_eq!(Duration::from_secs(90).to_string(), "1m30s");
    }

    #[test]
    fn pattern_agrees_with_parser() {
        let re = regex::Regex::new(DURATION_PATTERN).unwrap();
        for s in ["1s", "100ms", "1m30s", "1.5s", "250us", "1h2m3s"] {
            assert!(re.is_match(s) && parse(s).is_ok(), "{s}");
        }
        for s in ["1", "s", "1x", "-1s", "1.s", "1 s"] {
            assert!(!re.is_match(s) && parse(s).is_err(), "{s}");
        }
    }
}
