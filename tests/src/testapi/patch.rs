//! The non-apply PATCH types: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic
//! merge patch for the built-in kinds (lists with a merge key merged by it; `$patch` directives).

use serde_json::{Map, Value};

use super::error::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Result<PatchType, ApiError> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchType::Apply),
            other => Err(ApiError::unsupported_media(other)),
        }
    }
}

/// Applies a merge, JSON or strategic patch to `doc`.
pub fn patch(doc: &mut Value, kind: PatchType, body: &Value) -> Result<(), ApiError> {
    match kind {
        PatchType::Merge => {
            json_patch::merge(doc, body);
            Ok(())
        }
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(body.clone())
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            // As in the API server's JSON patch library, testing a missing path against null
            // passes (kube-rs's finalizer helper relies on it).
            let ops: Vec<json_patch::PatchOperation> = ops
                .0
                .into_iter()
                .filter(|op| match op {
                    json_patch::PatchOperation::Test(t) => {
                        !(t.value.is_null() && doc.pointer(t.path.as_str()).is_none())
                    }
                    _ => true,
                })
                .collect();
            json_patch::patch(doc, &ops).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })
        }
        PatchType::Strategic => {
            strategic(doc, body);
            Ok(())
        }
        PatchType::Apply => Err(ApiError::bad_request("apply is not a merge patch")),
    }
}

/// The merge key of a built-in list field, where Kubernetes declares `patchStrategy: merge`.
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => "name",
        "ports" => "containerPort",
        "volumeMounts" => "mountPath",
        "conditions" | "taints" => "type",
        "ownerReferences" => "uid",
        "addresses" => "type",
        _ => return None,
    })
}

/// Primitive lists Kubernetes merges (rather than replaces) in a strategic patch.
fn merges_primitives(field: &str) -> bool {
    field == "finalizers"
}

fn strategic(doc: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *doc = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut clean = p.clone();
        clean.remove("$patch");
        *doc = Value::Object(clean);
        return;
    }
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let Some(d) = doc.as_object_mut() else {
        return;
    };
    for (k, v) in p {
        // Ordering and retain-keys hints change nothing in what is stored.
        if k.starts_with("$setElementOrder/") || k == "$retainKeys" || k == "$patch" {
            continue;
        }
        if let Some(list_field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(cur)), Value::Array(del)) = (d.get_mut(list_field), v) {
                cur.retain(|x| !del.contains(x));
            }
            continue;
        }
        if v.is_null() {
            d.remove(k);
            continue;
        }
        match (d.get_mut(k), v) {
            (Some(Value::Array(cur)), Value::Array(items)) => {
                if let Some(key) = merge_key(k) {
                    merge_list(cur, items, key);
                } else if merges_primitives(k) {
                    for i in items {
                        if !cur.contains(i) {
                            cur.push(i.clone());
                        }
                    }
                } else {
                    *cur = items.clone();
                }
            }
            (Some(cur @ Value::Object(_)), Value::Object(_)) => strategic(cur, v),
            _ => {
                let mut fresh = v.clone();
                strip_directives(&mut fresh);
                d.insert(k.clone(), fresh);
            }
        }
    }
}

fn merge_list(cur: &mut Vec<Value>, items: &[Value], key: &str) {
    for item in items {
        let id = item.get(key);
        let pos = cur.iter().position(|c| id.is_some() && c.get(key) == id);
        let directive = item.get("$patch").and_then(Value::as_str);
        match (pos, directive) {
            (Some(i), Some("delete")) => {
                cur.remove(i);
            }
            (None, Some("delete")) => {}
            (Some(i), _) => strategic(&mut cur[i], item),
            (None, _) => {
                let mut fresh = item.clone();
                strip_directives(&mut fresh);
                cur.push(fresh);
            }
        }
    }
}

fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            m.values_mut().for_each(strip_directives);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_containers_by_name() {
        let mut pod = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}, "metadata": {"finalizers": ["f1"]}});
        let p = json!({"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "a", "image": "z"}, {"name": "b", "$patch": "delete"}]},
                       "metadata": {"finalizers": ["f2"]}});
        patch(&mut pod, PatchType::Strategic, &p).unwrap();
        assert_eq!(
            pod,
            json!({"spec": {"containers": [{"name": "a", "image": "z"}]}, "metadata": {"finalizers": ["f1", "f2"]}})
        );
    }

    #[test]
    fn bad_json_patch_is_an_error_not_a_panic() {
        let mut doc = json!({});
        assert_eq!(
            patch(&mut doc, PatchType::Json, &json!({"op": 1}))
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(
            patch(
                &mut doc,
                PatchType::Json,
                &json!([{"op": "remove", "path": "/x"}])
            )
            .unwrap_err()
            .code,
            422
        );
    }
}
