//! Memory per client connection: what a proxy holds for a connection that is open and idle (no
//! byte sent yet), one that is slow (a request header started and never finished: slowloris),
//! and one idle between keep-alive requests. Buoy (`buoy-agent proxy`, one worker thread)
//! against nginx (one worker) and HAProxy, in the same run on the same machine, each measured
//! as the growth of its resident memory with N such connections, divided by N. Needs root
//! (network namespaces). Sizes the chart's default memory limit (docs/benchmarks.md).
//!
//! cargo bench -p buoy-agent --bench connections [-- --connections 2000]
#![allow(clippy::unwrap_used)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    thread,
    time::Duration,
};

use buoy_tests::{
    netlab::{Lab, in_netns},
    process::rss_mb,
};

const AGENT: &str = env!("CARGO_BIN_EXE_buoy-agent");

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Idle,
    Slow,
    KeepAlive,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Idle => "idle (nothing sent)",
            Kind::Slow => "slow (half a header: slowloris)",
            Kind::KeepAlive => "keep-alive (idle after one request)",
        }
    }
}

/// Opens `n` connections of `kind` from the client namespace and keeps them until the returned
/// sockets are dropped.
fn open(ns: &str, target: SocketAddr, n: usize, kind: Kind) -> Vec<TcpStream> {
    in_netns(ns, move || {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let Ok(mut c) = TcpStream::connect(target) else {
                continue;
            };
            match kind {
                Kind::Idle => {}
                Kind::Slow => {
                    let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: ");
                }
                Kind::KeepAlive => {
                    let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: ka\r\n\r\n");
                    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = [0u8; 4096];
                    // The answer ends with the backend's body ("ok\n").
                    let mut got = Vec::new();
                    while let Ok(k) = c.read(&mut buf) {
                        if k == 0 {
                            break;
                        }
                        got.extend_from_slice(&buf[..k]);
                        if got.ends_with(b"ok\n") {
                            break;
                        }
                    }
                }
            }
            out.push(c);
        }
        out
    })
    .unwrap()
    .join()
    .unwrap()
}

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

fn main() {
    let n: usize = buoy_tests::bench_flag("--connections", 2000);
    raise_open_files();
    let mut lab = Lab::new(&["proxy", "client"]).unwrap();
    let dir = lab.dir().to_path_buf();
    let d = dir.display().to_string();
    let host = lab.host("proxy").ipv4;
    let client = lab.host("client").ns.clone();
    // Open-files limits of the proxies' namespace processes are inherited from here.
    // The backend: nginx answering `ok` from loopback.
    let backend = buoy_tests::nginx::spawn(
        &mut lab,
        "proxy",
        &dir.join("backend"),
        "backend",
        "1",
        "events { worker_connections 1024; }\nhttp { access_log off; keepalive_requests 100000; server { listen 127.0.0.1:80; location / { return 200 \"ok\\n\"; } } }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("haproxy.cfg"),
        format!(
            "global\n  maxconn 8000\n  nbthread 1\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 65s\n  timeout server 60s\n  timeout http-request 60s\n  timeout http-keep-alive 65s\nfrontend f\n  bind {host}:8082\n  default_backend b\nbackend b\n  http-reuse always\n  server s 127.0.0.1:80\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("buoy.yaml"),
        format!(
            "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {{name: bench}}\nspec:\n  addresses: [{host}]\n  listeners:\n    - {{name: web, port: 8080, protocol: HTTP, upstreamPool: app, client: {{maxConnections: 12000}}}}\n---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: app}}\nspec:\n  backends: [{{address: 127.0.0.1, port: 80}}]\n"
        ),
    )
    .unwrap();
    let _ = backend;
    let kinds = [Kind::Idle, Kind::Slow, Kind::KeepAlive];
    let names = ["Buoy", "nginx", "HAProxy"];
    let mut table: Vec<(&str, Vec<f64>)> = names.iter().map(|n| (*n, Vec::new())).collect();
    // A fresh process per proxy and kind: an allocator keeps what it freed, so a second batch
    // in the same process would cost nothing.
    for kind in kinds {
        for (p, name) in names.iter().enumerate() {
            let (index, port) = match *name {
                "Buoy" => (
                    lab.spawn(
                        "proxy",
                        AGENT,
                        &["proxy", "--threads", "1", "--config", &format!("{d}/buoy.yaml")],
                    )
                    .unwrap(),
                    8080u16,
                ),
                "nginx" => (
                    buoy_tests::nginx::spawn(
                        &mut lab,
                        "proxy",
                        &dir,
                        "nginx",
                        "1",
                        &format!(
                            "worker_rlimit_nofile 20000;\nevents {{ worker_connections 12000; }}\nhttp {{\n  access_log off;\n  client_header_timeout 60s;\n  keepalive_timeout 65s;\n  upstream app {{ server 127.0.0.1:80; keepalive 64; }}\n  server {{ listen {host}:8081; location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}\n}}\n"
                        ),
                    )
                    .unwrap(),
                    8081,
                ),
                _ => (
                    lab.spawn("proxy", "haproxy", &["-db", "-f", &format!("{d}/haproxy.cfg")])
                        .unwrap(),
                    8082,
                ),
            };
            thread::sleep(Duration::from_secs(1));
            let target = SocketAddr::new(host.into(), port);
            // Warm up: the first requests allocate pools and buffers that then stay.
            drop(open(&client, target, 50, Kind::KeepAlive));
            thread::sleep(Duration::from_millis(500));
            let pid = lab.proc(index).pid();
            let before = rss_mb(pid);
            let conns = open(&client, target, n, kind);
            thread::sleep(Duration::from_secs(1));
            let after = rss_mb(pid);
            assert!(
                conns.len() * 10 >= n * 9,
                "{name}: only {} of {n} connections\n{}",
                conns.len(),
                lab.logs()
            );
            table[p]
                .1
                .push((after - before) * 1024.0 / conns.len() as f64);
            drop(conns);
            // SIGTERM: nginx's master stops its workers (a SIGKILL would leave them bound).
            lab.proc(index).signal(libc::SIGTERM);
            let _ = lab.proc(index).wait_exit(Duration::from_secs(15));
            thread::sleep(Duration::from_millis(300));
        }
    }
    println!("Memory per client connection ({n} connections of each kind, one worker each)");
    println!(
        "| proxy | {} | {} | {} | slow × nginx |",
        kinds[0].name(),
        kinds[1].name(),
        kinds[2].name()
    );
    println!("|---|---|---|---|---|");
    let nginx_slow = table
        .iter()
        .find(|(n, _)| *n == "nginx")
        .map_or(1.0, |(_, p)| p[1].max(0.001));
    for (name, per) in &table {
        println!(
            "| {name} | {:.1} KiB | {:.1} KiB | {:.1} KiB | {:.2} |",
            per[0],
            per[1],
            per[2],
            per[1] / nginx_slow
        );
    }
    let buoy_slow = table[0].1[1];
    println!(
        "A listener at Buoy's default limit of 4096 connections, all slow: {:.0} MiB.",
        buoy_slow * 4096.0 / 1024.0
    );
}
