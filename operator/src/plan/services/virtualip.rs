//! The VirtualIP the operator keeps for a Service (or the Services of one sharing key), one per
//! address family, pure: announce only (no listeners: kube-proxy or its replacement forwards the
//! traffic), owned by its Services, on the nodes its pool allows and that do not exclude load
//! balancers.

use std::time::Duration;

use buoy_crds::{AddressPool, contract, service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use serde_json::{Value, json};

use super::allocate::{Given, Unit};
use crate::applied;

/// The name of a unit's VirtualIP for one family: `svc-NAME` for one Service, `shared-KEY` for
/// a sharing key, `-v6` appended for IPv6.
pub(crate) fn name(unit: &Unit<'_>, ipv6: bool) -> String {
    let base = match unit.sharing {
        None => format!("svc-{}", unit.first().name),
        Some((_, key)) => format!("shared-{}", dns_label(key)),
    };
    if ipv6 { format!("{base}-v6") } else { base }
}

/// `key` as a DNS label part: lower case, `-` for the rest, at most 50 characters.
fn dns_label(key: &str) -> String {
    let mut out = String::new();
    for c in key.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out: String = out.trim_matches('-').chars().take(50).collect();
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() { "key".into() } else { out }
}

/// The unit's nodes: the pool's `nodeSelector`, without nodes that exclude load balancers.
fn node_selector(pool: Option<&AddressPool>) -> LabelSelector {
    let mut s = pool
        .and_then(|p| p.spec.node_selector.clone())
        .unwrap_or_default();
    s.match_expressions
        .get_or_insert_with(Vec::new)
        .push(LabelSelectorRequirement {
            key: service::EXCLUDE_NODE_LABEL.into(),
            operator: "DoesNotExist".into(),
            values: None,
        });
    s
}

fn go_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// The server-side apply body of the unit's VirtualIP for the address `given`, in VRRP `group`
/// if it shares an instance.
pub(crate) fn desired(
    unit: &Unit<'_>,
    given: &Given,
    pool: Option<&AddressPool>,
    group: Option<&str>,
    advertisement_interval: Duration,
) -> Value {
    let first = unit.first();
    let owners: Vec<Value> = unit
        .members
        .iter()
        .filter_map(|m| {
            Some(json!({
                "apiVersion": "v1", "kind": "Service", "name": m.name,
                "uid": m.service.metadata.uid.as_deref()?,
            }))
        })
        .collect();
    let names: Vec<&str> = unit.members.iter().map(|m| m.name).collect();
    let mut annotations = json!({ service::SERVICES_ANNOTATION: names.join(",") });
    if first.local {
        // Only nodes with a ready endpoint of the Service may be master (the agents read it).
        annotations[service::LOCAL_ENDPOINTS_ANNOTATION] = json!(names.join(","));
    }
    if let Some(g) = group {
        annotations[contract::GROUP_ANNOTATION] = json!(g);
    }
    applied::stamp(json!({
        "apiVersion": buoy_crds::API_VERSION,
        "kind": "VirtualIP",
        "metadata": {
            "name": name(unit, given.address.is_ipv6()),
            "namespace": first.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "buoy-operator",
                service::SERVICE_NAME_LABEL: first.name,
            },
            "annotations": annotations,
            "ownerReferences": owners,
        },
        "spec": {
            "addresses": [given.address.to_string()],
            "addressPool": given.pool,
            "nodeSelector": node_selector(pool),
            "vrrp": { "advertisementInterval": go_duration(advertisement_interval) },
            "listeners": [],
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharing_keys_become_dns_labels() {
        assert_eq!(dns_label("DNS"), "dns");
        assert_eq!(dns_label("my key/1"), "my-key-1");
        assert_eq!(dns_label("--"), "key");
        assert_eq!(dns_label(&"a".repeat(80)).len(), 50);
    }
}
