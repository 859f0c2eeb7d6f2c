//! What the proxy benchmarks share: the lab (a backend, a proxy host, a client), the proxies
//! started there, wrk from the client namespace, waiting for a port, medians.

#![allow(dead_code)] // each bench uses its part

use std::{
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

use buoy_tests::netlab::{Lab, ns_exec};

/// The lab's hosts: `backend` (10.77.0.1), `proxy` (10.77.0.2) and `client`; the backend is
/// nginx serving a small file with two workers, listening on port 80 when this returns.
pub fn lab_with_backend() -> Lab {
    let mut lab = Lab::new(&["backend", "proxy", "client"]).unwrap();
    let dir = lab.dir().to_path_buf();
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), "ok\n").unwrap();
    let d = dir.display();
    buoy_tests::nginx::spawn(
        &mut lab,
        "backend",
        &dir,
        "backend",
        "2",
        &format!("events {{ worker_connections 4096; }}\nhttp {{ access_log off; keepalive_requests 100000; server {{ listen 10.77.0.1:80; root {d}/www; }} }}\n"),
    )
    .unwrap();
    wait_port(&lab, "backend", 80);
    lab
}

/// HAProxy on the proxy host with this configuration (one thread and connection reuse are
/// the caller's to set); its process index.
pub fn spawn_haproxy(lab: &mut Lab, config: &str) -> usize {
    let file = lab.dir().join("haproxy.cfg");
    std::fs::write(&file, config).unwrap();
    let file = file.display().to_string();
    lab.spawn("proxy", "haproxy", &["-db", "-f", &file])
        .unwrap()
}

/// `buoy-agent proxy --threads 1` on the proxy host with these objects (YAML); its process
/// index.
pub fn spawn_buoy(lab: &mut Lab, agent: &str, objects: &str) -> usize {
    let file = lab.dir().join("buoy.yaml");
    std::fs::write(&file, objects).unwrap();
    let file = file.display().to_string();
    lab.spawn(
        "proxy",
        agent,
        &["proxy", "--threads", "1", "--config", &file],
    )
    .unwrap()
}

/// wrk with `-t1 -c64` for `seconds` against `url` from the client namespace, with `extra`
/// arguments: (requests/s, p50 ms, p99 ms).
pub fn wrk_with(lab: &Lab, url: &str, seconds: u64, extra: &[&str]) -> (f64, f64, f64) {
    run_wrk(lab, &[], url, seconds, extra)
}

/// [`wrk_with`] with `Connection: close` and [`no_resume`] preloaded: every request a new
/// connection with a full TLS handshake.
pub fn wrk_full_handshakes(
    lab: &Lab,
    no_resume: &Path,
    url: &str,
    seconds: u64,
) -> (f64, f64, f64) {
    let preload = format!("LD_PRELOAD={}", no_resume.display());
    run_wrk(
        lab,
        &["env", &preload],
        url,
        seconds,
        &["-H", "Connection: close"],
    )
}

/// wrk behind the `prefix` command (`env …`).
fn run_wrk(lab: &Lab, prefix: &[&str], url: &str, seconds: u64, extra: &[&str]) -> (f64, f64, f64) {
    let duration = format!("-d{seconds}s");
    let mut args = prefix.to_vec();
    args.extend(["wrk", "-t1", "-c64", &duration, "--latency"]);
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

/// Builds `no_resume.c` (beside this file) into `dir`: a library that, preloaded into wrk,
/// drops the TLS session wrk would offer again, so that each connection makes a full handshake.
pub fn no_resume(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/support/no_resume.c");
    let library = dir.join("no_resume.so");
    let out = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&library)
        .arg(&source)
        .arg("-ldl")
        .output()
        .expect("cc");
    assert!(
        out.status.success(),
        "cc {}: {}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    library
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
