//! The Helm chart (`charts/buoy`), the plain manifest (`deploy/buoy.yaml`) and the Dockerfile:
//! lint, render with default values and with every option, strict validation against the
//! Kubernetes schemas, least-privilege RBAC, drift of the generated files, and the rendered
//! manifests applied with kubectl to the Kubernetes API test server.
//!
//! Helm itself runs in `charts/tests/helmtool.py` (helm-python-sdk, the Helm v4 engine, and
//! kubernetes-validate; `python3 -m pip install helm-python-sdk kubernetes-validate`, as .ci/run
//! does). Everything runs offline.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use buoy_crds::{
    manifest::{self, Object},
    policy,
};
use buoy_tests::{
    kubectl::Kubectl,
    process::{Proc, workspace_bin},
};
use serde::Deserialize;
use serde_json::{Value, json};

/// Kubernetes version of the strict schemas (the one k8s-openapi is built for).
const KUBERNETES_VERSION: &str = "1.33";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

fn chart() -> PathBuf {
    repo().join("charts/buoy")
}

fn all_values() -> PathBuf {
    chart().join("ci/all-values.yaml")
}

/// A directory of its own (tests run in parallel), removed when dropped.
fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("buoy-chart-{name}-"))
        .tempdir()
        .unwrap()
}

/// Runs `python3 charts/tests/helmtool.py ARGS`; returns (exit code, stdout, stderr).
fn helmtool(args: &[&str]) -> (i32, String, String) {
    let out = Command::new("python3")
        .arg(repo().join("charts/tests/helmtool.py"))
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs (the chart tests need python3 with helm-python-sdk and kubernetes-validate)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[track_caller]
fn helmtool_ok(args: &[&str]) -> String {
    let (code, out, err) = helmtool(args);
    assert_eq!(code, 0, "helmtool {args:?} failed:\n{out}\n{err}");
    out
}

/// A rendered release: the YAML stream and its objects.
struct Rendered {
    yaml: String,
    objects: Vec<Value>,
    notes: String,
}

impl Rendered {
    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    #[track_caller]
    fn one(&self, kind: &str, name: &str) -> &Value {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind}/{name} in:\n{}", self.yaml))
    }
}

fn parse_stream(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn render(values: Option<&Path>, name: &str, namespace: &str, api_versions: &[&str]) -> Rendered {
    let dir = scratch(&format!("render-{name}"));
    let notes = dir.path().join("NOTES.txt");
    let chart = chart();
    let mut args = vec![
        "render",
        chart.to_str().unwrap(),
        "--name",
        name,
        "--namespace",
        namespace,
        "--notes",
        notes.to_str().unwrap(),
    ];
    if let Some(v) = values {
        args.extend(["--values", v.to_str().unwrap()]);
    }
    for a in api_versions {
        args.extend(["--api-version", a]);
    }
    let yaml = helmtool_ok(&args);
    Rendered {
        objects: parse_stream(&yaml),
        notes: std::fs::read_to_string(notes).unwrap(),
        yaml,
    }
}

fn render_defaults() -> Rendered {
    render(None, "buoy", "buoy-system", &[])
}

fn render_all_values() -> Rendered {
    render(
        Some(&all_values()),
        "edge",
        "buoy-ci",
        &["monitoring.coreos.com/v1"],
    )
}

/// Validates a YAML stream strictly; returns helmtool's per-object lines.
#[track_caller]
fn validate(yaml: &str, name: &str) -> Vec<String> {
    let dir = scratch("validate");
    let file = dir.path().join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    let (code, out, err) = helmtool(&[
        "validate",
        file.to_str().unwrap(),
        "--kubernetes-version",
        KUBERNETES_VERSION,
    ]);
    assert_eq!(code, 0, "strict validation failed:\n{out}\n{err}");
    out.lines().map(str::to_string).collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn load_yaml(path: &Path) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Dotted paths of every leaf of a values document (scalars, lists, empty maps).
fn leaves(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v.as_object() {
        Some(map) if !map.is_empty() => {
            for (k, v) in map {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(v, &p, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

fn operator_container(r: &Rendered, name: &str) -> Value {
    r.one("Deployment", name)["spec"]["template"]["spec"]["containers"][0].clone()
}

// ---- lint, render, validate ----

#[test]
fn chart_lints_clean_with_default_and_all_values() {
    let chart = chart();
    let out = helmtool_ok(&["lint", chart.to_str().unwrap()]);
    assert!(out.contains("1 chart(s), 0 problem(s)"), "{out}");
    let out = helmtool_ok(&[
        "lint",
        chart.to_str().unwrap(),
        "--values",
        all_values().to_str().unwrap(),
    ]);
    assert!(out.contains("1 chart(s), 0 problem(s)"), "{out}");
}

#[test]
fn default_values_render_an_operator_that_validates_strictly() {
    let r = render_defaults();
    let lines = validate(&r.yaml, "defaults");
    // Every object is a built-in kind, validated: nothing skipped.
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("VALID ")).count(),
        r.objects.len(),
        "{lines:#?}"
    );
    let kinds: BTreeSet<&str> = r
        .objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ]),
        "no ServiceMonitor without the Prometheus Operator's API, no VirtualIPs by default"
    );

    let deploy = r.one("Deployment", "buoy-operator");
    assert_eq!(deploy["metadata"]["namespace"], "buoy-system");
    assert_eq!(deploy["spec"]["replicas"], 2);
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "buoy-operator");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "ghcr.io/buoy-io/buoy-operator:0.1.0");
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    assert!(sc["capabilities"].get("add").is_none());
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(
        strings(&c["args"]),
        [
            "run",
            "--namespace=$(POD_NAMESPACE)",
            "--leader-election-namespace=buoy-system",
            "--metrics-address=0.0.0.0:8080",
            "--agent-image=ghcr.io/buoy-io/buoy-agent:0.1.0",
            "--agent-image-pull-policy=IfNotPresent",
            "--agent-service-account=buoy-agent",
            r#"--agent-resources={"limits":{"memory":"256Mi"},"requests":{"cpu":"50m","memory":"64Mi"}}"#,
            "--address-policy=Enforce",
            "--load-balancer-advertisement-interval=1s",
        ]
    );
    // Backends on the node itself stay refused unless the value says otherwise.
    assert!(
        !strings(&c["args"])
            .iter()
            .any(|a| a.starts_with("--allow-node-local-backends"))
    );
    assert_eq!(c["env"][0]["name"], "POD_NAMESPACE");
    assert_eq!(
        c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    // Replicas spread over nodes.
    let anti = &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        [0]["podAffinityTerm"];
    assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(
        anti["labelSelector"]["matchLabels"],
        deploy["spec"]["selector"]["matchLabels"]
    );
    let pdb = r.one("PodDisruptionBudget", "buoy-operator");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(pdb["spec"]["selector"], deploy["spec"]["selector"]);

    // Metrics: the operator's Service and a headless one over the operator-made agent pods.
    let op_svc = r.one("Service", "buoy-operator-metrics");
    assert_eq!(
        op_svc["spec"]["selector"],
        deploy["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(op_svc["spec"]["ports"][0]["port"], 8080);
    let agent_svc = r.one("Service", "buoy-agent-metrics");
    assert_eq!(agent_svc["spec"]["clusterIP"], "None");
    assert_eq!(
        agent_svc["spec"]["selector"],
        json!({"app.kubernetes.io/name": "buoy-agent"})
    );
    assert_eq!(agent_svc["spec"]["ports"][0]["port"], 9901);
    r.one("ServiceAccount", "buoy-agent");

    // NOTES tell the user how to check the VIP.
    assert!(r.notes.contains("kubectl get vip"), "{}", r.notes);
    assert!(
        r.notes
            .contains("kubectl -n buoy-system get deployment buoy-operator"),
        "{}",
        r.notes
    );
}

#[test]
fn every_option_renders_validates_and_takes_effect() {
    // all-values.yaml sets every leaf of values.yaml.
    let mut defaults = BTreeSet::new();
    leaves(&load_yaml(&chart().join("values.yaml")), "", &mut defaults);
    let mut set = BTreeSet::new();
    leaves(&load_yaml(&all_values()), "", &mut set);
    let unset: Vec<&String> = defaults
        .iter()
        .filter(|d| {
            !set.iter()
                .any(|s| s == *d || s.starts_with(&format!("{d}.")))
        })
        .collect();
    assert!(
        unset.is_empty(),
        "ci/all-values.yaml does not set {unset:?}"
    );

    let r = render_all_values();
    let lines = validate(&r.yaml, "all-values");
    // Built-in kinds validate strictly; Buoy's kinds go to buoy_crds below; only the
    // ServiceMonitors and the PrometheusRule are skipped (the Prometheus Operator's schema is
    // not vendored; the PrometheusRule's rules are checked by promtool in alerts.rs).
    let skipped: Vec<&String> = lines.iter().filter(|l| l.starts_with("SKIPPED ")).collect();
    assert_eq!(skipped.len(), 3, "{lines:#?}");
    assert!(
        skipped
            .iter()
            .all(|l| l.contains("ServiceMonitor/") || l.contains("PrometheusRule/")),
        "{skipped:#?}"
    );
    let custom: Vec<&String> = lines.iter().filter(|l| l.starts_with("CUSTOM ")).collect();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("VALID ")).count(),
        r.objects.len() - skipped.len() - custom.len(),
        "{lines:#?}"
    );

    // VirtualIPs, UpstreamPools and AddressPools: what `buoy-agent check` accepts (the CRDs'
    // schemas and rules, buoy_crds::manifest).
    let buoy: Vec<&Value> = r
        .objects
        .iter()
        .filter(|o| o["apiVersion"] == "buoy.io/v1alpha1")
        .collect();
    assert_eq!(buoy.len(), 3);
    let text = buoy
        .iter()
        .map(|o| serde_yaml::to_string(o).unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    let parsed = manifest::parse(Path::new("rendered"), &text)
        .unwrap_or_else(|e| panic!("rendered Buoy objects are invalid: {e:?}"));
    assert_eq!(parsed.len(), 3);
    assert!(parsed.iter().all(|p| matches!(
        p.object,
        Object::UpstreamPool(_) | Object::VirtualIP(_) | Object::AddressPool(_)
    )));
    let vip = r.one("VirtualIP", "web");
    assert_eq!(vip["metadata"]["namespace"], "default");
    assert_eq!(vip["metadata"]["labels"]["tier"], "frontend");
    assert_eq!(vip["spec"]["virtualRouterID"], 51);
    r.one("UpstreamPool", "web");
    // AddressPools are cluster-scoped: no namespace, not even the release's.
    let apool = r.one("AddressPool", "lan");
    assert!(apool["metadata"].get("namespace").is_none(), "{apool:#}");
    assert_eq!(apool["metadata"]["labels"]["tier"], "frontend");
    assert_eq!(
        apool["metadata"]["annotations"]["example.com/note"],
        "the reference address"
    );
    assert_eq!(apool["spec"]["addresses"], json!(["192.168.60.88/32"]));
    // And it admits the release's VirtualIP under the Enforce policy, as the operator and the
    // agents decide it.
    let pools = manifest::address_pools(&parsed);
    assert_eq!(pools.len(), 1);
    let Some(Object::VirtualIP(vip)) = parsed
        .iter()
        .map(|p| &p.object)
        .find(|o| matches!(o, Object::VirtualIP(_)))
    else {
        unreachable!()
    };
    let addresses: Vec<std::net::IpAddr> = vip
        .spec
        .addresses
        .iter()
        .filter_map(|a| a.0.split('/').next()?.parse().ok())
        .collect();
    let admission = policy::admit(
        policy::AddressPolicy::Enforce,
        &pools,
        "default",
        &Default::default(),
        &vip.spec,
        &addresses,
    );
    assert!(
        matches!(admission, policy::Admission::Allowed(Some(_))),
        "{admission:?}"
    );

    // ServiceMonitors, with the capability: one per metrics Service, matching its labels.
    let monitors = r.of_kind("ServiceMonitor");
    assert_eq!(monitors.len(), 2);
    for (monitor, svc) in monitors
        .iter()
        .zip(["edge-buoy-operator-metrics", "edge-buoy-agent-metrics"])
    {
        let svc = r.one("Service", svc);
        for (k, v) in monitor["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap()
        {
            assert_eq!(&svc["metadata"]["labels"][k], v, "{monitor:#}");
        }
        assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
        assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "15s");
        assert_eq!(monitor["spec"]["endpoints"][0]["scrapeTimeout"], "10s");
        assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    }
    // Without the capability, no ServiceMonitor even when enabled, and NOTES say why.
    let without = render(Some(&all_values()), "edge", "buoy-ci", &[]);
    assert!(without.of_kind("ServiceMonitor").is_empty());
    assert!(
        without.notes.contains("no ServiceMonitor was created"),
        "{}",
        without.notes
    );
    assert!(
        r.notes.contains("kubectl get vip web -n default"),
        "{}",
        r.notes
    );

    // Common labels and annotations on every object the templates make.
    for o in &r.objects {
        assert_eq!(o["metadata"]["labels"]["team"], "network", "{o:#}");
        assert_eq!(
            o["metadata"]["annotations"]["example.com/owner"], "network-team",
            "{o:#}"
        );
    }

    let deploy = r.one("Deployment", "edge-buoy-operator");
    assert_eq!(deploy["spec"]["replicas"], 3);
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "buoy-operator-sa");
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "regcred"}]));
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(
        pod["nodeSelector"],
        json!({"node-role.kubernetes.io/control-plane": ""})
    );
    assert_eq!(pod["tolerations"][0]["operator"], "Exists");
    assert_eq!(
        pod["topologySpreadConstraints"][0]["topologyKey"],
        "topology.kubernetes.io/zone"
    );
    assert!(pod["affinity"]["nodeAffinity"].is_object(), "affinity wins");
    assert_eq!(pod["securityContext"]["runAsUser"], 10001);
    let tmeta = &deploy["spec"]["template"]["metadata"];
    assert_eq!(tmeta["labels"]["sidecar.istio.io/inject"], "false");
    assert_eq!(tmeta["annotations"]["example.com/scrape"], "true");
    let c = operator_container(&r, "edge-buoy-operator");
    assert_eq!(
        c["image"],
        "registry.example.com/mirror/buoy-operator@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(c["resources"]["limits"]["cpu"], "1");
    assert_eq!(
        strings(&c["args"]),
        [
            "run",
            "--namespace=$(POD_NAMESPACE)",
            "--leader-election-namespace=buoy-leases",
            "--metrics-address=0.0.0.0:8081",
            "--agent-image=registry.example.com/mirror/buoy-agent@sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210",
            "--agent-image-pull-policy=Always",
            "--agent-service-account=buoy-node-agent",
            r#"--agent-resources={"limits":{"cpu":"500m","memory":"384Mi"},"requests":{"cpu":"100m","memory":"96Mi"}}"#,
            "--agent-frr-image=registry.example.com/mirror/frr@sha256:abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
            "--agent-frr-image-pull-policy=Always",
            r#"--agent-frr-resources={"limits":{"cpu":"200m","memory":"128Mi"},"requests":{"cpu":"20m","memory":"48Mi"}}"#,
            "--address-policy=Off",
            "--allow-node-local-backends",
            "--default-load-balancer-class",
            "--load-balancer-advertisement-interval=250ms",
            "--example-flag=1",
        ]
    );
    let env: BTreeMap<&str, &Value> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e))
        .collect();
    assert_eq!(env["RUST_LOG"]["value"], "buoy_operator=debug,kube=info");
    assert_eq!(env["EXAMPLE"]["value"], "1");
    assert_eq!(c["ports"][0]["containerPort"], 8081);

    let pdb = r.one("PodDisruptionBudget", "edge-buoy-operator");
    assert_eq!(pdb["spec"]["maxUnavailable"], 2);
    // rbac.aggregateToView and rbac.editorRole off: the operator's and the agents' roles only.
    let cluster_roles: BTreeSet<&str> = r
        .of_kind("ClusterRole")
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        cluster_roles,
        BTreeSet::from(["edge-buoy-agent", "edge-buoy-operator"])
    );
    let lease_role = r.one("Role", "edge-buoy-operator-leader-election");
    assert_eq!(lease_role["metadata"]["namespace"], "buoy-leases");
    let op_sa = r.one("ServiceAccount", "buoy-operator-sa");
    assert_eq!(
        op_sa["metadata"]["annotations"]["example.com/role"],
        "operator"
    );
    assert_eq!(op_sa["imagePullSecrets"], json!([{"name": "regcred"}]));
    let agent_sa = r.one("ServiceAccount", "buoy-node-agent");
    assert_eq!(
        agent_sa["metadata"]["annotations"]["example.com/role"],
        "agent"
    );
    assert_eq!(agent_sa["imagePullSecrets"], json!([{"name": "regcred"}]));
    let op_svc = r.one("Service", "edge-buoy-operator-metrics");
    assert_eq!(op_svc["spec"]["type"], "NodePort");
    assert_eq!(
        op_svc["metadata"]["annotations"]["example.com/metrics"],
        "operator"
    );
    let agent_svc = r.one("Service", "edge-buoy-agent-metrics");
    assert_eq!(
        agent_svc["metadata"]["annotations"]["example.com/metrics"],
        "agent"
    );

    // Hard anti-affinity, when no affinity is given.
    let dir = scratch("hard");
    let values = dir.path().join("values.yaml");
    std::fs::write(&values, "operator:\n  podAntiAffinity: hard\n").unwrap();
    let hard = render(Some(&values), "buoy", "buoy-system", &[]);
    let pod = &hard.one("Deployment", "buoy-operator")["spec"]["template"]["spec"];
    assert_eq!(
        pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"],
        "kubernetes.io/hostname"
    );
    // One replica: no PodDisruptionBudget (it would block every drain).
    std::fs::write(&values, "operator:\n  replicas: 1\n").unwrap();
    let single = render(Some(&values), "buoy", "buoy-system", &[]);
    assert!(single.of_kind("PodDisruptionBudget").is_empty());
}

/// Reads a YAML document as kubectl does (YAML 1.1: `tests/yaml11.py`), as JSON.
fn read_as_kubectl(yaml: &str) -> Value {
    let dir = scratch("yaml11");
    let file = dir.path().join("doc.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new("python3")
        .arg(repo().join("tests/yaml11.py"))
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs (with PyYAML, which kubernetes-validate brings)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(docs.len(), 1, "{text}");
    serde_json::from_str(docs[0]).unwrap()
}

#[test]
fn the_prometheus_rule_renders_only_when_enabled_with_the_tested_alerts() {
    const API: &str = "monitoring.coreos.com/v1";
    // Off by default, even where the Prometheus Operator's API is served.
    let defaults = render(None, "buoy", "buoy-system", &[API]);
    assert!(defaults.of_kind("PrometheusRule").is_empty());
    // Enabled without the API: none, and NOTES say why.
    let without = render(Some(&all_values()), "edge", "buoy-ci", &[]);
    assert!(without.of_kind("PrometheusRule").is_empty());
    assert!(
        without.notes.contains("no PrometheusRule was created"),
        "{}",
        without.notes
    );
    assert!(
        !defaults.notes.contains("PrometheusRule"),
        "{}",
        defaults.notes
    );

    // Enabled alone: one, with the chart's labels.
    let dir = scratch("prometheusrule");
    let values = dir.path().join("values.yaml");
    std::fs::write(&values, "prometheusRule:\n  enabled: true\n").unwrap();
    let enabled = render(Some(&values), "buoy", "buoy-system", &[API]);
    let rules = enabled.of_kind("PrometheusRule");
    assert_eq!(rules.len(), 1, "{}", enabled.yaml);
    let rule = rules[0];
    assert_eq!(rule["apiVersion"], API);
    assert_eq!(rule["metadata"]["name"], "buoy-alerts");
    assert_eq!(rule["metadata"]["namespace"], "buoy-system");
    assert_eq!(
        rule["metadata"]["labels"]["app.kubernetes.io/part-of"],
        "buoy"
    );

    // Its spec is the file promtool checks and tests (tests/tests/alerts.rs), as it is.
    let file: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart().join("files/alerts.yaml")).unwrap())
            .unwrap();
    assert_eq!(rule["spec"], file);
    let alerts: Vec<&str> = file["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert_eq!(alerts.len(), 10, "{alerts:?}");

    // kubectl (YAML 1.1) reads the rendered object as Buoy's own reader (YAML 1.2) does.
    let doc = enabled
        .yaml
        .split("\n---")
        .find(|d| d.contains("kind: PrometheusRule"))
        .unwrap();
    assert_eq!(read_as_kubectl(doc), *rule);

    // With every option: the release's name and namespace, and its extra labels.
    let all = render_all_values();
    let rule = all.one("PrometheusRule", "edge-buoy-alerts");
    assert_eq!(rule["metadata"]["namespace"], "buoy-ci");
    assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(rule["metadata"]["labels"]["team"], "network");
    assert_eq!(rule["spec"], file);
}

#[test]
fn the_grafana_dashboard_renders_only_when_enabled_with_the_checked_json() {
    let file = std::fs::read_to_string(chart().join("files/dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&file).unwrap();
    assert_eq!(dashboard["uid"], "buoy-overview");
    // Off by default.
    let defaults = render_defaults();
    assert!(
        !defaults
            .of_kind("ConfigMap")
            .iter()
            .any(|c| c["data"].get("buoy.json").is_some()),
        "{}",
        defaults.yaml
    );

    // Enabled alone: in the release namespace, with the sidecar's default label.
    let dir = scratch("dashboard");
    let values = dir.path().join("values.yaml");
    std::fs::write(&values, "grafanaDashboard:\n  enabled: true\n").unwrap();
    let enabled = render(Some(&values), "buoy", "buoy-system", &[]);
    let map = enabled.one("ConfigMap", "buoy-dashboard");
    assert_eq!(map["metadata"]["namespace"], "buoy-system");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        map["metadata"]["labels"]["app.kubernetes.io/part-of"],
        "buoy"
    );
    // The file tests/tests/dashboard.rs checks, byte for byte.
    assert_eq!(map["data"]["buoy.json"], Value::String(file.clone()));
    assert_eq!(map["data"].as_object().unwrap().len(), 1, "{map}");
    assert!(
        enabled.notes.contains(
            "dashboard is in ConfigMap buoy-dashboard (namespace\nbuoy-system, label grafana_dashboard=1)"
        ),
        "{}",
        enabled.notes
    );
    assert!(!defaults.notes.contains("dashboard"), "{}", defaults.notes);
    // kubectl (YAML 1.1) reads the rendered object as Buoy's own reader (YAML 1.2) does.
    let doc = enabled
        .yaml
        .split("\n---")
        .find(|d| d.contains("name: buoy-dashboard"))
        .map(|d| format!("{d}\n"))
        .unwrap();
    // (The stream's last document: its line break restored, which the block scalar keeps.)
    assert_eq!(read_as_kubectl(&doc), *map);
    let lines = validate(&doc, "dashboard");
    assert!(
        lines.contains(&"VALID ConfigMap/buoy-dashboard v1".to_string()),
        "{lines:#?}"
    );

    // With every option: another namespace, the sidecar's label, extra labels and annotations.
    let all = render_all_values();
    let map = all.one("ConfigMap", "edge-buoy-dashboard");
    assert_eq!(map["metadata"]["namespace"], "monitoring");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(map["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(map["metadata"]["annotations"]["grafana_folder"], "Buoy");
    assert_eq!(map["data"]["buoy.json"], Value::String(file));
    // Another sidecar label: the value's, quoted where YAML 1.1 would read a bool.
    std::fs::write(
        &values,
        "grafanaDashboard:\n  enabled: true\n  sidecarLabel: \"on\"\n  sidecarLabelValue: \"yes\"\n",
    )
    .unwrap();
    let other = render(Some(&values), "buoy", "buoy-system", &[]);
    let map = other.one("ConfigMap", "buoy-dashboard");
    assert_eq!(map["metadata"]["labels"]["on"], "yes");
    assert!(map["metadata"]["labels"].get("grafana_dashboard").is_none());
    let doc = other
        .yaml
        .split("\n---")
        .find(|d| d.contains("name: buoy-dashboard"))
        .map(|d| format!("{d}\n"))
        .unwrap();
    assert_eq!(read_as_kubectl(&doc), *map);
}

#[test]
fn frr_enabled_renders_validates_and_reaches_the_agent_pods() {
    let dir = scratch("frr");
    let values = dir.path().join("values.yaml");
    std::fs::write(&values, "agent:\n  frr:\n    enabled: true\n").unwrap();
    let r = render(Some(&values), "buoy", "buoy-system", &[]);
    let lines = validate(&r.yaml, "frr");
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("VALID ")).count(),
        r.objects.len(),
        "{lines:#?}"
    );
    // The chart passes FRR's image and resources to the operator, and nothing else changes.
    let args = strings(&operator_container(&r, "buoy-operator")["args"]);
    let defaults = strings(&operator_container(&render_defaults(), "buoy-operator")["args"]);
    let frr_args = [
        "--agent-frr-image=quay.io/frrouting/frr:8.4.4",
        "--agent-frr-image-pull-policy=IfNotPresent",
        r#"--agent-frr-resources={"limits":{"memory":"256Mi"},"requests":{"cpu":"50m","memory":"64Mi"}}"#,
    ];
    for a in frr_args {
        assert!(args.iter().any(|x| x == a), "{a} not in {args:#?}");
    }
    let rest: Vec<&String> = args
        .iter()
        .filter(|a| !a.starts_with("--agent-frr-"))
        .collect();
    assert_eq!(rest, defaults.iter().collect::<Vec<_>>());

    // The operator, run with these arguments, puts FRR in the agents' Pods: the DaemonSet it
    // makes validates strictly too.
    let kubeconfig = dir.path().join("kubeconfig");
    let mut cmd = Command::new(workspace_bin("buoy-testapi"));
    cmd.args(["--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kubeconfig);
    let server = Proc::spawn("buoy-testapi", cmd).unwrap();
    server
        .wait_for_line("listening on ", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("buoy-testapi did not start: {:?}", server.output()));
    let k = Kubectl::new(kubeconfig);
    let manifest = dir.path().join("frr.yaml");
    let mut text =
        String::from("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: buoy-system\n---\n");
    for crd in ["addresspools", "bgppeers", "upstreampools", "virtualips"] {
        text.push_str(
            &std::fs::read_to_string(chart().join(format!("crds/{crd}.buoy.io.yaml"))).unwrap(),
        );
        text.push_str("\n---\n");
    }
    text.push_str(&r.yaml);
    std::fs::write(&manifest, text).unwrap();
    k.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    let operator_args: Vec<String> = args
        .into_iter()
        .map(|a| {
            if a.starts_with("--metrics-address=") {
                "--metrics-address=127.0.0.1:0".to_string()
            } else {
                a.replace("$(POD_NAMESPACE)", "buoy-system")
            }
        })
        .collect();
    let mut cmd = Command::new(workspace_bin("buoy-operator"));
    cmd.args(&operator_args)
        .env("KUBECONFIG", &k.kubeconfig)
        .env("POD_NAMESPACE", "buoy-system")
        .env("POD_NAME", "buoy-operator-0");
    let operator = Proc::spawn("buoy-operator", cmd).unwrap();
    k.ok(&[
        "apply",
        "-f",
        repo().join("examples/seed").to_str().unwrap(),
    ]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let ds = loop {
        let list = k.json(&["get", "daemonsets", "-n", "buoy-system"]);
        if let Some(ds) = list["items"].as_array().and_then(|i| i.first()).cloned() {
            break ds;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no agent DaemonSet; operator said: {:?}",
            operator.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(operator);
    let applied = json!({
        "apiVersion": ds["apiVersion"], "kind": ds["kind"],
        "metadata": {"name": ds["metadata"]["name"], "namespace": ds["metadata"]["namespace"],
                     "labels": ds["metadata"]["labels"]},
        "spec": ds["spec"],
    });
    let lines = validate(&serde_yaml::to_string(&applied).unwrap(), "frr-daemonset");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("VALID DaemonSet/buoy-agent-")),
        "{lines:#?}"
    );
    let pod = &ds["spec"]["template"]["spec"];
    let names: Vec<&str> = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["agent", "frr"]);
    let (agent, frr) = (&pod["containers"][0], &pod["containers"][1]);
    assert_eq!(frr["image"], "quay.io/frrouting/frr:8.4.4");
    assert_eq!(frr["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        frr["resources"],
        json!({"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}})
    );
    assert!(
        strings(&agent["args"])
            .join(" ")
            .ends_with("--frr-config-dir /etc/frr --frr-vty-socket /var/run/frr"),
        "{agent}"
    );
    assert_eq!(
        pod["initContainers"][0]["image"],
        "quay.io/frrouting/frr:8.4.4"
    );
    assert_eq!(pod["hostNetwork"], true);
}

#[test]
fn strict_validation_rejects_what_kubernetes_would() {
    // The validator is strict: an unknown field in a Deployment fails (so passing means something).
    let r = render_defaults();
    let mut deploy = r.one("Deployment", "buoy-operator").clone();
    deploy["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = json!("Always");
    let dir = scratch("invalid");
    let file = dir.path().join("invalid.yaml");
    std::fs::write(&file, serde_yaml::to_string(&deploy).unwrap()).unwrap();
    let (code, out, _) = helmtool(&[
        "validate",
        file.to_str().unwrap(),
        "--kubernetes-version",
        KUBERNETES_VERSION,
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("INVALID Deployment/buoy-operator"), "{out}");
    assert!(out.contains("imagePullPolcy"), "{out}");
}

#[test]
fn values_schema_rejects_bad_values_with_a_clear_message() {
    let chart = chart();
    for (values, message) in [
        (json!({"operator": {"replicas": 0}}), "/operator/replicas"),
        (
            json!({"operator": {"replicas": "two"}}),
            "/operator/replicas",
        ),
        (
            json!({"operator": {"image": {"pullPolicy": "Sometimes"}}}),
            "value must be one of 'Always', 'IfNotPresent', 'Never'",
        ),
        (
            json!({"operatr": {}}),
            "additional properties 'operatr' not allowed",
        ),
        (
            json!({"operator": {"resources": {"limits": {"memory": "lots"}}}}),
            "/operator/resources/limits/memory",
        ),
        (
            json!({"agent": {"vrrpAuthentication": {"enabled": true}}}),
            "/agent/vrrpAuthentication/secrets",
        ),
        (
            json!({"agent": {"vrrpAuthentication": {"enabled": true, "secrets": [{"name": "x"}]}}}),
            "missing property 'namespace'",
        ),
        (
            json!({"operator": {"podAntiAffinity": "strict"}}),
            "/operator/podAntiAffinity",
        ),
        (
            json!({"virtualIPs": [{"name": "Web_1", "spec": {}}]}),
            "/virtualIPs/0/name",
        ),
        (
            json!({"upstreamPools": [{"name": "web"}]}),
            "missing property 'spec'",
        ),
        (
            json!({"serviceMonitor": {"interval": "often"}}),
            "/serviceMonitor/interval",
        ),
        (
            json!({"operator": {"image": {"digest": "md5:abc"}}}),
            "/operator/image/digest",
        ),
        // The chart's own labels select pods: values cannot override them.
        (
            json!({"commonLabels": {"app.kubernetes.io/name": "x"}}),
            "invalid propertyName 'app.kubernetes.io/name'",
        ),
        (
            json!({"operator": {"podLabels": {"app.kubernetes.io/instance": "x"}}}),
            "invalid propertyName 'app.kubernetes.io/instance'",
        ),
        // commonLabels go on every ClusterRole: an aggregation label would hand the operator's
        // rules to whoever has `edit`.
        (
            json!({"commonLabels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}}),
            "invalid propertyName 'rbac.authorization.k8s.io/aggregate-to-edit'",
        ),
        (
            json!({"addressPolicy": "Audit"}),
            "value must be one of 'Enforce', 'Off'",
        ),
        // A bare `Off` in a values file is YAML 1.1's false: refused, not read as some policy.
        (json!({"addressPolicy": false}), "/addressPolicy"),
        (
            json!({"allowNodeLocalBackends": "yes"}),
            "/allowNodeLocalBackends",
        ),
        // AddressPools are cluster-scoped.
        (
            json!({"addressPools": [{"name": "lan", "namespace": "default", "spec": {}}]}),
            "additional properties 'namespace' not allowed",
        ),
        (
            json!({"addressPools": [{"name": "lan"}]}),
            "missing property 'spec'",
        ),
        (json!({"rbac": {"editorRole": "yes"}}), "/rbac/editorRole"),
        (
            json!({"agent": {"frr": {"enabled": "yes"}}}),
            "/agent/frr/enabled",
        ),
        // FRR's version is its own, not the chart's appVersion.
        (
            json!({"agent": {"frr": {"image": {"tag": ""}}}}),
            "/agent/frr/image/tag",
        ),
    ] {
        let (code, out, err) = helmtool(&[
            "schema",
            chart.to_str().unwrap(),
            "--values-json",
            &values.to_string(),
        ]);
        assert_eq!(code, 3, "{values} was accepted:\n{out}\n{err}");
        assert!(
            out.contains(message),
            "{values}: expected {message:?} in:\n{out}"
        );
    }
    let (code, out, err) = helmtool(&[
        "schema",
        chart.to_str().unwrap(),
        "--values-json",
        r#"{"operator": {"replicas": 3}, "agent": {"vrrpAuthentication": {"enabled": true, "secrets": [{"namespace": "default", "name": "vrrp-auth"}]}}}"#,
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
}

// ---- RBAC ----

const WRITE_VERBS: [&str; 10] = [
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "escalate",
    "bind",
    "impersonate",
    "approve",
    "*",
];

/// Every rule granted to a ServiceAccount by the (Cluster)RoleBindings of a render:
/// (role kind, namespace of the grant or None for cluster-wide, rule).
fn rules_of(r: &Rendered, sa: &str, sa_namespace: &str) -> Vec<(String, Option<String>, Value)> {
    let mut out = Vec::new();
    for b in r
        .objects
        .iter()
        .filter(|o| o["kind"] == "RoleBinding" || o["kind"] == "ClusterRoleBinding")
    {
        let bound = b["subjects"].as_array().unwrap().iter().any(|s| {
            s["kind"] == "ServiceAccount" && s["name"] == sa && s["namespace"] == sa_namespace
        });
        if !bound {
            continue;
        }
        let role_kind = b["roleRef"]["kind"].as_str().unwrap();
        let role_name = &b["roleRef"]["name"];
        let ns = b["metadata"]["namespace"].as_str().map(str::to_string);
        let role = r
            .objects
            .iter()
            .find(|o| {
                o["kind"] == role_kind
                    && o["metadata"]["name"] == *role_name
                    && (role_kind == "ClusterRole"
                        || o["metadata"]["namespace"].as_str() == ns.as_deref())
            })
            .unwrap_or_else(|| panic!("binding {b:#} names a role the chart does not create"));
        for rule in role["rules"].as_array().unwrap() {
            out.push((role_kind.to_string(), ns.clone(), rule.clone()));
        }
    }
    out
}

/// One permission: (API group, resource, verb, resourceNames, namespace or None for cluster-wide).
type Grant = (String, String, String, Vec<String>, Option<String>);

/// The permissions of rules, one per group, resource and verb.
fn grants(rules: &[(String, Option<String>, Value)]) -> Vec<Grant> {
    let mut out = Vec::new();
    for (_, ns, rule) in rules {
        for g in strings(&rule["apiGroups"]) {
            for res in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    out.push((
                        g.clone(),
                        res.clone(),
                        verb,
                        strings(&rule["resourceNames"]),
                        ns.clone(),
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn agent_rbac_is_least_privilege() {
    let r = render_defaults();
    let agent = grants(&rules_of(&r, "buoy-agent", "buoy-system"));
    assert!(!agent.is_empty());
    for (g, res, verb, names, _) in &agent {
        assert!(
            !(g == "*" || res == "*" || verb == "*"),
            "no wildcards: {g}/{res} {verb}"
        );
        assert_ne!(res, "secrets", "no Secrets without VRRP authentication");
        if WRITE_VERBS.contains(&verb.as_str()) {
            let allowed = (g == "buoy.io"
                && (res == "virtualips/status"
                    || res == "upstreampools/status"
                    || res == "bgppeers/status")
                && verb == "patch")
                || (g == "events.k8s.io"
                    && res == "events"
                    && (verb == "create" || verb == "patch"));
            assert!(allowed, "agent may not {verb} {g}/{res}");
        }
        assert!(names.is_empty());
    }
    // What agents read, and exactly that.
    let reads: BTreeSet<(String, String)> = agent
        .iter()
        .filter(|(_, _, v, _, _)| v == "watch")
        .map(|(g, r, _, _, _)| (g.clone(), r.clone()))
        .collect();
    let expect: BTreeSet<(String, String)> = [
        ("buoy.io", "virtualips"),
        ("buoy.io", "upstreampools"),
        ("buoy.io", "addresspools"),
        ("buoy.io", "bgppeers"),
        ("discovery.k8s.io", "endpointslices"),
        ("", "services"),
        ("", "nodes"),
        ("", "namespaces"),
    ]
    .into_iter()
    .map(|(g, r)| (g.to_string(), r.to_string()))
    .collect();
    assert_eq!(reads, expect);
    for status in [
        "virtualips/status",
        "upstreampools/status",
        "bgppeers/status",
    ] {
        assert!(
            agent
                .iter()
                .any(|(g, r, v, _, _)| g == "buoy.io" && r == status && v == "patch"),
            "{status}"
        );
    }
    // The agents' ClusterRole, rule by rule: what node-agent/src/cluster.rs calls (reflectors
    // over Buoy's kinds, the Services and EndpointSlices of Service-backed pools, its own Node,
    // Namespaces' labels for AddressPools' namespaceSelector, the BGPPeers it peers with;
    // server-side apply of its own status entries; the Events recorder), and nothing else. No
    // Pods.
    assert_eq!(
        r.one("ClusterRole", "buoy-agent")["rules"],
        json!([
            {"apiGroups": ["buoy.io"], "resources": ["virtualips", "upstreampools"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["buoy.io"], "resources": ["addresspools"], "verbs": ["list", "watch"]},
            {"apiGroups": ["buoy.io"], "resources": ["virtualips/status", "upstreampools/status"],
             "verbs": ["patch"]},
            {"apiGroups": ["buoy.io"], "resources": ["bgppeers"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["buoy.io"], "resources": ["bgppeers/status"], "verbs": ["patch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["services", "nodes"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"],
             "verbs": ["create", "patch"]},
        ])
    );
    for verb in ["create", "patch"] {
        assert!(
            agent
                .iter()
                .any(|(g, r, v, _, _)| g == "events.k8s.io" && r == "events" && v == verb)
        );
    }

    // With VRRP v2 authentication: `get` of the named Secrets, in their namespaces; with
    // certificates: `get`, `list` and `watch` of the named ones (a watch by name); nothing more.
    let r = render_all_values();
    let agent = grants(&rules_of(&r, "buoy-node-agent", "buoy-ci"));
    let secrets: BTreeSet<(String, String, String)> = agent
        .iter()
        .filter(|(_, res, _, _, _)| res == "secrets")
        .map(|(_, _, v, n, ns)| (v.clone(), n.join(","), ns.clone().unwrap_or_default()))
        .collect();
    let expect: BTreeSet<(String, String, String)> = [
        ("get", "vrrp-auth,vrrp-auth-2", "default"),
        ("get", "vrrp-auth", "lb"),
        (
            "get",
            "shop-example-com-tls,www-shop-example-com-tls",
            "shop",
        ),
        (
            "list",
            "shop-example-com-tls,www-shop-example-com-tls",
            "shop",
        ),
        (
            "watch",
            "shop-example-com-tls,www-shop-example-com-tls",
            "shop",
        ),
    ]
    .into_iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(
        secrets, expect,
        "Secrets only by name, per namespace, read-only"
    );
    for (g, res, verb, names, _) in &agent {
        if res != "secrets" {
            assert!(names.is_empty());
        }
        if WRITE_VERBS.contains(&verb.as_str()) {
            assert!(
                ((res == "virtualips/status"
                    || res == "upstreampools/status"
                    || res == "bgppeers/status")
                    && verb == "patch")
                    || (g == "events.k8s.io" && res == "events"),
                "agent may not {verb} {g}/{res}"
            );
        }
    }
}

#[test]
fn operator_rbac_grants_what_the_operator_needs_and_no_more() {
    let r = render_defaults();
    let op = grants(&rules_of(&r, "buoy-operator", "buoy-system"));
    let has = |g: &str, res: &str, verb: &str, ns: Option<&str>| {
        op.iter().any(|(og, ores, overb, _, ons)| {
            og == g && ores == res && overb == verb && ons.as_deref() == ns
        })
    };
    for verb in ["get", "list", "watch", "patch", "update"] {
        assert!(has("buoy.io", "virtualips", verb, None), "{verb}");
        assert!(has("buoy.io", "upstreampools", verb, None), "{verb}");
    }
    for verb in ["get", "patch", "update"] {
        assert!(has("buoy.io", "virtualips/status", verb, None));
        assert!(has("buoy.io", "upstreampools/status", verb, None));
    }
    assert!(has("buoy.io", "virtualips/finalizers", "update", None));
    for verb in [
        "get", "list", "watch", "create", "patch", "update", "delete",
    ] {
        assert!(
            has("apps", "daemonsets", verb, Some("buoy-system")),
            "{verb}"
        );
    }
    for verb in ["get", "list", "watch", "create", "update", "patch"] {
        assert!(
            has("coordination.k8s.io", "leases", verb, Some("buoy-system")),
            "{verb}"
        );
    }
    for verb in ["create", "patch"] {
        assert!(has("events.k8s.io", "events", verb, None));
        assert!(has("", "events", verb, None));
    }
    for verb in ["get", "list", "watch"] {
        assert!(has("", "nodes", verb, None), "{verb}");
        assert!(has("buoy.io", "addresspools", verb, None), "{verb}");
    }
    // LoadBalancer Services: read them, write their status (the address), create and delete
    // the VirtualIPs that carry their addresses.
    for verb in ["get", "list", "watch"] {
        assert!(has("", "services", verb, None), "{verb}");
    }
    assert!(has("", "services/status", "patch", None));
    for verb in ["create", "delete"] {
        assert!(has("buoy.io", "virtualips", verb, None), "{verb}");
    }
    // Namespaces' labels (AddressPools' namespaceSelector) and the EndpointSlices of
    // Service-backed pools: reflectors only, so list and watch.
    for verb in ["list", "watch"] {
        assert!(has("", "namespaces", verb, None), "{verb}");
        assert!(
            has("discovery.k8s.io", "endpointslices", verb, None),
            "{verb}"
        );
    }
    // AddressPools are the cluster admin's: the operator writes their status (server-side
    // apply), never their spec.
    let on_pools: BTreeSet<(&str, &str)> = op
        .iter()
        .filter(|(_, res, _, _, _)| res.starts_with("addresspools"))
        .map(|(_, res, verb, _, _)| (res.as_str(), verb.as_str()))
        .collect();
    assert_eq!(
        on_pools,
        BTreeSet::from([
            ("addresspools", "get"),
            ("addresspools", "list"),
            ("addresspools", "watch"),
            ("addresspools/status", "patch"),
        ])
    );
    // So are BGPPeers: the operator sums up the agents' session entries in their status.
    let on_peers: BTreeSet<(&str, &str)> = op
        .iter()
        .filter(|(g, res, _, _, ns)| g == "buoy.io" && res.starts_with("bgppeers") && ns.is_none())
        .map(|(_, res, verb, _, _)| (res.as_str(), verb.as_str()))
        .collect();
    assert_eq!(
        on_peers,
        BTreeSet::from([
            ("bgppeers", "get"),
            ("bgppeers", "list"),
            ("bgppeers", "watch"),
            ("bgppeers/status", "get"),
            ("bgppeers/status", "patch"),
        ])
    );
    // Reads of Namespaces are list and watch (their labels), not get.
    assert!(!has("", "namespaces", "get", None));
    for (g, res, verb, _, ns) in &op {
        assert!(!(g == "*" || res == "*" || verb == "*"), "no wildcards");
        assert_ne!(res, "secrets", "the operator reads no Secret");
        // Writes outside its own namespace: Buoy's objects, Events and Services' status only
        // (never a Service's spec).
        if ns.is_none() && WRITE_VERBS.contains(&verb.as_str()) {
            assert!(
                g == "buoy.io" || res == "events" || (g.is_empty() && res == "services/status"),
                "cluster-wide {verb} on {g}/{res}"
            );
        }
        if verb == "delete" {
            assert!(
                (res == "daemonsets" && ns.as_deref() == Some("buoy-system"))
                    || (g == "buoy.io" && res == "virtualips"),
                "the operator deletes nothing but its DaemonSets and Services' VirtualIPs: {g}/{res}"
            );
        }
    }
}

/// (API group, resource, verb) of every rule of a Role or ClusterRole.
fn role_grants(role: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for g in strings(&rule["apiGroups"]) {
            for res in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    out.insert((g.clone(), res.clone(), verb));
                }
            }
        }
    }
    out
}

fn roles(r: &Rendered) -> Vec<&Value> {
    r.objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
        .collect()
}

fn aggregation_labels(role: &Value) -> Vec<String> {
    role["metadata"]["labels"]
        .as_object()
        .map(|l| {
            l.keys()
                .filter(|k| k.starts_with("rbac.authorization.k8s.io/aggregate-to-"))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn no_role_of_the_chart_grants_pods() {
    // Neither the operator nor the agents read Pods (placement and status come from Nodes and
    // the agents' own reports).
    for r in [render_defaults(), render_all_values()] {
        for role in roles(&r) {
            for (g, res, verb) in role_grants(role) {
                assert!(
                    !(g.is_empty() && (res == "pods" || res.starts_with("pods/"))),
                    "{} grants {verb} on {res}",
                    role["metadata"]["name"]
                );
            }
        }
    }
}

#[test]
fn view_role_is_read_only_and_aggregated_into_view() {
    let r = render_defaults();
    let view = r.one("ClusterRole", "buoy-view");
    assert_eq!(
        view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"],
        "true"
    );
    // `view` only: Kubernetes aggregates `view` into `edit` and `edit` into `admin` itself.
    assert_eq!(
        aggregation_labels(view),
        ["rbac.authorization.k8s.io/aggregate-to-view"]
    );
    let mut want = BTreeSet::new();
    for res in [
        "virtualips",
        "virtualips/status",
        "upstreampools",
        "upstreampools/status",
        "addresspools",
        "addresspools/status",
        "bgppeers",
        "bgppeers/status",
    ] {
        for verb in ["get", "list", "watch"] {
            want.insert(("buoy.io".to_string(), res.to_string(), verb.to_string()));
        }
    }
    assert_eq!(role_grants(view), want, "get, list and watch, nothing else");
}

#[test]
fn editor_role_writes_virtualips_and_upstreampools_and_no_addresspool() {
    let r = render_defaults();
    let editor = r.one("ClusterRole", "buoy-editor");
    // Not aggregated into `edit` or `admin` (nor anything else): a cluster admin binds it per
    // namespace, as a VirtualIP claims an address of the LAN.
    assert!(aggregation_labels(editor).is_empty(), "{editor:#}");
    let got = role_grants(editor);
    for res in ["virtualips", "upstreampools"] {
        for verb in [
            "get", "list", "watch", "create", "update", "patch", "delete",
        ] {
            assert!(
                got.contains(&("buoy.io".to_string(), res.to_string(), verb.to_string())),
                "{verb} {res}"
            );
        }
    }
    for verb in ["get", "list", "watch"] {
        assert!(got.contains(&(
            "buoy.io".to_string(),
            "addresspools".to_string(),
            verb.to_string()
        )));
    }
    for (g, res, verb) in &got {
        assert_eq!(g, "buoy.io", "Buoy's kinds only: {res}");
        if WRITE_VERBS.contains(&verb.as_str()) {
            assert!(
                res == "virtualips" || res == "upstreampools",
                "the editor may not {verb} {res}"
            );
        }
    }
    // The chart binds neither role to anyone: that is the cluster admin's call.
    for b in r
        .objects
        .iter()
        .filter(|o| o["kind"] == "RoleBinding" || o["kind"] == "ClusterRoleBinding")
    {
        let role = b["roleRef"]["name"].as_str().unwrap();
        assert!(role != "buoy-editor" && role != "buoy-view", "{b:#}");
    }
}

#[test]
fn only_the_operator_writes_addresspools_and_only_their_status() {
    for (r, operator, view) in [
        (render_defaults(), "buoy-operator", "buoy-view"),
        (render_all_values(), "edge-buoy-operator", "edge-buoy-view"),
    ] {
        for role in roles(&r) {
            let name = role["metadata"]["name"].as_str().unwrap();
            for (g, res, verb) in role_grants(role) {
                if g == "buoy.io"
                    && res.starts_with("addresspools")
                    && WRITE_VERBS.contains(&verb.as_str())
                {
                    assert!(
                        name == operator && res == "addresspools/status" && verb == "patch",
                        "{name} may not {verb} {res}"
                    );
                }
            }
            // Only the read-only role joins the built-in roles.
            if name != view {
                assert!(aggregation_labels(role).is_empty(), "{role:#}");
            }
        }
    }
}

#[test]
fn user_roles_follow_their_values() {
    let dir = scratch("rbac");
    let values = dir.path().join("values.yaml");
    let cluster_roles = |yaml: &str| -> BTreeSet<String> {
        std::fs::write(&values, yaml).unwrap();
        render(Some(&values), "buoy", "buoy-system", &[])
            .of_kind("ClusterRole")
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let set =
        |names: &[&str]| -> BTreeSet<String> { names.iter().map(|n| n.to_string()).collect() };
    assert_eq!(
        cluster_roles("rbac:\n  aggregateToView: false\n"),
        set(&["buoy-agent", "buoy-editor", "buoy-operator"])
    );
    assert_eq!(
        cluster_roles("rbac:\n  editorRole: false\n"),
        set(&["buoy-agent", "buoy-operator", "buoy-view"])
    );
    // Without rbac.create, no RBAC at all, the user roles included.
    std::fs::write(&values, "rbac:\n  create: false\n").unwrap();
    let none = render(Some(&values), "buoy", "buoy-system", &[]);
    for kind in ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"] {
        assert!(none.of_kind(kind).is_empty(), "{kind}");
    }
}

// ---- generated files ----

#[test]
fn deploy_manifest_is_the_chart_rendered_with_default_values() {
    let committed = std::fs::read_to_string(repo().join("deploy/buoy.yaml")).unwrap();
    let fresh = helmtool_ok(&["render-deploy", chart().to_str().unwrap()]);
    assert!(
        committed == fresh,
        "deploy/buoy.yaml drifted from charts/buoy: run scripts/render-chart"
    );
    let objects = parse_stream(&committed);
    assert_eq!(objects[0]["kind"], "Namespace");
    assert_eq!(objects[0]["metadata"]["name"], "buoy-system");
    // The CRDs are the generated ones, before anything that uses them.
    let crds: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .collect();
    assert_eq!(crds.len(), 4);
    for crd in crds {
        let name = crd["metadata"]["name"].as_str().unwrap();
        let generated: Value = parse_stream(
            &std::fs::read_to_string(chart().join(format!("crds/{name}.yaml"))).unwrap(),
        )
        .remove(0);
        assert_eq!(crd, &generated, "{name}");
    }
    validate(&committed, "deploy");
}

#[test]
fn chart_readme_lists_every_value() {
    let (code, readme, err) = helmtool(&[
        "values-doc",
        chart().to_str().unwrap(),
        "--readme",
        chart().join("README.md").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let committed = std::fs::read_to_string(chart().join("README.md")).unwrap();
    assert!(
        committed == readme,
        "charts/buoy/README.md's values table is stale: run scripts/render-chart"
    );
    // Independently of the generator: every leaf of values.yaml (or the value that holds it,
    // for free-form maps like resources) is a row of the table.
    let mut all = BTreeSet::new();
    leaves(&load_yaml(&chart().join("values.yaml")), "", &mut all);
    let rows: BTreeSet<String> = committed
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect();
    for leaf in &all {
        assert!(
            rows.iter()
                .any(|r| leaf == r || leaf.starts_with(&format!("{r}."))),
            "{leaf} is not in charts/buoy/README.md"
        );
    }
}

// ---- Dockerfile ----

struct Stage {
    name: String,
    base: String,
    copies: Vec<(String, String)>,
    entrypoint: Vec<String>,
    user: Option<String>,
    title: Option<String>,
}

fn dockerfile_stages() -> Vec<Stage> {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    // Join continuation lines, drop comments.
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        if let Some(s) = t.strip_suffix('\\') {
            current.push_str(s);
            current.push(' ');
        } else {
            current.push_str(t);
            lines.push(std::mem::take(&mut current));
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for line in lines {
        let (instr, rest) = line.split_once(' ').unwrap_or((&line, ""));
        match instr.to_uppercase().as_str() {
            "FROM" => {
                // `--platform=…` and other flags come before the image.
                let words: Vec<&str> = rest
                    .split_whitespace()
                    .filter(|w| !w.starts_with("--"))
                    .collect();
                stages.push(Stage {
                    base: words[0].to_string(),
                    name: words.get(2).map(|s| s.to_string()).unwrap_or_default(),
                    copies: Vec::new(),
                    entrypoint: Vec::new(),
                    user: None,
                    title: None,
                });
            }
            "COPY" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                if words[0].starts_with("--from=") {
                    stages
                        .last_mut()
                        .unwrap()
                        .copies
                        .push((words[1].to_string(), words[2].to_string()));
                }
            }
            "ENTRYPOINT" => {
                stages.last_mut().unwrap().entrypoint =
                    serde_json::from_str(rest).expect("ENTRYPOINT in exec form (a JSON array)");
            }
            "USER" => stages.last_mut().unwrap().user = Some(rest.trim().to_string()),
            "LABEL" => {
                if let Some(i) = rest.find("org.opencontainers.image.title=\"") {
                    let v = &rest[i + "org.opencontainers.image.title=\"".len()..];
                    stages.last_mut().unwrap().title = Some(v[..v.find('"').unwrap()].to_string());
                }
            }
            _ => {}
        }
    }
    stages
}

/// Binary targets of the workspace: bin name → package name.
fn workspace_bins() -> BTreeMap<String, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut bins = BTreeMap::new();
    for p in meta["packages"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            if strings(&t["kind"]).iter().any(|k| k == "bin") {
                bins.insert(
                    t["name"].as_str().unwrap().to_string(),
                    p["name"].as_str().unwrap().to_string(),
                );
            }
        }
    }
    bins
}

#[test]
fn dockerfile_builds_workspace_binaries_with_the_charts_entrypoints() {
    let stages = dockerfile_stages();
    let bins = workspace_bins();
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();

    let build = stages.iter().find(|s| s.name == "build").unwrap();
    assert!(build.base.starts_with("rust:"), "{}", build.base);
    // The builder's Rust is at least the workspace's rust-version.
    let want: Vec<u32> = load_toml_rust_version()
        .split('.')
        .map(|n| n.parse().unwrap())
        .collect();
    let have: Vec<u32> = build.base["rust:".len()..]
        .split('-')
        .next()
        .unwrap()
        .split('.')
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(
        have >= want,
        "rust image {have:?} older than rust-version {want:?}"
    );
    // Every package a build names exists, and every binary copied out is one they build: the
    // operator and the plugin in the release profile, the agent in it or, with a profile to
    // apply, in scripts/release's `pgo` profile (alone, as that script builds it).
    let mut built: Vec<&str> = Vec::new();
    for (k, _) in text.match_indices("cargo build") {
        let cmd = text[k..].split(['&', ';']).next().unwrap();
        assert!(cmd.contains("--locked"), "{cmd}");
        assert!(
            cmd.contains("--release") || cmd.contains("--profile pgo "),
            "{cmd}"
        );
        built.extend(
            cmd.split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .filter(|w| w[0] == "-p")
                .map(|w| w[1]),
        );
    }
    assert!(text.contains("-Cprofile-use=/src/dist/pgo.profdata"));
    assert!(!built.is_empty());
    for p in &built {
        assert!(
            bins.values().any(|v| v == p),
            "cargo build -p {p}: no such package"
        );
    }
    for stage in stages.iter().filter(|s| s.name != "build") {
        assert!(
            !stage.copies.is_empty(),
            "stage {} copies nothing",
            stage.name
        );
        for (from, to) in &stage.copies {
            let bin = Path::new(from).file_name().unwrap().to_str().unwrap();
            let package = bins
                .get(bin)
                .unwrap_or_else(|| panic!("{from}: no binary {bin} in the workspace"));
            assert!(
                built.contains(&package.as_str()),
                "{bin} of {package} is not built"
            );
            assert!(
                text.contains(&format!("/release/{bin}"))
                    || (bin == "buoy-agent" && text.contains("/\"$agent\"/buoy-agent")),
                "{bin} is copied from the release build"
            );
            assert_eq!(Path::new(to).file_name().unwrap(), bin);
        }
        // The entrypoint is the binary the stage copies.
        assert_eq!(
            stage.entrypoint.first(),
            Some(&stage.copies[0].1),
            "stage {}",
            stage.name
        );
    }

    let r = render_defaults();
    let values = load_yaml(&chart().join("values.yaml"));
    // Operator: the chart's command is the image's entrypoint, its user the image's, non-root.
    let op = stages.iter().find(|s| s.name == "operator").unwrap();
    let c = operator_container(&r, "buoy-operator");
    assert_eq!(strings(&c["command"]), op.entrypoint);
    assert_eq!(op.entrypoint, ["/usr/local/bin/buoy-operator"]);
    assert_eq!(bins["buoy-operator"], "buoy-operator");
    let uid = values["operator"]["runAsUser"].as_u64().unwrap();
    assert_eq!(op.user.as_deref(), Some(format!("{uid}:{uid}").as_str()));
    assert!(uid != 0);
    assert!(op.base.contains("nonroot"), "{}", op.base);
    assert!(
        values["operator"]["image"]["repository"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{}", op.title.as_deref().unwrap()))
    );
    // Agent: the image the chart passes to the operator runs buoy-agent, whose `run` the
    // operator's DaemonSets call.
    let agent = stages.iter().find(|s| s.name == "agent").unwrap();
    assert_eq!(agent.entrypoint, ["/usr/local/bin/buoy-agent"]);
    assert_eq!(bins["buoy-agent"], "buoy-agent");
    // … and the kubectl plugin, for operators to take from it.
    assert_eq!(bins["kubectl-buoy"], "kubectl-buoy");
    assert!(
        agent
            .copies
            .iter()
            .any(|(_, to)| to == "/usr/local/bin/kubectl-buoy"),
        "the agent image has no kubectl-buoy"
    );
    assert!(
        strings(&c["args"])
            .iter()
            .any(|a| a == "--agent-image=ghcr.io/buoy-io/buoy-agent:0.1.0")
    );
    assert!(
        values["agent"]["image"]["repository"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{}", agent.title.as_deref().unwrap()))
    );
    // The agent image carries what the BGP mode drives FRR with (vtysh, frr-reload.py and
    // python3), FRR's daemons running in the Pod's `frr` container (agent.frr).
    let agent_stage = &text[text.find(" AS agent").unwrap()..];
    let install = agent_stage
        .lines()
        .find(|l| l.contains("apt-get install"))
        .unwrap();
    for package in ["frr", "frr-pythontools"] {
        assert!(
            install.split_whitespace().any(|w| w == package),
            "{package} not in {install}"
        );
    }
    // The build context keeps target/ and .git/ out.
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    for p in ["target/", ".git/"] {
        assert!(ignore.lines().any(|l| l.trim() == p), "{p}");
    }
}

/// The table `[name]` of a TOML text: its lines up to the next table, without comments and blank
/// lines.
fn toml_table<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("[{name}]");
    text.lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn the_optimised_agent_is_built_with_the_instrumented_builds_settings() {
    // LLVM finds a function's profile by its symbol, and cargo hashes every profile setting into
    // the symbols: a `pgo` profile that set anything of its own (debug info, say) would leave
    // the training's profile unused, silently (scripts/release checks the names after a build;
    // this catches it before one).
    let text = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    assert_eq!(
        toml_table(&text, "profile.pgo"),
        ["inherits = \"pgo-generate\""]
    );
    assert!(toml_table(&text, "profile.pgo-generate").contains(&"inherits = \"release\""));
}

fn load_toml_rust_version() -> String {
    let text = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"')
        .to_string()
}

// ---- applied to the Kubernetes API test server ----

#[test]
fn rendered_manifests_apply_to_the_api_test_server() {
    let dir = scratch("apply");
    let kubeconfig = dir.path().join("kubeconfig");
    let mut cmd = Command::new(workspace_bin("buoy-testapi"));
    cmd.args(["--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kubeconfig);
    let server = Proc::spawn("buoy-testapi", cmd).unwrap();
    server
        .wait_for_line("listening on ", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("buoy-testapi did not start: {:?}", server.output()));
    let k = Kubectl::new(kubeconfig);

    // The plain manifest, as a user applies it.
    let deploy = repo().join("deploy/buoy.yaml");
    let out = k.ok(&["apply", "-f", deploy.to_str().unwrap()]);
    for created in [
        "namespace/buoy-system created",
        "customresourcedefinition.apiextensions.k8s.io/virtualips.buoy.io created",
        "customresourcedefinition.apiextensions.k8s.io/upstreampools.buoy.io created",
        "customresourcedefinition.apiextensions.k8s.io/addresspools.buoy.io created",
        "serviceaccount/buoy-operator created",
        "serviceaccount/buoy-agent created",
        "clusterrole.rbac.authorization.k8s.io/buoy-operator created",
        "clusterrole.rbac.authorization.k8s.io/buoy-agent created",
        "clusterrole.rbac.authorization.k8s.io/buoy-view created",
        "clusterrole.rbac.authorization.k8s.io/buoy-editor created",
        "clusterrolebinding.rbac.authorization.k8s.io/buoy-operator created",
        "clusterrolebinding.rbac.authorization.k8s.io/buoy-agent created",
        "role.rbac.authorization.k8s.io/buoy-operator created",
        "role.rbac.authorization.k8s.io/buoy-operator-leader-election created",
        "rolebinding.rbac.authorization.k8s.io/buoy-operator created",
        "rolebinding.rbac.authorization.k8s.io/buoy-operator-leader-election created",
        "service/buoy-operator-metrics created",
        "service/buoy-agent-metrics created",
        "poddisruptionbudget.policy/buoy-operator created",
        "deployment.apps/buoy-operator created",
    ] {
        assert!(out.contains(created), "{created} missing in:\n{out}");
    }
    let again = k.ok(&["apply", "-f", deploy.to_str().unwrap()]);
    assert!(
        again.contains("deployment.apps/buoy-operator unchanged"),
        "{again}"
    );

    let d = k.json(&["get", "deployment", "buoy-operator", "-n", "buoy-system"]);
    let rendered = render_defaults();
    let want = rendered.one("Deployment", "buoy-operator");
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["args"],
        want["spec"]["template"]["spec"]["containers"][0]["args"]
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["serviceAccountName"],
        "buoy-operator"
    );
    let sas = k.ok(&["get", "serviceaccounts", "-n", "buoy-system", "-o", "name"]);
    for sa in ["serviceaccount/buoy-operator", "serviceaccount/buoy-agent"] {
        assert!(sas.lines().any(|l| l == sa), "{sas}");
    }
    let role = k.json(&["get", "clusterrole", "buoy-agent"]);
    assert_eq!(
        role["rules"],
        rendered.one("ClusterRole", "buoy-agent")["rules"]
    );
    let binding = k.json(&[
        "get",
        "rolebinding",
        "buoy-operator-leader-election",
        "-n",
        "buoy-system",
    ]);
    assert_eq!(binding["subjects"][0]["name"], "buoy-operator");
    let table = k.ok(&["get", "deployments,pdb,services", "-n", "buoy-system"]);
    for name in [
        "buoy-operator",
        "buoy-operator-metrics",
        "buoy-agent-metrics",
    ] {
        assert!(table.contains(name), "{table}");
    }
    // The CRDs serve: `kubectl get vip` works (and is empty).
    let (ok, out, err) = k.run(&["get", "vip", "-A"], None);
    assert!(ok, "{out}\n{err}");

    // The operator, started with the Deployment's own arguments, makes the agent DaemonSet as
    // the chart configured it.
    let args: Vec<String> = strings(&want["spec"]["template"]["spec"]["containers"][0]["args"])
        .into_iter()
        .map(|a| {
            if a.starts_with("--metrics-address=") {
                "--metrics-address=127.0.0.1:0".to_string()
            } else {
                a.replace("$(POD_NAMESPACE)", "buoy-system")
            }
        })
        .collect();
    let mut cmd = Command::new(workspace_bin("buoy-operator"));
    cmd.args(&args)
        .env("KUBECONFIG", &k.kubeconfig)
        .env("POD_NAMESPACE", "buoy-system")
        .env("POD_NAME", "buoy-operator-0");
    let operator = Proc::spawn("buoy-operator", cmd).unwrap();
    k.ok(&[
        "apply",
        "-f",
        repo().join("examples/seed").to_str().unwrap(),
    ]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let ds = loop {
        let list = k.json(&[
            "get",
            "daemonsets",
            "-n",
            "buoy-system",
            "-l",
            "app.kubernetes.io/name=buoy-agent",
        ]);
        if let Some(ds) = list["items"].as_array().and_then(|i| i.first()).cloned() {
            break ds;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no agent DaemonSet; operator said: {:?}",
            operator.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let pod = &ds["spec"]["template"];
    let agent = &pod["spec"]["containers"][0];
    assert_eq!(agent["image"], "ghcr.io/buoy-io/buoy-agent:0.1.0");
    assert_eq!(agent["imagePullPolicy"], "IfNotPresent");
    assert_eq!(pod["spec"]["serviceAccountName"], "buoy-agent");
    assert_eq!(
        agent["resources"],
        json!({"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}})
    );
    // The chart's address policy reaches the agents through the operator.
    assert!(
        strings(&agent["args"])
            .join(" ")
            .contains("--address-policy Enforce"),
        "{agent}"
    );
    // The admin endpoint (metrics, probes; port 9901) listens on the node's own address, which
    // the agent reads from $HOST_IP, not on every address of the host network.
    assert!(
        !strings(&agent["args"]).join(" ").contains("0.0.0.0"),
        "{agent}"
    );
    let host_ip = agent["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "HOST_IP")
        .unwrap_or_else(|| panic!("no HOST_IP: {agent}"));
    assert_eq!(
        host_ip["valueFrom"]["fieldRef"]["fieldPath"],
        "status.hostIP"
    );
    assert_eq!(agent["ports"][0]["containerPort"], 9901);
    // The chart's agent metrics Service selects these pods.
    let svc = rendered.one("Service", "buoy-agent-metrics");
    for (key, value) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&pod["metadata"]["labels"][key], value, "{pod}");
    }
    drop(operator);

    // Every option, in another namespace (the ServiceMonitor needs the Prometheus Operator's
    // CRDs, which this server does not have, so it is rendered without that API, as Helm
    // would on such a cluster).
    let all = render(Some(&all_values()), "edge", "buoy-ci", &[]);
    let file = dir.path().join("all-values.yaml");
    let mut text = String::new();
    for ns in ["buoy-ci", "buoy-leases", "lb", "shop", "monitoring"] {
        text.push_str(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n---\n"
        ));
    }
    text.push_str(&all.yaml);
    std::fs::write(&file, text).unwrap();
    let out = k.ok(&["apply", "-f", file.to_str().unwrap()]);
    for created in [
        "deployment.apps/edge-buoy-operator created",
        "role.rbac.authorization.k8s.io/edge-buoy-agent-vrrp-secrets created",
        "role.rbac.authorization.k8s.io/edge-buoy-agent-certificates created",
        "virtualip.buoy.io/web created",
        "upstreampool.buoy.io/web created",
        "addresspool.buoy.io/lan created",
        "configmap/edge-buoy-dashboard created",
    ] {
        assert!(out.contains(created), "{created} missing in:\n{out}");
    }
    let vips = k.ok(&["get", "vip", "-n", "default"]);
    assert!(vips.lines().any(|l| l.starts_with("web ")), "{vips}");
    let apool = k.json(&["get", "apool", "lan"]);
    assert!(apool["metadata"].get("namespace").is_none(), "{apool}");
    assert_eq!(apool["spec"]["namespaces"], json!(["default"]));
    let secrets_role = k.json(&["get", "role", "edge-buoy-agent-vrrp-secrets", "-n", "lb"]);
    assert_eq!(
        secrets_role["rules"],
        json!([{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["vrrp-auth"], "verbs": ["get"]}])
    );
}
