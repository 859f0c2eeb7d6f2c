//! The training run of the profile-guided release build (`scripts/release`): the instrumented
//! `buoy-agent` given by `--agent`, under a short run of the benchmarks' own load, in network
//! namespaces: HTTP/1.1 through `buoy-agent proxy` to the seed's two backends (round robin) and
//! to one, HTTP/2 from clients, its TCP listener; then two `buoy-agent standalone` nodes
//! exchanging VRRP adverts every 10 ms, through a graceful handover. Every agent stops by
//! SIGTERM, so that it writes its profile where the caller's `LLVM_PROFILE_FILE` says. Exits
//! non-zero if an agent did not exit cleanly or a load did not get through.
//!
//!     pgo-train --agent PATH [--seconds N]

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use buoy_tests::netlab::{Lab, ns_exec};

/// Two backends (nginx, a small file on port 80 and `return 200` on 8000), the proxy host, the
/// client: the proxy bench's lab.
const PROXY_OBJECTS: &str = "apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {name: train}
spec:
  addresses: [10.77.0.2]
  listeners:
    - {name: two, port: 8080, protocol: HTTP, upstreamPool: two}
    - {name: one, port: 8081, protocol: HTTP, upstreamPool: one}
    - {name: raw, port: 9080, protocol: TCP, upstreamPool: one}
---
apiVersion: buoy.io/v1alpha1
kind: UpstreamPool
metadata: {name: two}
spec:
  backends:
    - {address: 10.77.0.1, port: 8000, weight: 1, maxFails: 2, failTimeout: 15s}
    - {address: 10.77.0.4, port: 8000, weight: 1, maxFails: 2, failTimeout: 15s}
  retry: {attempts: 2, retryOn: [HTTP502, HTTP504, ConnectFailure, Timeout, InvalidHeader]}
---
apiVersion: buoy.io/v1alpha1
kind: UpstreamPool
metadata: {name: one}
spec:
  backends: [{address: 10.77.0.1, port: 80}]
";

/// Two VRRP nodes with 10 ms adverts.
const VRRP_OBJECTS: &str = "apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {name: train, namespace: default}
spec:
  addresses: [10.77.0.100]
  interface: eth0
  virtualRouterID: 51
  vrrp: {advertisementInterval: 10ms}
  priorities: [{node: n1, priority: 150, sourceAddress: 10.77.0.1}, {node: n2, priority: 100, sourceAddress: 10.77.0.2}]
";

fn main() -> Result<()> {
    let agent = buoy_tests::bench_flag("--agent", String::new());
    ensure!(
        !agent.is_empty(),
        "usage: pgo-train --agent PATH [--seconds N]"
    );
    let seconds: u64 = buoy_tests::bench_flag("--seconds", 4);
    std::env::var("LLVM_PROFILE_FILE").context("LLVM_PROFILE_FILE names where profiles go")?;
    proxy_load(&agent, seconds)?;
    vrrp_adverts(&agent, seconds)?;
    eprintln!("pgo-train: done");
    Ok(())
}

fn proxy_load(agent: &str, seconds: u64) -> Result<()> {
    let mut lab = Lab::new(&["backend", "proxy", "client", "backend2"])?;
    let dir = lab.dir().to_path_buf();
    for (host, ip, name) in [
        ("backend", "10.77.0.1", "b1"),
        ("backend2", "10.77.0.4", "b2"),
    ] {
        let www = dir.join(format!("www-{name}"));
        std::fs::create_dir_all(&www)?;
        std::fs::write(www.join("index.html"), "ok\n")?;
        buoy_tests::nginx::spawn(
            &mut lab,
            host,
            &dir,
            &format!("backend-{name}"),
            "1",
            &format!(
                "events {{}}\nhttp {{ access_log off; keepalive_requests 100000; server {{ listen {ip}:80; root {}; }} server {{ listen {ip}:8000; location / {{ return 200 \"{name}\\n\"; }} }} }}\n",
                www.display()
            ),
        )?;
    }
    let config = dir.join("train.yaml");
    std::fs::write(&config, PROXY_OBJECTS)?;
    let config = config.display().to_string();
    let proxy = lab.spawn(
        "proxy",
        agent,
        &["proxy", "--threads", "1", "--config", &config],
    )?;
    let client = lab.host("client").ns.clone();
    let served = |url: &str| {
        (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            ns_exec(&client, &["curl", "-sf", "--max-time", "1", url]).is_ok()
        })
    };
    ensure!(
        served("http://10.77.0.2:8080/") && served("http://10.77.0.2:8081/"),
        "the proxy never answered\n{}",
        lab.logs()
    );
    let duration = format!("-d{seconds}s");
    for url in [
        "http://10.77.0.2:8080/",
        "http://10.77.0.2:8081/",
        "http://10.77.0.2:9080/",
    ] {
        let out = ns_exec(&client, &["wrk", "-t1", "-c64", &duration, url])?;
        ensure!(out.contains("Requests/sec"), "wrk {url}: {out}");
    }
    let out = ns_exec(
        &client,
        &[
            "h2load",
            "-t1",
            "-c8",
            "-m8",
            "-D",
            &seconds.to_string(),
            "http://10.77.0.2:8080/",
        ],
    )?;
    ensure!(out.contains("succeeded"), "h2load: {out}");
    stop(&mut lab, proxy)
}

fn vrrp_adverts(agent: &str, seconds: u64) -> Result<()> {
    let mut lab = Lab::new(&["n1", "n2"])?;
    let config = lab.dir().join("vrrp.yaml");
    std::fs::write(&config, VRRP_OBJECTS)?;
    let config = config.display().to_string();
    let mut nodes = Vec::new();
    for node in ["n1", "n2"] {
        nodes.push(lab.spawn(
            node,
            agent,
            &[
                "standalone",
                "--config",
                &config,
                "--node-name",
                node,
                "--threads",
                "1",
                "--metrics-address",
                "127.0.0.1:9901",
            ],
        )?);
    }
    std::thread::sleep(Duration::from_secs(seconds));
    // n1 hands over to n2 (priority 0 advert), n2 then runs alone.
    stop(&mut lab, nodes[0])?;
    std::thread::sleep(Duration::from_secs(1));
    stop(&mut lab, nodes[1])
}

/// SIGTERM, and a clean exit: the profile is written at exit.
fn stop(lab: &mut Lab, index: usize) -> Result<()> {
    lab.proc(index).signal(libc::SIGTERM);
    match lab.proc(index).wait_exit(Duration::from_secs(20)) {
        Some(0) => Ok(()),
        code => bail!("an agent exited with {code:?} instead of 0\n{}", lab.logs()),
    }
}
