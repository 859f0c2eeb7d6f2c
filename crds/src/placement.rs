//! Placement: where a VirtualIP's agents run (its `nodeSelector` and `tolerations`). The operator
//! runs one agent DaemonSet per distinct placement, named and labelled by [`key`], and each agent
//! (`buoy-agent run --placement KEY`) serves only the VirtualIPs of its placement, so that two
//! agents on one node never serve the same VirtualIP.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::VirtualIPSpec;

/// Label on agent DaemonSets and pods: the placement key.
pub const LABEL: &str = "buoy.io/placement";

/// A short, stable key for the placement of `spec`: 10 hex digits of the FNV-1a hash of the
/// canonical JSON of `{nodeSelector, tolerations}` (object keys sorted, as serde_json does),
/// fit for a resource name suffix and a label value. Stable across releases: DaemonSets are
/// named by it.
pub fn key(spec: &VirtualIPSpec) -> String {
    key_in(spec, None)
}

/// The placement key of `spec` whose addresses come from an AddressPool with `pool_selector`:
/// the pool's `nodeSelector` narrows where its agents run (both selectors must match), so it is
/// part of the placement. Without one, [`key`].
pub fn key_in(spec: &VirtualIPSpec, pool_selector: Option<&LabelSelector>) -> String {
    let mut canonical = serde_json::json!({
        "nodeSelector": spec.node_selector,
        "tolerations": spec.tolerations,
    });
    if let Some(s) = pool_selector {
        canonical["poolNodeSelector"] = serde_json::json!(s);
    }
    let canonical = canonical.to_string();
    // FNV-1a, 64 bits: fixed by its definition (std's hasher may change between releases).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canonical.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:010x}", h >> 24)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> VirtualIPSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn same_placement_same_key_and_the_key_is_stable() {
        let a = spec("{addresses: [10.0.0.1], nodeSelector: {matchLabels: {role: lb, zone: a}}}");
        let b = spec("{addresses: [10.0.0.2], nodeSelector: {matchLabels: {zone: a, role: lb}}}");
        let c = spec("{addresses: [10.0.0.3]}");
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&c));
        assert_eq!(key(&c).len(), 10);
        // Pinned: DaemonSet names depend on it.
        assert_eq!(key(&c), key(&spec("{addresses: [fd00::1]}")));
        assert_eq!(key(&c), "ad1269f96e");
        // A pool's selector is part of the placement.
        let lb: LabelSelector =
            serde_yaml::from_str("{matchLabels: {buoy.io/lb: 'true'}}").unwrap();
        assert_ne!(key_in(&c, Some(&lb)), key(&c));
        assert_eq!(key_in(&c, None), key(&c));
    }
}
