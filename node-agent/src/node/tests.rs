//! The node plan: which VirtualIPs a node serves and how.
use super::*;
use crate::refresh::Fetched;

fn objects(yaml: &str) -> Vec<buoy_crds::manifest::Located> {
    buoy_crds::manifest::parse(std::path::Path::new("test.yaml"), yaml).unwrap()
}

const TWO: &str = r#"
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {name: a, namespace: default}
spec:
  addresses: [10.0.0.10]
  interface: eth0
  virtualRouterID: 10
  priorities: [{node: n1, priority: 150, sourceAddress: 10.0.0.1}, {node: n2, priority: 100, sourceAddress: 10.0.0.2}]
  listeners: [{name: web, port: 80, protocol: HTTP, upstreamPool: p}]
---
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata:
  name: b
  namespace: default
  annotations: {buoy.io/priorities: '{"n1": 77}'}
spec:
  addresses: [10.0.0.11]
  interface: eth0
  virtualRouterID: 11
  nodeSelector: {matchLabels: {role: lb}}
---
apiVersion: buoy.io/v1alpha1
kind: UpstreamPool
metadata: {name: p, namespace: default}
spec:
  backends: [{address: 10.0.1.1, port: 80}]
"#;

fn node(name: &str, labels: &[(&str, &str)]) -> NodeIdentity {
    NodeIdentity {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn simple(n: &NodeIdentity, o: &[buoy_crds::manifest::Located], secrets: &[&Secret]) -> Plan {
    let vips = buoy_crds::manifest::virtual_ips(o);
    let pools = buoy_crds::manifest::upstream_pools(o);
    plan(Inputs::simple(n, &vips, &pools, secrets))
}

#[test]
fn node_selector_priorities_and_listeners() {
    let o = objects(TWO);
    let p = simple(&node("n1", &[]), &o, &[]);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    let c = &p.config;
    assert_eq!(c.vips.keys().collect::<Vec<_>>(), ["default/a"]);
    let a = &c.vips["default/a"];
    assert_eq!(a.instance.priority, 150);
    assert_eq!(a.instance.source_address, Some("10.0.0.1".parse().unwrap()));
    assert_eq!(a.listeners.len(), 1);
    // The other node's source address is the only peer handover may forward to.
    assert_eq!(a.peers, ["10.0.0.2".parse::<IpAddr>().unwrap()].into());
    assert_eq!(c.proxy.listeners.len(), 1);
    assert!(c.proxy.pools.contains_key("default/p"));

    let c = simple(&node("n1", &[("role", "lb")]), &o, &[]).config;
    assert_eq!(c.vips.len(), 2);
    // The operator's assignment, by annotation.
    assert_eq!(c.vips["default/b"].instance.priority, 77);
    let c = simple(&node("n2", &[("role", "lb")]), &o, &[]).config;
    assert_eq!(c.vips["default/a"].instance.priority, 100);
    assert_eq!(c.vips["default/b"].instance.priority, DEFAULT_PRIORITY);
}

#[test]
fn an_unservable_vip_does_not_stop_the_others() {
    let yaml = TWO.replace("virtualRouterID: 11\n", "virtualRouterID: 10\n");
    let o = objects(&yaml);
    let p = simple(&node("n1", &[("role", "lb")]), &o, &[]);
    assert_eq!(p.config.vips.keys().collect::<Vec<_>>(), ["default/a"]);
    assert_eq!(p.errors.len(), 1);
    assert!(
        p.errors[0]
            .to_string()
            .contains("already used by VirtualIP default/a")
    );
    assert!(p.config.faults["default/b"].contains("already used"));

    // No router ID and no allocation yet: waiting, not a fault.
    let yaml = TWO.replace("  virtualRouterID: 11\n", "");
    let o = objects(&yaml);
    let p = simple(&node("n1", &[("role", "lb")]), &o, &[]);
    assert_eq!(p.config.vips.len(), 1);
    assert!(
        p.errors[0].error.contains("virtualRouterID"),
        "{:?}",
        p.errors
    );
    assert!(p.config.faults.is_empty());
}

#[test]
fn a_pool_whose_name_does_not_resolve_affects_only_its_listeners() {
    let yaml = format!(
        "{TWO}---\napiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {{name: c, namespace: other}}\nspec:\n  addresses: [10.0.0.12]\n  virtualRouterID: 12\n  listeners: [{{name: web, port: 80, protocol: HTTP, upstreamPool: q}}]\n---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: q, namespace: other}}\nspec:\n  backends: [{{address: no-such-host.invalid, port: 80}}, {{address: web.example, port: 8080}}]\n"
    );
    let o = objects(&yaml);
    let vips = buoy_crds::manifest::virtual_ips(&o);
    let pools = buoy_crds::manifest::upstream_pools(&o);
    let n = node("n1", &[]);
    let mut resolved = Resolutions::new();
    resolved.insert(
        "no-such-host.invalid".into(),
        Fetched {
            value: None,
            error: Some("NXDomain".into()),
            at: None,
        },
    );
    resolved.insert(
        "web.example".into(),
        Fetched {
            value: Some(vec![
                "10.0.2.1".parse().unwrap(),
                "10.0.2.2".parse().unwrap(),
            ]),
            error: None,
            at: None,
        },
    );
    let p = plan(Inputs {
        resolved: &resolved,
        ..Inputs::simple(&n, &vips, &pools, &[])
    });
    // Both VirtualIPs are served; the pool with the bad name runs with what resolved.
    assert_eq!(p.config.vips.len(), 2);
    assert!(p.config.faults.is_empty());
    assert_eq!(
        p.wants.names,
        [
            "no-such-host.invalid".to_string(),
            "web.example".to_string()
        ]
        .into()
    );
    let q = &p.config.proxy.pools["other/q"];
    assert_eq!(q.backends.len(), 2, "one backend per address of a name");
    assert_eq!(
        q.problems,
        ["backend no-such-host.invalid does not resolve: NXDomain"]
    );
    assert!(p.config.proxy.pools["default/p"].problems.is_empty());
}

#[test]
fn seed_password_comes_from_its_secret_and_a_missing_one_is_a_fault() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/seed");
    let o = buoy_crds::manifest::load(&[dir.into()]).unwrap();
    let secrets = buoy_crds::manifest::secrets(&o);
    let p = simple(&node("lb2", &[]), &o, &secrets);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    let i = &p.config.vips["default/test-web"].instance;
    assert_eq!(i.priority, 99);
    assert_eq!(i.auth, Some(buoy_vrrp::packet::auth_data(b"1111")));
    assert_eq!(
        p.wants.secrets,
        [("default".to_string(), "vrrp-auth".to_string())].into()
    );
    // Without the Secret: a fault of this node, with the reason.
    let p = simple(&node("lb2", &[]), &o, &[]);
    assert!(p.config.vips.is_empty());
    assert!(
        p.config.faults["default/test-web"].contains("vrrp-auth"),
        "{:?}",
        p.config.faults
    );
    // The cluster's cache lost it but holds the last good copy: served, with a warning.
    let vips = buoy_crds::manifest::virtual_ips(&o);
    let pools = buoy_crds::manifest::upstream_pools(&o);
    let n = node("lb2", &[]);
    let problems: BTreeMap<(String, String), String> = [(
        ("default".to_string(), "vrrp-auth".to_string()),
        "not found".to_string(),
    )]
    .into();
    let p = plan(Inputs {
        secret_problems: &problems,
        ..Inputs::simple(&n, &vips, &pools, &secrets)
    });
    assert!(p.config.vips["default/test-web"].warnings[0].contains("not found"));
    let p = plan(Inputs {
        secret_problems: &problems,
        ..Inputs::simple(&n, &vips, &pools, &[])
    });
    assert!(p.config.faults["default/test-web"].contains("not found"));
}

#[test]
fn the_address_policy_and_the_pools_node_selector_and_interfaces_apply() {
    let yaml = r#"
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {name: ingress, namespace: web}
spec:
  addresses: [10.20.0.100]
  virtualRouterID: 20
---
apiVersion: buoy.io/v1alpha1
kind: AddressPool
metadata: {name: edge}
spec:
  addresses: [10.20.0.100-10.20.0.150]
  namespaces: [web]
  nodeSelector: {matchLabels: {buoy.io/edge: "true"}}
  interfaces: [eth1]
"#;
    let o = objects(yaml);
    let vips = buoy_crds::manifest::virtual_ips(&o);
    let address_pools = buoy_crds::manifest::address_pools(&o);
    let enforced = |n: &NodeIdentity, address_pools: &[&AddressPool], placement| {
        plan(Inputs {
            address_pools,
            policy: AddressPolicy::Enforce,
            placement,
            ..Inputs::simple(n, &vips, &[], &[])
        })
    };
    let edge = node("e1", &[("buoy.io/edge", "true")]);
    let p = enforced(&edge, &address_pools, None);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(
        p.config.vips["web/ingress"].instance.allowed_interfaces,
        ["eth1"]
    );
    // Not on a node the pool's selector leaves out.
    let other = enforced(&node("o1", &[]), &address_pools, None);
    assert!(other.config.vips.is_empty() && other.errors.is_empty());
    // The placement includes the pool's selector.
    let key =
        buoy_crds::placement::key_in(&vips[0].spec, address_pools[0].spec.node_selector.as_ref());
    assert_eq!(
        enforced(&edge, &address_pools, Some(&key))
            .config
            .vips
            .len(),
        1
    );
    let plain = buoy_crds::placement::key(&vips[0].spec);
    assert!(
        enforced(&edge, &address_pools, Some(&plain))
            .config
            .vips
            .is_empty()
    );
    // Without a pool that admits it, it is not served (and the operator says why).
    let p = enforced(&edge, &[], None);
    assert!(p.config.vips.is_empty() && p.config.faults.is_empty());
    assert!(
        p.errors[0]
            .error
            .contains("no AddressPool admits namespace web"),
        "{:?}",
        p.errors
    );
    // With the policy off, the same VirtualIP is served anywhere.
    let off = plan(Inputs::simple(&node("o1", &[]), &vips, &[], &[]));
    assert_eq!(off.config.vips.len(), 1);
}

#[test]
fn a_local_traffic_service_needs_a_ready_endpoint_on_the_node() {
    let o = objects(
        "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata:\n  name: svc-web\n  namespace: shop\n  annotations: {buoy.io/local-endpoints-of: web}\nspec:\n  addresses: [10.0.0.20]\n  interface: eth0\n  virtualRouterID: 20\n---\napiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {name: plain, namespace: shop}\nspec:\n  addresses: [10.0.0.21]\n  interface: eth0\n  virtualRouterID: 21\n",
    );
    let vips = buoy_crds::manifest::virtual_ips(&o);
    let n = node("n1", &[]);
    let here = BTreeSet::from(["shop/web".to_string()]);
    let p = plan(Inputs {
        local_endpoints: &here,
        ..Inputs::simple(&n, &vips, &[], &[])
    });
    assert_eq!(p.config.vips["shop/svc-web"].local_endpoint, Some(true));
    assert_eq!(p.config.vips["shop/plain"].local_endpoint, None);
    let elsewhere = BTreeSet::from(["other/web".to_string()]);
    let p = plan(Inputs {
        local_endpoints: &elsewhere,
        ..Inputs::simple(&n, &vips, &[], &[])
    });
    assert_eq!(
        p.config.vips["shop/svc-web"].local_endpoint,
        Some(false),
        "still planned: the node is a candidate once an endpoint arrives"
    );
}

#[test]
fn a_vrrp_group_runs_as_one_instance_under_its_oldest_members_settings() {
    let member = |name: &str, created: &str, address: &str, priority: u8| {
        format!(
            r#"
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata:
  name: {name}
  namespace: web
  creationTimestamp: "{created}"
  annotations: {{buoy.io/vrrp-group: lb-v4-0, buoy.io/priorities: '{{"n1": {priority}}}'}}
spec:
  addresses: [{address}]
  interface: eth0
  virtualRouterID: 20
---"#
        )
    };
    let yaml = [
        member("svc-b", "2026-01-01T00:00:00Z", "10.0.0.21", 150),
        member("svc-a", "2026-01-02T00:00:00Z", "10.0.0.20", 90),
        member("svc-c", "2026-01-03T00:00:00Z", "fd00::21", 90),
        member("alone", "2026-01-01T00:00:00Z", "10.0.0.30", 90)
            .replace("buoy.io/vrrp-group: lb-v4-0, ", "")
            .replace("virtualRouterID: 20", "virtualRouterID: 21"),
    ]
    .join("\n");
    let o = objects(&yaml);
    let p = simple(&node("n1", &[]), &o, &[]);
    let keys: Vec<&String> = p.config.vips.keys().collect();
    assert_eq!(keys, ["group:lb-v4-0", "web/alone"]);
    let g = &p.config.vips["group:lb-v4-0"];
    // The oldest member leads: its priority, its address first; the others' addresses follow.
    assert_eq!(g.members, ["web/svc-b", "web/svc-a"]);
    assert_eq!(g.instance.priority, 150);
    assert_eq!(g.instance.vrid, 20);
    assert!(g.instance.group);
    assert_eq!(
        g.instance.vips(),
        [
            "10.0.0.21".parse::<IpAddr>().unwrap(),
            "10.0.0.20".parse().unwrap()
        ]
    );
    assert_eq!(g.served(), ["web/svc-b", "web/svc-a"]);
    // Another family cannot join: a fault of its own, the group unharmed.
    assert!(p.config.faults["web/svc-c"].contains("VRRP group lb-v4-0"));
    assert!(!p.config.vips["web/alone"].instance.group);
    // Grouped members are exempt from the shared router ID check; a stranger is not.
    let clash = yaml.replace("virtualRouterID: 21", "virtualRouterID: 20");
    let p = simple(&node("n1", &[]), &objects(&clash), &[]);
    assert!(p.config.faults["web/alone"].contains("already used by VRRP group lb-v4-0"));
}

#[test]
fn every_route_pool_is_planned_and_route_problems_are_the_listeners() {
    let yaml = r#"
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {name: a, namespace: default}
spec:
  addresses: [10.0.0.10]
  virtualRouterID: 10
  listeners:
    - name: web
      port: 80
      routes:
        - {hosts: [shop.example.com], upstreamPool: shop}
        - {hosts: [SHOP.example.com], upstreamPool: p}
        - {paths: [{type: Exact, value: /x}], upstreamPool: gone}
---
apiVersion: buoy.io/v1alpha1
kind: UpstreamPool
metadata: {name: shop, namespace: default}
spec:
  backends: [{address: 10.0.1.2, port: 80}]
---
apiVersion: buoy.io/v1alpha1
kind: UpstreamPool
metadata: {name: p, namespace: default}
spec:
  backends: [{address: 10.0.1.1, port: 80}]
"#;
    let o = objects(yaml);
    let p = simple(&node("n1", &[]), &o, &[]);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    let pools: Vec<&String> = p.config.proxy.pools.keys().collect();
    assert_eq!(pools, ["default/p", "default/shop"]);
    let l = &p.config.proxy.listeners[0];
    assert_eq!(l.pool, None);
    assert_eq!(
        l.routes.iter().map(|r| r.pool.as_str()).collect::<Vec<_>>(),
        ["default/shop", "default/p", "default/gone"]
    );
    assert_eq!(
        l.problems,
        [
            "routes[1]: host shop.example.com, Prefix path /: already in routes[0]; ignored here",
            "routes[2]: UpstreamPool default/gone not found",
        ]
    );
}

#[test]
fn a_pool_s_ca_secret_is_watched_and_a_udp_listener_refuses_a_pool_with_tls() {
    let o = objects(
        "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {name: a, namespace: web}\nspec:\n  addresses: [10.0.0.100]\n  virtualRouterID: 7\n  listeners:\n    - {name: h, port: 80, upstreamPool: p}\n    - {name: d, port: 53, protocol: UDP, upstreamPool: p}\n---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {name: p, namespace: web}\nspec:\n  backends: [{address: 10.0.0.9, port: 443}]\n  tls: {caSecretName: backend-ca}\n",
    );
    let p = simple(&node("n1", &[]), &o, &[]);
    // Watched as certificates are (renewals come through at once), not read on a timer.
    assert_eq!(
        p.wants.certificates,
        [("web".to_string(), "backend-ca".to_string())].into()
    );
    assert!(p.wants.secrets.is_empty());
    let pool = &p.config.proxy.pools["web/p"];
    assert!(pool.backends.is_empty());
    assert!(pool.problems[0].starts_with("tls.caSecretName backend-ca: not found"));
    let udp = p
        .config
        .proxy
        .listeners
        .iter()
        .find(|l| l.protocol == buoy_crds::ListenerProtocol::UDP)
        .unwrap();
    assert_eq!(udp.problems, [buoy_crds::udp_pool_with_tls("web/p")]);
}

#[test]
fn an_ecmp_vip_knows_its_other_nodes_from_its_files_and_their_status() {
    let yaml = r#"
apiVersion: buoy.io/v1alpha1
kind: AddressPool
metadata: {name: routed}
spec: {addresses: [10.99.0.0/24], namespaces: [default], announcement: BGP}
---
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {name: web, namespace: default}
spec:
  addressPool: routed
  addresses: [10.99.0.10]
  bgp: {handoverPeers: [10.77.0.2, 10.77.0.3]}
status:
  nodes:
    - {node: n1, state: Master, address: 10.77.0.2}
    - {node: n3, state: Master, address: 10.77.0.4}
"#;
    let o = objects(yaml);
    let vips = buoy_crds::manifest::virtual_ips(&o);
    let address_pools = buoy_crds::manifest::address_pools(&o);
    let p = plan(Inputs {
        address_pools: &address_pools,
        ..Inputs::simple(&node("n1", &[]), &vips, &[], &[])
    });
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert!(p.config.vips.is_empty(), "no VRRP for an ECMP VirtualIP");
    let ecmp = &p.config.ecmp["default/web"];
    // The listed nodes (n1's own address among them: the agent leaves it out) and n3, which
    // reported itself; n1's own status entry is not a peer.
    assert_eq!(
        ecmp.peers,
        ["10.77.0.2", "10.77.0.3", "10.77.0.4"]
            .iter()
            .map(|a| a.parse::<IpAddr>().unwrap())
            .collect()
    );
}
