//! The API reference (every field, its type, constraints, default and meaning), generated from the
//! CRD schemas so that it cannot fall behind them. The README embeds it; a test checks it is
//! current.

use kube::CustomResourceExt;
use serde_json::Value;

use crate::{AddressPool, BGPPeer, UpstreamPool, VirtualIP, validation::crd_schema};

/// Fields typed by Kubernetes' own API, documented there; the reference does not descend.
const KUBERNETES_TYPES: &[(&str, &str)] = &[
    (
        "spec.nodeSelector",
        "[LabelSelector](https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/label-selector/)",
    ),
    (
        "spec.tolerations",
        "list of [Toleration](https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/#scheduling)",
    ),
    (
        "spec.allowedTolerations",
        "list of [Toleration](https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/#scheduling)",
    ),
    (
        "spec.namespaceSelector",
        "[LabelSelector](https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/label-selector/)",
    ),
    (
        "status.conditions",
        "list of [Condition](https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/condition/)",
    ),
    ("status.nodes[].lastTransitionTime", "Time (RFC 3339)"),
    ("status.nodes[].since", "Time (RFC 3339)"),
];

/// The Markdown reference for every kind.
pub fn markdown() -> String {
    let mut out = String::new();
    section::<VirtualIP>(&mut out);
    section::<UpstreamPool>(&mut out);
    section::<AddressPool>(&mut out);
    section::<BGPPeer>(&mut out);
    out
}

fn section<K: CustomResourceExt>(out: &mut String) {
    let crd = K::crd();
    let names = &crd.spec.names;
    out.push_str(&format!(
        "### {} (`{}/{}`)\n\n",
        names.kind, crd.spec.group, crd.spec.versions[0].name
    ));
    out.push_str(&format!(
        "{}. Short name: `{}`. Category: `{}`.\n\n",
        if crd.spec.scope == "Cluster" {
            "Cluster-scoped"
        } else {
            "Namespaced"
        },
        names
            .short_names
            .as_deref()
            .unwrap_or_default()
            .join("`, `"),
        names.categories.as_deref().unwrap_or_default().join("`, `"),
    ));
    out.push_str("| Field | Type | Default | Description |\n|---|---|---|---|\n");
    let schema = crd_schema::<K>();
    for part in ["spec", "status"] {
        if let Some(s) = schema.pointer(&format!("/properties/{part}")) {
            let required = schema_required(&schema).contains(&part.to_string());
            rows(part, s, required, out);
        }
    }
    out.push('\n');
}

fn schema_required(schema: &Value) -> Vec<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn rows(path: &str, schema: &Value, required: bool, out: &mut String) {
    let known = KUBERNETES_TYPES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, t)| *t);
    let ty = known
        .map(String::from)
        .unwrap_or_else(|| type_label(schema));
    let default = match schema.get("default") {
        // Object defaults are the sum of their fields' defaults, listed on those rows.
        Some(Value::Object(_)) => "(per field)".to_string(),
        Some(d) => format!("`{}`", d.to_string().replace('|', "\\|")),
        None => String::new(),
    };
    let mut description = schema
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|");
    if required {
        description = format!("**Required.** {description}");
    }
    for rule in schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(m) = rule.get("message").and_then(Value::as_str) {
            description.push_str(&format!(" Rule: {}.", m.replace('|', "\\|")));
        }
    }
    out.push_str(&format!(
        "| `{path}` | {ty} | {default} | {} |\n",
        description.trim()
    ));
    if known.is_some() {
        return;
    }
    let required = schema_required(schema);
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            rows(
                &format!("{path}.{name}"),
                child,
                required.contains(name),
                out,
            );
        }
    }
    if let Some(items) = schema.get("items")
        && items.get("properties").is_some()
    {
        let required = schema_required(items);
        for (name, child) in items
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            rows(
                &format!("{path}[].{name}"),
                child,
                required.contains(name),
                out,
            );
        }
    }
}

fn type_label(schema: &Value) -> String {
    let base = schema.get("type").and_then(Value::as_str).unwrap_or("any");
    let mut label = match base {
        "array" => {
            let item = schema
                .get("items")
                .map(type_label)
                .unwrap_or_else(|| "any".into());
            let kind = match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("map") => format!(
                    "list-map keyed by `{}`",
                    schema
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|k| k
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join("`, `"))
                        .unwrap_or_default()
                ),
                Some("set") => "set".to_string(),
                _ => "list".to_string(),
            };
            format!("{kind} of {item}")
        }
        other => other.to_string(),
    };
    if schema.get("pattern").and_then(Value::as_str) == Some(crate::duration::DURATION_PATTERN) {
        label = "duration".into();
    }
    let mut constraints = Vec::new();
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        constraints.push(format!(
            "one of {}",
            e.iter()
                .map(|v| format!(
                    "`{}`",
                    v.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| v.to_string())
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let num = |v: &Value| match v.as_f64() {
        Some(x) if x.fract() == 0.0 => format!("{}", x as i64),
        _ => v.to_string(),
    };
    // An enum already says everything a range would.
    if schema.get("enum").is_none() {
        match (schema.get("minimum"), schema.get("maximum")) {
            (Some(a), Some(b)) => constraints.push(format!("{}..{}", num(a), num(b))),
            (Some(a), None) => constraints.push(format!("≥ {}", num(a))),
            (None, Some(b)) => constraints.push(format!("≤ {}", num(b))),
            _ => {}
        }
    }
    match (schema.get("minItems"), schema.get("maxItems")) {
        (Some(a), Some(b)) => constraints.push(format!("{a}..{b} items")),
        (None, Some(b)) => constraints.push(format!("at most {b} items")),
        (Some(a), None) => constraints.push(format!("at least {a} items")),
        _ => {}
    }
    if label == "string"
        && let Some(max) = schema.get("maxLength")
    {
        constraints.push(format!("max {max} chars"));
    }
    if constraints.is_empty() {
        label
    } else {
        format!("{label} ({})", constraints.join(", "))
    }
}
