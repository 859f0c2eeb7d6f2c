//! The plan, pure: everything the operator observes (VirtualIPs, UpstreamPools, AddressPools,
//! Nodes, endpoint counts, its own memory of recent writes, the time: [`World`]) becomes one
//! desired state ([`Plan`]) — the agent DaemonSets, each VirtualIP's allocations, annotations,
//! finalizer and status, each UpstreamPool's and AddressPool's status — together with what
//! differs from what is observed and the Events that explain the decisions. The controller only
//! applies the differences.
//!
//! [`plan_world`] runs the phases in order, each in its own room with its own tests; one
//! record per VirtualIP ([`served::ServedVip`]) carries what they decide:
//!
//! 0. [`services`]: LoadBalancer Services' addresses and the VirtualIPs that carry them;
//! 1. [`addresses`]: which VirtualIPs the address policy serves, on which addresses;
//! 2. [`router_ids`]: their virtual router IDs;
//! 3. [`conflicts`]: which clash with earlier ones;
//! 4. [`priorities`]: the nodes they select and the priorities the operator assigns;
//! 5. [`daemonsets`]: one agent DaemonSet per placement;
//! 6. [`virtualip`] (with [`virtualip_conditions`]): each VirtualIP's metadata, status and
//!    Events;
//! 7. [`upstreampool`]: each UpstreamPool's status;
//! 8. [`bgppeers`]: each BGPPeer's status, summed up from its agents' entries.

use std::collections::{BTreeMap, BTreeSet};

use buoy_crds::VirtualIP;
use serde_json::Value;

use crate::allocate::Family;

mod addresses;
mod bgppeers;
mod conflicts;
mod daemonsets;
mod priorities;
mod router_ids;
mod served;
pub(crate) mod services;
mod upstreampool;
mod virtualip;
mod virtualip_conditions;
mod world;

pub(crate) use addresses::AddressPoolPlan;
pub(crate) use bgppeers::BgpPeerPlan;
pub(crate) use router_ids::{FOREIGN_COOLDOWN_SECS, avoided_of};
pub(crate) use upstreampool::{UpstreamPoolPlan, endpoint_counts};
pub(crate) use virtualip::VirtualIpPlan;
pub(crate) use world::{Memory, World, key_of};

/// The whole desired state.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// Agent DaemonSets by placement key, as applied.
    pub(crate) daemonsets: BTreeMap<String, Value>,
    /// The served VirtualIPs in precedence order, then the refused ones.
    pub(crate) vips: Vec<VirtualIpPlan>,
    pub(crate) pools: Vec<UpstreamPoolPlan>,
    pub(crate) address_pools: Vec<AddressPoolPlan>,
    pub(crate) bgp_peers: Vec<BgpPeerPlan>,
    /// VRIDs known to be used by foreign routers (the next [`Memory::foreign`]).
    pub(crate) foreign: BTreeSet<(Family, u8)>,
    /// When to plan again even if nothing changes (a release timeout), in seconds.
    pub(crate) wake_after_secs: Option<i64>,
    /// LoadBalancer Services: their VirtualIPs, statuses and Events.
    pub(crate) services: services::ServicesPlan,
}

/// The VirtualIPs in precedence order: oldest first, then by namespace and name. Objects
/// without a name are left out (the API server never returns them).
fn precedence<'a>(vips: &[&'a VirtualIP]) -> Vec<&'a VirtualIP> {
    let mut vips: Vec<&VirtualIP> = vips
        .iter()
        .copied()
        .filter(|v| v.metadata.name.is_some())
        .collect();
    vips.sort_by(|a, b| {
        let t = |v: &VirtualIP| v.metadata.creation_timestamp.as_ref().map(|t| t.0);
        t(a).cmp(&t(b)).then_with(|| key_of(a).cmp(&key_of(b)))
    });
    vips
}

/// Plans everything.
pub(crate) fn plan_world(world: &World) -> Plan {
    // Services first: their VirtualIPs are applied, and planned as any other once observed.
    let services = services::plan(&services::Inputs {
        services: &world.services,
        vips: &world.vips,
        pools: &world.address_pools,
        namespaces: world.namespaces,
        nodes: &world.nodes,
        remembered: &world.memory.service_addresses,
        told: &world.memory.service_told,
        default_class: world.load_balancers.default_class,
        advertisement_interval: world.load_balancers.advertisement_interval,
    });
    let vips = precedence(&world.vips);
    // Addresses: the policy decides which VirtualIPs are served, on which addresses. The rest
    // of the plan sees each served VirtualIP with its addresses in effect in its spec; those
    // not served get their reason and nothing else.
    let decided = addresses::decide(
        &vips,
        &world.address_pools,
        world.namespaces,
        world.policy,
        &world.memory.addresses,
        world.now,
    );
    let (admitted, refused) = served::split(&vips, decided.standings);
    let effective: Vec<(&VirtualIP, bool)> =
        admitted.iter().map(|a| (&a.vip, a.uses_vrrp())).collect();
    let ids = router_ids::allocate(&effective, world.memory, world.now);
    let mut served: Vec<served::ServedVip> = admitted
        .into_iter()
        .zip(ids.each)
        .map(|(a, id)| a.with_router_id(id))
        .collect();
    conflicts::find(&mut served);
    priorities::assign(&mut served, &world.nodes);
    let daemonsets = daemonsets::desired(&served, world.agents);

    let pools = upstreampool::keys(&world.pools);
    let lost = world.lost_nodes();
    let mut wake_after_secs: Option<i64> = None;
    let mut out = Vec::with_capacity(served.len() + refused.len());
    let plans = served
        .iter()
        .map(|v| virtualip::served(v, world, &pools, &lost))
        .chain(refused.iter().map(|r| virtualip::refused(r, world)));
    for (plan, wait) in plans {
        if let Some(left) = wait {
            wake_after_secs = Some(wake_after_secs.map_or(left, |w| w.min(left)));
        }
        out.push(plan);
    }

    Plan {
        daemonsets,
        vips: out,
        pools: upstreampool::statuses(&world.pools, world.endpoints, world.now),
        address_pools: decided.pools,
        bgp_peers: bgppeers::statuses(&world.bgp_peers, world.now),
        foreign: ids.foreign,
        wake_after_secs,
        services,
    }
}

/// A world to plan in unit tests, and what to ask of its plan.
#[cfg(test)]
pub(crate) mod fixture {
    use std::collections::BTreeMap;

    use buoy_crds::contract::{CONFLICT_ANNOTATION, PRIORITIES_ANNOTATION};
    use buoy_crds::{AddressPool, UpstreamPool, VirtualIP, policy::AddressPolicy};
    use k8s_openapi::api::core::v1::Node;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::{Value, json};

    use super::router_ids::AVOIDED_ANNOTATION;
    use super::virtualip::FINALIZER;
    use super::{Memory, Plan, VirtualIpPlan, World, plan_world};
    use crate::daemonset::AgentSettings;

    pub(crate) fn settings() -> AgentSettings {
        AgentSettings {
            namespace: "buoy-system".into(),
            image: "buoy-agent:test".into(),
            image_pull_policy: "IfNotPresent".into(),
            service_account: "buoy-agent".into(),
            resources: Default::default(),
            address_policy: AddressPolicy::Off,
            allow_node_local_backends: false,
            frr: None,
        }
    }

    pub(crate) fn now() -> Timestamp {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    /// A VirtualIP created `age` seconds before `now()`.
    pub(crate) fn vip(ns: &str, name: &str, age: i64, spec: Value) -> VirtualIP {
        let created = Timestamp::from_second(now().as_second() - age).unwrap();
        serde_json::from_value(json!({
            "apiVersion": "buoy.io/v1alpha1", "kind": "VirtualIP",
            "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{ns}-{name}"),
                         "generation": 1, "creationTimestamp": created.to_string()},
            "spec": spec,
        }))
        .unwrap()
    }

    pub(crate) fn node(name: &str, labels: Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
    }

    pub(crate) fn pool(ns: &str, name: &str) -> UpstreamPool {
        serde_json::from_value(json!({
            "apiVersion": "buoy.io/v1alpha1", "kind": "UpstreamPool",
            "metadata": {"name": name, "namespace": ns, "generation": 1},
            "spec": {"backends": [{"address": "10.1.0.1", "port": 80}, {"address": "10.1.0.2", "port": 80, "down": true}]},
        }))
        .unwrap()
    }

    pub(crate) struct Fixture {
        pub(crate) vips: Vec<VirtualIP>,
        pub(crate) pools: Vec<UpstreamPool>,
        pub(crate) address_pools: Vec<AddressPool>,
        pub(crate) policy: AddressPolicy,
        pub(crate) nodes: Vec<Node>,
        pub(crate) memory: Memory,
        pub(crate) now: Timestamp,
    }

    impl Fixture {
        pub(crate) fn new(vips: Vec<VirtualIP>) -> Fixture {
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

        pub(crate) fn plan(&self) -> Plan {
            let endpoints = BTreeMap::new();
            let settings = settings();
            let namespaces = BTreeMap::new();
            let load_balancers = super::services::Settings::default();
            plan_world(&World {
                vips: self.vips.iter().collect(),
                services: vec![],
                load_balancers: &load_balancers,
                pools: self.pools.iter().collect(),
                address_pools: self.address_pools.iter().collect(),
                bgp_peers: vec![],
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
        pub(crate) fn settle(&mut self) -> Plan {
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

        pub(crate) fn vip_mut(&mut self, name: &str) -> &mut VirtualIP {
            self.vips
                .iter_mut()
                .find(|v| v.metadata.name.as_deref() == Some(name))
                .unwrap()
        }

        pub(crate) fn report(&mut self, name: &str, entries: Value) {
            let v = self.vip_mut(name);
            v.status.get_or_insert_with(Default::default).nodes =
                serde_json::from_value(entries).unwrap();
        }
    }

    pub(crate) fn of<'a>(p: &'a Plan, name: &str) -> &'a VirtualIpPlan {
        p.vips.iter().find(|v| v.name == name).unwrap()
    }

    pub(crate) fn cond<'a>(p: &'a Plan, name: &str, t: &str) -> &'a Condition {
        of(p, name)
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    pub(crate) fn reasons(p: &Plan, name: &str) -> Vec<String> {
        of(p, name)
            .events
            .iter()
            .map(|e| e.reason.clone())
            .collect()
    }

    pub(crate) fn address_pool(spec: Value) -> AddressPool {
        serde_json::from_value(json!({
            "apiVersion": "buoy.io/v1alpha1", "kind": "AddressPool",
            "metadata": {"name": "lan", "generation": 1},
            "spec": spec,
        }))
        .unwrap()
    }
}
