//! Access logs of the agent's proxy on loopback: requests and TCP connections through
//! `buoy-agent proxy`, and the lines it prints on its standard output parsed and checked field
//! by field, in both formats.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
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

fn backends(list: &[SocketAddr]) -> String {
    list.iter()
        .map(|a| format!("    - {{address: \"{}\", port: {}}}\n", a.ip(), a.port()))
        .collect()
}

/// Sends `raw` on a new connection; the status, the body, and the client's own address.
fn exchange(port: u16, raw: &str) -> (u16, Vec<u8>, SocketAddr) {
    let mut c = TcpStream::connect(at(port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let me = c.local_addr().unwrap();
    c.write_all(raw.as_bytes()).unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    let (reply, _) = parse_reply(&got).unwrap();
    (reply.status, reply.body.into_bytes(), me)
}

/// Waits until `n` lines of the proxy's output satisfy `pick`; returns them.
fn lines(p: &ProxyProcess, n: usize, pick: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<String> = p.process.output().into_iter().filter(|l| pick(l)).collect();
        if found.len() >= n || Instant::now() > deadline {
            assert_eq!(found.len(), n, "{:#?}", p.process.output());
            return found;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn json_lines(p: &ProxyProcess, n: usize) -> Vec<serde_json::Value> {
    lines(p, n, |l| l.starts_with('{'))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn json_lines_report_requests_and_connections() {
    let web = Backend::http("127.0.0.1:0", "web", Behaviour::Echo).unwrap();
    let echo = Backend::tcp_echo("127.0.0.1:0").unwrap();
    let dead = [at(free_port()), at(free_port())];
    let (http, tcp, down) = (free_port(), free_port(), free_port());
    let json = "accessLog: {format: JSON}";
    let yaml = format!(
        "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {{name: t}}\nspec:\n  addresses: [127.0.0.1]\n  listeners:\n    - {{name: web, port: {http}, upstreamPool: web, {json}}}\n    - {{name: echo, port: {tcp}, protocol: TCP, upstreamPool: echo, {json}}}\n    - {{name: down, port: {down}, upstreamPool: dead, {json}}}\n---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: web}}\nspec:\n  backends:\n{}---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: echo}}\nspec:\n  backends:\n{}---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: dead}}\nspec:\n  backends:\n{}",
        backends(&[web.addr]),
        backends(&[echo.addr]),
        backends(&dead),
    );
    let p = ProxyProcess::start(AGENT, &yaml);

    let post = "POST /submit?x=1 HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: probe/1\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world";
    let (status, body, me) = exchange(http, post);
    assert_eq!(status, 200);

    let mut c = TcpStream::connect(at(tcp)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let tcp_me = c.local_addr().unwrap();
    c.write_all(b"twelve bytes").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut echoed = Vec::new();
    c.read_to_end(&mut echoed).unwrap();
    assert_eq!(echoed, b"twelve bytes");
    drop(c);

    let get = "GET / HTTP/1.1\r\nHost: down.example\r\nConnection: close\r\n\r\n";
    let (down_status, down_body, down_me) = exchange(down, get);
    assert_eq!(down_status, 502);

    let all = json_lines(&p, 3);
    let find = |listener: &str| {
        all.iter()
            .find(|v| v["listener"].as_str().unwrap().contains(listener))
            .unwrap()
            .clone()
    };

    let v = find("/web@");
    assert_eq!(v["listener"], "default/t/web@127.0.0.1");
    assert_eq!(v["protocol"], "HTTP");
    assert_eq!(v["client"], me.to_string());
    assert_eq!(v["host"], "shop.example");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/submit?x=1");
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes_in"], post.len());
    assert_eq!(v["bytes_out"], body.len());
    assert_eq!(v["upstream"], web.addr.to_string());
    assert_eq!(v["upstream_status"], 200);
    assert_eq!(v["attempts"], 1);
    assert_eq!(v["user_agent"], "probe/1");
    let d = v["duration"].as_f64().unwrap();
    assert!(d > 0.0 && d < 5.0, "{d}");
    assert!(v["time"].as_str().unwrap().ends_with('Z'), "{v}");

    let v = find("/echo@");
    assert_eq!(v["protocol"], "TCP");
    assert_eq!(v["client"], tcp_me.to_string());
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes_in"], 12);
    assert_eq!(v["bytes_out"], 12);
    assert_eq!(v["upstream"], echo.addr.to_string());
    assert_eq!(v["upstream_status"], serde_json::Value::Null);
    assert_eq!(v["attempts"], 1);
    assert_eq!(v["method"], serde_json::Value::Null);

    // Both backends refuse: two attempts (nginx's proxy_next_upstream error), then 502.
    let v = find("/down@");
    assert_eq!(v["client"], down_me.to_string());
    assert_eq!(v["host"], "down.example");
    assert_eq!(v["status"], 502);
    assert_eq!(v["bytes_in"], get.len());
    assert_eq!(v["bytes_out"], down_body.len());
    assert_eq!(v["attempts"], 2);
    assert_eq!(v["upstream_status"], serde_json::Value::Null);
    let upstream: SocketAddr = v["upstream"].as_str().unwrap().parse().unwrap();
    assert!(dead.contains(&upstream), "{upstream}");
}

#[test]
fn combined_lines_parse_as_nginx_combined() {
    let web = Backend::http("127.0.0.1:0", "web", Behaviour::Echo).unwrap();
    let port = free_port();
    let yaml = format!(
        "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {{name: t}}\nspec:\n  addresses: [127.0.0.1]\n  listeners:\n    - {{name: web, port: {port}, upstreamPool: web, accessLog: {{format: Combined}}}}\n---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: web}}\nspec:\n  backends:\n{}",
        backends(&[web.addr]),
    );
    let p = ProxyProcess::start(AGENT, &yaml);
    let mut sent = Vec::new();
    for (i, path) in ["/one", "/two?q=x"].iter().enumerate() {
        let raw = format!(
            "GET {path} HTTP/1.1\r\nHost: a.example\r\nReferer: http://from/{i}\r\nUser-Agent: probe \"{i}\"\r\nConnection: close\r\n\r\n"
        );
        let (status, body, _) = exchange(port, &raw);
        assert_eq!(status, 200);
        sent.push(body.len());
    }
    let got = lines(&p, 2, |l| l.starts_with("127.0.0.1 - - ["));
    for (i, line) in got.iter().enumerate() {
        let f = combined(line);
        assert_eq!(f.remote_addr, "127.0.0.1");
        // $time_local: 06/Dec/2026:09:17:28 +0000
        let t = f.time.as_bytes();
        assert_eq!(f.time.len(), 26, "{line}");
        assert_eq!(
            (t[2], t[6], t[11], t[20]),
            (b'/', b'/', b':', b' '),
            "{line}"
        );
        let path = if i == 0 { "/one" } else { "/two?q=x" };
        assert_eq!(f.request, format!("GET {path} HTTP/1.1"));
        assert_eq!(f.status, "200");
        assert_eq!(f.bytes, sent[i].to_string());
        assert_eq!(f.referer, format!("http://from/{i}"));
        // nginx escapes a quote as \x22.
        assert_eq!(f.user_agent, format!("probe \\x22{i}\\x22"));
    }
}

/// The fields of a combined line, as log tools split it.
struct Combined {
    remote_addr: String,
    time: String,
    request: String,
    status: String,
    bytes: String,
    referer: String,
    user_agent: String,
}

fn combined(line: &str) -> Combined {
    let (remote_addr, rest) = line.split_once(" - - [").unwrap();
    let (time, rest) = rest.split_once("] \"").unwrap();
    let (request, rest) = rest.split_once("\" ").unwrap();
    let (status, rest) = rest.split_once(' ').unwrap();
    let (bytes, rest) = rest.split_once(" \"").unwrap();
    let (referer, rest) = rest.split_once("\" \"").unwrap();
    let user_agent = rest.strip_suffix('"').unwrap();
    assert!(!user_agent.contains('"'), "{line}");
    Combined {
        remote_addr: remote_addr.into(),
        time: time.into(),
        request: request.into(),
        status: status.into(),
        bytes: bytes.into(),
        referer: referer.into(),
        user_agent: user_agent.into(),
    }
}

#[test]
fn a_udp_flow_is_one_line_when_it_ends() {
    // A UDP backend answering every datagram with its reverse.
    let backend = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let backend_addr = backend.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = backend.recv_from(&mut buf) {
            let reply: Vec<u8> = buf[..n].iter().rev().copied().collect();
            let _ = backend.send_to(&reply, from);
        }
    });
    let (port, dead) = (free_port(), at(free_port()));
    let yaml = format!(
        "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {{name: t}}\nspec:\n  addresses: [127.0.0.1]\n  listeners:\n    - {{name: dns, port: {port}, protocol: UDP, upstreamPool: p, accessLog: {{format: JSON}}, client: {{idleTimeout: 300ms}}}}\n    - {{name: gone, port: {}, protocol: UDP, upstreamPool: dead, accessLog: {{format: JSON}}, client: {{idleTimeout: 300ms}}}}\n---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: p}}\nspec:\n  backends:\n{}---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: dead}}\nspec:\n  backends:\n{}",
        port + 1,
        backends(&[backend_addr]),
        backends(&[dead])
    );
    let p = ProxyProcess::start(AGENT, &yaml);
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 512];
    for q in ["abc", "defg"] {
        client.send_to(q.as_bytes(), at(port)).unwrap();
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], q.chars().rev().collect::<String>().as_bytes());
    }
    // A flow to a backend that refuses (ICMP): logged as 502.
    client.send_to(b"x", at(port + 1)).unwrap();
    let logged = json_lines(&p, 2);
    let flow = logged
        .iter()
        .find(|l| l["status"] == 200)
        .unwrap_or_else(|| panic!("{logged:#?}"));
    assert_eq!(flow["protocol"], "UDP");
    assert_eq!(flow["client"], client.local_addr().unwrap().to_string());
    assert_eq!(flow["bytes_in"], 7);
    assert_eq!(flow["bytes_out"], 7);
    assert_eq!(flow["upstream"], backend_addr.to_string());
    assert_eq!(flow["attempts"], 1);
    assert!(flow["listener"].as_str().unwrap().contains("/dns@"));
    let refused = logged.iter().find(|l| l["status"] == 502).unwrap();
    assert_eq!(refused["upstream"], dead.to_string());
    assert_eq!(refused["bytes_out"], 0);
}
