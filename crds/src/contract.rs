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

/// Annotation by which the operator puts a VirtualIP in a VRRP group: the VirtualIPs of one
/// group (Services' addresses of one placement) run as one VRRP instance on each node, under
/// one router ID, as keepalived puts many addresses under one `virtual_router_id`. The value
/// names the group; the group's members carry the same router ID and priorities.
pub const GROUP_ANNOTATION: &str = "buoy.io/vrrp-group";

/// The most addresses one VRRP group carries (one advert lists them all).
pub const GROUP_SIZE: usize = 16;

/// What starts a [`group_key`] (never a `namespace/name` key).
pub const GROUP_KEY_PREFIX: &str = "group:";

/// The key of VRRP group `group` where a group stands for its members as one: the agent's
/// instance of the group, and the operator's router ID claim and priority request.
pub fn group_key(group: &str) -> String {
    format!("{GROUP_KEY_PREFIX}{group}")
}

/// The group of [`GROUP_ANNOTATION`], if the VirtualIP is in one.
pub fn group_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<&str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(GROUP_ANNOTATION))
        .map(|g| g.trim())
        .filter(|g| !g.is_empty())
}
