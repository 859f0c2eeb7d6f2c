//! LoadBalancer Services handed over to Buoy (from MetalLB or kube-vip): what an import keeps of
//! a Service as `kubectl get -o yaml` prints it (not its status, nor the fields the API server
//! sets), with Buoy's load balancer class and annotations in place of the other product's.

use std::{collections::BTreeMap, net::IpAddr};

use buoy_crds::service::LOAD_BALANCER_CLASS;
use serde_json::Value;

use crate::{
    diagnostics::{ImportError, Warnings},
    manifests::Manifest,
    objects::Doc,
};

/// Whether `m` is a core `v1` Service.
pub(crate) fn is_service(m: &Manifest) -> bool {
    m.api_version() == "v1" && m.kind() == "Service"
}

/// `spec.type` (`ClusterIP` when absent, as the API server defaults it).
pub(crate) fn service_type(m: &Manifest) -> &str {
    m.str(&["spec", "type"]).unwrap_or("ClusterIP")
}

/// `metadata.annotations`.
pub(crate) fn annotations(m: &Manifest) -> Result<BTreeMap<String, String>, ImportError> {
    Ok(m.typed_at(&["metadata", "annotations"])?
        .unwrap_or_default())
}

/// The addresses of `status.loadBalancer.ingress` (what the other product gave the Service).
pub(crate) fn status_ips(m: &Manifest) -> Vec<IpAddr> {
    let Some(Value::Array(ingress)) = m.get(&["status", "loadBalancer", "ingress"]) else {
        return Vec::new();
    };
    ingress
        .iter()
        .filter_map(|i| i.get("ip")?.as_str()?.parse().ok())
        .collect()
}

/// Whether a Service is of no concern to the product whose annotations `ours` tells: not of
/// type LoadBalancer, and without any of its annotations.
pub(crate) fn is_plain(m: &Manifest, ours: impl Fn(&str) -> bool) -> bool {
    service_type(m) != "LoadBalancer" && annotations(m).is_ok_and(|a| !a.keys().any(|k| ours(k)))
}

/// Warns once about the `plain` Services (`kubectl get services -A` lists many): at the first,
/// with their number.
pub(crate) fn warn_plain(plain: &[&Manifest], warnings: &mut Warnings) {
    let Some(first) = plain.first() else { return };
    let why = match plain.len() {
        1 => "not a LoadBalancer Service: left out".to_string(),
        n => format!(
            "not a LoadBalancer Service, nor are {} more Services of the input: left out",
            n - 1
        ),
    };
    first.warn(warnings, &[], why);
}

/// Metadata the API server sets, which a manifest to apply must not carry.
const SERVER_METADATA: [&str; 7] = [
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
];

/// kubectl's copy of what was last applied: the old annotations, stale once they change.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The Service as Buoy's: without status, server-set metadata and the annotations `drop`
/// returns true for, with `annotations` set and `spec.loadBalancerClass: buoy.io/vrrp`; `edit`
/// may change the spec further.
pub(crate) fn handed_over(
    m: &Manifest,
    drop: impl Fn(&str) -> bool,
    annotations: &[(&str, String)],
    edit: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> Value {
    let mut v = m.value.clone();
    if let Value::Object(root) = &mut v {
        root.remove("status");
        let meta = root
            .entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(meta) = meta {
            for k in SERVER_METADATA {
                meta.remove(k);
            }
            let notes = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(notes) = notes {
                notes.retain(|k, _| k != LAST_APPLIED && !drop(k));
                for (k, value) in annotations {
                    notes.insert(k.to_string(), Value::String(value.clone()));
                }
            }
            if meta
                .get("annotations")
                .is_some_and(|a| a.as_object().is_some_and(|a| a.is_empty()))
            {
                meta.remove("annotations");
            }
        }
        let spec = root
            .entry("spec")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(spec) = spec {
            spec.insert(
                "loadBalancerClass".into(),
                Value::String(LOAD_BALANCER_CLASS.into()),
            );
            edit(spec);
        }
    }
    v
}

/// The comment above the first Service handed over: `spec.loadBalancerClass` cannot be set on
/// a LoadBalancer Service that exists.
pub(crate) fn class_note(product: &str) -> Vec<String> {
    vec![
        format!("Services handed over from {product} to Buoy. The API server refuses to change"),
        "spec.loadBalancerClass of an existing LoadBalancer Service: recreate them with".into(),
        "`kubectl replace --force -f`, or drop that line and run buoy-operator with".into(),
        "--default-load-balancer-class (chart value loadBalancer.defaultClass).".into(),
    ]
}

/// The comment lines above a Service handed over: where it came from, then `notes`.
pub(crate) fn doc(m: &Manifest, value: Value, notes: Vec<String>) -> Doc<Value> {
    let mut comments = vec![format!("From {} ({}).", m.label(), m.at)];
    comments.extend(notes);
    Doc {
        object: value,
        comments,
    }
}
