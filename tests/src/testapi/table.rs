//! `meta.k8s.io/v1 Table` responses (what `kubectl get` asks for): a CRD's
//! additionalPrinterColumns, evaluated with a JSONPath subset (`.a.b[0].c`, `[*]`,
//! `[?(@.k=="v")]`), or Name and Age for built-in kinds.

use serde_json::{Value, json};

use super::resources::ResourceType;

/// Evaluates a simple JSONPath; several results for wildcards and filters.
pub fn jsonpath<'a>(root: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![root];
    let mut rest = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let (field, tail) = r.split_at(end);
            current = current.into_iter().filter_map(|v| v.get(field)).collect();
            rest = tail;
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else {
                return Vec::new();
            };
            let (inner, tail) = (&r[..end], &r[end + 1..]);
            current = if inner == "*" {
                current
                    .into_iter()
                    .filter_map(Value::as_array)
                    .flatten()
                    .collect()
            } else if let Ok(i) = inner.parse::<usize>() {
                current.into_iter().filter_map(|v| v.get(i)).collect()
            } else if let Some(cond) = inner.strip_prefix("?(@.").and_then(|c| c.strip_suffix(')'))
            {
                let Some((field, want)) = cond.split_once("==") else {
                    return Vec::new();
                };
                let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
                current
                    .into_iter()
                    .filter_map(Value::as_array)
                    .flatten()
                    .filter(|item| {
                        item.get(field.trim()).is_some_and(|v| {
                            v.as_str().map_or_else(|| v.to_string(), str::to_string) == want
                        })
                    })
                    .collect()
            } else {
                return Vec::new();
            };
            rest = tail;
        } else {
            return Vec::new();
        }
    }
    current
}

/// How long ago, as kubectl shows it (`5s`, `3m12s`, `4h`, `2d`).
fn human_age(ts: &str) -> String {
    let Ok(then) = ts.parse::<k8s_openapi::jiff::Timestamp>() else {
        return "<invalid>".into();
    };
    let secs = (k8s_openapi::jiff::Timestamp::now().as_second() - then.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn cell(col: &Value, obj: &Value) -> Value {
    let path = col.get("jsonPath").and_then(Value::as_str).unwrap_or("");
    let found = jsonpath(obj, path);
    let ty = col.get("type").and_then(Value::as_str).unwrap_or("string");
    match found.as_slice() {
        [] => Value::Null,
        [one] => match (ty, one) {
            ("date", Value::String(s)) => json!(human_age(s)),
            ("integer" | "number" | "boolean", v) => (*v).clone(),
            (_, Value::String(s)) => json!(s),
            (_, v) => json!(v.to_string()),
        },
        many => json!(
            many.iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// The table of `objects` of kind `rt` served in `version`.
pub fn table(
    rt: &ResourceType,
    version: &str,
    objects: &[Value],
    resource_version: &str,
    include_object: &str,
) -> Value {
    let default_cols = vec![
        json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp", "description": "CreationTimestamp is a timestamp representing the server time when this object was created."}),
    ];
    let cols = rt.printer_columns.get(version).unwrap_or(&default_cols);
    let mut defs = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    defs.extend(cols.iter().map(|c| {
        json!({
            "name": c.get("name").cloned().unwrap_or(json!("")),
            "type": c.get("type").cloned().unwrap_or(json!("string")),
            "format": c.get("format").cloned().unwrap_or(json!("")),
            "description": c.get("description").cloned().unwrap_or(json!("")),
            "priority": c.get("priority").cloned().unwrap_or(json!(0)),
        })
    }));
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
            cells.extend(cols.iter().map(|c| cell(c, o)));
            let object = match include_object {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or(json!({}))}),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_subset() {
        let o = json!({"spec": {"addresses": ["10.0.0.1/24"]}, "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "status": "False"}]}});
        assert_eq!(
            jsonpath(&o, ".spec.addresses[0]"),
            vec![&json!("10.0.0.1/24")]
        );
        assert_eq!(
            jsonpath(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![&json!("True")]
        );
        assert_eq!(jsonpath(&o, ".status.conditions[*].type").len(), 2);
        assert!(jsonpath(&o, ".status.master").is_empty());
        let col = json!({"jsonPath": ".spec.addresses", "type": "string"});
        assert_eq!(cell(&col, &o), json!("[\"10.0.0.1/24\"]"));
    }
}
