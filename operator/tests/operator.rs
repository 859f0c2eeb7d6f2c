//! The real `buoy-operator run` binary against the Kubernetes API test server: agent
//! DaemonSets, allocation, conflicts, references, status from the agents' reports, deletion
//! with the finalizer, Events, metrics, leader election between replicas, the address policy
//! (AddressPools: what is served, what is refused and why, allocation from a pool), and BGP
//! (no router ID in ECMP mode, BGPPeers' status from their agents' entries).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::future::Future;
use std::process::Command;
use std::time::Duration;

use buoy_crds::{UpstreamPool, VirtualIP};
use buoy_tests::process::Proc;
use buoy_tests::testapi::TestApi;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const NS: &str = "buoy-system";

/// Polls `check` until it returns Some, or fails the test after `WAIT`.
async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    buoy_tests::eventually(what, WAIT, Duration::from_millis(50), check).await
}

struct Cluster {
    api: TestApi,
    client: Client,
}

impl Cluster {
    async fn start(nodes: &[(&str, Value)]) -> Cluster {
        let api = TestApi::start().await.unwrap();
        api.install_buoy_crds().unwrap();
        let client = api.client().unwrap();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        for ns in [NS, "team"] {
            namespaces
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
                )
                .await
                .unwrap();
        }
        // As an install does: a pool that lets the test namespaces claim the test LAN's
        // addresses (the operator enforces the address policy by default).
        let pools: Api<buoy_crds::AddressPool> = Api::all(client.clone());
        pools
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "buoy.io/v1alpha1", "kind": "AddressPool",
                    "metadata": {"name": "test-lan"},
                    "spec": {"addresses": ["10.0.0.0/8", "192.168.60.0/24"],
                             "namespaces": ["default", NS, "team"]},
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let node_api: Api<Node> = Api::all(client.clone());
        for (name, labels) in nodes {
            node_api
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
                        .unwrap(),
                )
                .await
                .unwrap();
        }
        Cluster { api, client }
    }

    fn operator(&self, identity: &str, extra: &[&str]) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_buoy-operator"));
        cmd.args(["run", "--namespace", NS]);
        if !extra.contains(&"--metrics-address") {
            cmd.args(["--metrics-address", "127.0.0.1:0"]);
        }
        cmd.args([
            "--identity",
            identity,
            "--agent-image",
            "buoy-agent:test",
            "--lease-duration",
            "2s",
            "--release-timeout",
            "3s",
        ])
        .args(extra)
        .env("KUBECONFIG", self.api.kubeconfig_path())
        .env("RUST_LOG", "info")
        .env_remove("POD_NAMESPACE")
        .env_remove("POD_NAME");
        Proc::spawn(identity, cmd).unwrap()
    }

    fn vips(&self, ns: &str) -> Api<VirtualIP> {
        Api::namespaced(self.client.clone(), ns)
    }

    async fn create_vip(&self, ns: &str, name: &str, spec: Value) -> VirtualIP {
        let vip: VirtualIP = serde_json::from_value(json!({
            "apiVersion": "buoy.io/v1alpha1", "kind": "VirtualIP",
            "metadata": {"name": name}, "spec": spec}))
        .unwrap();
        self.vips(ns)
            .create(&PostParams::default(), &vip)
            .await
            .unwrap()
    }

    /// What a node agent writes: its own `status.nodes[]` entry, by server-side apply.
    async fn report(&self, ns: &str, name: &str, node: &str, entry: Value) {
        let mut entry = entry;
        entry["node"] = json!(node);
        let body = json!({"apiVersion": "buoy.io/v1alpha1", "kind": "VirtualIP",
                          "status": {"nodes": [entry]}});
        self.vips(ns)
            .patch_status(
                name,
                &PatchParams::apply(&format!("buoy-agent/{node}")).force(),
                &Patch::Apply(body),
            )
            .await
            .unwrap();
    }

    async fn condition(
        &self,
        ns: &str,
        name: &str,
        type_: &str,
    ) -> Option<(String, String, String)> {
        let v = self.vips(ns).get(name).await.ok()?;
        let c = v
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == type_)?;
        Some((c.status, c.reason, c.message))
    }

    async fn wait_condition(
        &self,
        ns: &str,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
    ) -> String {
        eventually(
            &format!("{ns}/{name} {type_}={status} ({reason})"),
            || async {
                let (s, r, m) = self.condition(ns, name, type_).await?;
                (s == status && r == reason).then_some(m)
            },
        )
        .await
    }

    async fn events_of(&self, ns: &str, name: &str) -> Vec<(String, String, String)> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), ns);
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    async fn wait_event(&self, ns: &str, name: &str, reason: &str) -> (String, String, String) {
        eventually(&format!("event {reason} on {name}"), || async {
            self.events_of(ns, name)
                .await
                .into_iter()
                .find(|e| e.1 == reason)
        })
        .await
    }

    async fn gone(&self, ns: &str, name: &str) -> bool {
        matches!(self.vips(ns).get(name).await, Err(kube::Error::Api(s)) if s.code == 404)
    }
}

async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

fn three_nodes() -> Vec<(&'static str, Value)> {
    vec![
        ("n1", json!({"role": "lb"})),
        ("n2", json!({"role": "lb"})),
        ("n3", json!({})),
    ]
}

#[tokio::test]
async fn daemonsets_allocation_and_status_from_agent_reports() {
    let mut c = Cluster::start(&three_nodes()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics = format!("127.0.0.1:{port}");
    let op = c.operator(
        "op-1",
        &["--leader-election", "false", "--metrics-address", &metrics],
    );
    c.create_vip(NS, "web", json!({"addresses": ["192.168.60.88"]}))
        .await;
    c.create_vip(
        "default",
        "api",
        json!({"addresses": ["192.168.60.89"], "virtualRouterID": 51}),
    )
    .await;

    // The DaemonSet of the default placement, as the contract says.
    let dss: Api<DaemonSet> = Api::namespaced(c.client.clone(), NS);
    let ds = eventually("the agent DaemonSet", || async {
        dss.get("buoy-agent-ad1269f96e").await.ok()
    })
    .await;
    let v = serde_json::to_value(&ds).unwrap();
    assert_eq!(
        v.pointer("/metadata/labels"),
        Some(&json!({"app.kubernetes.io/name": "buoy-agent", "buoy.io/placement": "ad1269f96e"}))
    );
    let owners: Vec<String> = ds
        .owner_references()
        .iter()
        .map(|o| o.name.clone())
        .collect();
    assert_eq!(
        owners,
        vec!["web"],
        "owned by the VirtualIPs of its namespace"
    );
    let pod = v.pointer("/spec/template/spec").unwrap();
    assert_eq!(pod["hostNetwork"], json!(true));
    assert_eq!(pod["dnsPolicy"], json!("ClusterFirstWithHostNet"));
    assert_eq!(pod["serviceAccountName"], json!("buoy-agent"));
    assert_eq!(pod["terminationGracePeriodSeconds"], json!(30));
    let agent = &pod["containers"][0];
    assert_eq!(agent["name"], json!("agent"));
    assert_eq!(agent["image"], json!("buoy-agent:test"));
    assert_eq!(
        agent["args"],
        json!([
            "run",
            "--node-name",
            "$(NODE_NAME)",
            "--placement",
            "ad1269f96e",
            "--address-policy",
            "Enforce"
        ])
    );
    // The admin endpoint is on the node's own address ($HOST_IP), never on every address.
    assert_eq!(
        agent["env"][2]["valueFrom"]["fieldRef"]["fieldPath"],
        json!("status.hostIP")
    );
    assert_eq!(
        agent["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        json!("spec.nodeName")
    );
    assert_eq!(
        agent["env"][1]["valueFrom"]["fieldRef"]["fieldPath"],
        json!("metadata.namespace")
    );
    assert_eq!(
        agent["securityContext"]["capabilities"],
        json!({"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE"]})
    );
    assert_eq!(
        agent["securityContext"]["seccompProfile"],
        json!({"type": "RuntimeDefault"})
    );
    assert_eq!(agent["securityContext"]["privileged"], json!(false));
    assert_eq!(agent["livenessProbe"]["httpGet"]["port"], json!(9901));
    assert_eq!(agent["livenessProbe"]["httpGet"]["path"], json!("/healthz"));
    assert_eq!(agent["readinessProbe"]["httpGet"]["path"], json!("/readyz"));
    assert_eq!(agent["resources"]["requests"]["cpu"], json!("50m"));
    assert_eq!(
        v.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable"),
        Some(&json!(1))
    );
    // The scheduler shim runs one agent pod per node.
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), NS);
    eventually("three agent pods", || async {
        let n = pods
            .list(&ListParams::default().labels("buoy.io/placement=ad1269f96e"))
            .await
            .ok()?
            .items
            .len();
        (n == 3).then_some(())
    })
    .await;

    // Allocation: a VRID for web (51 is api's), priorities for every node, the finalizer.
    let web = eventually("web's allocations", || async {
        let v = c.vips(NS).get("web").await.ok()?;
        (v.status.as_ref()?.virtual_router_id.is_some()
            && v.annotations().contains_key("buoy.io/priorities"))
        .then_some(v)
    })
    .await;
    assert_eq!(web.status.as_ref().unwrap().virtual_router_id, Some(1));
    assert!(web.finalizers().contains(&"buoy.io/release".to_string()));
    let prio: std::collections::BTreeMap<String, u8> =
        serde_json::from_str(&web.annotations()["buoy.io/priorities"]).unwrap();
    assert_eq!(prio.keys().collect::<Vec<_>>(), vec!["n1", "n2", "n3"]);
    assert!(prio.values().any(|p| *p == 200));
    c.wait_event(NS, "web", "VirtualRouterIDAllocated").await;
    let api_vip = eventually("api's status", || async {
        let v = c.vips("default").get("api").await.ok()?;
        v.status.as_ref()?.virtual_router_id.map(|_| v)
    })
    .await;
    assert_eq!(api_vip.status.unwrap().virtual_router_id, Some(51));
    c.wait_condition(NS, "web", "Ready", "False", "NoMaster")
        .await;

    // Agents report; the operator aggregates without touching their entries.
    c.report(
        NS,
        "web",
        "n1",
        json!({"state": "Master", "priority": 200, "serving": true}),
    )
    .await;
    c.wait_condition(NS, "web", "Ready", "True", "Serving")
        .await;
    c.wait_condition(NS, "web", "Degraded", "True", "NoBackup")
        .await;
    c.report(NS, "web", "n2", json!({"state": "Backup", "priority": 199}))
        .await;
    c.wait_condition(NS, "web", "Degraded", "False", "Redundant")
        .await;
    let web = c.vips(NS).get("web").await.unwrap();
    let st = web.status.unwrap();
    assert_eq!(st.master.as_deref(), Some("n1"));
    assert_eq!(st.nodes.len(), 2, "the agents' entries stay");
    assert_eq!(st.observed_generation, Some(1));
    let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.observed_generation, Some(1));
    c.report(
        NS,
        "web",
        "n2",
        json!({"state": "Fault", "message": "eth0 is down"}),
    )
    .await;
    let m = c
        .wait_condition(NS, "web", "Degraded", "True", "NodeFault")
        .await;
    assert_eq!(m, "in Fault: n2 (eth0 is down)");
    c.wait_event(NS, "web", "NodeFault").await;

    // A second placement gets its own DaemonSet with the selector as node affinity; it goes
    // with its last VirtualIP.
    let lb = c.create_vip(NS, "lb-only", json!({"addresses": ["192.168.60.90"], "nodeSelector": {"matchLabels": {"role": "lb"}}})).await;
    let key = buoy_crds::placement::key(&lb.spec);
    let name = format!("buoy-agent-{key}");
    let ds = eventually("the lb DaemonSet", || async { dss.get(&name).await.ok() }).await;
    let v = serde_json::to_value(&ds).unwrap();
    assert_eq!(
        v.pointer("/spec/template/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchExpressions"),
        Some(&json!([{"key": "role", "operator": "In", "values": ["lb"]}]))
    );
    eventually("two lb pods", || async {
        let n = pods
            .list(&ListParams::default().labels(&format!("buoy.io/placement={key}")))
            .await
            .ok()?
            .items
            .len();
        (n == 2).then_some(())
    })
    .await;
    let lb_prio = eventually("lb priorities", || async {
        c.vips(NS)
            .get("lb-only")
            .await
            .ok()?
            .annotations()
            .get("buoy.io/priorities")
            .cloned()
    })
    .await;
    let lb_prio: std::collections::BTreeMap<String, u8> = serde_json::from_str(&lb_prio).unwrap();
    assert_eq!(lb_prio.keys().collect::<Vec<_>>(), vec!["n1", "n2"]);
    c.vips(NS)
        .delete("lb-only", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the lb DaemonSet goes", || async {
        matches!(dss.get(&name).await, Err(kube::Error::Api(s)) if s.code == 404).then_some(())
    })
    .await;
    assert!(dss.get("buoy-agent-ad1269f96e").await.is_ok());

    // Metrics and probes are served.
    let text = http_get(&metrics, "/metrics").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let count = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(count("buoy_operator_reconciles_total") >= 1.0, "{text}");
    assert!(count("buoy_operator_reconcile_duration_seconds_count") >= 1.0);
    assert!(text.contains("buoy_operator_reconcile_errors_total"));
    assert!(text.contains("buoy_operator_writes_total{kind=\"daemonset\"}"));
    let body = text.split_once("\r\n\r\n").unwrap().1;
    if let Err(e) = buoy_tests::promtool::check_metrics(body) {
        panic!("promtool check metrics on the operator's /metrics:\n{e}\n{body}");
    }
    let value = |series: &str| {
        buoy_tests::promtool::sample(body, series)
            .unwrap_or_else(|| panic!("no {series} in:\n{body}"))
    };
    // The process and the build.
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_open_fds") >= 3.0);
    assert!(value("process_cpu_seconds_total") >= 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let born = value("process_start_time_seconds");
    assert!(born <= now && born > now - 120.0, "{born}");
    let info = body
        .lines()
        .find(|l| l.starts_with("buoy_build_info{"))
        .unwrap_or_else(|| panic!("no buoy_build_info:\n{body}"));
    assert!(
        info.ends_with(&format!(",version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))),
        "{info}"
    );
    // Reconcile latency per step: planning and every kind's writes, in every pass.
    let passes = value("buoy_operator_reconcile_duration_seconds_count");
    for kind in [
        "plan",
        "daemonset",
        "virtualip",
        "upstreampool",
        "addresspool",
        "bgppeer",
        "service",
    ] {
        let series =
            format!("buoy_operator_reconcile_step_duration_seconds_count{{kind=\"{kind}\"}}");
        let steps = value(&series);
        assert!(
            steps >= 1.0 && steps <= passes + 1.0,
            "{series} {steps}, {passes} passes"
        );
    }
    // The watches' errors, by kind, from zero.
    assert_eq!(
        value("buoy_operator_watch_errors_total{kind=\"VirtualIP\"}"),
        0.0
    );
    assert_eq!(
        value("buoy_operator_watch_errors_total{kind=\"DaemonSet\"}"),
        0.0
    );
    // The AddressPool's use, as its status says (web's and api's addresses, once lb-only's is
    // released).
    let pools: Api<buoy_crds::AddressPool> = Api::all(c.client.clone());
    eventually(
        "the AddressPool's use in its status and the metrics",
        || async {
            let status = pools.get("test-lan").await.ok()?.status?;
            let text = http_get(&metrics, "/metrics").await;
            let body = text.split_once("\r\n\r\n")?.1.to_string();
            let gauge = |name: &str| {
                buoy_tests::promtool::sample(&body, &format!("{name}{{addresspool=\"test-lan\"}}"))
            };
            (status.allocated == 2
                && status.available > 1000
                && gauge("buoy_addresspool_allocated_addresses") == Some(status.allocated as f64)
                && gauge("buoy_addresspool_available_addresses") == Some(status.available as f64))
            .then_some(())
        },
    )
    .await;
    assert!(
        http_get(&metrics, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        http_get(&metrics, "/readyz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    // The API server goes away: every failed watch attempt is counted (BuoyWatchFailing).
    c.api.stop();
    eventually("the operator's failed watches counted", || async {
        let text = http_get(&metrics, "/metrics").await;
        let body = text.split_once("\r\n\r\n")?.1.to_string();
        let errors = buoy_tests::promtool::sample(
            &body,
            "buoy_operator_watch_errors_total{kind=\"VirtualIP\"}",
        )?;
        (errors >= 1.0).then_some(())
    })
    .await;
    drop(op);
}

#[tokio::test]
async fn conflicts_are_reported_and_cleared() {
    let c = Cluster::start(&three_nodes()).await;
    let _op = c.operator("op-1", &["--leader-election", "false"]);
    c.create_vip("default", "first", json!({"addresses": ["10.0.0.1/24"]}))
        .await;
    c.wait_condition("default", "first", "Conflict", "False", "NoConflict")
        .await;
    c.create_vip("team", "second", json!({"addresses": ["10.0.0.1"]}))
        .await;
    let m = c
        .wait_condition("team", "second", "Conflict", "True", "AddressInUse")
        .await;
    assert_eq!(
        m,
        "address 10.0.0.1 is already used by VirtualIP default/first"
    );
    let (_, reason, msg) = c.condition("team", "second", "Ready").await.unwrap();
    assert_eq!(reason, "Conflict");
    assert!(msg.contains("default/first"));
    let second = eventually("the conflict annotation", || async {
        let v = c.vips("team").get("second").await.ok()?;
        v.annotations()
            .contains_key("buoy.io/conflict")
            .then_some(v)
    })
    .await;
    assert_eq!(
        second.annotations().get("buoy.io/conflict"),
        Some(&m),
        "agents skip it"
    );
    assert!(!second.annotations().contains_key("buoy.io/priorities"));
    let (kind, _, note) = c.wait_event("team", "second", "AddressInUse").await;
    assert_eq!(kind, "Warning");
    assert!(note.contains("default/first"));
    // The first keeps working.
    c.wait_condition("default", "first", "Conflict", "False", "NoConflict")
        .await;

    // Same spec VRID on the same interface.
    c.create_vip(
        "default",
        "vr-a",
        json!({"addresses": ["10.0.1.1"], "virtualRouterID": 77, "interface": "eth0"}),
    )
    .await;
    c.wait_condition("default", "vr-a", "Conflict", "False", "NoConflict")
        .await;
    c.create_vip(
        "default",
        "vr-b",
        json!({"addresses": ["10.0.1.2"], "virtualRouterID": 77, "interface": "eth0"}),
    )
    .await;
    let m = c
        .wait_condition(
            "default",
            "vr-b",
            "Conflict",
            "True",
            "VirtualRouterIDInUse",
        )
        .await;
    assert_eq!(
        m,
        "virtual router ID 77 on interface eth0 is already used by VirtualIP default/vr-a"
    );

    // Cleared when the first goes (its finalizer releases at once: no master).
    c.vips("default")
        .delete("first", &DeleteParams::default())
        .await
        .unwrap();
    c.wait_condition("team", "second", "Conflict", "False", "NoConflict")
        .await;
    eventually("the conflict annotation goes", || async {
        let v = c.vips("team").get("second").await.ok()?;
        (!v.annotations().contains_key("buoy.io/conflict")
            && v.annotations().contains_key("buoy.io/priorities"))
        .then_some(())
    })
    .await;
    // And when the user fixes the clash.
    c.vips("default")
        .patch(
            "vr-b",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"virtualRouterID": 78}})),
        )
        .await
        .unwrap();
    c.wait_condition("default", "vr-b", "Conflict", "False", "NoConflict")
        .await;
}

#[tokio::test]
async fn a_missing_pool_then_created_makes_the_vip_ready() {
    let c = Cluster::start(&three_nodes()).await;
    let _op = c.operator("op-1", &["--leader-election", "false"]);
    c.create_vip(
        "default",
        "web",
        json!({"addresses": ["10.0.0.5"],
        "listeners": [{"name": "http", "port": 80, "upstreamPool": "backends"}]}),
    )
    .await;
    let m = c
        .wait_condition("default", "web", "Ready", "False", "UpstreamPoolNotFound")
        .await;
    assert_eq!(
        m,
        "listener http: UpstreamPool backends not found in namespace default"
    );
    c.wait_event("default", "web", "UpstreamPoolNotFound").await;
    c.report(
        "default",
        "web",
        "n1",
        json!({"state": "Master", "serving": true}),
    )
    .await;
    c.report("default", "web", "n2", json!({"state": "Backup"}))
        .await;
    // Still missing: the reports do not make it Ready.
    c.wait_condition("default", "web", "Ready", "False", "UpstreamPoolNotFound")
        .await;
    let pools: Api<UpstreamPool> = Api::namespaced(c.client.clone(), "default");
    let pool: UpstreamPool = serde_json::from_value(json!({
        "apiVersion": "buoy.io/v1alpha1", "kind": "UpstreamPool", "metadata": {"name": "backends"},
        "spec": {"backends": [{"address": "10.1.0.1", "port": 8080}, {"address": "10.1.0.2", "port": 8080}]}}))
    .unwrap();
    pools.create(&PostParams::default(), &pool).await.unwrap();
    c.wait_condition("default", "web", "Ready", "True", "Serving")
        .await;
    let p = eventually("the pool's status", || async {
        let p = pools.get("backends").await.ok()?;
        p.status.clone()?.backends.map(|_| p)
    })
    .await;
    let st = p.status.unwrap();
    assert_eq!(st.backends.map(|b| (b.total, b.ready)), Some((2, 2)));
    assert_eq!(st.observed_generation, Some(1));
    assert_eq!(st.conditions[0].type_, "Ready");
    // The master stops serving: Ready follows.
    c.report(
        "default",
        "web",
        "n1",
        json!({"state": "Master", "serving": false, "message": "no healthy backend for http"}),
    )
    .await;
    let m = c
        .wait_condition("default", "web", "Ready", "False", "NotServing")
        .await;
    assert!(m.contains("no healthy backend"));
}

#[tokio::test]
async fn deletion_waits_for_the_master_to_let_go() {
    let c = Cluster::start(&three_nodes()).await;
    let _op = c.operator("op-1", &["--leader-election", "false"]);
    c.create_vip("default", "held", json!({"addresses": ["10.0.0.7"]}))
        .await;
    c.create_vip("default", "orphaned", json!({"addresses": ["10.0.0.8"]}))
        .await;
    for name in ["held", "orphaned"] {
        eventually("the finalizer", || async {
            c.vips("default")
                .get(name)
                .await
                .ok()?
                .finalizers()
                .contains(&"buoy.io/release".to_string())
                .then_some(())
        })
        .await;
        c.report(
            "default",
            name,
            "n1",
            json!({"state": "Master", "serving": true}),
        )
        .await;
    }
    c.vips("default")
        .delete("held", &DeleteParams::default())
        .await
        .unwrap();
    c.vips("default")
        .delete("orphaned", &DeleteParams::default())
        .await
        .unwrap();
    // Held while n1 is master (the release timeout is 3s in these tests).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let held = c.vips("default").get("held").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    // The agent lets go (it removes its entry when it no longer serves the VIP).
    let body =
        json!({"apiVersion": "buoy.io/v1alpha1", "kind": "VirtualIP", "status": {"nodes": []}});
    c.vips("default")
        .patch_status(
            "held",
            &PatchParams::apply("buoy-agent/n1").force(),
            &Patch::Apply(body),
        )
        .await
        .unwrap();
    eventually("held goes once released", || async {
        c.gone("default", "held").await.then_some(())
    })
    .await;
    // The other agent never answers: the timeout lets the deletion proceed, with a warning.
    eventually("orphaned goes after the timeout", || async {
        c.gone("default", "orphaned").await.then_some(())
    })
    .await;
    let (kind, _, note) = c.wait_event("default", "orphaned", "ReleaseTimedOut").await;
    assert_eq!(kind, "Warning");
    assert!(note.starts_with("n1 "), "{note}");
    c.wait_event("default", "held", "Released").await;
}

async fn holder(c: &Cluster) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), NS);
    leases
        .get("buoy-operator")
        .await
        .ok()?
        .spec?
        .holder_identity
}

#[tokio::test]
async fn two_replicas_one_leader_and_leadership_moves() {
    let c = Cluster::start(&three_nodes()).await;
    let mut a = c.operator("op-a", &[]);
    let b = c.operator("op-b", &[]);
    let first = eventually("a leader", || async { holder(&c).await }).await;
    assert!(first == "op-a" || first == "op-b");
    c.create_vip("default", "one", json!({"addresses": ["10.0.0.1"]}))
        .await;
    c.wait_condition("default", "one", "Ready", "False", "NoMaster")
        .await;
    // Only the leader reconciles.
    let (mut leader, follower) = if first == "op-a" { (a, b) } else { (b, a) };
    assert!(
        leader
            .wait_for_line("leading: reconciling", Duration::from_secs(5))
            .is_some()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !follower
            .output()
            .iter()
            .any(|l| l.contains("leading: reconciling")),
        "one leader"
    );

    // The leader stops (SIGTERM): it releases the Lease and the other takes over.
    leader.signal(libc::SIGTERM);
    assert_eq!(
        leader.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{:?}",
        leader.output()
    );
    let second = eventually("the other replica leads", || async {
        holder(&c).await.filter(|h| *h != first)
    })
    .await;
    assert_eq!(second, follower.name);
    assert!(
        follower
            .wait_for_line("leading: reconciling", Duration::from_secs(10))
            .is_some()
    );
    c.create_vip("default", "two", json!({"addresses": ["10.0.0.2"]}))
        .await;
    c.wait_condition("default", "two", "Ready", "False", "NoMaster")
        .await;

    // The new leader dies without releasing (SIGKILL): a new replica takes over once the
    // Lease expires.
    a = follower;
    a.signal(libc::SIGKILL);
    let _ = a.wait_exit(Duration::from_secs(5));
    let c3 = c.operator("op-c", &[]);
    eventually("op-c leads after the lease expires", || async {
        (holder(&c).await.as_deref() == Some("op-c")).then_some(())
    })
    .await;
    c.create_vip("default", "three", json!({"addresses": ["10.0.0.3"]}))
        .await;
    c.wait_condition("default", "three", "Ready", "False", "NoMaster")
        .await;
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), NS);
    let transitions = leases
        .get("buoy-operator")
        .await
        .unwrap()
        .spec
        .unwrap()
        .lease_transitions;
    assert!(transitions >= Some(2), "{transitions:?}");
    drop(c3);
}

#[tokio::test]
async fn allocations_survive_a_restart_and_foreign_routers_move_a_vrid() {
    let c = Cluster::start(&three_nodes()).await;
    let op = c.operator("op-1", &["--leader-election", "false"]);
    for (name, addr) in [("a", "10.0.0.1"), ("b", "10.0.0.2"), ("c", "10.0.0.3")] {
        c.create_vip("default", name, json!({"addresses": [addr]}))
            .await;
    }
    let vrid = |name: &'static str| {
        let c = &c;
        async move {
            c.vips("default")
                .get(name)
                .await
                .ok()?
                .status?
                .virtual_router_id
        }
    };
    let before = eventually("three VRIDs", || async {
        Some((vrid("a").await?, vrid("b").await?, vrid("c").await?))
    })
    .await;
    assert_eq!(before, (1, 2, 3));
    let prio_b =
        c.vips("default").get("b").await.unwrap().annotations()["buoy.io/priorities"].clone();

    // A new operator (no memory) after "a" went: the others keep theirs, the newcomer takes 1.
    drop(op);
    c.vips("default")
        .delete("a", &DeleteParams::default())
        .await
        .unwrap();
    let _op = c.operator("op-2", &["--leader-election", "false"]);
    eventually("a goes", || async {
        c.gone("default", "a").await.then_some(())
    })
    .await;
    c.create_vip("default", "d", json!({"addresses": ["10.0.0.4"]}))
        .await;
    assert_eq!(
        eventually("d's VRID", || async { vrid("d").await }).await,
        1
    );
    assert_eq!((vrid("b").await, vrid("c").await), (Some(2), Some(3)));
    assert_eq!(
        c.vips("default").get("b").await.unwrap().annotations()["buoy.io/priorities"],
        prio_b,
        "priorities are stable too"
    );

    // An agent sees foreign routers on b's VRID: b moves to a free one, with a Warning.
    c.report(
        "default",
        "b",
        "n1",
        json!({"state": "Master", "serving": true, "foreignRouters": ["192.168.1.250"]}),
    )
    .await;
    let moved = eventually("b's VRID moves", || async {
        vrid("b").await.filter(|v| *v != 2)
    })
    .await;
    assert_eq!(moved, 4, "lowest free: 1 is d's, 3 is c's, 2 is avoided");
    let (kind, _, note) = c.wait_event("default", "b", "VirtualRouterIDMoved").await;
    assert_eq!(kind, "Warning");
    assert!(note.contains("192.168.1.250"), "{note}");
    // A spec VRID cannot move: Degraded says so.
    c.create_vip(
        "default",
        "fixed",
        json!({"addresses": ["10.0.0.5"], "virtualRouterID": 9}),
    )
    .await;
    c.report(
        "default",
        "fixed",
        "n1",
        json!({"state": "Master", "serving": true, "foreignRouters": ["192.168.1.251"]}),
    )
    .await;
    let m = c
        .wait_condition("default", "fixed", "Degraded", "True", "ForeignRouters")
        .await;
    assert!(m.contains("192.168.1.251") && m.contains(" 9 "), "{m}");
    assert_eq!(vrid("fixed").await, Some(9));
    // A newcomer does not get the foreign routers' VRID 2.
    c.create_vip("default", "e", json!({"addresses": ["10.0.0.6"]}))
        .await;
    assert_eq!(
        eventually("e's VRID", || async { vrid("e").await }).await,
        5
    );
}

#[tokio::test]
async fn a_service_backed_pool_counts_its_endpoint_slices() {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let c = Cluster::start(&three_nodes()).await;
    let _op = c.operator("op-1", &["--leader-election", "false"]);
    let pools: Api<UpstreamPool> = Api::namespaced(c.client.clone(), "default");
    let pool: UpstreamPool = serde_json::from_value(json!({
        "apiVersion": "buoy.io/v1alpha1", "kind": "UpstreamPool", "metadata": {"name": "web"},
        "spec": {"service": {"name": "web", "port": 80}}}))
    .unwrap();
    pools.create(&PostParams::default(), &pool).await.unwrap();
    let counts = |total: u32, ready: u32| {
        let pools = pools.clone();
        async move {
            let st = pools.get("web").await.ok()?.status?;
            let b = st.backends?;
            (b.total == total && b.ready == ready).then_some(st.conditions)
        }
    };
    let conditions = eventually("no endpoints yet", || counts(0, 0)).await;
    assert_eq!(
        (conditions[0].status.as_str(), conditions[0].reason.as_str()),
        ("False", "NoBackends")
    );
    let slices: Api<EndpointSlice> = Api::namespaced(c.client.clone(), "default");
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.2.0.1"], "conditions": {"ready": true}},
                      {"addresses": ["10.2.0.2"], "conditions": {"ready": false}}]}))
    .unwrap();
    slices.create(&PostParams::default(), &slice).await.unwrap();
    let conditions = eventually("the slice counted", || counts(2, 1)).await;
    assert_eq!(
        (conditions[0].status.as_str(), conditions[0].reason.as_str()),
        ("True", "BackendsAvailable")
    );
}

#[tokio::test]
async fn an_object_the_operator_cannot_read_is_left_out_with_a_warning() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let c = Cluster::start(&three_nodes()).await;
    // Version skew: a CRD that accepts anything (as a newer or older API might).
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    let mut crd = crds.get("virtualips.buoy.io").await.unwrap();
    let mut v = serde_json::to_value(&crd).unwrap();
    v["spec"]["versions"][0]["schema"]["openAPIV3Schema"] =
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    crd = serde_json::from_value(v).unwrap();
    crds.replace("virtualips.buoy.io", &PostParams::default(), &crd)
        .await
        .unwrap();
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        c.client.clone(),
        "default",
        &kube::api::ApiResource::erase::<VirtualIP>(&()),
    );
    let bad: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "buoy.io/v1alpha1", "kind": "VirtualIP",
        "metadata": {"name": "bad"}, "spec": {"addresses": "not a list"}}))
    .unwrap();
    raw.create(&PostParams::default(), &bad).await.unwrap();

    let op = c.operator("op-1", &["--leader-election", "false"]);
    c.create_vip("default", "good", json!({"addresses": ["10.0.0.1"]}))
        .await;
    c.wait_condition("default", "good", "Ready", "False", "NoMaster")
        .await;
    let (kind, _, note) = c.wait_event("default", "bad", "InvalidObject").await;
    assert_eq!(kind, "Warning");
    assert!(note.contains("cannot read"), "{note}");
    let mut op = op;
    assert!(op.running(), "the operator keeps running");
}

/// The AddressPool of the address-policy test: three addresses for `team-a`, on the `role=lb`
/// nodes, applied as a cluster admin would.
const TEAM_A_POOL: &str = r#"
apiVersion: buoy.io/v1alpha1
kind: AddressPool
metadata:
  name: team-a-lan
spec:
  addresses: ["10.77.0.10-10.77.0.12"]
  namespaces: [team-a]
  nodeSelector:
    matchLabels: {role: lb}
"#;

/// Two VirtualIPs the API server accepts (they are valid) but no AddressPool allows: the
/// gateway's address in team-a, and team-b, which no pool admits.
const NOT_ALLOWED: &str = r#"
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {name: bad, namespace: team-a}
spec:
  addresses: ["10.77.0.1"]
---
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {name: other, namespace: team-b}
spec:
  addresses: ["10.77.0.30"]
"#;

/// Waits until the AddressPool `name` reports `allocated` and `available` with the Ready
/// condition's `reason`; returns its status.
async fn wait_address_pool(
    c: &Cluster,
    name: &str,
    allocated: i64,
    available: i64,
    reason: &str,
) -> buoy_crds::AddressPoolStatus {
    let pools: Api<buoy_crds::AddressPool> = Api::all(c.client.clone());
    eventually(
        &format!("AddressPool {name}: {allocated} allocated, {available} available, {reason}"),
        || async {
            let st = pools.get(name).await.ok()?.status?;
            let ready = st.conditions.iter().find(|c| c.type_ == "Ready")?;
            (st.allocated == allocated && st.available == available && ready.reason == reason)
                .then_some(st)
        },
    )
    .await
}

/// The addresses in effect in a VirtualIP's status, once there are some.
async fn wait_addresses(c: &Cluster, ns: &str, name: &str) -> VirtualIP {
    eventually(&format!("{ns}/{name}'s addresses"), || async {
        let v = c.vips(ns).get(name).await.ok()?;
        (!v.status.as_ref()?.addresses.is_empty()).then_some(v)
    })
    .await
}

/// The address policy end to end through the binary (`--address-policy Enforce`, the
/// default): a VirtualIP is served only on addresses an AddressPool admitting its namespace
/// holds, on the pool's nodes; the others say why (naming the address), get nothing allocated
/// and disturb nothing; a VirtualIP that names the pool gets its first free address, keeps it
/// across an operator restart, and the address is handed out again once it is gone; the pool's
/// status counts all along.
#[tokio::test]
async fn the_address_policy_serves_what_a_pool_allows_and_allocates_from_it() {
    use buoy_crds::policy::Range;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    const POOL: &str = "team-a-lan";
    let c = Cluster::start(&three_nodes()).await;
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    for ns in ["team-a", "team-b"] {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await
            .unwrap();
    }
    let kubectl = buoy_tests::kubectl::Kubectl::new(c.api.kubeconfig_path().to_path_buf());
    let apply = |yaml: &str| {
        let (ok, out, err) = kubectl.run(&["apply", "-f", "-"], Some(yaml));
        assert!(ok, "kubectl apply failed:\n{out}\n{err}");
    };
    apply(TEAM_A_POOL);
    let mut op = c.operator(
        "op-1",
        &["--leader-election", "false", "--address-policy", "Enforce"],
    );
    let st = wait_address_pool(&c, POOL, 0, 3, "AddressesAvailable").await;
    assert_eq!(st.observed_generation, Some(1));

    // 1. An address inside the pool: served, from the pool, on the pool's nodes (n3 is not
    // role=lb), with a VRID, priorities, the finalizer and an agent DaemonSet.
    c.create_vip("team-a", "ok", json!({"addresses": ["10.77.0.10"]}))
        .await;
    let ok = eventually("team-a/ok's allocations", || async {
        let v = c.vips("team-a").get("ok").await.ok()?;
        (v.status.as_ref()?.virtual_router_id.is_some()
            && v.annotations().contains_key("buoy.io/priorities"))
        .then_some(v)
    })
    .await;
    let st = ok.status.clone().unwrap();
    assert_eq!(st.virtual_router_id, Some(1));
    assert_eq!(st.addresses, ["10.77.0.10"]);
    assert_eq!(st.address_pool.as_deref(), Some(POOL));
    let prio: std::collections::BTreeMap<String, u8> =
        serde_json::from_str(&ok.annotations()["buoy.io/priorities"]).unwrap();
    assert_eq!(prio.keys().collect::<Vec<_>>(), ["n1", "n2"]);
    assert!(ok.finalizers().contains(&"buoy.io/release".to_string()));
    c.wait_condition("team-a", "ok", "Ready", "False", "NoMaster")
        .await;
    let pool_selector: LabelSelector =
        serde_json::from_value(json!({"matchLabels": {"role": "lb"}})).unwrap();
    let key = buoy_crds::placement::key_in(&ok.spec, Some(&pool_selector));
    let ds_name = format!("buoy-agent-{key}");
    let dss: Api<DaemonSet> = Api::namespaced(c.client.clone(), NS);
    let ds = eventually("team-a/ok's DaemonSet", || async {
        dss.get(&ds_name).await.ok()
    })
    .await;
    assert_eq!(
        serde_json::to_value(&ds).unwrap().pointer(
            "/spec/template/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchExpressions"
        ),
        Some(&json!([{"key": "role", "operator": "In", "values": ["lb"]}])),
        "the pool's nodeSelector is the DaemonSet's node affinity"
    );
    // The agents hold it: it serves.
    c.report(
        "team-a",
        "ok",
        "n1",
        json!({"state": "Master", "priority": 200, "serving": true}),
    )
    .await;
    c.report(
        "team-a",
        "ok",
        "n2",
        json!({"state": "Backup", "priority": 190}),
    )
    .await;
    c.wait_condition("team-a", "ok", "Ready", "True", "Serving")
        .await;
    c.wait_condition("team-a", "ok", "Degraded", "False", "Redundant")
        .await;
    wait_address_pool(&c, POOL, 1, 2, "AddressesAvailable").await;
    let ok_before = c.vips("team-a").get("ok").await.unwrap();

    // 2. The gateway's address in team-a and any address in team-b: accepted by the API server,
    // refused by the operator, with the address in the condition and in a Warning Event, and
    // nothing allocated (no VRID, no priorities, no addresses, no DaemonSet).
    apply(NOT_ALLOWED);
    for (ns, name, address, why) in [
        (
            "team-a",
            "bad",
            "10.77.0.1",
            "AddressPool team-a-lan (10.77.0.10-10.77.0.12) does not hold 10.77.0.1",
        ),
        (
            "team-b",
            "other",
            "10.77.0.30",
            "no AddressPool admits namespace team-b",
        ),
    ] {
        let m = c
            .wait_condition(ns, name, "Ready", "False", "AddressNotAllowed")
            .await;
        assert!(m.contains(address) && m.contains(why), "{ns}/{name}: {m}");
        let (kind, _, note) = c.wait_event(ns, name, "AddressNotAllowed").await;
        assert_eq!(kind, "Warning");
        assert!(note.contains(address), "{ns}/{name}: {note}");
        let v = c.vips(ns).get(name).await.unwrap();
        let st = v.status.clone().unwrap();
        assert_eq!(st.virtual_router_id, None, "{ns}/{name}");
        assert!(st.addresses.is_empty(), "{ns}/{name}: {:?}", st.addresses);
        assert_eq!(st.address_pool, None, "{ns}/{name}");
        assert!(
            !v.annotations().contains_key("buoy.io/priorities"),
            "{ns}/{name}"
        );
        assert_eq!(
            c.condition(ns, name, "Degraded").await.map(|d| (d.0, d.1)),
            Some(("False".into(), "NotServed".into()))
        );
    }
    let names: Vec<String> = dss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(
        names,
        std::slice::from_ref(&ds_name),
        "no DaemonSet for what is not served"
    );
    // team-a/ok is untouched: not even written.
    let ok_after = c.vips("team-a").get("ok").await.unwrap();
    assert_eq!(
        serde_json::to_value(&ok_after.status).unwrap(),
        serde_json::to_value(&ok_before.status).unwrap()
    );
    assert_eq!(ok_after.annotations(), ok_before.annotations());
    assert_eq!(
        ok_after.metadata.resource_version,
        ok_before.metadata.resource_version
    );
    wait_address_pool(&c, POOL, 1, 2, "AddressesAvailable").await;

    // 3. No address, the pool named: the first free one (10.77.0.10 is ok's).
    c.create_vip("team-a", "auto", json!({"addressPool": POOL}))
        .await;
    let auto = wait_addresses(&c, "team-a", "auto").await;
    let auto_status = auto.status.clone().unwrap();
    let range = Range::parse("10.77.0.10-10.77.0.12").unwrap();
    assert!(
        auto_status
            .addresses
            .iter()
            .all(|a| range.contains(a.parse().unwrap())),
        "{:?}",
        auto_status.addresses
    );
    assert_eq!(
        auto_status.addresses,
        ["10.77.0.11"],
        "the first free address"
    );
    assert_eq!(auto_status.address_pool.as_deref(), Some(POOL));
    assert_eq!(auto_status.virtual_router_id, Some(2));
    c.wait_condition("team-a", "auto", "Ready", "False", "NoMaster")
        .await;
    wait_address_pool(&c, POOL, 2, 1, "AddressesAvailable").await;
    // As `kubectl get` shows it (the printer columns).
    let table = kubectl.ok(&["get", "apool", POOL]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows.first().map(|r| r[..4].to_vec()),
        Some(vec!["NAME", "ADDRESSES", "ALLOCATED", "AVAILABLE"]),
        "{table}"
    );
    assert_eq!(
        rows.get(1).map(|r| r[..4].to_vec()),
        Some(vec![POOL, "[\"10.77.0.10-10.77.0.12\"]", "2", "1"]),
        "{table}"
    );
    // ok's status is still what it was (the barrier: auto's pass came after bad's and other's).
    let ok_after = c.vips("team-a").get("ok").await.unwrap();
    assert_eq!(
        serde_json::to_value(&ok_after.status).unwrap(),
        serde_json::to_value(&ok_before.status).unwrap()
    );

    // 4. The operator dies. Meanwhile ok moves to 10.77.0.12, so that 10.77.0.10 is free: an
    // operator that allocated afresh would give it to auto. And `late` asks the pool too. The
    // new operator (default policy) keeps auto's address and gives `late` 10.77.0.10.
    op.signal(libc::SIGKILL);
    let _ = op.wait_exit(Duration::from_secs(5));
    assert!(!op.running(), "the operator is gone");
    c.vips("team-a")
        .patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"addresses": ["10.77.0.12"]}})),
        )
        .await
        .unwrap();
    c.create_vip("team-a", "late", json!({"addressPool": POOL}))
        .await;
    let _op = c.operator("op-2", &["--leader-election", "false"]);
    let late = wait_addresses(&c, "team-a", "late").await;
    assert_eq!(late.status.unwrap().addresses, ["10.77.0.10"]);
    // The pool's status is written after the pass's VirtualIP writes: this pass is done.
    let st = wait_address_pool(&c, POOL, 3, 0, "Exhausted").await;
    assert_eq!(st.conditions[0].status, "False");
    let auto_now = c.vips("team-a").get("auto").await.unwrap();
    let auto_now_status = auto_now.status.clone().unwrap();
    assert_eq!(
        auto_now_status.addresses, auto_status.addresses,
        "kept across the restart"
    );
    assert_eq!(
        auto_now_status.virtual_router_id,
        auto_status.virtual_router_id
    );
    let ok_now = c.vips("team-a").get("ok").await.unwrap().status.unwrap();
    assert_eq!(ok_now.addresses, ["10.77.0.12"]);
    assert_eq!(ok_now.virtual_router_id, Some(1));

    // 5. auto goes (its finalizer released: no node reported Master): one address fewer in
    // use, and the next VirtualIP that asks gets it back.
    c.vips("team-a")
        .delete("auto", &DeleteParams::default())
        .await
        .unwrap();
    eventually("team-a/auto goes", || async {
        c.gone("team-a", "auto").await.then_some(())
    })
    .await;
    wait_address_pool(&c, POOL, 2, 1, "AddressesAvailable").await;
    c.create_vip("team-a", "again", json!({"addressPool": POOL}))
        .await;
    let again = wait_addresses(&c, "team-a", "again").await;
    assert_eq!(again.status.unwrap().addresses, auto_status.addresses);
    wait_address_pool(&c, POOL, 3, 0, "Exhausted").await;
    // One more: none left.
    c.create_vip("team-a", "one-more", json!({"addressPool": POOL}))
        .await;
    let m = c
        .wait_condition("team-a", "one-more", "Ready", "False", "PoolExhausted")
        .await;
    assert!(m.contains(POOL), "{m}");

    // The restarted operator (default policy) still refuses bad and other, as before.
    for (ns, name, address) in [
        ("team-a", "bad", "10.77.0.1"),
        ("team-b", "other", "10.77.0.30"),
    ] {
        let (s, r, m) = c.condition(ns, name, "Ready").await.unwrap();
        assert_eq!((s.as_str(), r.as_str()), ("False", "AddressNotAllowed"));
        assert!(m.contains(address), "{m}");
        let st = c.vips(ns).get(name).await.unwrap().status.unwrap();
        assert_eq!(st.virtual_router_id, None);
    }
}

const LB_POOL: &str = r#"
apiVersion: buoy.io/v1alpha1
kind: AddressPool
metadata:
  name: web-lan
spec:
  addresses: ["10.78.0.10-10.78.0.11"]
  namespaces: [web]
  autoAssign: true
"#;

fn lb_service(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: web\n{extra}spec:\n  type: LoadBalancer\n  loadBalancerClass: buoy.io/vrrp\n  selector: {{app: {name}}}\n  ports:\n    - {{port: 80, protocol: TCP}}\n"
    )
}

async fn service_ingress(c: &Cluster, name: &str) -> Vec<(String, String)> {
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(c.client.clone(), "web");
    let Ok(s) = services.get(name).await else {
        return Vec::new();
    };
    s.status
        .and_then(|s| s.load_balancer)
        .and_then(|l| l.ingress)
        .unwrap_or_default()
        .into_iter()
        .map(|i| (i.ip.unwrap_or_default(), i.ip_mode.unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn a_load_balancer_service_gets_an_address_a_virtualip_and_its_status() {
    let c = Cluster::start(&three_nodes()).await;
    let kubectl = buoy_tests::kubectl::Kubectl::new(c.api.kubeconfig_path().to_path_buf());
    let run = |args: &[&str], input: Option<&str>| {
        let (ok, out, err) = kubectl.run(args, input);
        assert!(ok, "kubectl {args:?} failed:\n{out}\n{err}");
    };
    run(&["create", "namespace", "web"], None);
    run(&["apply", "-f", "-"], Some(LB_POOL));
    let mut op = c.operator("op-1", &["--leader-election", "false"]);
    run(&["apply", "-f", "-"], Some(&lb_service("front", "")));

    // The Service's VirtualIP: announce only, the pool's first address, owned by the Service,
    // then planned as any VirtualIP (router ID, priorities).
    let vip = eventually("web/svc-front with its VRID", || async {
        let v = c.vips("web").get("svc-front").await.ok()?;
        v.status.as_ref()?.virtual_router_id.is_some().then_some(v)
    })
    .await;
    assert_eq!(vip.spec.addresses[0].0, "10.78.0.10");
    assert!(vip.spec.listeners.is_empty());
    assert_eq!(vip.owner_references()[0].kind, "Service");
    assert_eq!(vip.owner_references()[0].name, "front");
    assert_eq!(vip.labels()["buoy.io/service-name"], "front");
    let (_, _, note) = c.wait_event("web", "front", "AddressAssigned").await;
    assert_eq!(note, "given 10.78.0.10; no node announces it yet");
    assert!(service_ingress(&c, "front").await.is_empty());

    // A node announces it: the Service's status lists it, and an Event names the node.
    c.report(
        "web",
        "svc-front",
        "n1",
        json!({"state": "Master", "priority": 150}),
    )
    .await;
    let ingress = eventually("front's status.loadBalancer", || async {
        let i = service_ingress(&c, "front").await;
        (!i.is_empty()).then_some(i)
    })
    .await;
    assert_eq!(ingress, [("10.78.0.10".to_string(), "VIP".to_string())]);
    let (_, _, note) = c.wait_event("web", "front", "Announced").await;
    assert_eq!(note, "given 10.78.0.10; announced: 10.78.0.10 on node n1");

    // Refusals, each on its own Service, none disturbing front.
    run(
        &["apply", "-f", "-"],
        Some(&lb_service(
            "outside",
            "  annotations: {buoy.io/load-balancer-ips: 192.0.2.1}\n",
        )),
    );
    run(
        &["apply", "-f", "-"],
        Some(&lb_service(
            "taken",
            "  annotations: {buoy.io/load-balancer-ips: 10.78.0.10}\n",
        )),
    );
    run(&["apply", "-f", "-"], Some(&lb_service("second", "")));
    run(&["apply", "-f", "-"], Some(&lb_service("third", "")));
    let (kind, _, note) = c.wait_event("web", "outside", "AddressNotAllowed").await;
    assert_eq!(kind, "Warning");
    assert_eq!(
        note,
        "192.0.2.1 is in no AddressPool that admits namespace web (web-lan)"
    );
    let (_, _, note) = c.wait_event("web", "taken", "AddressInUse").await;
    assert_eq!(note, "10.78.0.10 is in use by Service web/front");
    c.wait_event("web", "second", "AddressAssigned").await;
    let (_, _, note) = c.wait_event("web", "third", "PoolExhausted").await;
    assert_eq!(note, "AddressPool web-lan has no free IPv4 address");
    for refused in ["svc-outside", "svc-taken", "svc-third"] {
        assert!(c.gone("web", refused).await, "{refused} has no VirtualIP");
    }
    assert_eq!(
        service_ingress(&c, "front").await,
        [("10.78.0.10".to_string(), "VIP".to_string())]
    );

    // A Service that stops being a LoadBalancer releases its address: its VirtualIP goes, and
    // the exhausted one gets the address.
    run(
        &[
            "patch",
            "service",
            "-n",
            "web",
            "second",
            "--type",
            "merge",
            "-p",
            r#"{"spec": {"type": "ClusterIP", "loadBalancerClass": null}}"#,
        ],
        None,
    );
    eventually("svc-second deleted (or being deleted)", || async {
        match c.vips("web").get("svc-second").await {
            Err(_) => Some(()),
            Ok(v) => v.metadata.deletion_timestamp.map(|_| ()),
        }
    })
    .await;
    let (_, _, note) = c.wait_event("web", "third", "AddressAssigned").await;
    assert!(note.starts_with("given 10.78.0.11"), "{note}");
    assert!(op.running(), "the operator keeps running");
}

/// BGP: a VirtualIP from a BGP pool in ECMP mode gets no router ID (one in ActiveStandby mode
/// does), and a BGPPeer's status sums up the session entries its agents write, each under its
/// own field manager (buoy_crds::contract), as the agents will.
#[tokio::test]
async fn bgp_virtualips_use_no_router_id_and_peers_sum_up_their_sessions() {
    use buoy_crds::{BGPPeer, BGPPeerNodeStatus, contract};
    let c = Cluster::start(&three_nodes()).await;
    let pools: Api<buoy_crds::AddressPool> = Api::all(c.client.clone());
    pools
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "buoy.io/v1alpha1", "kind": "AddressPool",
                "metadata": {"name": "routed"},
                "spec": {"addresses": ["10.96.0.0/28"], "namespaces": ["team"],
                         "announcement": "BGP"},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let peers: Api<BGPPeer> = Api::all(c.client.clone());
    peers
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "buoy.io/v1alpha1", "kind": "BGPPeer",
                "metadata": {"name": "tor1"},
                "spec": {"peerAddress": "192.168.60.1", "peerASN": 64512, "myASN": 64513},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let mut op = c.operator("op-1", &[]);
    c.create_vip("team", "ecmp", json!({"addressPool": "routed"}))
        .await;
    c.create_vip(
        "team",
        "standby",
        json!({"addressPool": "routed", "bgp": {"mode": "ActiveStandby"}}),
    )
    .await;
    let ecmp = wait_addresses(&c, "team", "ecmp").await;
    let status = ecmp.status.unwrap();
    assert_eq!(status.address_pool.as_deref(), Some("routed"));
    assert_eq!(status.virtual_router_id, None);
    let standby = eventually("standby's router ID", || async {
        c.vips("team")
            .get("standby")
            .await
            .ok()?
            .status?
            .virtual_router_id
    })
    .await;
    assert_eq!(standby, 1);
    assert!(
        !c.events_of("team", "ecmp")
            .await
            .iter()
            .any(|e| e.1.starts_with("VirtualRouterID")),
        "no router ID for ECMP"
    );

    // Before any agent reports: no session.
    // Until the condition says `message` too: each agent's report is a patch of its own, and
    // the operator may sum up the first before the second arrives.
    let wait_peer =
        |established: i32, status: &'static str, reason: &'static str, message: &'static str| {
            let peers = peers.clone();
            async move {
                eventually(
                    &format!("tor1: {established} established, {status} ({reason}): {message}"),
                    || async {
                        let st = peers.get("tor1").await.ok()?.status?;
                        let cond = st.conditions.iter().find(|c| c.type_ == "Established")?;
                        (st.established == established
                            && cond.status == status
                            && cond.reason == reason
                            && cond.message == message)
                            .then(|| st.clone())
                    },
                )
                .await
            }
        };
    wait_peer(
        0,
        "False",
        "NoSession",
        "no node reports a session with this peer",
    )
    .await;
    let report = |node: &'static str, entry: Option<Value>| {
        let peers = peers.clone();
        async move {
            let entry: Option<BGPPeerNodeStatus> =
                entry.map(|e| serde_json::from_value(e).unwrap());
            peers
                .patch_status(
                    "tor1",
                    &PatchParams::apply(&contract::agent_field_manager(node)).force(),
                    &Patch::Apply(contract::bgp_peer_entry_apply("tor1", entry.as_ref())),
                )
                .await
                .unwrap();
        }
    };
    report(
        "n1",
        Some(
            json!({"node": "n1", "state": "Established", "bfd": "Disabled",
                    "routes": ["10.96.0.1/32"]}),
        ),
    )
    .await;
    report(
        "n2",
        Some(json!({"node": "n2", "state": "Active",
                    "reason": "Notification received: Bad Peer AS"})),
    )
    .await;
    let st = wait_peer(
        1,
        "True",
        "SessionsUp",
        "1 of 2 node(s) established; not established: n2 (Active: Notification received: Bad Peer AS)",
    )
    .await;
    assert_eq!(
        st.nodes.len(),
        2,
        "the operator's apply keeps the agents' entries"
    );
    // n1's session drops; n2's agent stops and takes its entry away.
    report(
        "n1",
        Some(json!({"node": "n1", "state": "Idle", "reason": "Hold Timer Expired"})),
    )
    .await;
    report("n2", None).await;
    let st = wait_peer(
        0,
        "False",
        "NoSession",
        "no session established: n1 (Idle: Hold Timer Expired)",
    )
    .await;
    assert_eq!(
        st.nodes.iter().map(|n| n.node.as_str()).collect::<Vec<_>>(),
        ["n1"]
    );
    assert!(op.running(), "the operator keeps running");
}
