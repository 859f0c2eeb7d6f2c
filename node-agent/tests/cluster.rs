//! Cluster mode end to end: two real `buoy-agent run` processes in network namespaces (Nodes
//! `n1`, `n2`) against Buoy's Kubernetes API test server (in its own namespace on the same LAN),
//! objects applied with kubectl. Needs root (CI runs it as root).
#![allow(clippy::unwrap_used)]

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant},
};

use buoy_tests::{
    backend::{Backend, echo_in, served_by_from},
    kubectl::Kubectl,
    netlab::Lab,
    process::workspace_bin,
    testapi::TestApi,
};

const VIP: &str = "10.77.0.100";

const OBJECTS: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {buoy.io/lb: "true"}}
---
apiVersion: v1
kind: Node
metadata: {name: n2, labels: {buoy.io/lb: "true"}}
---
apiVersion: buoy.io/v1alpha1
kind: UpstreamPool
metadata: {name: web, namespace: default}
spec:
  backends:
    - {address: 10.77.0.3, port: 80}
    - {address: 10.77.0.4, port: 80}
---
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {name: web, namespace: default}
spec:
  addresses: [10.77.0.100]
  interface: eth0
  virtualRouterID: 60
  vrrp: {advertisementInterval: 100ms}
  nodeSelector: {matchLabels: {buoy.io/lb: "true"}}
  priorities: [{node: n1, priority: 150}, {node: n2, priority: 100}]
  listeners:
    - {name: http, port: 80, protocol: HTTP, upstreamPool: web}
"#;

struct Cluster {
    lab: Lab,
    _backends: Vec<Backend>,
    api: Option<TestApi>,
    kubeconfig: PathBuf,
}

impl Cluster {
    /// kubectl from the API server's namespace (the server listens on the lab's LAN only).
    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, out, err) =
            Kubectl::in_netns(self.kubeconfig.clone(), &self.lab.host("api").ns).run(args, stdin);
        assert!(ok, "kubectl {args:?}: {err}\n{}", self.lab.logs());
        out
    }

    fn vip_status(&self) -> serde_json::Value {
        let out = self.kubectl(&["get", "virtualip", "web", "-o", "json"], None);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["status"].clone()
    }
}

fn start() -> Cluster {
    start_agents(&["n1", "n2"])
}

/// The lab and API server, with `buoy-agent run` on these nodes.
fn start_agents(nodes: &[&str]) -> Cluster {
    let mut lab = Lab::new(&["n1", "n2", "web1", "web2", "client", "api"]).unwrap();
    let kubeconfig = lab.dir().join("kubeconfig");
    let api = lab.start_api("api", &kubeconfig).unwrap();
    let backends = ["web1", "web2"]
        .iter()
        .map(|host| echo_in(&lab.host(host).ns, "0.0.0.0:80", host).unwrap())
        .collect();
    for node in nodes {
        lab.spawn(
            node,
            "env",
            &[
                &format!("KUBECONFIG={}", kubeconfig.display()),
                workspace_bin("buoy-agent").to_str().unwrap(),
                "run",
                "--node-name",
                node,
                "--threads",
                "1",
                "--metrics-address",
                "127.0.0.1:9901",
            ],
        )
        .unwrap();
    }
    Cluster {
        lab,
        _backends: backends,
        api: Some(api),
        kubeconfig,
    }
}

fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn served_by(lab: &Lab, n: usize) -> Vec<String> {
    let target = SocketAddr::new(VIP.parse().unwrap(), 80);
    served_by_from(&lab.host("client").ns, target, n)
}

#[test]
fn two_agents_serve_a_virtualip_from_the_api_and_report_their_own_status() {
    let c = start();
    let vip: IpAddr = VIP.parse().unwrap();
    c.kubectl(&["apply", "-f", "-"], Some(OBJECTS));
    assert!(
        c.lab.wait_sole_holder(vip, "n1", Duration::from_secs(10)),
        "n1 (priority 150) holds the VIP\n{}",
        c.lab.logs()
    );
    let answers = served_by(&c.lab, 10);
    assert!(
        answers.iter().any(|a| a == "web1") && answers.iter().any(|a| a == "web2"),
        "traffic through the VIP reaches both backends: {answers:?}\n{}",
        c.lab.logs()
    );

    // Each agent owns its own entry; neither overwrites the other.
    let mut status = serde_json::Value::Null;
    wait_for("both status entries", Duration::from_secs(10), || {
        status = c.vip_status();
        let nodes = status["nodes"].as_array().cloned().unwrap_or_default();
        let state = |n: &str| {
            nodes
                .iter()
                .find(|e| e["node"] == n)
                .map(|e| e["state"].as_str().unwrap_or("").to_string())
        };
        state("n1").as_deref() == Some("Master") && state("n2").as_deref() == Some("Backup")
    });
    let n1 = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"] == "n1")
        .unwrap()
        .clone();
    assert_eq!(n1["priority"], 150, "{status}");
    assert_eq!(n1["serving"], true, "{status}");
    assert!(n1["lastTransitionTime"].is_string(), "{status}");
    // kube-rs publishes events.k8s.io/v1 Events (`kubectl events` shows them).
    wait_for("the Master event", Duration::from_secs(5), || {
        c.kubectl(&["get", "events.v1.events.k8s.io", "-o", "json"], None)
            .contains("node n1 is Master")
    });

    // Adding and removing another VirtualIP leaves this one's traffic alone.
    let probe = buoy_tests::probe::Probe::start_http(
        &c.lab.host("client").ns,
        SocketAddr::new(vip, 80),
        Duration::from_millis(10),
        Duration::from_secs(30),
    )
    .unwrap();
    let other = OBJECTS
        .split("---")
        .last()
        .unwrap()
        .replace("name: web, namespace", "name: other, namespace")
        .replace("10.77.0.100", "10.77.0.101")
        .replace("virtualRouterID: 60", "virtualRouterID: 61")
        .replace("port: 80,", "port: 8080,");
    c.kubectl(&["apply", "-f", "-"], Some(&other));
    let other_vip: IpAddr = "10.77.0.101".parse().unwrap();
    assert!(
        c.lab
            .wait_sole_holder(other_vip, "n1", Duration::from_secs(10)),
        "{}",
        c.lab.logs()
    );
    c.kubectl(&["delete", "virtualip", "other"], None);
    wait_for("the other VIP released", Duration::from_secs(10), || {
        c.lab.holders(other_vip).is_empty()
    });
    let r = buoy_tests::probe::report(&probe.finish());
    assert!(r.total > 20, "{r:?}");
    assert_eq!(r.failed, 0, "the first VirtualIP was not disturbed: {r:?}");

    // A priority change through the API moves the VIP (the instance restarts with handover).
    c.kubectl(
        &[
            "patch",
            "virtualip",
            "web",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"priorities":[{"node":"n1","priority":100},{"node":"n2","priority":150}]}}"#,
        ],
        None,
    );
    assert!(
        c.lab.wait_sole_holder(vip, "n2", Duration::from_secs(10)),
        "{}",
        c.lab.logs()
    );

    // Deleting the VirtualIP releases it everywhere.
    c.kubectl(&["delete", "virtualip", "web"], None);
    wait_for(
        "the VIP released on both nodes",
        Duration::from_secs(10),
        || c.lab.holders(vip).is_empty(),
    );
    assert_eq!(served_by(&c.lab, 1), ["failed"]);
}

#[test]
fn an_api_server_outage_keeps_the_vip_and_the_traffic() {
    let mut c = start();
    let vip: IpAddr = VIP.parse().unwrap();
    c.kubectl(&["apply", "-f", "-"], Some(OBJECTS));
    assert!(
        c.lab.wait_sole_holder(vip, "n1", Duration::from_secs(10)),
        "{}",
        c.lab.logs()
    );
    // The API server goes away: agents keep the last known state.
    drop(c.api.take());
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        assert_eq!(c.lab.holders(vip), ["n1"], "{}", c.lab.logs());
        let answers = served_by(&c.lab, 2);
        assert!(
            answers.iter().all(|a| a.starts_with("web")),
            "served during the outage: {answers:?}"
        );
    }
    assert!(
        c.lab.logs().contains("watch failed; retrying"),
        "the agents noticed and retry\n{}",
        c.lab.logs()
    );
}

#[test]
fn a_standalone_agent_takes_service_backends_from_the_cluster() {
    let mut c = start_agents(&[]);
    let vip: IpAddr = VIP.parse().unwrap();
    let objects = r#"
apiVersion: v1
kind: Service
metadata: {name: shop, namespace: default}
spec: {ports: [{name: http, port: 80, targetPort: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: shop-1, namespace: default, labels: {kubernetes.io/service-name: shop}}
addressType: IPv4
ports: [{name: http, port: 80}]
endpoints: [{addresses: [10.77.0.3]}, {addresses: [10.77.0.4]}]
"#;
    c.kubectl(&["apply", "-f", "-"], Some(objects));
    let config = c.lab.dir().join("standalone.yaml");
    std::fs::write(
        &config,
        r#"
apiVersion: buoy.io/v1alpha1
kind: UpstreamPool
metadata: {name: shop, namespace: default}
spec:
  service: {name: shop, port: 80}
---
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {name: shop, namespace: default}
spec:
  addresses: [10.77.0.100]
  interface: eth0
  virtualRouterID: 70
  listeners: [{name: http, port: 80, protocol: HTTP, upstreamPool: shop}]
"#,
    )
    .unwrap();
    c.lab
        .spawn(
            "n1",
            workspace_bin("buoy-agent").to_str().unwrap(),
            &[
                "standalone",
                "--config",
                config.to_str().unwrap(),
                "--node-name",
                "n1",
                "--kubeconfig",
                c.kubeconfig.to_str().unwrap(),
                "--metrics-address",
                "off",
            ],
        )
        .unwrap();
    assert!(
        c.lab.wait_sole_holder(vip, "n1", Duration::from_secs(10)),
        "{}",
        c.lab.logs()
    );
    wait_for("both endpoints serve", Duration::from_secs(10), || {
        let a = served_by(&c.lab, 4);
        a.contains(&"web1".to_string()) && a.contains(&"web2".to_string())
    });
    // The Service scales down to web2: only web2 gets requests.
    c.kubectl(
        &[
            "patch",
            "endpointslice",
            "shop-1",
            "--type",
            "merge",
            "-p",
            r#"{"endpoints":[{"addresses":["10.77.0.4"]}]}"#,
        ],
        None,
    );
    wait_for("only web2 serves", Duration::from_secs(10), || {
        served_by(&c.lab, 4).iter().all(|a| a == "web2")
    });
}
