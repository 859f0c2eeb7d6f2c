//! HTTPS benchmark: Buoy's TLS termination against nginx and HAProxy, one worker each, same
//! certificates (ECDSA P-256 and RSA 2048), same plain-HTTP backend (nginx serving a small
//! file), same run, the proxies taking turns in a rotating order.
//!
//!     cargo bench -p buoy-agent --bench tls [-- --seconds N] [--rounds N]
//!
//! Prints, per certificate, with ratios to nginx:
//! - HTTPS keep-alive requests/s and p99 (wrk -t1 -c64), HTTP/2 requests/s (h2load over TLS,
//!   ALPN h2, 64 streams in flight, as many as the backend connections kept) and proxy RSS;
//! - new TLS 1.3 handshakes per second, every request a new TCP connection and handshake
//!   (`support::tls_connections`: a rustls client, since wrk's OpenSSL spends more CPU per
//!   handshake than either server and so measured itself), in two kinds: full (no session
//!   offered, as a client that never connected) and resumed (the session of an earlier
//!   connection offered, a PSK with a new X25519 exchange); for each, the proxy's CPU time (user
//!   + system, all its processes) per handshake.
//!
//! All three servers are configured alike: TLS 1.2 and 1.3 (Debian 12's nginx 1.22 stops at
//! 1.2 unless told), the server's suite order, Buoy's ([`SUITES`]), and session resumption on.
//! Medians of `--rounds` (default 3). A command, not a test.

#![allow(clippy::unwrap_used)]

use buoy_tests::{
    netlab::{Lab, ns_exec},
    process::{cpu_seconds, rss_mb},
};
use support::{
    lab_with_backend, median, spawn_buoy, spawn_haproxy, tls_connections, wait_port, wrk_with,
};

mod support;

const AGENT: &str = env!("CARGO_BIN_EXE_buoy-agent");

/// The proxies (name, port offset) and the certificate kinds (name, openssl key options, port
/// base): nginx on BASE+1, HAProxy on BASE+2, Buoy on BASE+3.
const PROXIES: [&str; 3] = ["nginx", "HAProxy", "Buoy"];
const KINDS: [(&str, &[&str], u16); 2] = [
    (
        "ECDSA P-256",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        8440,
    ),
    ("RSA 2048", &["-newkey", "rsa:2048"], 8450),
];

/// The TLS 1.3 suites in Buoy's order (`proxy::tls::SERVER_SUITES`), given to nginx and HAProxy
/// too so that all three run the same key schedule (AES-256/SHA-384, which OpenSSL clients ask
/// for first, hashes with SHA-512 in software).
const SUITES: &str = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

/// Connections the TLS client keeps going at once (wrk's are 64; fewer threads spend less of
/// the client's CPU on switching between them).
const CLIENT_THREADS: usize = 32;

/// One figure set of one proxy with one certificate.
#[derive(Clone, Copy, Default)]
struct Figures {
    rps: f64,
    /// The proxy's CPU µs per kept-alive request.
    cpu_us: f64,
    p99_ms: f64,
    /// Full handshakes per second, and the proxy's CPU µs for each.
    full: f64,
    full_cpu_us: f64,
    /// Resumed handshakes per second, and the proxy's CPU µs for each.
    resumed: f64,
    resumed_cpu_us: f64,
    h2_rps: f64,
}

/// `run` (returning requests/s over `seconds`) with the CPU time `pid`'s processes spent per
/// request, in µs: (requests/s, µs).
fn with_cpu(pid: u32, seconds: u64, run: impl FnOnce() -> f64) -> (f64, f64) {
    let before = cpu_seconds(pid);
    let rate = run();
    let after = cpu_seconds(pid);
    let requests = (rate * seconds as f64).max(1.0);
    let cpu = (after.0 - before.0) + (after.1 - before.1);
    (rate, cpu * 1e6 / requests)
}

/// h2load over TLS (ALPN h2) from the client namespace: requests/s.
fn h2load(lab: &Lab, url: &str, seconds: u64) -> f64 {
    let out = ns_exec(
        &lab.host("client").ns,
        &[
            "h2load",
            "-c",
            "8",
            "-m",
            "8",
            "-D",
            &seconds.to_string(),
            url,
        ],
    )
    .unwrap_or_default();
    let failed = out
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or("");
    if !failed.contains(" 0 failed") {
        eprintln!("h2load {url}: {failed}");
    }
    // "finished in 5.00s, 12345.67 req/s, 1.2MB/s"
    out.lines()
        .find(|l| l.starts_with("finished in"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|v| v.trim_end_matches(" req/s").parse().ok())
        .unwrap_or(0.0)
}

fn main() {
    let seconds: u64 = buoy_tests::bench_flag("--seconds", 5);
    let rounds: usize = buoy_tests::bench_flag("--rounds", 3).max(1);
    let mut lab = lab_with_backend();
    let dir = lab.dir().to_path_buf();
    let d = dir.display().to_string();

    let (mut nginx_servers, mut haproxy_binds, mut buoy_listeners, mut secrets) =
        (String::new(), String::new(), String::new(), String::new());
    for (i, (_, key_args, base)) in KINDS.iter().enumerate() {
        let (crt, key) = (format!("{d}/cert{i}.crt"), format!("{d}/cert{i}.key"));
        let out = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-nodes",
                "-days",
                "30",
                "-subj",
                "/CN=bench.example",
            ])
            .args(*key_args)
            .args(["-keyout", &key, "-out", &crt])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pem = format!(
            "{}{}",
            std::fs::read_to_string(&crt).unwrap(),
            std::fs::read_to_string(&key).unwrap()
        );
        std::fs::write(format!("{d}/cert{i}.pem"), pem).unwrap();
        nginx_servers.push_str(&format!(
            // `listen … http2`, not `http2 on` (nginx 1.25.1): Debian 12's nginx 1.22 refuses it.
            "  server {{ listen 10.77.0.2:{} ssl http2; ssl_certificate {crt}; ssl_certificate_key {key}; ssl_session_cache shared:SSL:10m; location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host $host; proxy_set_header X-Real-IP $remote_addr; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }} }}\n",
            base + 1
        ));
        haproxy_binds.push_str(&format!(
            "frontend tls{i}\n  bind 10.77.0.2:{} ssl crt {d}/cert{i}.pem alpn h2,http/1.1\n  default_backend app\n",
            base + 2
        ));
        buoy_listeners.push_str(&format!(
            "    - {{name: tls{i}, port: {}, protocol: HTTPS, upstreamPool: app, client: {{keepaliveTimeout: 65s, maxConnections: 4096}}, tls: {{certificates: [{{secretName: cert{i}}}]}}}}\n",
            base + 3
        ));
        secrets.push_str(&buoy_tests::tls::secret(
            &format!("cert{i}"),
            std::path::Path::new(&crt),
            std::path::Path::new(&key),
        ));
    }
    let nginx = buoy_tests::nginx::spawn(
        &mut lab,
        "proxy",
        &dir,
        "nginx",
        "1",
        &format!("events {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  ssl_protocols TLSv1.2 TLSv1.3;\n  ssl_prefer_server_ciphers on;\n  ssl_conf_command Ciphersuites {SUITES};\n  keepalive_timeout 65;\n  keepalive_requests 100000;\n  upstream app {{ server 10.77.0.1:80; keepalive 64; }}\n{nginx_servers}}}\n"),
    )
    .unwrap();
    let haproxy = spawn_haproxy(
        &mut lab,
        &format!(
            "global\n  nbthread 1\n  maxconn 8192\n  ssl-default-bind-ciphersuites {SUITES}\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  http-reuse always\n{haproxy_binds}backend app\n  option forwardfor\n  server b1 10.77.0.1:80\n"
        ),
    );
    let buoy = spawn_buoy(
        &mut lab,
        AGENT,
        &format!(
            "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {{name: bench}}\nspec:\n  addresses: [10.77.0.2]\n  listeners:\n{buoy_listeners}---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: app}}\nspec:\n  backends:\n    - {{address: 10.77.0.1, port: 80}}\n  http: {{xForwardedProto: false}}\n{secrets}"
        ),
        "buoy.yaml",
    );
    for (_, _, base) in KINDS {
        for p in 1..=3 {
            wait_port(&lab, "proxy", base + p);
        }
    }
    let pids = [nginx, haproxy, buoy].map(|i| lab.proc(i).pid());
    let url = |base: u16, p: usize| format!("https://10.77.0.2:{}/", base + p as u16 + 1);
    // [kind][proxy] → one Figures per round.
    let mut runs = vec![vec![Vec::<Figures>::new(); PROXIES.len()]; KINDS.len()];
    for (k, (_, _, base)) in KINDS.iter().enumerate() {
        for p in 0..PROXIES.len() {
            let _ = wrk_with(&lab, &url(*base, p), 1, &[]); // warm-up
        }
        for round in 0..rounds {
            for j in 0..PROXIES.len() {
                let p = (j + round) % PROXIES.len();
                let u = url(*base, p);
                let mut p99_ms = 0.0;
                let (rps, cpu_us) = with_cpu(pids[p], seconds, || {
                    let (rps, _, p99) = wrk_with(&lab, &u, seconds, &[]);
                    p99_ms = p99;
                    rps
                });
                let addr = std::net::SocketAddr::from(([10, 77, 0, 2], *base + p as u16 + 1));
                let handshakes = |resume| {
                    with_cpu(pids[p], seconds, || {
                        let (rate, failed) =
                            tls_connections(&lab, addr, CLIENT_THREADS, seconds, resume);
                        if failed > 0 {
                            eprintln!("{u}: {failed} connections failed");
                        }
                        rate
                    })
                };
                let (full, full_cpu_us) = handshakes(false);
                let (resumed, resumed_cpu_us) = handshakes(true);
                let h2_rps = h2load(&lab, &u, seconds);
                runs[k][p].push(Figures {
                    rps,
                    cpu_us,
                    p99_ms,
                    full,
                    full_cpu_us,
                    resumed,
                    resumed_cpu_us,
                    h2_rps,
                });
            }
        }
    }
    let rss: Vec<f64> = pids.iter().map(|p| rss_mb(*p)).collect();
    let medians: Vec<Vec<Figures>> = runs
        .iter()
        .map(|kind| {
            kind.iter()
                .map(|r| {
                    let m = |f: fn(&Figures) -> f64| median(r.iter().map(f));
                    Figures {
                        rps: m(|f| f.rps),
                        cpu_us: m(|f| f.cpu_us),
                        p99_ms: m(|f| f.p99_ms),
                        full: m(|f| f.full),
                        full_cpu_us: m(|f| f.full_cpu_us),
                        resumed: m(|f| f.resumed),
                        resumed_cpu_us: m(|f| f.resumed_cpu_us),
                        h2_rps: m(|f| f.h2_rps),
                    }
                })
                .collect()
        })
        .collect();
    let ratio = |a: f64, b: f64| a / b.max(1e-9);
    println!(
        "HTTPS requests through one proxy worker (wrk -t1 -c64 over HTTP/1.1 kept alive; HTTP/2: h2load -c8 -m8; {seconds} s each, median of {rounds} rounds, rotating order; 2-core machine shared by client, proxy and backend)"
    );
    println!(
        "| certificate | proxy | requests/s | × nginx | CPU per request | × nginx | p99 | p99 × nginx | HTTP/2 requests/s | × nginx | RSS | RSS × nginx |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (k, (kind, _, _)) in KINDS.iter().enumerate() {
        let n = medians[k][0];
        for (p, name) in PROXIES.iter().enumerate() {
            let f = medians[k][p];
            println!(
                "| {kind} | {name} | {:.0} | {:.2} | {:.1} µs | {:.2} | {:.2} ms | {:.2} | {:.0} | {:.2} | {:.1} MB | {:.2} |",
                f.rps,
                ratio(f.rps, n.rps),
                f.cpu_us,
                ratio(f.cpu_us, n.cpu_us),
                f.p99_ms,
                ratio(f.p99_ms, n.p99_ms),
                f.h2_rps,
                ratio(f.h2_rps, n.h2_rps),
                rss[p],
                ratio(rss[p], rss[0]),
            );
        }
    }
    println!();
    println!(
        "New TLS 1.3 handshakes (X25519; a rustls client, {CLIENT_THREADS} connections at a time, one request each with Connection: close; full: no session offered; resumed: an earlier connection's session offered; CPU: the proxy's user + system time per handshake, request included; per CPU-second: what one worker makes when it, not the client, is the bottleneck)"
    );
    println!(
        "| certificate | proxy | full handshakes/s | × nginx | CPU per full | full per CPU-second | × nginx | resumed handshakes/s | × nginx | CPU per resumed | resumed per CPU-second | × nginx |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (k, (kind, _, _)) in KINDS.iter().enumerate() {
        let n = medians[k][0];
        for (p, name) in PROXIES.iter().enumerate() {
            let f = medians[k][p];
            println!(
                "| {kind} | {name} | {:.0} | {:.2} | {:.0} µs | {:.0} | {:.2} | {:.0} | {:.2} | {:.0} µs | {:.0} | {:.2} |",
                f.full,
                ratio(f.full, n.full),
                f.full_cpu_us,
                1e6 / f.full_cpu_us.max(1.0),
                ratio(n.full_cpu_us, f.full_cpu_us),
                f.resumed,
                ratio(f.resumed, n.resumed),
                f.resumed_cpu_us,
                1e6 / f.resumed_cpu_us.max(1.0),
                ratio(n.resumed_cpu_us, f.resumed_cpu_us),
            );
        }
    }
    drop(lab);
}
