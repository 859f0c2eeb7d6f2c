//! The plan's nodes and priorities phase, pure: the nodes each served VirtualIP selects (its
//! `nodeSelector`, its AddressPool's, its tolerations: [`selection::nodes`]) and, for those not
//! in conflict, the priorities of [`allocate::priorities`] that the operator writes in the
//! priorities annotation (none for a VirtualIP with `spec.priorities`: its top node counts as
//! its master).

use std::collections::HashMap;

use buoy_crds::contract;
use k8s_openapi::api::core::v1::Node;

use super::served::ServedVip;
use super::world::key_of;
use crate::allocate::{self, PriorityRequest};
use crate::selection;

/// What priority assignment knows of `v`.
fn request(v: &ServedVip) -> PriorityRequest {
    let fixed_master = v.vip.spec.priorities.as_ref().map(|p| {
        p.iter()
            .max_by(|a, b| a.priority.cmp(&b.priority).then(b.node.cmp(&a.node)))
            .map(|p| p.node.clone())
            .unwrap_or_default()
    });
    PriorityRequest {
        id: v.vip.metadata.uid.clone().unwrap_or_else(|| key_of(&v.vip)),
        nodes: v.assignment.nodes.clone(),
        fixed_master,
    }
}

/// Sets the `assignment` of each of `vips` (served, in precedence order, their conflicts
/// found) among `nodes`.
pub(super) fn assign(vips: &mut [ServedVip], nodes: &[&Node]) {
    for v in vips.iter_mut() {
        v.assignment.nodes = selection::nodes(
            nodes.iter().copied(),
            v.vip.spec.node_selector.as_ref(),
            v.pool_selector.as_ref(),
            v.vip.spec.tolerations.as_deref(),
        );
    }
    // One request per VRRP group (its first member's, the oldest): its members must agree on
    // every node's priority, and count once toward a node's masters.
    let mut open: Vec<&mut ServedVip> = vips.iter_mut().filter(|v| v.conflict.is_none()).collect();
    let mut requests: Vec<PriorityRequest> = Vec::new();
    let mut slot: Vec<usize> = Vec::with_capacity(open.len());
    let mut by_group: HashMap<String, usize> = HashMap::new();
    for v in &open {
        let group = contract::group_of(&v.vip.metadata).map(contract::group_key);
        if let Some(i) = group.as_ref().and_then(|g| by_group.get(g)) {
            slot.push(*i);
            continue;
        }
        let mut r = request(v);
        if let Some(g) = group {
            r.id.clone_from(&g);
            by_group.insert(g, requests.len());
        }
        slot.push(requests.len());
        requests.push(r);
    }
    let assigned = allocate::priorities(&requests);
    for (v, i) in open.iter_mut().zip(slot) {
        v.assignment.priorities = assigned[i].clone().filter(|p| !p.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use crate::plan::fixture::{Fixture, node, of, reasons, vip};

    #[test]
    fn priorities_follow_selected_nodes_and_spread_masters() {
        let mut f = Fixture::new(
            (0..100)
                .map(|i| {
                    vip(
                        "a",
                        &format!("vip-{i}"),
                        1000 - i,
                        json!({"addresses": [format!("10.0.1.{i}")]}),
                    )
                })
                .collect(),
        );
        f.nodes = (1..=5)
            .map(|i| node(&format!("node-{i}"), json!({"rack": format!("r{}", i % 2)})))
            .collect();
        f.vips.push(vip(
            "a",
            "rack0",
            1,
            json!({"addresses": ["10.0.2.1"], "nodeSelector": {"matchLabels": {"rack": "r0"}}}),
        ));
        f.vips.push(vip(
            "a",
            "fixed",
            1,
            json!({"addresses": ["10.0.2.2"], "priorities": [{"node": "node-1", "priority": 150}]}),
        ));
        let p = f.settle();
        let mut masters: BTreeMap<String, usize> = BTreeMap::new();
        for i in 0..100 {
            let text = of(&p, &format!("vip-{i}")).meta.priorities.clone().unwrap();
            let map: BTreeMap<String, u8> = serde_json::from_str(&text).unwrap();
            assert_eq!(map.len(), 5);
            let top = map.iter().max_by_key(|(_, v)| **v).unwrap();
            assert_eq!(*top.1, 200);
            *masters.entry(top.0.clone()).or_default() += 1;
        }
        assert!(masters.values().all(|m| *m <= 22), "{masters:?}");
        assert_eq!(masters.len(), 5);
        let rack0: BTreeMap<String, u8> =
            serde_json::from_str(of(&p, "rack0").meta.priorities.as_ref().unwrap()).unwrap();
        assert_eq!(rack0.keys().collect::<Vec<_>>(), vec!["node-2", "node-4"]);
        assert_eq!(
            of(&p, "fixed").meta.priorities,
            None,
            "spec.priorities wins"
        );
        // Deterministic and quiet once written.
        let again = f.plan();
        assert!(again.vips.iter().all(|v| !v.meta_changed));
        assert!(
            p.vips
                .iter()
                .all(|v| !reasons(&p, &v.name).contains(&"PrioritiesAssigned".to_string())),
            "first assignments are not news"
        );
        // A node joins: every VirtualIP that selects it gets it, and says so.
        f.nodes.push(node("node-6", json!({})));
        let p = f.plan();
        let v0 = of(&p, "vip-0");
        assert!(v0.meta_changed && v0.meta.priorities.as_ref().unwrap().contains("node-6"));
        assert!(reasons(&p, "vip-0").contains(&"PrioritiesAssigned".to_string()));
    }

    #[test]
    fn a_vrrp_group_shares_one_router_id_and_one_set_of_priorities() {
        use buoy_crds::contract::GROUP_ANNOTATION;
        let grouped = |name: &str, age: i64, group: &str, address: &str| {
            let mut v = vip("a", name, age, json!({"addresses": [address]}));
            v.metadata.annotations = Some(BTreeMap::from([(
                GROUP_ANNOTATION.to_string(),
                group.to_string(),
            )]));
            v
        };
        let mut vips = Vec::new();
        for g in 0..6 {
            for m in 0..4 {
                vips.push(grouped(
                    &format!("g{g}-m{m}"),
                    100 - m,
                    &format!("lb-v4-{g}"),
                    &format!("10.0.{g}.{m}"),
                ));
            }
        }
        let mut f = Fixture::new(vips);
        f.nodes = (1..=3)
            .map(|i| node(&format!("node-{i}"), json!({})))
            .collect();
        let p = f.settle();
        let mut vrids = BTreeMap::new();
        let mut masters: BTreeMap<String, usize> = BTreeMap::new();
        for g in 0..6 {
            let first = of(&p, &format!("g{g}-m0"));
            for m in 0..4 {
                let v = of(&p, &format!("g{g}-m{m}"));
                assert!(v.meta.conflict.is_none(), "{:?}", v.meta.conflict);
                assert_eq!(
                    v.vrid.value(),
                    first.vrid.value(),
                    "one router ID per group"
                );
                assert_eq!(
                    v.meta.priorities, first.meta.priorities,
                    "one set of priorities"
                );
            }
            vrids.insert(first.vrid.value().unwrap(), g);
            let map: BTreeMap<String, u8> =
                serde_json::from_str(first.meta.priorities.as_ref().unwrap()).unwrap();
            let top = map.iter().max_by_key(|(_, v)| **v).unwrap().0.clone();
            *masters.entry(top).or_default() += 1;
        }
        assert_eq!(vrids.len(), 6, "24 addresses, 6 router IDs");
        assert_eq!(masters.len(), 3, "groups' masters spread: {masters:?}");
        // A VirtualIP outside the group that names the group's router ID takes it (a spec
        // wins over an allocation): the whole group moves, together.
        let mut stranger = vip("b", "stranger", 1, json!({"addresses": ["10.9.0.1"]}));
        stranger.spec.virtual_router_id = of(&p, "g0-m0").vrid.value();
        f.vips.push(stranger);
        let p = f.settle();
        let taken = of(&p, "stranger").vrid.value();
        assert!(of(&p, "stranger").meta.conflict.is_none());
        let moved = of(&p, "g0-m0").vrid.value();
        assert_ne!(moved, taken);
        for m in 0..4 {
            assert_eq!(of(&p, &format!("g0-m{m}")).vrid.value(), moved);
        }
    }
}
