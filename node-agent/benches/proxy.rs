//! Proxy benchmark: wrk from a client namespace through Buoy, nginx (the reference config with
//! upstream keep-alive), HAProxy, and straight to the backend, one proxy worker thread each, same
//! backend (nginx serving a small file), same run. Then L4: Buoy's TCP listener against HAProxy
//! `mode tcp`.
//!
//!     cargo bench -p buoy-agent --bench proxy [-- --seconds N] [--rounds N]
//!
//! Prints requests/s, p50 and p99 latency and proxy RSS, with ratios to nginx (L7) or HAProxy
//! (L4). Each figure is the median of `--rounds` runs (default 3), the proxies taking turns in a
//! rotating order, so that a slow spell of the machine does not land on one proxy. Then HTTP/2
//! from clients: h2load (h2c with prior knowledge) through Buoy and nginx (`listen … http2`), both
//! to the same HTTP/1.1 backend. A command, not a test.

#![allow(clippy::unwrap_used)]

use buoy_tests::{
    netlab::{Lab, ns_exec},
    process::{cpu_seconds, rss_mb},
};
use support::{lab_with_backend, median, spawn_buoy, spawn_haproxy, wait_port, wrk};

mod support;

const AGENT: &str = env!("CARGO_BIN_EXE_buoy-agent");

struct Result {
    name: &'static str,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    rss_mb: f64,
    /// Proxy CPU per request (user, system), µs: less sensitive than requests/s to what else
    /// runs on the machine.
    cpu_us: Option<(f64, f64)>,
}

/// h2load from the client namespace for `seconds`: requests/s, the mean time per request (ms),
/// and the requests that did not succeed.
fn h2load(lab: &Lab, url: &str, seconds: u64) -> (f64, f64, u64) {
    let out = ns_exec(
        &lab.host("client").ns,
        &[
            "h2load",
            "-t1",
            "-c8",
            "-m8",
            "-D",
            &seconds.to_string(),
            url,
        ],
    )
    .unwrap_or_default();
    // "finished in 8.00s, 21346.12 req/s, 1.23MB/s"
    let rps = out
        .lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|v| v.strip_suffix(" req/s"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    // "time for request:  1.25ms  45.68ms  2.95ms  1.52ms  85.71%": min, max, mean, sd.
    let mean_ms = out
        .lines()
        .find_map(|l| l.strip_prefix("time for request:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .map(|v| {
            let (num, unit) =
                v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
            let n: f64 = num.parse().unwrap_or(0.0);
            match unit {
                "us" => n / 1000.0,
                "s" => n * 1000.0,
                _ => n,
            }
        })
        .unwrap_or(0.0);
    // "requests: 170769 total, 170769 started, 170769 done, 170769 succeeded, 0 failed, …"
    let failed = out
        .lines()
        .find_map(|l| l.strip_prefix("requests:"))
        .map_or(u64::MAX, |l| {
            let n = |what: &str| {
                l.split(", ")
                    .find_map(|p| p.trim().strip_suffix(what)?.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            n("done").saturating_sub(n("succeeded"))
        });
    (rps, mean_ms, failed)
}

fn main() {
    let seconds: u64 = buoy_tests::bench_flag("--seconds", 8);
    // The backend: nginx serving a small file, two workers.
    let mut lab = lab_with_backend();
    let dir = lab.dir().to_path_buf();

    let rounds: usize = buoy_tests::bench_flag("--rounds", 3).max(1);
    // nginx: the reference configuration, with upstream keep-alive.
    let nginx = buoy_tests::nginx::spawn(
        &mut lab,
        "proxy",
        &dir,
        "nginx",
        "1",
        "events { worker_connections 4096; }\nhttp {\n  access_log off;\n  keepalive_timeout 65;\n  keepalive_requests 100000;\n  upstream test_web { server 10.77.0.1:80 weight=1 max_fails=2 fail_timeout=15s; keepalive 64; }\n  server {\n    listen 10.77.0.2:8081;\n    listen 10.77.0.2:8083 http2;\n    location / {\n      proxy_next_upstream http_502 http_504 error timeout invalid_header;\n      proxy_pass http://test_web;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_set_header Host $host;\n      proxy_set_header X-Real-IP $remote_addr;\n      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }\n  }\n}\n",
    )
    .unwrap();
    // HAProxy, one thread, connection reuse.
    let haproxy = spawn_haproxy(
        &mut lab,
        "global\n  nbthread 1\n  maxconn 8192\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  http-reuse always\nfrontend web\n  bind 10.77.0.2:8082\n  default_backend app\nbackend app\n  option forwardfor\n  server b1 10.77.0.1:80\nfrontend raw\n  mode tcp\n  bind 10.77.0.2:9082\n  default_backend rawapp\nbackend rawapp\n  mode tcp\n  server b1 10.77.0.1:80\n",
    );
    // Buoy, one worker thread: the seed's pool and headers, an HTTP and a TCP listener.
    let buoy = spawn_buoy(
        &mut lab,
        AGENT,
        "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {name: bench}\nspec:\n  addresses: [10.77.0.2]\n  listeners:\n    - {name: web, port: 8080, protocol: HTTP, upstreamPool: app, client: {keepaliveTimeout: 65s, maxConnections: 4096}}\n    - {name: raw, port: 9080, protocol: TCP, upstreamPool: app}\n---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {name: app}\nspec:\n  backends:\n    - {address: 10.77.0.1, port: 80, weight: 1, maxFails: 2, failTimeout: 15s}\n  retry: {attempts: 2, retryOn: [HTTP502, HTTP504, ConnectFailure, Timeout, InvalidHeader]}\n  http: {xForwardedProto: false}\n",
    );
    for port in [8080, 8081, 8082, 8083, 9080, 9082] {
        wait_port(&lab, "proxy", port);
    }
    // (name, port, process): `None` is the backend itself.
    let targets = [
        ("direct to backend", "10.77.0.1:80", None),
        ("nginx", "10.77.0.2:8081", Some(nginx)),
        ("HAProxy", "10.77.0.2:8082", Some(haproxy)),
        ("Buoy", "10.77.0.2:8080", Some(buoy)),
    ];
    for (_, addr, _) in &targets {
        let _ = wrk(&lab, &format!("http://{addr}/"), 2); // warm-up
    }
    let mut runs: Vec<Vec<Result>> = (0..targets.len()).map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for k in 0..targets.len() {
            let t = (k + round) % targets.len();
            let (name, addr, idx) = targets[t];
            let pid = idx.map(|i| lab.proc(i).pid());
            let before = pid.map(cpu_seconds);
            let (rps, p50, p99) = wrk(&lab, &format!("http://{addr}/"), seconds);
            let requests = (rps * seconds as f64).max(1.0);
            let cpu_us = pid.zip(before).map(|(pid, before)| {
                let after = cpu_seconds(pid);
                (
                    (after.0 - before.0) * 1e6 / requests,
                    (after.1 - before.1) * 1e6 / requests,
                )
            });
            runs[t].push(Result {
                name,
                rps,
                p50_ms: p50,
                p99_ms: p99,
                rss_mb: pid.map_or(0.0, rss_mb),
                cpu_us,
            });
        }
    }
    let results: Vec<Result> = runs.iter().map(|r| median_of(r)).collect();
    let nginx_r = results
        .iter()
        .find(|r| r.name == "nginx")
        .map(|r| (r.rps, r.p99_ms, r.rss_mb))
        .unwrap_or((1.0, 1.0, 1.0));
    let direct = results[0].rps.max(1.0);
    println!(
        "HTTP through one proxy worker thread (wrk -t1 -c64, {seconds} s, median of {rounds} rounds, 2-core machine shared by client, proxy and backend)"
    );
    println!(
        "| target | requests/s | × direct | × nginx | p50 | p99 | p99 × nginx | proxy RSS | RSS × nginx | proxy CPU/request (user + sys) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &results {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} ms | {:.2} ms | {:.2} | {:.1} MB | {} | {} |",
            r.name,
            r.rps,
            r.rps / direct,
            r.rps / nginx_r.0.max(1.0),
            r.p50_ms,
            r.p99_ms,
            r.p99_ms / nginx_r.1.max(0.001),
            r.rss_mb,
            if r.rss_mb > 0.0 {
                format!("{:.2}", r.rss_mb / nginx_r.2.max(0.001))
            } else {
                "-".into()
            },
            r.cpu_us.map_or("-".into(), |(u, s)| format!(
                "{:.1} µs ({u:.1} + {s:.1})",
                u + s
            ))
        );
    }
    if rounds > 1 {
        let per_round: Vec<String> = runs[3]
            .iter()
            .zip(&runs[1])
            .map(|(b, n)| {
                format!(
                    "{:.2} ({:.2})",
                    b.rps / n.rps.max(1.0),
                    b.p99_ms / n.p99_ms.max(0.001)
                )
            })
            .collect();
        println!();
        println!(
            "Buoy × nginx requests/s (p99 × nginx) in each round: {}.",
            per_round.join(", ")
        );
    }
    let _ = wrk(&lab, "http://10.77.0.2:9082/", 2);
    let _ = wrk(&lab, "http://10.77.0.2:9080/", 2);
    let (mut h, mut b) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // HAProxy first in even rounds, Buoy first in odd ones.
        let mut pair = [("9082", &mut h), ("9080", &mut b)];
        if round % 2 == 1 {
            pair.reverse();
        }
        for (port, into) in pair {
            into.push(wrk(&lab, &format!("http://10.77.0.2:{port}/"), seconds));
        }
    }
    let (h_rps, h_p99) = (median(h.iter().map(|r| r.0)), median(h.iter().map(|r| r.2)));
    let (b_rps, b_p99) = (median(b.iter().map(|r| r.0)), median(b.iter().map(|r| r.2)));
    println!();
    println!("L4 (TCP listener vs HAProxy mode tcp, same load)");
    println!("| target | requests/s | × HAProxy | p99 |");
    println!("|---|---|---|---|");
    println!("| HAProxy mode tcp | {h_rps:.0} | 1.00 | {h_p99:.2} ms |");
    println!(
        "| Buoy TCP | {b_rps:.0} | {:.2} | {b_p99:.2} ms |",
        b_rps / h_rps.max(1.0)
    );

    // HTTP/2 from clients: nginx's `listen … http2` port and Buoy's listener (h2c on the same
    // port as HTTP/1), each to the backend over HTTP/1.1.
    let h2_targets = [
        ("nginx (h2c)", "10.77.0.2:8083", nginx),
        ("Buoy (h2c)", "10.77.0.2:8080", buoy),
    ];
    for (_, addr, _) in &h2_targets {
        let _ = h2load(&lab, &format!("http://{addr}/"), 2); // warm-up
    }
    let mut h2_runs: Vec<Vec<(f64, f64, u64, f64)>> = vec![Vec::new(), Vec::new()];
    for round in 0..rounds {
        for k in 0..h2_targets.len() {
            let t = (k + round) % h2_targets.len();
            let (_, addr, idx) = h2_targets[t];
            let pid = lab.proc(idx).pid();
            let before = cpu_seconds(pid);
            let (rps, mean, failed) = h2load(&lab, &format!("http://{addr}/"), seconds);
            let after = cpu_seconds(pid);
            let requests = (rps * seconds as f64).max(1.0);
            let cpu = ((after.0 - before.0) + (after.1 - before.1)) * 1e6 / requests;
            h2_runs[t].push((rps, mean, failed, cpu));
        }
    }
    let h2_nginx = median(h2_runs[0].iter().map(|r| r.0)).max(1.0);
    println!();
    println!(
        "HTTP/2 from clients (h2load -t1 -c8 -m8: 64 streams at once, as wrk's 64 connections; h2c with prior knowledge, {seconds} s, median of {rounds} rounds; backends over HTTP/1.1)"
    );
    println!(
        "| target | requests/s | × nginx | mean time per request | failed | proxy CPU/request |"
    );
    println!("|---|---|---|---|---|---|");
    for (t, (name, _, _)) in h2_targets.iter().enumerate() {
        let r = &h2_runs[t];
        let rps = median(r.iter().map(|x| x.0));
        println!(
            "| {name} | {rps:.0} | {:.2} | {:.2} ms | {} | {:.1} µs |",
            rps / h2_nginx,
            median(r.iter().map(|x| x.1)),
            r.iter().map(|x| x.2).max().unwrap_or(0),
            median(r.iter().map(|x| x.3)),
        );
    }
    drop(lab);
}

/// Each figure's median over the rounds of one target (RSS: after its last run).
fn median_of(runs: &[Result]) -> Result {
    Result {
        name: runs.first().map_or("", |r| r.name),
        rps: median(runs.iter().map(|r| r.rps)),
        p50_ms: median(runs.iter().map(|r| r.p50_ms)),
        p99_ms: median(runs.iter().map(|r| r.p99_ms)),
        rss_mb: runs.last().map_or(0.0, |r| r.rss_mb),
        cpu_us: runs.iter().all(|r| r.cpu_us.is_some()).then(|| {
            (
                median(runs.iter().filter_map(|r| r.cpu_us).map(|c| c.0)),
                median(runs.iter().filter_map(|r| r.cpu_us).map(|c| c.1)),
            )
        }),
    }
}
