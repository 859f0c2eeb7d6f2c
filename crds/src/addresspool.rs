//! `AddressPool` (cluster-scoped): which addresses VirtualIPs may claim, from which namespaces,
//! on which nodes and interfaces, with which tolerations. Creating a VirtualIP is otherwise
//! equivalent to root on the LAN (any address, the gateway's, a node's own); with the operator's
//! address policy on, a VirtualIP is served only when an AddressPool that admits its namespace
//! allows everything it asks for. MetalLB's `IPAddressPool` plays the same part.

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{InterfaceName, names::DNS_LABEL_PATTERN};

/// Desired state of an address pool.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "buoy.io",
    version = "v1alpha1",
    kind = "AddressPool",
    plural = "addresspools",
    singular = "addresspool",
    status = "AddressPoolStatus",
    shortname = "apool",
    category = "buoy",
    printcolumn = r#"{"name":"Addresses","type":"string","jsonPath":".spec.addresses","description":"The pool's CIDRs and ranges"}"#,
    printcolumn = r#"{"name":"Allocated","type":"integer","jsonPath":".status.allocated","description":"Addresses used by VirtualIPs"}"#,
    printcolumn = r#"{"name":"Available","type":"integer","jsonPath":".status.available","description":"Addresses left"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    derive = "PartialEq",
    doc = "Addresses that VirtualIPs may claim, and who may claim them where."
)]
#[serde(rename_all = "camelCase")]
pub struct AddressPoolSpec {
    /// The pool's addresses: CIDRs (`192.168.60.0/24`, `fd00::/120`) and inclusive ranges
    /// (`192.168.60.10-192.168.60.20`), IPv4 and IPv6 (MetalLB: `IPAddressPool.spec.addresses`).
    /// A VirtualIP's address with a prefix length (`192.168.60.88/24`) is allowed when its
    /// address lies in the pool.
    #[schemars(length(min = 1, max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub addresses: Vec<AddressRange>,

    /// Namespaces whose VirtualIPs may use the pool, by name. With `namespaceSelector`, a
    /// namespace matching either may. Neither set: no namespace may (the pool is closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub namespaces: Option<Vec<NamespaceName>>,

    /// Namespaces whose VirtualIPs may use the pool, by label (`{}` selects every namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// VirtualIPs from this pool run only on nodes matching this selector, in addition to the
    /// VirtualIP's own `nodeSelector` (both must match). Default: any node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,

    /// Interfaces a VirtualIP from this pool may put its addresses on (`spec.interface`, or the
    /// interface the agent chooses when it is omitted). Empty or absent: any interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub interfaces: Option<Vec<InterfaceName>>,

    /// The tolerations a VirtualIP from this pool may carry: each of its tolerations must be
    /// covered by one of these (same key, operator, value and effect; an `Exists` toleration
    /// here covers any value, an empty key with `Exists` covers every key, an empty effect every
    /// effect). Absent: none (a VirtualIP with tolerations, for example for control-plane
    /// nodes, is not allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub allowed_tolerations: Option<Vec<Toleration>>,

    /// Whether the pool hands out addresses to objects that ask for none of their own (a
    /// VirtualIP without `addresses` that names no pool; LoadBalancer Services). A VirtualIP
    /// that names the pool in `spec.addressPool` is always served from it (MetalLB:
    /// `autoAssign`).
    #[serde(default = "default_true")]
    pub auto_assign: bool,

    /// Never hand out IPv4 addresses ending in `.0` or `.255`, which some old equipment drops
    /// (MetalLB: `avoidBuggyIPs`).
    #[serde(default, rename = "avoidBuggyIPs")]
    pub avoid_buggy_ips: bool,

    /// How the addresses of VirtualIPs from this pool reach the network. `L2` (the default,
    /// MetalLB's `L2Advertisement`): the node that VRRP elects holds them and answers ARP and
    /// neighbour discovery for them on the LAN. `BGP` (MetalLB's `BGPAdvertisement`): they are
    /// announced as /32 (IPv4) or /128 (IPv6) routes to the routers of the BGPPeers that select
    /// the node; with a VirtualIP's `bgp.mode` `ECMP` (the default) every eligible node
    /// announces them and no VRRP router ID is used, with `ActiveStandby` only the VRRP master
    /// does.
    #[serde(default, skip_serializing_if = "Announcement::is_l2")]
    #[schemars(extend("default" = "L2"))]
    pub announcement: Announcement,
}

fn default_true() -> bool {
    true
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
// Values of the API, described by the field that uses them: doc comments on the variants
// would turn the schema's `enum` into a `oneOf`.
#[allow(missing_docs)]
pub enum Announcement {
    #[default]
    L2,
    BGP,
}

impl Announcement {
    /// Whether it is `L2`, the default (left out when serialized, so that objects written
    /// before BGP existed read back the same).
    pub fn is_l2(&self) -> bool {
        *self == Announcement::L2
    }
}

/// A CIDR or an inclusive range `first-last` of one family.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct AddressRange(pub String);

/// `int` of the four octets of the IPv4 address `x` (a CEL expression over a string), for the
/// range order rule: CEL's IP library has no ordering.
fn ipv4_as_int(x: &str) -> String {
    format!(
        "(int({x}.split('.')[0]) * 16777216 + int({x}.split('.')[1]) * 65536 + int({x}.split('.')[2]) * 256 + int({x}.split('.')[3]))"
    )
}

impl JsonSchema for AddressRange {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AddressRange".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let range =
            "self.split('-').size() == 2 && isIP(self.split('-')[0]) && isIP(self.split('-')[1])";
        let first = "self.split('-')[0]";
        let last = "self.split('-')[1]";
        let ordered = format!(
            "isCIDR(self) || !({range}) || ip({first}).family() != 4 || ip({last}).family() != 4 || {} <= {}",
            ipv4_as_int(first),
            ipv4_as_int(last)
        );
        schemars::json_schema!({
            "type": "string",
            "maxLength": 91,
            "x-kubernetes-validations": [
                {
                    "rule": format!("isCIDR(self) || ({range})"),
                    "message": "must be a CIDR (192.168.60.0/24, fd00::/120) or a range first-last (192.168.60.10-192.168.60.20)"
                },
                {
                    "rule": "!isCIDR(self) || cidr(self) == cidr(self).masked()",
                    "message": "a CIDR must not have bits set after its prefix (192.168.60.0/24, not 192.168.60.5/24)"
                },
                {
                    "rule": format!("isCIDR(self) || !({range}) || ip({first}).family() == ip({last}).family()"),
                    "message": "both ends of a range must be of one address family"
                },
                {
                    "rule": ordered,
                    "message": "a range's first address must not come after its last"
                }
            ]
        })
    }
}

/// A namespace name (RFC 1123 label).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(transparent)]
pub struct NamespaceName(pub String);

impl JsonSchema for NamespaceName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "NamespaceName".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "maxLength": 63, "pattern": DNS_LABEL_PATTERN })
    }
}

/// Observed state of an address pool (written by the operator).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AddressPoolStatus {
    /// The `metadata.generation` that this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Addresses of the pool that VirtualIPs use (named in their spec, or allocated).
    #[serde(default)]
    pub allocated: i64,
    /// Addresses of the pool still free (at most 2^63 - 1 for a large IPv6 pool; without
    /// `.0`/`.255` when `avoidBuggyIPs`).
    #[serde(default)]
    pub available: i64,
    /// `Ready`: the pool's ranges are valid and some address is free. `Exhausted`: every
    /// address is in use (VirtualIPs that ask it for one wait).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
