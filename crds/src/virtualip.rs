//! `VirtualIP`: one highly available address (or a few of one family) shared by a group of nodes
//! through VRRP, and the proxy listeners served on it. The keepalived `vrrp_instance` and the nginx
//! `server` blocks of the reference setup both live here.

// kube's KubeSchema derive (the CEL rules) copies each validated struct into a private scope;
// `unreachable_pub` reports that copy, so the lint is off here. These types are the public API.
#![allow(unreachable_pub)]

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    Duration,
    names::{DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, INTERFACE_PATTERN},
    route::Route,
};

/// Desired state of a virtual IP.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "buoy.io",
    version = "v1alpha1",
    kind = "VirtualIP",
    plural = "virtualips",
    singular = "virtualip",
    namespaced,
    status = "VirtualIPStatus",
    shortname = "vip",
    category = "buoy",
    printcolumn = r#"{"name":"Addresses","type":"string","jsonPath":".status.addresses","description":"The virtual IP addresses in effect (from the spec, or allocated from an AddressPool)"}"#,
    printcolumn = r#"{"name":"VRID","type":"integer","jsonPath":".status.virtualRouterID","description":"Effective VRRP virtual router ID"}"#,
    printcolumn = r#"{"name":"Master","type":"string","jsonPath":".status.master","description":"Node currently holding the addresses"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    derive = "PartialEq",
    doc = "A highly available virtual IP: addresses moved between nodes by VRRP, and the proxy listeners served on them."
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("size(self.addresses) > 0 || has(self.addressPool)").message("addresses or addressPool must be set").field_path(".addresses"))]
#[x_kube(validation = Rule::new("self.addresses.all(a, a.contains(':')) || self.addresses.all(a, !a.contains(':'))").message("all addresses must be of one family (all IPv4 or all IPv6)").field_path(".addresses"))]
#[x_kube(validation = Rule::new("self.vrrp.version != 2 || self.addresses.all(a, !a.contains(':'))").message("VRRP version 2 supports IPv4 only; use version 3 for IPv6 addresses").field_path(".vrrp.version"))]
#[x_kube(validation = Rule::new("!has(self.vrrp.unicastPeers) || size(self.addresses) == 0 || self.vrrp.unicastPeers.all(p, p.contains(':') == self.addresses[0].contains(':'))").message("unicastPeers must be of the same address family as addresses").field_path(".vrrp.unicastPeers"))]
#[x_kube(validation = Rule::new("!has(self.priorities) || size(self.addresses) == 0 || self.priorities.all(p, !has(p.sourceAddress) || p.sourceAddress.contains(':') == self.addresses[0].contains(':'))").message("sourceAddress must be of the same address family as addresses").field_path(".priorities"))]
#[x_kube(validation = Rule::new("!has(self.track) || !has(self.track.upstreams) || size(self.listeners) > 0").message("track.upstreams needs at least one listener whose backends can be tracked").field_path(".track.upstreams"))]
pub struct VirtualIPSpec {
    /// The virtual addresses: up to 16, all IPv4 or all IPv6, each optionally with a prefix
    /// length (`192.168.60.88/24`, `fd00::88/64`). Without a prefix the address is bound as /32
    /// (/128), as keepalived does (keepalived: `virtual_ipaddress`). Empty: one address is
    /// allocated from `addressPool` and recorded in `status.addresses`.
    #[serde(default)]
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub addresses: Vec<VipAddress>,

    /// The AddressPool (cluster-scoped) this VirtualIP's addresses come from. With `addresses`,
    /// the pool that must allow them (default: any pool that admits the namespace and allows
    /// them); without, the pool one address is allocated from (kept in `status.addresses` for
    /// the VirtualIP's life, released when it is deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub address_pool: Option<String>,

    /// Network interface that carries the addresses and the VRRP adverts. Default: the interface
    /// whose connected subnet holds the first address (keepalived: `interface`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = INTERFACE_PATTERN))]
    pub interface: Option<String>,

    /// VRRP virtual router ID, 1..255; must be the same on every router of this VIP, and unique on
    /// the LAN. When omitted the operator allocates one and records it in
    /// `status.virtualRouterID` (keepalived: `virtual_router_id`).
    #[serde(
        default,
        rename = "virtualRouterID",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 255))]
    pub virtual_router_id: Option<u8>,

    /// VRRP protocol settings.
    #[serde(default)]
    pub vrrp: VrrpSpec,

    /// Nodes that take part in the election (and so may hold the VIP). Default: every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,

    /// Tolerations of the node agents that serve this VIP, so that it can run on tainted nodes
    /// (for example control-plane nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub tolerations: Option<Vec<Toleration>>,

    /// Per-node VRRP priorities (the highest healthy node is master). When omitted the operator
    /// assigns them, spreading the masters of different VirtualIPs across nodes
    /// (keepalived: `priority`, and `state MASTER|BACKUP` which only sets the initial state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["node"]))]
    pub priorities: Option<Vec<NodePriority>>,

    /// What lowers this node's priority or puts it in Fault (keepalived: `track_script`,
    /// `track_interface`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<TrackSpec>,

    /// Proxy listeners served on the virtual addresses (the nginx `server` blocks). May be empty:
    /// then Buoy only moves the addresses.
    #[serde(default)]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    #[x_kube(validation = Rule::new("self.all(l, self.exists_one(m, m.port == l.port && (m.protocol == 'UDP') == (l.protocol == 'UDP')))").message("listener ports must be unique (a UDP listener may share its port with a TCP or HTTP one)"))]
    pub listeners: Vec<Listener>,

    /// How the addresses are announced when they come from an AddressPool with `announcement:
    /// BGP` (ignored otherwise). Absent: `mode: ECMP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<crate::BgpSpec>,
}

/// An IP address, optionally with a prefix length: `192.168.60.88`, `192.168.60.88/24`,
/// `fd00::88/64`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct VipAddress(pub String);

impl JsonSchema for VipAddress {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "VipAddress".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "maxLength": 49,
            "x-kubernetes-validations": [
                {
                    "rule": "isIP(self) || isCIDR(self)",
                    "message": "must be an IP address, optionally with a prefix length (192.168.60.88/24, fd00::88/64)"
                },
                {
                    // A /0 would put a default route on the interface.
                    "rule": "!isCIDR(self) || cidr(self).prefixLength() > 0",
                    "message": "must not have prefix length 0"
                },
                {
                    "rule": "!isIP(self) || !ip(self).isUnspecified()",
                    "message": "must not be the unspecified address (0.0.0.0, ::)"
                }
            ]
        })
    }
}

/// A plain IP address (no prefix), such as a VRRP peer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct IpAddressString(pub String);

impl JsonSchema for IpAddressString {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "IpAddressString".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "maxLength": 45,
            "x-kubernetes-validations": [{
                "rule": "isIP(self)",
                "message": "must be an IP address without a prefix length"
            }]
        })
    }
}

/// VRRP settings shared by every node of the VIP.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.version != 3 || (duration(self.advertisementInterval) >= duration('10ms') && duration(self.advertisementInterval) <= duration('40950ms') && duration(self.advertisementInterval).getMilliseconds() % 10 == 0)").message("with VRRP version 3, advertisementInterval must be from 10ms to 40.95s in steps of 10ms").field_path(".advertisementInterval"))]
#[x_kube(validation = Rule::new("self.version != 2 || (duration(self.advertisementInterval) >= duration('1s') && duration(self.advertisementInterval) <= duration('255s') && duration(self.advertisementInterval).getMilliseconds() % 1000 == 0)").message("with VRRP version 2, advertisementInterval must be a whole number of seconds from 1s to 255s").field_path(".advertisementInterval"))]
#[x_kube(validation = Rule::new("!has(self.authentication) || self.version == 2").message("authentication is only supported with VRRP version 2 (RFC 5798 removed it from version 3)").field_path(".authentication"))]
#[x_kube(validation = Rule::new("!has(self.unicastPeers) || size(self.unicastPeers) == 0 || self.unicast").message("unicastPeers requires unicast: true").field_path(".unicastPeers"))]
#[x_kube(validation = Rule::new("duration(self.preemptDelay) <= duration('1000s')").message("preemptDelay must be at most 1000s").field_path(".preemptDelay"))]
#[x_kube(validation = Rule::new("duration(self.connectionHandover) <= duration('1h')").message("connectionHandover must be at most 1h").field_path(".connectionHandover"))]
pub struct VrrpSpec {
    /// VRRP version: 3 (RFC 5798, IPv4 and IPv6, centisecond intervals) or 2 (RFC 3768, IPv4
    /// only, whole seconds, for peers that only speak v2) (keepalived: `vrrp_version`).
    #[serde(default = "default_vrrp_version")]
    #[schemars(extend("enum" = [2, 3]))]
    pub version: u8,

    /// Interval between the master's adverts. v3: 10ms..40.95s in 10ms steps; v2: whole seconds
    /// 1..255. A backup takes over after 3 intervals plus a skew without adverts
    /// (keepalived: `advert_int`).
    #[serde(default = "default_advertisement_interval")]
    pub advertisement_interval: Duration,

    /// Adverts the master sends per `advertisementInterval`, 1..4: the advert, then copies 20 ms
    /// apart (interval / n when shorter), so failover stays as fast as with one. Each still
    /// carries `advertisementInterval`, so every backup, keepalived too, keeps its
    /// Master_Down_Interval (3 intervals plus skew) and only hears the master more often. A backup
    /// takes the VIP over only when every advert of that window is lost: 3 in a row with 1 per
    /// interval, 6 with 2. Default 2, for one more small packet per interval: with two backups at
    /// 100 ms, 20% loss makes about 8 false takeovers a minute with 1 and 0.1 with 2; 1% loss
    /// about 2 a day with 1 and none in centuries with 2. keepalived sends 1 (it has no such
    /// setting).
    #[serde(default = "default_advertisements_per_interval")]
    #[schemars(range(min = 1, max = 4))]
    pub advertisements_per_interval: u8,

    /// Whether a higher-priority node takes the VIP back from a lower-priority master
    /// (keepalived: `nopreempt` is `preempt: false`).
    #[serde(default = "default_true")]
    pub preempt: bool,

    /// How long a higher-priority node waits, after starting, before preempting
    /// (keepalived: `preempt_delay`; at most 1000s).
    #[serde(default)]
    pub preempt_delay: Duration,

    /// VRRPv2 simple password authentication (keepalived: `authentication { auth_type PASS;
    /// auth_pass … }`). Only with version 2. Only the first 8 bytes of the password are used, as on
    /// the wire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<VrrpAuthentication>,

    /// Send adverts by unicast to the other nodes instead of multicast to 224.0.0.18 / ff02::12
    /// (for networks that drop multicast, such as many clouds).
    #[serde(default)]
    pub unicast: bool,

    /// Unicast peers in addition to the other Buoy nodes (which are discovered), for example a
    /// keepalived host during a migration; in standalone mode, the full peer list
    /// (keepalived: `unicast_peer`). Requires `unicast: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub unicast_peers: Option<Vec<IpAddressString>>,

    /// Gratuitous ARP / unsolicited neighbour advertisement on becoming master
    /// (keepalived: `garp_master_delay`, `garp_master_repeat`, `garp_master_refresh`,
    /// `garp_master_refresh_repeat`).
    #[serde(default, rename = "gratuitousARP")]
    pub gratuitous_arp: GratuitousArp,

    /// Use the VRRP virtual MAC 00-00-5E-00-01-{VRID} (00-00-5E-00-02-{VRID} for IPv6) on a
    /// macvlan interface, so that neighbours need no ARP update on failover
    /// (keepalived: `use_vmac`).
    #[serde(default, rename = "virtualMAC")]
    pub virtual_mac: bool,

    /// After a node takes the VIP from a master that is still alive (it stopped gracefully, or
    /// was preempted), how long packets of TCP connections the new master does not know are
    /// forwarded to the old one, so that connections opened there (a handshake that raced the
    /// gratuitous ARP, a client's keep-alive connection) finish there instead of being reset.
    /// Only Buoy nodes can take such packets: in a fleet mixed with keepalived, `0s`. `0s`
    /// turns forwarding off; at most 1h. keepalived has no equivalent.
    #[serde(default = "default_connection_handover")]
    pub connection_handover: Duration,
}

fn default_vrrp_version() -> u8 {
    3
}
fn default_advertisement_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_advertisements_per_interval() -> u8 {
    2
}
fn default_true() -> bool {
    true
}
fn default_connection_handover() -> Duration {
    Duration::from_secs(30)
}

impl Default for VrrpSpec {
    fn default() -> Self {
        VrrpSpec {
            version: default_vrrp_version(),
            advertisement_interval: default_advertisement_interval(),
            advertisements_per_interval: default_advertisements_per_interval(),
            preempt: true,
            preempt_delay: Duration::ZERO,
            authentication: None,
            unicast: false,
            unicast_peers: None,
            gratuitous_arp: GratuitousArp::default(),
            connection_handover: default_connection_handover(),
            virtual_mac: false,
        }
    }
}

/// VRRPv2 authentication.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VrrpAuthentication {
    /// Authentication type. Only `Password` (VRRPv2 simple text password, keepalived
    /// `auth_type PASS`) exists; `AH` was removed from the VRRP specifications.
    #[serde(rename = "type")]
    pub auth_type: AuthenticationType,
    /// The Secret key that holds the password, in the VirtualIP's namespace. In standalone mode
    /// the Secret is a document in the configuration files.
    pub secret_ref: SecretKeyRef,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
// Values of the API, described by the fields that use them: doc comments on the variants
// would turn the schema's `enum` into a `oneOf`.
#[allow(missing_docs)]
pub enum AuthenticationType {
    Password,
}

/// A key in a Secret of the same namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Announcement of the VIP by the new master. Switches learn the new location of the VIP's MAC
/// from these packets.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.refreshInterval) == duration('0s') || duration(self.refreshInterval) >= duration('1s')").message("refreshInterval must be 0s (off) or at least 1s").field_path(".refreshInterval"))]
#[x_kube(validation = Rule::new("duration(self.delay) <= duration('1000s')").message("delay must be at most 1000s").field_path(".delay"))]
pub struct GratuitousArp {
    /// Delay before the second burst of announcements after becoming master; `0s` sends only one
    /// burst (keepalived: `garp_master_delay`, default 5s).
    #[serde(default = "default_garp_delay")]
    pub delay: Duration,
    /// Announcements per burst (keepalived: `garp_master_repeat`, default 5).
    #[serde(default = "default_garp_repeat")]
    #[schemars(range(min = 1, max = 100))]
    pub repeat: u32,
    /// Re-announce periodically while master, for switches that age their tables; `0s` is off
    /// (keepalived: `garp_master_refresh`).
    #[serde(default)]
    pub refresh_interval: Duration,
    /// Announcements per refresh (keepalived: `garp_master_refresh_repeat`, default 1).
    #[serde(default = "default_garp_refresh_repeat")]
    #[schemars(range(min = 1, max = 100))]
    pub refresh_repeat: u32,
}

fn default_garp_delay() -> Duration {
    Duration::from_secs(5)
}
fn default_garp_repeat() -> u32 {
    5
}
fn default_garp_refresh_repeat() -> u32 {
    1
}

impl Default for GratuitousArp {
    fn default() -> Self {
        GratuitousArp {
            delay: default_garp_delay(),
            repeat: default_garp_repeat(),
            refresh_interval: Duration::ZERO,
            refresh_repeat: default_garp_refresh_repeat(),
        }
    }
}

/// The priority of one node.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodePriority {
    /// Node name (the Kubernetes Node, or `--node-name` in standalone mode; keepalived's
    /// `router_id`).
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub node: String,
    /// VRRP priority 1..254; the highest wins (keepalived: `priority`). 255 (address owner) is not
    /// used because no node owns the VIP.
    #[schemars(range(min = 1, max = 254))]
    pub priority: u8,
    /// Source address of this node's adverts. Default: the node's primary address on the
    /// interface (keepalived: `mcast_src_ip`, `unicast_src_ip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<IpAddressString>,
}

/// Conditions that change this node's effective priority.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TrackSpec {
    /// Track the health of this VIP's own upstreams: the condition fails while this node has no
    /// healthy backend for some listener. This replaces keepalived's `vrrp_script` that checks
    /// that nginx is alive (`chk_nginx`): Buoy's proxy lives in the agent itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstreams: Option<TrackWeight>,
    /// Track other interfaces: when one of them is down the condition fails
    /// (keepalived: `track_interface`). The VIP's own interface is always tracked (down = Fault).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<TrackInterfaces>,
    /// Track an HTTP(S) endpoint with GET requests, as kubelet's `httpGet` probe does: the
    /// condition fails after `failureThreshold` failed requests in a row (no answer within
    /// `timeout`, or a status outside 200-399) and holds again after `successThreshold`
    /// successes (keepalived: a `vrrp_script` that curls the URL, with `fall` and `rise`). It
    /// fails until the first success, so a node whose endpoint never answered does not take
    /// the VIP. For a control-plane VIP: `https://127.0.0.1:6443/livez`, the local API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<TrackHttpGet>,
}

/// An HTTP GET probe of a URL (kubelet's `httpGet` probe). HTTPS probes do not verify the
/// server's certificate, as kubelet's do not: the probe asks whether the server is alive, not
/// whether to trust it, and the address is the node's own (no name to spoof: IP literals only).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("isURL(self.url) && url(self.url).getScheme() in ['http', 'https']").message("url must be an absolute http:// or https:// URL").field_path(".url"))]
#[x_kube(validation = Rule::new("!isURL(self.url) || isIP(url(self.url).getHostname())").message("url's host must be an IP address (https://127.0.0.1:6443/livez, https://[::1]:6443/livez), not a name: the probe must not depend on DNS").field_path(".url"))]
#[x_kube(validation = Rule::new("duration(self.timeout) > duration('0s') && duration(self.timeout) <= duration(self.interval)").message("timeout must be greater than 0s and at most interval").field_path(".timeout"))]
#[x_kube(validation = Rule::new("duration(self.interval) >= duration('100ms')").message("interval must be at least 100ms").field_path(".interval"))]
pub struct TrackHttpGet {
    /// The URL: `http://` or `https://`, an IP address as the host, an optional port and path
    /// (`https://127.0.0.1:6443/livez`).
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// Time between two requests (kubelet: `periodSeconds`; keepalived: `interval`).
    #[serde(default = "default_probe_interval")]
    pub interval: Duration,
    /// Time allowed for one request, connection and TLS handshake included; at most `interval`
    /// (kubelet: `timeoutSeconds`).
    #[serde(default = "default_probe_timeout")]
    pub timeout: Duration,
    /// Failed requests in a row that make the condition fail (kubelet: `failureThreshold`;
    /// keepalived: `fall`).
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: u32,
    /// Successful requests in a row that make it hold again (kubelet: `successThreshold`;
    /// keepalived: `rise`).
    #[serde(default = "default_success_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub success_threshold: u32,
    /// As for upstreams; default 0 (Fault while the probe fails).
    #[serde(default)]
    #[schemars(range(min = -253, max = 253))]
    pub weight: i32,
}

fn default_probe_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_probe_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_failure_threshold() -> u32 {
    3
}
fn default_success_threshold() -> u32 {
    1
}

/// keepalived's `weight` semantics, exactly: a positive weight is added to the priority while the
/// condition holds, a negative one is subtracted while it fails, and 0 puts the node in Fault
/// (no mastership) while it fails.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TrackWeight {
    /// -253..253; 0 means Fault on failure.
    #[serde(default)]
    #[schemars(range(min = -253, max = 253))]
    pub weight: i32,
}

/// Interfaces to track.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrackInterfaces {
    /// Interface names; the condition fails while any of them is down.
    #[schemars(length(min = 1, max = 8))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub names: Vec<InterfaceName>,
    /// Weight, as for upstreams; default 0 (Fault while an interface is down).
    #[serde(default)]
    #[schemars(range(min = -253, max = 253))]
    pub weight: i32,
}

/// A Linux network interface name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct InterfaceName(pub String);

impl JsonSchema for InterfaceName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "InterfaceName".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "pattern": INTERFACE_PATTERN })
    }
}

/// A proxy listener on the virtual addresses.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.protocol in ['HTTP', 'HTTPS'] || !has(self.client) || (!has(self.client.maxRequestHeaderBytes) && !has(self.client.maxRequestBodyBytes) && !has(self.client.headerTimeout) && !has(self.client.keepaliveTimeout))").message("HTTP client settings (headerTimeout, keepaliveTimeout, maxRequestHeaderBytes, maxRequestBodyBytes) apply only to HTTP and HTTPS listeners").field_path(".client"))]
#[x_kube(validation = Rule::new("has(self.upstreamPool) || (has(self.routes) && size(self.routes) > 0)").message("a listener needs an upstreamPool or at least one route").field_path(".upstreamPool"))]
#[x_kube(validation = Rule::new("self.protocol in ['HTTP', 'HTTPS'] || !has(self.routes) || size(self.routes) == 0").message("routes apply only to HTTP and HTTPS listeners (TCP and UDP listeners send everything to their upstreamPool)").field_path(".routes"))]
#[x_kube(validation = Rule::new("self.protocol != 'UDP' || !has(self.proxyProtocol) || !self.proxyProtocol").message("proxyProtocol applies only to HTTP, HTTPS and TCP listeners").field_path(".proxyProtocol"))]
#[x_kube(validation = Rule::new("self.protocol != 'HTTPS' || has(self.tls)").message("an HTTPS listener needs tls with at least one certificate").field_path(".tls"))]
#[x_kube(validation = Rule::new("self.protocol == 'HTTPS' || !has(self.tls)").message("tls applies only to HTTPS listeners").field_path(".tls"))]
pub struct Listener {
    /// Listener name, unique in the VirtualIP (a DNS label).
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,
    /// TCP port on the virtual addresses (nginx: `listen`).
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// `HTTP`: HTTP/1.1 reverse proxy (nginx `http {}`), and HTTP/2 to clients that start with
    /// its preface (h2c with prior knowledge); `HTTPS`: the same behind TLS
    /// termination with the certificates of `tls` (nginx `listen … ssl`), HTTP/2 to clients
    /// that choose it by ALPN; `TCP`: byte stream proxy (nginx
    /// `stream {}`); `UDP`: datagram proxy (nginx `stream {}` with `listen … udp`): a client
    /// address's datagrams are a flow, sent to one backend chosen by the pool's algorithm, its
    /// replies returned from the VIP, the flow ended after `client.idleTimeout` (default 60s)
    /// without a datagram.
    #[serde(default)]
    pub protocol: ListenerProtocol,
    /// Name of the UpstreamPool, in the same namespace, that receives the traffic no route
    /// takes (nginx: `proxy_pass http://test_web`). Without it, an HTTP request that no route
    /// takes is answered `404`. A listener needs it or at least one route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub upstream_pool: Option<String>,
    /// HTTP: requests sent to other pools by host and path (nginx: `server_name` and
    /// `location`). The host is chosen first: an exact name, else the longest wildcard, else the
    /// routes without `hosts`; then, among that host's paths, an `Exact` one, else the longest
    /// `Prefix`. What matches none goes to `upstreamPool`. A host and path that an earlier route
    /// already has is ignored in the later one (and reported).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub routes: Vec<Route>,
    /// Limits and timeouts on the client side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientSettings>,
    /// One line per request (HTTP) or per connection (TCP) on the agent's standard output; off
    /// when absent (nginx: `access_log`). Lines never hold up traffic: when the writer falls
    /// behind they are dropped and counted (`buoy_proxy_access_log_dropped_total`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLog>,
    /// Every connection starts with a PROXY protocol header (version 1 or 2) from a load
    /// balancer in front (nginx: `listen … proxy_protocol`; HAProxy: `accept-proxy`): the client
    /// address it gives is the one that balancing, `X-Real-IP` / `X-Forwarded-For`, the access
    /// log and a pool's own PROXY header see. A connection without a valid header within the
    /// header timeout (TCP: the idle timeout) is closed. A header with no address (V1 `UNKNOWN`,
    /// V2 `LOCAL`, a load balancer's health check) leaves the connection's own.
    #[serde(default, skip_serializing_if = "is_false")]
    pub proxy_protocol: bool,
    /// HTTPS: the certificates and TLS settings (required for HTTPS, refused otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::ListenerTls>,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// A listener's access log.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccessLog {
    /// `Combined`: nginx's `combined` format, exactly (`$remote_addr - $remote_user
    /// [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`),
    /// so that existing tooling parses it; `JSON`: one object per line with every field (time,
    /// client, listener, host, method, path, status, bytes in and out, duration, upstream
    /// address and status, attempts).
    pub format: AccessLogFormat,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
// Values of the API, described by the fields that use them: doc comments on the variants
// would turn the schema's `enum` into a `oneOf`.
#[allow(missing_docs)]
pub enum AccessLogFormat {
    Combined,
    JSON,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
// Values of the API, described by the fields that use them: doc comments on the variants
// would turn the schema's `enum` into a `oneOf`.
#[allow(missing_docs)]
pub enum ListenerProtocol {
    #[default]
    HTTP,
    HTTPS,
    TCP,
    UDP,
}

impl ListenerProtocol {
    /// HTTP or HTTPS: a listener with routes, HTTP client settings and per-request logs.
    pub fn is_http(self) -> bool {
        matches!(self, ListenerProtocol::HTTP | ListenerProtocol::HTTPS)
    }
}

/// Client-side limits, so that slow or greedy clients cannot hold the proxy. Unset fields use the
/// defaults shown (nginx's own defaults where nginx has one).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClientSettings {
    /// Maximum concurrent client connections on this listener (nginx: `worker_connections`,
    /// which bounds all listeners of a worker). Default 4096. At the limit, a new client
    /// takes the place of the connection that has waited longest for a request header (idle
    /// keep-alive, or slow: a slowloris client), as nginx reuses idle connections; only when
    /// every connection is busy with a request is it refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_connections: Option<u32>,
    /// HTTP: how long an idle keep-alive client connection stays open (nginx:
    /// `keepalive_timeout`, default 75s; the reference config sets 65s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_timeout: Option<Duration>,
    /// HTTP: time allowed to receive the request headers (nginx: `client_header_timeout`, 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_timeout: Option<Duration>,
    /// Time allowed between two reads of the request body (HTTP) or of client data (TCP: idle
    /// timeout on the client side) (nginx: `client_body_timeout`, 60s; stream `proxy_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    /// HTTP: maximum size of the request line and headers (nginx:
    /// `large_client_header_buffers`, 32768).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1024, max = 1048576))]
    pub max_request_header_bytes: Option<u32>,
    /// HTTP: maximum request body size; 0 is unlimited (nginx: `client_max_body_size`, 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1099511627776u64))]
    pub max_request_body_bytes: Option<u64>,
    /// Time allowed for one write to the client to make progress: a client that stops reading
    /// its response is cut after it (nginx: `send_timeout`, 60s; TCP listeners too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_timeout: Option<Duration>,
}

/// Observed state of a virtual IP.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VirtualIPStatus {
    /// The `metadata.generation` that this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: exactly one node holds the VIP and every listener has a healthy backend.
    /// `Degraded`: serving but with less redundancy than asked (no backup, a node in Fault).
    /// `Conflict`: another VirtualIP already uses an address, router ID or port; not served.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The virtual router ID in effect (from the spec or allocated by the operator).
    #[serde(
        default,
        rename = "virtualRouterID",
        skip_serializing_if = "Option::is_none"
    )]
    pub virtual_router_id: Option<u8>,
    /// Node that holds the addresses now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// The addresses in effect, as the operator admitted them: `spec.addresses`, or the address
    /// allocated from `spec.addressPool` (kept for the VirtualIP's life).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub addresses: Vec<String>,
    /// The AddressPool that allows (or gave) the addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_pool: Option<String>,
    /// One entry per participating node, each written by that node's agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["node"]))]
    pub nodes: Vec<NodeStatus>,
}

/// What one node's agent reports.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// Node name.
    pub node: String,
    /// VRRP state. `Master` means the addresses are bound and announced and the listeners are
    /// open on this node.
    pub state: VrrpState,
    /// Effective priority (after tracking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// When `state` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Why the node is in this state (for Fault: what failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Whether every listener of this VirtualIP has an open socket and a healthy backend on
    /// this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<bool>,
    /// The address this node sends its adverts from. The other nodes forward connections only
    /// to such an address (connection handover), never to an arbitrary advert's source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 45))]
    pub address: Option<String>,
    /// Routers outside this VirtualIP that this node saw using its VRID (another address list,
    /// version or password, or not a configured peer): a VRID collision. Their adverts are
    /// dropped; the operator reports them and avoids the VRID when it allocates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub foreign_routers: Vec<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
// Values of the API, described by the fields that use them: doc comments on the variants
// would turn the schema's `enum` into a `oneOf`.
#[allow(missing_docs)]
pub enum VrrpState {
    Initialize,
    Backup,
    Master,
    Fault,
}

impl VrrpState {
    /// The name as serialized (`Master`), also an Event's reason for a transition.
    pub fn as_str(self) -> &'static str {
        match self {
            VrrpState::Initialize => "Initialize",
            VrrpState::Backup => "Backup",
            VrrpState::Master => "Master",
            VrrpState::Fault => "Fault",
        }
    }
}
