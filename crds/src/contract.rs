//! The contract between the operator and the node agents, defined once: the annotations the
//! operator writes on a VirtualIP for its agents, and how both sides name an object.

use std::collections::BTreeMap;

/// Annotation by which the operator assigns priorities when `spec.priorities` is omitted: a
/// JSON object `{"node": priority, …}`.
pub const PRIORITIES_ANNOTATION: &str = "buoy.io/priorities";

/// Annotation by which the operator marks a VirtualIP that clashes with an earlier one (same
/// address, router ID on an interface, or port): agents do not serve it.
pub const CONFLICT_ANNOTATION: &str = "buoy.io/conflict";

/// The namespace of an object without one (a standalone file that names none).
pub const DEFAULT_NAMESPACE: &str = "default";

/// `namespace/name`, the key both sides use for an object (in logs, metrics, `/status` and the
/// agent's plan); a missing namespace is [`DEFAULT_NAMESPACE`].
pub fn key(namespace: Option<&str>, name: Option<&str>) -> String {
    format!(
        "{}/{}",
        namespace.unwrap_or(DEFAULT_NAMESPACE),
        name.unwrap_or_default()
    )
}

/// The [`key`] of an object from its metadata.
pub fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    key(meta.namespace.as_deref(), meta.name.as_deref())
}

/// The priorities of [`PRIORITIES_ANNOTATION`]; `None` when absent or not a map of node names
/// to numbers.
pub fn assigned_priorities(
    annotations: Option<&BTreeMap<String, String>>,
) -> Option<BTreeMap<String, u8>> {
    annotations
        .and_then(|a| a.get(PRIORITIES_ANNOTATION))
        .and_then(|v| serde_json::from_str(v).ok())
}
