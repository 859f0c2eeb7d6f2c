//! `BGPPeer` (cluster-scoped): a router that Buoy's nodes open BGP sessions to, so that the
//! addresses of VirtualIPs from AddressPools with `announcement: BGP` reach a routed network
//! (MetalLB: `BGPPeer`, with its `BFDProfile` and communities folded in). FRR speaks BGP beside
//! each agent; each agent writes its own entry of `status.nodes` ([`BGPPeerNodeStatus`], by
//! server-side apply under [`crate::contract::agent_field_manager`]) and the operator sums the
//! entries up in `status.established` and the `Established` condition.

// kube's KubeSchema derive (the CEL rules) copies each validated struct into a private scope;
// `unreachable_pub` reports that copy, so the lint is off here. These types are the public API.
#![allow(unreachable_pub)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    Announcement, Duration, IpAddressString, VirtualIPSpec,
    names::{DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN},
};

/// Desired state of a BGP peer.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "buoy.io",
    version = "v1alpha1",
    kind = "BGPPeer",
    plural = "bgppeers",
    singular = "bgppeer",
    status = "BGPPeerStatus",
    shortname = "bgpp",
    category = "buoy",
    printcolumn = r#"{"name":"Peer","type":"string","jsonPath":".spec.peerAddress","description":"The router's address"}"#,
    printcolumn = r#"{"name":"ASN","type":"integer","jsonPath":".spec.peerASN","description":"The router's AS number"}"#,
    printcolumn = r#"{"name":"Established","type":"integer","jsonPath":".status.established","description":"Nodes whose session with the router is up"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    derive = "PartialEq",
    doc = "A BGP router that Buoy's nodes announce the addresses of BGP AddressPools to."
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.holdTime) == duration('0s') || duration(self.holdTime) >= duration('3s')").message("holdTime must be 0s (no keepalives) or at least 3s").field_path(".holdTime"))]
#[x_kube(validation = Rule::new("duration(self.holdTime) == duration('0s') || duration(self.keepaliveTime) < duration(self.holdTime)").message("keepaliveTime must be less than holdTime (unless holdTime is 0s)").field_path(".keepaliveTime"))]
#[x_kube(validation = Rule::new("!has(self.localPref) || self.myASN == self.peerASN").message("localPref applies only to iBGP peers (myASN equal to peerASN)").field_path(".localPref"))]
pub struct BGPPeerSpec {
    /// The router's address, IPv4 or IPv6, without a prefix length (MetalLB: `peerAddress`;
    /// FRR: `neighbor <address>`).
    pub peer_address: IpAddressString,

    /// The router's AS number, 1..4294967295 (4-byte ASNs; MetalLB: `peerASN`; FRR: `neighbor
    /// … remote-as`).
    #[serde(rename = "peerASN")]
    #[schemars(range(min = 1, max = 4294967295u32))]
    pub peer_asn: u32,

    /// The nodes' own AS number, 1..4294967295 (MetalLB: `myASN`; FRR: `router bgp <asn>`).
    /// Equal to `peerASN`: an iBGP session; otherwise eBGP.
    #[serde(rename = "myASN")]
    #[schemars(range(min = 1, max = 4294967295u32))]
    pub my_asn: u32,

    /// The router's TCP port (MetalLB: `peerPort`; FRR: `neighbor … port`).
    #[serde(default = "default_peer_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub peer_port: u16,

    /// Nodes that peer with this router. Absent: every node that runs a Buoy agent (MetalLB:
    /// `nodeSelectors`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,

    /// BGP hold time: the session goes down after this long without a message from the router.
    /// `0s` (no keepalives, the session never times out) or at least 3s (RFC 4271; MetalLB:
    /// `holdTime`; FRR: `neighbor … timers`).
    #[serde(default = "default_hold_time")]
    pub hold_time: Duration,

    /// Interval between keepalive messages; less than `holdTime` unless `holdTime` is `0s`
    /// (MetalLB: `keepaliveTime`; FRR: `neighbor … timers`).
    #[serde(default = "default_keepalive_time")]
    pub keepalive_time: Duration,

    /// The Secret key holding the session's TCP MD5 password (RFC 2385; MetalLB:
    /// `passwordSecret`; FRR: `neighbor … password`). Absent: no password. In standalone mode
    /// the Secret is a document in the configuration files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<PasswordSecretRef>,

    /// Bidirectional Forwarding Detection on the session (RFC 5880): the router notices a dead
    /// node within `transmitInterval` × `detectMultiplier` instead of the hold time (MetalLB:
    /// `BFDProfile`; FRR: `bfd` profile). Absent: no BFD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<BfdSpec>,

    /// BGP communities attached to every announced address (MetalLB: `BGPAdvertisement`'s
    /// `communities`): standard `A:B` (each 0..65535), large `A:B:C` (each 0..4294967295), or a
    /// well-known name (`no-export`, `no-advertise`, `no-peer`, `blackhole`, `local-AS`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub communities: Vec<Community>,

    /// LOCAL_PREF of the announced addresses, iBGP only (MetalLB: `BGPAdvertisement`'s
    /// `localPref`): the higher wins among the router's paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
}

fn default_peer_port() -> u16 {
    179
}
fn default_hold_time() -> Duration {
    Duration::from_secs(90)
}
fn default_keepalive_time() -> Duration {
    Duration::from_secs(30)
}

/// A key of a Secret in a named namespace (a BGPPeer is cluster-scoped).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PasswordSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Namespace of the Secret.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: String,
    /// Key within the Secret's data.
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_password_key() -> String {
    "password".to_string()
}

/// BFD timers (FRR's ranges: intervals 10ms..60s, multiplier 2..255).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.receiveInterval) >= duration('10ms') && duration(self.receiveInterval) <= duration('60s')").message("receiveInterval must be from 10ms to 60s").field_path(".receiveInterval"))]
#[x_kube(validation = Rule::new("duration(self.transmitInterval) >= duration('10ms') && duration(self.transmitInterval) <= duration('60s')").message("transmitInterval must be from 10ms to 60s").field_path(".transmitInterval"))]
pub struct BfdSpec {
    /// The slowest rate at which this node wants the router's BFD packets (FRR:
    /// `receive-interval`).
    #[serde(default = "default_bfd_interval")]
    pub receive_interval: Duration,
    /// The fastest rate at which this node sends BFD packets (FRR: `transmit-interval`).
    #[serde(default = "default_bfd_interval")]
    pub transmit_interval: Duration,
    /// Packets missed in a row before the session is declared down (FRR: `detect-multiplier`).
    #[serde(default = "default_detect_multiplier")]
    #[schemars(range(min = 2, max = 255))]
    pub detect_multiplier: u8,
}

fn default_bfd_interval() -> Duration {
    Duration::from_millis(300)
}
fn default_detect_multiplier() -> u8 {
    3
}

impl Default for BfdSpec {
    fn default() -> Self {
        BfdSpec {
            receive_interval: default_bfd_interval(),
            transmit_interval: default_bfd_interval(),
            detect_multiplier: default_detect_multiplier(),
        }
    }
}

/// The well-known community names a BGPPeer accepts (FRR's spelling).
pub const WELL_KNOWN_COMMUNITIES: &[&str] = &[
    "no-export",
    "no-advertise",
    "no-peer",
    "blackhole",
    "local-AS",
];

/// A BGP community: standard `A:B`, large `A:B:C`, or a well-known name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct Community(pub String);

impl JsonSchema for Community {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Community".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names = WELL_KNOWN_COMMUNITIES
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let rule = format!(
            "self in [{names}] \
             || (self.matches('^[0-9]{{1,5}}:[0-9]{{1,5}}$') && self.split(':').all(p, int(p) <= 65535)) \
             || (self.matches('^[0-9]{{1,10}}:[0-9]{{1,10}}:[0-9]{{1,10}}$') && self.split(':').all(p, int(p) <= 4294967295))"
        );
        schemars::json_schema!({
            "type": "string",
            "maxLength": 32,
            "x-kubernetes-validations": [{
                "rule": rule,
                "message": "must be a standard community A:B (each 0..65535), a large community A:B:C (each 0..4294967295) or one of no-export, no-advertise, no-peer, blackhole, local-AS"
            }]
        })
    }
}

/// Observed state of a BGP peer: each node's session (written by that node's agent) and their
/// sum (written by the operator).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BGPPeerStatus {
    /// `Established`: True while at least one node's session is up (reason `SessionsUp`; the
    /// message names the nodes whose session is not), False otherwise (reason `NoSession`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Nodes whose session is `Established`.
    #[serde(default)]
    pub established: i32,
    /// One entry per peering node, each written by that node's agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["node"]))]
    pub nodes: Vec<BGPPeerNodeStatus>,
}

/// One node's session with the peer, as its agent reads it from FRR.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BGPPeerNodeStatus {
    /// Node name.
    pub node: String,
    /// The BGP finite state machine's state (RFC 4271); `Unknown` when FRR cannot be asked.
    pub state: BgpSessionState,
    /// When `state` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// Why the session is not established: the router's NOTIFICATION (a wrong password, an AS
    /// number mismatch), `FRR not running`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The BFD session's state; `Disabled` when the peer has no `bfd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<BfdSessionState>,
    /// The prefixes this node announces to the peer (`192.168.60.88/32`, `fd00::88/128`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub routes: Vec<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
// Values of the API, described by the fields that use them: doc comments on the variants
// would turn the schema's `enum` into a `oneOf`.
#[allow(missing_docs)]
pub enum BgpSessionState {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
    Unknown,
}

impl BgpSessionState {
    /// The name as serialized (`Established`), also an Event's reason for a transition.
    pub fn as_str(self) -> &'static str {
        match self {
            BgpSessionState::Idle => "Idle",
            BgpSessionState::Connect => "Connect",
            BgpSessionState::Active => "Active",
            BgpSessionState::OpenSent => "OpenSent",
            BgpSessionState::OpenConfirm => "OpenConfirm",
            BgpSessionState::Established => "Established",
            BgpSessionState::Unknown => "Unknown",
        }
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
// Values of the API, described by the fields that use them: doc comments on the variants
// would turn the schema's `enum` into a `oneOf`. Not `Off`: YAML 1.1 reads it as `false`.
#[allow(missing_docs)]
pub enum BfdSessionState {
    Up,
    Down,
    Disabled,
}

/// BGP announcement of a VirtualIP's addresses.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BgpSpec {
    /// `ECMP` (the default): every eligible node (a healthy backend for the listeners, a ready
    /// local endpoint with `externalTrafficPolicy: Local`) announces the addresses, and the
    /// routers spread flows across them; no VRRP runs, so `virtualRouterID` is not used (BGP
    /// lifts VRRP's limit of 255 router IDs per LAN). `ActiveStandby`: only the node that VRRP
    /// elects master announces them.
    #[serde(default)]
    pub mode: BgpMode,
    /// `ECMP` mode: the addresses of the nodes that announce the VirtualIP (each node skips
    /// its own), so that a node hands a TCP connection it does not know to the one that has
    /// it. Routers rehash flows whenever a node joins or drains; without this the node a flow
    /// lands on resets it. The packets go unchanged to the next hop, so each address must be on
    /// a subnet of the node. In a cluster the agents also find each other through the
    /// VirtualIP's status; in standalone mode list them here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub handover_peers: Vec<crate::IpAddressString>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
// Values of the API, described by the field that uses them: doc comments on the variants
// would turn the schema's `enum` into a `oneOf`.
#[allow(missing_docs)]
pub enum BgpMode {
    #[default]
    ECMP,
    ActiveStandby,
}

impl VirtualIPSpec {
    /// Whether this VirtualIP runs VRRP (and so needs a virtual router ID) when its addresses
    /// come from a pool with `announcement`: always with `L2`; with `BGP` only in
    /// `ActiveStandby` mode. The operator and the agents decide it by this one function.
    pub fn uses_vrrp(&self, announcement: Announcement) -> bool {
        match announcement {
            Announcement::L2 => true,
            Announcement::BGP => self
                .bgp
                .as_ref()
                .is_some_and(|b| b.mode == BgpMode::ActiveStandby),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(bgp: Option<BgpMode>) -> VirtualIPSpec {
        let mut v: VirtualIPSpec =
            serde_json::from_value(serde_json::json!({"addressPool": "p"})).unwrap();
        v.bgp = bgp.map(|mode| BgpSpec {
            mode,
            ..BgpSpec::default()
        });
        v
    }

    #[test]
    fn only_l2_and_active_standby_use_vrrp() {
        for bgp in [None, Some(BgpMode::ECMP), Some(BgpMode::ActiveStandby)] {
            assert!(spec(bgp).uses_vrrp(Announcement::L2), "{bgp:?}");
        }
        assert!(!spec(None).uses_vrrp(Announcement::BGP));
        assert!(!spec(Some(BgpMode::ECMP)).uses_vrrp(Announcement::BGP));
        assert!(spec(Some(BgpMode::ActiveStandby)).uses_vrrp(Announcement::BGP));
    }
}
