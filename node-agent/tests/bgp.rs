//! The BGP mode end to end, in network namespaces: a "tor" router runs FRR (ECMP over up to 8
//! paths, BFD at 100 ms × 3, RFC 8326's policy for GRACEFUL_SHUTDOWN: local preference 0), two
//! nodes each run FRR and `buoy-agent standalone` from the same files (an AddressPool with
//! `announcement: BGP`, a BGPPeer for the tor, a VirtualIP with an HTTP listener to a backend on
//! the node itself), and a client reaches the VIP through the tor. Shows the sessions up, an
//! ECMP route to both nodes in the tor's kernel, requests answered by both nodes, an
//! `ActiveStandby` VirtualIP announced by its VRRP master only (and by the other node after a
//! failover), a node's link cut and traffic recovering within a second (BFD), a node whose
//! backend dies withdrawing its route (and announcing it again when it is back), and a node
//! stopped under load failing no request: GRACEFUL_SHUTDOWN before it withdraws, its
//! connections handed back to it by the other node, its address released after them. In cluster
//! mode (`buoy-agent run` and `buoy-operator run` against the API test server), each node
//! reports its side of every BGPPeer on the peer's status, with an Event when the session comes
//! up, and a peer with a wrong password is reported (its entry, its condition) without touching
//! the other. Needs root.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use buoy_tests::{
    frr,
    kubectl::Kubectl,
    netlab::{Lab, ip, ns_exec},
    process::workspace_bin,
};

const VIP: &str = "10.99.0.10";
/// The `ActiveStandby` VirtualIP's address.
const STANDBY: &str = "10.99.0.30";
const NODES: [&str; 2] = ["n1", "n2"];

/// The tor (10.77.0.1): both nodes as eBGP neighbors with BFD, ECMP, and routes with
/// GRACEFUL_SHUTDOWN taken at local preference 0, as RFC 8326 asks of receivers.
const TOR: &str = "bfd
 profile fast
  receive-interval 100
  transmit-interval 100
  detect-multiplier 3
 exit
exit
bgp community-list standard gshut seq 5 permit graceful-shutdown
route-map from-nodes permit 10
 match community gshut
 set local-preference 0
exit
route-map from-nodes permit 20
exit
router bgp 64500
 bgp router-id 10.77.0.1
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor 10.77.0.2 remote-as 64512
 neighbor 10.77.0.2 bfd profile fast
 neighbor 10.77.0.3 remote-as 64512
 neighbor 10.77.0.3 bfd profile fast
 address-family ipv4 unicast
  maximum-paths 8
  neighbor 10.77.0.2 activate
  neighbor 10.77.0.2 route-map from-nodes in
  neighbor 10.77.0.3 activate
  neighbor 10.77.0.3 route-map from-nodes in
 exit-address-family
exit
";

/// Every node's files: the pool, the peer, the VirtualIP and its pool (the node's own backend).
const CONFIG: &str = "apiVersion: buoy.io/v1alpha1
kind: AddressPool
metadata: {name: routed}
spec:
  addresses: [10.99.0.0/24]
  namespaces: [default]
  announcement: BGP
---
apiVersion: buoy.io/v1alpha1
kind: BGPPeer
metadata: {name: tor}
spec:
  peerAddress: 10.77.0.1
  peerASN: 64500
  myASN: 64512
  holdTime: 9s
  keepaliveTime: 3s
  bfd: {receiveInterval: 100ms, transmitInterval: 100ms, detectMultiplier: 3}
---
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {name: web, namespace: default}
spec:
  addressPool: routed
  addresses: [10.99.0.10]
  bgp: {handoverPeers: [10.77.0.2, 10.77.0.3]}
  listeners:
    - {name: http, port: 80, protocol: HTTP, upstreamPool: local}
---
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {name: standby, namespace: default}
spec:
  addressPool: routed
  addresses: [10.99.0.30]
  bgp: {mode: ActiveStandby}
  interface: eth0
  virtualRouterID: 30
  vrrp: {advertisementInterval: 100ms}
  priorities: [{node: n1, priority: 150}, {node: n2, priority: 100}]
  listeners:
    - {name: http, port: 80, protocol: HTTP, upstreamPool: local}
---
apiVersion: buoy.io/v1alpha1
kind: UpstreamPool
metadata: {name: local, namespace: default}
spec:
  backends: [{address: 127.0.0.1, port: 8081}]
  healthCheck: {active: {protocol: HTTP, path: /, interval: 300ms, timeout: 300ms, unhealthyThreshold: 1, healthyThreshold: 1}}
";

struct Setup {
    tor: frr::Frr,
    /// Each node's FRR, its agent's and its backend's process index.
    nodes: Vec<(frr::Frr, usize, usize)>,
    lab: Lab,
}

fn setup() -> Setup {
    let mut lab = Lab::new(&["tor", "n1", "n2", "client"]).unwrap();
    frr::route_through(&lab, "tor", "client", "10.99.0.0/24").unwrap();
    let tor = frr::Frr::start(&mut lab, "tor").unwrap();
    tor.configure(TOR).unwrap();
    let config = lab.dir().join("buoy.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let nodes = NODES
        .iter()
        .map(|n| frr::node(&mut lab, n, &config, &["--bgp-drain", "2s"]).unwrap())
        .collect();
    Setup { tor, nodes, lab }
}

/// Polls `check` every 100 ms for up to `within`.
fn poll(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `count` requests from the client, each a new connection: the answers (node names; `failed`
/// for a request without one).
fn requests(lab: &Lab, count: usize) -> Vec<String> {
    (0..count)
        .map(|_| {
            ns_exec(
                &lab.host("client").ns,
                &["curl", "-s", "--max-time", "2", &format!("http://{VIP}/")],
            )
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "failed".into())
        })
        .collect()
}

fn established(tor: &frr::Frr) -> usize {
    let summary = tor.json("show bgp ipv4 unicast summary json").unwrap();
    summary
        .pointer("/peers")
        .and_then(|p| p.as_object())
        .map_or(0, |peers| {
            peers
                .values()
                .filter(|p| p.get("state").and_then(|s| s.as_str()) == Some("Established"))
                .count()
        })
}

fn node_has_vip(lab: &Lab, node: &str) -> bool {
    ip(&["-n", &lab.host(node).ns, "-4", "addr", "show", "dev", "lo"])
        .unwrap()
        .contains(&format!("{VIP}/32"))
}

#[test]
fn nodes_announce_their_vip_by_bgp_withdraw_it_when_unhealthy_and_drain_on_stop() {
    let mut s = setup();
    let both = vec!["10.77.0.2".to_string(), "10.77.0.3".to_string()];
    assert!(
        poll(Duration::from_secs(20), || established(&s.tor) == 2),
        "both sessions up\n{}",
        s.lab.logs()
    );
    assert!(
        poll(Duration::from_secs(10), || frr::kernel_nexthops(
            &s.lab, "tor", VIP
        ) == both),
        "an ECMP route to both nodes in the tor's kernel: {:?}\n{}",
        frr::kernel_nexthops(&s.lab, "tor", VIP),
        s.lab.logs()
    );
    assert!(
        NODES.iter().all(|n| node_has_vip(&s.lab, n)),
        "the VIP on each node's loopback"
    );
    // The ActiveStandby VirtualIP: only its VRRP master (n1, priority 150) announces it.
    let standby = || frr::kernel_nexthops(&s.lab, "tor", STANDBY);
    assert!(
        poll(Duration::from_secs(10), || standby() == ["10.77.0.2"]),
        "ActiveStandby: the master alone: {:?}\n{}",
        standby(),
        s.lab.logs()
    );
    let answers = requests(&s.lab, 40);
    let by: BTreeSet<&str> = answers.iter().map(String::as_str).collect();
    assert_eq!(
        by,
        BTreeSet::from(["n1", "n2"]),
        "every node serves, none fails: {answers:?}"
    );

    // n1's link is cut: the tor's BFD (100 ms × 3) takes its session and route down, and the
    // client's new connections reach n2 within a second.
    assert!(
        poll(Duration::from_secs(10), || s.tor.bfd_up("10.77.0.2")),
        "BFD up with n1 before its link is cut"
    );
    let probe = buoy_tests::probe::Probe::start_http(
        &s.lab.host("client").ns,
        std::net::SocketAddr::new(VIP.parse().unwrap(), 80),
        Duration::from_millis(10),
        Duration::from_secs(20),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let cut_at = probe.started().elapsed();
    s.lab.cut("n1").unwrap();
    assert!(
        poll(Duration::from_secs(5), || frr::kernel_nexthops(
            &s.lab, "tor", VIP
        ) == ["10.77.0.3"]),
        "n1's route gone with its link: {:?}",
        frr::kernel_nexthops(&s.lab, "tor", VIP)
    );
    std::thread::sleep(Duration::from_secs(1));
    let samples = probe.finish();
    let report = buoy_tests::probe::report(&samples);
    let failing = buoy_tests::probe::failing_for_after(&samples, cut_at);
    assert!(
        poll(Duration::from_secs(5), || standby() == ["10.77.0.3"]),
        "ActiveStandby: n2 takes over VRRP and announces: {:?}",
        standby()
    );
    eprintln!(
        "BGP link cut with BFD 100 ms x 3: the last probe failed {} ms after the cut, {} of {} probes failed",
        failing.as_millis(),
        report.failed,
        report.total
    );
    assert!(
        report.failed > 0 && failing < Duration::from_secs(1),
        "probes to n1 fail, and every probe succeeds again within 1 s of the cut: {failing:?}, {report:?}"
    );
    s.lab.restore("n1").unwrap();
    assert!(
        poll(Duration::from_secs(40), || frr::kernel_nexthops(
            &s.lab, "tor", VIP
        ) == both),
        "n1 back in the ECMP route once its link is: {:?}\n{}",
        frr::kernel_nexthops(&s.lab, "tor", VIP),
        s.lab.logs()
    );
    assert!(
        poll(Duration::from_secs(10), || standby() == ["10.77.0.2"]),
        "ActiveStandby: n1 preempts and announces again, n2 withdraws: {:?}",
        standby()
    );

    // n2's backend dies: n2 can no longer serve and withdraws; every request goes to n1.
    let backend = s.nodes[1].2;
    s.lab.proc(backend).signal(libc::SIGTERM);
    assert!(
        poll(Duration::from_secs(10), || frr::kernel_nexthops(
            &s.lab, "tor", VIP
        ) == ["10.77.0.2"]),
        "n2's route withdrawn: {:?}\n{}",
        frr::kernel_nexthops(&s.lab, "tor", VIP),
        s.lab.logs()
    );
    assert_eq!(established(&s.tor), 2, "the session itself stays up");
    let answers = requests(&s.lab, 20);
    assert!(answers.iter().all(|a| a == "n1"), "{answers:?}");

    // n2's backend is back: n2 announces again.
    assert_eq!(
        s.lab.proc(backend).wait_exit(Duration::from_secs(5)),
        Some(0)
    );
    frr::backend(&mut s.lab, "n2").unwrap();
    assert!(
        poll(Duration::from_secs(10), || frr::kernel_nexthops(
            &s.lab, "tor", VIP
        ) == both),
        "n2 announces again once its backend is back: {:?}\n{}",
        frr::kernel_nexthops(&s.lab, "tor", VIP),
        s.lab.logs()
    );

    // n1's agent stops under load: new connections every 10 ms, and keep-alive clients whose
    // large answers are in flight when the tor rehashes them. GRACEFUL_SHUTDOWN first (the tor
    // takes the path at local preference 0 and sends every flow to n2, which hands n1's
    // connections back to n1), then the withdrawal, then the address goes: no request fails.
    let target = std::net::SocketAddr::new(VIP.parse().unwrap(), 80);
    let client = s.lab.host("client").ns.clone();
    let probe = buoy_tests::probe::Probe::start_http(
        &client,
        target,
        Duration::from_millis(10),
        Duration::from_secs(30),
    )
    .unwrap();
    let streams = buoy_tests::probe::KeepAliveProbe::start(
        &client,
        target,
        &buoy_tests::probe::KeepAliveLoad {
            connections: 12,
            path: "/big".into(),
            pause: Duration::from_millis(20),
            chunk: 4096,
            read_every: Duration::from_millis(5),
            max: Duration::from_secs(30),
        },
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let agent = s.nodes[0].1;
    s.lab.proc(agent).signal(libc::SIGTERM);
    assert!(
        poll(Duration::from_secs(5), || s
            .tor
            .communities(VIP)
            .is_some_and(|c| c.iter().any(|c| c == "graceful-shutdown"))),
        "the route announced with GRACEFUL_SHUTDOWN before it goes\n{}",
        s.lab.logs()
    );
    assert!(
        poll(Duration::from_secs(10), || s
            .tor
            .communities(VIP)
            .is_some_and(|c| c.is_empty())),
        "then withdrawn (n2's path alone left): {:?}",
        s.tor.communities(VIP)
    );
    assert_eq!(
        frr::kernel_nexthops(&s.lab, "tor", VIP),
        ["10.77.0.3"],
        "the tor forwards to n2 alone"
    );
    assert_eq!(
        s.lab.proc(agent).wait_exit(Duration::from_secs(20)),
        Some(0),
        "the agent exits cleanly\n{}",
        s.lab.logs()
    );
    assert!(!node_has_vip(&s.lab, "n1"), "and the address released");
    std::thread::sleep(Duration::from_millis(500));
    let (news, kept) = (probe.finish(), streams.finish());

    let (new_report, kept_report) = (
        buoy_tests::probe::report(&news),
        buoy_tests::probe::report(&kept),
    );
    let served = |samples: &[buoy_tests::probe::Sample]| -> BTreeSet<String> {
        samples.iter().filter_map(|s| s.served_by.clone()).collect()
    };
    eprintln!(
        "SIGTERM of an ECMP node under load: {} of {} new-connection requests and {} of {} \
         keep-alive requests of 256 KiB failed",
        new_report.failed, new_report.total, kept_report.failed, kept_report.total
    );
    assert_eq!(
        served(&kept),
        BTreeSet::from(["n1".to_string(), "n2".to_string()]),
        "the keep-alive clients were spread over both nodes"
    );
    assert!(
        new_report.failed == 0 && kept_report.failed == 0,
        "a node's graceful stop fails no request: {new_report:?} {kept_report:?}\n{}",
        s.lab.logs()
    );
}

/// The cluster test's objects: a router that peers with n1 (`tor-a`, 10.77.0.1) and one whose
/// password n1 gets wrong (`tor-b`, 10.77.0.2), a BGP pool and an announce-only VirtualIP.
const CLUSTER_OBJECTS: &str = "apiVersion: v1
kind: Namespace
metadata: {name: buoy-system}
---
apiVersion: v1
kind: Node
metadata: {name: n1}
---
apiVersion: v1
kind: Secret
metadata: {name: tor-b-password, namespace: default}
stringData: {password: not-the-routers}
---
apiVersion: buoy.io/v1alpha1
kind: AddressPool
metadata: {name: routed}
spec:
  addresses: [10.99.0.0/24]
  namespaces: [default]
  announcement: BGP
---
apiVersion: buoy.io/v1alpha1
kind: BGPPeer
metadata: {name: tor-a}
spec: {peerAddress: 10.77.0.1, peerASN: 64500, myASN: 64512, holdTime: 9s, keepaliveTime: 3s}
---
apiVersion: buoy.io/v1alpha1
kind: BGPPeer
metadata: {name: tor-b}
spec:
  peerAddress: 10.77.0.2
  peerASN: 64500
  myASN: 64512
  holdTime: 9s
  keepaliveTime: 3s
  passwordSecretRef: {name: tor-b-password, namespace: default}
---
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {name: announced, namespace: default}
spec:
  addressPool: routed
  addresses: [10.99.0.20]
";

/// A router for n1 (10.77.0.3), with `password` when given.
fn router(id: &str, password: Option<&str>) -> String {
    let password = password.map_or(String::new(), |p| {
        format!(" neighbor 10.77.0.3 password {p}\n")
    });
    format!(
        "router bgp 64500\n bgp router-id {id}\n no bgp ebgp-requires-policy\n neighbor 10.77.0.3 remote-as 64512\n{password} address-family ipv4 unicast\n  neighbor 10.77.0.3 activate\n exit-address-family\nexit\n"
    )
}

#[test]
fn in_a_cluster_each_node_reports_its_sessions_on_the_bgp_peers() {
    let mut lab = Lab::new(&["tor-a", "tor-b", "n1", "api"]).unwrap();
    let tor_a = frr::Frr::start(&mut lab, "tor-a").unwrap();
    tor_a.configure(&router("10.77.0.1", None)).unwrap();
    let tor_b = frr::Frr::start(&mut lab, "tor-b").unwrap();
    tor_b
        .configure(&router("10.77.0.2", Some("the-routers")))
        .unwrap();
    let node = frr::Frr::start(&mut lab, "n1").unwrap();
    let kubeconfig = lab.dir().join("kubeconfig");
    let _api = lab.start_api("api", &kubeconfig).unwrap();
    let kubectl = Kubectl::in_netns(kubeconfig.clone(), &lab.host("api").ns);
    let (ok, _, err) = kubectl.run(&["apply", "-f", "-"], Some(CLUSTER_OBJECTS));
    assert!(ok, "{err}");
    // The operator sums the nodes' entries up in each peer's `Established` condition.
    let operator = workspace_bin("buoy-operator").display().to_string();
    lab.spawn(
        "api",
        "env",
        &[
            &format!("KUBECONFIG={}", kubeconfig.display()),
            &operator,
            "run",
            "--namespace",
            "buoy-system",
            "--metrics-address",
            "127.0.0.1:9900",
            "--identity",
            "operator-0",
        ],
    )
    .unwrap();
    let etc = node.dir.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let env = format!("KUBECONFIG={}", kubeconfig.display());
    let agent = workspace_bin("buoy-agent").display().to_string();
    let (etc, vty) = (
        etc.display().to_string(),
        node.vty_socket.display().to_string(),
    );
    lab.spawn(
        "n1",
        "env",
        &[
            &env,
            &agent,
            "run",
            "--node-name",
            "n1",
            "--threads",
            "1",
            "--metrics-address",
            "127.0.0.1:9901",
            "--frr-config-dir",
            &etc,
            "--frr-pathspace",
            &node.pathspace,
            "--frr-vty-socket",
            &vty,
        ],
    )
    .unwrap();
    let entry = |peer: &str| -> serde_json::Value {
        let (_, out, _) = kubectl.run(&["get", "bgppeer", peer, "-o", "json"], None);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        v.pointer("/status/nodes")
            .and_then(|n| n.as_array())
            .and_then(|n| n.iter().find(|e| e["node"] == "n1").cloned())
            .unwrap_or_default()
    };
    assert!(
        poll(Duration::from_secs(30), || entry("tor-a")["state"]
            == "Established"
            && entry("tor-a")["routes"]
                == serde_json::json!(["10.99.0.20/32"])),
        "n1's entry on tor-a: established, announcing the VIP: {}\n{}",
        entry("tor-a"),
        lab.logs()
    );
    assert_eq!(entry("tor-a")["bfd"], "Disabled");
    // The VirtualIP's entry names the address the other nodes hand n1's connections to: n1's
    // on its first peer's subnet.
    let vip_entry = || {
        kubectl
            .run(
                &[
                    "get",
                    "virtualip",
                    "announced",
                    "-o",
                    "jsonpath={.status.nodes[?(@.node==\"n1\")].address}",
                ],
                None,
            )
            .1
    };
    assert!(
        poll(Duration::from_secs(10), || vip_entry() == "10.77.0.3"),
        "n1's handover address on the VirtualIP: {:?}",
        vip_entry()
    );
    // The entry lists what FRR sends; the router installs it a moment later.
    assert!(
        poll(Duration::from_secs(5), || frr::kernel_nexthops(
            &lab,
            "tor-a",
            "10.99.0.20"
        ) == ["10.77.0.3"]),
        "the route is in tor-a's kernel"
    );
    // tor-b refuses n1's password: its entry says so, tor-a's session is untouched.
    assert!(
        poll(Duration::from_secs(20), || entry("tor-b")["reason"]
            .as_str()
            .is_some_and(|r| r.contains("password"))),
        "n1's entry on tor-b: {}",
        entry("tor-b")
    );
    assert_ne!(entry("tor-b")["state"], "Established");
    assert_eq!(entry("tor-a")["state"], "Established");
    let condition = |peer: &str| -> serde_json::Value {
        let (_, out, _) = kubectl.run(&["get", "bgppeer", peer, "-o", "json"], None);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        v.pointer("/status/conditions")
            .and_then(|c| c.as_array())
            .and_then(|c| c.iter().find(|c| c["type"] == "Established").cloned())
            .unwrap_or_default()
    };
    assert!(
        poll(Duration::from_secs(20), || {
            let c = condition("tor-b");
            c["status"] == "False"
                && c["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("n1 (") && m.contains("password"))
        }),
        "tor-b's Established condition is False, naming n1 and the password: {}\n{}",
        condition("tor-b"),
        lab.logs()
    );
    assert_eq!(
        (
            condition("tor-a")["status"].as_str(),
            condition("tor-a")["reason"].as_str()
        ),
        (Some("True"), Some("SessionsUp")),
        "tor-a unaffected: {}",
        condition("tor-a")
    );
    let (_, columns, _) = kubectl.run(&["get", "bgpp"], None);
    assert!(
        columns
            .lines()
            .any(|l| l.starts_with("tor-a ") && l.split_whitespace().nth(3) == Some("1")),
        "kubectl get bgpp: tor-a has 1 node established\n{columns}"
    );
    assert!(
        poll(Duration::from_secs(10), || {
            let (_, events, _) =
                kubectl.run(&["get", "events.v1.events.k8s.io", "-o", "json"], None);
            events.contains("SessionEstablished")
                && events.contains("node n1: BGP session established")
        }),
        "an Event for the session that came up"
    );
    drop(tor_b);
}
