//! Each VirtualIP's plan, pure: the metadata the operator owns (the priorities and conflict
//! annotations of [`buoy_crds::contract`], the avoided router IDs, the finalizer), its status
//! (conditions, master, router ID, addresses in effect), whether each differs from what is
//! observed, and the Events that explain the decisions. A deleted VirtualIP keeps its finalizer
//! until no node holds its addresses, up to the release timeout.

use std::collections::BTreeSet;

use buoy_crds::{
    VirtualIP, VrrpState,
    contract::{CONFLICT_ANNOTATION, PRIORITIES_ANNOTATION},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::router_ids::{AVOIDED_ANNOTATION, RouterId};
use super::served::{Refused, ServedVip};
use super::virtualip_conditions;
use super::world::{World, namespace_of};
use crate::allocate::{MoveReason, Vrid};
use crate::conditions::{self, CONFLICT, DEGRADED, READY, Want};

/// Finalizer that holds a deleted VirtualIP until no node holds its addresses.
pub(crate) const FINALIZER: &str = "buoy.io/release";

/// An Event the controller publishes about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) warning: bool,
    pub(crate) reason: String,
    pub(crate) note: String,
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
pub(crate) struct Meta {
    /// [`PRIORITIES_ANNOTATION`].
    pub(crate) priorities: Option<String>,
    /// [`CONFLICT_ANNOTATION`].
    pub(crate) conflict: Option<String>,
    /// [`AVOIDED_ANNOTATION`].
    pub(crate) avoided: Option<String>,
    /// [`FINALIZER`].
    pub(crate) finalizer: bool,
}

/// The fields of a VirtualIP's status the operator owns.
#[derive(Clone, Debug, PartialEq, Default)]
pub(crate) struct Status {
    pub(crate) observed_generation: Option<i64>,
    pub(crate) conditions: Vec<Condition>,
    pub(crate) master: Option<String>,
    pub(crate) virtual_router_id: Option<u8>,
    /// The addresses in effect (admitted, or allocated).
    pub(crate) addresses: Vec<String>,
    pub(crate) address_pool: Option<String>,
}

/// The plan for one VirtualIP.
#[derive(Clone, Debug)]
pub(crate) struct VirtualIpPlan {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) uid: Option<String>,
    pub(crate) vrid: Vrid,
    pub(crate) meta: Meta,
    pub(crate) meta_changed: bool,
    /// None while the VirtualIP is being deleted.
    pub(crate) status: Option<Status>,
    pub(crate) status_changed: bool,
    pub(crate) events: Vec<Decision>,
}

impl VirtualIpPlan {
    /// The VirtualIP's `namespace/name` ([`buoy_crds::contract::key`]).
    pub(crate) fn key(&self) -> String {
        buoy_crds::contract::key(Some(&self.namespace), Some(&self.name))
    }
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

    /// While a VirtualIP is deleted, the annotations stay as observed: the agents read them
    /// until the object goes.
    fn keep_observed_annotations(&mut self, observed: &Meta) {
        self.priorities.clone_from(&observed.priorities);
        self.conflict.clone_from(&observed.conflict);
        self.avoided.clone_from(&observed.avoided);
    }

    /// The server-side apply body (field manager `buoy-operator`): fields left out are
    /// released, so a removed annotation or finalizer goes.
    pub(crate) fn apply_body(&self, namespace: &str, name: &str) -> Value {
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
    pub(crate) fn apply_body(&self, namespace: &str, name: &str) -> Value {
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

/// Every node whose agent says Master, live or not: a deletion waits for all of them.
fn masters(vip: &VirtualIP) -> Vec<&str> {
    vip.status
        .iter()
        .flat_map(|s| &s.nodes)
        .filter(|n| n.state == VrrpState::Master)
        .map(|n| n.node.as_str())
        .collect()
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

/// The metadata of a VirtualIP: `wanted` while it lives; being deleted, the annotations as
/// observed and the finalizer until it is released (with the Event that says so). Returns it
/// and how long to wait for the release at most.
fn meta(
    vip: &VirtualIP,
    mut wanted: Meta,
    observed: &Meta,
    world: &World,
    events: &mut Vec<Decision>,
) -> (Meta, Option<i64>) {
    let deleting = vip.metadata.deletion_timestamp.is_some();
    let mut wait = None;
    if deleting && observed.finalizer {
        let (keep, event, left) =
            release(vip, &masters(vip), world.now, world.release_timeout_secs);
        wanted.finalizer = keep;
        events.extend(event);
        wait = left;
    }
    if deleting {
        wanted.keep_observed_annotations(observed);
    }
    (wanted, wait)
}

/// The Event for a router ID just allocated or moved (`recorded`: the one in the status).
fn router_id_event(id: &RouterId, recorded: Option<u8>) -> Option<Decision> {
    match &id.vrid {
        Vrid::Allocated { vrid, moved: None } if recorded.is_none() => Some(Decision::normal(
            "VirtualRouterIDAllocated",
            format!("allocated virtual router ID {vrid}"),
        )),
        Vrid::Allocated {
            vrid,
            moved: Some((old, why)),
        } => {
            let why = match why {
                MoveReason::ForeignRouters => format!(
                    "foreign routers use it on the LAN ({})",
                    id.foreign_routers.join(", ")
                ),
                MoveReason::TakenBySpec(o) => format!("VirtualIP {o} names it in its spec"),
                MoveReason::TakenByEarlier(o) => format!("VirtualIP {o} holds it"),
            };
            Some(Decision::warning(
                "VirtualRouterIDMoved",
                format!("virtual router ID {old} moved to {vrid}: {why}"),
            ))
        }
        _ => None,
    }
}

/// `wants` as conditions, sorted by type, keeping the transition times of `observed`.
fn build_conditions(
    wants: &[Want],
    generation: Option<i64>,
    now: Timestamp,
    observed: &[Condition],
) -> Vec<Condition> {
    wants
        .iter()
        .map(|w| conditions::build(w, generation, now, observed))
        .collect()
}

/// The Events for the conditions of a served VirtualIP that changed and are worth telling.
fn condition_events(wants: &[Want], built: &[Condition], observed: &[Condition]) -> Vec<Decision> {
    let mut events = Vec::new();
    for (w, c) in wants.iter().zip(built) {
        let before = conditions::find(observed, w.type_);
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
    events
}

/// The status of a served VirtualIP and the Events of its changed conditions.
fn served_status(
    v: &ServedVip,
    observed: &Status,
    pools: &BTreeSet<String>,
    lost: &BTreeSet<&str>,
    now: Timestamp,
) -> (Status, Vec<Decision>) {
    let wants = virtualip_conditions::wants(v, pools, lost);
    let generation = v.vip.metadata.generation;
    let mut conditions = build_conditions(&wants, generation, now, &observed.conditions);
    let events = condition_events(&wants, &conditions, &observed.conditions);
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    let live_masters: Vec<&str> = masters(&v.vip)
        .into_iter()
        .filter(|n| !lost.contains(n))
        .collect();
    let status = Status {
        observed_generation: generation,
        conditions,
        master: (live_masters.len() == 1).then(|| live_masters[0].to_string()),
        virtual_router_id: v.router_id.vrid.value(),
        addresses: v.vip.spec.addresses.iter().map(|a| a.0.clone()).collect(),
        address_pool: v.pool.clone(),
    };
    (status, events)
}

/// The plan of a served VirtualIP, and how long to wait at most for its release. `pools`: the
/// UpstreamPools by [`buoy_crds::contract::key`]; `lost`: nodes whose status is unknown.
pub(super) fn served(
    v: &ServedVip,
    world: &World,
    pools: &BTreeSet<String>,
    lost: &BTreeSet<&str>,
) -> (VirtualIpPlan, Option<i64>) {
    let vip = &v.vip;
    let observed_meta = Meta::observed(vip);
    let observed_status = Status::observed(vip);
    let deleting = vip.metadata.deletion_timestamp.is_some();
    let mut events = Vec::new();
    let wanted = Meta {
        priorities: v
            .assignment
            .priorities
            .as_ref()
            .and_then(|p| serde_json::to_string(p).ok()),
        conflict: v.conflict.as_ref().map(|c| c.message.clone()),
        avoided: v
            .router_id
            .avoided_annotation(observed_meta.avoided.as_ref()),
        finalizer: !deleting || observed_meta.finalizer,
    };
    let (meta, wait) = meta(vip, wanted, &observed_meta, world, &mut events);
    let meta_changed = meta != observed_meta;
    // Told when an assignment changes (a node came or went), not when it is first made.
    if meta_changed
        && !deleting
        && meta.priorities.is_some()
        && observed_meta.priorities.is_some()
        && meta.priorities != observed_meta.priorities
    {
        let text = v
            .assignment
            .priorities
            .iter()
            .flatten()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        events.push(Decision::normal("PrioritiesAssigned", text));
    }
    events.extend(router_id_event(
        &v.router_id,
        observed_status.virtual_router_id,
    ));
    let status = (!deleting).then(|| {
        let (status, said) = served_status(v, &observed_status, pools, lost, world.now);
        events.extend(said);
        status
    });
    let status_changed = status.as_ref().is_some_and(|s| *s != observed_status);
    let plan = VirtualIpPlan {
        namespace: namespace_of(vip).to_string(),
        name: vip.metadata.name.clone().unwrap_or_default(),
        uid: vip.metadata.uid.clone(),
        vrid: v.router_id.vrid.clone(),
        meta,
        meta_changed,
        status,
        status_changed,
        events,
    };
    (plan, wait)
}

/// The plan of a VirtualIP the address policy does not let be served: Ready is False with
/// the reason and message, nothing is allocated for it (no router ID, no priorities, no
/// placement), and the agents, which decide the same, do not serve it. A deletion still waits
/// for a node that held its addresses before to let go.
pub(super) fn refused(r: &Refused, world: &World) -> (VirtualIpPlan, Option<i64>) {
    let v = r.vip;
    let observed_meta = Meta::observed(v);
    let observed_status = Status::observed(v);
    let deleting = v.metadata.deletion_timestamp.is_some();
    let mut events = Vec::new();
    let wanted = Meta {
        priorities: None,
        conflict: None,
        avoided: observed_meta.avoided.clone(),
        finalizer: !deleting || observed_meta.finalizer,
    };
    let (meta, wait) = meta(v, wanted, &observed_meta, world, &mut events);
    let meta_changed = meta != observed_meta;
    let status = (!deleting).then(|| {
        let wants = [
            Want::new(READY, false, r.reason, r.message.clone()),
            Want::new(DEGRADED, false, "NotServed", "not served: see Ready"),
            Want::new(
                CONFLICT,
                false,
                "NoConflict",
                "no other VirtualIP uses its addresses, router ID or ports",
            ),
        ];
        let generation = v.metadata.generation;
        let mut conditions =
            build_conditions(&wants, generation, world.now, &observed_status.conditions);
        let before = conditions::find(&observed_status.conditions, READY);
        if before.is_none_or(|b| b.reason != r.reason || b.message != r.message) {
            events.push(Decision::warning(r.reason, r.message.clone()));
        }
        conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
        Status {
            observed_generation: generation,
            conditions,
            ..Status::default()
        }
    });
    let status_changed = status.as_ref().is_some_and(|s| *s != observed_status);
    let plan = VirtualIpPlan {
        namespace: namespace_of(v).to_string(),
        name: v.metadata.name.clone().unwrap_or_default(),
        uid: v.metadata.uid.clone(),
        vrid: Vrid::Exhausted,
        meta,
        meta_changed,
        status,
        status_changed,
        events,
    };
    (plan, wait)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::plan::fixture::{Fixture, now, of, reasons, vip};
    use k8s_openapi::jiff::Timestamp;

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
}
