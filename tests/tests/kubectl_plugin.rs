//! `kubectl buoy` through the real kubectl: the workspace's `kubectl-buoy` on PATH (a symlink in
//! a temporary directory, as a user installs a plugin), the API test server, VirtualIPs whose
//! `status.nodes[]` entries are written through the status subresource as the agents write
//! them, and Events published the way the agents and the operator publish them (kube-rs's
//! `Recorder`). Asserts the tables of `status` (one namespace, one VirtualIP, every namespace, the
//! context's namespace), `--kubeconfig`, `--context` and `$KUBECONFIG`, the history of `events`,
//! `check`'s exit codes and messages (the same as `buoy-agent check`); and, on the whole product
//! (the operator and two agents in network namespaces), `status` and `events` through a cable cut.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use buoy_tests::{
    kubectl::Kubectl,
    process::workspace_bin,
    testapi::{Options, TestApi},
};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A directory holding `kubectl-buoy` (a symlink to the workspace's binary), to put on PATH.
fn plugin_dir() -> tempfile::TempDir {
    let plugin = workspace_bin("kubectl-buoy");
    assert!(
        plugin.exists(),
        "{} is not built (cargo build -p kubectl-buoy; `cargo test --workspace` builds it)",
        plugin.display()
    );
    let dir = tempfile::Builder::new()
        .prefix("buoy-kubectl-plugin-")
        .tempdir()
        .unwrap();
    std::os::unix::fs::symlink(&plugin, dir.path().join("kubectl-buoy")).unwrap();
    dir
}

/// Runs `kubectl ARGS` with the plugin's directory first on PATH and `KUBECONFIG` set to
/// `kubeconfig` (unset for None); (success, stdout, stderr).
fn kubectl(plugins: &Path, kubeconfig: Option<&Path>, args: &[&str]) -> (bool, String, String) {
    let path = format!(
        "{}:{}",
        plugins.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("kubectl");
    cmd.args(args).env("PATH", path).env_remove("KUBECONFIG");
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    let out = cmd.output().expect("kubectl is installed (scripts/setup)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The table's rows, split into columns at runs of spaces (the MESSAGE column keeps its own
/// single spaces).
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// `seconds` ago, as the agents write `lastTransitionTime` (RFC 3339, whole seconds).
fn ago(seconds: i64) -> String {
    let t = Timestamp::now() - SignedDuration::from_secs(seconds);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

const OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: web}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {name: gateway, namespace: web}
spec:
  addresses: [192.168.60.88]
  listeners:
  - {name: http, port: 80, upstreamPool: web}
  - {name: tls, port: 443, protocol: TCP, upstreamPool: web-tls}
---
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {name: idle, namespace: web}
spec:
  addresses: [192.168.60.89]
---
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {name: db, namespace: other}
spec:
  addresses: [10.0.0.5]
  listeners: [{name: pg, port: 5432, protocol: TCP, upstreamPool: pg}]
"#;

/// Writes the status of the VirtualIP `ns/name` through the status subresource.
fn set_status(k: &Kubectl, ns: &str, name: &str, status: serde_json::Value) {
    let patch = serde_json::json!({ "status": status }).to_string();
    k.ok(&[
        "-n",
        ns,
        "patch",
        "vip",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
}

fn objects(k: &Kubectl) {
    let (ok, out, err) = k.run(&["apply", "-f", "-"], Some(OBJECTS));
    assert!(ok, "{out}{err}");
    set_status(
        k,
        "web",
        "gateway",
        serde_json::json!({
            "addresses": ["192.168.60.88"],
            "master": "lb1",
            "nodes": [
                {"node": "lb2", "state": "Backup", "priority": 101, "lastTransitionTime": ago(50 * 3600),
                 "message": "higher priority master seen", "serving": true},
                {"node": "lb3", "state": "Fault", "priority": 0, "lastTransitionTime": ago(600),
                 "message": "interface eth0 is down", "serving": false},
                {"node": "lb1", "state": "Master", "priority": 102, "lastTransitionTime": ago(3 * 3600),
                 "message": "no advert within Master_Down_Interval", "serving": true},
            ],
        }),
    );
    set_status(
        k,
        "web",
        "idle",
        serde_json::json!({
            "conditions": [{"type": "Ready", "status": "False", "reason": "AddressNotAllowed",
                            "message": "address 192.168.60.89 is not allowed in namespace web",
                            "lastTransitionTime": ago(60)}],
        }),
    );
    set_status(
        k,
        "other",
        "db",
        serde_json::json!({
            "addresses": ["10.0.0.5"],
            "nodes": [{"node": "lb1", "state": "Master", "priority": 100, "lastTransitionTime": ago(3 * 3600),
                       "message": "no advert within Master_Down_Interval", "serving": true}],
        }),
    );
}

/// The test server's kubeconfig with two more contexts on the same cluster: `web` (namespace
/// `web`) and `broken` (a server that is not there), the current one.
fn contexts(api: &TestApi, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(api.kubeconfig_path()).unwrap();
    let mut config: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    let cluster = config["contexts"][0]["context"]["cluster"].clone();
    let user = config["contexts"][0]["context"]["user"].clone();
    config["clusters"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "name": "nowhere", "cluster": {"server": "http://127.0.0.1:1"}
        }));
    let contexts = config["contexts"].as_array_mut().unwrap();
    contexts.push(serde_json::json!({
        "name": "web", "context": {"cluster": cluster, "user": user, "namespace": "web"}
    }));
    contexts.push(serde_json::json!({
        "name": "broken", "context": {"cluster": "nowhere", "user": user, "namespace": "web"}
    }));
    config["current-context"] = "broken".into();
    let file = dir.join("kubeconfig-contexts");
    std::fs::write(&file, serde_yaml::to_string(&config).unwrap()).unwrap();
    file
}

#[test]
fn kubectl_buoy_status_shows_each_virtualip_on_each_node() {
    let plugins = plugin_dir();
    let api = TestApi::start_with(Options::default()).unwrap();
    api.install_buoy_crds().unwrap();
    let kubeconfig = api.kubeconfig_path().to_path_buf();
    objects(&Kubectl::new(kubeconfig.clone()));
    let run = |args: &[&str]| kubectl(plugins.path(), Some(&kubeconfig), args);

    // One namespace: the master first, then the backup and the node in Fault; a VirtualIP that
    // no node reports says why.
    let (ok, out, err) = run(&["buoy", "status", "-n", "web"]);
    assert!(ok, "{err}");
    let table = rows(&out);
    let row = |r: &[&str]| r.iter().map(|c| c.to_string()).collect::<Vec<_>>();
    assert_eq!(
        table,
        [
            row(&[
                "NAME",
                "ADDRESSES",
                "NODE",
                "STATE",
                "PRIORITY",
                "SINCE",
                "SERVING",
                "LISTENERS",
                "MESSAGE"
            ]),
            row(&[
                "gateway",
                "192.168.60.88",
                "lb1",
                "Master",
                "102",
                "3h",
                "yes",
                "http:80/HTTP,tls:443/TCP",
                "no advert within Master_Down_Interval"
            ]),
            row(&[
                "gateway",
                "192.168.60.88",
                "lb2",
                "Backup",
                "101",
                "2d2h",
                "yes",
                "http:80/HTTP,tls:443/TCP",
                "higher priority master seen"
            ]),
            row(&[
                "gateway",
                "192.168.60.88",
                "lb3",
                "Fault",
                "0",
                "10m",
                "no",
                "http:80/HTTP,tls:443/TCP",
                "interface eth0 is down"
            ]),
            row(&[
                "idle",
                "192.168.60.89",
                "<none>",
                "<none>",
                "<none>",
                "<none>",
                "<none>",
                "<none>",
                "address 192.168.60.89 is not allowed in namespace web"
            ]),
        ],
        "{out}"
    );
    // Columns aligned as kubectl aligns them: every row's NODE starts where the header's does.
    let column = out.lines().next().unwrap().find("NODE").unwrap();
    for line in out.lines().skip(1) {
        assert!(
            line[column..].starts_with("lb") || line[column..].starts_with("<none>"),
            "{out}"
        );
    }

    // One VirtualIP, in another namespace, with the long flag after the name.
    let (ok, out, err) = run(&["buoy", "status", "db", "--namespace", "other"]);
    assert!(ok, "{err}");
    let table = rows(&out);
    assert_eq!(table.len(), 2, "{out}");
    assert_eq!(
        table[1][..6],
        ["db", "10.0.0.5", "lb1", "Master", "100", "3h"],
        "{out}"
    );

    // The context's namespace (default) has none: said on stderr, as kubectl says it.
    let (ok, out, err) = run(&["buoy", "status"]);
    assert!(ok, "{err}");
    assert_eq!(out, "");
    assert_eq!(err.trim(), "No VirtualIPs found in default namespace.");

    // Every namespace, with a NAMESPACE column.
    let (ok, out, err) = run(&["buoy", "status", "-A"]);
    assert!(ok, "{err}");
    let table = rows(&out);
    let names: Vec<(&str, &str, &str)> = table
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str(), r[3].as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("NAMESPACE", "NAME", "NODE"),
            ("other", "db", "lb1"),
            ("web", "gateway", "lb1"),
            ("web", "gateway", "lb2"),
            ("web", "gateway", "lb3"),
            ("web", "idle", "<none>"),
        ],
        "{out}"
    );

    // A VirtualIP that does not exist fails with its name.
    let (ok, _, err) = run(&["buoy", "status", "-n", "web", "nope"]);
    assert!(!ok);
    assert_eq!(
        err.trim(),
        r#"error: reading VirtualIPs: virtualips.buoy.io "nope" not found in namespace "web""#
    );
}

#[test]
fn kubectl_buoy_honours_kubeconfig_context_and_the_kubeconfig_variable() {
    let plugins = plugin_dir();
    let dir = tempfile::tempdir().unwrap();
    let api = TestApi::start_with(Options::default()).unwrap();
    api.install_buoy_crds().unwrap();
    objects(&Kubectl::new(api.kubeconfig_path().to_path_buf()));
    let file = contexts(&api, dir.path());
    let file_arg = file.to_str().unwrap();
    let gateway_rows = |out: &str| {
        rows(out)
            .iter()
            .skip(1)
            .filter(|r| r[0] == "gateway")
            .count()
    };

    // $KUBECONFIG and --context (the context's namespace: web).
    let (ok, out, err) = kubectl(
        plugins.path(),
        Some(&file),
        &["buoy", "--context", "web", "status"],
    );
    assert!(ok, "{err}");
    assert_eq!(gateway_rows(&out), 3, "{out}");
    // --kubeconfig, with $KUBECONFIG naming a file that does not exist, flags after the command.
    let missing = dir.path().join("missing");
    let (ok, out, err) = kubectl(
        plugins.path(),
        Some(&missing),
        &[
            "buoy",
            "status",
            "--kubeconfig",
            file_arg,
            "--context=web",
            "gateway",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(gateway_rows(&out), 3, "{out}");
    // -n wins over the context's namespace.
    let (ok, out, err) = kubectl(
        plugins.path(),
        None,
        &[
            "buoy",
            "--kubeconfig",
            file_arg,
            "--context",
            "web",
            "status",
            "-n",
            "other",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(rows(&out)[1][..3], ["db", "10.0.0.5", "lb1"], "{out}");
    // Without --context, the current context: a server that is not there.
    let (ok, _, err) = kubectl(plugins.path(), Some(&file), &["buoy", "status"]);
    assert!(!ok);
    assert!(err.starts_with("error: reading VirtualIPs: "), "{err}");
    // A context the kubeconfig lacks.
    let (ok, _, err) = kubectl(
        plugins.path(),
        Some(&file),
        &["buoy", "status", "--context", "nope"],
    );
    assert!(!ok);
    assert!(
        err.starts_with("error: connecting to the cluster: the kubeconfig: ")
            && err.contains("nope"),
        "{err}"
    );
    // kubectl itself refuses its flags before a plugin's name: they go after `buoy`.
    let (ok, _, err) = kubectl(
        plugins.path(),
        Some(&file),
        &["--context", "web", "buoy", "status"],
    );
    assert!(!ok);
    assert!(
        err.contains("flags cannot be placed before plugin name"),
        "{err}"
    );
}

#[test]
fn kubectl_buoy_events_tells_the_failover_history_oldest_first() {
    use kube::{
        Api, Resource,
        runtime::events::{Event, EventType, Recorder, Reporter},
    };

    let plugins = plugin_dir();
    let api = TestApi::start_with(Options::default()).unwrap();
    api.install_buoy_crds().unwrap();
    let kubeconfig = api.kubeconfig_path().to_path_buf();
    objects(&Kubectl::new(kubeconfig.clone()));

    // As the operator and the agents publish them: one Recorder per reporter, the agents'
    // instance being their node.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = api.client().unwrap();
        let vips: Api<buoy_crds::VirtualIP> = Api::namespaced(client.clone(), "web");
        let gateway = vips.get("gateway").await.unwrap().object_ref(&());
        let idle = vips.get("idle").await.unwrap().object_ref(&());
        let recorder = |controller: &str, instance: &str| {
            Recorder::new(
                client.clone(),
                Reporter {
                    controller: controller.into(),
                    instance: Some(instance.into()),
                },
            )
        };
        let event = |type_, reason: &str, note: &str| Event {
            type_,
            reason: reason.into(),
            note: Some(note.into()),
            action: "VRRP".into(),
            secondary: None,
        };
        let operator = recorder("buoy-operator", "buoy-operator-7d9f");
        let lb1 = recorder("buoy-agent", "lb1");
        let lb2 = recorder("buoy-agent", "lb2");
        for (r, e, about) in [
            (
                &operator,
                event(
                    EventType::Normal,
                    "VirtualRouterIDAllocated",
                    "virtual router ID 7",
                ),
                &gateway,
            ),
            (
                &lb1,
                event(
                    EventType::Normal,
                    "Master",
                    "node lb1 is Master (priority 102): no advert within Master_Down_Interval",
                ),
                &gateway,
            ),
            (
                &lb1,
                event(
                    EventType::Warning,
                    "Fault",
                    "node lb1 is Fault (priority 0): interface eth0 is down",
                ),
                &gateway,
            ),
            (
                &lb2,
                event(
                    EventType::Normal,
                    "Master",
                    "node lb2 is Master (priority 101): no advert within Master_Down_Interval",
                ),
                &gateway,
            ),
            (
                &lb1,
                event(
                    EventType::Normal,
                    "Master",
                    "node lb1 is Master (priority 100): an idle VIP",
                ),
                &idle,
            ),
            // The same Event again: a series.
            (
                &lb2,
                event(
                    EventType::Normal,
                    "Master",
                    "node lb2 is Master (priority 101): no advert within Master_Down_Interval",
                ),
                &gateway,
            ),
        ] {
            r.publish(&e, about).await.unwrap();
        }
    });

    let (ok, out, err) = kubectl(
        plugins.path(),
        Some(&kubeconfig),
        &["buoy", "events", "gateway", "-n", "web"],
    );
    assert!(ok, "{err}");
    let table = rows(&out);
    let columns: Vec<Vec<&str>> = table
        .iter()
        .map(|r| r[1..4].iter().map(String::as_str).collect())
        .collect();
    assert_eq!(
        columns,
        [
            vec!["NODE", "TYPE", "REASON"],
            vec!["<none>", "Normal", "VirtualRouterIDAllocated"],
            vec!["lb1", "Normal", "Master"],
            vec!["lb1", "Warning", "Fault"],
            vec!["lb2", "Normal", "Master"],
        ],
        "{out}"
    );
    assert_eq!(table[0][0], "TIME");
    let times: Vec<Timestamp> = table[1..].iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{out}");
    assert!(
        Timestamp::now().duration_since(times[0]).abs() < SignedDuration::from_secs(60),
        "{out}"
    );
    assert_eq!(
        table[3][4],
        "node lb1 is Fault (priority 0): interface eth0 is down"
    );
    assert!(
        table[4][4].starts_with(
            "node lb2 is Master (priority 101): no advert within Master_Down_Interval (2 times, last at "
        ),
        "{out}"
    );

    // None: said on stderr, no failure.
    let (ok, out, err) = kubectl(
        plugins.path(),
        Some(&kubeconfig),
        &["buoy", "events", "-n", "web", "gone"],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "");
    assert_eq!(err.trim(), "No events found for VirtualIP web/gone.");
}

#[test]
fn kubectl_buoy_check_validates_files_as_buoy_agent_check_does() {
    let plugins = plugin_dir();
    let dir = tempfile::tempdir().unwrap();
    let seed = repo().join("examples/seed");
    let seed = seed.to_str().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {name: web}\nspec:\n  addresses: [192.168.60.88, fd00::1]\n  vrrp: {version: 2, advertisementInterval: 1s}\n",
    )
    .unwrap();
    let bad = bad.to_str().unwrap();
    // No cluster needed: no kubeconfig at all.
    let (ok, out, err) = kubectl(plugins.path(), None, &["buoy", "check", seed]);
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        "configuration OK: 1 VirtualIP(s), 1 UpstreamPool(s), 1 AddressPool(s), 1 Secret(s)"
    );

    let (ok, out, err) = kubectl(plugins.path(), None, &["buoy", "check", seed, bad]);
    assert!(!ok);
    assert_eq!(out, "");
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        [
            format!(
                "error: {bad}: document 1 (VirtualIP default/web): spec.addresses: all addresses must be of one family (all IPv4 or all IPv6)"
            ),
            format!(
                "error: {bad}: document 1 (VirtualIP default/web): spec.vrrp.version: VRRP version 2 supports IPv4 only; use version 3 for IPv6 addresses"
            ),
            "configuration invalid: 2 error(s)".to_string(),
        ]
    );
    // Word for word what `buoy-agent check` says, exit status included.
    let agent = Command::new(workspace_bin("buoy-agent"))
        .args(["check", "--config", seed, "--config", bad])
        .output()
        .unwrap();
    assert!(!agent.status.success());
    assert_eq!(String::from_utf8_lossy(&agent.stderr), err);

    // A file that is not there.
    let (ok, _, err) = kubectl(
        plugins.path(),
        None,
        &["buoy", "check", "/nonexistent/buoy.yaml"],
    );
    assert!(!ok);
    assert!(
        err.starts_with("error: /nonexistent/buoy.yaml: document 0: cannot read: No such file"),
        "{err}"
    );
}

/// `kubectl ARGS` inside the lab's `api` namespace (where the test server listens), with the
/// plugin on PATH and `KUBECONFIG` the system's.
fn kubectl_in_lab(
    s: &buoy_tests::system::System,
    plugins: &Path,
    args: &[&str],
) -> (bool, String, String) {
    let path = format!(
        "{}:{}",
        plugins.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("ip")
        .args(["netns", "exec", &s.lab.host("api").ns, "kubectl"])
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", &s.kubeconfig)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The whole product on two nodes (the operator, two agents in network namespaces, the seed's
/// cable cut): `kubectl buoy status` before and after the master's cable is cut, and `kubectl
/// buoy events` telling the failover, from what the real agents wrote.
#[test]
fn kubectl_buoy_follows_a_failover_of_the_real_agents() {
    let plugins = plugin_dir();
    let (s, master) = buoy_tests::system::installed_on(&buoy_tests::system::app(), &["n1", "n2"]);
    let backup = if master == "n1" { "n2" } else { "n1" };
    let status = |s: &buoy_tests::system::System| {
        let (ok, out, err) = kubectl_in_lab(s, plugins.path(), &["buoy", "status"]);
        assert!(ok, "{err}");
        eprintln!("$ kubectl buoy status\n{out}");
        rows(&out)
    };
    let state_of = |table: &[Vec<String>], node: &str| {
        table
            .iter()
            .find(|r| r[2] == node)
            .map(|r| (r[3].clone(), r[6].clone()))
            .unwrap_or_else(|| panic!("no row for {node}: {table:?}"))
    };

    let before = status(&s);
    assert_eq!(before.len(), 3, "{before:?}");
    assert_eq!(
        before[1][..4],
        ["web", "10.77.0.100", master.as_str(), "Master"]
    );
    assert_eq!(before[2][..4], ["web", "10.77.0.100", backup, "Backup"]);
    assert_eq!(before[1][7], "http:80/HTTP");
    assert_eq!(state_of(&before, &master).1, "yes");

    // The cable cut: the backup takes over and says so; the cut node cannot reach the API, so
    // its entry stays as it last wrote it.
    let successor = s.cut_and_wait_successor(&master);
    assert_eq!(successor, backup);
    s.wait_status(
        "the successor never reported",
        std::time::Duration::from_secs(10),
        |st| {
            st["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|n| n["node"] == backup && n["state"] == "Master")
        },
    );
    let after = status(&s);
    assert_eq!(state_of(&after, backup).0, "Master");
    let since = &after.iter().find(|r| r[2] == backup).unwrap()[5];
    assert!(
        since.ends_with('s') && !since.contains('m'),
        "a takeover seconds ago: {since}"
    );

    // The history: the first master's takeover, then the backup's, oldest first.
    let (ok, out, err) = kubectl_in_lab(
        &s,
        plugins.path(),
        &["buoy", "events", "web", "-n", "default"],
    );
    assert!(ok, "{err}");
    eprintln!("$ kubectl buoy events web\n{out}");
    let history: Vec<(String, String)> = rows(&out)
        .iter()
        .skip(1)
        .filter(|r| r[3] == "Master")
        .map(|r| (r[1].clone(), r[4].clone()))
        .collect();
    let nodes: Vec<&str> = history.iter().map(|(n, _)| n.as_str()).collect();
    let first = nodes
        .iter()
        .position(|n| *n == master)
        .expect("the first master's Event");
    let then = nodes
        .iter()
        .rposition(|n| *n == backup)
        .expect("the successor's Event");
    assert!(first < then, "{out}");
    assert!(
        history[then]
            .1
            .starts_with(&format!("node {backup} is Master (priority ")),
        "{out}"
    );
}
