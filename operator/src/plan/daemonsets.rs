//! The plan's DaemonSets phase, pure: one agent DaemonSet ([`daemonset::desired`]) per
//! placement of the served VirtualIPs (their `nodeSelector`, their AddressPool's, their
//! tolerations: [`buoy_crds::placement::key_in`]), owned by the placement's oldest VirtualIPs in
//! the operator's namespace.

use std::collections::BTreeMap;

use serde_json::Value;

use super::served::ServedVip;
use crate::daemonset::{self, AgentSettings, Owner, Placement};

/// Owner references on an agent DaemonSet: its placement's oldest VirtualIPs (in its
/// namespace), not all of them, so that a placement of thousands of VirtualIPs does not make a
/// DaemonSet of thousands of references rewritten on every change. Safe because a VirtualIP's
/// finalizer holds it until the operator has moved the references to the next ones; the
/// operator deletes a DaemonSet whose placement is unused, and the references are only the
/// backstop for when it is not running.
pub(crate) const MAX_OWNERS: usize = 8;

/// The agent DaemonSets of `vips` (served, in precedence order), by placement key, as applied.
/// Owners: the oldest VirtualIPs of the placement in the DaemonSet's namespace, those not being
/// deleted first, at most [`MAX_OWNERS`].
pub(super) fn desired(vips: &[ServedVip], agents: &AgentSettings) -> BTreeMap<String, Value> {
    let mut placements: BTreeMap<String, (Placement, Vec<Owner>)> = BTreeMap::new();
    for ServedVip {
        vip: v,
        pool_selector,
        ..
    } in vips
    {
        let key = buoy_crds::placement::key_in(&v.spec, pool_selector.as_ref());
        let (placement, deleting_owners) = placements.entry(key.clone()).or_insert_with(|| {
            (
                Placement {
                    key,
                    node_selector: v.spec.node_selector.clone(),
                    pool_node_selector: pool_selector.clone(),
                    tolerations: v.spec.tolerations.clone(),
                    owners: Vec::new(),
                },
                Vec::new(),
            )
        });
        if v.metadata.namespace.as_deref() == Some(agents.namespace.as_str())
            && let (Some(name), Some(uid)) = (&v.metadata.name, &v.metadata.uid)
        {
            let owner = Owner {
                name: name.clone(),
                uid: uid.clone(),
            };
            if v.metadata.deletion_timestamp.is_some() {
                deleting_owners.push(owner);
            } else {
                placement.owners.push(owner);
            }
        }
    }
    placements
        .into_iter()
        .map(|(k, (mut p, deleting))| {
            p.owners.extend(deleting);
            p.owners.truncate(MAX_OWNERS);
            p.owners.sort();
            (k, daemonset::desired(agents, &p))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::plan::fixture::{Fixture, vip};

    #[test]
    fn one_daemonset_per_placement_owned_by_its_vips_in_the_namespace() {
        let f = Fixture::new(vec![
            vip("buoy-system", "a", 30, json!({"addresses": ["10.0.0.1"]})),
            vip("buoy-system", "b", 20, json!({"addresses": ["10.0.0.2"]})),
            vip("apps", "c", 10, json!({"addresses": ["10.0.0.3"]})),
            vip(
                "buoy-system",
                "d",
                5,
                json!({"addresses": ["10.0.0.4"], "nodeSelector": {"matchLabels": {"role": "lb"}}}),
            ),
        ]);
        let p = f.plan();
        assert_eq!(p.daemonsets.len(), 2);
        let all = &p.daemonsets[&buoy_crds::placement::key(&f.vips[0].spec)];
        assert_eq!(all["metadata"]["name"], json!("buoy-agent-ad1269f96e"));
        let owners: Vec<&str> = all["metadata"]["ownerReferences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            owners,
            vec!["a", "b"],
            "no owner reference across namespaces"
        );
        let lb = &p.daemonsets[&buoy_crds::placement::key(&f.vips[3].spec)];
        assert_eq!(
            lb.pointer("/spec/template/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchExpressions/0/key"),
            Some(&json!("role"))
        );
    }
}
