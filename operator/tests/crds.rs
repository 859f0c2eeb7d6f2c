//! The committed CRDs are exactly what `buoy-operator crds` prints, and they carry what
//! `kubectl` and the API server need: CEL rules, printer columns, short names, status subresource.
//! Regenerate with `cargo run -p buoy-operator -- crds --out-dir crds --out-dir charts/buoy/crds`.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{path::Path, process::Command};

use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn operator(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_buoy-operator"))
        .args(args)
        .output()
        .expect("run buoy-operator");
    assert!(
        out.status.success(),
        "buoy-operator {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn committed(dir: &str, file: &str) -> String {
    let path = repo().join(dir).join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const FILES: [&str; 4] = [
    "virtualips.buoy.io.yaml",
    "upstreampools.buoy.io.yaml",
    "addresspools.buoy.io.yaml",
    "bgppeers.buoy.io.yaml",
];

#[test]
fn printed_crds_equal_the_committed_copies() {
    let printed = operator(&["crds"]);
    for dir in ["crds", "charts/buoy/crds"] {
        let joined: String = FILES.iter().map(|f| committed(dir, f)).collect();
        assert!(
            printed == joined,
            "{dir}/*.yaml differ from `buoy-operator crds`; regenerate with \
             `cargo run -p buoy-operator -- crds --out-dir crds --out-dir charts/buoy/crds`"
        );
    }
}

fn crd(file: &str) -> Value {
    let text = committed("crds", file);
    let doc = serde_yaml::Deserializer::from_str(&text)
        .next()
        .expect("one document");
    serde::Deserialize::deserialize(doc).expect("CRD YAML")
}

fn rules(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Array(rs)) = map.get("x-kubernetes-validations") {
                out.extend(
                    rs.iter()
                        .filter_map(|r| r.get("rule")?.as_str().map(String::from)),
                );
            }
            map.values().for_each(|v| rules(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| rules(v, out)),
        _ => {}
    }
}

fn columns(crd: &Value) -> Vec<String> {
    crd.pointer("/spec/versions/0/additionalPrinterColumns")
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .filter_map(|c| c.get("name")?.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn virtualip_crd_has_rules_columns_names_and_status() {
    let crd = crd("virtualips.buoy.io.yaml");
    assert_eq!(crd.pointer("/spec/group"), Some(&Value::from("buoy.io")));
    assert_eq!(crd.pointer("/spec/scope"), Some(&Value::from("Namespaced")));
    assert_eq!(
        crd.pointer("/spec/versions/0/name"),
        Some(&Value::from("v1alpha1"))
    );
    assert_eq!(
        crd.pointer("/spec/names/shortNames"),
        Some(&serde_json::json!(["vip"]))
    );
    assert_eq!(
        crd.pointer("/spec/names/categories"),
        Some(&serde_json::json!(["buoy"]))
    );
    assert_eq!(
        crd.pointer("/spec/versions/0/subresources/status"),
        Some(&serde_json::json!({}))
    );
    assert_eq!(
        columns(&crd),
        ["Addresses", "VRID", "Master", "Ready", "Age"]
    );
    let mut found = Vec::new();
    rules(&crd, &mut found);
    for expected in [
        "isIP(self) || isCIDR(self)",
        "self.addresses.all(a, a.contains(':')) || self.addresses.all(a, !a.contains(':'))",
        "!has(self.authentication) || self.version == 2",
        "self.all(l, self.exists_one(m, m.port == l.port && (m.protocol == 'UDP') == (l.protocol == 'UDP')))",
    ] {
        assert!(
            found.iter().any(|r| r == expected),
            "missing CEL rule {expected}"
        );
    }
    assert!(found.iter().any(|r| {
        r.contains("self.version != 2 || (duration(self.advertisementInterval) >= duration('1s')")
    }));
    let nodes = crd
        .pointer("/spec/versions/0/schema/openAPIV3Schema/properties/status/properties/nodes")
        .expect("status.nodes");
    assert_eq!(
        nodes.get("x-kubernetes-list-type"),
        Some(&Value::from("map"))
    );
    assert_eq!(
        nodes.get("x-kubernetes-list-map-keys"),
        Some(&serde_json::json!(["node"]))
    );
    let states = nodes
        .pointer("/items/properties/state/enum")
        .expect("state enum");
    assert_eq!(
        states,
        &serde_json::json!(["Initialize", "Backup", "Master", "Fault"])
    );
}

#[test]
fn upstreampool_crd_has_rules_columns_names_and_status() {
    let crd = crd("upstreampools.buoy.io.yaml");
    assert_eq!(
        crd.pointer("/spec/names/shortNames"),
        Some(&serde_json::json!(["upool"]))
    );
    assert_eq!(
        crd.pointer("/spec/names/categories"),
        Some(&serde_json::json!(["buoy"]))
    );
    assert_eq!(
        crd.pointer("/spec/versions/0/subresources/status"),
        Some(&serde_json::json!({}))
    );
    assert_eq!(columns(&crd), ["Backends", "Ready", "Age"]);
    let mut found = Vec::new();
    rules(&crd, &mut found);
    assert!(
        found
            .iter()
            .any(|r| r == "has(self.backends) != has(self.service)")
    );
    assert!(
        found
            .iter()
            .any(|r| r.contains("duration(self.timeout) <= duration(self.interval)"))
    );
}

#[test]
fn addresspool_crd_is_cluster_scoped_with_rules_columns_and_status() {
    let crd = crd("addresspools.buoy.io.yaml");
    assert_eq!(crd.pointer("/spec/scope"), Some(&Value::from("Cluster")));
    assert_eq!(
        crd.pointer("/spec/names/shortNames"),
        Some(&serde_json::json!(["apool"]))
    );
    assert_eq!(
        crd.pointer("/spec/names/categories"),
        Some(&serde_json::json!(["buoy"]))
    );
    assert_eq!(
        crd.pointer("/spec/versions/0/subresources/status"),
        Some(&serde_json::json!({}))
    );
    assert_eq!(
        columns(&crd),
        ["Addresses", "Allocated", "Available", "Age"]
    );
    let mut found = Vec::new();
    rules(&crd, &mut found);
    assert_eq!(found.len(), 4, "{found:?}");
    assert!(
        found.iter().all(|r| r.contains("isCIDR(self)")),
        "{found:?}"
    );
}

#[test]
fn bgppeer_crd_is_cluster_scoped_with_rules_columns_and_status() {
    let crd = crd("bgppeers.buoy.io.yaml");
    assert_eq!(crd.pointer("/spec/scope"), Some(&Value::from("Cluster")));
    assert_eq!(
        crd.pointer("/spec/names/shortNames"),
        Some(&serde_json::json!(["bgpp"]))
    );
    assert_eq!(
        crd.pointer("/spec/names/categories"),
        Some(&serde_json::json!(["buoy"]))
    );
    assert_eq!(
        crd.pointer("/spec/versions/0/subresources/status"),
        Some(&serde_json::json!({}))
    );
    assert_eq!(columns(&crd), ["Peer", "ASN", "Established", "Age"]);
    let column_paths: Vec<&str> = crd
        .pointer("/spec/versions/0/additionalPrinterColumns")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("jsonPath")?.as_str())
        .collect();
    assert_eq!(
        column_paths,
        [
            ".spec.peerAddress",
            ".spec.peerASN",
            ".status.established",
            ".metadata.creationTimestamp"
        ]
    );
    let mut found = Vec::new();
    rules(&crd, &mut found);
    for expected in [
        "!has(self.localPref) || self.myASN == self.peerASN",
        "duration(self.holdTime) == duration('0s') || duration(self.keepaliveTime) < duration(self.holdTime)",
        "isIP(self)",
    ] {
        assert!(
            found.iter().any(|r| r == expected),
            "missing CEL rule {expected}: {found:?}"
        );
    }
    let spec = crd
        .pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec")
        .expect("spec");
    assert_eq!(
        spec.get("required"),
        Some(&serde_json::json!(["myASN", "peerASN", "peerAddress"]))
    );
    let nodes = crd
        .pointer("/spec/versions/0/schema/openAPIV3Schema/properties/status/properties/nodes")
        .expect("status.nodes");
    assert_eq!(
        nodes.get("x-kubernetes-list-map-keys"),
        Some(&serde_json::json!(["node"]))
    );
    assert_eq!(
        nodes.pointer("/items/properties/state/enum"),
        Some(&serde_json::json!([
            "Idle",
            "Connect",
            "Active",
            "OpenSent",
            "OpenConfirm",
            "Established",
            "Unknown"
        ]))
    );
    assert_eq!(
        nodes.pointer("/items/properties/bfd/enum"),
        // Optional: null stands for an agent that reports no BFD state.
        Some(&serde_json::json!(["Up", "Down", "Disabled", null]))
    );
}

#[test]
fn readme_api_reference_is_current() {
    let readme = committed("", "README.md");
    let (start, end) = (
        "<!-- api-reference:start -->\n",
        "<!-- api-reference:end -->",
    );
    let from = readme
        .find(start)
        .expect("README has the api-reference start marker")
        + start.len();
    let to = readme
        .find(end)
        .expect("README has the api-reference end marker");
    assert!(
        readme[from..to] == operator(&["crds", "--reference"]),
        "README's API reference is stale; regenerate with `scripts/regenerate`"
    );
}
