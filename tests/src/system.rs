//! The whole product as a user runs it, for end-to-end tests: the Kubernetes API test server,
//! the real `buoy-operator`, three nodes (network namespaces with Node objects) whose
//! `buoy-agent run` start when the DaemonSet shim schedules a pod there, two web backends and a
//! client. Needs root. A harness for tests: failures panic with the processes' logs.
#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    backend::{Backend, served_by_from},
    kubectl::Kubectl,
    netlab::Lab,
    process::workspace_bin,
    testapi::TestApi,
};

pub const NODES: [&str; 3] = ["n1", "n2", "n3"];
pub const VIP: &str = "10.77.0.100";

/// The Namespace and the three Node objects; only `lb_nodes` carry the `buoy.io/lb` label that
/// the apps' nodeSelector asks for (the others stand for hosts that do not run Buoy, such as a
/// keepalived host during a migration).
fn objects(lb_nodes: &[&str]) -> String {
    let mut out = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: buoy-system}\n");
    // What a cluster admin applies with the chart: who may claim the LAN's addresses (the
    // operator enforces the address policy by default).
    out.push_str(ADDRESS_POOL);
    for node in NODES {
        let labels = if lb_nodes.contains(&node) {
            ", labels: {buoy.io/lb: \"true\"}"
        } else {
            ""
        };
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Node\nmetadata: {{name: {node}{labels}}}\n"
        ));
    }
    out
}

/// The AddressPool of the lab's LAN (10.77.0.0/24), for the `default` namespace.
pub const ADDRESS_POOL: &str = "---\napiVersion: buoy.io/v1alpha1\nkind: AddressPool\nmetadata: {name: lab-lan}\nspec:\n  addresses: [10.77.0.0/24]\n  namespaces: [default]\n";

/// The pool `web` of the standard app: the two web backends.
pub const POOL: &str = r#"
apiVersion: buoy.io/v1alpha1
kind: UpstreamPool
metadata: {name: web, namespace: default}
spec:
  backends:
    - {address: 10.77.0.4, port: 80}
    - {address: 10.77.0.5, port: 80}
"#;

/// The VirtualIP `web` of the standard app: port 80 of 10.77.0.100 to the pool `web`, 100 ms
/// adverts, on the nodes labelled `buoy.io/lb`.
pub const VIRTUAL_IP: &str = r#"
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {name: web, namespace: default}
spec:
  addresses: [10.77.0.100]
  interface: eth0
  vrrp: {advertisementInterval: 100ms}
  nodeSelector: {matchLabels: {buoy.io/lb: "true"}}
  listeners:
    - {name: http, port: 80, protocol: HTTP, upstreamPool: web}
"#;

/// The standard app: [`POOL`] and [`VIRTUAL_IP`].
pub fn app() -> String {
    format!("{POOL}---\n{VIRTUAL_IP}")
}

/// One YAML document with values set at JSON pointers (`/spec/vrrp`, `/spec/backends/0/weight`;
/// an array index one past the end appends), printed as kubectl reads it back. Objects on the
/// way are created; a pointer through anything else panics, so a test never edits what is not
/// there (a text replacement that matches nothing would go unnoticed).
pub fn edit(yaml: &str, edits: &[(&str, Value)]) -> String {
    let mut doc: Value = serde_yaml::from_str(yaml).unwrap();
    for (pointer, value) in edits {
        set(&mut doc, pointer, value.clone());
    }
    buoy_crds::yaml11::to_string(&doc).unwrap()
}

fn set(doc: &mut Value, pointer: &str, value: Value) {
    let mut at = doc;
    let steps: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, step) in steps.iter().enumerate() {
        let last = i + 1 == steps.len();
        at = match at {
            Value::Object(map) => {
                let slot = map
                    .entry(step.to_string())
                    .or_insert_with(|| Value::Object(Default::default()));
                if last {
                    *slot = value;
                    return;
                }
                slot
            }
            Value::Array(items) => {
                let index: usize = step.parse().unwrap_or_else(|_| panic!("{pointer}: {step}"));
                assert!(index <= items.len(), "{pointer}: no element {index}");
                if index == items.len() {
                    items.push(Value::Object(Default::default()));
                }
                if last {
                    items[index] = value;
                    return;
                }
                &mut items[index]
            }
            other => panic!("{pointer}: {step} is inside {other}, not an object or array"),
        };
    }
}

/// The pool `web` with these backends (`address:port`).
pub fn pool(backends: &[&str]) -> String {
    let list: Vec<Value> = backends
        .iter()
        .map(|b| {
            let (address, port) = b.split_once(':').unwrap();
            serde_json::json!({"address": address, "port": port.parse::<u16>().unwrap()})
        })
        .collect();
    edit(POOL, &[("/spec/backends", Value::Array(list))])
}

pub struct System {
    /// FRR containers of the agents' pods, stopped before the lab goes.
    frr_pods: Vec<crate::frr::FrrPod>,
    pub lab: Lab,
    pub api: TestApi,
    pub backends: Vec<Backend>,
    pub kubeconfig: PathBuf,
    /// Pods whose agent runs (by pod name).
    pub started: BTreeSet<String>,
    /// Each node's agent: its process in the lab and its command line.
    pub agents: BTreeMap<String, (usize, Vec<String>)>,
    /// The operator: its process in the lab and its command line.
    pub operator: (usize, Vec<String>),
    /// How often [`System::restart_exited_operator`] restarted it.
    pub operator_restarts: usize,
    /// Held until everything above is torn down (fields drop in order): one system at a time.
    serial: Option<std::sync::MutexGuard<'static, ()>>,
}

impl System {
    pub fn start() -> System {
        System::start_with_lb_nodes(&NODES)
    }

    /// Like [`System::start`], with the `buoy.io/lb` label on `lb_nodes` only.
    pub fn start_with_lb_nodes(lb_nodes: &[&str]) -> System {
        System::start_with(lb_nodes, &[])
    }

    /// Like [`System::start_with_lb_nodes`], with more flags for `buoy-operator run`; one
    /// system at a time (see [`one_at_a_time`]).
    pub fn start_alone(lb_nodes: &[&str], operator_flags: &[&str]) -> System {
        let guard = one_at_a_time();
        let mut s = System::start_with(lb_nodes, operator_flags);
        s.serial = Some(guard);
        s
    }

    fn start_with(lb_nodes: &[&str], operator_flags: &[&str]) -> System {
        let mut lab = Lab::new(&["n1", "n2", "n3", "web1", "web2", "client", "api"]).unwrap();
        let kubeconfig = lab.dir().join("kubeconfig");
        let api = lab.start_api("api", &kubeconfig).unwrap();
        let backends = lab.web_backends(&["web1", "web2"], false);
        let operator_argv: Vec<String> = [
            format!("KUBECONFIG={}", kubeconfig.display()),
            workspace_bin("buoy-operator").display().to_string(),
        ]
        .into_iter()
        .chain(
            [
                "run",
                "--namespace",
                "buoy-system",
                "--metrics-address",
                "127.0.0.1:9900",
                "--identity",
                "operator-0",
            ]
            .map(String::from),
        )
        .chain(operator_flags.iter().map(|f| f.to_string()))
        .collect();
        let refs: Vec<&str> = operator_argv.iter().map(String::as_str).collect();
        let operator_index = lab.spawn("api", "env", &refs).unwrap();
        let s = System {
            frr_pods: Vec::new(),
            lab,
            api,
            backends,
            kubeconfig,
            started: BTreeSet::new(),
            agents: Default::default(),
            operator: (operator_index, operator_argv),
            operator_restarts: 0,
            serial: None,
        };
        s.kubectl(&["apply", "-f", "-"], Some(&objects(lb_nodes)));
        // The operator is up once it leads (a user installs it before applying objects).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (ok, out) = s.try_kubectl(&[
                "get",
                "lease",
                "buoy-operator",
                "-n",
                "buoy-system",
                "-o",
                "json",
            ]);
            if ok && out.contains("operator-0") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the operator never led\n{}",
                s.lab.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    pub fn try_kubectl(&self, args: &[&str]) -> (bool, String) {
        let (ok, out, _) =
            Kubectl::in_netns(self.kubeconfig.clone(), &self.lab.host("api").ns).run(args, None);
        (ok, out)
    }

    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, out, err) =
            Kubectl::in_netns(self.kubeconfig.clone(), &self.lab.host("api").ns).run(args, stdin);
        assert!(ok, "kubectl {args:?}: {err}\n{}", self.lab.logs());
        out
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&a, None)).unwrap()
    }

    /// The kubelet's part: starts the agent of every pod the DaemonSet shim bound to a node,
    /// with the pod's own arguments, in that node's namespace.
    pub fn run_scheduled_pods(&mut self) {
        let pods = self.json(&["get", "pods", "-n", "buoy-system"]);
        for pod in pods["items"].as_array().cloned().unwrap_or_default() {
            let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
            let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
            if self.started.contains(&name) || !NODES.contains(&node.as_str()) {
                continue;
            }
            let args: Vec<String> = pod["spec"]["containers"][0]["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().replace("$(NODE_NAME)", &node))
                .collect();
            // No $HOST_IP: the agents' admin endpoint is on the loopback of each node's own
            // namespace, where the tests read it.
            let mut argv = vec![
                format!("KUBECONFIG={}", self.kubeconfig.display()),
                workspace_bin("buoy-agent").display().to_string(),
            ];
            argv.extend(args);
            argv.extend(["--threads".into(), "1".into()]);
            let pod_dir = self.lab.dir().join("pods").join(&name);
            let index = match crate::frr::FrrPod::of(&pod, &pod_dir).unwrap() {
                // The pod's FRR container, its init container and shared volumes: the agent
                // runs in their mount namespace.
                Some((frr, script)) => {
                    let mut shell = vec![
                        "-m".to_string(),
                        "--propagation".into(),
                        "private".into(),
                        "sh".into(),
                        "-c".into(),
                        script,
                        "pod".into(),
                        "env".into(),
                    ];
                    shell.extend(argv.iter().cloned());
                    self.frr_pods.push(frr);
                    let refs: Vec<&str> = shell.iter().map(String::as_str).collect();
                    self.lab.spawn(&node, "unshare", &refs).unwrap()
                }
                None => {
                    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
                    self.lab.spawn(&node, "env", &refs).unwrap()
                }
            };
            self.agents.insert(node, (index, argv));
            self.started.insert(name);
        }
    }

    /// The kubelet's part for the operator's Deployment (`restartPolicy: Always`): starts it
    /// again if it exited (it exits when it cannot renew its leader Lease, docs/operator.md).
    /// True if it did.
    pub fn restart_exited_operator(&mut self) -> bool {
        let (index, argv) = self.operator.clone();
        if self.lab.proc(index).running() {
            return false;
        }
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let new = self.lab.spawn("api", "env", &refs).unwrap();
        self.operator = (new, argv);
        self.operator_restarts += 1;
        true
    }

    pub fn vip_status(&self) -> Value {
        self.json(&["get", "virtualip", "web", "-n", "default"])["status"].clone()
    }

    /// Polls the VirtualIP's status until `check` holds; the status it saw. Fails the test,
    /// with `what`, the last status and the logs, after `within`.
    #[track_caller]
    pub fn wait_status(
        &self,
        what: &str,
        within: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let st = self.vip_status();
            if check(&st) {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: status {st}\n{}",
                self.lab.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl System {
    /// Cuts `master`'s link and waits (10 s at most) until another node alone holds the VIP;
    /// returns that node.
    pub fn cut_and_wait_successor(&self, master: &str) -> String {
        let vip: IpAddr = VIP.parse().unwrap();
        self.lab.cut(master).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let holders = self.lab.holders(vip);
            if holders.len() == 1 && holders[0] != master {
                return holders[0].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no successor: {holders:?}\n{}",
                self.lab.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub fn served_by(lab: &Lab) -> Option<String> {
    let target = SocketAddr::new(VIP.parse().unwrap(), 80);
    served_by_from(&lab.host("client").ns, target, 1)
        .pop()
        .filter(|b| b != "failed")
}

pub fn condition(status: &Value, kind: &str) -> Option<String> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str())
        .map(str::to_string)
}

/// One system at a time: each runs an operator and three agents on a 2-core machine, and the
/// failover bounds are about VRRP timing, not about CPU starvation.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The system with the app applied and settled: traffic flows within 5 s of the apply, one
/// Master and two Backups, Ready. Returns the master.
pub fn installed() -> (System, String) {
    installed_with(&app())
}

/// Like [`installed`], with another app (a VirtualIP `web` in `default` serving port 80).
pub fn installed_with(app: &str) -> (System, String) {
    installed_on(app, &NODES)
}

/// Like [`installed_with`], with Buoy on `lb_nodes` only (the app's nodeSelector matches only
/// them): one Master, the others Backups.
pub fn installed_on(app: &str, lb_nodes: &[&str]) -> (System, String) {
    let guard = one_at_a_time();
    let mut s = System::start_with_lb_nodes(lb_nodes);
    let vip: IpAddr = VIP.parse().unwrap();
    let applied = Instant::now();
    s.kubectl(&["apply", "-f", "-"], Some(app));

    // The operator makes the DaemonSet, the shim schedules a pod per node, agents start;
    // traffic flows through the VIP.
    let served_after = loop {
        s.run_scheduled_pods();
        if served_by(&s.lab).is_some_and(|b| b.starts_with("web")) {
            break applied.elapsed();
        }
        assert!(
            applied.elapsed() < Duration::from_secs(30),
            "no traffic through the VIP\n{}",
            s.lab.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("traffic through the VIP {served_after:?} after kubectl apply");
    assert!(
        served_after <= Duration::from_secs(5),
        "traffic within 5 s of the apply, was {served_after:?}"
    );
    assert_eq!(s.started.len(), lb_nodes.len(), "one agent per node");
    let ds = s.json(&["get", "daemonsets", "-n", "buoy-system"]);
    assert_eq!(ds["items"].as_array().unwrap().len(), 1, "{ds}");

    // Status: one Master, the other nodes Backups, Ready; the allocation is recorded.
    let status = s.wait_status("status never settled", Duration::from_secs(10), |st| {
        let states: Vec<String> = st["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|n| n["state"].as_str().unwrap_or("").to_string())
            .collect();
        let masters = states.iter().filter(|x| *x == "Master").count();
        let backups = states.iter().filter(|x| *x == "Backup").count();
        masters == 1
            && backups == lb_nodes.len() - 1
            && condition(st, "Ready").as_deref() == Some("True")
    });
    let master = status["master"].as_str().unwrap().to_string();
    assert_eq!(
        s.lab.holders(vip),
        [master.as_str()],
        "status tells the truth"
    );
    assert!(status["virtualRouterID"].as_u64().is_some(), "{status}");

    s.serial = Some(guard);
    (s, master)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn edits_set_append_and_refuse_what_is_not_there() {
        let doc: Value = serde_yaml::from_str(&edit(
            VIRTUAL_IP,
            &[
                ("/spec/vrrp/preempt", json!(false)),
                ("/spec/addresses/1", json!("10.77.0.101")),
                ("/spec/virtualRouterID", json!(7)),
                ("/metadata/name", json!("on")),
            ],
        ))
        .unwrap();
        assert_eq!(
            doc["spec"]["vrrp"],
            json!({"advertisementInterval": "100ms", "preempt": false})
        );
        assert_eq!(
            doc["spec"]["addresses"],
            json!(["10.77.0.100", "10.77.0.101"])
        );
        assert_eq!(doc["spec"]["virtualRouterID"], 7);
        // Printed as kubectl reads it: a YAML 1.1 boolean word stays a string.
        assert_eq!(doc["metadata"]["name"], "on");
        let pools: Value = serde_yaml::from_str(&pool(&["10.0.0.1:8080"])).unwrap();
        assert_eq!(
            pools["spec"]["backends"],
            json!([{"address": "10.0.0.1", "port": 8080}])
        );
        for bad in ["/spec/addresses/5", "/spec/interface/x"] {
            let r = std::panic::catch_unwind(|| edit(VIRTUAL_IP, &[(bad, json!(1))]));
            assert!(r.is_err(), "{bad} edited");
        }
    }
}
