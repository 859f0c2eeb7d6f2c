//! The desired state of one node: which VirtualIPs it serves, with which VRRP settings and
//! priority, and the proxy listeners and pools behind them. Built from API objects by a pure
//! function, whatever their source (the cluster or YAML files), so both modes mean the same thing.
//!
//! One bad object affects only what uses it: a VirtualIP that cannot be served here is left out
//! (and reported as a fault of this node when it should have been served), a backend that does
//! not resolve leaves only its own pool short of it, and nothing waits for the network: names
//! and Secrets come resolved, from caches the agent keeps fresh beside the plan.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use buoy_crds::{
    AddressPool, BGPPeer, UpstreamPool, VipAddress, VirtualIP,
    contract::{self, CONFLICT_ANNOTATION},
    policy::{self, AddressPolicy, Admission},
};
use k8s_openapi::api::core::v1::Secret;
use kube::core::{Selector, SelectorExt};

use crate::{
    config::{self, BackendPolicy, ConfigError},
    dns::Resolutions,
    proxy::{listener::ListenerConfig, service::ProxyConfig},
    vrrp::instance::InstanceConfig,
};

mod bgp;

pub use bgp::BgpNode;

/// The priority of a node that no `spec.priorities` entry or operator assignment names:
/// keepalived's default. Equal priorities are broken by the higher primary address (RFC 5798).
pub(crate) const DEFAULT_PRIORITY: u8 = 100;

/// Who this node is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeIdentity {
    /// The node's name.
    pub name: String,
    /// The node's labels (for node selectors).
    pub labels: BTreeMap<String, String>,
}

/// One VirtualIP as this node serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipPlan {
    /// `namespace/name`.
    pub key: String,
    /// Its VRRP instance.
    pub instance: InstanceConfig,
    /// Names of this VIP's proxy listeners (see [`ProxyConfig::listeners`]).
    pub listeners: Vec<String>,
    /// The addresses of the VirtualIP's other nodes and configured peers: the only ones its
    /// connections are forwarded to after a takeover. Changes do not restart the instance.
    pub peers: BTreeSet<IpAddr>,
    /// What this node serves it with but should be told (a password kept from before its
    /// Secret became unreadable).
    pub warnings: Vec<String>,
    /// For the Services of `externalTrafficPolicy: Local` it carries: whether one has a ready
    /// endpoint on this node (`None`: no such requirement). Only then may the node be master.
    /// Changes do not restart the instance.
    pub local_endpoint: Option<bool>,
    /// For a VRRP group's instance (keyed `group:NAME`), the VirtualIPs it serves, its first
    /// member (whose router ID and priorities it runs with) first; empty for one VirtualIP.
    /// Members coming and going change its addresses without restarting it.
    pub members: Vec<String>,
    /// Its addresses come from a BGP pool in `ActiveStandby` mode: the master announces them to
    /// the node's BGP peers too.
    pub bgp: bool,
}

/// A VirtualIP announced by BGP from every node that can serve it (`bgp.mode: ECMP`): no VRRP,
/// its addresses on the node's loopback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcmpPlan {
    /// `namespace/name`.
    pub key: String,
    /// Its addresses, each announced as a /32 or /128.
    pub addresses: Vec<IpAddr>,
    /// Names of its proxy listeners (see [`ProxyConfig::listeners`]).
    pub listeners: Vec<String>,
    /// As [`VipPlan::local_endpoint`]: only with one may the node announce it.
    pub local_endpoint: Option<bool>,
    /// As [`VipPlan::warnings`].
    pub warnings: Vec<String>,
    /// The other nodes that may announce it (the node's own addresses possibly among them):
    /// where packets of connections this node does not know are handed (`net::handover`).
    pub peers: BTreeSet<IpAddr>,
}

/// Everything this node should run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeConfig {
    /// By `namespace/name`.
    pub vips: BTreeMap<String, VipPlan>,
    /// Listeners and pools of every served VirtualIP.
    pub proxy: ProxyConfig,
    /// VirtualIPs that select this node but cannot be served on it, and why (the node reports
    /// Fault for them).
    pub faults: BTreeMap<String, String>,
    /// VirtualIPs announced by BGP from every eligible node, by `namespace/name`.
    pub ecmp: BTreeMap<String, EcmpPlan>,
    /// The node's BGP sessions; `None`: no BGPPeer selects the node.
    pub bgp: Option<BgpNode>,
    /// BGPPeers selecting this node that it cannot peer with, and why, by name.
    pub bgp_problems: BTreeMap<String, String>,
}

/// A VirtualIP this node does not serve, and why (the others are served regardless).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("VirtualIP {key}: {error}")]
pub struct PlanError {
    /// The VirtualIP, `namespace/name`.
    pub key: String,
    /// Why it is not served.
    pub error: String,
}

/// What the plan needs fetched: backend host names and Secrets (`namespace`, `name`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wants {
    /// Backend host names to resolve.
    pub names: BTreeSet<String>,
    /// Secrets to read.
    pub secrets: BTreeSet<(String, String)>,
    /// Secrets of certificates: watched, so that a renewal is served within seconds.
    pub certificates: BTreeSet<(String, String)>,
}

/// The plan of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// What to run.
    pub config: NodeConfig,
    /// VirtualIPs left out.
    pub errors: Vec<PlanError>,
    /// What to fetch for the next plan.
    pub wants: Wants,
}

/// Everything a plan is made from.
#[derive(Clone, Copy)]
pub(crate) struct Inputs<'a> {
    pub node: &'a NodeIdentity,
    pub vips: &'a [&'a VirtualIP],
    pub pools: &'a [&'a UpstreamPool],
    /// Secrets at hand (the files', or the last good copies the cluster's cache holds).
    pub secrets: &'a [&'a Secret],
    /// Why a wanted Secret could not be read lately, by (`namespace`, `name`).
    pub secret_problems: &'a BTreeMap<(String, String), String>,
    pub address_pools: &'a [&'a AddressPool],
    /// The BGP routers (all of them: the plan picks those that select the node).
    pub bgp_peers: &'a [&'a BGPPeer],
    /// Namespace labels, for AddressPools' `namespaceSelector`.
    pub namespaces: &'a BTreeMap<String, BTreeMap<String, String>>,
    pub policy: AddressPolicy,
    /// Serve only VirtualIPs of this placement (`buoy_crds::placement::key_in`).
    pub placement: Option<&'a str>,
    pub resolved: &'a Resolutions,
    pub backends: &'a BackendPolicy,
    /// Services (`namespace/name`) with a ready endpoint on this node, for VirtualIPs of
    /// `externalTrafficPolicy: Local` Services.
    pub local_endpoints: &'a BTreeSet<String>,
}

impl<'a> Inputs<'a> {
    /// Inputs with nothing but `node`, `vips`, `pools` and `secrets` (standalone files without
    /// AddressPools, no names resolved, every backend allowed).
    pub(crate) fn simple(
        node: &'a NodeIdentity,
        vips: &'a [&'a VirtualIP],
        pools: &'a [&'a UpstreamPool],
        secrets: &'a [&'a Secret],
    ) -> Inputs<'a> {
        static EMPTY_PROBLEMS: BTreeMap<(String, String), String> = BTreeMap::new();
        static EMPTY_NAMESPACES: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        static EMPTY_RESOLVED: Resolutions = BTreeMap::new();
        static NO_ENDPOINTS: BTreeSet<String> = BTreeSet::new();
        static ALLOW_ALL: BackendPolicy = BackendPolicy {
            refuse_node_local: false,
            node_addresses: BTreeSet::new(),
        };
        Inputs {
            node,
            vips,
            pools,
            secrets,
            secret_problems: &EMPTY_PROBLEMS,
            address_pools: &[],
            bgp_peers: &[],
            namespaces: &EMPTY_NAMESPACES,
            policy: AddressPolicy::Off,
            placement: None,
            resolved: &EMPTY_RESOLVED,
            backends: &ALLOW_ALL,
            local_endpoints: &NO_ENDPOINTS,
        }
    }
}

fn key_of(vip: &VirtualIP) -> String {
    contract::key_of(&vip.metadata)
}

/// Whether `vip` selects `node` (no `nodeSelector`: every node).
pub(crate) fn selects(vip: &VirtualIP, node: &NodeIdentity) -> Result<bool, String> {
    match &vip.spec.node_selector {
        None => Ok(true),
        Some(s) => {
            let selector = Selector::try_from(s.clone()).map_err(|e| e.to_string())?;
            Ok(selector.matches(&node.labels))
        }
    }
}

/// This node's priority and advert source address for `vip`.
pub(crate) fn priority_of(vip: &VirtualIP, node: &str) -> (u8, Option<IpAddr>) {
    if let Some(p) = vip
        .spec
        .priorities
        .iter()
        .flatten()
        .find(|p| p.node == node)
    {
        let source = p.source_address.as_ref().and_then(|a| a.0.parse().ok());
        return (p.priority, source);
    }
    let assigned = contract::assigned_priorities(vip.metadata.annotations.as_ref())
        .and_then(|m| m.get(node).copied())
        .filter(|p| (1..=254).contains(p));
    (assigned.unwrap_or(DEFAULT_PRIORITY), None)
}

/// The addresses of `vip` in effect: its spec's, or the one the operator allocated from its
/// pool (`status.addresses`).
pub(crate) fn addresses_of(vip: &VirtualIP) -> Vec<VipAddress> {
    if !vip.spec.addresses.is_empty() {
        return vip.spec.addresses.clone();
    }
    vip.status
        .iter()
        .flat_map(|s| &s.addresses)
        .map(|a| VipAddress(a.clone()))
        .collect()
}

/// The VirtualIP's peers as seen from `node`: configured unicast peers, the other nodes' source
/// addresses, and the addresses the other nodes' agents report.
fn peers_of(vip: &VirtualIP, node: &str) -> BTreeSet<IpAddr> {
    let unicast = vip
        .spec
        .vrrp
        .unicast_peers
        .iter()
        .flatten()
        .filter_map(|p| p.0.parse().ok());
    let sources = vip
        .spec
        .priorities
        .iter()
        .flatten()
        .filter(|p| p.node != node)
        .filter_map(|p| p.source_address.as_ref()?.0.parse().ok());
    let reported = vip
        .status
        .iter()
        .flat_map(|s| &s.nodes)
        .filter(|n| n.node != node)
        .filter_map(|n| n.address.as_ref()?.parse().ok());
    unicast.chain(sources).chain(reported).collect()
}

/// An ECMP VirtualIP's other nodes as seen from `node`: `bgp.handoverPeers` and the addresses
/// the other nodes' agents report. The node's own address may be among them (the standalone
/// files, shared by every node, list them all): the agent, which knows it, leaves it out.
fn ecmp_peers(vip: &VirtualIP, node: &str) -> BTreeSet<IpAddr> {
    let listed = vip
        .spec
        .bgp
        .iter()
        .flat_map(|b| &b.handover_peers)
        .filter_map(|p| p.0.parse().ok());
    listed.chain(peers_of(vip, node)).collect()
}

/// The password a VRRPv2 VirtualIP refers to, from the Secrets at hand.
fn password(vip: &VirtualIP, secrets: &[&Secret]) -> Option<Vec<u8>> {
    let auth = vip.spec.vrrp.authentication.as_ref()?;
    let namespace = vip
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(contract::DEFAULT_NAMESPACE);
    config::secret_value(
        secrets,
        namespace,
        &auth.secret_ref.name,
        &auth.secret_ref.key,
    )
}

/// The desired state of the node given everything it can see. A VirtualIP that cannot be
/// served (no router ID or address yet, a missing password, an address the policy does not
/// allow) is left out and reported; it never stops the others.
pub(crate) fn plan(inputs: Inputs<'_>) -> Plan {
    let mut out = Plan::default();
    for vip in inputs.vips {
        let key = key_of(vip);
        match plan_vip(vip, &key, &inputs, &mut out) {
            Ok(Some((Served::Vrrp(vip_plan), listeners))) => {
                out.config.vips.insert(key, *vip_plan);
                out.config.proxy.listeners.extend(listeners);
            }
            Ok(Some((Served::Ecmp(ecmp), listeners))) => {
                out.config.ecmp.insert(key, ecmp);
                out.config.proxy.listeners.extend(listeners);
            }
            Ok(None) => {}
            Err(Unserved::Skipped(error)) => out.errors.push(PlanError { key, error }),
            Err(Unserved::Fault(why)) => {
                out.config.faults.insert(key, why);
            }
        }
    }
    group::merge(inputs.vips, &mut out);
    drop_shared_router_ids(&mut out);
    plan_pools(&inputs, &mut out);
    out.config.bgp = bgp::plan_sessions(
        inputs.bgp_peers,
        &inputs.node.labels,
        inputs.secrets,
        &mut out.wants.secrets,
        &mut out.config.bgp_problems,
    );
    if out.config.bgp.is_none() {
        for ecmp in out.config.ecmp.values_mut() {
            ecmp.warnings
                .push("no BGPPeer selects this node: its addresses reach no router".into());
        }
    }
    out
}

/// How a VirtualIP is served on this node.
enum Served {
    /// By a VRRP instance (L2, or BGP `ActiveStandby`).
    Vrrp(Box<VipPlan>),
    /// Announced by BGP from every eligible node.
    Ecmp(EcmpPlan),
}

/// Why a VirtualIP that selects this node is not served here.
enum Unserved {
    /// Reported as a plan error only (waiting for the operator, or refused by the policy,
    /// which the operator reports on the VirtualIP).
    Skipped(String),
    /// Reported as a fault of this node for the VirtualIP.
    Fault(String),
}

/// One VirtualIP's plan on this node: `None` when it does not run here (not selected, being
/// deleted, in conflict, placed on another agent).
fn plan_vip(
    vip: &VirtualIP,
    key: &str,
    inputs: &Inputs<'_>,
    out: &mut Plan,
) -> Result<Option<(Served, Vec<ListenerConfig>)>, Unserved> {
    let node = inputs.node;
    match selects(vip, node) {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        Err(e) => return Err(Unserved::Skipped(format!("nodeSelector: {e}"))),
    }
    let conflicted = vip
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(CONFLICT_ANNOTATION));
    if vip.metadata.deletion_timestamp.is_some() || conflicted {
        return Ok(None);
    }
    let addresses = addresses_of(vip);
    let Some(pool) = admitted(vip, &addresses, inputs)? else {
        return Ok(None);
    };
    if addresses.is_empty() {
        return Err(Unserved::Skipped(ConfigError::NoAddresses.to_string()));
    }
    let announcement = pool.map(|p| p.spec.announcement).unwrap_or_default();
    if !vip.spec.uses_vrrp(announcement) {
        return plan_ecmp(vip, key, &addresses, inputs, out).map(Some);
    }
    let (priority, source) = priority_of(vip, &node.name);
    let mut spec = vip.spec.clone();
    // The operator's allocation, when the spec leaves the router ID out.
    if spec.virtual_router_id.is_none() {
        spec.virtual_router_id = vip.status.as_ref().and_then(|s| s.virtual_router_id);
    }
    let mut warnings = Vec::new();
    let secret = vrrp_password(vip, inputs, out, &mut warnings)?;
    let mut instance =
        match config::vrrp_instance(&spec, &addresses, priority, secret.as_deref(), source) {
            Ok(i) => i,
            // Waiting for the operator, which allocates one: not a fault.
            Err(e @ ConfigError::NoRouterId) => return Err(Unserved::Skipped(e.to_string())),
            Err(e) => return Err(Unserved::Fault(e.to_string())),
        };
    instance.allowed_interfaces = pool
        .and_then(|p| p.spec.interfaces.as_ref())
        .map(|l| l.iter().map(|i| i.0.clone()).collect())
        .unwrap_or_default();
    let listeners = listeners_of(vip, &addresses, inputs, out)?;
    let vip_plan = VipPlan {
        key: key.to_string(),
        instance,
        listeners: listeners.iter().map(|l| l.name.clone()).collect(),
        peers: peers_of(vip, &node.name),
        warnings,
        local_endpoint: local_endpoint(vip, inputs.local_endpoints),
        members: Vec::new(),
        bgp: announcement == buoy_crds::Announcement::BGP,
    };
    Ok(Some((Served::Vrrp(Box::new(vip_plan)), listeners)))
}

/// The proxy listeners of `vip` on `addresses`, their certificates wanted from the source.
fn listeners_of(
    vip: &VirtualIP,
    addresses: &[VipAddress],
    inputs: &Inputs<'_>,
    out: &mut Plan,
) -> Result<Vec<ListenerConfig>, Unserved> {
    let tls = config::listener_tls(
        vip,
        inputs.secrets,
        inputs.secret_problems,
        &mut out.wants.certificates,
    );
    config::listeners(vip, addresses, &tls).map_err(|e| Unserved::Fault(e.to_string()))
}

/// A VirtualIP of a BGP pool in ECMP mode: its listeners and addresses, no VRRP.
fn plan_ecmp(
    vip: &VirtualIP,
    key: &str,
    addresses: &[VipAddress],
    inputs: &Inputs<'_>,
    out: &mut Plan,
) -> Result<(Served, Vec<ListenerConfig>), Unserved> {
    let ips = addresses
        .iter()
        .map(|a| config::parse_vip(a).map(|(ip, _)| ip))
        .collect::<Result<Vec<IpAddr>, _>>()
        .map_err(|e| Unserved::Fault(e.to_string()))?;
    let listeners = listeners_of(vip, addresses, inputs, out)?;
    let plan = EcmpPlan {
        key: key.to_string(),
        addresses: ips,
        listeners: listeners.iter().map(|l| l.name.clone()).collect(),
        local_endpoint: local_endpoint(vip, inputs.local_endpoints),
        warnings: Vec::new(),
        peers: ecmp_peers(vip, &inputs.node.name),
    };
    Ok((Served::Ecmp(plan), listeners))
}

/// Whether a Service of `externalTrafficPolicy: Local` that `vip` carries has a ready endpoint
/// on this node; `None` when it carries none.
fn local_endpoint(vip: &VirtualIP, ready_here: &BTreeSet<String>) -> Option<bool> {
    let services = buoy_crds::service::local_endpoints_of(&vip.metadata);
    if services.is_empty() {
        return None;
    }
    let namespace = vip.metadata.namespace.as_deref();
    Some(
        services
            .iter()
            .any(|s| ready_here.contains(&contract::key(namespace, Some(s)))),
    )
}

/// The address policy and placement for a VirtualIP with `addresses`: `Some(pool in effect)`
/// when it runs on this node (and this agent), `None` when the pool's nodes or the placement
/// leave this node out.
fn admitted<'a>(
    vip: &VirtualIP,
    addresses: &[VipAddress],
    inputs: &Inputs<'a>,
) -> Result<Option<Option<&'a AddressPool>>, Unserved> {
    let namespace = vip
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(contract::DEFAULT_NAMESPACE);
    let ips: Vec<IpAddr> = addresses
        .iter()
        .filter_map(|a| config::parse_vip(a).ok().map(|(ip, _)| ip))
        .collect();
    let empty = BTreeMap::new();
    let pool = match policy::admit(
        inputs.policy,
        inputs.address_pools,
        namespace,
        inputs.namespaces.get(namespace).unwrap_or(&empty),
        &vip.spec,
        &ips,
    ) {
        Admission::Allowed(pool) => pool,
        // The operator reports it on the VirtualIP (Ready=False, AddressNotAllowed).
        Admission::NotAllowed(why) => return Err(Unserved::Skipped(format!("not served: {why}"))),
    };
    let pool_selector = pool.and_then(|p| p.spec.node_selector.as_ref());
    if !policy::selector_matches(pool_selector, &inputs.node.labels) {
        return Ok(None);
    }
    if let Some(p) = inputs.placement
        && buoy_crds::placement::key_in(&vip.spec, pool_selector) != p
    {
        return Ok(None);
    }
    Ok(Some(pool))
}

/// The VRRPv2 password of a VirtualIP, if it has one: wanted from the source, the last one
/// read kept (with a warning) while its Secret cannot be read, a fault when none was ever read.
fn vrrp_password(
    vip: &VirtualIP,
    inputs: &Inputs<'_>,
    out: &mut Plan,
    warnings: &mut Vec<String>,
) -> Result<Option<Vec<u8>>, Unserved> {
    let secret = password(vip, inputs.secrets);
    let Some(auth) = &vip.spec.vrrp.authentication else {
        return Ok(secret);
    };
    let namespace = vip
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(contract::DEFAULT_NAMESPACE);
    let id = (namespace.to_string(), auth.secret_ref.name.clone());
    out.wants.secrets.insert(id.clone());
    match (&secret, inputs.secret_problems.get(&id)) {
        (Some(_), Some(problem)) => warnings.push(format!(
            "VRRP password: Secret {}: {problem}; the last password read is used",
            auth.secret_ref.name
        )),
        (None, Some(problem)) => {
            return Err(Unserved::Fault(format!(
                "VRRP password: Secret {}: {problem}",
                auth.secret_ref.name
            )));
        }
        _ => {}
    }
    Ok(secret)
}

/// Two VirtualIPs with one router ID on one interface cannot both run here: the later ones
/// (by key) are faults, and their listeners go.
fn drop_shared_router_ids(out: &mut Plan) {
    let mut seen: BTreeMap<(Option<String>, u8, bool), String> = BTreeMap::new();
    let mut dropped = BTreeSet::new();
    for (key, plan) in &out.config.vips {
        let id = (
            plan.instance.interface.clone(),
            plan.instance.vrid,
            plan.instance
                .addresses
                .first()
                .is_some_and(|a| a.0.is_ipv6()),
        );
        if let Some(first) = seen.get(&id) {
            let why = format!(
                "virtualRouterID {} is already used by {first} on this node",
                plan.instance.vrid
            );
            for served in plan.served() {
                out.errors.push(PlanError {
                    key: served.clone(),
                    error: why.clone(),
                });
                out.config.faults.insert(served, why.clone());
            }
            dropped.insert(key.clone());
        } else {
            let name = match key.strip_prefix(contract::GROUP_KEY_PREFIX) {
                Some(g) => format!("VRRP group {g}"),
                None => format!("VirtualIP {key}"),
            };
            seen.insert(id, name);
        }
    }
    if !dropped.is_empty() {
        let gone: BTreeSet<String> = dropped
            .iter()
            .filter_map(|k| out.config.vips.remove(k))
            .flat_map(|p| p.listeners)
            .collect();
        out.config
            .proxy
            .listeners
            .retain(|l| !gone.contains(&l.name));
    }
}

/// The pools the listeners use, each on its own: a pool whose backends cannot be had leaves
/// only its listeners without them.
fn plan_pools(inputs: &Inputs<'_>, out: &mut Plan) {
    let used: BTreeSet<String> = out
        .config
        .proxy
        .listeners
        .iter()
        .flat_map(|l| l.pools().map(str::to_string))
        .collect();
    let known: BTreeSet<String> = inputs
        .pools
        .iter()
        .map(|p| contract::key_of(&p.metadata))
        .collect();
    // A route whose pool does not exist answers 503 and is said in the VirtualIP's status;
    // the listener's other routes serve.
    let with_tls: BTreeSet<String> = inputs
        .pools
        .iter()
        .filter(|p| p.spec.tls.is_some())
        .map(|p| contract::key_of(&p.metadata))
        .collect();
    for l in &mut out.config.proxy.listeners {
        for (i, r) in l.routes.iter().enumerate() {
            if !known.contains(&r.pool) {
                l.problems.push(buoy_crds::route_pool_not_found(i, &r.pool));
            }
        }
        if l.protocol == buoy_crds::ListenerProtocol::UDP
            && let Some(p) = l.pool.as_ref().filter(|p| with_tls.contains(*p))
        {
            l.problems.push(buoy_crds::udp_pool_with_tls(p));
        }
    }
    for p in inputs.pools {
        let key = contract::key_of(&p.metadata);
        if !used.contains(&key) {
            continue;
        }
        out.wants.names.extend(config::host_names(p));
        // A CA Secret is watched as certificates are: cert-manager renews CAs too.
        let tls = config::pool_tls(
            p,
            inputs.secrets,
            inputs.secret_problems,
            &mut out.wants.certificates,
        );
        let pool = config::pool(p, inputs.resolved, inputs.backends, tls);
        out.config.proxy.pools.insert(pool.name.clone(), pool);
    }
}

mod group;

#[cfg(test)]
mod tests;
