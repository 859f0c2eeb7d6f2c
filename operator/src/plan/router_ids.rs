//! The plan's router ID phase, pure: each served VirtualIP's VRID, from [`allocate::vrids`]
//! over claims made of its spec, its status, the operator's memory and the agents'
//! foreign-router reports; the VRIDs it left for foreign routers (kept in
//! [`AVOIDED_ANNOTATION`], so that they stay avoided across operator restarts); and the VRIDs
//! known to be used by foreign routers (the next [`Memory::foreign`]).

use std::collections::{BTreeSet, HashMap};

use buoy_crds::{VirtualIP, contract};
use k8s_openapi::jiff::Timestamp;

use super::world::{Memory, key_of};
use crate::allocate::{self, Family, MoveReason, Vrid, VridClaim};

/// Annotation on a VirtualIP whose VRID moved because foreign routers used it: the VRIDs it left
/// (comma-separated), so that they stay avoided after an operator restart.
pub(crate) const AVOIDED_ANNOTATION: &str = "buoy.io/avoided-virtual-router-ids";

/// How long the operator ignores foreign-router reports on a VirtualIP after moving its VRID
/// (the agents' reports still describe the old one until they reconfigure).
pub(crate) const FOREIGN_COOLDOWN_SECS: i64 = 30;

/// One VirtualIP's router ID, as the phase decides it.
#[derive(Clone, Debug)]
pub(super) struct RouterId {
    pub(super) vrid: Vrid,
    /// The VRIDs it left for foreign routers before: its annotation, and what the operator
    /// remembers of moves the annotation does not show yet.
    pub(super) avoided: BTreeSet<u8>,
    /// The foreign routers the agents report on its VRID, sorted.
    pub(super) foreign_routers: Vec<String>,
}

/// What the phase decides.
#[derive(Clone, Debug)]
pub(super) struct RouterIds {
    /// One per VirtualIP, in the order given.
    pub(super) each: Vec<RouterId>,
    /// VRIDs known to be used by foreign routers.
    pub(super) foreign: BTreeSet<(Family, u8)>,
}

/// The foreign routers the agents report on `v`, sorted, without duplicates.
fn foreign_routers(v: &VirtualIP) -> Vec<String> {
    v.status
        .iter()
        .flat_map(|s| &s.nodes)
        .flat_map(|n| n.foreign_routers.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Decides the VRIDs of `vips` (served, in precedence order: oldest first), each with whether
/// it runs VRRP: one that does not (BGP in ECMP mode) gets [`Vrid::NotUsed`] and claims none,
/// which is how BGP lifts VRRP's limit of 255 router IDs per LAN.
pub(super) fn allocate(vips: &[(&VirtualIP, bool)], memory: &Memory, now: Timestamp) -> RouterIds {
    let uid = |v: &VirtualIP| v.metadata.uid.clone();
    let in_cooldown = |v: &VirtualIP| {
        uid(v)
            .and_then(|u| memory.moved.get(&u).copied())
            .is_some_and(|t| now.as_second() - t.as_second() < FOREIGN_COOLDOWN_SECS)
    };
    // The members of a VRRP group share one claim, and so one router ID: the first member's
    // (the oldest), with any member's recorded ID and any member's foreign routers.
    let mut claims: Vec<VridClaim> = Vec::with_capacity(vips.len());
    let mut slot: Vec<Option<usize>> = Vec::with_capacity(vips.len());
    let mut by_group: HashMap<String, usize> = HashMap::new();
    for (v, vrrp) in vips {
        if !vrrp {
            slot.push(None);
            continue;
        }
        let mut claim = VridClaim {
            id: key_of(v),
            family: Family::of(&v.spec),
            interface: v.spec.interface.clone(),
            spec: v.spec.virtual_router_id,
            recorded: uid(v)
                .and_then(|u| memory.vrids.get(&u).copied())
                .or_else(|| v.status.as_ref().and_then(|s| s.virtual_router_id)),
            foreign: !foreign_routers(v).is_empty() && !in_cooldown(v),
        };
        if let Some(group) = contract::group_of(&v.metadata) {
            let group = contract::group_key(group);
            if let Some(i) = by_group.get(&group) {
                let c = &mut claims[*i];
                c.recorded = c.recorded.or(claim.recorded);
                c.foreign |= claim.foreign;
                slot.push(Some(*i));
                continue;
            }
            by_group.insert(group.clone(), claims.len());
            claim.id = group;
        }
        slot.push(Some(claims.len()));
        claims.push(claim);
    }
    let mut foreign = memory.foreign.clone();
    // What earlier moves recorded (the operator may have restarted since).
    let avoided: Vec<BTreeSet<u8>> = vips
        .iter()
        .map(|(v, _)| {
            let mut ids = avoided_of(v);
            if let Some(left) = uid(v).and_then(|u| memory.left.get(&u)) {
                ids.extend(left);
            }
            ids
        })
        .collect();
    for (i, ids) in slot.iter().zip(&avoided) {
        if let Some(i) = i {
            foreign.extend(ids.iter().map(|id| (claims[*i].family, *id)));
        }
    }
    for c in &claims {
        if c.foreign
            && let Some(v) = c.spec.or(c.recorded)
        {
            foreign.insert((c.family, v));
        }
    }
    let vrids = allocate::vrids(&claims, &foreign);
    let each = vips
        .iter()
        .zip(slot)
        .zip(avoided)
        .map(|(((v, _), i), avoided)| RouterId {
            vrid: i.map_or(Vrid::NotUsed, |i| vrids[i].clone()),
            avoided,
            foreign_routers: foreign_routers(v),
        })
        .collect();
    RouterIds { each, foreign }
}

impl RouterId {
    /// The value of [`AVOIDED_ANNOTATION`]: the VRIDs left before and the one just left for
    /// foreign routers. With none, `observed` stays: nothing to record, or a value that is not
    /// ours to fix, left as it is so that every pass does not try to remove it again.
    pub(super) fn avoided_annotation(&self, observed: Option<&String>) -> Option<String> {
        let mut ids = self.avoided.clone();
        if let Vrid::Allocated {
            moved: Some((old, MoveReason::ForeignRouters)),
            ..
        } = &self.vrid
        {
            ids.insert(*old);
        }
        if ids.is_empty() {
            observed.cloned()
        } else {
            Some(ids.iter().map(u8::to_string).collect::<Vec<_>>().join(","))
        }
    }
}

/// The VRIDs a VirtualIP's [`AVOIDED_ANNOTATION`] records; what does not parse is ignored (the
/// operator writes the annotation, a hand edit only loses a hint).
pub(crate) fn avoided_of(v: &VirtualIP) -> BTreeSet<u8> {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::AVOIDED_ANNOTATION;
    use crate::allocate::{Family, MoveReason, Vrid};
    use crate::conditions::DEGRADED;
    use crate::plan::Memory;
    use crate::plan::fixture::{Fixture, address_pool, cond, of, reasons, vip};

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

    /// BGP in ECMP mode runs no VRRP: such VirtualIPs claim no router ID, so more than 255 of
    /// them are served on one LAN, and one that names an ID in its spec blocks no other. In
    /// ActiveStandby mode, and from an L2 pool, they keep theirs.
    #[test]
    fn bgp_ecmp_virtualips_use_no_router_id() {
        let lan = address_pool(json!({"addresses": ["10.0.0.0/24"]}));
        let mut routed =
            address_pool(json!({"addresses": ["10.96.0.0/22"], "announcement": "BGP"}));
        routed.metadata.name = Some("routed".into());
        let mut vips = vec![
            vip("a", "l2", 1000, json!({"addressPool": "lan"})),
            vip(
                "a",
                "standby",
                999,
                json!({"addressPool": "routed", "bgp": {"mode": "ActiveStandby"}}),
            ),
            // ECMP by default; the ID its spec names is not used, so not taken from "late".
            vip(
                "a",
                "fixed",
                998,
                json!({"addressPool": "routed", "virtualRouterID": 3}),
            ),
        ];
        for i in 0..300 {
            vips.push(vip(
                "a",
                &format!("ecmp-{i}"),
                900 - i,
                json!({"addressPool": "routed", "bgp": {"mode": "ECMP"}}),
            ));
        }
        vips.push(vip("a", "late", 1, json!({"addressPool": "lan"})));
        let mut f = Fixture::new(vips);
        f.address_pools = vec![lan, routed];
        let p = f.settle();
        assert_eq!(
            of(&p, "l2").vrid,
            Vrid::Allocated {
                vrid: 1,
                moved: None
            }
        );
        assert_eq!(of(&p, "standby").vrid.value(), Some(2));
        assert_eq!(of(&p, "late").vrid.value(), Some(3));
        for name in (0..300)
            .map(|i| format!("ecmp-{i}"))
            .chain(["fixed".into()])
        {
            let v = of(&p, &name);
            assert_eq!(v.vrid, Vrid::NotUsed, "{name}");
            let status = v.status.as_ref().unwrap();
            assert_eq!(status.virtual_router_id, None, "{name}");
            assert_eq!(status.address_pool.as_deref(), Some("routed"), "{name}");
            assert_eq!(status.addresses.len(), 1, "{name}");
            assert!(v.meta.conflict.is_none(), "{name}: {:?}", v.meta.conflict);
            assert!(
                !reasons(&p, &name)
                    .iter()
                    .any(|r| r.starts_with("VirtualRouterID")),
                "{name}: {:?}",
                reasons(&p, &name)
            );
        }
        // Settled: the VRRP ones keep theirs.
        let again = f.plan();
        assert_eq!(of(&again, "l2").vrid, Vrid::Kept(1));
        assert_eq!(of(&again, "standby").vrid, Vrid::Kept(2));
        assert_eq!(of(&again, "ecmp-0").vrid, Vrid::NotUsed);
        // A pool turned from L2 to BGP: its VirtualIPs give their IDs up.
        f.address_pools[0].spec.announcement = buoy_crds::Announcement::BGP;
        let p = f.settle();
        assert_eq!(of(&p, "l2").vrid, Vrid::NotUsed);
        assert_eq!(
            of(&p, "l2").status.as_ref().unwrap().virtual_router_id,
            None
        );
        assert!(of(&p, "l2").status_changed);
        assert_eq!(of(&p, "standby").vrid, Vrid::Kept(2));
    }
}
