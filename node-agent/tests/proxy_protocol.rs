//! The PROXY protocol against HAProxy and nginx as peers, in network namespaces: a client, an
//! HAProxy in front of Buoy sending `send-proxy` / `send-proxy-v2`, Buoy's listeners taking the
//! header (`proxyProtocol: true`), and Buoy's pools sending V1 and V2 to nginx
//! (`listen … proxy_protocol`, answering `$proxy_protocol_addr`) and to HAProxy (`accept-proxy`,
//! answering `%ci`). Each answer names the address the backend was told; it must be the client's.
//! A connection without a header is closed, and the access log names the header's client.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use buoy_tests::{
    backend::request,
    netlab::{Lab, in_netns},
    nginx,
};

const AGENT: &str = env!("CARGO_BIN_EXE_buoy-agent");

// Hosts are numbered in order: 10.77.0.N.
const CLIENT: &str = "10.77.0.1";
const LB: &str = "10.77.0.2";
const BUOY: &str = "10.77.0.3";
const BACKEND: &str = "10.77.0.4";

/// HAProxy in front of Buoy: 8001 → Buoy's HTTP listener with send-proxy (V1), 8002 → the same
/// with send-proxy-v2, 8003 → Buoy's TCP listener with send-proxy-v2.
fn front_haproxy() -> String {
    format!(
        "global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
frontend f1\n  bind {LB}:8001\n  default_backend b1\nbackend b1\n  server buoy {BUOY}:8080 send-proxy\n\
frontend f2\n  bind {LB}:8002\n  default_backend b2\nbackend b2\n  server buoy {BUOY}:8080 send-proxy-v2\n\
frontend f3\n  bind {LB}:8003\n  default_backend b3\nbackend b3\n  server buoy {BUOY}:9090 send-proxy-v2\n"
    )
}

/// HAProxy behind Buoy: accept-proxy on 7002, answering with the client address it was told.
fn back_haproxy() -> String {
    format!(
        "global\n  maxconn 100\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
frontend told\n  bind {BACKEND}:7002 accept-proxy\n  http-request return status 200 content-type text/plain lf-string \"%ci\\n\"\n"
    )
}

/// nginx behind Buoy: proxy_protocol on 7001 and 7003, answering `$proxy_protocol_addr`; 7003
/// logs the header's address and the user agent of each request to `log`.
fn backend_nginx(log: &str) -> String {
    format!(
        "events {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n  log_format pp '$proxy_protocol_addr $http_user_agent';\n\
  server {{ listen {BACKEND}:7001 proxy_protocol; location / {{ return 200 \"$proxy_protocol_addr\\n\"; }} }}\n\
  server {{ listen {BACKEND}:7003 proxy_protocol; access_log {log} pp; location / {{ return 200 \"$proxy_protocol_addr\\n\"; }} }}\n}}\n"
    )
}

/// Buoy: 8080 (HTTP, takes the header) → nginx with V1; 9090 (TCP, takes the header) → HAProxy
/// with V2; 8082 (HTTP, no header) → nginx with V2, checked by HTTP health checks (which must
/// send a header too: nginx closes a connection without one).
fn buoy() -> String {
    let pool = |name: &str, port: u16, v: &str| {
        let checks = if port == 7003 {
            "  healthCheck: {active: {protocol: HTTP, interval: 200ms, timeout: 200ms, unhealthyThreshold: 1}}\n"
        } else {
            ""
        };
        format!(
            "---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: {name}}}\nspec:\n  proxyProtocol: {v}\n{checks}  backends:\n    - {{address: \"{BACKEND}\", port: {port}}}\n"
        )
    };
    format!(
        "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {{name: t}}\nspec:\n  addresses: [{BUOY}]\n  listeners:\n{}{}{}{}{}{}",
        "    - {name: http, port: 8080, upstreamPool: nginx-v1, proxyProtocol: true, accessLog: {format: JSON}}\n",
        "    - {name: tcp, port: 9090, protocol: TCP, upstreamPool: haproxy-v2, proxyProtocol: true, accessLog: {format: JSON}}\n",
        "    - {name: plain, port: 8082, upstreamPool: nginx-v2}\n",
        pool("nginx-v1", 7001, "V1"),
        pool("haproxy-v2", 7002, "V2"),
        pool("nginx-v2", 7003, "V2"),
    )
}

/// A GET from host namespace `ns` to `to`: the status and the body.
fn get_from(ns: &str, to: &str) -> (u16, String) {
    let to: SocketAddr = to.parse().unwrap();
    let reply = in_netns(ns, move || request(to, "GET", "/", &[], ""))
        .unwrap()
        .join()
        .unwrap()
        .unwrap_or_else(|| panic!("no reply from {to}"));
    (reply.status, reply.body)
}

/// Sends `bytes` from `ns` to `to` without a PROXY header: what comes back before the close.
fn headerless(ns: &str, to: &str, bytes: &'static [u8]) -> Vec<u8> {
    let to: SocketAddr = to.parse().unwrap();
    in_netns(ns, move || {
        let mut c = TcpStream::connect_timeout(&to, Duration::from_secs(2)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(bytes).unwrap();
        let mut got = Vec::new();
        // A reset is a close too.
        let _ = c.read_to_end(&mut got);
        got
    })
    .unwrap()
    .join()
    .unwrap()
}

#[test]
fn client_addresses_cross_haproxy_buoy_and_the_backends() {
    let mut lab = Lab::new(&["client", "lb", "buoy", "backend"]).unwrap();
    let dir = lab.dir().to_path_buf();
    for (name, text) in [
        ("front.cfg", front_haproxy()),
        ("back.cfg", back_haproxy()),
        ("buoy.yaml", buoy()),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let front = dir.join("front.cfg").display().to_string();
    let back = dir.join("back.cfg").display().to_string();
    let config = dir.join("buoy.yaml").display().to_string();
    let haproxy_front = lab.spawn("lb", "haproxy", &["-db", "-f", &front]).unwrap();
    let haproxy_back = lab
        .spawn("backend", "haproxy", &["-db", "-f", &back])
        .unwrap();
    let checked = dir.join("nginx").join("checked.log");
    let nginx_conf = backend_nginx(&checked.display().to_string());
    nginx::spawn(
        &mut lab,
        "backend",
        &dir.join("nginx"),
        "pp",
        "1",
        &nginx_conf,
    )
    .unwrap();
    let agent = lab
        .spawn(
            "buoy",
            AGENT,
            &["proxy", "--threads", "2", "--config", &config],
        )
        .unwrap();
    assert!(
        lab.proc(agent)
            .wait_for_line("proxy ready", Duration::from_secs(10))
            .is_some(),
        "{}",
        lab.logs()
    );
    // HAProxy and nginx listen once they answer.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let client = lab.host("client").ns.clone();
    while std::time::Instant::now() < deadline {
        let to: SocketAddr = format!("{LB}:8001").parse().unwrap();
        let up = in_netns(&client, move || request(to, "GET", "/", &[], ""))
            .unwrap()
            .join()
            .unwrap();
        if up.is_some_and(|r| r.status == 200) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // HAProxy send-proxy (V1) → Buoy → V1 → nginx; send-proxy-v2 → Buoy → V1 → nginx.
    for front in ["8001", "8002"] {
        let (status, body) = get_from(&client, &format!("{LB}:{front}"));
        assert_eq!((status, body.trim()), (200, CLIENT), "{}", lab.logs());
    }
    // HAProxy send-proxy-v2 → Buoy's TCP listener → V2 → HAProxy accept-proxy.
    let (status, body) = get_from(&client, &format!("{LB}:8003"));
    assert_eq!((status, body.trim()), (200, CLIENT), "{}", lab.logs());
    // Health checks ran (with a header: nginx logged them) and kept the backend in.
    std::thread::sleep(Duration::from_millis(800));
    let log = std::fs::read_to_string(&checked).unwrap_or_default();
    assert!(
        log.lines().any(|l| l.ends_with(" buoy-health-check")),
        "{log}\n{}",
        lab.logs()
    );
    // Straight to Buoy (no header taken) → V2 → nginx, from two hosts one after the other: the
    // second is not handed a backend connection that carries the first one's header.
    let lb = lab.host("lb").ns.clone();
    for (ns, me) in [(&client, CLIENT), (&lb, LB), (&client, CLIENT)] {
        let (status, body) = get_from(ns, &format!("{BUOY}:8082"));
        assert_eq!((status, body.trim()), (200, me), "{}", lab.logs());
    }

    // Without a header, listeners that take one close the connection unanswered.
    assert_eq!(
        headerless(
            &client,
            "10.77.0.3:8080",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ),
        b""
    );
    assert_eq!(
        headerless(
            &client,
            "10.77.0.3:9090",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ),
        b""
    );

    // The access log names the client of the header, not HAProxy.
    let logged: Vec<serde_json::Value> = lab
        .proc(agent)
        .output()
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Every line is of a connection that came through HAProxy (8082 keeps no log, and the
    // connections without a header were closed before anything was proxied or logged): each
    // names the client of the header, never HAProxy's address.
    assert!(logged.len() >= 3, "{logged:#?}");
    for v in &logged {
        let client: SocketAddr = v["client"].as_str().unwrap().parse().unwrap();
        assert_eq!(client.ip().to_string(), CLIENT, "{v}");
    }
    assert!(
        logged
            .iter()
            .any(|v| v["protocol"] == "TCP" && v["status"] == 200),
        "{logged:#?}"
    );
    assert!(lab.proc(haproxy_front).running() && lab.proc(haproxy_back).running());
}
