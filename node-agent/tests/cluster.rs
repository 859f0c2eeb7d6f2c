//! Cluster mode end to end: two real `buoy-agent run` processes in network namespaces (Nodes
//! `n1`, `n2`) against Buoy's Kubernetes API test server (in its own namespace on the same LAN),
//! objects applied with kubectl. Also what one tenant's mistake, an overloaded API server or a
//! crash cannot do: a pool whose name does not resolve, a Secret that is missing or deleted,
//! 500s and 429s for a while leave the other VirtualIPs serving without a failed request, and
//! an agent killed while master removes its VIP at its restart even with the API server down.
//! Needs root (CI runs it as root).
#![allow(clippy::unwrap_used)]

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant},
};

use buoy_tests::{
    backend::{Backend, request, served_by_from},
    kubectl::Kubectl,
    netlab::{Lab, in_netns},
    process::workspace_bin,
    promtool,
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
    /// Each node's agent: its process in the lab and its command line.
    agents: std::collections::BTreeMap<String, (usize, Vec<String>)>,
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

    /// `kubectl get KIND NAME -n NS -o json`.
    fn get(&self, kind: &str, name: &str, ns: &str) -> serde_json::Value {
        let out = self.kubectl(&["get", kind, name, "-n", ns, "-o", "json"], None);
        serde_json::from_str(&out).unwrap()
    }

    /// `node`'s entry of the VirtualIP `ns/name`'s status.
    fn entry(&self, ns: &str, name: &str, node: &str) -> serde_json::Value {
        self.get("virtualip", name, ns)["status"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["node"] == node)
            .cloned()
            .unwrap_or_default()
    }

    /// Starts `node`'s agent again with the same command line.
    fn restart_agent(&mut self, node: &str) -> usize {
        let argv = self.agents[node].1.clone();
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let index = self.lab.spawn(node, "env", &refs).unwrap();
        self.agents.insert(node.to_string(), (index, argv));
        index
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
    let backends = lab.web_backends(&["web1", "web2"], false);
    let mut agents = std::collections::BTreeMap::new();
    for node in nodes {
        let argv: Vec<String> = [
            format!("KUBECONFIG={}", kubeconfig.display()),
            workspace_bin("buoy-agent").display().to_string(),
            "run".into(),
            "--node-name".into(),
            node.to_string(),
            "--threads".into(),
            "1".into(),
            "--metrics-address".into(),
            "127.0.0.1:9901".into(),
        ]
        .into();
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let index = lab.spawn(node, "env", &refs).unwrap();
        agents.insert(node.to_string(), (index, argv));
    }
    Cluster {
        lab,
        _backends: backends,
        api: Some(api),
        kubeconfig,
        agents,
    }
}

fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `node`'s agent's `/metrics`.
fn metrics_of(lab: &Lab, node: &str) -> String {
    let ns = lab.host(node).ns.clone();
    in_netns(&ns, move || {
        request(
            "127.0.0.1:9901".parse().unwrap(),
            "GET",
            "/metrics",
            &[],
            "",
        )
        .unwrap()
    })
    .unwrap()
    .join()
    .unwrap()
    .body
}

/// The agent's failed watch attempts of `kind`, by its metrics.
fn watch_errors(text: &str, kind: &str) -> Option<f64> {
    promtool::sample(
        text,
        &format!("buoy_agent_watch_errors_total{{kind=\"{kind}\"}}"),
    )
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
    // The watches' series exist from zero, one per kind, and the exposition passes promtool.
    let before = metrics_of(&c.lab, "n1");
    if let Err(e) = promtool::check_metrics(&before) {
        panic!("promtool check metrics:\n{e}\n{before}");
    }
    for kind in [
        "VirtualIP",
        "UpstreamPool",
        "AddressPool",
        "Node",
        "Namespace",
        "Service",
        "EndpointSlice",
        "Secret",
    ] {
        assert_eq!(watch_errors(&before, kind), Some(0.0), "{kind}:\n{before}");
    }
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
    // Each failed attempt is counted: what BuoyWatchFailing alerts on.
    wait_for(
        "the failed watches counted",
        Duration::from_secs(10),
        || watch_errors(&metrics_of(&c.lab, "n1"), "VirtualIP").is_some_and(|n| n >= 1.0),
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

/// Another tenant's objects on the same nodes: a VirtualIP whose pool names a host that does not
/// resolve, one whose Secret never existed, one whose Secret is deleted after it started.
const OTHER: &str = r#"
apiVersion: buoy.io/v1alpha1
kind: UpstreamPool
metadata: {name: bad, namespace: other}
spec:
  backends: [{address: no-such-host.invalid, port: 80}]
---
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {name: typo, namespace: other}
spec:
  addresses: [10.77.0.101]
  interface: eth0
  virtualRouterID: 61
  vrrp: {advertisementInterval: 100ms}
  priorities: [{node: n1, priority: 150}, {node: n2, priority: 100}]
  listeners: [{name: http, port: 8080, protocol: HTTP, upstreamPool: bad}]
---
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {name: no-secret, namespace: other}
spec:
  addresses: [10.77.0.102]
  interface: eth0
  virtualRouterID: 62
  vrrp: {version: 2, authentication: {type: Password, secretRef: {name: missing, key: password}}}
  priorities: [{node: n1, priority: 150}, {node: n2, priority: 100}]
---
apiVersion: v1
kind: Secret
metadata: {name: vrrp, namespace: other}
stringData: {password: s3cret}
---
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {name: secret-deleted, namespace: other}
spec:
  addresses: [10.77.0.103]
  interface: eth0
  virtualRouterID: 63
  vrrp: {version: 2, authentication: {type: Password, secretRef: {name: vrrp, key: password}}}
  priorities: [{node: n1, priority: 150}, {node: n2, priority: 100}]
"#;

#[test]
fn another_tenants_bad_pool_and_secrets_affect_only_their_own_virtualips() {
    let c = start();
    let vip: IpAddr = VIP.parse().unwrap();
    c.kubectl(&["apply", "-f", "-"], Some(OBJECTS));
    assert!(
        c.lab.wait_sole_holder(vip, "n1", Duration::from_secs(10)),
        "{}",
        c.lab.logs()
    );
    let probe = buoy_tests::probe::Probe::start_http(
        &c.lab.host("client").ns,
        SocketAddr::new(vip, 80),
        Duration::from_millis(10),
        Duration::from_secs(60),
    )
    .unwrap();
    c.kubectl(&["create", "namespace", "other"], None);
    c.kubectl(&["apply", "-f", "-"], Some(OTHER));

    // The pool that does not resolve: its own listener answers 503 and says why; the pool's
    // status and an Event name the backend; the VirtualIP's entry says it does not serve.
    let typo: IpAddr = "10.77.0.101".parse().unwrap();
    assert!(
        c.lab.wait_sole_holder(typo, "n1", Duration::from_secs(10)),
        "{}",
        c.lab.logs()
    );
    let client = c.lab.host("client").ns.clone();
    wait_for(
        "the reason in X-Buoy-Error",
        Duration::from_secs(20),
        || {
            let target = SocketAddr::new(typo, 8080);
            let r = buoy_tests::netlab::in_netns(&client, move || {
                buoy_tests::backend::request(target, "GET", "/", &[], "")
            })
            .unwrap()
            .join()
            .unwrap();
            r.is_some_and(|r| {
                r.status == 503
                    && r.header("X-Buoy-Error")
                        .is_some_and(|e| e.contains("no-such-host.invalid does not resolve"))
            })
        },
    );
    wait_for(
        "the pool's status names the backend",
        Duration::from_secs(10),
        || {
            let pool = c.get("upstreampool", "bad", "other");
            pool["status"]["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|n| {
                    n["node"] == "n1"
                        && n["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("no-such-host.invalid does not resolve"))
                })
        },
    );
    wait_for(
        "the VirtualIP says why it does not serve",
        Duration::from_secs(10),
        || {
            let e = c.entry("other", "typo", "n1");
            e["serving"] == false
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("not serving") && m.contains("other/bad"))
        },
    );
    let events = c.kubectl(
        &[
            "get",
            "events.v1.events.k8s.io",
            "-n",
            "other",
            "-o",
            "json",
        ],
        None,
    );
    assert!(events.contains("BackendsUnavailable"), "{events}");

    // The Secret that never existed: not served, a Fault with the reason on each node.
    wait_for("Fault with the reason", Duration::from_secs(20), || {
        let e = c.entry("other", "no-secret", "n1");
        e["state"] == "Fault"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("Secret missing") && m.contains("not found"))
    });
    assert!(c.lab.holders("10.77.0.102".parse().unwrap()).is_empty());
    // And the metrics say so, for the alert on nodes in Fault: no instance runs for it.
    wait_for("the Fault in the metrics", Duration::from_secs(5), || {
        promtool::sample(
            &metrics_of(&c.lab, "n1"),
            r#"buoy_vrrp_state{state="FAULT",virtualip="other/no-secret"}"#,
        ) == Some(1.0)
    });

    // The Secret deleted after its VirtualIP started: the VirtualIP keeps running on the
    // password it read, and says so.
    let kept: IpAddr = "10.77.0.103".parse().unwrap();
    assert!(
        c.lab.wait_sole_holder(kept, "n1", Duration::from_secs(10)),
        "{}",
        c.lab.logs()
    );
    c.kubectl(&["delete", "secret", "vrrp", "-n", "other"], None);
    wait_for("the warning", Duration::from_secs(90), || {
        c.entry("other", "secret-deleted", "n1")["message"]
            .as_str()
            .is_some_and(|m| m.contains("Secret vrrp: not found; the last password read is used"))
    });
    assert_eq!(c.lab.holders(kept), ["n1"], "{}", c.lab.logs());

    // Throughout, the first VirtualIP served every request.
    let r = buoy_tests::probe::report(&probe.finish());
    eprintln!("isolation: {r:?}");
    assert!(r.total > 100, "{r:?}");
    assert_eq!(r.failed, 0, "the first VirtualIP was disturbed: {r:?}");
    assert_eq!(c.lab.holders(vip), ["n1"]);
}

#[test]
fn an_api_server_answering_500_and_429_stops_nothing() {
    let c = start();
    let vip: IpAddr = VIP.parse().unwrap();
    c.kubectl(&["apply", "-f", "-"], Some(OBJECTS));
    assert!(
        c.lab.wait_sole_holder(vip, "n1", Duration::from_secs(10)),
        "{}",
        c.lab.logs()
    );
    let probe = buoy_tests::probe::Probe::start_http(
        &c.lab.host("client").ns,
        SocketAddr::new(vip, 80),
        Duration::from_millis(10),
        Duration::from_secs(30),
    )
    .unwrap();
    let api = c.api.as_ref().unwrap();
    // 5 s of 500s, then 5 s of 429s (overload, Retry-After: 1), watches cut.
    use buoy_tests::testapi::FailWith;
    api.fail_requests(FailWith::status(500).lasting(Duration::from_secs(5)));
    std::thread::sleep(Duration::from_secs(5));
    api.fail_requests(FailWith::status(429).lasting(Duration::from_secs(5)));
    std::thread::sleep(Duration::from_secs(5));
    api.clear_failures();
    // The agents catch up: a change made now is applied.
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
        c.lab.wait_sole_holder(vip, "n2", Duration::from_secs(15)),
        "{}",
        c.lab.logs()
    );
    let r = buoy_tests::probe::report(&probe.finish());
    eprintln!("API errors: {r:?}");
    assert!(r.total > 100, "{r:?}");
    assert_eq!(r.failed, 0, "{r:?}");
}

/// Buoy's handover chains, policy rule and the VIP on `node`.
fn leftovers(c: &Cluster, node: &str) -> (bool, bool, bool) {
    let ns = &c.lab.host(node).ns;
    let chains =
        buoy_tests::netlab::ns_exec(ns, &["iptables", "-w", "-t", "mangle", "-S"]).unwrap();
    let rules = buoy_tests::netlab::ns_exec(ns, &["ip", "rule"]).unwrap();
    let vip: IpAddr = VIP.parse().unwrap();
    (
        chains.contains("BUOY"),
        rules.contains("1900:"),
        c.lab.holders(vip).contains(&node.to_string()),
    )
}

#[test]
fn a_master_killed_while_the_api_is_down_removes_its_vip_at_restart_and_uninstall_leaves_nothing() {
    let mut c = start();
    let vip: IpAddr = VIP.parse().unwrap();
    c.kubectl(&["apply", "-f", "-"], Some(OBJECTS));
    assert!(
        c.lab.wait_sole_holder(vip, "n1", Duration::from_secs(10)),
        "{}",
        c.lab.logs()
    );
    assert_eq!(leftovers(&c, "n1"), (true, true, true));
    // n1's agent dies (SIGKILL): the VIP stays bound on n1, n2 takes over: both hold it.
    let n1 = c.agents["n1"].0;
    c.lab.proc(n1).signal(libc::SIGKILL);
    wait_for("n2 takes over", Duration::from_secs(10), || {
        c.lab.holders(vip) == ["n1", "n2"]
    });
    // The API server goes down, then n1's agent restarts: before it waits for the API, it
    // removes what its predecessor left, and the VIP is n2's alone.
    c.api.as_mut().unwrap().stop();
    let restarted = c.restart_agent("n1");
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.lab.holders(vip) != ["n2"] {
        assert!(
            Instant::now() < deadline,
            "the stale VIP is still on {:?}\n{}",
            c.lab.holders(vip),
            c.lab.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The line may reach the test's reader a moment after the address is gone.
    let recovered = c
        .lab
        .proc(restarted)
        .wait_for_line("did not exit cleanly", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{}", c.lab.logs()));
    assert!(recovered.contains("10.77.0.100"), "{recovered}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.lab.holders(vip), ["n2"], "never on two nodes again");
    // The API comes back: n1 rejoins and, with the higher priority, takes the VIP back.
    c.api.as_mut().unwrap().resume().unwrap();
    assert!(
        c.lab.wait_sole_holder(vip, "n1", Duration::from_secs(20)),
        "{}",
        c.lab.logs()
    );
    // Uninstall (the agents stop): nothing of Buoy is left on any node.
    for node in ["n1", "n2"] {
        let agent = c.agents[node].0;
        c.lab.proc(agent).signal(libc::SIGTERM);
        assert_eq!(
            c.lab.proc(agent).wait_exit(Duration::from_secs(20)),
            Some(0),
            "{}",
            c.lab.logs()
        );
    }
    for node in ["n1", "n2"] {
        assert_eq!(leftovers(&c, node), (false, false, false), "{node}");
    }
}

/// An HTTPS listener whose certificate is a Secret made with `kubectl create secret tls`: a
/// renewal (the Secret replaced, as cert-manager does) is served within seconds, because each
/// certificate Secret is watched by name rather than read every minute.
#[test]
fn a_renewed_certificate_secret_is_served_within_seconds() {
    let c = start_agents(&["n1"]);
    let dir = tempfile::tempdir().unwrap();
    let (old_crt, old_key) = buoy_tests::tls::certificate(dir.path(), "old", &["shop.example"]);
    let (new_crt, new_key) = buoy_tests::tls::certificate(dir.path(), "new", &["shop.example"]);
    let create = |crt: &std::path::Path, key: &std::path::Path| {
        let yaml = c.kubectl(
            &[
                "create",
                "secret",
                "tls",
                "shop-tls",
                "-n",
                "default",
                &format!("--cert={}", crt.display()),
                &format!("--key={}", key.display()),
                "--dry-run=client",
                "-o",
                "yaml",
            ],
            None,
        );
        c.kubectl(&["apply", "-f", "-"], Some(&yaml));
    };
    create(&old_crt, &old_key);
    let objects = OBJECTS.replace(
        "    - {name: http, port: 80, protocol: HTTP, upstreamPool: web}",
        "    - {name: http, port: 80, protocol: HTTP, upstreamPool: web}\n    - {name: https, port: 443, protocol: HTTPS, upstreamPool: web, tls: {certificates: [{secretName: shop-tls}]}}",
    );
    c.kubectl(&["apply", "-f", "-"], Some(&objects));
    let vip: IpAddr = VIP.parse().unwrap();
    assert!(
        c.lab.wait_sole_holder(vip, "n1", Duration::from_secs(10)),
        "{}",
        c.lab.logs()
    );
    let client = c.lab.host("client").ns.clone();
    let presented =
        || buoy_tests::tls::presented(&client, &format!("{VIP}:443"), Some("shop.example"));
    let old = buoy_tests::tls::fingerprint(&old_crt);
    wait_for("the first certificate", Duration::from_secs(10), || {
        presented() == old
    });

    create(&new_crt, &new_key);
    let renewed = Instant::now();
    let new = buoy_tests::tls::fingerprint(&new_crt);
    wait_for("the renewed certificate", Duration::from_secs(10), || {
        presented() == new
    });
    println!(
        "cluster mode: renewed certificate served after {} ms",
        renewed.elapsed().as_millis()
    );
    assert!(
        renewed.elapsed() < Duration::from_secs(5),
        "a watch, not the minute-long refresh: {:?}\n{}",
        renewed.elapsed(),
        c.lab.logs()
    );
}

/// An UpstreamPool's `tls.caSecretName` in cluster mode: while the Secret is missing the pool
/// has no backends and its status says why; once it is created (watched by name, as
/// certificates are) the backends are back.
#[test]
fn a_pool_s_ca_secret_is_read_when_it_appears() {
    let c = start_agents(&["n1"]);
    let objects = OBJECTS.replace(
        "    - {address: 10.77.0.4, port: 80}\n",
        "    - {address: 10.77.0.4, port: 80}\n  tls: {caSecretName: backend-ca}\n",
    );
    c.kubectl(&["apply", "-f", "-"], Some(&objects));
    let node_status = |c: &Cluster| {
        let pool = c.get("upstreampool", "web", "default");
        pool["status"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["node"] == "n1")
            .cloned()
            .unwrap_or_default()
    };
    wait_for(
        "the pool's status says the CA Secret is missing",
        Duration::from_secs(10),
        || {
            let n = node_status(&c);
            n["backends"]["total"] == 0
                && n["message"].as_str().is_some_and(|m| {
                    m.contains("tls.caSecretName backend-ca: not found; no backend is used")
                })
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = buoy_tests::tls::certificate(dir.path(), "ca", &["backend-ca.example"]);
    let yaml = c.kubectl(
        &[
            "create",
            "secret",
            "generic",
            "backend-ca",
            "-n",
            "default",
            &format!("--from-file=ca.crt={}", ca.display()),
            "--dry-run=client",
            "-o",
            "yaml",
        ],
        None,
    );
    c.kubectl(&["apply", "-f", "-"], Some(&yaml));
    let appeared = Instant::now();
    wait_for("the backends with the CA", Duration::from_secs(10), || {
        let n = node_status(&c);
        n["backends"]["total"] == 2 && n["message"].is_null()
    });
    assert!(
        appeared.elapsed() < Duration::from_secs(5),
        "watched, not the minute-long refresh: {:?}",
        appeared.elapsed()
    );
}
