//! The bad examples of `crds/tests/bad_examples.yaml`, shared by buoy-crds' validation tests and
//! the Kubernetes API test server's (included there with `#[path]`), so that standalone validation
//! and the server are held to the same cases.

#![allow(dead_code)] // each includer uses its part

use serde_json::Value;

/// One bad object and the errors it must get: `(path, Some(message))`, or `(path, None)` when
/// only the path is asserted.
pub struct Case {
    pub name: String,
    pub kind: String,
    pub object: Value,
    pub expected: Vec<(String, Option<String>)>,
}

/// Applies `patch` (a JSON merge patch, RFC 7386) to `base`.
pub fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

fn data() -> Value {
    serde_yaml::from_str(include_str!("../bad_examples.yaml")).expect("bad_examples.yaml")
}

/// The valid object of `kind` that each case starts from.
pub fn valid(kind: &str) -> Value {
    data()["valid"][kind].clone()
}

pub fn cases() -> Vec<Case> {
    let data = data();
    let s = |v: &Value| v.as_str().expect("a string").to_string();
    let expand = |m: String| {
        m.replace("{HOST_PATTERN}", buoy_crds::names::HOST_PATTERN)
            .replace(
                "{STATUS_RANGE_PATTERN}",
                buoy_crds::names::STATUS_RANGE_PATTERN,
            )
            .replace("{ROUTE_HOST_PATTERN}", buoy_crds::names::ROUTE_HOST_PATTERN)
            .replace("{ROUTE_PATH_PATTERN}", buoy_crds::names::ROUTE_PATH_PATTERN)
    };
    data["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            let kind = s(&c["kind"]);
            let mut object = data["valid"][&kind].clone();
            merge(&mut object, &c["patch"]);
            let expected = match c.get("paths") {
                Some(paths) => paths
                    .as_array()
                    .expect("paths")
                    .iter()
                    .map(|p| (s(p), None))
                    .collect(),
                None => vec![(s(&c["path"]), Some(expand(s(&c["message"]))))],
            };
            Case {
                name: s(&c["name"]),
                kind,
                object,
                expected,
            }
        })
        .collect()
}

/// Compares actual errors with a case's; None when they agree, else a description.
pub fn mismatch(case: &Case, actual: &[(String, String)]) -> Option<String> {
    let agree = actual.len() == case.expected.len()
        && actual
            .iter()
            .zip(&case.expected)
            .all(|((path, message), (want_path, want_message))| {
                path == want_path && want_message.as_ref().is_none_or(|m| m == message)
            });
    (!agree).then(|| {
        format!(
            "{}: expected {:?}, got {:?}",
            case.name, case.expected, actual
        )
    })
}
