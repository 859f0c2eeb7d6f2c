//! BGP mode benchmark, in network namespaces with FRR as the router ("tor") and beside each
//! node's agent, as in `tests/bgp.rs`:
//!
//!     cargo bench -p buoy-agent --bench bgp [-- --runs N] [--routes N]
//!
//! Prints (1) convergence after a node failure: a client behind the tor opens a connection to
//! an ECMP VIP of two nodes every 10 ms, one node's link is cut, and the time from the cut to
//! the last failed connection is the outage, with BFD (100 ms × 3) and without (keepalive 1 s, hold time 3 s,
//! FRR's shortest); (2) route churn: `--routes` (default 1,000) announce-only ECMP VirtualIPs
//! added to one node's files, the time until the tor has every route and from their removal
//! until it has none, with the CPU the agent and the node's FRR (zebra, bgpd) spent.
//! A command, not a test.

#![allow(clippy::unwrap_used)]

use std::{
    fmt::Write as _,
    net::SocketAddr,
    time::{Duration, Instant},
};

use buoy_tests::{frr, netlab::Lab, process::cpu_seconds};
use support::median;

mod support;

const VIP: &str = "10.99.0.10";

/// The tor's configuration for nodes 10.77.0.2 and .3, with BFD or without.
fn tor_config(bfd: bool) -> String {
    let mut c = String::from(
        "bfd\n profile fast\n  receive-interval 100\n  transmit-interval 100\n  detect-multiplier 3\n exit\nexit\nrouter bgp 64500\n bgp router-id 10.77.0.1\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n",
    );
    for n in ["10.77.0.2", "10.77.0.3"] {
        let _ = writeln!(c, " neighbor {n} remote-as 64512\n neighbor {n} timers 1 3");
        if bfd {
            let _ = writeln!(c, " neighbor {n} bfd profile fast");
        }
    }
    c.push_str(" address-family ipv4 unicast\n  maximum-paths 8\n  neighbor 10.77.0.2 activate\n  neighbor 10.77.0.3 activate\n exit-address-family\nexit\n");
    c
}

/// The nodes' files: a BGP pool, the tor as a peer (BFD or not), and `vips`.
fn node_config(bfd: bool, vips: &str) -> String {
    let bfd = if bfd {
        "  bfd: {receiveInterval: 100ms, transmitInterval: 100ms, detectMultiplier: 3}\n"
    } else {
        ""
    };
    format!(
        "apiVersion: buoy.io/v1alpha1\nkind: AddressPool\nmetadata: {{name: routed}}\nspec:\n  addresses: [10.96.0.0/12]\n  namespaces: [default]\n  announcement: BGP\n---\napiVersion: buoy.io/v1alpha1\nkind: BGPPeer\nmetadata: {{name: tor}}\nspec:\n  peerAddress: 10.77.0.1\n  peerASN: 64500\n  myASN: 64512\n  holdTime: 3s\n  keepaliveTime: 1s\n{bfd}{vips}"
    )
}

/// One ECMP VirtualIP with an HTTP listener to the node's own backend.
const WEB: &str = "---\napiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {name: web, namespace: default}\nspec:\n  addressPool: routed\n  addresses: [10.99.0.10]\n  listeners:\n    - {name: http, port: 80, protocol: HTTP, upstreamPool: local}\n---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {name: local, namespace: default}\nspec:\n  backends: [{address: 127.0.0.1, port: 8081}]\n";

/// The tor (with `bfd`), FRR on `nodes`, and on each node its agent from `config` (the
/// agents' process indices, and the node FRRs).
fn lab(nodes: &[&str], bfd: bool, config: &str) -> (Lab, frr::Frr, Vec<(usize, frr::Frr)>) {
    let mut lab = Lab::new(&["tor", "n1", "n2", "client"]).unwrap();
    frr::route_through(&lab, "tor", "client", "10.96.0.0/12").unwrap();
    let tor = frr::Frr::start(&mut lab, "tor").unwrap();
    tor.configure(&tor_config(bfd)).unwrap();
    let file = lab.dir().join("buoy.yaml");
    std::fs::write(&file, config).unwrap();
    let agents = nodes
        .iter()
        .map(|n| {
            let (frr, agent, _) = frr::node(&mut lab, n, &file, &[]).unwrap();
            (agent, frr)
        })
        .collect();
    (lab, tor, agents)
}

fn wait(within: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if check() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// How many routes the tor's BGP table has from its neighbors.
fn tor_routes(tor: &frr::Frr) -> u64 {
    tor.json("show bgp ipv4 unicast summary json")
        .ok()
        .and_then(|v| {
            v.pointer("/peers")
                .and_then(|p| p.as_object())
                .map(|peers| {
                    peers
                        .values()
                        .filter_map(|p| p.get("pfxRcd").and_then(|n| n.as_u64()))
                        .sum()
                })
        })
        .unwrap_or(0)
}

/// One link cut of n1 with both nodes announcing `VIP`: how long after the cut the client's
/// last connection failed (those hashed to n2 succeed throughout).
fn convergence(bfd: bool) -> Duration {
    let (lab, tor, _agents) = lab(&["n1", "n2"], bfd, &node_config(bfd, WEB));
    let both = ["10.77.0.2".to_string(), "10.77.0.3".to_string()];
    wait(Duration::from_secs(60), || {
        frr::kernel_nexthops(&lab, "tor", VIP) == both
    })
    .expect("both nodes announced");
    if bfd {
        wait(Duration::from_secs(20), || tor.bfd_up("10.77.0.2")).expect("BFD up with n1");
    }
    let probe = buoy_tests::probe::Probe::start_http(
        &lab.host("client").ns,
        SocketAddr::new(VIP.parse().unwrap(), 80),
        Duration::from_millis(10),
        Duration::from_secs(30),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let cut_at = probe.started().elapsed();
    lab.cut("n1").unwrap();
    wait(Duration::from_secs(20), || {
        frr::kernel_nexthops(&lab, "tor", VIP) == ["10.77.0.3"]
    })
    .expect("n1's route gone");
    std::thread::sleep(Duration::from_millis(500));
    buoy_tests::probe::failing_for_after(&probe.finish(), cut_at)
}

fn main() {
    let runs: usize = buoy_tests::bench_flag("--runs", 3).max(1);
    let routes: usize = buoy_tests::bench_flag("--routes", 1000).max(1);
    println!(
        "BGP convergence after a node's link is cut (two nodes announce one VIP by ECMP through an FRR router; a client behind it connects every 10 ms, and the connections hashed to the cut node fail until the router drops its path; median of {runs} runs)"
    );
    println!("| failure detection | failing after the cut (median) | runs |");
    println!("|---|---|---|");
    for (bfd, what) in [
        (true, "BFD 100 ms × 3"),
        (false, "BGP hold time 3 s (keepalive 1 s), no BFD"),
    ] {
        let outages: Vec<f64> = (0..runs)
            .map(|_| convergence(bfd).as_secs_f64() * 1000.0)
            .collect();
        let list = outages
            .iter()
            .map(|o| format!("{o:.0}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "| {what} | {:.0} ms | {list} ms |",
            median(outages.iter().copied())
        );
    }

    println!();
    println!(
        "BGP route churn: {routes} announce-only ECMP VirtualIPs added to one node's files (its session up), until the router has them all, then removed, until it has none"
    );
    let mut vips = String::new();
    for i in 0..routes {
        let _ = write!(
            vips,
            "---\napiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {{name: v{i}, namespace: default}}\nspec:\n  addressPool: routed\n  addresses: [10.100.{}.{}]\n",
            i / 250,
            i % 250 + 1
        );
    }
    let (mut lab, tor, agents) = lab(&["n1"], true, &node_config(true, ""));
    let (agent, node_frr) = &agents[0];
    let pids = [*agent, node_frr.zebra, node_frr.bgpd].map(|i| lab.proc(i).pid());
    // (agent, FRR) CPU seconds so far.
    let cpu = || -> (f64, f64) {
        let each: Vec<f64> = pids
            .iter()
            .map(|p| {
                let (u, s) = cpu_seconds(*p);
                u + s
            })
            .collect();
        (each[0], each[1] + each[2])
    };
    wait(Duration::from_secs(60), || {
        tor.json("show bgp ipv4 unicast summary json")
            .ok()
            .is_some_and(|v| v.to_string().contains("\"Established\""))
    })
    .expect("the session up");
    println!("| step | time | agent CPU | FRR CPU (zebra + bgpd) |");
    println!("|---|---|---|---|");
    // Writes the node's files (the agent reads them again within a second) and prints how long
    // until the router has `until` routes, with the CPU spent meanwhile.
    let step = |what: &str, config: String, until: u64| {
        std::fs::write(lab.dir().join("buoy.yaml"), config).unwrap();
        let before = cpu();
        match wait(Duration::from_secs(300), || tor_routes(&tor) == until) {
            Some(t) => {
                let after = cpu();
                println!(
                    "| {what} | {:.2} s | {:.2} s | {:.2} s |",
                    t.as_secs_f64(),
                    after.0 - before.0,
                    after.1 - before.1
                );
            }
            None => println!(
                "| {what} | not within 300 s ({} routes) | | |",
                tor_routes(&tor)
            ),
        }
    };
    step(
        &format!("{routes} routes announced, from their addition to the files"),
        node_config(true, &vips),
        routes as u64,
    );
    // Every route drains for 3 s with GRACEFUL_SHUTDOWN, then goes.
    step(
        &format!("{routes} routes withdrawn, from their removal (3 s drain included)"),
        node_config(true, ""),
        0,
    );
}
