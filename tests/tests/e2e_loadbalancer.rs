//! LoadBalancer Services end to end: the API test server, the real operator (100 ms adverts for
//! Services), three nodes whose agents the DaemonSet shim starts, a client. Each node runs the
//! Service's pod (an echo backend on port 8080 named after the node), listed in the Service's
//! EndpointSlice.
//!
//! kube-proxy's part — forwarding the load balancer address to the Service's endpoints — is played
//! by `KubeProxyStandIn`: a DNAT rule per node, in a chain named TEST-KUBE-PROXY-STANDIN,
//! installed by this test in the node namespaces it created. It is a test stand-in only; Buoy
//! ships nothing of it (in a cluster, kube-proxy or its replacement does this).
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use buoy_tests::backend::{Backend, served_by_from};
use buoy_tests::netlab::ns_exec;
use buoy_tests::probe::Probe;
use buoy_tests::system::{NODES, System};
use serde_json::Value;

const POOL: &str = r#"
apiVersion: buoy.io/v1alpha1
kind: AddressPool
metadata: {name: lb}
spec:
  addresses: ["10.77.0.200-10.77.0.215"]
  namespaces: [default]
  autoAssign: true
  nodeSelector: {matchLabels: {buoy.io/lb: "true"}}
"#;

fn service(name: &str, annotations: &str, ports: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n  annotations: {{{annotations}}}\nspec:\n  type: LoadBalancer\n  loadBalancerClass: buoy.io/vrrp\n  selector: {{app: web}}\n  ports: [{ports}]\n"
    )
}

/// The EndpointSlice of Service `name`: the pod on each of `nodes` (port 8080), ready.
fn endpoints(s: &System, name: &str, nodes: &[&str]) -> String {
    let eps: Vec<String> = nodes
        .iter()
        .map(|n| {
            format!(
                "  - {{addresses: [\"{}\"], nodeName: {n}, conditions: {{ready: true}}}}\n",
                s.lab.host(n).ipv4
            )
        })
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  namespace: default\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports: [{{port: 8080, protocol: TCP}}]\nendpoints:\n{}",
        eps.concat()
    )
}

/// kube-proxy's part, for this test only: on every node, traffic to `address:port` goes to the
/// node's own pod (port 8080). Rules live in the test's node namespaces and go with them.
struct KubeProxyStandIn;

impl KubeProxyStandIn {
    fn forward(s: &System, address: IpAddr, port: u16) {
        for node in NODES {
            let ns = &s.lab.host(node).ns;
            let to = format!("{}:8080", s.lab.host(node).ipv4);
            let _ = ns_exec(
                ns,
                &["iptables", "-t", "nat", "-N", "TEST-KUBE-PROXY-STANDIN"],
            );
            if ns_exec(
                ns,
                &[
                    "iptables",
                    "-t",
                    "nat",
                    "-C",
                    "PREROUTING",
                    "-j",
                    "TEST-KUBE-PROXY-STANDIN",
                ],
            )
            .is_err()
            {
                ns_exec(
                    ns,
                    &[
                        "iptables",
                        "-t",
                        "nat",
                        "-A",
                        "PREROUTING",
                        "-j",
                        "TEST-KUBE-PROXY-STANDIN",
                    ],
                )
                .unwrap();
            }
            for proto in ["tcp", "udp"] {
                ns_exec(
                    ns,
                    &[
                        "iptables",
                        "-t",
                        "nat",
                        "-A",
                        "TEST-KUBE-PROXY-STANDIN",
                        "-d",
                        &address.to_string(),
                        "-p",
                        proto,
                        "--dport",
                        &port.to_string(),
                        "-j",
                        "DNAT",
                        "--to-destination",
                        &to,
                    ],
                )
                .unwrap();
            }
        }
    }
}

fn ingress(s: &System, name: &str) -> Vec<String> {
    let (ok, out) = s.try_kubectl(&["get", "service", name, "-n", "default", "-o", "json"]);
    if !ok {
        return Vec::new();
    }
    let v: Value = serde_json::from_str(&out).unwrap_or_default();
    v.pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|i| i["ipMode"] == "VIP")
        .filter_map(|i| i["ip"].as_str().map(str::to_string))
        .collect()
}

/// Runs the shim's pods until Service `name` lists an address; returns it.
fn wait_ingress(s: &mut System, name: &str) -> IpAddr {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        s.run_scheduled_pods();
        if let Some(ip) = ingress(s, name).first() {
            return ip.parse().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "{name} got no address\n{}",
            s.lab.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (10 s at most) until `node` alone holds `address`.
fn wait_sole_holder(s: &System, address: IpAddr, node: &str) {
    assert!(
        s.lab
            .wait_sole_holder(address, node, Duration::from_secs(10)),
        "{address} held by {:?}, not by {node} alone\n{}",
        s.lab.holders(address),
        s.lab.logs()
    );
}

/// Each Service VirtualIP's VRRP group (empty: none) and router ID, by name.
fn vrrp_groups(s: &System) -> std::collections::BTreeMap<String, (String, u64)> {
    let vips = s.json(&["get", "virtualips", "-n", "default"]);
    vips["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let name = v["metadata"]["name"].as_str()?.to_string();
            let group = v["metadata"]["annotations"]["buoy.io/vrrp-group"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let vrid = v["status"]["virtualRouterID"].as_u64().unwrap_or_default();
            Some((name, (group, vrid)))
        })
        .collect()
}

fn served(s: &System, target: SocketAddr) -> Option<String> {
    served_by_from(&s.lab.host("client").ns, target, 1)
        .pop()
        .filter(|b| b != "failed")
}

#[test]
fn a_load_balancer_service_is_announced_by_one_node_fails_over_shares_and_goes() {
    let mut s = System::start_alone(&NODES, &["--load-balancer-advertisement-interval", "100ms"]);
    let _pods: Vec<Backend> = NODES
        .iter()
        .map(|n| s.lab.echo_backend(n, "0.0.0.0:8080", n))
        .collect();
    // The lab's pool is for VirtualIPs that name their addresses; Services take from `lb`.
    s.kubectl(
        &[
            "patch",
            "addresspool",
            "lab-lan",
            "--type",
            "merge",
            "-p",
            r#"{"spec": {"autoAssign": false}}"#,
        ],
        None,
    );
    s.kubectl(&["apply", "-f", "-"], Some(POOL));
    // The operator has seen both (it writes the new pool's status).
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.json(&["get", "addresspool", "lb"])["status"]["available"] != 16 {
        assert!(
            Instant::now() < deadline,
            "the operator never saw the pool\n{}",
            s.lab.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s.kubectl(&["apply", "-f", "-"], Some(&endpoints(&s, "web", &NODES)));
    let applied = Instant::now();
    s.kubectl(
        &["apply", "-f", "-"],
        Some(&service("web", "", "{port: 80, protocol: TCP}")),
    );

    // An address from the pool, announced by exactly one node, the one that serves.
    let ip = wait_ingress(&mut s, "web");
    eprintln!("web got {ip} {:?} after kubectl apply", applied.elapsed());
    assert_eq!(ip, "10.77.0.200".parse::<IpAddr>().unwrap());
    KubeProxyStandIn::forward(&s, ip, 80);
    let target = SocketAddr::new(ip, 80);
    let holders = s.lab.holders(ip);
    assert_eq!(holders.len(), 1, "one node holds {ip}: {holders:?}");
    let master = holders[0].clone();
    assert_eq!(served(&s, target).as_deref(), Some(master.as_str()));
    // Five more Services: six on three nodes make three VRRP groups of two addresses, one
    // router ID each, masters spread.
    for i in 0..5 {
        s.kubectl(
            &["apply", "-f", "-"],
            Some(&service(
                &format!("extra-{i}"),
                "",
                "{port: 80, protocol: TCP}",
            )),
        );
    }
    let extras: Vec<IpAddr> = (0..5)
        .map(|i| wait_ingress(&mut s, &format!("extra-{i}")))
        .collect();
    let groups = vrrp_groups(&s);
    let names: Vec<&String> = groups.keys().collect();
    assert_eq!(
        names,
        [
            "svc-extra-0",
            "svc-extra-1",
            "svc-extra-2",
            "svc-extra-3",
            "svc-extra-4",
            "svc-web"
        ],
        "kubectl get vip shows the Services' VirtualIPs"
    );
    let (web_group, web_vrid) = groups["svc-web"].clone();
    let vrids: std::collections::BTreeSet<u64> = groups.values().map(|(_, v)| *v).collect();
    assert_eq!(vrids.len(), 3, "six Services, three router IDs: {groups:?}");
    let mate = groups
        .iter()
        .find(|(n, (g, _))| n.as_str() != "svc-web" && *g == web_group)
        .map(|(n, (_, vrid))| {
            assert_eq!(*vrid, web_vrid, "one router ID per group");
            let i: usize = n.trim_start_matches("svc-extra-").parse().unwrap();
            extras[i]
        })
        .expect("web shares its group");
    // The group's addresses are held together, by the group's master.
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.lab.holders(mate) != std::slice::from_ref(&master) {
        assert!(
            Instant::now() < deadline,
            "{mate} held by {:?}, web's master is {master}\n{}",
            s.lab.holders(mate),
            s.lab.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        s.lab.holders(ip),
        std::slice::from_ref(&master),
        "web stayed where it was"
    );

    // The master's link is cut: another node answers within 3 × 100 ms + skew + 100 ms.
    let probe = Probe::start_http(
        &s.lab.host("client").ns,
        target,
        Duration::from_millis(10),
        Duration::from_secs(30),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    s.lab.cut(&master).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while served(&s, target).is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let samples = probe.finish();
    let report = buoy_tests::probe::report(&samples);
    let bound = Duration::from_millis(300 + 100 + 100);
    let successor = served(&s, target).unwrap_or_default();
    eprintln!(
        "LoadBalancer address {ip}: master {master} cut, served by {successor} again; longest outage {:?} over {} probes, {} failed (bound {bound:?})",
        report.longest_outage, report.total, report.failed
    );
    assert!(report.failed > 0, "the cut was felt: {report:?}");
    assert!(
        samples.last().is_some_and(|x| x.served_by.is_some()),
        "served again at the end\n{}",
        s.lab.logs()
    );
    assert_ne!(successor, master);
    // The group failed over together.
    wait_sole_holder(&s, mate, &successor);
    assert!(
        report.longest_outage <= bound,
        "outage {:?} > {bound:?}",
        report.longest_outage
    );
    s.lab.restore(&master).unwrap();

    // Two Services with one sharing key and different ports share one address.
    s.kubectl(
        &["apply", "-f", "-"],
        Some(&endpoints(&s, "dns-tcp", &NODES)),
    );
    s.kubectl(
        &["apply", "-f", "-"],
        Some(&service(
            "dns-tcp",
            "buoy.io/allow-shared-ip: dns",
            "{port: 53, protocol: TCP}",
        )),
    );
    s.kubectl(
        &["apply", "-f", "-"],
        Some(&service(
            "dns-udp",
            "buoy.io/allow-shared-ip: dns",
            "{port: 53, protocol: UDP}",
        )),
    );
    let shared = wait_ingress(&mut s, "dns-tcp");
    assert_eq!(wait_ingress(&mut s, "dns-udp"), shared);
    assert_ne!(shared, ip);
    KubeProxyStandIn::forward(&s, shared, 53);
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.lab.holders(shared).len() != 1 {
        assert!(
            Instant::now() < deadline,
            "{shared} held by {:?}",
            s.lab.holders(shared)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        served(&s, SocketAddr::new(shared, 53)).is_some(),
        "the shared address serves"
    );

    // externalTrafficPolicy: Local: only the node with the Service's ready pod holds the
    // address; when the pod moves, so does the address, by a planned handover.
    s.kubectl(
        &["apply", "-f", "-"],
        Some(&endpoints(&s, "local", &["n2"])),
    );
    s.kubectl(
        &["apply", "-f", "-"],
        Some(
            &service("local", "", "{port: 8000, protocol: TCP}").replace(
                "  type: LoadBalancer\n",
                "  type: LoadBalancer\n  externalTrafficPolicy: Local\n",
            ),
        ),
    );
    let local = wait_ingress(&mut s, "local");
    KubeProxyStandIn::forward(&s, local, 8000);
    let local_target = SocketAddr::new(local, 8000);
    wait_sole_holder(&s, local, "n2");
    assert_eq!(served(&s, local_target).as_deref(), Some("n2"));
    let probe = Probe::start_http(
        &s.lab.host("client").ns,
        local_target,
        Duration::from_millis(10),
        Duration::from_secs(30),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let moved = Instant::now();
    s.kubectl(
        &["apply", "-f", "-"],
        Some(&endpoints(&s, "local", &["n3"])),
    );
    wait_sole_holder(&s, local, "n3");
    eprintln!(
        "the pod moved from n2 to n3: n3 holds {local} {:?} later",
        moved.elapsed()
    );
    std::thread::sleep(Duration::from_millis(300));
    let samples = probe.finish();
    let report = buoy_tests::probe::report(&samples);
    eprintln!(
        "planned handover of {local}: {} probes, {} failed, longest outage {:?}",
        report.total, report.failed, report.longest_outage
    );
    assert_eq!(served(&s, local_target).as_deref(), Some("n3"));
    assert_eq!(
        report.failed,
        0,
        "make before break: {report:?}\n{}",
        s.lab.logs()
    );

    // The Service turns to externalTrafficPolicy: Cluster: its address joins a VRRP group, and
    // moves make-before-break.
    let probe = Probe::start_http(
        &s.lab.host("client").ns,
        local_target,
        Duration::from_millis(10),
        Duration::from_secs(30),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    s.kubectl(
        &[
            "patch",
            "service",
            "local",
            "-n",
            "default",
            "--type",
            "merge",
            "-p",
            r#"{"spec": {"externalTrafficPolicy": "Cluster"}}"#,
        ],
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while vrrp_groups(&s)
        .get("svc-local")
        .is_none_or(|(g, _)| g.is_empty())
        || s.lab.holders(local).len() != 1
    {
        assert!(
            Instant::now() < deadline,
            "svc-local never joined a group alone on one node: {:?}, held by {:?}\n{}",
            vrrp_groups(&s).get("svc-local"),
            s.lab.holders(local),
            s.lab.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Past the handover (the old instance's graceful stop, at most 5 s).
    std::thread::sleep(Duration::from_secs(6));
    let samples = probe.finish();
    let report = buoy_tests::probe::report(&samples);
    eprintln!(
        "Local to Cluster, into group {:?}: {} probes, {} failed, longest outage {:?}; held by {:?}",
        vrrp_groups(&s).get("svc-local"),
        report.total,
        report.failed,
        report.longest_outage,
        s.lab.holders(local)
    );
    assert_eq!(s.lab.holders(local).len(), 1);
    assert_eq!(
        report.failed,
        0,
        "make before break into the group: {report:?}\n{}",
        s.lab.logs()
    );

    // Deleting the Services leaves no address on any node and no VirtualIP.
    for name in ["web", "dns-tcp", "dns-udp", "local"] {
        s.kubectl(&["delete", "service", name, "-n", "default"], None);
    }
    for i in 0..5 {
        s.kubectl(
            &["delete", "service", &format!("extra-{i}"), "-n", "default"],
            None,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let held: Vec<String> = [ip, shared, local]
            .iter()
            .chain(&extras)
            .flat_map(|a| s.lab.holders(*a))
            .collect();
        let vips = s.json(&["get", "virtualips", "-n", "default"]);
        let left = vips["items"].as_array().map_or(0, Vec::len);
        if held.is_empty() && left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after deletion: {held:?} hold addresses, {left} VirtualIPs left\n{}",
            s.lab.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
