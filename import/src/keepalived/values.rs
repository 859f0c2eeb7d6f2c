//! The values of keepalived statements: one argument, numbers in a range, seconds with a
//! fraction, IP addresses; an error names the statement and its line.

use std::net::IpAddr;

use buoy_crds::Duration;

use super::parse::Stmt;
use crate::diagnostics::ImportError;

/// The only argument of `s`.
pub(crate) fn one_arg(s: &Stmt) -> Result<&str, ImportError> {
    match s.args() {
        [a] => Ok(a),
        [] => Err(ImportError::at(
            &s.at,
            format!("{} needs a value", s.keyword()),
        )),
        _ => Err(ImportError::at(
            &s.at,
            format!("{} takes one value, got {}", s.keyword(), s.args().len()),
        )),
    }
}

/// `value` as a number from `min` to `max`.
pub(crate) fn number(
    s: &Stmt,
    value: Option<&String>,
    min: i64,
    max: i64,
) -> Result<i64, ImportError> {
    let v =
        value.ok_or_else(|| ImportError::at(&s.at, format!("{} needs a number", s.keyword())))?;
    match v.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ImportError::at(
            &s.at,
            format!("{}: {v:?} is not a number from {min} to {max}", s.keyword()),
        )),
    }
}

/// Seconds from 0 to 1000, with a fraction.
pub(crate) fn seconds(s: &Stmt) -> Result<Duration, ImportError> {
    let a = one_arg(s)?;
    decimal_seconds(a)
        .filter(|d| d.as_millis() <= 1_000_000)
        .ok_or_else(|| {
            ImportError::at(
                &s.at,
                format!(
                    "{}: {a:?} is not a number of seconds from 0 to 1000",
                    s.keyword()
                ),
            )
        })
}

/// A repeat count from 1 to 100.
pub(crate) fn repeat(s: &Stmt) -> Result<u32, ImportError> {
    Ok(number(s, s.args().first(), 1, 100)? as u32)
}

/// A VRRP version, 2 or 3.
pub(crate) fn version_of(s: &Stmt) -> Result<u8, ImportError> {
    Ok(number(s, s.args().first(), 2, 3)? as u8)
}

/// An IP address, written back in its canonical form.
pub(crate) fn ip_arg(s: &Stmt) -> Result<String, ImportError> {
    let a = one_arg(s)?;
    a.parse::<IpAddr>().map(|ip| ip.to_string()).map_err(|_| {
        ImportError::at(
            &s.at,
            format!("{}: {a:?} is not an IP address", s.keyword()),
        )
    })
}

/// Seconds with an optional fraction (keepalived's `advert_int 0.1`, `preempt_delay 2.5`).
pub(crate) fn decimal_seconds(s: &str) -> Option<Duration> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut micros: u64 = 0;
    let mut scale = 100_000;
    for d in frac.bytes().take(6) {
        micros += u64::from(d - b'0') * scale;
        scale /= 10;
    }
    Some(Duration(
        std::time::Duration::from_secs(secs) + std::time::Duration::from_micros(micros),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_seconds_parse() {
        assert_eq!(decimal_seconds("1"), Some(Duration::from_secs(1)));
        assert_eq!(decimal_seconds("0.1"), Some(Duration::from_millis(100)));
        assert_eq!(decimal_seconds("2.55"), Some(Duration::from_millis(2550)));
        assert_eq!(decimal_seconds("x"), None);
        assert_eq!(decimal_seconds("-1"), None);
        assert_eq!(decimal_seconds(""), None);
    }
}
