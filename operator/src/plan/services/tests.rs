//! The Services phase: allocation from pools, requested addresses, sharing, dual stack,
//! exhaustion, release, stability across operator restarts, status and Events.

use super::*;
use serde_json::json;

fn pool(name: &str, spec: Value) -> AddressPool {
    serde_json::from_value(
        json!({"apiVersion": "buoy.io/v1alpha1", "kind": "AddressPool",
        "metadata": {"name": name}, "spec": spec}),
    )
    .expect("an AddressPool")
}

fn svc(ns: &str, name: &str, age: i64, extra: Value) -> Service {
    let mut s = json!({"metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"),
            "creationTimestamp": format!("2026-01-01T00:00:{age:02}Z")},
        "spec": {"type": "LoadBalancer", "loadBalancerClass": "buoy.io/vrrp",
                 "ports": [{"port": 80, "protocol": "TCP"}]}});
    json_patch(&mut s, extra);
    serde_json::from_value(s).expect("a Service")
}

/// Merges `extra` into `v` (objects merged, the rest replaced).
fn json_patch(v: &mut Value, extra: Value) {
    match (v, extra) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, e) in b {
                json_patch(a.entry(k).or_insert(Value::Null), e);
            }
        }
        (v, e) => *v = e,
    }
}

struct Case {
    services: Vec<Service>,
    vips: Vec<VirtualIP>,
    pools: Vec<AddressPool>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    remembered: BTreeMap<String, Vec<Record>>,
    default_class: bool,
}

impl Case {
    fn new(pools: Vec<AddressPool>) -> Case {
        Case {
            services: Vec::new(),
            vips: Vec::new(),
            pools,
            namespaces: BTreeMap::from([
                (
                    "web".into(),
                    BTreeMap::from([("team".into(), "web".into())]),
                ),
                ("dev".into(), BTreeMap::new()),
            ]),
            remembered: BTreeMap::new(),
            default_class: false,
        }
    }

    fn plan(&self) -> ServicesPlan {
        let services: Vec<&Service> = self.services.iter().collect();
        let vips: Vec<&VirtualIP> = self.vips.iter().collect();
        let pools: Vec<&AddressPool> = self.pools.iter().collect();
        plan(&Inputs {
            services: &services,
            vips: &vips,
            pools: &pools,
            namespaces: &self.namespaces,
            nodes: &[],
            remembered: &self.remembered,
            told: &BTreeMap::new(),
            default_class: self.default_class,
            advertisement_interval: Duration::from_millis(100),
        })
    }

    /// Applies the plan's VirtualIPs as the API server would store them (with a master when
    /// `announced`), as the next pass sees them.
    fn store(&mut self, plan: &ServicesPlan, announced: bool) {
        self.vips = plan
            .vips
            .values()
            .map(|body| {
                let mut v: VirtualIP = serde_json::from_value(body.clone()).expect("a VirtualIP");
                if announced {
                    v.status = Some(buoy_crds::VirtualIPStatus {
                        master: Some("n1".into()),
                        ..Default::default()
                    });
                }
                v
            })
            .collect();
    }
}

fn given(plan: &ServicesPlan, key: &str) -> Vec<String> {
    plan.given
        .get(key)
        .into_iter()
        .flatten()
        .map(|r| r.address.to_string())
        .collect()
}

fn event<'p>(plan: &'p ServicesPlan, name: &str) -> &'p ServiceEvent {
    plan.events
        .iter()
        .find(|e| e.name == name)
        .expect("an Event for the Service")
}

fn v4_pool() -> AddressPool {
    pool(
        "public",
        json!({"addresses": ["10.0.0.0/30"], "namespaces": ["web"], "autoAssign": true}),
    )
}

#[test]
fn a_service_gets_the_first_free_address_of_a_pool_that_admits_its_namespace() {
    let mut c = Case::new(vec![
        v4_pool(),
        pool(
            "manual",
            json!({"addresses": ["10.9.0.0/24"], "namespaces": ["web"], "autoAssign": false}),
        ),
    ]);
    c.services = vec![svc("web", "a", 1, json!({})), svc("web", "b", 2, json!({}))];
    let p = c.plan();
    assert_eq!(given(&p, "web/a"), ["10.0.0.0"]);
    assert_eq!(given(&p, "web/b"), ["10.0.0.1"]);
    let body = &p.vips["web/svc-a"];
    assert_eq!(body["spec"]["addresses"], json!(["10.0.0.0"]));
    assert_eq!(body["spec"]["addressPool"], json!("public"));
    assert_eq!(body["spec"]["listeners"], json!([]));
    assert_eq!(
        body["spec"]["vrrp"]["advertisementInterval"],
        json!("100ms")
    );
    assert_eq!(
        body["metadata"]["ownerReferences"][0]["uid"],
        json!("uid-a")
    );
    assert_eq!(
        body["spec"]["nodeSelector"]["matchExpressions"][0],
        json!({"key": "node.kubernetes.io/exclude-from-external-load-balancers", "operator": "DoesNotExist"})
    );
    // Nothing announced yet: no ingress, and the Event says so.
    assert!(p.statuses.is_empty());
    assert_eq!(event(&p, "a").reason, "AddressAssigned");
}

#[test]
fn only_buoys_services_are_served_and_the_default_class_is_opt_in() {
    let mut c = Case::new(vec![v4_pool()]);
    c.services = vec![
        svc(
            "web",
            "other",
            1,
            json!({"spec": {"loadBalancerClass": "metallb.io/metallb"}}),
        ),
        svc(
            "web",
            "classless",
            2,
            json!({"spec": {"loadBalancerClass": null}}),
        ),
        svc("web", "internal", 3, json!({"spec": {"type": "ClusterIP"}})),
    ];
    let p = c.plan();
    assert!(p.vips.is_empty() && p.events.is_empty() && p.statuses.is_empty());
    c.default_class = true;
    let p = c.plan();
    assert_eq!(p.vips.keys().collect::<Vec<_>>(), ["web/svc-classless"]);
}

#[test]
fn a_requested_address_is_given_when_a_pool_allows_it_and_no_one_holds_it() {
    let mut c = Case::new(vec![
        v4_pool(),
        pool(
            "manual",
            json!({"addresses": ["10.9.0.0/24"], "namespaceSelector": {"matchLabels": {"team": "web"}}}),
        ),
    ]);
    let mut user: VirtualIP = serde_json::from_value(json!({"apiVersion": "buoy.io/v1alpha1",
        "kind": "VirtualIP", "metadata": {"name": "front", "namespace": "web"},
        "spec": {"addresses": ["10.9.0.7"]}}))
    .expect("a VirtualIP");
    user.metadata.uid = Some("u".into());
    c.vips = vec![user];
    c.services = vec![
        svc(
            "web",
            "by-annotation",
            1,
            json!({"metadata": {"annotations": {"buoy.io/load-balancer-ips": "10.9.0.5"}}}),
        ),
        svc(
            "web",
            "by-field",
            2,
            json!({"spec": {"loadBalancerIP": "10.9.0.6"}}),
        ),
        svc(
            "web",
            "held",
            3,
            json!({"spec": {"loadBalancerIP": "10.9.0.7"}}),
        ),
        svc(
            "web",
            "outside",
            4,
            json!({"spec": {"loadBalancerIP": "192.168.1.1"}}),
        ),
        svc(
            "dev",
            "wrong-namespace",
            5,
            json!({"spec": {"loadBalancerIP": "10.9.0.8"}}),
        ),
        svc(
            "web",
            "twice",
            6,
            json!({"spec": {"loadBalancerIP": "10.9.0.5"}}),
        ),
    ];
    let p = c.plan();
    assert_eq!(given(&p, "web/by-annotation"), ["10.9.0.5"]);
    assert_eq!(
        p.vips["web/svc-by-annotation"]["spec"]["addressPool"],
        json!("manual")
    );
    assert_eq!(given(&p, "web/by-field"), ["10.9.0.6"]);
    let held = event(&p, "held");
    assert_eq!((held.reason, held.warning), ("AddressInUse", true));
    assert_eq!(held.message, "10.9.0.7 is in use by VirtualIP web/front");
    assert_eq!(
        event(&p, "twice").message,
        "10.9.0.5 is in use by Service web/by-annotation"
    );
    assert_eq!(event(&p, "outside").reason, "AddressNotAllowed");
    assert_eq!(
        event(&p, "outside").message,
        "192.168.1.1 is in no AddressPool that admits namespace web (manual, public)"
    );
    assert_eq!(
        event(&p, "wrong-namespace").message,
        "no AddressPool admits namespace dev"
    );
    for refused in ["held", "outside", "wrong-namespace", "twice"] {
        assert!(given(&p, &format!("web/{refused}")).is_empty());
        assert!(given(&p, &format!("dev/{refused}")).is_empty());
    }
}

#[test]
fn a_named_pool_is_the_only_one_used() {
    let mut c = Case::new(vec![
        v4_pool(),
        pool(
            "manual",
            json!({"addresses": ["10.9.0.0/24"], "namespaces": ["web"]}),
        ),
        pool(
            "theirs",
            json!({"addresses": ["10.8.0.0/24"], "namespaces": ["dev"]}),
        ),
    ]);
    c.services = vec![
        svc(
            "web",
            "a",
            1,
            json!({"metadata": {"annotations": {"buoy.io/address-pool": "manual"}}}),
        ),
        svc(
            "web",
            "b",
            2,
            json!({"metadata": {"annotations": {"buoy.io/address-pool": "theirs"}}}),
        ),
        svc(
            "web",
            "c",
            3,
            json!({"metadata": {"annotations": {"buoy.io/address-pool": "missing"}}}),
        ),
    ];
    let p = c.plan();
    assert_eq!(given(&p, "web/a"), ["10.9.0.0"]);
    assert_eq!(
        event(&p, "b").message,
        "AddressPool theirs does not admit namespace web"
    );
    assert_eq!(event(&p, "c").message, "AddressPool missing does not exist");
}

#[test]
fn an_exhausted_pool_refuses_the_newest_and_a_release_makes_room() {
    let mut c = Case::new(vec![v4_pool()]);
    c.services = (0..5)
        .map(|i| svc("web", &format!("s{i}"), i, json!({})))
        .collect();
    let p = c.plan();
    for i in 0..4 {
        assert_eq!(given(&p, &format!("web/s{i}")), [format!("10.0.0.{i}")]);
    }
    let e = event(&p, "s4");
    assert_eq!(
        (e.reason, e.message.as_str()),
        (
            "PoolExhausted",
            "AddressPool public has no free IPv4 address"
        )
    );
    assert!(!p.vips.contains_key("web/svc-s4"));
    // s1 deleted: its VirtualIP is stale, and s4 gets its address.
    c.store(&p, false);
    c.services.remove(1);
    let p = c.plan();
    assert_eq!(p.stale, vec![("web".to_string(), "svc-s1".to_string())]);
    assert_eq!(given(&p, "web/s4"), ["10.0.0.1"]);
}

#[test]
fn addresses_survive_an_operator_restart_and_new_services_do_not_take_them() {
    let mut c = Case::new(vec![v4_pool()]);
    c.services = vec![svc("web", "late", 5, json!({}))];
    let p = c.plan();
    assert_eq!(given(&p, "web/late"), ["10.0.0.0"]);
    c.store(&p, false);
    // A restarted operator (nothing remembered) sees an older Service appear: the younger one
    // keeps its address, read back from its VirtualIP.
    c.services.insert(0, svc("web", "early", 1, json!({})));
    let p = c.plan();
    assert_eq!(given(&p, "web/late"), ["10.0.0.0"]);
    assert_eq!(given(&p, "web/early"), ["10.0.0.1"]);
    // Without the VirtualIPs (deleted by hand), the Service's status still records it.
    let mut c2 = Case::new(vec![v4_pool()]);
    c2.services = vec![
        svc("web", "early", 1, json!({})),
        svc(
            "web",
            "late",
            5,
            json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}]}}}),
        ),
    ];
    let p = c2.plan();
    assert_eq!(given(&p, "web/late"), ["10.0.0.2"]);
    assert_eq!(given(&p, "web/early"), ["10.0.0.0"]);
    // And what the last pass gave, before the caches show it.
    let mut c3 = Case::new(vec![v4_pool()]);
    c3.remembered = BTreeMap::from([(
        "web/late".to_string(),
        vec![Record {
            address: "10.0.0.3".parse().expect("ip"),
            pool: Some("public".into()),
        }],
    )]);
    c3.services = vec![
        svc("web", "early", 1, json!({})),
        svc("web", "late", 5, json!({})),
    ];
    assert_eq!(given(&c3.plan(), "web/late"), ["10.0.0.3"]);
}

#[test]
fn services_with_a_sharing_key_share_one_address_unless_their_ports_clash() {
    let mut c = Case::new(vec![v4_pool()]);
    let shared = |name: &str, age: i64, proto: &str| {
        svc(
            "web",
            name,
            age,
            json!({"metadata": {"annotations": {"buoy.io/allow-shared-ip": "DNS"}},
            "spec": {"ports": [{"port": 53, "protocol": proto}]}}),
        )
    };
    c.services = vec![
        shared("dns-udp", 1, "UDP"),
        shared("dns-tcp", 2, "TCP"),
        shared("dns-again", 3, "UDP"),
        svc(
            "web",
            "mismatch",
            4,
            json!({"metadata": {"annotations": {"buoy.io/allow-shared-ip": "DNS"}},
            "spec": {"externalTrafficPolicy": "Local", "ports": [{"port": 54}]}}),
        ),
    ];
    let p = c.plan();
    assert_eq!(given(&p, "web/dns-udp"), ["10.0.0.0"]);
    assert_eq!(given(&p, "web/dns-tcp"), ["10.0.0.0"]);
    let body = &p.vips["web/shared-dns"];
    assert_eq!(
        body["metadata"]["annotations"]["buoy.io/services"],
        json!("dns-udp,dns-tcp")
    );
    assert_eq!(
        body["metadata"]["ownerReferences"].as_array().map(Vec::len),
        Some(2)
    );
    let clash = event(&p, "dns-again");
    assert_eq!(clash.reason, "PortsClash");
    assert_eq!(
        clash.message,
        "the address shared with Service dns-udp already serves UDP/53"
    );
    assert_eq!(event(&p, "mismatch").reason, "SharingMismatch");
    assert_eq!(p.vips.len(), 1);
}

#[test]
fn dual_stack_gets_one_address_per_family() {
    let mut c = Case::new(vec![
        v4_pool(),
        pool(
            "public6",
            json!({"addresses": ["fd00::10/126"], "namespaces": ["web"], "autoAssign": true}),
        ),
    ]);
    c.services = vec![
        svc(
            "web",
            "both",
            1,
            json!({"spec": {"ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack"}}),
        ),
        svc("web", "v6", 2, json!({"spec": {"ipFamilies": ["IPv6"]}})),
    ];
    let p = c.plan();
    assert_eq!(given(&p, "web/both"), ["10.0.0.0", "fd00::10"]);
    assert_eq!(
        p.vips["web/svc-both-v6"]["spec"]["addresses"],
        json!(["fd00::10"])
    );
    assert_eq!(given(&p, "web/v6"), ["fd00::11"]);
    // Without IPv6 addresses: RequireDualStack is refused, PreferDualStack served in IPv4.
    let mut c = Case::new(vec![v4_pool()]);
    c.services = vec![
        svc(
            "web",
            "require",
            1,
            json!({"spec": {"ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack"}}),
        ),
        svc(
            "web",
            "prefer",
            2,
            json!({"spec": {"ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "PreferDualStack"}}),
        ),
    ];
    let p = c.plan();
    assert_eq!(event(&p, "require").reason, "PoolExhausted");
    assert_eq!(
        given(&p, "web/prefer"),
        ["10.0.0.0"],
        "the refused one released its IPv4 address"
    );
}

#[test]
fn the_status_lists_the_addresses_once_a_node_announces_them_and_events_follow_the_master() {
    let mut c = Case::new(vec![v4_pool()]);
    c.services = vec![svc("web", "a", 1, json!({}))];
    let p = c.plan();
    c.store(&p, true);
    let p = c.plan();
    assert_eq!(
        p.statuses,
        vec![ServiceStatus {
            namespace: "web".into(),
            name: "a".into(),
            ingress: vec!["10.0.0.0".parse().expect("ip")]
        }]
    );
    assert_eq!(
        p.statuses[0].patch(),
        json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.0", "ipMode": "VIP"}]}}})
    );
    let e = event(&p, "a");
    assert_eq!(
        (e.reason, e.message.as_str()),
        (
            "Announced",
            "given 10.0.0.0; announced: 10.0.0.0 on node n1"
        )
    );
    // Told once: the same outcome is not an Event again.
    let told = p.told.clone();
    let services: Vec<&Service> = c.services.iter().collect();
    let vips: Vec<&VirtualIP> = c.vips.iter().collect();
    let pools: Vec<&AddressPool> = c.pools.iter().collect();
    let again = plan(&Inputs {
        services: &services,
        vips: &vips,
        pools: &pools,
        namespaces: &c.namespaces,
        nodes: &[],
        remembered: &BTreeMap::new(),
        told: &told,
        default_class: false,
        advertisement_interval: Duration::from_secs(1),
    });
    assert!(again.events.is_empty());
    // No node announces any more: the status is cleared.
    let mut announced_svc = c.services[0].clone();
    announced_svc.status = serde_json::from_value(
        json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.0", "ipMode": "VIP"}]}}),
    )
    .expect("status");
    c.services = vec![announced_svc];
    c.store(&p, false);
    let p = c.plan();
    assert_eq!(p.statuses[0].ingress, Vec::<IpAddr>::new());
}

#[test]
fn malformed_services_are_refused_alone() {
    let mut c = Case::new(vec![v4_pool()]);
    c.services = vec![
        svc(
            "web",
            "bad",
            1,
            json!({"metadata": {"annotations": {"buoy.io/load-balancer-ips": "ten"}}}),
        ),
        svc("web", "good", 2, json!({})),
    ];
    let p = c.plan();
    let e = event(&p, "bad");
    assert_eq!((e.reason, e.warning), ("InvalidRequest", true));
    assert_eq!(given(&p, "web/good"), ["10.0.0.0"]);
}

#[test]
fn a_users_virtualip_of_the_same_name_is_never_taken_over() {
    let mut c = Case::new(vec![v4_pool()]);
    c.vips = vec![
        serde_json::from_value(
            json!({"apiVersion": "buoy.io/v1alpha1", "kind": "VirtualIP",
        "metadata": {"name": "svc-a", "namespace": "web"}, "spec": {"addresses": ["10.7.0.1"]}}),
        )
        .expect("a VirtualIP"),
    ];
    c.services = vec![svc("web", "a", 1, json!({}))];
    let p = c.plan();
    assert!(p.vips.is_empty() && p.stale.is_empty());
    assert_eq!(event(&p, "a").reason, "NameInUse");
    assert!(event(&p, "a").message.contains("svc-a"));
}

#[test]
fn a_kept_address_stays_in_the_pool_it_came_from() {
    // `everything` (first by name) also holds the address `public` gave: the Service's
    // VirtualIP keeps `public` (and its node selector), pass after pass.
    let mut c = Case::new(vec![
        v4_pool(),
        pool(
            "everything",
            json!({"addresses": ["10.0.0.0/8"], "namespaces": ["web"], "autoAssign": false}),
        ),
    ]);
    c.services = vec![svc("web", "a", 1, json!({}))];
    let p = c.plan();
    assert_eq!(p.vips["web/svc-a"]["spec"]["addressPool"], json!("public"));
    c.store(&p, false);
    let p = c.plan();
    assert_eq!(p.vips["web/svc-a"]["spec"]["addressPool"], json!("public"));
    assert!(
        p.changed.is_empty(),
        "nothing to apply again: {:?}",
        p.changed
    );
}

#[test]
fn a_local_traffic_policy_asks_the_agents_for_a_ready_local_endpoint() {
    let mut c = Case::new(vec![v4_pool()]);
    c.services = vec![
        svc(
            "web",
            "local",
            1,
            json!({"spec": {"externalTrafficPolicy": "Local"}}),
        ),
        svc(
            "web",
            "cluster",
            2,
            json!({"spec": {"externalTrafficPolicy": "Cluster"}}),
        ),
    ];
    let p = c.plan();
    assert_eq!(
        p.vips["web/svc-local"]["metadata"]["annotations"]["buoy.io/local-endpoints-of"],
        json!("local")
    );
    assert!(
        p.vips["web/svc-cluster"]["metadata"]["annotations"]
            .get("buoy.io/local-endpoints-of")
            .is_none()
    );
}

#[test]
fn services_of_one_pool_share_vrrp_groups_that_stay_and_local_ones_run_alone() {
    let mut c = Case::new(vec![pool(
        "big",
        json!({"addresses": ["10.1.0.0/16"], "namespaces": ["web"], "autoAssign": true}),
    )]);
    c.services = (0..40)
        .map(|i| svc("web", &format!("s{i:02}"), i % 60, json!({})))
        .collect();
    c.services.push(svc(
        "web",
        "local",
        59,
        json!({"spec": {"externalTrafficPolicy": "Local"}}),
    ));
    let group_of = |p: &ServicesPlan, key: &str| {
        p.vips[key]["metadata"]["annotations"][contract::GROUP_ANNOTATION]
            .as_str()
            .map(str::to_string)
    };
    let p = c.plan();
    let mut sizes: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..40 {
        let g = group_of(&p, &format!("web/svc-s{i:02}")).expect("grouped");
        *sizes.entry(g).or_default() += 1;
    }
    // 40 addresses, no nodes known: the fewest groups of at most 16.
    assert_eq!(sizes.len(), 3, "{sizes:?}");
    assert!(sizes.keys().all(|g| g.starts_with("big-v4-")));
    assert_eq!(group_of(&p, "web/svc-local"), None, "Local runs alone");
    // Stored and planned again (an operator restart reads the annotations back): the same.
    c.store(&p, true);
    let again = c.plan();
    for i in 0..40 {
        let key = format!("web/svc-s{i:02}");
        assert_eq!(group_of(&again, &key), group_of(&p, &key));
    }
    assert!(again.changed.is_empty(), "{:?}", again.changed);
}
