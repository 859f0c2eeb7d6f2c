//! The values of nginx directives: one argument, numbers in a range, nginx's time and size
//! syntax, `host:port`; an error names the directive and its line.

use buoy_crds::Duration;

use super::parse::Directive;
use crate::diagnostics::{ImportError, Loc};

/// The only argument of `d`.
pub(crate) fn one(d: &Directive) -> Result<&str, ImportError> {
    match d.args.as_slice() {
        [a] => Ok(a),
        [] => Err(ImportError::at(
            &d.at,
            format!("\"{}\" needs a value", d.name),
        )),
        _ => Err(ImportError::at(
            &d.at,
            format!("\"{}\" takes one value, got {}", d.name, d.args.len()),
        )),
    }
}

/// The first argument of `d`.
pub(crate) fn first(d: &Directive) -> Result<&str, ImportError> {
    d.args
        .first()
        .map(String::as_str)
        .ok_or_else(|| ImportError::at(&d.at, format!("\"{}\" needs a value", d.name)))
}

/// `v` as a number from `min` to `max`.
pub(crate) fn number(d: &Directive, v: &str, min: i64, max: i64) -> Result<i64, ImportError> {
    match v.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ImportError::at(
            &d.at,
            format!("{}: {v:?} is not a number from {min} to {max}", d.name),
        )),
    }
}

/// nginx's time syntax: `60`, `60s`, `500ms`, `1m30s`, `1h`, `2d`.
fn parse_time(v: &str) -> Option<Duration> {
    let mut total: u128 = 0;
    let mut rest = v;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u128 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let ms: u128 = match &rest[..unit_len] {
            // A bare number is seconds (only possible at the end: anything else is a bad unit).
            "" => 1000,
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "M" => 30 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * ms;
    }
    Some(Duration::from_millis(u64::try_from(total).ok()?))
}

/// `v` in nginx's time syntax.
pub(crate) fn time(d: &Directive, v: &str) -> Result<Duration, ImportError> {
    parse_time(v).ok_or_else(|| {
        ImportError::at(
            &d.at,
            format!("{}: {v:?} is not a time (60, 60s, 500ms, 1m)", d.name),
        )
    })
}

/// nginx's size syntax: `1024`, `8k`, `1m`, `1g`.
fn parse_size(v: &str) -> Option<u64> {
    let (n, mult) = match v.as_bytes().last()? {
        b'k' | b'K' => (&v[..v.len() - 1], 1024),
        b'm' | b'M' => (&v[..v.len() - 1], 1024 * 1024),
        b'g' | b'G' => (&v[..v.len() - 1], 1024 * 1024 * 1024),
        _ => (v, 1),
    };
    n.parse::<u64>().ok()?.checked_mul(mult)
}

/// `v` in nginx's size syntax.
pub(crate) fn size(d: &Directive, v: &str) -> Result<u64, ImportError> {
    parse_size(v).ok_or_else(|| {
        ImportError::at(
            &d.at,
            format!("{}: {v:?} is not a size (1024, 8k, 1m)", d.name),
        )
    })
}

/// `host:port`, `host`, `[v6]:port`.
pub(crate) fn host_port(
    s: &str,
    default_port: Option<u16>,
    at: &Loc,
) -> Result<(String, u16), ImportError> {
    let bad = || ImportError::at(at, format!("{s:?} is not an address with a valid port"));
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p)),
            _ => (s.to_string(), None),
        }
    };
    let port = match (port, default_port) {
        (Some(p), _) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(bad()),
        },
        (None, Some(d)) => d,
        (None, None) => {
            return Err(ImportError::at(
                at,
                format!("{s:?} needs a port (host:port)"),
            ));
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

/// A directive that is `on` or `off`.
pub(crate) fn on_off(d: &Directive) -> Result<bool, ImportError> {
    match one(d)? {
        "on" => Ok(true),
        "off" => Ok(false),
        v => Err(ImportError::at(
            &d.at,
            format!("{}: expected on or off, not {v:?}", d.name),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_sizes() {
        assert_eq!(parse_time("65"), Some(Duration::from_secs(65)));
        assert_eq!(parse_time("15s"), Some(Duration::from_secs(15)));
        assert_eq!(parse_time("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_time("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_time("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_time("x"), None);
        assert_eq!(parse_time("5x"), None);
        assert_eq!(parse_size("8k"), Some(8192));
        assert_eq!(parse_size("1m"), Some(1 << 20));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("1q"), None);
    }
}
