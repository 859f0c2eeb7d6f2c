//! The contract between the operator and the node agents, defined once: the annotations the
//! operator writes on a VirtualIP for its agents, how both sides name an object, and how an
//! agent writes its own entries of a status (`status.nodes[]`).

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

/// The field manager under which `node`'s agent applies its own entries of `status.nodes[]`
/// (VirtualIPs, UpstreamPools, BGPPeers) by server-side apply: one manager per node, so that
/// the entries of different nodes merge (the lists are maps keyed by `node`) and an agent
/// removes its entry by applying a body without it.
pub fn agent_field_manager(node: &str) -> String {
    format!("buoy-agent/{node}")
}

/// Objects whose status has one entry per node (`status.nodes`), each written by that node's
/// agent under [`agent_field_manager`].
pub trait NodeEntries {
    /// Whether `node` has an entry.
    fn has_entry_of(&self, node: &str) -> bool;
}

impl NodeEntries for crate::VirtualIP {
    fn has_entry_of(&self, node: &str) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.nodes.iter().any(|n| n.node == node))
    }
}

impl NodeEntries for crate::UpstreamPool {
    fn has_entry_of(&self, node: &str) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.nodes.iter().any(|n| n.node == node))
    }
}

impl NodeEntries for crate::BGPPeer {
    fn has_entry_of(&self, node: &str) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.nodes.iter().any(|n| n.node == node))
    }
}

/// The server-side apply body (for the status subresource, under [`agent_field_manager`]) by
/// which a node's agent writes its entry of BGPPeer `peer`'s `status.nodes`, or, with `None`,
/// removes the entry it wrote.
pub fn bgp_peer_entry_apply(
    peer: &str,
    entry: Option<&crate::BGPPeerNodeStatus>,
) -> serde_json::Value {
    let mut body = serde_json::json!({
        "apiVersion": crate::API_VERSION,
        "kind": "BGPPeer",
        "metadata": {"name": peer},
    });
    if let Some(e) = entry {
        body["status"] = serde_json::json!({ "nodes": [e] });
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BGPPeerNodeStatus, BfdSessionState, BgpSessionState};

    #[test]
    fn an_agent_applies_only_its_own_bgp_peer_entry() {
        assert_eq!(agent_field_manager("n1"), "buoy-agent/n1");
        let entry = BGPPeerNodeStatus {
            node: "n1".into(),
            state: BgpSessionState::Active,
            since: None,
            reason: Some("FRR not running".into()),
            bfd: Some(BfdSessionState::Disabled),
            routes: vec![],
        };
        assert_eq!(
            bgp_peer_entry_apply("tor1", Some(&entry)),
            serde_json::json!({
                "apiVersion": "buoy.io/v1alpha1", "kind": "BGPPeer",
                "metadata": {"name": "tor1"},
                "status": {"nodes": [{"node": "n1", "state": "Active",
                    "reason": "FRR not running", "bfd": "Disabled"}]},
            })
        );
        // Removal: the same manager applies a body without the entry.
        assert_eq!(
            bgp_peer_entry_apply("tor1", None),
            serde_json::json!({"apiVersion": "buoy.io/v1alpha1", "kind": "BGPPeer",
                "metadata": {"name": "tor1"}})
        );
    }
}
