//! The kube-vip translation on small inputs: each key's mapping, the Services, and every
//! warning and error.

use std::path::Path;

use serde_json::{Value, json};

use super::translate;
use crate::{diagnostics::Warnings, manifests, objects::Import};

fn run(yaml: &str) -> (Import, Vec<String>) {
    let objects = manifests::parse(Path::new("k.yaml"), yaml).unwrap();
    let mut warnings = Warnings::default();
    let import = translate(objects, &mut warnings).unwrap();
    let text = import.to_yaml().unwrap();
    buoy_crds::manifest::parse(Path::new("out.yaml"), &text)
        .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    let shown = warnings.sorted().iter().map(ToString::to_string).collect();
    (import, shown)
}

fn error(yaml: &str) -> String {
    let objects = manifests::parse(Path::new("k.yaml"), yaml).unwrap();
    match translate(objects, &mut Warnings::default()) {
        Ok(_) => panic!("translated without error:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

/// The ConfigMap with `data` (one `key: value` per line, indented).
fn config(data: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kubevip\n  namespace: kube-system\n\
         data:\n{data}---\n"
    )
}

fn warned(warnings: &[String], parts: &[&str]) {
    let found = warnings
        .iter()
        .filter(|w| parts.iter().all(|p| w.contains(p)))
        .count();
    assert_eq!(found, 1, "{parts:?} in {warnings:#?}");
}

fn pools(import: &Import) -> Vec<(String, Value)> {
    import
        .address_pools
        .iter()
        .map(|d| {
            (
                d.object.metadata.name.clone().unwrap_or_default(),
                serde_json::to_value(&d.object.spec).unwrap(),
            )
        })
        .collect()
}

#[test]
fn keys_become_pools_as_kube_vip_reads_them() {
    let yaml = config(
        "  cidr-global: 192.168.20.0/28,fd00::/120\n  cidr-prod: 192.168.20.64/27\n  \
         range-prod: 192.168.20.130-192.168.20.140\n  \
         range-dev: 192.168.20.100-192.168.20.120, 192.168.20.200-192.168.20.210\n  \
         interface-global: eth1\n  interface-dev: eth2\n",
    );
    let (import, warnings) = run(&yaml);
    warned(
        &warnings,
        &[
            "k.yaml:9: directive \"ConfigMap kube-system/kubevip data.range-prod\"",
            "kube-vip uses cidr-prod instead",
        ],
    );
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let selector = json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name",
        "operator": "NotIn", "values": ["dev", "prod"]}]});
    assert_eq!(
        pools(&import),
        [
            (
                "kubevip-global".to_string(),
                json!({"addresses": ["192.168.20.1-192.168.20.14", "fd00::/120"],
                       "autoAssign": true, "avoidBuggyIPs": false, "interfaces": ["eth1"],
                       "namespaceSelector": selector})
            ),
            (
                "kubevip-dev".to_string(),
                json!({"addresses": ["192.168.20.100-192.168.20.120", "192.168.20.200-192.168.20.210"],
                       "autoAssign": true, "avoidBuggyIPs": false, "interfaces": ["eth2"],
                       "namespaces": ["dev"]})
            ),
            (
                "kubevip-prod".to_string(),
                json!({"addresses": ["192.168.20.65-192.168.20.94"], "autoAssign": true,
                       "avoidBuggyIPs": false, "interfaces": ["eth1"], "namespaces": ["prod"]})
            ),
        ]
    );
    assert_eq!(
        import.address_pools[0].comments,
        ["From ConfigMap kube-system/kubevip (k.yaml:7), key cidr-global."]
    );
}

#[test]
fn a_global_pool_alone_admits_every_namespace_and_skip_end_avoids_buggy_ips() {
    let (import, warnings) = run(&config(
        "  range-global: 10.0.0.10-10.0.0.20\n  skip-end-ips-in-cidr: \"true\"\n",
    ));
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert_eq!(
        pools(&import)[0].1,
        json!({"addresses": ["10.0.0.10-10.0.0.20"], "autoAssign": true, "avoidBuggyIPs": true,
               "namespaceSelector": {}})
    );
}

#[test]
fn keys_without_translation_are_warned() {
    let yaml = config(
        "  cidr-global: 0.0.0.0/32,10.0.0.0/24\n  allow-share-global: \"true\"\n  \
         search-order: desc\n  interface-lab: eth3\n  color: blue\n",
    ) + "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: kube-vip}\n";
    let (import, warnings) = run(&yaml);
    assert_eq!(
        pools(&import)[0].1["addresses"],
        json!(["10.0.0.1-10.0.0.254"])
    );
    for parts in [
        &["data.cidr-global", "DHCP; Buoy does not"][..],
        &["data.allow-share-global", "buoy.io/allow-shared-ip key"],
        &["data.search-order", "lowest free address"],
        &[
            "data.interface-lab",
            "namespace lab has no addresses of its own",
        ],
        &["data.color", "not a key kube-vip-cloud-provider reads"],
        &[
            "Deployment kube-vip",
            "neither kube-vip-cloud-provider's ConfigMap nor a Service",
        ],
    ] {
        warned(&warnings, parts);
    }
    assert_eq!(warnings.len(), 6, "{warnings:#?}");
}

#[test]
fn malformed_configuration_fails_with_file_and_line() {
    assert_eq!(
        error(&config(
            "  cidr-global: 10.0.0.0/24\n  cidr-Prod_1: 10.0.1.0/24\n"
        )),
        "k.yaml:8: ConfigMap kube-system/kubevip: \"Prod_1\" is not a namespace name (nor `global`)"
    );
    assert_eq!(
        error(&config("  cidr-global: 10.0.0.0\n")),
        "k.yaml:7: ConfigMap kube-system/kubevip: \"10.0.0.0\" is neither a CIDR nor a range \
         first-last"
    );
    let twice = config("  cidr-global: 10.0.0.0/24\n") + &config("  cidr-global: 10.0.1.0/24\n");
    assert!(
        error(&twice)
            .starts_with("k.yaml:9: ConfigMap kube-system/kubevip: a second kube-vip ConfigMap"),
        "{}",
        error(&twice)
    );
}

fn service(namespace: &str, name: &str, annotations: &[(&str, &str)], extra: &str) -> String {
    let notes: String = annotations
        .iter()
        .map(|(k, v)| format!("    {k}: \"{v}\"\n"))
        .collect();
    let annotations = if notes.is_empty() {
        String::new()
    } else {
        format!("  annotations:\n{notes}")
    };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
         {annotations}spec:\n  type: LoadBalancer\n  ports: [{{port: 53}}]\n{extra}---\n"
    )
}

fn annotations_of(import: &Import, name: &str) -> Value {
    import
        .services
        .iter()
        .find(|d| d.object["metadata"]["name"] == name)
        .map(|d| d.object["metadata"]["annotations"].clone())
        .unwrap_or_else(|| panic!("no Service {name}"))
}

#[test]
fn services_keep_their_addresses_and_share_as_with_kube_vip() {
    let ips = "kube-vip.io/loadbalancerIPs";
    let yaml = config("  cidr-global: 10.0.0.0/24\n  interface-global: eth1\n")
        + &service(
            "dns",
            "tcp",
            &[(ips, "10.0.0.53"), ("kube-vip.io/vipHost", "node-1")],
            "  loadBalancerIP: 10.0.0.53\n",
        )
        + &service(
            "dns",
            "udp",
            &[(ips, "10.0.0.53"), ("kube-vip.io/serviceInterface", "eth1")],
            "",
        )
        + &service(
            "web",
            "www",
            &[(ips, "10.0.0.80")],
            "  loadBalancerIP: 10.0.0.81\n",
        )
        + &service("other", "tcp", &[(ips, "10.0.0.53")], "");
    let (import, warnings) = run(&yaml);
    assert_eq!(
        annotations_of(&import, "udp"),
        json!({"buoy.io/load-balancer-ips": "10.0.0.53", "buoy.io/allow-shared-ip": "10.0.0.53"})
    );
    let tcp: Vec<&Value> = import
        .services
        .iter()
        .map(|d| &d.object)
        .filter(|o| o["metadata"]["name"] == "tcp")
        .collect();
    // kube-vip's copy of the address in spec.loadBalancerIP goes.
    assert_eq!(tcp[0]["spec"].get("loadBalancerIP"), None);
    assert_eq!(tcp[0]["spec"]["loadBalancerClass"], "buoy.io/vrrp");
    // Alone in its namespace with that address: no sharing key.
    assert_eq!(
        tcp[1]["metadata"]["annotations"],
        json!({"buoy.io/load-balancer-ips": "10.0.0.53"})
    );
    warned(
        &warnings,
        &[
            "Service other/tcp",
            "kube-vip shares 10.0.0.53 with namespace dns",
        ],
    );
    warned(
        &warnings,
        &[
            "Service web/www spec.loadBalancerIP",
            "kube-vip uses kube-vip.io/loadbalancerIPs (10.0.0.80)",
        ],
    );
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
}

#[test]
fn services_kube_vip_does_not_serve_or_with_other_requests_are_warned() {
    let ips = "kube-vip.io/loadbalancerIPs";
    let yaml = config("  cidr-global: 10.0.0.0/24\n")
        + &service("a", "dhcp", &[(ips, "0.0.0.0")], "")
        + &service("a", "bad", &[(ips, "10.0.0.1,10.0.0.2")], "")
        + &service("a", "outside", &[(ips, "10.9.9.9")], "")
        + &service(
            "a",
            "iface",
            &[
                ("kube-vip.io/serviceInterface", "eth9"),
                ("kube-vip.io/egress", "true"),
            ],
            "",
        )
        + &service(
            "a",
            "other-class",
            &[],
            "  loadBalancerClass: example.com/lb\n",
        )
        + &service(
            "a",
            "kv-class",
            &[],
            "  loadBalancerClass: kube-vip.io/kube-vip-class\n",
        )
        + &service("a", "cluster-ip", &[], "").replace("type: LoadBalancer", "type: ClusterIP");
    let (import, warnings) = run(&yaml);
    for parts in [
        &[
            "Service a/dhcp",
            "0.0.0.0 asks kube-vip for an address by DHCP",
        ][..],
        &["Service a/bad", "one address per family", "left out"],
        &[
            "Service a/outside",
            "10.9.9.9 is in none of the ConfigMap's pools",
        ],
        &[
            "Service a/iface metadata.annotations[kube-vip.io/serviceInterface]",
            "AddressPool's interfaces",
        ],
        &[
            "Service a/iface metadata.annotations[kube-vip.io/egress]",
            "no annotation like it",
        ],
        &[
            "Service a/other-class spec.loadBalancerClass",
            "another load balancer's Service",
        ],
        &["Service a/cluster-ip\"", "not a LoadBalancer Service"],
    ] {
        warned(&warnings, parts);
    }
    assert_eq!(warnings.len(), 7, "{warnings:#?}");
    let names: Vec<&str> = import
        .services
        .iter()
        .filter_map(|d| d.object["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["dhcp", "outside", "iface", "kv-class"]);
    assert_eq!(annotations_of(&import, "dhcp"), Value::Null);
}
