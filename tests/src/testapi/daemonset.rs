//! The DaemonSet scheduler shim: for each Node matching a DaemonSet's node selector, required
//! node affinity and tolerations, a Pod bound to that node (never run: the e2e harness starts agents itself), and
//! the DaemonSet's status counts. Pods of nodes that no longer qualify, or of an older template
//! generation, are deleted.

use serde_json::{Value, json};

use super::apply::Scope;
use super::store::{DeleteOpts, Store, WriteCtx};

const MANAGER: &str = "daemon-set-controller";
const TEMPLATE_GENERATION: &str = "pod-template-generation";

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

/// Does a pod with these tolerations tolerate this taint?
fn tolerates(tolerations: &[Value], taint: &Value) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = s(t, "/effect").is_empty() || s(t, "/effect") == s(taint, "/effect");
        let key_ok = s(t, "/key").is_empty() && s(t, "/operator") == "Exists"
            || s(t, "/key") == s(taint, "/key");
        let value_ok = s(t, "/operator") == "Exists" || s(t, "/value") == s(taint, "/value");
        effect_ok && key_ok && value_ok
    })
}

/// Taints every DaemonSet pod tolerates: the DaemonSet controller adds these tolerations.
const DAEMON_TOLERATED: &[&str] = &[
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
    "node.kubernetes.io/disk-pressure",
    "node.kubernetes.io/memory-pressure",
    "node.kubernetes.io/pid-pressure",
    "node.kubernetes.io/unschedulable",
];

/// One `matchExpressions`/`matchFields` requirement of a node selector term.
fn requirement_ok(req: &Value, value: Option<&str>) -> bool {
    let values: Vec<&str> = req
        .get("values")
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let number = |x: &str| x.parse::<i64>().ok();
    match s(req, "/operator") {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => value.is_none_or(|v| !values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => {
            matches!((value.and_then(number), values.first().and_then(|x| number(x))), (Some(v), Some(b)) if v > b)
        }
        "Lt" => {
            matches!((value.and_then(number), values.first().and_then(|x| number(x))), (Some(v), Some(b)) if v < b)
        }
        _ => false,
    }
}

/// `affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`: any term, each of
/// whose requirements hold (label expressions, and `metadata.name` fields).
fn node_affinity_ok(pod_spec: &Value, node: &Value) -> bool {
    let Some(terms) = pod_spec
        .pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array)
    else {
        return true;
    };
    let list = |term: &Value, k: &str| {
        term.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    terms.iter().any(|term| {
        let (exprs, fields) = (list(term, "matchExpressions"), list(term, "matchFields"));
        // An empty term selects nothing, as in the scheduler.
        !(exprs.is_empty() && fields.is_empty())
            && exprs.iter().all(|e| {
                let label = node
                    .pointer("/metadata/labels")
                    .and_then(|l| l.get(s(e, "/key")))
                    .and_then(Value::as_str);
                requirement_ok(e, label)
            })
            && fields.iter().all(|f| {
                let field = (s(f, "/key") == "metadata.name").then(|| s(node, "/metadata/name"));
                requirement_ok(f, field)
            })
    })
}

fn eligible(ds: &Value, node: &Value) -> bool {
    let pod_spec = ds
        .pointer("/spec/template/spec")
        .cloned()
        .unwrap_or(json!({}));
    let labels = node
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    let selector_ok = pod_spec
        .get("nodeSelector")
        .and_then(Value::as_object)
        .is_none_or(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let tolerations = pod_spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let host_network = pod_spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    // NoSchedule and NoExecute taints need tolerations, except those every daemon tolerates.
    let taints_ok = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .is_none_or(|taints| {
            taints
                .iter()
                .filter(|t| s(t, "/effect") != "PreferNoSchedule")
                .filter(|t| !DAEMON_TOLERATED.contains(&s(t, "/key")))
                .filter(|t| {
                    !(host_network && s(t, "/key") == "node.kubernetes.io/network-unavailable")
                })
                .all(|t| tolerates(&tolerations, t))
        });
    selector_ok && taints_ok && node_affinity_ok(&pod_spec, node)
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True")
        })
}

/// One pass over every DaemonSet; true when it changed anything.
pub fn reconcile(store: &mut Store) -> bool {
    let (Some(ds_type), Some(pod_type), Some(node_type)) = (
        store.type_of("apps", "daemonsets"),
        store.type_of("", "pods"),
        store.type_of("", "nodes"),
    ) else {
        return false;
    };
    let all = super::selectors::Selector::default();
    let nodes = store.list(&node_type, None, &all);
    let mut changed = false;
    for ds in store.list(&ds_type, None, &all) {
        if ds.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let (ns, name, uid) = (
            s(&ds, "/metadata/namespace").to_string(),
            s(&ds, "/metadata/name").to_string(),
            s(&ds, "/metadata/uid").to_string(),
        );
        let generation = ds
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1)
            .to_string();
        let owned: Vec<Value> = store
            .list(&pod_type, Some(&ns), &all)
            .into_iter()
            .filter(|p| {
                p.pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|r| r.iter().any(|r| s(r, "/uid") == uid))
            })
            .collect();
        let wanted: Vec<&Value> = nodes.iter().filter(|n| eligible(&ds, n)).collect();
        for pod in &owned {
            let node = s(pod, "/spec/nodeName");
            let stale = s(pod, &format!("/metadata/labels/{TEMPLATE_GENERATION}")) != generation;
            if stale || !wanted.iter().any(|n| s(n, "/metadata/name") == node) {
                changed |= store
                    .delete(
                        &pod_type,
                        &ns,
                        s(pod, "/metadata/name"),
                        &DeleteOpts::default(),
                    )
                    .is_ok();
            }
        }
        for node in &wanted {
            let node_name = s(node, "/metadata/name");
            let has = owned.iter().any(|p| {
                s(p, "/spec/nodeName") == node_name
                    && s(p, &format!("/metadata/labels/{TEMPLATE_GENERATION}")) == generation
            });
            if has {
                continue;
            }
            let mut labels = ds
                .pointer("/spec/template/metadata/labels")
                .cloned()
                .unwrap_or(json!({}));
            labels[TEMPLATE_GENERATION] = json!(generation);
            let mut spec = ds
                .pointer("/spec/template/spec")
                .cloned()
                .unwrap_or(json!({}));
            spec["nodeName"] = json!(node_name);
            let pod = json!({
                "metadata": {
                    "generateName": format!("{name}-"),
                    "labels": labels,
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}],
                },
                "spec": spec,
            });
            changed |= store
                .create(&pod_type, &ns, pod, &WriteCtx::internal(MANAGER))
                .is_ok();
        }
        let pods: Vec<Value> = store
            .list(&pod_type, Some(&ns), &all)
            .into_iter()
            .filter(|p| {
                p.pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|r| r.iter().any(|r| s(r, "/uid") == uid))
            })
            .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
            .collect();
        let ready = pods.iter().filter(|p| is_ready(p)).count();
        let status = json!({
            "currentNumberScheduled": pods.len(),
            "desiredNumberScheduled": wanted.len(),
            "numberMisscheduled": 0,
            "numberReady": ready,
            "numberAvailable": ready,
            "numberUnavailable": wanted.len().saturating_sub(ready),
            "updatedNumberScheduled": pods.len(),
            "observedGeneration": ds.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
        });
        if ds.get("status") != Some(&status) {
            let mut new = ds.clone();
            new["status"] = status;
            changed |= store
                .update(
                    &ds_type,
                    &ns,
                    &name,
                    new,
                    Scope::Status,
                    &WriteCtx::internal(MANAGER),
                )
                .is_ok_and(|o| o.get("status") != ds.get("status"));
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(spec: Value) -> Value {
        json!({"spec": {"template": {"spec": spec}}})
    }

    #[test]
    fn node_selection_follows_affinity_and_taints() {
        let node = json!({"metadata": {"name": "n1", "labels": {"zone": "a", "cores": "8"}},
            "spec": {"taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}});
        let affinity = |terms: Value| {
            ds(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}),
            )
        };
        assert!(
            eligible(&ds(json!({})), &node),
            "daemons tolerate unschedulable nodes"
        );
        assert!(eligible(
            &affinity(
                json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}])
            ),
            &node
        ));
        assert!(!eligible(
            &affinity(
                json!([{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}])
            ),
            &node
        ));
        assert!(eligible(
            &affinity(
                json!([{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}])
            ),
            &node
        ));
        assert!(eligible(
            &affinity(
                json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}])
            ),
            &node
        ));
        assert!(!eligible(
            &affinity(
                json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}])
            ),
            &node
        ));
        assert!(
            !eligible(&affinity(json!([{}])), &node),
            "an empty term selects nothing"
        );
        let tainted = json!({"metadata": {"name": "n2"}, "spec": {"taints": [{"key": "dedicated", "value": "lb", "effect": "NoExecute"}]}});
        assert!(!eligible(&ds(json!({})), &tainted));
        assert!(eligible(
            &ds(json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "lb"}]})),
            &tainted
        ));
        assert!(!eligible(
            &ds(json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db"}]})),
            &tainted
        ));
        assert!(eligible(
            &ds(json!({"tolerations": [{"operator": "Exists"}]})),
            &tainted
        ));
    }
}
