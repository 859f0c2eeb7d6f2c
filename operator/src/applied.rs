//! The applied-hash annotation: the operator stamps what it applies (agent DaemonSets,
//! Services' VirtualIPs) with the hash of the body, so that a pass writes only what differs
//! from what is observed, whatever defaults the API server filled in.

use serde_json::{Value, json};

/// The annotation holding the hash of the rest of the applied body.
pub(crate) const HASH_ANNOTATION: &str = "buoy.io/applied-hash";

/// FNV-1a of `text`, in hex: stable across processes and Rust versions.
fn fnv(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// `body` with [`HASH_ANNOTATION`] set to the hash of the rest.
pub(crate) fn stamp(mut body: Value) -> Value {
    let hash = fnv(&body.to_string());
    match body.pointer_mut("/metadata/annotations") {
        Some(Value::Object(a)) => {
            a.insert(HASH_ANNOTATION.into(), json!(hash));
        }
        _ => body["metadata"]["annotations"] = json!({HASH_ANNOTATION: hash}),
    }
    body
}

/// The hash an observed object carries.
pub(crate) fn of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<&str> {
    meta.annotations
        .as_ref()?
        .get(HASH_ANNOTATION)
        .map(String::as_str)
}

/// The hash [`stamp`] put on `desired`.
pub(crate) fn desired(desired: &Value) -> Option<&str> {
    desired
        .pointer("/metadata/annotations")?
        .get(HASH_ANNOTATION)?
        .as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_changes_with_the_body_and_keeps_other_annotations() {
        let a = stamp(json!({"metadata": {"annotations": {"x": "1"}}, "spec": {"a": 1}}));
        let b = stamp(json!({"metadata": {"annotations": {"x": "1"}}, "spec": {"a": 2}}));
        assert_eq!(a["metadata"]["annotations"]["x"], json!("1"));
        assert_ne!(desired(&a), desired(&b));
        let bare = stamp(json!({"metadata": {}}));
        assert_eq!(desired(&bare).map(str::len), Some(16));
    }
}
