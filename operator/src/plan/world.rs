//! What a plan is made from: the objects the operator observes, its memory of its own recent
//! writes, the agents' settings and the time. Input only; every phase reads it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use buoy_crds::{
    AddressPool, BGPPeer, BackendCounts, UpstreamPool, VirtualIP, contract, policy::AddressPolicy,
};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::jiff::Timestamp;

use crate::allocate::Family;
use crate::daemonset::AgentSettings;

use super::services;

/// What the operator remembers between plans: its own writes that the caches may not show yet,
/// and the VRIDs that foreign routers use.
#[derive(Clone, Debug, Default)]
pub(crate) struct Memory {
    /// VRIDs written to `status.virtualRouterID`, by uid.
    pub(crate) vrids: HashMap<String, u8>,
    /// When a VirtualIP's VRID was last moved, by uid.
    pub(crate) moved: HashMap<String, Timestamp>,
    /// VRIDs on which agents saw foreign routers.
    pub(crate) foreign: BTreeSet<(Family, u8)>,
    /// VRIDs a VirtualIP left for foreign routers, by uid, until its annotation shows them (the
    /// move's status write can succeed where its annotation write failed).
    pub(crate) left: HashMap<String, BTreeSet<u8>>,
    /// Addresses allocated from a pool and written to `status.addresses`, by uid, until the
    /// cache shows them (two passes must not hand one address out twice).
    pub(crate) addresses: HashMap<String, Vec<String>>,
    /// Addresses given to Services in the last pass, by Service key (the caches may not show
    /// their VirtualIPs yet).
    pub(crate) service_addresses: BTreeMap<String, Vec<services::Record>>,
    /// What the last Event on each Service said, by Service key.
    pub(crate) service_told: BTreeMap<String, String>,
}

/// Everything a plan is made from.
pub(crate) struct World<'a> {
    pub(crate) vips: Vec<&'a VirtualIP>,
    /// Every Service (the phase picks the LoadBalancers of Buoy's class).
    pub(crate) services: Vec<&'a Service>,
    pub(crate) load_balancers: &'a services::Settings,
    pub(crate) pools: Vec<&'a UpstreamPool>,
    pub(crate) address_pools: Vec<&'a AddressPool>,
    /// BGPPeers, with the sessions their agents report.
    pub(crate) bgp_peers: Vec<&'a BGPPeer>,
    /// Namespace labels, for AddressPools' `namespaceSelector`.
    pub(crate) namespaces: &'a BTreeMap<String, BTreeMap<String, String>>,
    pub(crate) policy: AddressPolicy,
    pub(crate) nodes: Vec<&'a Node>,
    /// Endpoint counts of Services, by [`contract::key`].
    pub(crate) endpoints: &'a BTreeMap<String, BackendCounts>,
    pub(crate) memory: &'a Memory,
    pub(crate) agents: &'a AgentSettings,
    pub(crate) now: Timestamp,
    /// How long a deleted VirtualIP waits for its master to let go.
    pub(crate) release_timeout_secs: i64,
}

impl<'a> World<'a> {
    /// Nodes whose Ready condition is Unknown: the API server no longer hears from their
    /// kubelet, and their agents' reports may be stale. (Ready False is a kubelet that still
    /// reports, a runtime or network plugin trouble: its agent's reports are as fresh as any.)
    pub(crate) fn lost_nodes(&self) -> BTreeSet<&'a str> {
        self.nodes
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                    .is_some_and(|c| c.status == "Unknown")
            })
            .filter_map(|n| n.metadata.name.as_deref())
            .collect()
    }
}

/// The VirtualIP's [`contract::key`] (`namespace/name`), as the agents name it.
pub(crate) fn key_of(vip: &VirtualIP) -> String {
    contract::key_of(&vip.metadata)
}

/// The VirtualIP's namespace ([`contract::DEFAULT_NAMESPACE`] when it names none, as the
/// agents read it).
pub(crate) fn namespace_of(vip: &VirtualIP) -> &str {
    vip.metadata
        .namespace
        .as_deref()
        .unwrap_or(contract::DEFAULT_NAMESPACE)
}
