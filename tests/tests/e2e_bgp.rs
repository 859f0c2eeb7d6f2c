//! The BGP mode as a cluster runs it: the real operator, given an FRR image
//! (`--agent-frr-image`, the chart's `agent.frr`), makes the agents' DaemonSet with FRR beside
//! the agent; the test's kubelet runs each scheduled pod as its spec says (the init container
//! writing FRR's files into the shared volumes, FRR started as its image starts it, the agent
//! with the pod's arguments, all sharing the pod's volumes: `System::run_scheduled_pods`). The
//! client's namespace is the router (FRR peering with both nodes). Shows the sessions up from
//! the pods' FRR, an ECMP route to both nodes on the router, requests answered through the VIP,
//! and the status: each node's VirtualIP entry announced with its handover address, the
//! BGPPeer's nodes and its `Established` condition. Needs root and FRR.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use buoy_tests::{
    frr,
    netlab::ns_exec,
    system::{POOL, System},
};

const VIP: &str = "10.99.0.10";

/// The router's side: both lb nodes as eBGP neighbours, ECMP.
fn router(me: &str, nodes: &[String]) -> String {
    let mut out = format!(
        "router bgp 64500\n bgp router-id {me}\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n"
    );
    for n in nodes {
        out.push_str(&format!(" neighbor {n} remote-as 64512\n"));
    }
    out.push_str(" address-family ipv4 unicast\n  maximum-paths 8\n");
    for n in nodes {
        out.push_str(&format!("  neighbor {n} activate\n"));
    }
    out.push_str(" exit-address-family\nexit\n");
    out
}

fn objects(router: &str) -> String {
    format!(
        "apiVersion: buoy.io/v1alpha1
kind: AddressPool
metadata: {{name: routed}}
spec:
  addresses: [10.99.0.0/24]
  namespaces: [default]
  announcement: BGP
  nodeSelector: {{matchLabels: {{buoy.io/lb: \"true\"}}}}
---
apiVersion: buoy.io/v1alpha1
kind: BGPPeer
metadata: {{name: tor}}
spec: {{peerAddress: {router}, peerASN: 64500, myASN: 64512, holdTime: 9s, keepaliveTime: 3s}}
---
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {{name: routed, namespace: default}}
spec:
  addressPool: routed
  addresses: [{VIP}]
  listeners:
    - {{name: http, port: 80, protocol: HTTP, upstreamPool: web}}
---
{POOL}"
    )
}

#[test]
fn the_operators_frr_pods_announce_an_ecmp_vip() {
    let mut s = System::start_alone(
        &["n1", "n2"],
        &["--agent-frr-image", "quay.io/frrouting/frr:8.4.4"],
    );
    let nodes: Vec<String> = ["n1", "n2"]
        .iter()
        .map(|n| s.lab.host(n).ipv4.to_string())
        .collect();
    let me = s.lab.host("client").ipv4.to_string();
    let tor = frr::Frr::start(&mut s.lab, "client").unwrap();
    ns_exec(
        &s.lab.host("client").ns,
        &["sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"],
    )
    .unwrap();
    tor.configure(&router(&me, &nodes)).unwrap();
    s.kubectl(&["apply", "-f", "-"], Some(&objects(&me)));

    // The DaemonSet carries FRR; the pods start; both nodes' FRR peer and announce.
    let ds = s.json(&["get", "daemonsets", "-n", "buoy-system"]);
    let started = Instant::now();
    let mut want = nodes.clone();
    want.sort();
    loop {
        s.run_scheduled_pods();
        if frr::kernel_nexthops(&s.lab, "client", VIP) == want {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "an ECMP route to both nodes on the router: {:?}\n{ds}\n{}",
            frr::kernel_nexthops(&s.lab, "client", VIP),
            s.lab.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "ECMP route on the router {:?} after kubectl apply",
        started.elapsed()
    );
    let ds = s.json(&["get", "daemonsets", "-n", "buoy-system"]);
    let containers: Vec<&str> = ds["items"][0]["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(containers.contains(&"frr"), "{containers:?}");
    assert_eq!(s.started.len(), 2, "one pod per lb node");

    // Traffic through the VIP, from behind the router.
    let target = std::net::SocketAddr::new(VIP.parse().unwrap(), 80);
    let answers = buoy_tests::backend::served_by_from(&s.lab.host("client").ns, target, 20);
    assert!(
        answers.iter().all(|a| a.starts_with("web")),
        "every request answered by a backend: {answers:?}"
    );

    // Status: each node announces, with the address the other hands connections to; the peer
    // counts both sessions.
    let status =
        |kind: &str, name: &str| s.json(&["get", kind, name, "-n", "default"])["status"].clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let vip = status("virtualip", "routed");
        let peer = status("bgppeer", "tor");
        let entries: Vec<(String, String, String)> = vip["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|n| {
                (
                    n["node"].as_str().unwrap_or("").to_string(),
                    n["state"].as_str().unwrap_or("").to_string(),
                    n["address"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let announced = entries.len() == 2
            && entries.iter().all(|(node, state, address)| {
                state == "Master" && *address == s.lab.host(node).ipv4.to_string()
            });
        let established = peer["established"] == 2
            && buoy_tests::system::condition(&peer, "Established").as_deref() == Some("True");
        if announced && established {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "VirtualIP status {vip}\nBGPPeer status {peer}\n{}",
            s.lab.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(tor);
}
