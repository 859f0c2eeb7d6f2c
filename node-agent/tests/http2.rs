//! HTTP/2 from clients to the proxy on loopback, as h2c with prior knowledge on a plain HTTP
//! listener (real clients: h2load and curl): load over two backends, the forwarded headers and
//! a request body, routes by host and path, retries and Buoy's own 502, the access log line, the
//! GOAWAY of a connection that idles, is evicted or whose proxy stops (open streams finish), the
//! listener's limits, and HTTP/1 clients on the same listener; then HTTP/2 over TLS, chosen by
//! ALPN on an HTTPS listener.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use buoy_tests::{
    backend::{Backend, Behaviour, free_port, parse_reply},
    process::ProxyProcess,
};

const AGENT: &str = env!("CARGO_BIN_EXE_buoy-agent");

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn pool(name: &str, backends: &[SocketAddr]) -> String {
    let list: String = backends
        .iter()
        .map(|a| format!("    - {{address: \"{}\", port: {}}}\n", a.ip(), a.port()))
        .collect();
    format!(
        "---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: {name}}}\nspec:\n  backends:\n{list}"
    )
}

/// A VirtualIP on 127.0.0.1 with these listeners (YAML flow mappings), then the pools.
fn config(listeners: &[String], pools: &[String]) -> String {
    let mut yaml = String::from(
        "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {name: t}\nspec:\n  addresses: [127.0.0.1]\n  listeners:\n",
    );
    for l in listeners {
        yaml.push_str(&format!("    - {l}\n"));
    }
    for p in pools {
        yaml.push_str(p);
    }
    yaml
}

/// A curl response: status line's version and status, header fields (lower case), body.
struct Curl {
    version: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Curl {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A request field as the echo backend received it.
    fn echoed(&self, name: &str) -> Option<&str> {
        self.body
            .lines()
            .skip(1)
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
    }

    fn served_by(&self) -> &str {
        self.body.lines().next().unwrap_or("")
    }
}

/// curl over HTTP/2 with prior knowledge to `url` (its host resolved to 127.0.0.1), with more
/// arguments.
fn curl(url: &str, port: u16, args: &[&str]) -> Curl {
    curl_with(url, port, args, None)
}

/// [`curl`], with `stdin` for its standard input.
fn curl_with(url: &str, port: u16, args: &[&str], stdin: Option<&[u8]>) -> Curl {
    let host = url
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split([':', '/'])
        .next()
        .unwrap();
    let mut child = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "10"])
        // h2c unless the caller asks otherwise (an https:// URL with its ALPN choice).
        .args(if url.starts_with("https:") {
            &[][..]
        } else {
            &["--http2-prior-knowledge"][..]
        })
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .args(args)
        .arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.map(<[u8]>::to_vec);
    let writer = thread::spawn(move || {
        if let Some(data) = stdin {
            input.write_all(&data).unwrap();
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "curl {url}: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let mut status_line = lines.next().unwrap().split_whitespace();
    let version = status_line.next().unwrap().to_string();
    let status = status_line.next().unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Curl {
        version,
        status,
        headers,
        body: body.to_string(),
    }
}

/// Sends `raw` over HTTP/1.1 on a new connection; the reply.
fn http1(port: u16, raw: &str) -> buoy_tests::backend::Reply {
    let mut c = TcpStream::connect(at(port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(raw.as_bytes()).unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    parse_reply(&got).unwrap().0
}

#[test]
fn h2load_is_served_by_both_backends() {
    let a = Backend::http("127.0.0.1:0", "a", Behaviour::Echo).unwrap();
    let b = Backend::http("127.0.0.1:0", "b", Behaviour::Echo).unwrap();
    let port = free_port();
    let _p = ProxyProcess::start(
        AGENT,
        &config(
            &[format!("{{name: web, port: {port}, upstreamPool: web}}")],
            &[pool("web", &[a.addr, b.addr])],
        ),
    );
    let out = Command::new("h2load")
        .args(["-n", "2000", "-c", "4", "-m", "10"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // h2load prints "requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed,
    // 0 errored, 0 timeout" and "status codes: 2000 2xx, …".
    let requests = text.lines().find(|l| l.starts_with("requests:")).unwrap();
    assert!(
        requests.contains("2000 done, 2000 succeeded, 0 failed, 0 errored"),
        "{text}"
    );
    let codes = text
        .lines()
        .find(|l| l.starts_with("status codes:"))
        .unwrap();
    assert!(codes.starts_with("status codes: 2000 2xx"), "{text}");
    assert_eq!(a.hits() + b.hits(), 2000);
    // Round robin over two equal backends: both take about half.
    assert!(
        a.hits() > 500 && b.hits() > 500,
        "{} {}",
        a.hits(),
        b.hits()
    );
}

#[test]
fn requests_get_the_forwarded_headers_and_bodies_and_routes() {
    let web = Backend::http("127.0.0.1:0", "web", Behaviour::Echo).unwrap();
    let api = Backend::http("127.0.0.1:0", "api", Behaviour::Echo).unwrap();
    let port = free_port();
    let _p = ProxyProcess::start(
        AGENT,
        &config(
            &[format!(
                "{{name: web, port: {port}, upstreamPool: web, routes: [{{hosts: [shop.example], paths: [{{type: Prefix, value: /api/}}], upstreamPool: api}}]}}"
            )],
            &[pool("web", &[web.addr]), pool("api", &[api.addr])],
        ),
    );
    let url = |host: &str, path: &str| format!("http://{host}:{port}{path}");

    let r = curl(
        &url("Shop.Example", "/page?x=1"),
        port,
        &[
            "-H",
            "X-Forwarded-For: 10.1.2.3",
            "-H",
            "User-Agent: h2-test",
        ],
    );
    assert_eq!(
        (r.version.as_str(), r.status),
        ("HTTP/2", 200),
        "{}",
        r.body
    );
    assert_eq!(r.served_by(), "web");
    // nginx's `Host $host` from `:authority`, and the client address.
    assert_eq!(r.echoed("host"), Some("shop.example"));
    assert_eq!(r.echoed("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(r.echoed("x-forwarded-for"), Some("10.1.2.3, 127.0.0.1"));
    assert_eq!(r.echoed("x-forwarded-proto"), Some("http"));
    assert_eq!(r.echoed("user-agent"), Some("h2-test"));
    // The backend spoke HTTP/1.1 with keep-alive; none of that reaches an HTTP/2 client.
    assert_eq!(r.header("connection"), None);
    assert_eq!(r.header("keep-alive"), None);
    assert_eq!(r.header("content-type"), Some("text/plain"));

    // A request body, passed on.
    let r = curl(
        &url("shop.example", "/submit"),
        port,
        &["--data-binary", "hello over h2"],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed("body"), Some("hello over h2"));
    assert_eq!(r.echoed("content-length"), Some("13"));
    // One larger than a stream's first window (64 KiB), of a length the client does not say
    // (curl uploading its standard input): chunked to the backend.
    let big = "x".repeat(200_000);
    let r = curl_with(
        &url("shop.example", "/upload"),
        port,
        &["-T", "-"],
        Some(big.as_bytes()),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed("transfer-encoding"), Some("chunked"));
    assert_eq!(r.echoed("body"), Some(big.as_str()));
    assert_eq!(web.methods.lock().unwrap().last().unwrap(), "PUT");

    // Routes by host and path.
    let r = curl(&url("shop.example", "/api/items"), port, &[]);
    assert_eq!((r.status, r.served_by()), (200, "api"));
    let r = curl(&url("other.example", "/api/items"), port, &[]);
    assert_eq!((r.status, r.served_by()), (200, "web"));
    // nginx's redirect to the prefix with its slash.
    let r = curl(&url("shop.example", "/api?q=1"), port, &[]);
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/api/?q=1"));

    // An HTTP/1 client on the same listener, with a method that starts like the preface.
    let r = http1(
        port,
        "POST /api/x HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    );
    assert_eq!((r.status, r.served_by()), (200, "api"));
    assert_eq!(r.echoed("body"), Some("hi"));
    let r = http1(
        port,
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((r.status, r.served_by()), (200, "web"));
}

#[test]
fn a_dead_backend_is_retried_and_none_left_is_a_502() {
    let live = Backend::http("127.0.0.1:0", "live", Behaviour::Echo).unwrap();
    let dead = [at(free_port()), at(free_port())];
    let (port, down) = (free_port(), free_port());
    let p = ProxyProcess::start(
        AGENT,
        &config(
            &[
                format!(
                    "{{name: web, port: {port}, upstreamPool: web, accessLog: {{format: Combined}}}}"
                ),
                format!(
                    "{{name: down, port: {down}, upstreamPool: dead, accessLog: {{format: JSON}}}}"
                ),
            ],
            &[pool("web", &[dead[0], live.addr]), pool("dead", &dead)],
        ),
    );
    // Round robin gives the dead backend every other first attempt: each is retried on the
    // live one (nginx's proxy_next_upstream error).
    for i in 0..4 {
        let r = curl(
            &format!("http://shop.example:{port}/r{i}"),
            port,
            &["-A", "h2-probe"],
        );
        assert_eq!((r.status, r.served_by()), (200, "live"), "{i}: {}", r.body);
    }
    assert_eq!(live.hits(), 4);

    let r = curl(&format!("http://down.example:{down}/x"), down, &[]);
    assert_eq!(r.status, 502);
    let reason = r.header("x-buoy-error").unwrap();
    assert!(r.body.contains(reason), "{reason}: {}", r.body);

    // The access log lines say HTTP/2.0.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (combined, json) = loop {
        let out = p.process.output();
        let combined: Vec<String> = out
            .iter()
            .filter(|l| l.starts_with("127.0.0.1 - - ["))
            .cloned()
            .collect();
        let json: Vec<String> = out.iter().filter(|l| l.starts_with('{')).cloned().collect();
        if (combined.len() >= 4 && !json.is_empty()) || Instant::now() > deadline {
            break (combined, json);
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(combined.len(), 4, "{:#?}", p.process.output());
    for (i, line) in combined.iter().enumerate() {
        assert!(
            line.contains(&format!("\"GET /r{i} HTTP/2.0\" 200 ")),
            "{line}"
        );
        assert!(line.ends_with("\"h2-probe\""), "{line}");
    }
    assert_eq!(json.len(), 1, "{json:?}");
    let v: serde_json::Value = serde_json::from_str(&json[0]).unwrap();
    assert_eq!(v["version"], "HTTP/2.0");
    assert_eq!(v["host"], "down.example");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/x");
    assert_eq!(v["status"], 502);
    assert_eq!(v["attempts"], 2);
    assert_eq!(v["bytes_out"], r.body.len());
}

/// Reads HTTP/2 frames from `c` until one of type `kind` (or the connection ends); returns the
/// frames seen, as (type, payload).
fn frames_until(c: &mut TcpStream, kind: u8) -> Vec<(u8, Vec<u8>)> {
    let mut seen = Vec::new();
    loop {
        let mut head = [0u8; 9];
        if c.read_exact(&mut head).is_err() {
            return seen;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        if c.read_exact(&mut payload).is_err() {
            return seen;
        }
        seen.push((head[3], payload));
        if head[3] == kind {
            return seen;
        }
    }
}

const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;

#[test]
fn an_idle_connection_gets_a_goaway_and_the_limits_hold() {
    let web = Backend::http("127.0.0.1:0", "web", Behaviour::Echo).unwrap();
    let (port, one) = (free_port(), free_port());
    let _p = ProxyProcess::start(
        AGENT,
        &config(
            &[
                format!(
                    "{{name: web, port: {port}, upstreamPool: web, client: {{keepaliveTimeout: 1s, headerTimeout: 1s, maxRequestHeaderBytes: 4096, maxRequestBodyBytes: 100}}}}"
                ),
                format!(
                    "{{name: one, port: {one}, upstreamPool: web, client: {{maxConnections: 1}}}}"
                ),
            ],
            &[pool("web", &[web.addr])],
        ),
    );
    // The preface and an empty SETTINGS frame, then nothing.
    let mut c = TcpStream::connect(at(port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .unwrap();
    let frames = frames_until(&mut c, GOAWAY);
    let waited = started.elapsed();
    // The server's settings: nginx's 128 concurrent streams.
    let (_, settings) = frames.iter().find(|(t, _)| *t == SETTINGS).unwrap();
    let max_streams = settings
        .chunks(6)
        .find(|s| s[..2] == [0, 3])
        .map(|s| u32::from_be_bytes([s[2], s[3], s[4], s[5]]));
    assert_eq!(max_streams, Some(128), "{settings:?}");
    assert_eq!(frames.last().map(|f| f.0), Some(GOAWAY), "{frames:?}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    // Then the connection closes (this client never answers the GOAWAY's PING).
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(6));

    // A header list over maxRequestHeaderBytes: 431 (the stream only).
    let big = format!("X-Big: {}", "a".repeat(5000));
    let r = curl(&format!("http://shop.example:{port}/"), port, &["-H", &big]);
    assert_eq!(r.status, 431);
    assert_eq!(web.hits(), 0);
    let r = curl(&format!("http://shop.example:{port}/"), port, &[]);
    assert_eq!(r.status, 200);

    // A body over maxRequestBodyBytes: 413, whether its length is declared or not.
    let url = format!("http://shop.example:{port}/up");
    let body = "b".repeat(200);
    let r = curl(&url, port, &["--data-binary", &body]);
    assert_eq!(r.status, 413);
    assert!(r.header("x-buoy-error").is_some());
    let r = curl_with(&url, port, &["-T", "-"], Some(body.as_bytes()));
    assert_eq!(r.status, 413);
    assert_eq!(web.hits(), 1);

    // At maxConnections, an HTTP/2 connection with no stream open makes room: GOAWAY, at once
    // (its keep-alive time is the default 75 s).
    let mut idle = TcpStream::connect(at(one)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .unwrap();
    frames_until(&mut idle, SETTINGS);
    let started = Instant::now();
    let r = curl(&format!("http://shop.example:{one}/"), one, &[]);
    assert_eq!(r.status, 200);
    let frames = frames_until(&mut idle, GOAWAY);
    assert_eq!(frames.last().map(|f| f.0), Some(GOAWAY), "{frames:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_stopping_proxy_sends_goaway_and_lets_open_streams_finish() {
    let slow = Backend::http(
        "127.0.0.1:0",
        "slow",
        Behaviour::Slow(Duration::from_millis(1500)),
    )
    .unwrap();
    let port = free_port();
    let mut p = ProxyProcess::start(
        AGENT,
        &config(
            &[format!("{{name: web, port: {port}, upstreamPool: web}}")],
            &[pool("web", &[slow.addr])],
        ),
    );
    // A connection with no stream open, and a request under way on another.
    let mut idle = TcpStream::connect(at(port)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .unwrap();
    frames_until(&mut idle, SETTINGS);
    let busy = thread::spawn(move || curl(&format!("http://a.example:{port}/"), port, &[]));
    let deadline = Instant::now() + Duration::from_secs(5);
    while slow.connections() == 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    p.process.signal(libc::SIGTERM);
    let frames = frames_until(&mut idle, GOAWAY);
    assert_eq!(frames.last().map(|f| f.0), Some(GOAWAY), "{frames:?}");
    // The request that was under way is answered.
    let r = busy.join().unwrap();
    assert_eq!((r.status, r.served_by()), (200, "slow"));
    assert_eq!(p.process.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn https_clients_that_choose_h2_by_alpn_get_http2() {
    let web = Backend::http("127.0.0.1:0", "web", Behaviour::Echo).unwrap();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = buoy_tests::tls::certificate(dir.path(), "site", &["a.example"]);
    let mut yaml = config(
        &[format!(
            "{{name: web, port: {port}, protocol: HTTPS, upstreamPool: web, tls: {{certificates: [{{secretName: site}}]}}, accessLog: {{format: JSON}}}}"
        )],
        &[pool("web", &[web.addr])],
    );
    yaml.push_str(&buoy_tests::tls::secret("site", &crt, &key));
    let p = ProxyProcess::start(AGENT, &yaml);
    let ca = crt.to_str().unwrap();
    let url = format!("https://a.example:{port}/secure");
    // ALPN h2 (curl offers it first): HTTP/2 over TLS, the same request path.
    let r = curl(&url, port, &["--http2", "--cacert", ca]);
    assert_eq!(
        (r.version.as_str(), r.status),
        ("HTTP/2", 200),
        "{}",
        r.body
    );
    assert_eq!(r.served_by(), "web");
    assert_eq!(r.echoed("host"), Some("a.example"));
    assert_eq!(r.echoed("x-real-ip"), Some("127.0.0.1"));
    let r = curl(
        &url,
        port,
        &["--http2", "--cacert", ca, "--data-binary", "sealed"],
    );
    assert_eq!(r.echoed("body"), Some("sealed"));
    // A client that offers only http/1.1 gets it.
    let r = curl(&url, port, &["--http1.1", "--cacert", ca]);
    assert_eq!((r.version.as_str(), r.status), ("HTTP/1.1", 200));
    // Many streams over a few TLS connections (h2load does not verify the certificate).
    let out = Command::new("h2load")
        .args(["-n", "400", "-c", "2", "-m", "10"])
        .arg(format!("https://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Application protocol: h2"), "{text}");
    assert!(
        text.contains("400 done, 400 succeeded, 0 failed, 0 errored"),
        "{text}"
    );
    // The access log says HTTP/2.0 for the h2 requests, HTTP/1.1 for the other.
    let deadline = Instant::now() + Duration::from_secs(10);
    let versions = loop {
        let versions: Vec<String> = p
            .process
            .output()
            .iter()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["version"].to_string())
            .collect();
        if versions.len() >= 403 || Instant::now() > deadline {
            break versions;
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(versions.len(), 403);
    assert_eq!(versions.iter().filter(|v| *v == "\"HTTP/1.1\"").count(), 1);
    assert_eq!(
        versions.iter().filter(|v| *v == "\"HTTP/2.0\"").count(),
        402
    );
}
