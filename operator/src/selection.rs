//! Which nodes a VirtualIP selects: the nodes whose labels match its `nodeSelector` and whose
//! scheduling taints (`NoSchedule`, `NoExecute`) its `tolerations` tolerate — the nodes its agent
//! DaemonSet runs on. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `labels` match `selector` (absent selector: everything), as the agents decide it.
use buoy_crds::policy::selector_matches as matches;

fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect_ok = t
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    let key_ok = match t.key.as_deref() {
        None | Some("") => t.operator.as_deref() == Some("Exists"),
        Some(k) => k == taint.key,
    };
    let value_ok = match t.operator.as_deref() {
        Some("Exists") => true,
        _ => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
    };
    effect_ok && key_ok && value_ok
}

/// Whether a DaemonSet pod with `tolerations` may run on `node`.
fn schedulable(node: &Node, tolerations: Option<&[Toleration]>) -> bool {
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|taint| {
            tolerations
                .unwrap_or_default()
                .iter()
                .any(|t| tolerates(t, taint))
        })
}

/// Names of the nodes selected by `selector`, the AddressPool's `pool_selector` (both must
/// match) and `tolerations`, sorted.
pub(crate) fn nodes<'a>(
    all: impl IntoIterator<Item = &'a Node>,
    selector: Option<&LabelSelector>,
    pool_selector: Option<&LabelSelector>,
    tolerations: Option<&[Toleration]>,
) -> Vec<String> {
    let empty = BTreeMap::new();
    let mut out: Vec<String> = all
        .into_iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .filter(|n| {
            let labels = n.metadata.labels.as_ref().unwrap_or(&empty);
            matches(selector, labels) && matches(pool_selector, labels)
        })
        .filter(|n| schedulable(n, tolerations))
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}),
        )
        .unwrap()
    }

    #[test]
    fn labels_expressions_and_taints() {
        let all = [
            node("a", json!({"role": "lb", "zone": "1"}), json!([])),
            node("b", json!({"role": "lb", "zone": "2"}), json!([])),
            node(
                "c",
                json!({"role": "lb"}),
                json!([{"key": "cp", "effect": "NoSchedule"}]),
            ),
            node("d", json!({}), json!([])),
        ];
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"role": "lb"},
            "matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["2"]}]
        }))
        .unwrap();
        assert_eq!(nodes(&all, Some(&sel), None, None), vec!["a"]);
        let tol: Vec<Toleration> =
            serde_json::from_value(json!([{"key": "cp", "operator": "Exists"}])).unwrap();
        assert_eq!(nodes(&all, Some(&sel), None, Some(&tol)), vec!["a", "c"]);
        assert_eq!(nodes(&all, None, None, None), vec!["a", "b", "d"]);
        let exists: LabelSelector = serde_json::from_value(
            json!({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}),
        )
        .unwrap();
        assert_eq!(nodes(&all, Some(&exists), None, None), vec!["a", "b"]);
        // A PreferNoSchedule taint does not keep a DaemonSet away.
        let soft = node(
            "e",
            json!({}),
            json!([{"key": "x", "effect": "PreferNoSchedule"}]),
        );
        assert!(schedulable(&soft, None));
        // An empty key with Exists tolerates everything.
        let all_tol: Vec<Toleration> =
            serde_json::from_value(json!([{"operator": "Exists"}])).unwrap();
        assert!(schedulable(&all[2], Some(&all_tol)));
    }
}
