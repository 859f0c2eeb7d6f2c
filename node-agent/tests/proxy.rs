//! The proxy with real sockets on loopback: balancing, failover and retries as nginx does them,
//! headers exactly as nginx sends them (compared with Debian's nginx in the same test), clear
//! errors when no backend can serve, TCP with half-close, FREEBIND, a backend killed under load
//! and reconfiguration under load without a failed request.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use buoy_tests::{
    backend::{Backend, Behaviour, KeepAlive, free_port, parse_reply, request},
    process::{Proc, ProxyProcess},
};

const AGENT: &str = env!("CARGO_BIN_EXE_buoy-agent");

/// Runs `buoy-agent proxy` on this YAML; waits until it listens.
fn proxy(yaml: &str) -> ProxyProcess {
    ProxyProcess::start(AGENT, yaml)
}

fn config(port: u16, protocol: &str, backends: &[(SocketAddr, u32)], pool_extra: &str) -> String {
    let list: String = backends
        .iter()
        .map(|(a, w)| {
            format!(
                "    - {{address: \"{}\", port: {}, weight: {w}}}\n",
                a.ip(),
                a.port()
            )
        })
        .collect();
    format!(
        "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {{name: t}}\nspec:\n  addresses: [127.0.0.1]\n  listeners:\n    - {{name: l, port: {port}, protocol: {protocol}, upstreamPool: p}}\n---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: p}}\nspec:\n  backends:\n{list}{pool_extra}"
    )
}

/// The proxy configuration of a YAML document set, as the agent builds it.
fn proxy_config(yaml: &str) -> buoy_agent::proxy::service::ProxyConfig {
    let objects = buoy_crds::manifest::parse(std::path::Path::new("t.yaml"), yaml).unwrap();
    let vips = buoy_crds::manifest::virtual_ips(&objects);
    let pools = buoy_crds::manifest::upstream_pools(&objects);
    buoy_agent::config::proxy(&vips, &pools).unwrap()
}

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn weighted_round_robin_spreads_requests_exactly() {
    let b: Vec<Backend> = ["a", "b", "c"]
        .iter()
        .map(|n| Backend::http("127.0.0.1:0", n, Behaviour::Echo).unwrap())
        .collect();
    let port = free_port();
    let _p = proxy(&config(
        port,
        "HTTP",
        &[(b[0].addr, 1), (b[1].addr, 2), (b[2].addr, 1)],
        "",
    ));
    for _ in 0..400 {
        assert_eq!(request(at(port), "GET", "/", &[], "").unwrap().status, 200);
    }
    assert_eq!([b[0].hits(), b[1].hits(), b[2].hits()], [100, 200, 100]);
}

#[test]
fn connect_failure_goes_to_the_next_backend() {
    let good = Backend::http("127.0.0.1:0", "good", Behaviour::Echo).unwrap();
    let dead = at(free_port());
    let port = free_port();
    let _p = proxy(&config(port, "HTTP", &[(dead, 1), (good.addr, 1)], ""));
    for _ in 0..20 {
        let r = request(at(port), "GET", "/", &[], "").unwrap();
        assert_eq!((r.status, r.served_by()), (200, "good"));
    }
    // POST too: the request never reached the dead backend, so retrying is safe (nginx does).
    let r = request(at(port), "POST", "/", &[], "x=1").unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn a_502_is_retried_for_get_but_never_for_post() {
    let bad = Backend::http("127.0.0.1:0", "bad", Behaviour::Status(502)).unwrap();
    let good = Backend::http("127.0.0.1:0", "good", Behaviour::Echo).unwrap();
    let port = free_port();
    // The seed's proxy_next_upstream, without passive checks so both stay in rotation.
    let extra = "  retry: {attempts: 2, retryOn: [HTTP502, HTTP504, ConnectFailure, Timeout, InvalidHeader]}\n  healthCheck: {passive: {maxFails: 0}}\n";
    let _p = proxy(&config(
        port,
        "HTTP",
        &[(bad.addr, 1), (good.addr, 1)],
        extra,
    ));
    for _ in 0..10 {
        let r = request(at(port), "GET", "/", &[], "").unwrap();
        assert_eq!((r.status, r.served_by()), (200, "good"));
    }
    let posts: Vec<u16> = (0..10)
        .map(|_| {
            request(at(port), "POST", "/", &[], "order=1")
                .unwrap()
                .status
        })
        .collect();
    assert!(
        posts.contains(&502),
        "a POST that reached the failing backend is not replayed: {posts:?}"
    );
    let post_count = |b: &Backend| {
        b.methods
            .lock()
            .unwrap()
            .iter()
            .filter(|m| *m == "POST")
            .count()
    };
    assert_eq!(
        post_count(&bad) + post_count(&good),
        10,
        "each POST was sent exactly once"
    );
}

/// A backend that answers after 3 s beside one that answers at once, and pool settings that
/// give up on a backend after 300 ms and retry on the next.
fn slow_beside_good() -> (Backend, Backend, &'static str) {
    let slow = Backend::http(
        "127.0.0.1:0",
        "slow",
        Behaviour::Slow(Duration::from_secs(3)),
    )
    .unwrap();
    let good = Backend::http("127.0.0.1:0", "good", Behaviour::Echo).unwrap();
    let extra = "  timeouts: {read: 300ms}\n  retry: {attempts: 2, retryOn: [Timeout]}\n";
    (slow, good, extra)
}

#[test]
fn a_timeout_is_retried_on_the_next_backend() {
    let (slow, good, extra) = slow_beside_good();
    let port = free_port();
    let _p = proxy(&config(
        port,
        "HTTP",
        &[(slow.addr, 1), (good.addr, 1)],
        extra,
    ));
    for _ in 0..4 {
        let started = Instant::now();
        let r = request(at(port), "GET", "/", &[], "").unwrap();
        assert_eq!((r.status, r.served_by()), (200, "good"));
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}

#[test]
fn a_keep_alive_client_is_closed_when_idle_past_its_timeout_and_not_before() {
    // The same connection also sees a backend wait time out, then carries more requests.
    let (slow, good, extra) = slow_beside_good();
    let port = free_port();
    let yaml = config(port, "HTTP", &[(slow.addr, 1), (good.addr, 1)], extra).replace(
        "{name: l, port: ",
        "{name: l, client: {keepaliveTimeout: 1s}, port: ",
    );
    let _p = proxy(&yaml);
    let mut c = KeepAlive::connect(at(port)).unwrap();
    // Requests 600 ms apart for over two seconds: each one moves the idle deadline on.
    // `last` is taken before each request is sent, so before the proxy's idle clock starts.
    let mut last = Instant::now();
    for _ in 0..4 {
        thread::sleep(Duration::from_millis(600));
        last = Instant::now();
        let r = c.get("/").unwrap();
        assert_eq!((r.status, r.served_by()), (200, "good"));
    }
    assert!(slow.hits() >= 1, "a request timed out on the slow backend");
    let waiting = Instant::now();
    let closed = c.wait_closed(Duration::from_secs(3)).unwrap();
    let Some(after) = closed else {
        panic!("an idle keep-alive client was never closed");
    };
    let idle = waiting - last + after;
    assert!(
        (Duration::from_secs(1)..Duration::from_millis(2500)).contains(&idle),
        "closed after {idle:?} of a 1 s keep-alive timeout"
    );
}

#[test]
fn a_backend_sending_only_interim_responses_times_out() {
    // Every read finds another `100 Continue`, so the proxy is never idle while it waits; the
    // read timeout must still end the wait.
    let b = Backend::http(
        "127.0.0.1:0",
        "b",
        Behaviour::Continues(Duration::from_secs(6)),
    )
    .unwrap();
    let port = free_port();
    let extra = "  timeouts: {read: 300ms}\n  retry: {attempts: 1}\n";
    let _p = proxy(&config(port, "HTTP", &[(b.addr, 1)], extra));
    let started = Instant::now();
    let r = request(at(port), "GET", "/", &[], "").unwrap();
    assert_eq!(
        (r.status, r.header("X-Buoy-Error")),
        (504, Some("backend timed out"))
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered after {:?}",
        started.elapsed()
    );
}

#[test]
fn no_backend_means_a_clear_error() {
    let port = free_port();
    let _p = proxy(&config(
        port,
        "HTTP",
        &[(at(free_port()), 1), (at(free_port()), 1)],
        "",
    ));
    // Both tried and refused: the last one's failure says why, as nginx answers with its last
    // error.
    let r = request(at(port), "GET", "/", &[], "").unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(
        r.header("X-Buoy-Error"),
        Some("backend failed: ConnectRefused")
    );
    assert_eq!(r.body, "502 backend failed: ConnectRefused\n");
    // Then both are out (passive checks): none is left to try.
    let r = request(at(port), "GET", "/", &[], "").unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(r.header("X-Buoy-Error"), Some("no healthy backend"));
    assert_eq!(r.body, "502 no healthy backend\n");
}

#[test]
fn headers_are_exactly_what_nginx_sends() {
    let echo = Backend::http("127.0.0.1:0", "echo", Behaviour::Echo).unwrap();
    let port = free_port();
    let _p = proxy(&config(
        port,
        "HTTP",
        &[(echo.addr, 1)],
        "  http: {xForwardedProto: false}\n",
    ));
    // nginx with the reference configuration's location block, in front of the same backend.
    let nginx_port = free_port();
    // Declared before nginx: removed after it stops.
    let tmp = tempfile::Builder::new()
        .prefix("buoy-nginx-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\nevents {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n  keepalive_timeout 65;\n  upstream test_web {{ server {b}; }}\n  server {{\n    listen 127.0.0.1:{nginx_port};\n    server_name localhost;\n    location / {{\n      proxy_next_upstream http_502 http_504 error timeout invalid_header;\n      proxy_pass http://test_web;\n      proxy_set_header Host $host;\n      proxy_set_header X-Real-IP $remote_addr;\n      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }}\n  }}\n}}\n",
            d = dir.display(),
            b = echo.addr
        ),
    )
    .unwrap();
    let mut cmd = Command::new("nginx");
    cmd.args([
        "-p",
        &dir.display().to_string(),
        "-c",
        "nginx.conf",
        "-g",
        "daemon off;",
    ]);
    let _nginx = Proc::spawn("nginx", cmd).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(at(nginx_port)).is_err() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let spoofed = [
        ("X-Real-IP", "6.6.6.6"),
        ("X-Forwarded-For", "203.0.113.7"),
        ("User-Agent", "buoy-test"),
    ];
    let via_buoy = request(at(port), "GET", "/path?q=1", &spoofed, "").unwrap();
    let via_nginx = request(at(nginx_port), "GET", "/path?q=1", &spoofed, "").unwrap();
    for h in ["host", "x-real-ip", "x-forwarded-for", "user-agent"] {
        assert_eq!(
            via_buoy.echoed(h),
            via_nginx.echoed(h),
            "{h}: buoy {:?} nginx {:?}",
            via_buoy.body,
            via_nginx.body
        );
    }
    assert_eq!(
        via_buoy.echoed("host"),
        Some("127.0.0.1"),
        "nginx's $host: no port"
    );
    assert_eq!(
        via_buoy.echoed("x-real-ip"),
        Some("127.0.0.1"),
        "a client's X-Real-IP is never trusted"
    );
    assert_eq!(
        via_buoy.echoed("x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
}

#[test]
fn hop_by_hop_fields_stop_at_the_proxy() {
    let echo = Backend::http("127.0.0.1:0", "echo", Behaviour::Echo).unwrap();
    let port = free_port();
    let _p = proxy(&config(port, "HTTP", &[(echo.addr, 1)], ""));
    // `request` sends `Connection: close` first; a second Connection field names more
    // hop-by-hop fields (RFC 9110 7.6.1), in a list with spaces and mixed case.
    let sent = [
        ("X-First", "1"),
        ("Connection", "keep-alive,  x-SECRET"),
        ("X-Secret", "s"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Accept", "text/html"),
        ("X-Kept", "yes"),
        ("Accept", "text/plain"),
        ("X-Last", "1"),
    ];
    let reply = request(at(port), "GET", "/", &sent, "").unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    for gone in [
        "connection",
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "te",
    ] {
        assert_eq!(reply.echoed(gone), None, "{gone}: {:?}", reply.body);
    }
    assert_eq!(reply.echoed("x-kept"), Some("yes"), "{:?}", reply.body);
    // Repeated fields keep all their values, in order.
    let accept: Vec<&str> = reply
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("accept: "))
        .collect();
    assert_eq!(accept, ["text/html", "text/plain"], "{:?}", reply.body);
    // The client's fields keep its order (a repeated field's values go together, at its
    // first place).
    let order: Vec<&str> = reply
        .body
        .lines()
        .filter_map(|l| l.split_once(": ").map(|(name, _)| name))
        .filter(|name| ["x-first", "accept", "x-kept", "x-last"].contains(name))
        .collect();
    assert_eq!(
        order,
        ["x-first", "accept", "accept", "x-kept", "x-last"],
        "{:?}",
        reply.body
    );
}

#[test]
fn tcp_listener_proxies_bytes_and_half_close() {
    let echo = Backend::tcp_echo("127.0.0.1:0").unwrap();
    let port = free_port();
    let _p = proxy(&config(
        port,
        "TCP",
        &[(at(free_port()), 1), (echo.addr, 1)],
        "",
    ));
    for _ in 0..4 {
        let mut c = TcpStream::connect(at(port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"hello through buoy").unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hello through buoy");
    }
}

#[test]
fn listeners_bind_before_the_vip_exists() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // 192.0.2.1 (TEST-NET-1) is on no interface here; only IP_FREEBIND lets us bind it.
        let addr: SocketAddr = "192.0.2.1:18443".parse().unwrap();
        assert!(
            std::net::TcpListener::bind(addr).is_err(),
            "a plain bind must fail"
        );
        let l = buoy_agent::proxy::listener::bind(addr).unwrap();
        assert_eq!(l.local_addr().unwrap(), addr);
    });
}

/// Runs `clients` threads sending GETs until `stop`; returns (ok, failed).
fn load(port: u16, clients: usize, stop: Arc<AtomicBool>) -> thread::JoinHandle<(usize, usize)> {
    thread::spawn(move || {
        let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
                thread::spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        match request(at(port), "GET", "/", &[], "") {
                            Some(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                            _ => failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            })
            .collect();
        for h in handles {
            let _ = h.join();
        }
        (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed))
    })
}

#[test]
fn a_backend_killed_under_load_costs_no_request() {
    let a = Backend::http("127.0.0.1:0", "a", Behaviour::Echo).unwrap();
    let b = Backend::http("127.0.0.1:0", "b", Behaviour::Echo).unwrap();
    let port = free_port();
    let _p = proxy(&config(port, "HTTP", &[(a.addr, 1), (b.addr, 1)], ""));
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(port, 4, stop.clone());
    thread::sleep(Duration::from_millis(700));
    drop(a);
    thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = running.join().unwrap();
    assert!(ok > 100, "load too small to mean anything: {ok}");
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
}

#[test]
fn reconfiguration_under_load_fails_no_request() {
    use buoy_agent::proxy::{metrics::ProxyMetrics, service::ProxyService};
    let backends: Vec<Backend> = (0..4)
        .map(|i| Backend::http("127.0.0.1:0", &format!("b{i}"), Behaviour::Echo).unwrap())
        .collect();
    let port = free_port();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let registry = buoy_agent::metrics::Registry::new();
    let mut service = ProxyService::new(ProxyMetrics::new(&registry).unwrap());
    let first = proxy_config(&config(
        port,
        "HTTP",
        &[(backends[0].addr, 1), (backends[1].addr, 1)],
        "",
    ));
    assert!(rt.block_on(service.apply(&first)).is_empty());
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(port, 4, stop.clone());
    for round in 0..50 {
        // Add and remove backends; one always stays.
        let set: Vec<(SocketAddr, u32)> = (0..4)
            .filter(|i| *i == 0 || (round + i) % 3 == 0)
            .map(|i| (backends[i].addr, 1 + (round % 3) as u32))
            .collect();
        assert!(
            rt.block_on(service.apply(&proxy_config(&config(port, "HTTP", &set, ""))))
                .is_empty()
        );
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = running.join().unwrap();
    assert!(ok > 100, "load too small to mean anything: {ok}");
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    assert!(
        backends.iter().filter(|b| b.hits() > 0).count() >= 3,
        "the changes took effect"
    );
}

#[test]
fn slow_clients_and_oversized_requests_are_cut() {
    let echo = Backend::http("127.0.0.1:0", "echo", Behaviour::Echo).unwrap();
    let port = free_port();
    let yaml = config(port, "HTTP", &[(echo.addr, 1)], "").replace(
        "{name: l, port: ",
        "{name: l, client: {headerTimeout: 1s, maxRequestHeaderBytes: 2048, maxRequestBodyBytes: 100}, port: ",
    );
    let _p = proxy(&yaml);
    // Slowloris: a header trickling in a byte at a time never completes; the proxy hangs up.
    let mut c = TcpStream::connect(at(port)).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    let mut cut = false;
    while started.elapsed() < Duration::from_secs(10) {
        if c.write_all(b"X").is_err() {
            cut = true;
            break;
        }
        let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
        let mut b = [0u8; 1];
        if matches!(c.read(&mut b), Ok(0)) {
            cut = true;
            break;
        }
    }
    assert!(cut, "a slow client was never cut");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut after {:?}",
        started.elapsed()
    );
    // Limits: a clear 431 / 413, and the backend never sees the request.
    let big = "x".repeat(4096);
    let r = request(at(port), "GET", "/", &[("X-Big", &big)], "").unwrap();
    assert_eq!(
        (r.status, r.header("X-Buoy-Error")),
        (431, Some("request header too large"))
    );
    let r = request(at(port), "POST", "/", &[], &"y".repeat(500)).unwrap();
    assert_eq!(
        (r.status, r.header("X-Buoy-Error")),
        (413, Some("request body too large"))
    );
    assert_eq!(echo.hits(), 0);
    assert_eq!(request(at(port), "GET", "/", &[], "").unwrap().status, 200);
}

#[test]
fn active_http_checks_take_a_backend_out_and_bring_it_back() {
    let bad = Backend::http("127.0.0.1:0", "bad", Behaviour::Status(500)).unwrap();
    let good = Backend::http("127.0.0.1:0", "good", Behaviour::Echo).unwrap();
    let port = free_port();
    let extra = "  healthCheck:\n    active: {protocol: HTTP, path: /healthz, expectedStatuses: [\"200-299\"], interval: 200ms, timeout: 100ms, healthyThreshold: 2, unhealthyThreshold: 2}\n    passive: {maxFails: 0}\n";
    let _p = proxy(&config(
        port,
        "HTTP",
        &[(bad.addr, 1), (good.addr, 1)],
        extra,
    ));
    thread::sleep(Duration::from_millis(900));
    for _ in 0..20 {
        let r = request(at(port), "GET", "/", &[], "").unwrap();
        assert_eq!(
            (r.status, r.served_by()),
            (200, "good"),
            "the failing backend is out of rotation"
        );
    }
    bad.set_behaviour(Behaviour::Echo);
    thread::sleep(Duration::from_millis(900));
    let served: Vec<String> = (0..20)
        .map(|_| {
            request(at(port), "GET", "/", &[], "")
                .unwrap()
                .served_by()
                .to_string()
        })
        .collect();
    assert!(
        served.iter().any(|s| s == "bad"),
        "back in rotation after healthyThreshold probes: {served:?}"
    );
}

#[test]
fn removing_a_listener_leaves_the_others_connections_alone() {
    use buoy_agent::{
        proxy::{metrics::ProxyMetrics, service::ProxyService},
        vrrp::instance::DataPath,
    };
    let echo = Backend::tcp_echo("127.0.0.1:0").unwrap();
    let (p1, p2) = (free_port(), free_port());
    let two = format!(
        "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {{name: t}}\nspec:\n  addresses: [127.0.0.1]\n  listeners:\n    - {{name: a, port: {p1}, protocol: TCP, upstreamPool: p}}\n    - {{name: b, port: {p2}, protocol: TCP, upstreamPool: p}}\n---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: p}}\nspec:\n  backends: [{{address: \"127.0.0.1\", port: {}}}]\n",
        echo.addr.port()
    );
    let one = two.replace(
        &format!("    - {{name: b, port: {p2}, protocol: TCP, upstreamPool: p}}\n"),
        "",
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let registry = buoy_agent::metrics::Registry::new();
    let mut service = ProxyService::new(ProxyMetrics::new(&registry).unwrap());
    assert!(rt.block_on(service.apply(&proxy_config(&two))).is_empty());
    let mut conn = TcpStream::connect(at(p1)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ping = |c: &mut TcpStream| {
        c.write_all(b"ping").unwrap();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"ping");
    };
    ping(&mut conn);
    assert!(rt.block_on(service.apply(&proxy_config(&one))).is_empty());
    ping(&mut conn);
    assert!(
        TcpStream::connect(at(p2)).is_err(),
        "the removed listener is closed"
    );
    let names: Vec<String> = proxy_config(&one)
        .listeners
        .iter()
        .map(|l| l.name.clone())
        .collect();
    assert_eq!(service.data_path(&names), DataPath::SERVING);
    let removed: Vec<String> = proxy_config(&two)
        .listeners
        .iter()
        .map(|l| l.name.clone())
        .collect();
    assert!(
        !service.data_path(&removed).listening,
        "a listener that is not open is reported"
    );
    drop(echo);
    // The (only) backend is gone: the next connection fails and passive checks take it out.
    let _ = TcpStream::connect(at(p1)).map(|mut c| c.write_all(b"x"));
    thread::sleep(Duration::from_millis(200));
    assert!(
        !service.data_path(&names).upstreams_healthy,
        "track.upstreams sees that no backend is left"
    );
}

#[test]
fn backend_connections_are_kept_alive_and_reused() {
    let echo = Backend::http("127.0.0.1:0", "echo", Behaviour::Echo).unwrap();
    let port = free_port();
    let _p = proxy(&config(port, "HTTP", &[(echo.addr, 1)], ""));
    // One client connection: all its requests go over one backend connection.
    let mut c = KeepAlive::connect(at(port)).unwrap();
    for _ in 0..20 {
        assert_eq!(c.get("/").unwrap().status, 200);
    }
    // The proxy closes its side after caching the backend connection, so the clients below
    // (each reading until the close too) always find it there.
    assert_eq!(c.close("/").unwrap().status, 200);
    // Clients one after another: the backend connection waits in the cache for the next one.
    for _ in 0..20 {
        assert_eq!(request(at(port), "GET", "/", &[], "").unwrap().status, 200);
    }
    assert_eq!(echo.hits(), 41);
    assert_eq!(
        echo.connections(),
        1,
        "upstream keep-alive (nginx `keepalive`): one backend connection for 41 requests"
    );
}

#[test]
fn a_backend_closing_idle_connections_costs_no_request() {
    // The backend closes a kept connection after 10 ms of silence, without warning; each
    // request below comes 300 ms later and finds its connection closed. No retries are allowed, so
    // only the fresh connection that replaces a stale one saves them, POSTs included.
    let b = Backend::http(
        "127.0.0.1:0",
        "b",
        Behaviour::DropIdle(Duration::from_millis(10)),
    )
    .unwrap();
    let port = free_port();
    let _p = proxy(&config(
        port,
        "HTTP",
        &[(b.addr, 1)],
        "  retry: {attempts: 1}\n",
    ));
    let mut c = KeepAlive::connect(at(port)).unwrap();
    let methods = ["GET", "POST", "GET", "POST"];
    for method in methods {
        let body = if method == "POST" { "payload" } else { "" };
        let r = c.send(method, "/", body).unwrap();
        assert_eq!(r.status, 200, "{method}: {r:?}");
        thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        *b.methods.lock().unwrap(),
        methods,
        "every request reached the backend exactly once"
    );
    assert_eq!(b.connections(), methods.len());
}

/// Reads from `c` until the end of a response header; returns the header.
fn read_head(c: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            c.read(&mut byte).unwrap(),
            1,
            "closed in a header: {head:?}"
        );
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn websocket_upgrades_are_tunnelled() {
    let b = Backend::http("127.0.0.1:0", "b", Behaviour::Echo).unwrap();
    let port = free_port();
    let _p = proxy(&config(port, "HTTP", &[(b.addr, 1)], ""));
    let mut c = TcpStream::connect(at(port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").unwrap();
    let head = read_head(&mut c);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    for message in ["hello", "over the tunnel, both ways"] {
        c.write_all(message.as_bytes()).unwrap();
        let mut back = vec![0u8; message.len()];
        c.read_exact(&mut back).unwrap();
        assert_eq!(String::from_utf8_lossy(&back), message);
    }
    // A half-close passes through: the backend sees the client's end of input and still gets
    // its last words to the client.
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert_eq!(String::from_utf8_lossy(&rest), "closed\n");
}

#[test]
fn chunked_bodies_and_expect_continue_reach_the_backend() {
    let b = Backend::http("127.0.0.1:0", "b", Behaviour::Echo).unwrap();
    let port = free_port();
    let _p = proxy(&config(port, "HTTP", &[(b.addr, 1)], ""));
    let mut c = TcpStream::connect(at(port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n").unwrap();
    // The client waits for this before it sends the body (curl does, for a second).
    let head = read_head(&mut c);
    assert!(head.starts_with("HTTP/1.1 100"), "{head}");
    c.write_all(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).unwrap();
    let (r, _) = parse_reply(&raw).unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.echoed("body"), Some("hello world"));
    assert_eq!(r.echoed("transfer-encoding"), Some("chunked"));
    assert_eq!(
        r.echoed("expect"),
        None,
        "answered by the proxy, not forwarded"
    );
}

#[test]
fn pipelined_requests_are_all_answered() {
    let b = Backend::http("127.0.0.1:0", "b", Behaviour::Echo).unwrap();
    let port = free_port();
    let _p = proxy(&config(port, "HTTP", &[(b.addr, 1)], ""));
    let mut c = TcpStream::connect(at(port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Three requests in one write, as a pipelining client sends them; the last one closes.
    c.write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\nX-N: 1\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\nX-N: 2\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\nX-N: 3\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).unwrap();
    let mut answered = Vec::new();
    let mut rest = &raw[..];
    while let Some((r, used)) = parse_reply(rest) {
        answered.push(r.echoed("x-n").unwrap_or("?").to_string());
        rest = &rest[used..];
    }
    assert_eq!(answered, ["1", "2", "3"], "in order, none lost");
}

/// Reads one whole response from a keep-alive connection.
fn read_reply(c: &mut TcpStream) -> buoy_tests::backend::Reply {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((r, used)) = parse_reply(&raw) {
            assert_eq!(used, raw.len(), "nothing but one response");
            return r;
        }
        let n = c.read(&mut chunk).unwrap();
        assert!(
            n > 0,
            "closed in a response: {:?}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn keep_alive_requests_after_a_pause_or_split_across_it_are_answered() {
    // A keep-alive connection with nothing to read rests 100 ms after a response (only its
    // socket is kept); a request whose first bytes came before that, or that comes long after,
    // is answered all the same.
    let b = Backend::http("127.0.0.1:0", "b", Behaviour::Echo).unwrap();
    let port = free_port();
    let _p = proxy(&config(port, "HTTP", &[(b.addr, 1)], ""));
    let mut c = TcpStream::connect(at(port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\nX-N: 1\r\n\r\n")
        .unwrap();
    assert_eq!(read_reply(&mut c).echoed("x-n"), Some("1"));
    // Begun before the rest delay, finished after it.
    thread::sleep(Duration::from_millis(20));
    c.write_all(b"GET /2 HTTP/1.1\r\nHo").unwrap();
    thread::sleep(Duration::from_millis(300));
    c.write_all(b"st: x\r\nX-N: 2\r\n\r\n").unwrap();
    assert_eq!(read_reply(&mut c).echoed("x-n"), Some("2"));
    // Long after the rest delay, split again, then two pipelined in one write.
    thread::sleep(Duration::from_millis(400));
    c.write_all(b"GET /3 HTTP/1.1\r\nHost: x\r\n").unwrap();
    thread::sleep(Duration::from_millis(200));
    c.write_all(b"X-N: 3\r\n\r\n").unwrap();
    assert_eq!(read_reply(&mut c).echoed("x-n"), Some("3"));
    thread::sleep(Duration::from_millis(300));
    c.write_all(b"GET /4 HTTP/1.1\r\nHost: x\r\nX-N: 4\r\n\r\nGET /5 HTTP/1.1\r\nHost: x\r\nX-N: 5\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).unwrap();
    let (first, used) = parse_reply(&raw).expect("a response");
    let (second, _) = parse_reply(&raw[used..]).expect("a second response");
    assert_eq!(
        (first.echoed("x-n"), second.echoed("x-n")),
        (Some("4"), Some("5"))
    );
    assert_eq!(
        b.connections(),
        1,
        "one backend connection carried them all"
    );
}

#[test]
fn a_stopping_proxy_answers_the_clients_waiting_to_be_accepted() {
    let b = Backend::http("127.0.0.1:0", "b", Behaviour::Echo).unwrap();
    let port = free_port();
    let mut p = proxy(&config(port, "HTTP", &[(b.addr, 1)], ""));
    // Frozen, the proxy accepts nothing: the kernel completes the handshakes and queues them,
    // as for clients whose SYN reached a node just before its VIP moved away.
    p.process.signal(libc::SIGSTOP);
    let clients: Vec<TcpStream> = (0..20)
        .map(|i| {
            let mut c = TcpStream::connect(at(port)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.write_all(
                format!("GET /{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .unwrap();
            c
        })
        .collect();
    // It wakes up to the stop and the waiting clients at once.
    p.process.signal(libc::SIGTERM);
    p.process.signal(libc::SIGCONT);
    for (i, mut c) in clients.into_iter().enumerate() {
        let mut raw = Vec::new();
        let read = c.read_to_end(&mut raw);
        let reply = parse_reply(&raw).map(|(r, _)| r.status);
        assert_eq!(reply, Some(200), "client {i}: {read:?} {raw:?}");
    }
    assert_eq!(p.process.wait_exit(Duration::from_secs(10)), Some(0));
}

/// A UDP backend on loopback answering `NAME:datagram` until dropped.
struct UdpEcho {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl UdpEcho {
    fn start(name: &'static str) -> UdpEcho {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let reply = format!("{name}:{}", String::from_utf8_lossy(&buf[..n]));
                    let _ = socket.send_to(reply.as_bytes(), from);
                }
            }
        });
        UdpEcho { addr, stop }
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sends `payload` from `client` to `to` up to three times (as a DNS client retries); the reply
/// and where it came from.
fn udp_ask(
    client: &std::net::UdpSocket,
    to: SocketAddr,
    payload: &str,
) -> Option<(String, SocketAddr)> {
    let mut buf = [0u8; 2048];
    for _ in 0..3 {
        client.send_to(payload.as_bytes(), to).unwrap();
        if let Ok((n, from)) = client.recv_from(&mut buf) {
            return Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from));
        }
    }
    None
}

#[test]
fn udp_flows_keep_their_backend_get_replies_from_the_listener_and_skip_a_refusing_backend() {
    let (b1, b2) = (UdpEcho::start("b1"), UdpEcho::start("b2"));
    let dead = at(free_port());
    let port = free_port();
    // A TCP listener on the same port is allowed beside the UDP one (DNS serves both).
    let echo = Backend::tcp_echo("127.0.0.1:0").unwrap();
    let yaml = config(port, "UDP", &[(dead, 1), (b1.addr, 1), (b2.addr, 1)], "")
        .replace(
            "upstreamPool: p}\n",
            &format!(
                "upstreamPool: p, client: {{idleTimeout: 2s}}}}\n    - {{name: t, port: {port}, protocol: TCP, upstreamPool: tcp}}\n"
            ),
        )
        + &format!(
            "---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: tcp}}\nspec:\n  backends: [{{address: \"127.0.0.1\", port: {}}}]\n",
            echo.addr.port()
        );
    let _p = proxy(&yaml);
    let listener = at(port);
    let mut served = std::collections::BTreeMap::new();
    for i in 0..6 {
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        let (reply, from) = udp_ask(&client, listener, &format!("q{i}"))
            .unwrap_or_else(|| panic!("client {i} got no answer"));
        assert_eq!(from, listener, "replies come from the listener's address");
        let backend = reply.split(':').next().unwrap().to_string();
        assert_eq!(reply, format!("{backend}:q{i}"));
        // The flow keeps its backend.
        for j in 0..3 {
            let (again, _) = udp_ask(&client, listener, &format!("q{i}.{j}")).unwrap();
            assert_eq!(
                again,
                format!("{backend}:q{i}.{j}"),
                "client {i} changed backend"
            );
        }
        *served.entry(backend).or_insert(0) += 1;
    }
    assert_eq!(
        served.keys().collect::<Vec<_>>(),
        ["b1", "b2"],
        "both live backends serve, the refusing one none: {served:?}"
    );
    // The TCP listener on the same port serves too.
    let mut c = TcpStream::connect(listener).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"tcp too").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = String::new();
    c.read_to_string(&mut got).unwrap();
    assert_eq!(got, "tcp too");
}
