//! Every bad input gets a clear error at the right field path. Each case of bad_examples.yaml
//! starts from a valid object, breaks one thing, and asserts the exact message and path.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::Path;

use buoy_crds::{
    AddressPool, BGPPeer, FieldError, UpstreamPool, VirtualIP,
    manifest::{self, Object},
    validation::{cel_compilation_errors, validate_value},
};
use serde_json::{Value, json};

mod bad_examples;

fn valid_vip() -> Value {
    bad_examples::valid("VirtualIP")
}

fn valid_pool() -> Value {
    bad_examples::valid("UpstreamPool")
}

fn vip_errors(patch: Value) -> Vec<FieldError> {
    let mut v = valid_vip();
    bad_examples::merge(&mut v, &patch);
    validate_value::<VirtualIP>(&v)
        .err()
        .map(|e| e.0)
        .unwrap_or_default()
}

fn pool_errors(patch: Value) -> Vec<FieldError> {
    let mut v = valid_pool();
    bad_examples::merge(&mut v, &patch);
    validate_value::<UpstreamPool>(&v)
        .err()
        .map(|e| e.0)
        .unwrap_or_default()
}

/// Every case of bad_examples.yaml gets exactly its errors (the API test server is held to the
/// same cases in tests/tests/testapi_crds.rs).
#[test]
fn every_bad_example_is_rejected_at_its_path() {
    let cases = bad_examples::cases();
    assert!(cases.len() >= 50, "only {} cases", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            let result = match case.kind.as_str() {
                "VirtualIP" => validate_value::<VirtualIP>(&case.object),
                "UpstreamPool" => validate_value::<UpstreamPool>(&case.object),
                "AddressPool" => validate_value::<AddressPool>(&case.object),
                "BGPPeer" => validate_value::<BGPPeer>(&case.object),
                other => panic!("{}: unknown kind {other}", case.name),
            };
            let actual: Vec<(String, String)> = result
                .err()
                .map(|e| e.0.into_iter().map(|e| (e.path, e.message)).collect())
                .unwrap_or_default();
            bad_examples::mismatch(case, &actual)
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_crd_rules_all_compile() {
    assert_eq!(cel_compilation_errors::<VirtualIP>(), Vec::<String>::new());
    assert_eq!(
        cel_compilation_errors::<UpstreamPool>(),
        Vec::<String>::new()
    );
    assert_eq!(
        cel_compilation_errors::<AddressPool>(),
        Vec::<String>::new()
    );
    assert_eq!(cel_compilation_errors::<BGPPeer>(), Vec::<String>::new());
}

#[test]
fn valid_objects_pass() {
    assert_eq!(vip_errors(json!({})), vec![]);
    assert_eq!(pool_errors(json!({})), vec![]);
    // Minimal objects: everything else defaulted.
    let minimal = json!({"apiVersion": "buoy.io/v1alpha1", "kind": "VirtualIP", "metadata": {"name": "v"},
        "spec": {"addresses": ["fd00::88"]}});
    assert_eq!(validate_value::<VirtualIP>(&minimal), Ok(()));
    let v2 = json!({"spec": {"addresses": ["10.0.0.1", "10.0.0.2/24"], "vrrp": {"version": 2, "advertisementInterval": "3s",
        "authentication": {"type": "Password", "secretRef": {"name": "vrrp", "key": "password"}},
        "unicast": true, "unicastPeers": ["10.0.0.5"]}}});
    assert_eq!(vip_errors(v2), vec![]);
    // An address from a pool instead of addresses.
    assert_eq!(
        vip_errors(json!({"spec": {"addresses": null, "addressPool": "lan"}})),
        vec![]
    );
    let pool = bad_examples::valid("AddressPool");
    assert_eq!(validate_value::<AddressPool>(&pool), Ok(()));
    let minimal = json!({"apiVersion": "buoy.io/v1alpha1", "kind": "AddressPool", "metadata": {"name": "p"},
        "spec": {"addresses": ["fd00::10-fd00::20"]}});
    assert_eq!(validate_value::<AddressPool>(&minimal), Ok(()));
    let typed: AddressPool = serde_json::from_value(minimal).unwrap();
    assert!(typed.spec.auto_assign && !typed.spec.avoid_buggy_ips);
}

#[test]
fn typed_validate_matches_value_validation() {
    let mut vip: VirtualIP = serde_json::from_value(valid_vip()).unwrap();
    assert_eq!(vip.validate(), Ok(()));
    vip.spec.vrrp.version = 2; // with a 100ms interval and no other change
    let errors = vip.validate().unwrap_err().0;
    assert_eq!(errors, vec![FieldError {
        path: "spec.vrrp.advertisementInterval".into(),
        message: "with VRRP version 2, advertisementInterval must be a whole number of seconds from 1s to 255s".into()
    }]);
    let pool: UpstreamPool = serde_json::from_value(valid_pool()).unwrap();
    assert_eq!(pool.validate(), Ok(()));
}

#[test]
fn manifest_errors_name_file_document_and_object() {
    let text = "apiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {name: ok}\nspec: {backends: [{address: 10.0.0.1, port: 80}]}\n---\n\
                apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {name: web, namespace: prod}\nspec: {addresses: [10.0.0.300]}\n---\n\
                apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n";
    let errors = manifest::parse(Path::new("buoy.yaml"), text).unwrap_err();
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        vec![
            "buoy.yaml: document 2 (VirtualIP prod/web): spec.addresses[0]: must be an IP address, optionally with a prefix length (192.168.60.88/24, fd00::88/64)",
            "buoy.yaml: document 3 (Deployment default/x): kind: Unsupported value: \"apps/v1, Kind=Deployment\": supported: buoy.io/v1alpha1 VirtualIP, buoy.io/v1alpha1 UpstreamPool, buoy.io/v1alpha1 AddressPool, buoy.io/v1alpha1 BGPPeer, v1 Secret, v1 Service",
        ]
    );
}

/// A Service is read for its Buoy annotations, which are checked as the operator reads them.
#[test]
fn manifest_services_have_their_buoy_annotations_checked() {
    let good = "apiVersion: v1\nkind: Service\nmetadata:\n  name: dns\n  namespace: infra\n  \
                annotations:\n    buoy.io/load-balancer-ips: 192.168.10.53\n    \
                buoy.io/allow-shared-ip: dns\nspec:\n  type: LoadBalancer\n  \
                loadBalancerClass: buoy.io/vrrp\n  ports: [{port: 53, protocol: UDP}]\n";
    let objects = manifest::parse(Path::new("svc.yaml"), good).unwrap();
    assert_eq!(manifest::services(&objects).len(), 1);
    let bad = good.replace("192.168.10.53", "192.168.10.53,192.168.10.54");
    let errors = manifest::parse(Path::new("svc.yaml"), &bad).unwrap_err();
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "svc.yaml: document 1 (Service infra/dns): metadata.annotations[buoy.io/load-balancer-ips]: \
          192.168.10.53 and 192.168.10.54 are of one family: at most one address per family"
        ]
    );
}

#[test]
fn manifest_yaml_syntax_error_has_a_location() {
    let errors = manifest::parse(
        Path::new("bad.yaml"),
        "kind: VirtualIP\nspec: {addresses: [\n",
    )
    .unwrap_err();
    assert_eq!(errors.len(), 1);
    let shown = errors[0].to_string();
    assert!(
        shown.starts_with("bad.yaml: document 1: invalid YAML: ") && shown.contains("line"),
        "{shown}"
    );
}

#[test]
fn manifest_defaults_are_applied_when_typed() {
    let text = "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {name: web}\nspec: {addresses: [10.0.0.1]}\n";
    let objects = manifest::parse(Path::new("v.yaml"), text).unwrap();
    let Object::VirtualIP(vip) = &objects[0].object else {
        panic!("not a VirtualIP")
    };
    assert_eq!(vip.spec.vrrp.version, 3);
    assert_eq!(vip.spec.vrrp.advertisement_interval.to_string(), "1s");
    assert!(vip.spec.vrrp.preempt);
    assert_eq!(vip.spec.vrrp.gratuitous_arp.repeat, 5);
    assert_eq!(vip.spec.vrrp.gratuitous_arp.delay.to_string(), "5s");
}

#[test]
fn a_udp_listener_may_share_its_port_with_a_tcp_one() {
    let errors = vip_errors(serde_json::json!({"spec": {"listeners": [
        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "upstreamPool": "dns"},
        {"name": "dns-udp", "port": 53, "protocol": "UDP", "upstreamPool": "dns",
         "client": {"idleTimeout": "30s", "maxConnections": 1000}},
    ]}}));
    assert!(errors.is_empty(), "{errors:?}");
}
