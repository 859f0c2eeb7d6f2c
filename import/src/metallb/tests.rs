//! The MetalLB translation on small inputs: each field's mapping, and every warning and error.

use std::path::Path;

use buoy_crds::{AddressPool, AddressPoolSpec};
use serde_json::{Value, json};

use super::translate;
use crate::{diagnostics::Warnings, manifests, objects::Import};

/// The translation of `yaml` (read as the file `m.yaml`) and its warnings, as printed. The
/// output must validate.
pub(super) fn run(yaml: &str) -> (Import, Vec<String>) {
    let objects = manifests::parse(Path::new("m.yaml"), yaml).unwrap();
    let mut warnings = Warnings::default();
    let import = translate(objects, "default", &mut warnings).unwrap();
    let text = import.to_yaml().unwrap();
    buoy_crds::manifest::parse(Path::new("out.yaml"), &text)
        .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    let shown = warnings.sorted().iter().map(ToString::to_string).collect();
    (import, shown)
}

/// The error of translating `yaml`.
pub(super) fn error(yaml: &str) -> String {
    let objects = manifests::parse(Path::new("m.yaml"), yaml).unwrap();
    let mut warnings = Warnings::default();
    match translate(objects, "default", &mut warnings) {
        Ok(_) => panic!("translated without error:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

pub(super) fn pool(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: {name}\n  \
         namespace: metallb-system\nspec:\n{spec}---\n"
    )
}

pub(super) fn l2(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: {name}\n  \
         namespace: metallb-system\nspec:\n{spec}---\n"
    )
}

/// An L2Advertisement of every pool.
const EVERYWHERE: &str = "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  \
                          name: all\n  namespace: metallb-system\n---\n";

pub(super) fn spec<'a>(import: &'a Import, name: &str) -> &'a AddressPoolSpec {
    let p: &AddressPool = import
        .address_pools
        .iter()
        .map(|d| &d.object)
        .find(|p| p.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no AddressPool {name}"));
    &p.spec
}

/// Asserts that exactly one warning contains every one of `parts`.
pub(super) fn warned(warnings: &[String], parts: &[&str]) {
    let found: Vec<&String> = warnings
        .iter()
        .filter(|w| parts.iter().all(|p| w.contains(p)))
        .collect();
    assert_eq!(found.len(), 1, "{parts:?} in {warnings:#?}");
}

#[test]
fn a_pool_maps_field_by_field() {
    let yaml = pool(
        "prod",
        "  addresses:\n  - 192.168.10.0/26\n  - 192.168.10.100 - 192.168.10.120\n  \
         - fd00::/120\n  autoAssign: false\n  avoidBuggyIPs: true\n  serviceAllocation:\n    \
         namespaces: [web, shop]\n    namespaceSelectors:\n    - matchLabels: {team: a}\n",
    ) + EVERYWHERE;
    let (import, warnings) = run(&yaml);
    assert!(warnings.is_empty(), "{warnings:#?}");
    let s = serde_json::to_value(spec(&import, "prod")).unwrap();
    assert_eq!(
        s,
        json!({
            "addresses": ["192.168.10.0/26", "192.168.10.100-192.168.10.120", "fd00::/120"],
            "autoAssign": false,
            "avoidBuggyIPs": true,
            "namespaces": ["web", "shop"],
            "namespaceSelector": {"matchLabels": {"team": "a"}},
        })
    );
    // Cluster-scoped, named as the IPAddressPool, and says where it comes from.
    let doc = &import.address_pools[0];
    assert_eq!(doc.object.metadata.namespace, None);
    assert_eq!(
        doc.comments[0],
        "From IPAddressPool metallb-system/prod (m.yaml:1)."
    );
    assert_eq!(
        doc.comments[1],
        "Announced where L2Advertisement metallb-system/all (m.yaml:18) announces it."
    );
}

#[test]
fn a_pool_without_service_allocation_admits_every_namespace() {
    let yaml = pool("open", "  addresses: [10.0.0.0/24]\n  autoAssign: no\n") + EVERYWHERE;
    let (import, _) = run(&yaml);
    let s = spec(&import, "open");
    assert_eq!(s.namespaces, None);
    assert_eq!(s.namespace_selector, Some(Default::default()));
    // `no` is what kubectl sent as false (YAML 1.1).
    assert!(!s.auto_assign);
    assert!(!s.avoid_buggy_ips);
}

#[test]
fn host_bits_priority_service_selectors_and_unknown_fields_are_warned() {
    let yaml = pool(
        "prod",
        "  addresses: [192.168.10.5/24]\n  color: blue\n  serviceAllocation:\n    priority: 5\n    \
         serviceSelectors:\n    - matchLabels: {app: web}\n",
    ) + EVERYWHERE;
    let (import, warnings) = run(&yaml);
    assert_eq!(spec(&import, "prod").addresses[0].0, "192.168.10.0/24");
    warned(
        &warnings,
        &[
            "m.yaml:7: directive \"IPAddressPool metallb-system/prod spec.addresses[0]\"",
            "192.168.10.5/24: MetalLB reads it as the whole 192.168.10.0/24",
        ],
    );
    warned(
        &warnings,
        &[
            "m.yaml:8:",
            "spec.color",
            "not a field of MetalLB's IPAddressPool",
        ],
    );
    warned(
        &warnings,
        &["m.yaml:10:", "serviceAllocation.priority", "no priority"],
    );
    warned(
        &warnings,
        &[
            "m.yaml:11:",
            "serviceAllocation.serviceSelectors",
            "autoAssign: false",
        ],
    );
    assert_eq!(warnings.len(), 4, "{warnings:#?}");
}

#[test]
fn several_namespace_selectors_merge_on_one_key_or_keep_the_first() {
    let on_one_key = pool(
        "a",
        "  addresses: [10.0.0.0/24]\n  serviceAllocation:\n    namespaceSelectors:\n    \
         - matchLabels: {team: x}\n    - matchLabels: {team: y}\n",
    ) + EVERYWHERE;
    let (import, warnings) = run(&on_one_key);
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert_eq!(
        serde_json::to_value(&spec(&import, "a").namespace_selector).unwrap(),
        json!({"matchExpressions": [{"key": "team", "operator": "In", "values": ["x", "y"]}]})
    );
    let on_two = pool(
        "a",
        "  addresses: [10.0.0.0/24]\n  serviceAllocation:\n    namespaceSelectors:\n    \
         - matchLabels: {team: x}\n    - matchLabels: {zone: y}\n",
    ) + EVERYWHERE;
    let (import, warnings) = run(&on_two);
    assert_eq!(
        serde_json::to_value(&spec(&import, "a").namespace_selector).unwrap(),
        json!({"matchLabels": {"team": "x"}})
    );
    warned(
        &warnings,
        &[
            "m.yaml:11:",
            "namespaceSelectors[1]",
            r#"the first, {"matchLabels":{"team":"x"}}, is kept"#,
            r#"only {"matchLabels":{"zone":"y"}}"#,
        ],
    );
}

#[test]
fn advertisements_select_pools_by_name_by_label_or_all() {
    let yaml = pool("a", "  addresses: [10.0.1.0/24]\n")
        + &pool("b", "  addresses: [10.0.2.0/24]\n")
            .replace("  name: b\n", "  name: b\n  labels: {exposure: lan}\n")
        + &pool("c", "  addresses: [10.0.3.0/24]\n")
        + &l2("by-name", "  ipAddressPools: [a, nope]\n")
        + &l2(
            "by-label",
            "  ipAddressPoolSelectors:\n  - matchLabels: {exposure: lan}\n",
        );
    let (import, warnings) = run(&yaml);
    let names: Vec<&str> = import
        .address_pools
        .iter()
        .filter_map(|d| d.object.metadata.name.as_deref())
        .collect();
    assert_eq!(names, ["a", "b"]);
    warned(
        &warnings,
        &[
            "spec.ipAddressPools[1]",
            "no IPAddressPool nope in the input files",
        ],
    );
    warned(
        &warnings,
        &[
            "directive \"IPAddressPool metallb-system/c\"",
            "announces them nowhere",
            "left out",
        ],
    );
    // With an advertisement of every pool, c is announced too.
    let (import, _) = run(&(yaml + EVERYWHERE));
    assert_eq!(import.address_pools.len(), 3);
}

#[test]
fn node_selectors_and_interfaces_of_the_advertisements() {
    let base = pool("a", "  addresses: [10.0.1.0/24]\n");
    let edge = "  nodeSelectors:\n  - matchLabels: {role: edge}\n  interfaces: [eth0]\n";
    // One advertisement: its selector and interfaces.
    let (import, warnings) = run(&(base.clone() + &l2("one", edge)));
    assert!(warnings.is_empty(), "{warnings:#?}");
    let s = spec(&import, "a");
    assert_eq!(
        serde_json::to_value(&s.node_selector).unwrap(),
        json!({"matchLabels": {"role": "edge"}})
    );
    assert_eq!(
        serde_json::to_value(&s.interfaces).unwrap(),
        json!(["eth0"])
    );
    // One without selector or interfaces: every node, every interface.
    let (import, warnings) = run(&(base.clone() + &l2("one", edge) + EVERYWHERE));
    assert!(warnings.is_empty(), "{warnings:#?}");
    let s = spec(&import, "a");
    assert_eq!(
        (s.node_selector.clone(), s.interfaces.clone()),
        (None, None)
    );
    // Two on one key: one selector; interfaces united; which node uses which is lost.
    let other = "  nodeSelectors:\n  - matchLabels: {role: gateway}\n  interfaces: [eth1]\n";
    let (import, warnings) = run(&(base.clone() + &l2("one", edge) + &l2("two", other)));
    let s = spec(&import, "a");
    assert_eq!(
        serde_json::to_value(&s.node_selector).unwrap(),
        json!({"matchExpressions": [{"key": "role", "operator": "In", "values": ["edge", "gateway"]}]})
    );
    assert_eq!(
        serde_json::to_value(&s.interfaces).unwrap(),
        json!(["eth0", "eth1"])
    );
    warned(
        &warnings,
        &[
            "L2Advertisement metallb-system/two spec.interfaces",
            "one list of interfaces",
        ],
    );
    assert_eq!(warnings.len(), 1);
    // Selectors that cannot be one: the first is kept.
    let zone = "  nodeSelectors:\n  - matchLabels: {zone: b}\n";
    let (import, warnings) = run(&(base + &l2("one", edge) + &l2("two", zone)));
    assert_eq!(
        serde_json::to_value(&spec(&import, "a").node_selector).unwrap(),
        json!({"matchLabels": {"role": "edge"}})
    );
    warned(
        &warnings,
        &[
            "L2Advertisement metallb-system/two spec.nodeSelectors[0]",
            "AddressPool a has one nodeSelector",
            r#"only {"matchLabels":{"zone":"b"}}"#,
        ],
    );
}

#[test]
fn status_legacy_and_other_objects_are_warned() {
    let kinds = [
        (
            "metallb.io/v1beta1",
            "BFDProfile",
            "no BGPPeer uses this profile",
        ),
        (
            "metallb.io/v1beta1",
            "ServiceL2Status",
            "written by MetalLB itself",
        ),
        ("metallb.io/v1beta1", "AddressPool", "removed in 0.14"),
        (
            "metallb.io/v1beta1",
            "Frobnicator",
            "not a MetalLB kind the importer knows",
        ),
        (
            "apps/v1",
            "Deployment",
            "neither MetalLB's configuration nor a Service",
        ),
    ];
    let mut yaml = String::new();
    for (api, kind, _) in kinds {
        yaml += &format!("apiVersion: {api}\nkind: {kind}\nmetadata: {{name: x}}\n---\n");
    }
    yaml += "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: metallb-system}\n\
             data:\n  config: |\n    address-pools:\n    - name: default\n";
    let (import, warnings) = run(&yaml);
    assert!(import.address_pools.is_empty());
    for (i, (_, kind, why)) in kinds.iter().enumerate() {
        warned(
            &warnings,
            &[
                &format!("m.yaml:{}: directive \"{kind} x\"", 4 * i + 1),
                why,
            ],
        );
    }
    warned(
        &warnings,
        &["ConfigMap metallb-system/config", "configmaptocrs"],
    );
    assert_eq!(warnings.len(), kinds.len() + 1);
}

#[test]
fn malformed_pools_fail_with_file_and_line() {
    let cases = [
        (
            "  addresses: []\n",
            "m.yaml:7: IPAddressPool metallb-system/p: no addresses",
        ),
        (
            "  addresses:\n  - 10.0.0.1\n",
            "m.yaml:8: IPAddressPool metallb-system/p: \"10.0.0.1\" is neither a CIDR nor a range",
        ),
        (
            "  addresses: [10.0.0.0/24]\n  autoAssign: maybe\n",
            "m.yaml:8: IPAddressPool metallb-system/p: \"maybe\" is not true or false",
        ),
        (
            "  addresses: [10.0.0.0/24]\n  serviceAllocation: {namespaces: [1]}\n",
            "m.yaml:8: IPAddressPool metallb-system/p: 1 is not a string",
        ),
    ];
    for (spec, want) in cases {
        let e = error(&pool("p", spec));
        assert!(
            e.starts_with(want) || e.contains(want),
            "{e}\nwanted {want}"
        );
    }
    let many: String = (0..65).map(|i| format!("  - 10.0.{i}.0/24\n")).collect();
    assert!(error(&pool("p", &format!("  addresses:\n{many}"))).contains("at most 64"));
    assert_eq!(
        error(&pool("", "  addresses: [10.0.0.0/24]\n")),
        "m.yaml:3: IPAddressPool metallb-system/: no metadata.name"
    );
    let twice =
        pool("p", "  addresses: [10.0.0.0/24]\n") + &pool("p", "  addresses: [10.0.1.0/24]\n");
    assert_eq!(
        error(&twice),
        "m.yaml:12: IPAddressPool metallb-system/p: a second IPAddressPool named p (the first is \
         at m.yaml:1): AddressPools are cluster-scoped, one name each"
    );
}

fn service(name: &str, annotations: &[(&str, &str)], extra: &str) -> String {
    let mut notes = String::new();
    for (k, v) in annotations {
        notes += &format!("    {k}: \"{v}\"\n");
    }
    let annotations = if notes.is_empty() {
        String::new()
    } else {
        format!("  annotations:\n{notes}")
    };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: web\n\
         {annotations}spec:\n  type: LoadBalancer\n  ports: [{{port: 80}}]\n{extra}---\n"
    )
}

/// Two pools: `lan` (announced) and `bgp` (not).
fn two_pools() -> String {
    pool("lan", "  addresses: [192.168.10.0/24]\n")
        + &pool("bgp", "  addresses: [203.0.113.0/28]\n")
        + &l2("lan", "  ipAddressPools: [lan]\n")
}

fn services_of(import: &Import) -> Vec<(String, Value)> {
    import
        .services
        .iter()
        .map(|d| {
            (
                d.object["metadata"]["name"].as_str().unwrap().to_string(),
                d.object.clone(),
            )
        })
        .collect()
}

#[test]
fn services_get_buoys_annotations_and_class() {
    let yaml = two_pools()
        + &service(
            "a",
            &[
                ("metallb.io/loadBalancerIPs", "192.168.10.5"),
                ("metallb.io/address-pool", "lan"),
                ("metallb.io/allow-shared-ip", "key"),
                ("metallb.io/ip-allocated-from-pool", "lan"),
                ("example.com/keep", "yes"),
            ],
            "",
        )
        + &service(
            "b",
            &[
                ("metallb.universe.tf/loadBalancerIPs", "192.168.10.6"),
                ("metallb.universe.tf/allow-shared-ip", "key"),
            ],
            "",
        );
    let (import, warnings) = run(&yaml);
    assert!(
        warnings.iter().all(|w| !w.contains("directive \"Service")),
        "{warnings:#?}"
    );
    let services = services_of(&import);
    assert_eq!(services.len(), 2);
    let (_, a) = &services[0];
    assert_eq!(
        a["metadata"]["annotations"],
        json!({"buoy.io/load-balancer-ips": "192.168.10.5", "buoy.io/address-pool": "lan",
               "buoy.io/allow-shared-ip": "key", "example.com/keep": "yes"})
    );
    assert_eq!(a["spec"]["loadBalancerClass"], "buoy.io/vrrp");
    assert_eq!(a["spec"]["type"], "LoadBalancer");
    let (_, b) = &services[1];
    assert_eq!(
        b["metadata"]["annotations"],
        json!({"buoy.io/load-balancer-ips": "192.168.10.6", "buoy.io/allow-shared-ip": "key"})
    );
    // The first Service says how to apply a class to an existing Service.
    assert!(import.services[0].comments[0].contains("Services handed over from MetalLB"));
    assert!(
        import.services[0]
            .comments
            .iter()
            .any(|c| c.contains("kubectl replace --force"))
    );
}

#[test]
fn the_address_metallb_gave_is_kept_and_server_fields_are_dropped() {
    let yaml = two_pools()
        + &service(
            "a",
            &[("kubectl.kubernetes.io/last-applied-configuration", "{}")],
            "  clusterIP: 10.96.0.10\nstatus:\n  loadBalancer:\n    ingress:\n    - ip: 192.168.10.7\n",
        )
        .replace(
            "  namespace: web\n",
            "  namespace: web\n  uid: 1234\n  resourceVersion: \"99\"\n  \
             creationTimestamp: \"2024-01-01T00:00:00Z\"\n  managedFields: []\n",
        );
    let (import, warnings) = run(&yaml);
    assert_eq!(warnings.len(), 1, "only the bgp pool's: {warnings:#?}");
    let (_, a) = &services_of(&import)[0];
    assert_eq!(
        a["metadata"],
        json!({"name": "a", "namespace": "web",
               "annotations": {"buoy.io/load-balancer-ips": "192.168.10.7"}})
    );
    assert_eq!(a.get("status"), None);
    assert_eq!(a["spec"]["clusterIP"], "10.96.0.10");
    assert!(import.services[0].comments.iter().any(|c| c
        == "MetalLB gave it 192.168.10.7: kept by asking for it in buoy.io/load-balancer-ips."));
}

#[test]
fn services_that_metallb_does_not_serve_in_l2_are_left_out_and_said_so() {
    /// A Service's name, annotations, more of its spec (or status), and the warning's parts.
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str, &'a [&'a str]);
    let cases: [Case; 9] = [
        (
            "not-lb",
            vec![],
            "  type: ClusterIP\n",
            &[
                "Service web/not-lb\"",
                "not a LoadBalancer Service: left out",
            ],
        ),
        (
            "other-class",
            vec![],
            "  loadBalancerClass: example.com/lb\n",
            &["spec.loadBalancerClass", "another load balancer's Service"],
        ),
        (
            "bad-ips",
            vec![("metallb.io/loadBalancerIPs", "192.168.10.300")],
            "",
            &[
                "metadata.annotations[metallb.io/loadBalancerIPs]",
                "MetalLB refuses it too",
                "left out",
            ],
        ),
        (
            "both",
            vec![("metallb.io/loadBalancerIPs", "192.168.10.8")],
            "  loadBalancerIP: 192.168.10.8\n",
            &["with spec.loadBalancerIP too", "left out"],
        ),
        (
            "ip-in-bgp",
            vec![("metallb.io/loadBalancerIPs", "203.0.113.2")],
            "",
            &["203.0.113.2 is in IPAddressPool bgp", "left out"],
        ),
        (
            "pool-bgp",
            vec![("metallb.universe.tf/address-pool", "bgp")],
            "",
            &[
                "metadata.annotations[metallb.universe.tf/address-pool]",
                "IPAddressPool bgp is not translated",
                "left out",
            ],
        ),
        (
            "from-bgp",
            vec![("metallb.io/ip-allocated-from-pool", "bgp")],
            "",
            &["ip-allocated-from-pool", "left out"],
        ),
        (
            "status-bgp",
            vec![],
            "status:\n  loadBalancer:\n    ingress:\n    - ip: 203.0.113.4\n",
            &[
                "status.loadBalancer.ingress",
                "IPAddressPool bgp",
                "left out",
            ],
        ),
        (
            "typo",
            vec![("metallb.universe.tf/loadBalancerIP", "192.168.10.9")],
            "",
            &[
                "metadata.annotations[metallb.universe.tf/loadBalancerIP]",
                "not an annotation MetalLB reads",
            ],
        ),
    ];
    for (name, annotations, extra, parts) in cases {
        let extra = extra.replace("  type: ClusterIP\n", "");
        let mut text = service(name, &annotations, &extra);
        if name == "not-lb" {
            text = text.replace("type: LoadBalancer", "type: ClusterIP");
        }
        let (import, warnings) = run(&(two_pools() + &text));
        warned(&warnings, parts);
        assert_eq!(
            warnings.len(),
            2,
            "{name}: the bgp pool's and its own: {warnings:#?}"
        );
        let kept = services_of(&import).len();
        assert_eq!(kept, usize::from(name == "typo"), "{name}");
    }
}

#[test]
fn services_that_are_not_load_balancers_are_warned_once_unless_they_carry_annotations() {
    let cluster_ip = |name: &str, annotations: &[(&str, &str)]| {
        service(name, annotations, "").replace("type: LoadBalancer", "type: ClusterIP")
    };
    let yaml = two_pools()
        + &cluster_ip("a", &[])
        + &cluster_ip("b", &[])
        + &cluster_ip("c", &[("example.com/x", "y")])
        + &cluster_ip("d", &[("metallb.io/address-pool", "lan")]);
    let (import, warnings) = run(&yaml);
    assert!(import.services.is_empty());
    warned(
        &warnings,
        &[
            "directive \"Service web/a\"",
            "not a LoadBalancer Service, nor are 2 more Services of the input: left out",
        ],
    );
    warned(
        &warnings,
        &[
            "directive \"Service web/d\"",
            "MetalLB ignores its annotations",
        ],
    );
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
}

#[test]
fn a_requested_address_in_a_pool_left_out_leaves_the_service_out() {
    let yaml = two_pools() + &service("a", &[], "  loadBalancerIP: 203.0.113.5\n");
    let (import, warnings) = run(&yaml);
    assert!(import.services.is_empty());
    warned(
        &warnings,
        &[
            "Service web/a spec.loadBalancerIP",
            "IPAddressPool bgp",
            "left out",
        ],
    );
    // Elsewhere, spec.loadBalancerIP stays as it is: Buoy reads it.
    let yaml = two_pools() + &service("a", &[], "  loadBalancerIP: 192.168.10.5\n");
    let (import, _) = run(&yaml);
    assert_eq!(
        import.services[0].object["spec"]["loadBalancerIP"],
        "192.168.10.5"
    );
    assert_eq!(
        import.services[0].object["metadata"].get("annotations"),
        None
    );
}

#[test]
fn annotations_of_both_prefixes_and_unknown_pools() {
    let yaml = two_pools()
        + &service(
            "a",
            &[
                ("metallb.io/address-pool", "lan"),
                ("metallb.universe.tf/address-pool", "bgp"),
            ],
            "",
        )
        + &service("b", &[("metallb.io/address-pool", "elsewhere")], "")
        + &service("c", &[], "  loadBalancerClass: metallb.io/metallb\n").replace(
            "  namespace: web\n",
            "  namespace: web\n  annotations: {metallb.io/allow-shared-ip: k}\n",
        );
    let (import, warnings) = run(&yaml);
    warned(
        &warnings,
        &[
            "metallb.universe.tf/address-pool]",
            "MetalLB reads metallb.io/address-pool (\"lan\") instead",
        ],
    );
    warned(
        &warnings,
        &["no IPAddressPool elsewhere in the input files"],
    );
    let services = services_of(&import);
    assert_eq!(
        services[0].1["metadata"]["annotations"],
        json!({"buoy.io/address-pool": "lan"})
    );
    assert_eq!(
        services[1].1["metadata"]["annotations"],
        json!({"buoy.io/address-pool": "elsewhere"})
    );
    assert_eq!(services[2].1["spec"]["loadBalancerClass"], "buoy.io/vrrp");
    assert!(
        import.services[2]
            .comments
            .iter()
            .any(|c| c.contains("was metallb.io/metallb"))
    );
}
