//! What the proxy benchmarks share: wrk from the client namespace, waiting for a port, medians.

#![allow(dead_code)] // each bench uses its part

use std::{thread, time::Duration};

use buoy_tests::netlab::{Lab, ns_exec};

/// wrk with `-t1 -c64` for `seconds` against `url` from the client namespace, with `extra`
/// arguments: (requests/s, p50 ms, p99 ms).
pub fn wrk_with(lab: &Lab, url: &str, seconds: u64, extra: &[&str]) -> (f64, f64, f64) {
    let duration = format!("-d{seconds}s");
    let mut args = vec!["wrk", "-t1", "-c64", &duration, "--latency"];
    args.extend(extra);
    args.push(url);
    let out = ns_exec(&lab.host("client").ns, &args).unwrap_or_default();
    let rps = out
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let pct = |p: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(p).map(|v| v.trim().to_string()))
            .map(|v| {
                let (num, unit) =
                    v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
                let n: f64 = num.parse().unwrap_or(0.0);
                match unit {
                    "us" => n / 1000.0,
                    "ms" => n,
                    "s" => n * 1000.0,
                    _ => n,
                }
            })
            .unwrap_or(0.0)
    };
    let errors = out
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"));
    if let Some(e) = errors {
        eprintln!("wrk {url}: {}", e.trim());
    }
    (rps, pct("50%"), pct("99%"))
}

/// [`wrk_with`] without extra arguments.
pub fn wrk(lab: &Lab, url: &str, seconds: u64) -> (f64, f64, f64) {
    wrk_with(lab, url, seconds, &[])
}

/// Waits (up to 5 s) until `port` listens on `host`.
pub fn wait_port(lab: &Lab, host: &str, port: u16) {
    for _ in 0..100 {
        if ns_exec(
            &lab.host(host).ns,
            &["sh", "-c", &format!("ss -ltn | grep -q ':{port} '")],
        )
        .is_ok()
        {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The median (0 for none).
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
