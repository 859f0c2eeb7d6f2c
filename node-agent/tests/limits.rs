//! The proxy's resources stay bounded whatever clients do, on loopback: a request header over
//! the limit is refused as it arrives (not after pingora buffered a megabyte), a slowloris flood
//! of 5,000 connections trickling a header byte a second neither stops other clients nor grows
//! the agent without bound, a listener at its connection limit makes room by closing the
//! connection that has waited longest for a request, and clients that stop reading are cut
//! after the send timeout (HTTP and TCP).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use buoy_tests::{
    backend::{Backend, Behaviour, free_port, parse_reply, request},
    process::{ProxyProcess, rss_mb},
};

const AGENT: &str = env!("CARGO_BIN_EXE_buoy-agent");

/// Runs `buoy-agent proxy` on this YAML; waits until it listens.
fn proxy(yaml: &str) -> ProxyProcess {
    ProxyProcess::start(AGENT, yaml)
}

/// One listener on 127.0.0.1:`port` with `client` settings, to `backend`.
fn config(port: u16, protocol: &str, client: &str, backend: SocketAddr) -> String {
    format!(
        "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {{name: t}}\nspec:\n  addresses: [127.0.0.1]\n  listeners:\n    - {{name: l, port: {port}, protocol: {protocol}, upstreamPool: p, client: {{{client}}}}}\n---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: p}}\nspec:\n  backends: [{{address: \"{}\", port: {}}}]\n",
        backend.ip(),
        backend.port()
    )
}

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Raises this test process's open-files limit (thousands of client sockets).
fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

#[test]
fn a_header_over_the_limit_is_refused_as_it_arrives() {
    let echo = Backend::http("127.0.0.1:0", "echo", Behaviour::Echo).unwrap();
    let port = free_port();
    let _p = proxy(&config(
        port,
        "HTTP",
        "maxRequestHeaderBytes: 2048, headerTimeout: 60s",
        echo.addr,
    ));
    // A header that never ends, past the limit: answered at once, not after 60 s (the header
    // timeout) nor after a megabyte (pingora's own limit).
    let mut c = TcpStream::connect(at(port)).unwrap();
    let started = Instant::now();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        .unwrap();
    c.write_all(&[b'a'; 3000]).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = c.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if parse_reply(&got).is_some() {
            break;
        }
    }
    let (reply, _) = parse_reply(&got).unwrap_or_else(|| {
        panic!(
            "no answer within {:?}: {}",
            started.elapsed(),
            String::from_utf8_lossy(&got)
        )
    });
    assert_eq!(
        (reply.status, reply.header("X-Buoy-Error")),
        (431, Some("request header too large"))
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // One exactly at the limit is fine.
    let start = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: ";
    let pad = 2048 - start.len() - "\r\n\r\n".len();
    let exact = format!("{start}{}\r\n\r\n", "p".repeat(pad));
    assert_eq!(exact.len(), 2048);
    let mut c = TcpStream::connect(at(port)).unwrap();
    c.write_all(exact.as_bytes()).unwrap();
    let mut got = Vec::new();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = c.read_to_end(&mut got);
    let (reply, _) = parse_reply(&got).unwrap();
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&got));
    assert_eq!(echo.hits(), 1);
}

/// Opens `n` connections to `target` that each send the start of a request and then one byte
/// per `every`, until `until`; returns how many the proxy still held open at the end.
fn slowloris(target: SocketAddr, n: usize, every: Duration, until: Instant) -> usize {
    let mut conns: Vec<Option<TcpStream>> = (0..n)
        .map(|_| {
            let c = TcpStream::connect(target).ok()?;
            c.set_nonblocking(true).ok()?;
            let mut c = c;
            c.write_all(b"GET / HTTP/1.1\r\nHost: slow\r\n").ok()?;
            Some(c)
        })
        .collect();
    while Instant::now() < until {
        let tick = Instant::now();
        for slot in conns.iter_mut() {
            if let Some(c) = slot
                && matches!(c.write(b"X"), Err(e) if e.kind() != ErrorKind::WouldBlock)
            {
                *slot = None;
            }
        }
        thread::sleep(every.saturating_sub(tick.elapsed()));
    }
    // Closed by the proxy: a read sees the end (or a reset).
    conns
        .iter_mut()
        .flatten()
        .filter(|c| {
            let mut b = [0u8; 1];
            matches!((&**c).read(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock)
        })
        .count()
}

#[test]
fn a_slowloris_flood_stops_no_other_client_and_memory_stays_bounded() {
    raise_open_files();
    let echo = Backend::http("127.0.0.1:0", "echo", Behaviour::Echo).unwrap();
    let (open, capped) = (free_port(), free_port());
    let yaml = format!(
        "{}---\n{}",
        config(open, "HTTP", "headerTimeout: 60s", echo.addr),
        config(
            capped,
            "HTTP",
            "headerTimeout: 60s, maxConnections: 500",
            echo.addr
        )
        .replace("name: t}", "name: t2}")
        .replace("name: p}", "name: p2}")
        .replace("upstreamPool: p,", "upstreamPool: p2,")
    );
    let p = proxy(&yaml);
    let pid = p.process.pid();
    thread::sleep(Duration::from_millis(300));
    let before = rss_mb(pid);
    // 5,000 slow clients on the listener with the default limit, 1,500 on the one that holds
    // 500, for 8 s, a byte a second each.
    let until = Instant::now() + Duration::from_secs(8);
    let flood = thread::spawn(move || slowloris(at(open), 5000, Duration::from_secs(1), until));
    let flood_capped =
        thread::spawn(move || slowloris(at(capped), 1500, Duration::from_secs(1), until));
    // Meanwhile, every normal request on both listeners is answered.
    let mut answered = [0, 0];
    let mut failed = Vec::new();
    thread::sleep(Duration::from_secs(2));
    while Instant::now() < until {
        for (i, port) in [open, capped].into_iter().enumerate() {
            match request(at(port), "GET", "/", &[], "") {
                Some(r) if r.status == 200 => answered[i] += 1,
                other => failed.push(format!("port {port}: {other:?}")),
            }
        }
        thread::sleep(Duration::from_millis(250));
    }
    let peak = rss_mb(pid);
    let held = flood.join().unwrap();
    let held_capped = flood_capped.join().unwrap();
    assert!(failed.is_empty(), "normal requests failed: {failed:?}");
    assert!(answered[0] >= 10 && answered[1] >= 10, "{answered:?}");
    // Each listener made room for the normal clients by closing the slow connections that had
    // waited longest, and holds no more than its limit (4096 by default).
    assert!(held <= 4096, "{held} held at the default limit of 4096");
    assert!(
        held >= 4000,
        "{held}: slow connections are kept while there is room"
    );
    assert!(held_capped <= 500, "{held_capped} held at a limit of 500");
    // Bounded memory: the limits bound it (docs/benchmarks.md measures a connection's cost).
    let held_total = (held + held_capped) as f64;
    let per_connection_kib = (peak - before) * 1024.0 / held_total;
    eprintln!(
        "slowloris: RSS {before:.1} MB before, {peak:.1} MB with {held_total} slow connections held ({per_connection_kib:.1} KiB each); {answered:?} normal requests answered"
    );
    assert!(
        per_connection_kib < 24.0,
        "{per_connection_kib:.1} KiB per connection"
    );
}

#[test]
fn a_client_that_stops_reading_is_cut_after_the_send_timeout() {
    // A 256 MiB download the client never reads: without a send timeout the proxy (and its
    // backend connection) would wait for it forever.
    let big = Backend::http("127.0.0.1:0", "big", Behaviour::Large(256 << 20)).unwrap();
    let port = free_port();
    let _p = proxy(&config(port, "HTTP", "sendTimeout: 1s", big.addr));
    let mut c = TcpStream::connect(at(port)).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    thread::sleep(Duration::from_secs(3));
    // What the socket buffers held, then the end: far less than the body.
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let ended = loop {
        match c.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    assert!(ended, "the connection was not cut ({total} bytes read)");
    assert!(
        total < 64 << 20,
        "{total} bytes arrived: the proxy kept sending"
    );
}

#[test]
fn a_tcp_client_that_stops_reading_is_cut() {
    // A backend that streams without end to a client that never reads: after the send timeout
    // the proxy cuts the connection instead of holding it (and the backend's) forever.
    let firehose = Backend::tcp_firehose("127.0.0.1:0").unwrap();
    let port = free_port();
    let _p = proxy(&config(port, "TCP", "sendTimeout: 1s", firehose.addr));
    let mut c = TcpStream::connect(at(port)).unwrap();
    thread::sleep(Duration::from_secs(3));
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let ended = loop {
        match c.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
        assert!(total < 1 << 30, "the stream never ended");
    };
    assert!(ended, "the connection was not cut ({total} bytes read)");
    assert!(
        total < 64 << 20,
        "{total} bytes arrived: the proxy kept sending"
    );
}
