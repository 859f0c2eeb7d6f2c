//! Proxy benchmark: wrk from a client namespace through Buoy, nginx (the reference config with
//! upstream keep-alive), HAProxy, and straight to the backend, one proxy worker thread each, same
//! backends, same run, in four shapes: one backend or the seed's two (round robin), each backend
//! serving a small file or answering `return 200`. Then L4: Buoy's TCP listener against HAProxy
//! `mode tcp`.
//!
//!     cargo bench -p buoy-agent --bench proxy [-- --seconds N] [--rounds N]
//!
//! `--compare "LABEL=PATH,…"` measures other builds of the agent beside this one, in the same
//! rounds (the profile-guided release build of `scripts/release`, the build before a change).
//!
//! Prints requests/s, p50 and p99 latency and proxy RSS, with ratios to nginx (L7) or HAProxy
//! (L4). Each figure is the median of `--rounds` runs (default 5), the proxies taking turns in a
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
/// How much higher the ports of each `--compare` agent are than the last's: its HTTP listeners
/// (8080–8380 + this) and its TCP one (9080 + this) clear of every other proxy's ports.
const OTHER: u16 = 2000;

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

/// A load shape: which backends the proxies forward to, and each proxy's port for it.
struct Shape {
    name: &'static str,
    /// `host:port` of each backend, round robin between them.
    backends: &'static [&'static str],
    nginx: u16,
    haproxy: u16,
    buoy: u16,
    /// The backend's own address, measured without a proxy (one-backend shapes).
    direct: Option<&'static str>,
}

/// The shapes: the seed's (two backends, round robin) and one backend, each with a backend
/// serving a small file and one answering `return 200`.
const SHAPES: [Shape; 4] = [
    Shape {
        name: "1 backend, file",
        backends: &["10.77.0.1:80"],
        nginx: 8081,
        haproxy: 8082,
        buoy: 8080,
        direct: Some("10.77.0.1:80"),
    },
    Shape {
        name: "1 backend, return 200",
        backends: &["10.77.0.1:8000"],
        nginx: 8181,
        haproxy: 8182,
        buoy: 8180,
        direct: Some("10.77.0.1:8000"),
    },
    Shape {
        name: "2 backends round robin, file (the seed)",
        backends: &["10.77.0.1:80", "10.77.0.4:80"],
        nginx: 8281,
        haproxy: 8282,
        buoy: 8280,
        direct: None,
    },
    Shape {
        name: "2 backends round robin, return 200 (the seed)",
        backends: &["10.77.0.1:8000", "10.77.0.4:8000"],
        nginx: 8381,
        haproxy: 8382,
        buoy: 8380,
        direct: None,
    },
];

/// nginx: the reference configuration (the seed's upstream and `proxy_next_upstream`), with
/// upstream keep-alive, a server per shape; h2c on 8083 for the first.
fn nginx_config() -> String {
    let mut out = String::from(
        "events { worker_connections 4096; }\nhttp {\n  access_log off;\n  keepalive_timeout 65;\n  keepalive_requests 100000;\n",
    );
    for (i, shape) in SHAPES.iter().enumerate() {
        out.push_str(&format!("  upstream shape{i} {{\n"));
        for b in shape.backends {
            out.push_str(&format!(
                "    server {b} weight=1 max_fails=2 fail_timeout=15s;\n"
            ));
        }
        out.push_str("    keepalive 64;\n  }\n");
        let h2 = if i == 0 {
            "    listen 10.77.0.2:8083 http2;\n"
        } else {
            ""
        };
        out.push_str(&format!(
            "  server {{\n    listen 10.77.0.2:{};\n{h2}    location / {{\n      proxy_next_upstream http_502 http_504 error timeout invalid_header;\n      proxy_pass http://shape{i};\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_set_header Host $host;\n      proxy_set_header X-Real-IP $remote_addr;\n      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }}\n  }}\n",
            shape.nginx
        ));
    }
    out.push_str("}\n");
    out
}

/// HAProxy, one thread, connection reuse, round robin; a frontend per shape and one in TCP mode.
fn haproxy_config() -> String {
    let mut out = String::from(
        "global\n  nbthread 1\n  maxconn 8192\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  http-reuse always\n",
    );
    for (i, shape) in SHAPES.iter().enumerate() {
        out.push_str(&format!(
            "frontend web{i}\n  bind 10.77.0.2:{}\n  default_backend app{i}\nbackend app{i}\n  balance roundrobin\n  option forwardfor\n",
            shape.haproxy
        ));
        for (j, b) in shape.backends.iter().enumerate() {
            out.push_str(&format!("  server b{j} {b}\n"));
        }
    }
    out.push_str("frontend raw\n  mode tcp\n  bind 10.77.0.2:9082\n  default_backend rawapp\nbackend rawapp\n  mode tcp\n  server b1 10.77.0.1:80\n");
    out
}

/// Buoy, one worker thread: the seed's pool (weights, `max_fails`, `fail_timeout`, the retries
/// of its `proxy_next_upstream`) and headers, an HTTP listener per shape, a TCP listener.
fn buoy_objects(offset: u16) -> String {
    let mut listeners = String::new();
    let mut pools = String::new();
    for (i, shape) in SHAPES.iter().enumerate() {
        listeners.push_str(&format!(
            "    - {{name: web{i}, port: {}, protocol: HTTP, upstreamPool: app{i}, client: {{keepaliveTimeout: 65s, maxConnections: 4096}}}}\n",
            shape.buoy + offset
        ));
        pools.push_str(&format!(
            "---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: app{i}}}\nspec:\n  backends:\n"
        ));
        for b in shape.backends {
            let (ip, port) = b.split_once(':').unwrap();
            pools.push_str(&format!(
                "    - {{address: {ip}, port: {port}, weight: 1, maxFails: 2, failTimeout: 15s}}\n"
            ));
        }
        pools.push_str("  retry: {attempts: 2, retryOn: [HTTP502, HTTP504, ConnectFailure, Timeout, InvalidHeader]}\n  http: {xForwardedProto: false}\n");
    }
    format!(
        "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {{name: bench}}\nspec:\n  addresses: [10.77.0.2]\n  listeners:\n{listeners}    - {{name: raw, port: {}, protocol: TCP, upstreamPool: app0}}\n{pools}",
        9080 + offset
    )
}

fn main() {
    let seconds: u64 = buoy_tests::bench_flag("--seconds", 8);
    let rounds: usize = buoy_tests::bench_flag("--rounds", 5).max(1);
    let mut lab = lab_with_backend();
    let dir = lab.dir().to_path_buf();
    let nginx =
        buoy_tests::nginx::spawn(&mut lab, "proxy", &dir, "nginx", "1", &nginx_config()).unwrap();
    let haproxy = spawn_haproxy(&mut lab, &haproxy_config());
    let buoy = spawn_buoy(&mut lab, AGENT, &buoy_objects(0), "buoy.yaml");
    // Other builds of the agent measured in the same run (`--compare "LABEL=PATH,…"`: the
    // profile-guided build, the one before a change), each on ports 2000 higher than the last.
    let compare = buoy_tests::bench_flag("--compare", String::new());
    let others: Vec<(&'static str, usize, u16)> = compare
        .split(',')
        .filter_map(|c| c.split_once('='))
        .enumerate()
        .map(|(k, (label, path))| {
            let label: &'static str = Box::leak(label.trim().to_string().into_boxed_str());
            let offset = OTHER * (k as u16 + 1);
            let file = format!("compare{k}.yaml");
            let idx = spawn_buoy(&mut lab, path.trim(), &buoy_objects(offset), &file);
            (label, idx, offset)
        })
        .collect();
    for shape in &SHAPES {
        for port in [shape.nginx, shape.haproxy, shape.buoy] {
            wait_port(&lab, "proxy", port);
        }
        for (_, _, offset) in &others {
            wait_port(&lab, "proxy", shape.buoy + offset);
        }
    }
    for port in [8083, 9080, 9082] {
        wait_port(&lab, "proxy", port);
    }
    // Every (shape, name, address, process) measured; `None`: the backend itself.
    let mut targets: Vec<(usize, &'static str, String, Option<usize>)> = Vec::new();
    for (i, shape) in SHAPES.iter().enumerate() {
        if let Some(d) = shape.direct {
            targets.push((i, "direct to backend", d.to_string(), None));
        }
        targets.push((
            i,
            "nginx",
            format!("10.77.0.2:{}", shape.nginx),
            Some(nginx),
        ));
        targets.push((
            i,
            "HAProxy",
            format!("10.77.0.2:{}", shape.haproxy),
            Some(haproxy),
        ));
        targets.push((i, "Buoy", format!("10.77.0.2:{}", shape.buoy), Some(buoy)));
        for &(label, idx, offset) in &others {
            let addr = format!("10.77.0.2:{}", shape.buoy + offset);
            targets.push((i, label, addr, Some(idx)));
        }
    }
    let names: Vec<&'static str> = ["nginx", "HAProxy", "Buoy"]
        .into_iter()
        .chain(others.iter().map(|(label, _, _)| *label))
        .collect();
    for (_, _, addr, _) in &targets {
        let _ = wrk(&lab, &format!("http://{addr}/"), 2); // warm-up
    }
    let mut runs: Vec<Vec<Result>> = (0..targets.len()).map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for k in 0..targets.len() {
            // Rotating over every target of every shape: a slow spell of the machine lands on
            // different proxies in different rounds.
            let t = (k + round) % targets.len();
            let (_, name, addr, idx) = &targets[t];
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
    let find = |shape: usize, name: &str| {
        targets
            .iter()
            .position(|(s, n, _, _)| *s == shape && *n == name)
            .unwrap()
    };

    // The first shape, in full.
    let first: Vec<usize> = (0..targets.len()).filter(|&t| targets[t].0 == 0).collect();
    let nginx_r = &results[find(0, "nginx")];
    let direct = results[find(0, "direct to backend")].rps.max(1.0);
    println!(
        "HTTP through one proxy worker thread, {} (wrk -t1 -c64, {seconds} s, median of {rounds} rounds, 2-core machine shared by client, proxy and backends)",
        SHAPES[0].name
    );
    println!(
        "| target | requests/s | × direct | × nginx | p50 | p99 | p99 × nginx | proxy RSS | RSS × nginx | proxy CPU/request (user + sys) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &t in &first {
        let r = &results[t];
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} ms | {:.2} ms | {:.2} | {:.1} MB | {} | {} |",
            r.name,
            r.rps,
            r.rps / direct,
            r.rps / nginx_r.rps.max(1.0),
            r.p50_ms,
            r.p99_ms,
            r.p99_ms / nginx_r.p99_ms.max(0.001),
            r.rss_mb,
            if r.rss_mb > 0.0 {
                format!("{:.2}", r.rss_mb / nginx_r.rss_mb.max(0.001))
            } else {
                "-".into()
            },
            r.cpu_us.map_or("-".into(), |(u, s)| format!(
                "{:.1} µs ({u:.1} + {s:.1})",
                u + s
            ))
        );
    }

    // Every shape: the figures against nginx's in the same shape.
    println!();
    println!(
        "Each shape (backends nginx with two workers: a small file, or `return 200`; the seed's pool, retries and headers in every proxy; same rounds)"
    );
    println!(
        "| shape | proxy | requests/s | × nginx | p99 | p99 × nginx | CPU/request | CPU × nginx |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let cpu = |r: &Result| r.cpu_us.map_or(0.0, |(u, s)| u + s);
    for (i, shape) in SHAPES.iter().enumerate() {
        let n = &results[find(i, "nginx")];
        for &name in &names {
            let r = &results[find(i, name)];
            println!(
                "| {} | {name} | {:.0} | {:.2} | {:.2} ms | {:.2} | {:.1} µs | {:.2} |",
                shape.name,
                r.rps,
                r.rps / n.rps.max(1.0),
                r.p99_ms,
                r.p99_ms / n.p99_ms.max(0.001),
                cpu(r),
                cpu(r) / cpu(n).max(0.001),
            );
        }
    }
    if rounds > 1 {
        println!();
        let pairs = SHAPES
            .iter()
            .enumerate()
            .flat_map(|(i, shape)| names[2..].iter().map(move |&name| (i, shape, name)));
        for (i, shape, name) in pairs {
            let per_round: Vec<String> = runs[find(i, name)]
                .iter()
                .zip(&runs[find(i, "nginx")])
                .map(|(b, n)| {
                    let c = |r: &Result| r.cpu_us.map_or(0.0, |(u, s)| u + s);
                    format!(
                        "{:.2} / {:.2} / {:.2}",
                        b.rps / n.rps.max(1.0),
                        c(b) / c(n).max(0.001),
                        b.p99_ms / n.p99_ms.max(0.001)
                    )
                })
                .collect();
            println!(
                "{}: {name} × nginx requests/s / CPU per request / p99 in each round: {}.",
                shape.name,
                per_round.join(", ")
            );
        }
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
