//! What the proxy benchmarks share: the lab (a backend, a proxy host, a client), the proxies
//! started there, wrk from the client namespace, waiting for a port, medians.

#![allow(dead_code)] // each bench uses its part

use std::{thread, time::Duration};

use buoy_tests::netlab::{Lab, ns_exec};

/// The lab's hosts: `backend` (10.77.0.1), `proxy` (10.77.0.2), `client` (10.77.0.3) and
/// `backend2` (10.77.0.4). Each backend is nginx with two workers, serving a small file on port
/// 80 and answering `return 200 "b1\n"` (`b2` on `backend2`) on port 8000: the seed's two web
/// servers in both forms. Listening when this returns.
pub fn lab_with_backend() -> Lab {
    let mut lab = Lab::new(&["backend", "proxy", "client", "backend2"]).unwrap();
    let dir = lab.dir().to_path_buf();
    for (host, ip, name) in [
        ("backend", "10.77.0.1", "b1"),
        ("backend2", "10.77.0.4", "b2"),
    ] {
        let www = dir.join(format!("www-{name}"));
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), "ok\n").unwrap();
        buoy_tests::nginx::spawn(
            &mut lab,
            host,
            &dir,
            &format!("backend-{name}"),
            "2",
            &format!(
                "events {{ worker_connections 4096; }}\nhttp {{ access_log off; keepalive_requests 100000; server {{ listen {ip}:80; root {}; }} server {{ listen {ip}:8000; location / {{ return 200 \"{name}\\n\"; }} }} }}\n",
                www.display()
            ),
        )
        .unwrap();
        wait_port(&lab, host, 80);
        wait_port(&lab, host, 8000);
    }
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

/// `buoy-agent proxy --threads 1` on the proxy host with these objects (YAML, written to `file`
/// in the lab's directory); its process index.
pub fn spawn_buoy(lab: &mut Lab, agent: &str, objects: &str, file: &str) -> usize {
    let file = lab.dir().join(file);
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

/// A TLS client that costs less than wrk's OpenSSL, so that the proxy rather than the client
/// is what runs out of CPU: `threads` blocking connections from the client namespace, each in a
/// loop until `seconds` are up: connect to `addr`, a TLS 1.3 handshake with X25519 (full, or
/// resuming the session of an earlier connection when `resume`), `GET /` with `Connection:
/// close`, the response read to its end. Returns (handshakes/s, failures). rustls on aws-lc-rs,
/// certificates not verified (handshake signatures are).
pub fn tls_connections(
    lab: &Lab,
    addr: std::net::SocketAddr,
    threads: usize,
    seconds: u64,
    resume: bool,
) -> (f64, u64) {
    use std::{
        io::{Read, Write},
        sync::{
            Arc,
            atomic::{AtomicU64, Ordering},
        },
        time::Instant,
    };
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    // What wrk (OpenSSL 3.0) offers and the servers choose; no post-quantum hybrid, which only
    // rustls would accept.
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    let provider = Arc::new(provider);
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(buoy_agent::probe::AnyCertificate(provider)))
        .with_no_client_auth();
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    let config = Arc::new(config);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let (d, f) = (done.clone(), failed.clone());
    let started = buoy_tests::netlab::in_netns(&lab.host("client").ns, move || {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        // Threads started here live in the client's namespace too.
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (config, done, failed) = (config.clone(), d.clone(), f.clone());
                thread::spawn(move || {
                    let name = rustls::pki_types::ServerName::try_from("bench.example").unwrap();
                    let mut response = Vec::with_capacity(1024);
                    while Instant::now() < deadline {
                        let ok = (|| -> std::io::Result<bool> {
                            let mut tcp = std::net::TcpStream::connect(addr)?;
                            tcp.set_nodelay(true)?;
                            let mut conn =
                                rustls::ClientConnection::new(config.clone(), name.clone())
                                    .map_err(std::io::Error::other)?;
                            let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
                            tls.write_all(
                                b"GET / HTTP/1.1\r\nHost: bench.example\r\nConnection: close\r\n\r\n",
                            )?;
                            response.clear();
                            // A server that closes without close_notify ends the read with an
                            // error once the response is in: what counts is the response.
                            let _ = tls.read_to_end(&mut response);
                            Ok(response.starts_with(b"HTTP/1.1 200"))
                        })();
                        match ok {
                            Ok(true) => done.fetch_add(1, Ordering::Relaxed),
                            _ => failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            })
            .collect();
        let t = Instant::now();
        for w in workers {
            let _ = w.join();
        }
        t.elapsed()
    });
    let elapsed = started.unwrap().join().unwrap().as_secs_f64().max(0.001);
    (
        done.load(Ordering::Relaxed) as f64 / elapsed,
        failed.load(Ordering::Relaxed),
    )
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
