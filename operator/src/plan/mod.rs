//! The plan, pure: everything the operator observes (VirtualIPs, UpstreamPools, Nodes, endpoint
//! counts, its own memory of recent writes, the time) becomes one desired state — the agent
//! DaemonSets, each VirtualIP's allocations, annotations, finalizer and status, each
//! UpstreamPool's status — together with what differs from what is observed and the Events that
//! explain the decisions. The controller only applies the differences.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use buoy_crds::{
    AddressPool, BackendCounts, NodeStatus, UpstreamPool, VipAddress, VirtualIP, VrrpState,
    policy::AddressPolicy,
};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::allocate::{self, Family, MoveReason, PriorityRequest, Vrid, VridClaim};
use crate::conditions::{self, CONFLICT, DEGRADED, READY, Want};
use crate::daemonset::{self, AgentSettings, Owner, Placement};
use crate::selection;

pub mod addresses;

pub use buoy_crds::contract::{CONFLICT_ANNOTATION, PRIORITIES_ANNOTATION};
/// Annotation on a VirtualIP whose VRID moved because foreign routers used it: the VRIDs it left
/// (comma-separated), so that they stay avoided after an operator restart.
pub const AVOIDED_ANNOTATION: &str = "buoy.io/avoided-virtual-router-ids";
/// Finalizer that holds a deleted VirtualIP until no node holds its addresses.
pub const FINALIZER: &str = "buoy.io/release";
/// The operator's field manager for server-side apply.
pub const FIELD_MANAGER: &str = "buoy-operator";

/// Owner references on an agent DaemonSet: its placement's oldest VirtualIPs (in its
/// namespace), not all of them, so that a placement of thousands of VirtualIPs does not make a
/// DaemonSet of thousands of references rewritten on every change. Safe because a VirtualIP's
/// finalizer holds it until the operator has moved the references to the next ones; the
/// operator deletes a DaemonSet whose placement is unused, and the references are only the
/// backstop for when it is not running.
pub const MAX_OWNERS: usize = 8;

/// How long the operator ignores foreign-router reports on a VirtualIP after moving its VRID
/// (the agents' reports still describe the old one until they reconfigure).
pub const FOREIGN_COOLDOWN_SECS: i64 = 30;

/// What the operator remembers between plans: its own writes that the caches may not show yet,
/// and the VRIDs that foreign routers use.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    /// VRIDs written to `status.virtualRouterID`, by uid.
    pub vrids: HashMap<String, u8>,
    /// When a VirtualIP's VRID was last moved, by uid.
    pub moved: HashMap<String, Timestamp>,
    /// VRIDs on which agents saw foreign routers.
    pub foreign: BTreeSet<(Family, u8)>,
    /// VRIDs a VirtualIP left for foreign routers, by uid, until its annotation shows them (the
    /// move's status write can succeed where its annotation write failed).
    pub left: HashMap<String, BTreeSet<u8>>,
    /// Addresses allocated from a pool and written to `status.addresses`, by uid, until the
    /// cache shows them (two passes must not hand one address out twice).
    pub addresses: HashMap<String, Vec<String>>,
}

/// Everything a plan is made from.
pub struct World<'a> {
    pub vips: Vec<&'a VirtualIP>,
    pub pools: Vec<&'a UpstreamPool>,
    pub address_pools: Vec<&'a AddressPool>,
    /// Namespace labels, for AddressPools' `namespaceSelector`.
    pub namespaces: &'a BTreeMap<String, BTreeMap<String, String>>,
    pub policy: AddressPolicy,
    pub nodes: Vec<&'a Node>,
    /// Endpoint counts of Services, by (namespace, name).
    pub endpoints: &'a BTreeMap<(String, String), BackendCounts>,
    pub memory: &'a Memory,
    pub agents: &'a AgentSettings,
    pub now: Timestamp,
    /// How long a deleted VirtualIP waits for its master to let go.
    pub release_timeout_secs: i64,
}

/// An Event the controller publishes about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

impl Decision {
    fn normal(reason: &str, note: impl Into<String>) -> Decision {
        Decision {
            warning: false,
            reason: reason.into(),
            note: note.into(),
        }
    }
    fn warning(reason: &str, note: impl Into<String>) -> Decision {
        Decision {
            warning: true,
            reason: reason.into(),
            note: note.into(),
        }
    }
}

/// The fields of a VirtualIP's metadata the operator owns.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Meta {
    pub priorities: Option<String>,
    pub conflict: Option<String>,
    /// [`AVOIDED_ANNOTATION`].
    pub avoided: Option<String>,
    pub finalizer: bool,
}

/// The fields of a VirtualIP's status the operator owns.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Status {
    pub observed_generation: Option<i64>,
    pub conditions: Vec<Condition>,
    pub master: Option<String>,
    pub virtual_router_id: Option<u8>,
    /// The addresses in effect (admitted, or allocated).
    pub addresses: Vec<String>,
    pub address_pool: Option<String>,
}

/// The plan for one VirtualIP.
#[derive(Clone, Debug)]
pub struct VirtualIpPlan {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub vrid: Vrid,
    pub meta: Meta,
    pub meta_changed: bool,
    /// None while the VirtualIP is being deleted.
    pub status: Option<Status>,
    pub status_changed: bool,
    pub events: Vec<Decision>,
}

/// The plan for one UpstreamPool's status.
#[derive(Clone, Debug)]
pub struct UpstreamPoolPlan {
    pub namespace: String,
    pub name: String,
    pub observed_generation: Option<i64>,
    pub backends: BackendCounts,
    pub conditions: Vec<Condition>,
    pub changed: bool,
}

/// The whole desired state.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Agent DaemonSets by placement key, as applied.
    pub daemonsets: BTreeMap<String, Value>,
    pub vips: Vec<VirtualIpPlan>,
    pub pools: Vec<UpstreamPoolPlan>,
    pub address_pools: Vec<addresses::AddressPoolPlan>,
    /// VRIDs known to be used by foreign routers (the next [`Memory::foreign`]).
    pub foreign: BTreeSet<(Family, u8)>,
    /// When to plan again even if nothing changes (a release timeout), in seconds.
    pub wake_after_secs: Option<i64>,
}

impl Meta {
    fn observed(vip: &VirtualIP) -> Meta {
        let ann = vip.metadata.annotations.as_ref();
        Meta {
            priorities: ann.and_then(|a| a.get(PRIORITIES_ANNOTATION)).cloned(),
            conflict: ann.and_then(|a| a.get(CONFLICT_ANNOTATION)).cloned(),
            avoided: ann.and_then(|a| a.get(AVOIDED_ANNOTATION)).cloned(),
            finalizer: vip
                .metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == FINALIZER),
        }
    }

    /// The server-side apply body (field manager [`FIELD_MANAGER`]): fields left out are
    /// released, so a removed annotation or finalizer goes.
    pub fn apply_body(&self, namespace: &str, name: &str) -> Value {
        let mut annotations = serde_json::Map::new();
        if let Some(p) = &self.priorities {
            annotations.insert(PRIORITIES_ANNOTATION.into(), json!(p));
        }
        if let Some(c) = &self.conflict {
            annotations.insert(CONFLICT_ANNOTATION.into(), json!(c));
        }
        if let Some(a) = &self.avoided {
            annotations.insert(AVOIDED_ANNOTATION.into(), json!(a));
        }
        let mut metadata =
            json!({"name": name, "namespace": namespace, "annotations": annotations});
        if self.finalizer {
            metadata["finalizers"] = json!([FINALIZER]);
        }
        json!({"apiVersion": buoy_crds::API_VERSION, "kind": "VirtualIP", "metadata": metadata})
    }
}

impl Status {
    fn observed(vip: &VirtualIP) -> Status {
        let Some(s) = &vip.status else {
            return Status::default();
        };
        let mut conditions: Vec<Condition> = s
            .conditions
            .iter()
            .filter(|c| [READY, DEGRADED, CONFLICT].contains(&c.type_.as_str()))
            .cloned()
            .collect();
        // A list-map keeps no order that matters: compare by type.
        conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
        Status {
            observed_generation: s.observed_generation,
            conditions,
            master: s.master.clone(),
            virtual_router_id: s.virtual_router_id,
            addresses: s.addresses.clone(),
            address_pool: s.address_pool.clone(),
        }
    }

    /// The server-side apply body for the status subresource.
    pub fn apply_body(&self, namespace: &str, name: &str) -> Value {
        let mut status = json!({"conditions": self.conditions});
        if let Some(g) = self.observed_generation {
            status["observedGeneration"] = json!(g);
        }
        if let Some(m) = &self.master {
            status["master"] = json!(m);
        }
        if let Some(v) = self.virtual_router_id {
            status["virtualRouterID"] = json!(v);
        }
        if !self.addresses.is_empty() {
            status["addresses"] = json!(self.addresses);
        }
        if let Some(p) = &self.address_pool {
            status["addressPool"] = json!(p);
        }
        json!({"apiVersion": buoy_crds::API_VERSION, "kind": "VirtualIP",
               "metadata": {"name": name, "namespace": namespace}, "status": status})
    }
}

impl UpstreamPoolPlan {
    pub fn apply_body(&self) -> Value {
        let mut status = json!({"conditions": self.conditions, "backends": self.backends});
        if let Some(g) = self.observed_generation {
            status["observedGeneration"] = json!(g);
        }
        json!({"apiVersion": buoy_crds::API_VERSION, "kind": "UpstreamPool",
               "metadata": {"name": self.name, "namespace": self.namespace}, "status": status})
    }
}

fn id_of(vip: &VirtualIP) -> String {
    format!(
        "{}/{}",
        vip.metadata.namespace.as_deref().unwrap_or_default(),
        vip.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The IP part of each address, parsed (so that `fd00::1` and `fd00:0::1/64` are the same).
fn ips(vip: &VirtualIP) -> BTreeSet<IpAddr> {
    vip.spec
        .addresses
        .iter()
        .filter_map(|a| a.0.split('/').next()?.parse().ok())
        .collect()
}

/// Why `later` cannot be served next to `earlier`, if it cannot.
fn clash(
    later: &VirtualIP,
    later_vrid: Option<u8>,
    earlier: &VirtualIP,
    earlier_vrid: Option<u8>,
) -> Option<(&'static str, String)> {
    let other = id_of(earlier);
    let shared: Vec<String> = ips(later)
        .intersection(&ips(earlier))
        .map(ToString::to_string)
        .collect();
    if !shared.is_empty() {
        return Some((
            "AddressInUse",
            format!(
                "address {} is already used by VirtualIP {other}",
                shared.join(", ")
            ),
        ));
    }
    let same_interface = match (&later.spec.interface, &earlier.spec.interface) {
        (Some(a), Some(b)) => a == b,
        // The default interface is the one holding the address's subnet: it may be the same.
        _ => true,
    };
    if Family::of(&later.spec) == Family::of(&earlier.spec)
        && same_interface
        && later_vrid.is_some()
        && later_vrid == earlier_vrid
    {
        let on = later
            .spec
            .interface
            .as_deref()
            .or(earlier.spec.interface.as_deref())
            .map(|i| format!(" on interface {i}"))
            .unwrap_or_default();
        return Some((
            "VirtualRouterIDInUse",
            format!(
                "virtual router ID {}{on} is already used by VirtualIP {other}",
                later_vrid.unwrap_or_default()
            ),
        ));
    }
    None
}

/// A listener on the agent's own port cannot bind on the agent's host network.
fn reserved_port(vip: &VirtualIP) -> Option<(&'static str, String)> {
    vip.spec
        .listeners
        .iter()
        .find(|l| l.port == daemonset::AGENT_PORT)
        .map(|l| {
            (
                "PortInUse",
                format!(
                    "listener {} uses port {}, the port of the node agent's metrics and probes",
                    l.name,
                    daemonset::AGENT_PORT
                ),
            )
        })
}

/// Plans everything. Objects without a name are skipped (the API server never returns them).
pub fn plan_world(world: &World) -> Plan {
    let now = world.now;
    let mut vips: Vec<&VirtualIP> = world
        .vips
        .iter()
        .copied()
        .filter(|v| v.metadata.name.is_some())
        .collect();
    // Precedence: oldest first, then by namespace and name.
    vips.sort_by(|a, b| {
        let t = |v: &VirtualIP| v.metadata.creation_timestamp.as_ref().map(|t| t.0);
        t(a).cmp(&t(b)).then_with(|| id_of(a).cmp(&id_of(b)))
    });
    let uid = |v: &VirtualIP| v.metadata.uid.clone();

    // Addresses: the policy decides which VirtualIPs are served, on which addresses. The rest
    // of the plan sees each served VirtualIP with its addresses in effect in its spec; those
    // not served get their reason and nothing else.
    let phase = addresses::decide(
        &vips,
        &world.address_pools,
        world.namespaces,
        world.policy,
        &world.memory.addresses,
        now,
    );
    let mut effective: Vec<VirtualIP> = Vec::new();
    let mut served_by: Vec<(Option<String>, Option<LabelSelector>)> = Vec::new();
    let mut not_served: Vec<(&VirtualIP, &'static str, String)> = Vec::new();
    for (v, standing) in vips.iter().zip(phase.standings) {
        match standing {
            addresses::Standing::Served {
                addresses,
                pool,
                pool_selector,
            } => {
                let mut e = (*v).clone();
                e.spec.addresses = addresses.into_iter().map(VipAddress).collect();
                effective.push(e);
                served_by.push((pool, pool_selector));
            }
            addresses::Standing::NotServed { reason, message } => {
                not_served.push((v, reason, message));
            }
        }
    }
    let vips: Vec<&VirtualIP> = effective.iter().collect();

    // VRIDs.
    let in_cooldown = |v: &VirtualIP| {
        uid(v)
            .and_then(|u| world.memory.moved.get(&u).copied())
            .is_some_and(|t| now.as_second() - t.as_second() < FOREIGN_COOLDOWN_SECS)
    };
    let foreign_routers = |v: &VirtualIP| -> Vec<String> {
        v.status
            .iter()
            .flat_map(|s| &s.nodes)
            .flat_map(|n| n.foreign_routers.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    let claims: Vec<VridClaim> = vips
        .iter()
        .map(|v| VridClaim {
            id: id_of(v),
            family: Family::of(&v.spec),
            interface: v.spec.interface.clone(),
            spec: v.spec.virtual_router_id,
            recorded: uid(v)
                .and_then(|u| world.memory.vrids.get(&u).copied())
                .or_else(|| v.status.as_ref().and_then(|s| s.virtual_router_id)),
            foreign: !foreign_routers(v).is_empty() && !in_cooldown(v),
        })
        .collect();
    let mut foreign = world.memory.foreign.clone();
    // What earlier moves recorded (the operator may have restarted since).
    let avoided: Vec<BTreeSet<u8>> = vips
        .iter()
        .map(|v| {
            let mut ids = avoided_of(v);
            if let Some(left) = uid(v).and_then(|u| world.memory.left.get(&u)) {
                ids.extend(left);
            }
            ids
        })
        .collect();
    for (c, ids) in claims.iter().zip(&avoided) {
        foreign.extend(ids.iter().map(|id| (c.family, *id)));
    }
    for c in &claims {
        if c.foreign
            && let Some(v) = c.spec.or(c.recorded)
        {
            foreign.insert((c.family, v));
        }
    }
    let vrids = allocate::vrids(&claims, &foreign);

    // Conflicts, against earlier VirtualIPs that are served. Indexed by address and by VRID so
    // that only candidates are compared (linear, not quadratic, in the number of VirtualIPs).
    let mut conflicts: Vec<Option<(&'static str, String)>> = Vec::with_capacity(vips.len());
    let mut by_ip: HashMap<IpAddr, Vec<usize>> = HashMap::new();
    let mut by_vrid: HashMap<(Family, u8), Vec<usize>> = HashMap::new();
    for (i, v) in vips.iter().enumerate() {
        let my_ips = ips(v);
        let found = reserved_port(v).or_else(|| {
            let mut candidates: Vec<usize> = my_ips
                .iter()
                .filter_map(|ip| by_ip.get(ip))
                .flatten()
                .copied()
                .collect();
            if let Some(vr) = vrids[i].value() {
                candidates.extend(
                    by_vrid
                        .get(&(Family::of(&v.spec), vr))
                        .into_iter()
                        .flatten(),
                );
            }
            candidates.sort_unstable();
            candidates.dedup();
            candidates
                .into_iter()
                .find_map(|j| clash(v, vrids[i].value(), vips[j], vrids[j].value()))
        });
        if found.is_none() {
            for ip in my_ips {
                by_ip.entry(ip).or_default().push(i);
            }
            if let Some(vr) = vrids[i].value() {
                by_vrid
                    .entry((Family::of(&v.spec), vr))
                    .or_default()
                    .push(i);
            }
        }
        conflicts.push(found);
    }

    // Nodes and priorities.
    let selected: Vec<Vec<String>> = vips
        .iter()
        .zip(&served_by)
        .map(|(v, (_, pool_selector))| {
            selection::nodes(
                world.nodes.iter().copied(),
                v.spec.node_selector.as_ref(),
                pool_selector.as_ref(),
                v.spec.tolerations.as_deref(),
            )
        })
        .collect();
    let requests: Vec<(usize, PriorityRequest)> = vips
        .iter()
        .enumerate()
        .filter(|(i, _)| conflicts[*i].is_none())
        .map(|(i, v)| {
            let fixed_master = v.spec.priorities.as_ref().map(|p| {
                p.iter()
                    .max_by(|a, b| a.priority.cmp(&b.priority).then(b.node.cmp(&a.node)))
                    .map(|p| p.node.clone())
                    .unwrap_or_default()
            });
            (
                i,
                PriorityRequest {
                    id: uid(v).unwrap_or_else(|| id_of(v)),
                    nodes: selected[i].clone(),
                    fixed_master,
                },
            )
        })
        .collect();
    let assigned =
        allocate::priorities(&requests.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>());
    let mut priorities: HashMap<usize, BTreeMap<String, u8>> = HashMap::new();
    for ((i, _), p) in requests.iter().zip(assigned) {
        if let Some(p) = p.filter(|p| !p.is_empty()) {
            priorities.insert(*i, p);
        }
    }

    // Pools by (namespace, name).
    let pools: BTreeSet<(String, String)> = world
        .pools
        .iter()
        .filter_map(|p| Some((p.metadata.namespace.clone()?, p.metadata.name.clone()?)))
        .collect();

    // DaemonSets. Owners: the oldest VirtualIPs of the placement in the DaemonSet's namespace,
    // those not being deleted first, at most MAX_OWNERS (see its doc).
    let mut placements: BTreeMap<String, (Placement, Vec<Owner>)> = BTreeMap::new();
    for (v, (_, pool_selector)) in vips.iter().zip(&served_by) {
        let key = buoy_crds::placement::key_in(&v.spec, pool_selector.as_ref());
        let (placement, deleting_owners) = placements.entry(key.clone()).or_insert_with(|| {
            (
                Placement {
                    key,
                    node_selector: v.spec.node_selector.clone(),
                    pool_node_selector: pool_selector.clone(),
                    tolerations: v.spec.tolerations.clone(),
                    owners: Vec::new(),
                },
                Vec::new(),
            )
        });
        if v.metadata.namespace.as_deref() == Some(world.agents.namespace.as_str())
            && let (Some(name), Some(uid)) = (&v.metadata.name, &v.metadata.uid)
        {
            let owner = Owner {
                name: name.clone(),
                uid: uid.clone(),
            };
            if v.metadata.deletion_timestamp.is_some() {
                deleting_owners.push(owner);
            } else {
                placement.owners.push(owner);
            }
        }
    }
    let daemonsets = placements
        .into_iter()
        .map(|(k, (mut p, deleting))| {
            p.owners.extend(deleting);
            p.owners.truncate(MAX_OWNERS);
            p.owners.sort();
            (k, daemonset::desired(world.agents, &p))
        })
        .collect();

    let down = lost(&world.nodes);
    // Each VirtualIP.
    let mut wake_after_secs: Option<i64> = None;
    let mut out = Vec::with_capacity(vips.len());
    for (i, v) in vips.iter().enumerate() {
        let namespace = v.metadata.namespace.clone().unwrap_or_default();
        let name = v.metadata.name.clone().unwrap_or_default();
        let observed_meta = Meta::observed(v);
        let observed_status = Status::observed(v);
        let mut events = Vec::new();
        let nodes = v
            .status
            .as_ref()
            .map(|s| s.nodes.as_slice())
            .unwrap_or_default();
        // Every node that says Master, live or not: a deletion waits for all of them.
        let masters: Vec<&str> = nodes
            .iter()
            .filter(|n| n.state == VrrpState::Master)
            .map(|n| n.node.as_str())
            .collect();
        let live_masters: Vec<&str> = masters
            .iter()
            .copied()
            .filter(|n| !down.contains(n))
            .collect();

        let deleting = v.metadata.deletion_timestamp.is_some();
        let mut meta = Meta {
            priorities: priorities
                .get(&i)
                .and_then(|p| serde_json::to_string(p).ok()),
            conflict: conflicts[i].as_ref().map(|(_, m)| m.clone()),
            avoided: {
                let mut ids = avoided[i].clone();
                if let Vrid::Allocated {
                    moved: Some((old, MoveReason::ForeignRouters)),
                    ..
                } = &vrids[i]
                {
                    ids.insert(*old);
                }
                if ids.is_empty() {
                    // Nothing to record, or a value that is not ours to fix: left as it is, so
                    // that every pass does not try to remove it again.
                    observed_meta.avoided.clone()
                } else {
                    Some(ids.iter().map(u8::to_string).collect::<Vec<_>>().join(","))
                }
            },
            finalizer: !deleting || observed_meta.finalizer,
        };
        if deleting && observed_meta.finalizer {
            let (keep, event, wait) = release(v, &masters, now, world.release_timeout_secs);
            meta.finalizer = keep;
            events.extend(event);
            if let Some(left) = wait {
                wake_after_secs = Some(wake_after_secs.map_or(left, |w| w.min(left)));
            }
        }
        if deleting {
            // Keep what the agents read until the object goes.
            meta.priorities = observed_meta.priorities.clone();
            meta.conflict = observed_meta.conflict.clone();
            meta.avoided = observed_meta.avoided.clone();
        }
        let meta_changed = meta != observed_meta;
        // Told when an assignment changes (a node came or went), not when it is first made.
        if meta_changed
            && !deleting
            && meta.priorities.is_some()
            && observed_meta.priorities.is_some()
            && meta.priorities != observed_meta.priorities
        {
            let text = priorities
                .get(&i)
                .map(|p| {
                    p.iter()
                        .map(|(n, v)| format!("{n}={v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            events.push(Decision::normal("PrioritiesAssigned", text));
        }

        // VRID events.
        match &vrids[i] {
            Vrid::Allocated { vrid, moved: None }
                if observed_status.virtual_router_id.is_none() =>
            {
                events.push(Decision::normal(
                    "VirtualRouterIDAllocated",
                    format!("allocated virtual router ID {vrid}"),
                ));
            }
            Vrid::Allocated {
                vrid,
                moved: Some((old, why)),
            } => {
                let why = match why {
                    MoveReason::ForeignRouters => format!(
                        "foreign routers use it on the LAN ({})",
                        foreign_routers(v).join(", ")
                    ),
                    MoveReason::TakenBySpec(o) => format!("VirtualIP {o} names it in its spec"),
                    MoveReason::TakenByEarlier(o) => format!("VirtualIP {o} holds it"),
                };
                events.push(Decision::warning(
                    "VirtualRouterIDMoved",
                    format!("virtual router ID {old} moved to {vrid}: {why}"),
                ));
            }
            _ => {}
        }

        let status = (!deleting).then(|| {
            let wants = vip_conditions(
                v,
                &vrids[i],
                conflicts[i].as_ref(),
                &selected[i],
                &pools,
                &foreign_routers(v),
                &down,
            );
            let generation = v.metadata.generation;
            let mut built: Vec<Condition> = wants
                .iter()
                .map(|w| conditions::build(w, generation, now, &observed_status.conditions))
                .collect();
            for (w, c) in wants.iter().zip(&built) {
                let before = conditions::find(&observed_status.conditions, w.type_);
                let changed = before.is_none_or(|b| b.status != c.status || b.reason != c.reason);
                let worth = match w.type_ {
                    CONFLICT => w.status || before.is_some(),
                    READY => before.is_some() || w.reason == "UpstreamPoolNotFound",
                    _ => w.status || before.is_some_and(|b| b.status == "True"),
                };
                if changed && worth {
                    let bad = (w.type_ == READY) != w.status;
                    events.push(Decision {
                        warning: bad,
                        reason: w.reason.clone(),
                        note: format!("{} {}: {}", w.type_, c.status, w.message),
                    });
                }
            }
            built.sort_by(|a, b| a.type_.cmp(&b.type_));
            Status {
                observed_generation: generation,
                conditions: built,
                master: (live_masters.len() == 1).then(|| live_masters[0].to_string()),
                virtual_router_id: vrids[i].value(),
                addresses: v.spec.addresses.iter().map(|a| a.0.clone()).collect(),
                address_pool: served_by[i].0.clone(),
            }
        });
        let status_changed = status.as_ref().is_some_and(|s| *s != observed_status);
        out.push(VirtualIpPlan {
            namespace,
            name,
            uid: uid(v),
            vrid: vrids[i].clone(),
            meta,
            meta_changed,
            status,
            status_changed,
            events,
        });
    }

    for (v, reason, message) in not_served {
        let (plan, wait) = not_served_plan(v, reason, message, world);
        if let Some(left) = wait {
            wake_after_secs = Some(wake_after_secs.map_or(left, |w| w.min(left)));
        }
        out.push(plan);
    }

    Plan {
        daemonsets,
        vips: out,
        pools: plan_pools(world),
        address_pools: phase.pools,
        foreign,
        wake_after_secs,
    }
}

/// Whether a deleted VirtualIP's finalizer stays (it waits for `masters` to let go, up to the
/// release timeout), the Event that says why it goes, and how long to wait otherwise.
fn release(
    v: &VirtualIP,
    masters: &[&str],
    now: Timestamp,
    timeout_secs: i64,
) -> (bool, Option<Decision>, Option<i64>) {
    let since = v
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(now.as_second());
    let waited = now.as_second() - since;
    if masters.is_empty() {
        (
            false,
            Some(Decision::normal(
                "Released",
                "no node holds the addresses; deletion proceeds",
            )),
            None,
        )
    } else if waited >= timeout_secs {
        (
            false,
            Some(Decision::warning(
                "ReleaseTimedOut",
                format!(
                    "{} still reported as master after {timeout_secs}s (agent gone?); deletion proceeds",
                    masters.join(", ")
                ),
            )),
            None,
        )
    } else {
        (true, None, Some(timeout_secs - waited))
    }
}

/// The plan of a VirtualIP the address policy does not let be served: Ready is False with
/// `reason` and the message, nothing is allocated for it (no router ID, no priorities, no
/// placement), and the agents, which decide the same, do not serve it. A deletion still waits
/// for a node that held its addresses before to let go.
fn not_served_plan(
    v: &VirtualIP,
    reason: &'static str,
    message: String,
    world: &World,
) -> (VirtualIpPlan, Option<i64>) {
    let now = world.now;
    let observed_meta = Meta::observed(v);
    let observed_status = Status::observed(v);
    let deleting = v.metadata.deletion_timestamp.is_some();
    let masters: Vec<&str> = v
        .status
        .iter()
        .flat_map(|s| &s.nodes)
        .filter(|n| n.state == VrrpState::Master)
        .map(|n| n.node.as_str())
        .collect();
    let mut events = Vec::new();
    let mut wait = None;
    let mut meta = Meta {
        priorities: None,
        conflict: None,
        avoided: observed_meta.avoided.clone(),
        finalizer: !deleting || observed_meta.finalizer,
    };
    if deleting && observed_meta.finalizer {
        let (keep, event, left) = release(v, &masters, now, world.release_timeout_secs);
        meta.finalizer = keep;
        events.extend(event);
        wait = left;
    }
    if deleting {
        meta.clone_from(&Meta {
            finalizer: meta.finalizer,
            ..observed_meta.clone()
        });
    }
    let meta_changed = meta != observed_meta;
    let status = (!deleting).then(|| {
        let wants = [
            Want::new(READY, false, reason, message.clone()),
            Want::new(DEGRADED, false, "NotServed", "not served: see Ready"),
            Want::new(
                CONFLICT,
                false,
                "NoConflict",
                "no other VirtualIP uses its addresses, router ID or ports",
            ),
        ];
        let generation = v.metadata.generation;
        let mut built: Vec<Condition> = wants
            .iter()
            .map(|w| conditions::build(w, generation, now, &observed_status.conditions))
            .collect();
        let before = conditions::find(&observed_status.conditions, READY);
        if before.is_none_or(|b| b.reason != reason || b.message != message) {
            events.push(Decision::warning(reason, message.clone()));
        }
        built.sort_by(|a, b| a.type_.cmp(&b.type_));
        Status {
            observed_generation: generation,
            conditions: built,
            master: None,
            virtual_router_id: None,
            addresses: Vec::new(),
            address_pool: None,
        }
    });
    let status_changed = status.as_ref().is_some_and(|s| *s != observed_status);
    (
        VirtualIpPlan {
            namespace: v.metadata.namespace.clone().unwrap_or_default(),
            name: v.metadata.name.clone().unwrap_or_default(),
            uid: v.metadata.uid.clone(),
            vrid: Vrid::Exhausted,
            meta,
            meta_changed,
            status,
            status_changed,
            events,
        },
        wait,
    )
}

/// The VRIDs a VirtualIP's [`AVOIDED_ANNOTATION`] records; what does not parse is ignored (the
/// operator writes the annotation, a hand edit only loses a hint).
pub fn avoided_of(v: &VirtualIP) -> BTreeSet<u8> {
    v.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(AVOIDED_ANNOTATION))
        .map(|s| {
            s.split(',')
                .filter_map(|id| id.trim().parse::<u8>().ok())
                .filter(|id| *id >= 1)
                .collect()
        })
        .unwrap_or_default()
}

/// Nodes whose Ready condition is Unknown: the API server no longer hears from their kubelet,
/// and their agents' reports may be stale. (Ready False is a kubelet that still reports, a
/// runtime or network plugin trouble: its agent's reports are as fresh as any.)
fn lost<'a>(nodes: &[&'a Node]) -> BTreeSet<&'a str> {
    nodes
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

/// Ready, Degraded and Conflict of one VirtualIP.
fn vip_conditions(
    v: &VirtualIP,
    vrid: &Vrid,
    conflict: Option<&(&'static str, String)>,
    selected: &[String],
    pools: &BTreeSet<(String, String)>,
    foreign: &[String],
    down: &BTreeSet<&str>,
) -> Vec<Want> {
    let namespace = v.metadata.namespace.clone().unwrap_or_default();
    let all = v
        .status
        .as_ref()
        .map(|s| s.nodes.as_slice())
        .unwrap_or_default();
    // A node the API server has lost keeps its last report (a cut master still says Master):
    // it is left out of the count and named instead.
    let (stale, nodes): (Vec<&NodeStatus>, Vec<&NodeStatus>) =
        all.iter().partition(|n| down.contains(n.node.as_str()));
    let in_state = |s: VrrpState| -> Vec<&str> {
        nodes
            .iter()
            .filter(|n| n.state == s)
            .map(|n| n.node.as_str())
            .collect()
    };
    let masters = in_state(VrrpState::Master);
    let backups = in_state(VrrpState::Backup);
    let missing: Vec<String> = v
        .spec
        .listeners
        .iter()
        .filter(|l| !pools.contains(&(namespace.clone(), l.upstream_pool.clone())))
        .map(|l| format!("listener {}: UpstreamPool {}", l.name, l.upstream_pool))
        .collect();

    let conflict_want = match conflict {
        Some((reason, message)) => Want::new(CONFLICT, true, reason, message.clone()),
        None => Want::new(
            CONFLICT,
            false,
            "NoConflict",
            "no other VirtualIP uses its addresses, router ID or ports",
        ),
    };
    let ready = if let Some((_, message)) = conflict {
        Want::new(READY, false, "Conflict", format!("not served: {message}"))
    } else if matches!(vrid, Vrid::Exhausted) {
        Want::new(
            READY,
            false,
            "VirtualRouterIDExhausted",
            "every virtual router ID (1..255) of this address family is in use",
        )
    } else if !missing.is_empty() {
        Want::new(
            READY,
            false,
            "UpstreamPoolNotFound",
            format!("{} not found in namespace {namespace}", missing.join("; ")),
        )
    } else if selected.is_empty() {
        Want::new(
            READY,
            false,
            "NoNodes",
            "no node matches nodeSelector and tolerations",
        )
    } else if masters.len() > 1 {
        Want::new(
            READY,
            false,
            "MultipleMasters",
            format!("{} all report Master", masters.join(", ")),
        )
    } else if let Some(m) = masters.first() {
        let entry = nodes.iter().find(|n| n.node == *m);
        let serving = entry.and_then(|n| n.serving);
        if serving == Some(true) || (serving.is_none() && v.spec.listeners.is_empty()) {
            Want::new(READY, true, "Serving", format!("{m} holds the addresses"))
        } else {
            let why = entry
                .and_then(|n| n.message.clone())
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            Want::new(
                READY,
                false,
                "NotServing",
                format!("{m} holds the addresses but not every listener serves{why}"),
            )
        }
    } else if let Some(n) = stale.iter().find(|n| n.state == VrrpState::Master) {
        Want::new(
            READY,
            false,
            "MasterUnreachable",
            format!(
                "{} last reported Master, but its node's status is unknown (kubelet silent); no other node holds the addresses",
                n.node
            ),
        )
    } else {
        Want::new(READY, false, "NoMaster", "no node holds the addresses yet")
    };

    let faults: Vec<String> = nodes
        .iter()
        .filter(|n| n.state == VrrpState::Fault)
        .map(|n| match &n.message {
            Some(m) => format!("{} ({m})", n.node),
            None => n.node.clone(),
        })
        .collect();
    let degraded = if masters.len() > 1 {
        Want::new(
            DEGRADED,
            true,
            "MultipleMasters",
            format!("{} all report Master", masters.join(", ")),
        )
    } else if !faults.is_empty() {
        Want::new(
            DEGRADED,
            true,
            "NodeFault",
            format!("in Fault: {}", faults.join(", ")),
        )
    } else if !stale.is_empty() {
        let last: Vec<String> = stale
            .iter()
            .map(|n| format!("{} (last reported {:?})", n.node, n.state))
            .collect();
        Want::new(
            DEGRADED,
            true,
            "NodeUnreachable",
            format!("status unknown (kubelet silent): {}", last.join(", ")),
        )
    } else if matches!(vrid, Vrid::Spec(_)) && !foreign.is_empty() {
        Want::new(
            DEGRADED,
            true,
            "ForeignRouters",
            format!(
                "routers outside this VirtualIP use virtual router ID {} on the LAN: {}",
                vrid.value().unwrap_or_default(),
                foreign.join(", ")
            ),
        )
    } else if masters.len() == 1 && backups.is_empty() {
        Want::new(
            DEGRADED,
            true,
            "NoBackup",
            format!("only {} takes part", masters[0]),
        )
    } else {
        Want::new(
            DEGRADED,
            false,
            "Redundant",
            "a master and at least one backup",
        )
    };
    vec![ready, degraded, conflict_want]
}

fn plan_pools(world: &World) -> Vec<UpstreamPoolPlan> {
    let now = world.now;
    world
        .pools
        .iter()
        .filter_map(|p| {
            let namespace = p.metadata.namespace.clone()?;
            let name = p.metadata.name.clone()?;
            let backends = match (&p.spec.backends, &p.spec.service) {
                (Some(b), _) => BackendCounts {
                    total: u32::try_from(b.len()).unwrap_or(u32::MAX),
                    ready: u32::try_from(b.iter().filter(|b| !b.down).count()).unwrap_or(u32::MAX),
                },
                (None, Some(s)) => world
                    .endpoints
                    .get(&(namespace.clone(), s.name.clone()))
                    .cloned()
                    .unwrap_or(BackendCounts { total: 0, ready: 0 }),
                (None, None) => BackendCounts { total: 0, ready: 0 },
            };
            // What the nodes that run the pool report: names resolved, health checked.
            let reports = p
                .status
                .as_ref()
                .map(|s| s.nodes.as_slice())
                .unwrap_or_default();
            let problems: Vec<String> = reports
                .iter()
                .filter_map(|n| Some(format!("{}: {}", n.node, n.message.as_ref()?)))
                .collect();
            let want = if backends.ready == 0 {
                Want::new(
                    READY,
                    false,
                    "NoBackends",
                    format!("none of {} backends is available", backends.total),
                )
            } else if !reports.is_empty() && reports.iter().all(|n| n.backends.ready == 0) {
                let detail: Vec<String> = reports
                    .iter()
                    .map(|n| match &n.message {
                        Some(m) => format!("{}: {m}", n.node),
                        None => format!("{}: 0 of {} ready", n.node, n.backends.total),
                    })
                    .collect();
                Want::new(
                    READY,
                    false,
                    "NoHealthyBackends",
                    format!("no node has a usable backend ({})", detail.join("; ")),
                )
            } else {
                Want::new(
                    READY,
                    true,
                    "BackendsAvailable",
                    format!(
                        "{} of {} backends available",
                        backends.ready, backends.total
                    ),
                )
            };
            let degraded = if problems.is_empty() {
                Want::new(
                    DEGRADED,
                    false,
                    "NoProblems",
                    "every backend of the spec is there on every node",
                )
            } else {
                Want::new(DEGRADED, true, "BackendProblems", problems.join("; "))
            };
            let observed = p.status.clone().unwrap_or_default();
            let generation = p.metadata.generation;
            // Ready first; compared by type (a list-map keeps no order that matters).
            let conditions: Vec<Condition> = [want, degraded]
                .iter()
                .map(|w| conditions::build(w, generation, now, &observed.conditions))
                .collect();
            let mut before: Vec<&Condition> = observed
                .conditions
                .iter()
                .filter(|c| c.type_ == READY || c.type_ == DEGRADED)
                .collect();
            before.sort_by(|a, b| a.type_.cmp(&b.type_));
            let mut now_sorted: Vec<&Condition> = conditions.iter().collect();
            now_sorted.sort_by(|a, b| a.type_.cmp(&b.type_));
            let changed = observed.observed_generation != generation
                || observed.backends.as_ref() != Some(&backends)
                || before != now_sorted;
            Some(UpstreamPoolPlan {
                namespace,
                name,
                observed_generation: generation,
                backends,
                conditions,
                changed,
            })
        })
        .collect()
}

/// Endpoint counts of Services from their EndpointSlices: `total` endpoints, `ready` those
/// whose `conditions.ready` is not false (the Kubernetes convention: unknown means ready).
pub fn endpoint_counts<'a>(
    slices: impl IntoIterator<Item = &'a k8s_openapi::api::discovery::v1::EndpointSlice>,
) -> BTreeMap<(String, String), BackendCounts> {
    let mut out: BTreeMap<(String, String), BackendCounts> = BTreeMap::new();
    for s in slices {
        let (Some(ns), Some(svc)) = (
            s.metadata.namespace.clone(),
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .cloned(),
        ) else {
            continue;
        };
        let c = out
            .entry((ns, svc))
            .or_insert(BackendCounts { total: 0, ready: 0 });
        for e in &s.endpoints {
            let n = u32::try_from(e.addresses.len()).unwrap_or(u32::MAX);
            c.total = c.total.saturating_add(n);
            if e.conditions.as_ref().and_then(|c| c.ready) != Some(false) {
                c.ready = c.ready.saturating_add(n);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> AgentSettings {
        AgentSettings {
            namespace: "buoy-system".into(),
            image: "buoy-agent:test".into(),
            image_pull_policy: "IfNotPresent".into(),
            service_account: "buoy-agent".into(),
            resources: Default::default(),
            address_policy: AddressPolicy::Off,
            allow_node_local_backends: false,
        }
    }

    fn now() -> Timestamp {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    /// A VirtualIP created `age` seconds before `now()`.
    fn vip(ns: &str, name: &str, age: i64, spec: Value) -> VirtualIP {
        let created = Timestamp::from_second(now().as_second() - age).unwrap();
        serde_json::from_value(json!({
            "apiVersion": "buoy.io/v1alpha1", "kind": "VirtualIP",
            "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{ns}-{name}"),
                         "generation": 1, "creationTimestamp": created.to_string()},
            "spec": spec,
        }))
        .unwrap()
    }

    fn node(name: &str, labels: Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
    }

    fn pool(ns: &str, name: &str) -> UpstreamPool {
        serde_json::from_value(json!({
            "apiVersion": "buoy.io/v1alpha1", "kind": "UpstreamPool",
            "metadata": {"name": name, "namespace": ns, "generation": 1},
            "spec": {"backends": [{"address": "10.1.0.1", "port": 80}, {"address": "10.1.0.2", "port": 80, "down": true}]},
        }))
        .unwrap()
    }

    struct Fixture {
        vips: Vec<VirtualIP>,
        pools: Vec<UpstreamPool>,
        address_pools: Vec<AddressPool>,
        policy: AddressPolicy,
        nodes: Vec<Node>,
        memory: Memory,
        now: Timestamp,
    }

    impl Fixture {
        fn new(vips: Vec<VirtualIP>) -> Fixture {
            Fixture {
                vips,
                pools: vec![],
                address_pools: vec![],
                policy: AddressPolicy::Off,
                nodes: vec![
                    node("n1", json!({})),
                    node("n2", json!({})),
                    node("n3", json!({})),
                ],
                memory: Memory::default(),
                now: now(),
            }
        }

        fn plan(&self) -> Plan {
            let endpoints = BTreeMap::new();
            let settings = settings();
            let namespaces = BTreeMap::new();
            plan_world(&World {
                vips: self.vips.iter().collect(),
                pools: self.pools.iter().collect(),
                address_pools: self.address_pools.iter().collect(),
                namespaces: &namespaces,
                policy: self.policy,
                nodes: self.nodes.iter().collect(),
                endpoints: &endpoints,
                memory: &self.memory,
                agents: &settings,
                now: self.now,
                release_timeout_secs: 30,
            })
        }

        /// Writes the plan into the objects, as the API server would after the controller's
        /// applies; returns the plan.
        fn settle(&mut self) -> Plan {
            let p = self.plan();
            for vp in &p.vips {
                let v = self
                    .vips
                    .iter_mut()
                    .find(|v| v.metadata.name.as_deref() == Some(&vp.name))
                    .unwrap();
                let ann = v.metadata.annotations.get_or_insert_with(Default::default);
                ann.remove(PRIORITIES_ANNOTATION);
                ann.remove(CONFLICT_ANNOTATION);
                ann.remove(AVOIDED_ANNOTATION);
                if let Some(p) = &vp.meta.priorities {
                    ann.insert(PRIORITIES_ANNOTATION.into(), p.clone());
                }
                if let Some(c) = &vp.meta.conflict {
                    ann.insert(CONFLICT_ANNOTATION.into(), c.clone());
                }
                if let Some(a) = &vp.meta.avoided {
                    ann.insert(AVOIDED_ANNOTATION.into(), a.clone());
                }
                v.metadata.finalizers = vp.meta.finalizer.then(|| vec![FINALIZER.to_string()]);
                if let Some(s) = &vp.status {
                    let st = v.status.get_or_insert_with(Default::default);
                    st.conditions = s.conditions.clone();
                    st.master = s.master.clone();
                    st.virtual_router_id = s.virtual_router_id;
                    st.observed_generation = s.observed_generation;
                    st.addresses = s.addresses.clone();
                    st.address_pool = s.address_pool.clone();
                }
            }
            p
        }

        fn vip_mut(&mut self, name: &str) -> &mut VirtualIP {
            self.vips
                .iter_mut()
                .find(|v| v.metadata.name.as_deref() == Some(name))
                .unwrap()
        }

        fn report(&mut self, name: &str, entries: Value) {
            let v = self.vip_mut(name);
            v.status.get_or_insert_with(Default::default).nodes =
                serde_json::from_value(entries).unwrap();
        }
    }

    fn of<'a>(p: &'a Plan, name: &str) -> &'a VirtualIpPlan {
        p.vips.iter().find(|v| v.name == name).unwrap()
    }

    fn cond<'a>(p: &'a Plan, name: &str, t: &str) -> &'a Condition {
        of(p, name)
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    fn reasons(p: &Plan, name: &str) -> Vec<String> {
        of(p, name)
            .events
            .iter()
            .map(|e| e.reason.clone())
            .collect()
    }

    #[test]
    fn vrids_are_allocated_once_and_stay() {
        let mut f = Fixture::new(vec![
            vip("a", "one", 30, json!({"addresses": ["10.0.0.1"]})),
            vip(
                "a",
                "two",
                20,
                json!({"addresses": ["10.0.0.2"], "virtualRouterID": 1}),
            ),
            vip("b", "three", 10, json!({"addresses": ["10.0.0.3"]})),
        ]);
        let p = f.settle();
        assert_eq!(
            of(&p, "one").vrid,
            Vrid::Allocated {
                vrid: 2,
                moved: None
            }
        );
        assert_eq!(of(&p, "two").vrid, Vrid::Spec(1));
        assert_eq!(of(&p, "three").vrid.value(), Some(3));
        assert!(reasons(&p, "one").contains(&"VirtualRouterIDAllocated".to_string()));
        assert!(of(&p, "one").status_changed && of(&p, "one").meta_changed);
        // Settled: nothing changes, nothing is said — whatever order the server keeps the
        // conditions in.
        for v in &mut f.vips {
            v.status.as_mut().unwrap().conditions.reverse();
        }
        let again = f.plan();
        for v in &again.vips {
            assert!(!v.status_changed && !v.meta_changed, "{} changed", v.name);
            assert!(v.events.is_empty(), "{}: {:?}", v.name, v.events);
        }
        assert_eq!(of(&again, "one").vrid, Vrid::Kept(2));
        // The oldest goes and a newer one comes: the others keep theirs, the newcomer takes 2.
        f.vips.remove(0);
        f.vips
            .push(vip("b", "four", 5, json!({"addresses": ["10.0.0.4"]})));
        let p = f.settle();
        assert_eq!(of(&p, "three").vrid, Vrid::Kept(3));
        assert_eq!(of(&p, "four").vrid.value(), Some(2));
        // The operator restarts: memory is empty, status holds the allocation.
        f.memory = Memory::default();
        assert_eq!(of(&f.plan(), "four").vrid, Vrid::Kept(2));
    }

    #[test]
    fn memory_bridges_a_stale_cache() {
        let mut f = Fixture::new(vec![
            vip("a", "one", 30, json!({"addresses": ["10.0.0.1"]})),
            vip("a", "two", 20, json!({"addresses": ["10.0.0.2"]})),
        ]);
        // "one" got 1 written, but the cache does not show it yet; "two" recorded 1 long ago
        // would be a lost race: memory says one=1, so two keeps nothing and moves.
        f.memory.vrids.insert("uid-a-one".into(), 1);
        let p = f.plan();
        assert_eq!(of(&p, "one").vrid, Vrid::Kept(1));
        assert_eq!(of(&p, "two").vrid.value(), Some(2));
    }

    #[test]
    fn foreign_routers_move_an_allocated_vrid_and_flag_a_spec_one() {
        let mut f = Fixture::new(vec![
            vip("a", "auto", 30, json!({"addresses": ["10.0.0.1"]})),
            vip(
                "a",
                "fixed",
                20,
                json!({"addresses": ["10.0.0.2"], "virtualRouterID": 9}),
            ),
        ]);
        f.settle();
        f.report(
            "auto",
            json!([{"node": "n1", "state": "Master", "foreignRouters": ["192.168.1.7"]}]),
        );
        f.report(
            "fixed",
            json!([{"node": "n1", "state": "Master", "foreignRouters": ["192.168.1.8"]}]),
        );
        let p = f.settle();
        assert_eq!(
            of(&p, "auto").vrid,
            Vrid::Allocated {
                vrid: 2,
                moved: Some((1, MoveReason::ForeignRouters))
            }
        );
        let moved = &of(&p, "auto").events;
        assert!(moved.iter().any(|e| e.warning
            && e.reason == "VirtualRouterIDMoved"
            && e.note.contains("192.168.1.7")));
        assert!(p.foreign.contains(&(Family::V4, 1)) && p.foreign.contains(&(Family::V4, 9)));
        let d = cond(&p, "fixed", DEGRADED);
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "ForeignRouters")
        );
        assert!(d.message.contains("192.168.1.8"));
        // The VirtualIP that moved records the VRID it left.
        assert_eq!(of(&p, "auto").meta.avoided.as_deref(), Some("1"));
        assert!(of(&p, "auto").meta_changed);
        // 1 stays avoided for newcomers once remembered.
        f.memory.foreign = p.foreign.clone();
        f.report("auto", json!([]));
        f.vips
            .push(vip("a", "new", 1, json!({"addresses": ["10.0.0.3"]})));
        assert_eq!(of(&f.plan(), "new").vrid.value(), Some(3));
        // And after an operator restart (nothing in memory), from the annotation.
        f.memory = Memory::default();
        let p = f.settle();
        assert_eq!(of(&p, "new").vrid.value(), Some(3));
        assert_eq!(of(&p, "auto").vrid.value(), Some(2));
        assert_eq!(of(&p, "auto").meta.avoided.as_deref(), Some("1"));
        // The annotation write failed where the move's status write succeeded: memory holds
        // the VRID until the annotation shows it.
        f.vips.retain(|v| v.metadata.name.as_deref() != Some("new"));
        f.vip_mut("auto").metadata.annotations = None;
        f.memory = Memory::default();
        f.memory
            .left
            .insert("uid-a-auto".into(), BTreeSet::from([1]));
        f.vips
            .push(vip("a", "newer", 1, json!({"addresses": ["10.0.0.4"]})));
        let p = f.plan();
        assert_eq!(of(&p, "auto").meta.avoided.as_deref(), Some("1"));
        assert_eq!(of(&p, "newer").vrid.value(), Some(3));
        // A value the operator cannot read is left alone rather than fought over every pass.
        f.memory = Memory::default();
        f.vip_mut("auto").metadata.annotations = Some(
            [(AVOIDED_ANNOTATION.to_string(), "abc".to_string())]
                .into_iter()
                .collect(),
        );
        let p = f.plan();
        assert_eq!(of(&p, "auto").meta.avoided.as_deref(), Some("abc"));
    }

    #[test]
    fn a_later_vip_on_the_same_address_conflicts_until_the_first_goes() {
        let mut f = Fixture::new(vec![
            vip("a", "first", 30, json!({"addresses": ["10.0.0.1/24"]})),
            vip(
                "b",
                "second",
                20,
                json!({"addresses": ["10.0.0.1", "10.0.0.9"]}),
            ),
            vip("b", "third", 10, json!({"addresses": ["10.0.0.9"]})),
        ]);
        let p = f.settle();
        let c = cond(&p, "second", CONFLICT);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "AddressInUse")
        );
        assert_eq!(
            c.message,
            "address 10.0.0.1 is already used by VirtualIP a/first"
        );
        assert_eq!(
            of(&p, "second").meta.conflict.as_deref(),
            Some(c.message.as_str())
        );
        assert_eq!(of(&p, "second").meta.priorities, None);
        assert_eq!(cond(&p, "second", READY).reason, "Conflict");
        assert!(
            of(&p, "second")
                .events
                .iter()
                .any(|e| e.warning && e.reason == "AddressInUse")
        );
        // "third" clashes only with the unserved "second": it is served.
        assert_eq!(cond(&p, "third", CONFLICT).status, "False");
        assert_eq!(cond(&p, "first", CONFLICT).status, "False");
        // The first goes: the second is served, the third now conflicts with it.
        f.vips.remove(0);
        let p = f.settle();
        assert_eq!(cond(&p, "second", CONFLICT).status, "False");
        assert_eq!(of(&p, "second").meta.conflict, None);
        assert!(of(&p, "second").meta.priorities.is_some());
        assert_eq!(
            cond(&p, "third", CONFLICT).message,
            "address 10.0.0.9 is already used by VirtualIP b/second"
        );
    }

    #[test]
    fn same_spec_vrid_on_one_interface_conflicts_other_interface_does_not() {
        let f = Fixture::new(vec![
            vip(
                "a",
                "x",
                30,
                json!({"addresses": ["10.0.0.1"], "virtualRouterID": 7, "interface": "eth0"}),
            ),
            vip(
                "a",
                "y",
                20,
                json!({"addresses": ["10.0.0.2"], "virtualRouterID": 7}),
            ),
            vip(
                "a",
                "z",
                10,
                json!({"addresses": ["10.0.1.2"], "virtualRouterID": 7, "interface": "eth1"}),
            ),
            vip(
                "a",
                "six",
                5,
                json!({"addresses": ["fd00::1"], "virtualRouterID": 7}),
            ),
            vip(
                "a",
                "port",
                1,
                json!({"addresses": ["10.0.2.1"], "listeners": [{"name": "m", "port": 9901, "upstreamPool": "p"}]}),
            ),
        ]);
        let p = f.plan();
        let y = cond(&p, "y", CONFLICT);
        assert_eq!(y.reason, "VirtualRouterIDInUse");
        assert_eq!(
            y.message,
            "virtual router ID 7 on interface eth0 is already used by VirtualIP a/x"
        );
        assert_eq!(cond(&p, "z", CONFLICT).status, "False");
        assert_eq!(
            cond(&p, "six", CONFLICT).status,
            "False",
            "IPv6 VRRP is another ID space"
        );
        assert_eq!(cond(&p, "port", CONFLICT).reason, "PortInUse");
    }

    #[test]
    fn missing_pool_then_pool_created() {
        let mut f = Fixture::new(vec![vip(
            "a",
            "web",
            30,
            json!({"addresses": ["10.0.0.1"], "listeners": [{"name": "http", "port": 80, "upstreamPool": "backends"}]}),
        )]);
        f.pools.push(pool("other", "backends"));
        let p = f.settle();
        let r = cond(&p, "web", READY);
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("False", "UpstreamPoolNotFound")
        );
        assert_eq!(
            r.message,
            "listener http: UpstreamPool backends not found in namespace a"
        );
        assert!(reasons(&p, "web").contains(&"UpstreamPoolNotFound".to_string()));
        f.pools.push(pool("a", "backends"));
        f.report("web", json!([{"node": "n1", "state": "Master", "serving": true}, {"node": "n2", "state": "Backup"}]));
        let p = f.settle();
        let r = cond(&p, "web", READY);
        assert_eq!((r.status.as_str(), r.reason.as_str()), ("True", "Serving"));
        assert!(
            of(&p, "web")
                .events
                .iter()
                .any(|e| !e.warning && e.reason == "Serving")
        );
        // The pool's own status: static backends, one marked down.
        let pp = p.pools.iter().find(|p| p.namespace == "a").unwrap();
        assert_eq!((pp.backends.total, pp.backends.ready), (2, 1));
        assert_eq!(pp.conditions[0].status, "True");
        assert!(pp.changed);
    }

    #[test]
    fn status_aggregates_the_agents_reports() {
        let mut f = Fixture::new(vec![vip(
            "a",
            "web",
            30,
            json!({"addresses": ["10.0.0.1"], "listeners": [{"name": "http", "port": 80, "upstreamPool": "p"}]}),
        )]);
        f.pools.push(pool("a", "p"));
        let p = f.settle();
        assert_eq!(cond(&p, "web", READY).reason, "NoMaster");
        assert_eq!(cond(&p, "web", DEGRADED).status, "False");
        assert!(
            p.vips[0].events.iter().all(|e| e.reason != "NoMaster"),
            "no noise at creation"
        );

        f.report(
            "web",
            json!([{"node": "n1", "state": "Master", "serving": true}]),
        );
        let p = f.settle();
        let s = of(&p, "web").status.clone().unwrap();
        assert_eq!(s.master.as_deref(), Some("n1"));
        assert_eq!(cond(&p, "web", READY).status, "True");
        assert_eq!(cond(&p, "web", DEGRADED).reason, "NoBackup");

        f.report("web", json!([{"node": "n1", "state": "Master", "serving": false, "message": "no healthy backend for http"},
                                {"node": "n2", "state": "Fault", "message": "eth0 down"}, {"node": "n3", "state": "Backup"}]));
        let p = f.settle();
        let r = cond(&p, "web", READY);
        assert_eq!(r.reason, "NotServing");
        assert!(r.message.contains("no healthy backend"));
        assert_eq!(
            cond(&p, "web", DEGRADED).message,
            "in Fault: n2 (eth0 down)"
        );

        f.report("web", json!([{"node": "n1", "state": "Master", "serving": true}, {"node": "n2", "state": "Master", "serving": true}]));
        let p = f.settle();
        assert_eq!(of(&p, "web").status.as_ref().unwrap().master, None);
        assert_eq!(cond(&p, "web", READY).reason, "MultipleMasters");
        assert_eq!(cond(&p, "web", DEGRADED).reason, "MultipleMasters");

        f.report("web", json!([{"node": "n1", "state": "Master", "serving": true}, {"node": "n2", "state": "Backup"}]));
        let p = f.settle();
        assert_eq!(cond(&p, "web", DEGRADED).reason, "Redundant");

        // n1 is cut off (its kubelet silent, Ready Unknown) and n2 took over: n1's report is
        // stale, not a second master.
        let ready = |f: &mut Fixture, name: &str, status: &str| {
            let n = f
                .nodes
                .iter_mut()
                .find(|n| n.metadata.name.as_deref() == Some(name))
                .unwrap();
            n.status = serde_json::from_value(
                json!({"conditions": [{"type": "Ready", "status": status}]}),
            )
            .unwrap();
        };
        ready(&mut f, "n1", "Unknown");
        ready(&mut f, "n2", "True");
        f.report("web", json!([{"node": "n1", "state": "Master", "serving": true}, {"node": "n2", "state": "Master", "serving": true}]));
        let p = f.settle();
        assert_eq!(
            of(&p, "web").status.as_ref().unwrap().master.as_deref(),
            Some("n2")
        );
        let r = cond(&p, "web", READY);
        assert_eq!((r.status.as_str(), r.reason.as_str()), ("True", "Serving"));
        let d = cond(&p, "web", DEGRADED);
        assert_eq!(d.reason, "NodeUnreachable");
        assert_eq!(
            d.message,
            "status unknown (kubelet silent): n1 (last reported Master)"
        );
        // Ready False is a kubelet that still reports: n1's report counts.
        ready(&mut f, "n1", "False");
        assert_eq!(cond(&f.plan(), "web", READY).reason, "MultipleMasters");
        // Lost, and nobody else is master: not "no master yet".
        ready(&mut f, "n1", "Unknown");
        f.report("web", json!([{"node": "n1", "state": "Master", "serving": true}, {"node": "n2", "state": "Backup"}]));
        let r = cond(&f.plan(), "web", READY).clone();
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("False", "MasterUnreachable")
        );
        f.report("web", json!([{"node": "n1", "state": "Master", "serving": true}, {"node": "n2", "state": "Master", "serving": true}]));
        // Back, and still saying Master: that is two masters.
        ready(&mut f, "n1", "True");
        let p = f.settle();
        assert_eq!(cond(&p, "web", READY).reason, "MultipleMasters");

        f.report("web", json!([{"node": "n1", "state": "Master", "serving": true}, {"node": "n2", "state": "Backup"}]));
        let p = f.settle();
        assert_eq!(cond(&p, "web", DEGRADED).reason, "Redundant");
        // Conditions carry the generation and keep their time while unchanged.
        let before = cond(&p, "web", READY).clone();
        assert_eq!(before.observed_generation, Some(1));
        f.now = Timestamp::from_second(now().as_second() + 60).unwrap();
        f.vip_mut("web").metadata.generation = Some(2);
        let p = f.settle();
        let after = cond(&p, "web", READY);
        assert_eq!(after.last_transition_time, before.last_transition_time);
        assert_eq!(after.observed_generation, Some(2));
        assert_eq!(
            of(&p, "web").status.as_ref().unwrap().observed_generation,
            Some(2)
        );
    }

    #[test]
    fn deletion_waits_for_the_master_within_a_timeout() {
        let mut f = Fixture::new(vec![vip(
            "a",
            "web",
            30,
            json!({"addresses": ["10.0.0.1"]}),
        )]);
        let p = f.settle();
        assert!(of(&p, "web").meta.finalizer);
        f.report("web", json!([{"node": "n1", "state": "Master"}]));
        f.vip_mut("web").metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
        f.now = Timestamp::from_second(now().as_second() + 10).unwrap();
        let p = f.plan();
        assert!(of(&p, "web").meta.finalizer && !of(&p, "web").meta_changed);
        assert!(of(&p, "web").status.is_none());
        assert_eq!(p.wake_after_secs, Some(20));
        // The agent lets go: released.
        f.report("web", json!([{"node": "n1", "state": "Backup"}]));
        let p = f.plan();
        assert!(!of(&p, "web").meta.finalizer && of(&p, "web").meta_changed);
        assert_eq!(reasons(&p, "web"), vec!["Released"]);
        // Or the agent is gone and the timeout passes.
        f.report("web", json!([{"node": "n1", "state": "Master"}]));
        f.now = Timestamp::from_second(now().as_second() + 30).unwrap();
        let p = f.plan();
        assert!(!of(&p, "web").meta.finalizer);
        let e = &of(&p, "web").events[0];
        assert!(e.warning && e.reason == "ReleaseTimedOut" && e.note.starts_with("n1 "));
    }

    #[test]
    fn one_daemonset_per_placement_owned_by_its_vips_in_the_namespace() {
        let f = Fixture::new(vec![
            vip("buoy-system", "a", 30, json!({"addresses": ["10.0.0.1"]})),
            vip("buoy-system", "b", 20, json!({"addresses": ["10.0.0.2"]})),
            vip("apps", "c", 10, json!({"addresses": ["10.0.0.3"]})),
            vip(
                "buoy-system",
                "d",
                5,
                json!({"addresses": ["10.0.0.4"], "nodeSelector": {"matchLabels": {"role": "lb"}}}),
            ),
        ]);
        let p = f.plan();
        assert_eq!(p.daemonsets.len(), 2);
        let all = &p.daemonsets[&buoy_crds::placement::key(&f.vips[0].spec)];
        assert_eq!(all["metadata"]["name"], json!("buoy-agent-ad1269f96e"));
        let owners: Vec<&str> = all["metadata"]["ownerReferences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            owners,
            vec!["a", "b"],
            "no owner reference across namespaces"
        );
        let lb = &p.daemonsets[&buoy_crds::placement::key(&f.vips[3].spec)];
        assert_eq!(
            lb.pointer("/spec/template/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchExpressions/0/key"),
            Some(&json!("role"))
        );
    }

    #[test]
    fn priorities_follow_selected_nodes_and_spread_masters() {
        let mut f = Fixture::new(
            (0..100)
                .map(|i| {
                    vip(
                        "a",
                        &format!("vip-{i}"),
                        1000 - i,
                        json!({"addresses": [format!("10.0.1.{i}")]}),
                    )
                })
                .collect(),
        );
        f.nodes = (1..=5)
            .map(|i| node(&format!("node-{i}"), json!({"rack": format!("r{}", i % 2)})))
            .collect();
        f.vips.push(vip(
            "a",
            "rack0",
            1,
            json!({"addresses": ["10.0.2.1"], "nodeSelector": {"matchLabels": {"rack": "r0"}}}),
        ));
        f.vips.push(vip(
            "a",
            "fixed",
            1,
            json!({"addresses": ["10.0.2.2"], "priorities": [{"node": "node-1", "priority": 150}]}),
        ));
        let p = f.settle();
        let mut masters: BTreeMap<String, usize> = BTreeMap::new();
        for i in 0..100 {
            let text = of(&p, &format!("vip-{i}")).meta.priorities.clone().unwrap();
            let map: BTreeMap<String, u8> = serde_json::from_str(&text).unwrap();
            assert_eq!(map.len(), 5);
            let top = map.iter().max_by_key(|(_, v)| **v).unwrap();
            assert_eq!(*top.1, 200);
            *masters.entry(top.0.clone()).or_default() += 1;
        }
        assert!(masters.values().all(|m| *m <= 22), "{masters:?}");
        assert_eq!(masters.len(), 5);
        let rack0: BTreeMap<String, u8> =
            serde_json::from_str(of(&p, "rack0").meta.priorities.as_ref().unwrap()).unwrap();
        assert_eq!(rack0.keys().collect::<Vec<_>>(), vec!["node-2", "node-4"]);
        assert_eq!(
            of(&p, "fixed").meta.priorities,
            None,
            "spec.priorities wins"
        );
        // Deterministic and quiet once written.
        let again = f.plan();
        assert!(again.vips.iter().all(|v| !v.meta_changed));
        assert!(
            p.vips
                .iter()
                .all(|v| !reasons(&p, &v.name).contains(&"PrioritiesAssigned".to_string())),
            "first assignments are not news"
        );
        // A node joins: every VirtualIP that selects it gets it, and says so.
        f.nodes.push(node("node-6", json!({})));
        let p = f.plan();
        let v0 = of(&p, "vip-0");
        assert!(v0.meta_changed && v0.meta.priorities.as_ref().unwrap().contains("node-6"));
        assert!(reasons(&p, "vip-0").contains(&"PrioritiesAssigned".to_string()));
    }

    #[test]
    fn endpoint_slices_count_ready_endpoints() {
        let slice: k8s_openapi::api::discovery::v1::EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "a", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.2.0.1"], "conditions": {"ready": true}},
                {"addresses": ["10.2.0.2"], "conditions": {"ready": false}},
                {"addresses": ["10.2.0.3"]},
            ],
        }))
        .unwrap();
        let counts = endpoint_counts([&slice]);
        assert_eq!(
            counts[&("a".to_string(), "web".to_string())],
            BackendCounts { total: 3, ready: 2 }
        );
    }
    fn address_pool(spec: Value) -> AddressPool {
        serde_json::from_value(json!({
            "apiVersion": "buoy.io/v1alpha1", "kind": "AddressPool",
            "metadata": {"name": "lan", "generation": 1},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn the_address_policy_serves_only_what_a_pool_allows_and_allocates_from_pools() {
        let mut f = Fixture::new(vec![
            vip("a", "allowed", 30, json!({"addresses": ["10.0.0.5"]})),
            vip("a", "outside", 20, json!({"addresses": ["192.168.9.9"]})),
            vip(
                "b",
                "other-namespace",
                15,
                json!({"addresses": ["10.0.0.6"]}),
            ),
            vip("a", "given", 10, json!({"addressPool": "lan"})),
        ]);
        f.policy = AddressPolicy::Enforce;
        f.address_pools = vec![address_pool(json!({
            "addresses": ["10.0.0.0/29"], "namespaces": ["a"],
            "nodeSelector": {"matchLabels": {"lb": "true"}}, "avoidBuggyIPs": true,
        }))];
        f.nodes = vec![
            node("n1", json!({"lb": "true"})),
            node("n2", json!({"lb": "true"})),
            node("n3", json!({})),
        ];
        let p = f.settle();
        // Allowed: served, from the pool, on the pool's nodes only.
        let allowed = of(&p, "allowed");
        assert!(allowed.vrid.value().is_some());
        let s = allowed.status.as_ref().unwrap();
        assert_eq!(s.addresses, ["10.0.0.5"]);
        assert_eq!(s.address_pool.as_deref(), Some("lan"));
        let assigned: BTreeMap<String, u8> =
            serde_json::from_str(allowed.meta.priorities.as_deref().unwrap()).unwrap();
        assert_eq!(assigned.keys().collect::<Vec<_>>(), ["n1", "n2"]);
        // Not allowed: Ready=False with the address and why, an Event; nothing allocated.
        for name in ["outside", "other-namespace"] {
            let r = cond(&p, name, READY);
            assert_eq!(
                (r.status.as_str(), r.reason.as_str()),
                ("False", "AddressNotAllowed")
            );
            assert!(reasons(&p, name).contains(&"AddressNotAllowed".to_string()));
            assert_eq!(of(&p, name).vrid.value(), None);
            assert!(of(&p, name).meta.priorities.is_none());
        }
        assert!(cond(&p, "outside", READY).message.contains("192.168.9.9"));
        assert!(
            cond(&p, "other-namespace", READY)
                .message
                .contains("namespace b")
        );
        // Given one: the first free address that is not buggy (10.0.0.0 is skipped), kept.
        let given = of(&p, "given").status.as_ref().unwrap();
        assert_eq!(given.addresses, ["10.0.0.1"]);
        // One DaemonSet: the pool's selector is part of the placement and its affinity.
        assert_eq!(p.daemonsets.len(), 1);
        let ds = p.daemonsets.values().next().unwrap();
        let terms = ds
            .pointer("/spec/template/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchExpressions")
            .unwrap();
        assert_eq!(
            terms,
            &json!([{"key": "lb", "operator": "In", "values": ["true"]}])
        );
        // The pool's status: 2 in use; free: 8 addresses, less .0 (buggy) and the 2 in use.
        // .6, which a refused VirtualIP names, stays free: a namespace the pool does not admit
        // cannot use up another team's pool.
        assert_eq!(
            (p.address_pools[0].allocated, p.address_pools[0].available),
            (2, 5)
        );
        // Settled: nothing more to say, and the allocation stays.
        let again = f.plan();
        for v in &again.vips {
            assert!(!v.status_changed && !v.meta_changed, "{} changed", v.name);
            assert!(v.events.is_empty(), "{}: {:?}", v.name, v.events);
        }
        assert_eq!(
            of(&again, "given").status.as_ref().unwrap().addresses,
            ["10.0.0.1"]
        );
    }
}
