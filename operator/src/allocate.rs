//! Allocation, pure: virtual router IDs for VirtualIPs that omit one, and per-node priorities
//! for VirtualIPs that omit `spec.priorities`.
//!
//! **VRIDs.** VRRP router IDs are a per-LAN, per-family namespace (IPv4 and IPv6 VRRP are
//! separate protocols on the wire). The operator cannot see which VirtualIPs share a LAN, so it
//! treats every VirtualIP of one address family as sharing one, except that VirtualIPs naming
//! different `spec.interface`s are taken to be on different LANs (one without an interface may
//! be on any): allocated IDs are unique per family and interface across the cluster. Should
//! two differently named interfaces share a LAN after all, the agents see each other as
//! foreign routers and the VRID moves (below). IDs written in a spec are taken first; an ID once allocated and
//! recorded in `status.virtualRouterID` is kept, unless (a) an agent reports foreign routers on
//! it, (b) a VirtualIP's spec now names it, or (c) an earlier VirtualIP recorded the same one (a
//! lost race). Then the VirtualIP moves to the lowest free ID and the caller emits an Event. IDs
//! that showed foreign routers are avoided afterwards (the caller remembers them).
//!
//! **Priorities.** Rendezvous hashing ranks a VirtualIP's nodes by `hash(vip, node)`, so the
//! ranking is deterministic, independent of the other VirtualIPs, and moves only the VIPs of a
//! node that comes or goes. Plain rendezvous spreads masters only statistically (100 VIPs on 5
//! nodes put 23 or more on some node about a quarter of the time), so the master is chosen with
//! *bounded loads*: VirtualIPs, oldest first, take the best-ranked node that masters fewer than
//! `⌈VIPs / nodes⌉ + 1`; the rest of the ranking gives the backups' priorities. A new VirtualIP
//! moves no existing master unless it raises that cap; a new node takes roughly its share.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The address family of a VirtualIP: VRRP for IPv4 and for IPv6 are separate ID spaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Family {
    V4,
    V6,
}

impl Family {
    /// The family of a VirtualIP's addresses (validation keeps them to one family).
    pub(crate) fn of(spec: &buoy_crds::VirtualIPSpec) -> Family {
        match spec.addresses.first() {
            Some(a) if a.0.contains(':') => Family::V6,
            _ => Family::V4,
        }
    }
}

/// What allocation knows of one VirtualIP.
#[derive(Clone, Debug)]
pub(crate) struct VridClaim {
    /// `namespace/name`, for messages.
    pub(crate) id: String,
    pub(crate) family: Family,
    /// `spec.interface`: VirtualIPs that name different interfaces are taken to be on
    /// different LANs; an unnamed one may be on any.
    pub(crate) interface: Option<String>,
    /// `spec.virtualRouterID`.
    pub(crate) spec: Option<u8>,
    /// `status.virtualRouterID` as recorded (or just written by this operator).
    pub(crate) recorded: Option<u8>,
    /// Whether an agent reports foreign routers on the VirtualIP's current VRID.
    pub(crate) foreign: bool,
}

/// Why an allocated ID had to move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MoveReason {
    ForeignRouters,
    TakenBySpec(String),
    TakenByEarlier(String),
}

/// The outcome for one VirtualIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Vrid {
    /// From `spec.virtualRouterID`.
    Spec(u8),
    /// Allocated earlier and kept.
    Kept(u8),
    /// Newly allocated; `moved` tells the ID it had and why it left it.
    Allocated {
        vrid: u8,
        moved: Option<(u8, MoveReason)>,
    },
    /// No free ID in the family.
    Exhausted,
    /// None needed: the VirtualIP runs no VRRP (BGP in ECMP mode: every eligible node announces
    /// its addresses).
    NotUsed,
}

impl Vrid {
    pub(crate) fn value(&self) -> Option<u8> {
        match self {
            Vrid::Spec(v) | Vrid::Kept(v) | Vrid::Allocated { vrid: v, .. } => Some(*v),
            Vrid::Exhausted | Vrid::NotUsed => None,
        }
    }
}

/// A user of a VRID: `(interface, namespace/name)`.
type User = (Option<String>, String);

/// VRIDs in use, by family and ID: who uses each, on which interface.
#[derive(Default)]
struct Taken(HashMap<(Family, u8), Vec<User>>);

impl Taken {
    /// Who uses `v` where `interface` may be: the same interface, or either unnamed (the
    /// default interface may be any).
    fn by(&self, family: Family, v: u8, interface: &Option<String>) -> Option<&str> {
        self.0.get(&(family, v))?.iter().find_map(|(i, id)| {
            (i.is_none() || interface.is_none() || i == interface).then_some(id.as_str())
        })
    }
    fn add(&mut self, c: &VridClaim, v: u8) {
        self.0
            .entry((c.family, v))
            .or_default()
            .push((c.interface.clone(), c.id.clone()));
    }
}

/// Allocates VRIDs for `claims`, which must be in precedence order (oldest first). `avoid`:
/// IDs seen used by foreign routers, never handed out again. Returns one outcome per claim.
pub(crate) fn vrids(claims: &[VridClaim], avoid: &BTreeSet<(Family, u8)>) -> Vec<Vrid> {
    let mut used = Taken::default();
    let mut spec_users = Taken::default();
    let mut out: Vec<Option<Vrid>> = vec![None; claims.len()];
    let mut pending: Vec<(usize, Option<(u8, MoveReason)>)> = Vec::new();
    // Spec IDs first, then recorded ones in precedence order.
    for (i, c) in claims.iter().enumerate() {
        if let Some(v) = c.spec.filter(|v| *v >= 1) {
            spec_users.add(c, v);
            used.add(c, v);
            out[i] = Some(Vrid::Spec(v));
        }
    }
    for (i, c) in claims.iter().enumerate() {
        if out[i].is_some() {
            continue;
        }
        match c.recorded.filter(|v| *v >= 1) {
            None => pending.push((i, None)),
            Some(v) => {
                if c.foreign {
                    pending.push((i, Some((v, MoveReason::ForeignRouters))));
                } else if let Some(owner) = spec_users.by(c.family, v, &c.interface) {
                    pending.push((i, Some((v, MoveReason::TakenBySpec(owner.to_string())))));
                } else if let Some(owner) = used.by(c.family, v, &c.interface) {
                    pending.push((i, Some((v, MoveReason::TakenByEarlier(owner.to_string())))));
                } else {
                    used.add(c, v);
                    out[i] = Some(Vrid::Kept(v));
                }
            }
        }
    }
    // A VRID with foreign routers is avoided by everyone, not only by the VirtualIP that saw them.
    let mut avoid = avoid.clone();
    for (i, moved) in &pending {
        if let Some((old, MoveReason::ForeignRouters)) = moved {
            avoid.insert((claims[*i].family, *old));
        }
    }
    for (i, moved) in pending {
        let c = &claims[i];
        let free = (1..=255u8).find(|v| {
            used.by(c.family, *v, &c.interface).is_none()
                && !avoid.contains(&(c.family, *v))
                && moved.as_ref().is_none_or(|(old, _)| old != v)
        });
        out[i] = Some(match free {
            Some(v) => {
                used.add(c, v);
                Vrid::Allocated { vrid: v, moved }
            }
            None => Vrid::Exhausted,
        });
    }
    out.into_iter()
        .map(|o| o.unwrap_or(Vrid::Exhausted))
        .collect()
}

/// The highest priority the operator assigns; the other nodes get [`step`] less each.
const TOP_PRIORITY: u8 = 200;

/// The gap between assigned priorities: up to 10, less only when there are many nodes. Backups'
/// skew times differ by `gap / 256` of an interval, so with a gap of 1 at 100 ms intervals two
/// backups fire within 0.4 ms of each other when the master resigns, both become master and
/// both announce; a gap of 10 separates them by 4 ms.
pub(crate) fn step(nodes: usize) -> u8 {
    u8::try_from(199 / nodes.max(1)).unwrap_or(10).clamp(1, 10)
}

/// A stable 64-bit hash of `(vip, node)`: FNV-1a, then the SplitMix64 finalizer so that
/// similar names spread well. Fixed by definition (std's hashers may change between releases,
/// and priorities must not move when the operator is upgraded).
pub(crate) fn rendezvous_score(vip: &str, node: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in vip.bytes().chain([0u8]).chain(node.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// `nodes` ranked for `vip`, best first (ties, which need a 64-bit collision, by name).
fn rank<'a>(vip: &str, nodes: &[&'a str]) -> Vec<&'a str> {
    let mut ranked: Vec<(u64, &str)> = nodes
        .iter()
        .map(|n| (rendezvous_score(vip, n), *n))
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    ranked.dedup_by(|a, b| a.1 == b.1);
    ranked.into_iter().map(|(_, n)| n).collect()
}

/// One VirtualIP for priority assignment.
#[derive(Clone, Debug)]
pub(crate) struct PriorityRequest {
    /// The rendezvous identity: the VirtualIP's uid (or `namespace/name` before it has one).
    pub(crate) id: String,
    /// The nodes it selects.
    pub(crate) nodes: Vec<String>,
    /// Set when the VirtualIP has `spec.priorities`: its preferred master, which counts toward
    /// that node's load but gets no assignment.
    pub(crate) fixed_master: Option<String>,
}

/// Assigns priorities to `requests` (precedence order, oldest first): `None` for the ones with
/// `fixed_master`, else `{node: priority}` with the chosen master at [`TOP_PRIORITY`] and the
/// other nodes below it in rendezvous order (never under 1).
pub(crate) fn priorities(requests: &[PriorityRequest]) -> Vec<Option<BTreeMap<String, u8>>> {
    let all_nodes: BTreeSet<&str> = requests
        .iter()
        .flat_map(|r| r.nodes.iter().map(String::as_str))
        .collect();
    let participants = requests.iter().filter(|r| !r.nodes.is_empty()).count();
    let cap = if all_nodes.is_empty() {
        0
    } else {
        participants.div_ceil(all_nodes.len()) + 1
    };
    let mut load: HashMap<&str, usize> = HashMap::new();
    for r in requests {
        if let Some(m) = &r.fixed_master {
            *load.entry(m.as_str()).or_default() += 1;
        }
    }
    requests
        .iter()
        .map(|r| {
            if r.fixed_master.is_some() {
                return None;
            }
            let nodes: Vec<&str> = r.nodes.iter().map(String::as_str).collect();
            let ranked = rank(&r.id, &nodes);
            let master = ranked
                .iter()
                .find(|n| load.get(**n).copied().unwrap_or(0) < cap)
                .or_else(|| {
                    // Every candidate is full (selectors concentrate VIPs on few nodes): the
                    // least loaded, ties by rank.
                    ranked
                        .iter()
                        .min_by_key(|n| load.get(**n).copied().unwrap_or(0))
                })
                .copied();
            let mut out = BTreeMap::new();
            if let Some(m) = master {
                *load.entry(m).or_default() += 1;
                out.insert(m.to_string(), TOP_PRIORITY);
            }
            let mut next = TOP_PRIORITY;
            let gap = step(ranked.len());
            for n in ranked.iter().filter(|n| Some(**n) != master) {
                next = next.saturating_sub(gap).max(1);
                out.insert((*n).to_string(), next);
            }
            Some(out)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(id: &str, spec: Option<u8>, recorded: Option<u8>) -> VridClaim {
        VridClaim {
            id: id.into(),
            family: Family::V4,
            interface: None,
            spec,
            recorded,
            foreign: false,
        }
    }

    #[test]
    fn lowest_free_ids_around_spec_ids() {
        let got = vrids(
            &[
                claim("a", None, None),
                claim("b", Some(1), None),
                claim("c", None, None),
            ],
            &BTreeSet::new(),
        );
        assert_eq!(
            got,
            vec![
                Vrid::Allocated {
                    vrid: 2,
                    moved: None
                },
                Vrid::Spec(1),
                Vrid::Allocated {
                    vrid: 3,
                    moved: None
                },
            ]
        );
    }

    #[test]
    fn recorded_ids_are_stable_when_others_come_and_go() {
        // c recorded 7 long ago; a and b were deleted since: c keeps 7, d takes the lowest free.
        let got = vrids(
            &[claim("c", None, Some(7)), claim("d", None, None)],
            &BTreeSet::new(),
        );
        assert_eq!(
            got,
            vec![
                Vrid::Kept(7),
                Vrid::Allocated {
                    vrid: 1,
                    moved: None
                }
            ]
        );
        // Allocation is a function of its inputs: the same world gives the same answer.
        let again = vrids(
            &[claim("c", None, Some(7)), claim("d", None, Some(1))],
            &BTreeSet::new(),
        );
        assert_eq!(again, vec![Vrid::Kept(7), Vrid::Kept(1)]);
    }

    #[test]
    fn families_are_separate_id_spaces() {
        let mut v6 = claim("six", None, None);
        v6.family = Family::V6;
        let got = vrids(&[claim("four", None, None), v6], &BTreeSet::new());
        assert_eq!(got[0].value(), Some(1));
        assert_eq!(got[1].value(), Some(1));
    }

    #[test]
    fn foreign_routers_move_an_allocated_id_and_it_stays_avoided() {
        let mut a = claim("a", None, Some(1));
        a.foreign = true;
        let got = vrids(&[a, claim("b", None, None)], &BTreeSet::new());
        assert_eq!(
            got[0],
            Vrid::Allocated {
                vrid: 2,
                moved: Some((1, MoveReason::ForeignRouters))
            }
        );
        // 1 is not handed to b in the same pass either: it is the old ID of a.
        assert_eq!(got[1].value(), Some(3));
        let avoid = BTreeSet::from([(Family::V4, 1)]);
        assert_eq!(vrids(&[claim("c", None, None)], &avoid)[0].value(), Some(2));
    }

    #[test]
    fn spec_takes_an_allocated_id_and_duplicates_resolve_to_the_earlier() {
        let got = vrids(
            &[
                claim("old", None, Some(5)),
                claim("twin", None, Some(5)),
                claim("user", Some(6), None),
                claim("was6", None, Some(6)),
            ],
            &BTreeSet::new(),
        );
        assert_eq!(got[0], Vrid::Kept(5));
        assert_eq!(
            got[1],
            Vrid::Allocated {
                vrid: 1,
                moved: Some((5, MoveReason::TakenByEarlier("old".into())))
            }
        );
        assert_eq!(got[2], Vrid::Spec(6));
        assert_eq!(
            got[3],
            Vrid::Allocated {
                vrid: 2,
                moved: Some((6, MoveReason::TakenBySpec("user".into())))
            }
        );
    }

    #[test]
    fn named_interfaces_are_separate_lans_and_an_unnamed_one_may_be_any() {
        let on = |id: &str, iface: Option<&str>| VridClaim {
            interface: iface.map(str::to_string),
            ..claim(id, None, None)
        };
        let got = vrids(
            &[
                on("a", Some("eth0")),
                on("b", Some("eth1")),
                on("c", None),
                on("d", Some("eth1")),
            ],
            &BTreeSet::new(),
        );
        let values: Vec<Option<u8>> = got.iter().map(Vrid::value).collect();
        assert_eq!(values, vec![Some(1), Some(1), Some(2), Some(3)]);
    }

    #[test]
    fn exhaustion_is_reported_not_wrapped() {
        let claims: Vec<VridClaim> = (0..256)
            .map(|i| claim(&format!("v{i}"), None, None))
            .collect();
        let got = vrids(&claims, &BTreeSet::new());
        assert_eq!(got[254].value(), Some(255));
        assert_eq!(got[255], Vrid::Exhausted);
    }

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn masters_of_100_vips_spread_over_5_nodes() {
        let requests: Vec<PriorityRequest> = (0..100)
            .map(|i| PriorityRequest {
                id: format!("6f1c0e2a-0000-4000-8000-{i:012}"),
                nodes: nodes(5),
                fixed_master: None,
            })
            .collect();
        let assigned = priorities(&requests);
        let mut masters: BTreeMap<String, usize> = BTreeMap::new();
        for p in &assigned {
            let p = p.as_ref().unwrap();
            assert_eq!(p.len(), 5);
            let top = p.iter().max_by_key(|(_, v)| **v).unwrap();
            assert_eq!(*top.1, TOP_PRIORITY);
            let mut values: Vec<u8> = p.values().copied().collect();
            values.sort();
            assert_eq!(
                values,
                vec![160, 170, 180, 190, 200],
                "distinct priorities, 10 apart"
            );
            *masters.entry(top.0.clone()).or_default() += 1;
        }
        assert_eq!(
            masters.len(),
            5,
            "every node masters some VIPs: {masters:?}"
        );
        assert!(
            masters.values().all(|m| *m <= 100usize.div_ceil(5) + 2),
            "{masters:?}"
        );
        // Deterministic.
        assert_eq!(priorities(&requests), assigned);
    }

    #[test]
    fn spreading_holds_for_other_names_too() {
        for seed in 0..20 {
            let requests: Vec<PriorityRequest> = (0..100)
                .map(|i| PriorityRequest {
                    id: format!("ns-{seed}/web-{i}"),
                    nodes: nodes(5),
                    fixed_master: None,
                })
                .collect();
            let mut masters: HashMap<String, usize> = HashMap::new();
            for p in priorities(&requests).into_iter().flatten() {
                let top = p.into_iter().max_by_key(|(_, v)| *v).unwrap();
                *masters.entry(top.0).or_default() += 1;
            }
            assert!(masters.values().all(|m| *m <= 22), "{seed}: {masters:?}");
        }
    }

    #[test]
    fn a_new_vip_does_not_move_existing_masters_and_a_new_node_moves_few() {
        // 51 and 52 VIPs on 5 nodes have the same cap (12): the newcomer moves nobody.
        let requests: Vec<PriorityRequest> = (0..51)
            .map(|i| PriorityRequest {
                id: format!("vip-{i}"),
                nodes: nodes(5),
                fixed_master: None,
            })
            .collect();
        let before = priorities(&requests);
        let mut more = requests.clone();
        more.push(PriorityRequest {
            id: "vip-new".into(),
            nodes: nodes(5),
            fixed_master: None,
        });
        let after = priorities(&more);
        assert_eq!(&after[..51], &before[..]);

        let grown: Vec<PriorityRequest> = requests
            .iter()
            .map(|r| PriorityRequest {
                nodes: nodes(6),
                ..r.clone()
            })
            .collect();
        let master = |p: &Option<BTreeMap<String, u8>>| {
            p.as_ref()
                .unwrap()
                .iter()
                .find(|(_, v)| **v == TOP_PRIORITY)
                .map(|(n, _)| n.clone())
                .unwrap()
        };
        let moved = priorities(&grown)
            .iter()
            .zip(&before)
            .filter(|(a, b)| master(a) != master(b))
            .count();
        assert!(moved <= 20, "a sixth node moved {moved} of 51 masters");
    }

    #[test]
    fn fixed_priorities_count_toward_load_and_get_no_assignment() {
        let mut requests = vec![
            PriorityRequest {
                id: "fixed".into(),
                nodes: nodes(2),
                fixed_master: Some("node-1".into()),
            };
            3
        ];
        requests.push(PriorityRequest {
            id: "free".into(),
            nodes: nodes(2),
            fixed_master: None,
        });
        let got = priorities(&requests);
        assert!(got[..3].iter().all(Option::is_none));
        // cap = ⌈4/2⌉+1 = 3: node-1 is full.
        assert_eq!(got[3].as_ref().unwrap()["node-2"], TOP_PRIORITY);
    }

    #[test]
    fn no_nodes_no_priorities() {
        let got = priorities(&[PriorityRequest {
            id: "x".into(),
            nodes: vec![],
            fixed_master: None,
        }]);
        assert_eq!(got, vec![Some(BTreeMap::new())]);
    }

    #[test]
    fn priority_gaps_are_wide_unless_there_are_many_nodes() {
        assert_eq!(step(1), 10);
        assert_eq!(step(3), 10);
        assert_eq!(step(19), 10);
        assert_eq!(step(40), 4);
        assert_eq!(step(300), 1);
    }
}
