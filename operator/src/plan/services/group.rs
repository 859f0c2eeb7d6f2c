//! VRRP groups of Services' VirtualIPs, pure: router IDs are scarce (255 per LAN and family),
//! so the VirtualIPs of one placement (AddressPool and family; not those of
//! `externalTrafficPolicy: Local`, whose masters follow their own endpoints) share VRRP
//! instances, at most [`GROUP_SIZE`] addresses each, as keepalived puts many addresses under one
//! `virtual_router_id`. A placement has enough groups for its VirtualIPs and, with few of them,
//! one per node, so that masters still spread over the nodes.
//!
//! Members are placed by rendezvous hashing with bounded load: each VirtualIP ranks the groups by
//! `hash(placement, group, VirtualIP)` and takes the best one with room. A VirtualIP stays in
//! the group it was given (the annotation records it, so an operator restart changes nothing)
//! while that group exists: new Services never move old ones. Only when the placement needs
//! fewer groups (Services deleted) do the members of the groups that go move, and their agents
//! hand those addresses over make-before-break.

use std::collections::BTreeMap;

use buoy_crds::contract::GROUP_SIZE;

use crate::allocate::rendezvous_score;

/// Placements with this many nodes or more get at least this many groups (one per node up to
/// here), so that masters spread; more nodes share them.
const SPREAD: usize = 8;

/// One Service VirtualIP to place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    /// The VirtualIP's `namespace/name`.
    pub(crate) key: String,
    /// The AddressPool it is served from.
    pub(crate) pool: String,
    /// Its family.
    pub(crate) ipv6: bool,
    /// Whether it may share an instance (`externalTrafficPolicy: Local` ones may not).
    pub(crate) groupable: bool,
    /// The group its annotation records now.
    pub(crate) recorded: Option<String>,
}

/// The group name prefix of a placement.
fn prefix(pool: &str, ipv6: bool) -> String {
    format!("{pool}-{}-", if ipv6 { "v6" } else { "v4" })
}

/// How many groups `members` VirtualIPs on `nodes` nodes get.
pub(crate) fn groups_for(members: usize, nodes: usize) -> usize {
    members
        .div_ceil(GROUP_SIZE)
        .max(members.min(nodes).min(SPREAD))
        .max(1)
}

/// The group of each groupable member, by VirtualIP key; `nodes` counts the nodes of each
/// AddressPool.
pub(crate) fn assign(
    members: &[Member],
    nodes: &BTreeMap<String, usize>,
) -> BTreeMap<String, String> {
    let mut placements: BTreeMap<(String, bool), Vec<&Member>> = BTreeMap::new();
    for m in members.iter().filter(|m| m.groupable) {
        placements
            .entry((m.pool.clone(), m.ipv6))
            .or_default()
            .push(m);
    }
    let mut out = BTreeMap::new();
    for ((pool, ipv6), mut members) in placements {
        members.sort_by(|a, b| a.key.cmp(&b.key));
        let prefix = prefix(&pool, ipv6);
        let count = groups_for(members.len(), nodes.get(&pool).copied().unwrap_or(1));
        // Bounded load: a quarter above the mean (rounded down), never above GROUP_SIZE.
        let mean = members.len().div_ceil(count);
        let bound = (mean + mean / 4).clamp(1, GROUP_SIZE);
        let mut load = vec![0usize; count];
        let mut rest = Vec::new();
        for m in members {
            let kept = m
                .recorded
                .as_deref()
                .and_then(|r| r.strip_prefix(&prefix))
                .and_then(|i| i.parse::<usize>().ok())
                .filter(|i| *i < count && load[*i] < GROUP_SIZE);
            match kept {
                Some(i) => {
                    load[i] += 1;
                    out.insert(m.key.clone(), format!("{prefix}{i}"));
                }
                None => rest.push(m),
            }
        }
        let names: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
        for m in rest {
            // The best-ranked group with room under the bound, else under GROUP_SIZE: one scan
            // over the scores, no sort and no allocation per (member, group).
            let scores: Vec<u64> = names.iter().map(|g| rendezvous_score(g, &m.key)).collect();
            let best = |room: usize, load: &[usize]| {
                (0..load.len().min(scores.len()))
                    .filter(|i| load[*i] < room)
                    .max_by_key(|i| scores[*i])
            };
            let i = best(bound, &load)
                .or_else(|| best(GROUP_SIZE, &load))
                // Full everywhere (sticky members above the bound): a group beyond the count.
                .unwrap_or_else(|| {
                    load.push(0);
                    load.len() - 1
                });
            load[i] += 1;
            out.insert(m.key.clone(), format!("{prefix}{i}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn members(n: usize, pool: &str) -> Vec<Member> {
        (0..n)
            .map(|i| Member {
                key: format!("ns-{}/svc-{i}", i % 7),
                pool: pool.into(),
                ipv6: false,
                groupable: true,
                recorded: None,
            })
            .collect()
    }

    fn sizes(groups: &BTreeMap<String, String>) -> BTreeMap<&str, usize> {
        let mut s = BTreeMap::new();
        for g in groups.values() {
            *s.entry(g.as_str()).or_default() += 1;
        }
        s
    }

    fn nodes(pool: &str, n: usize) -> BTreeMap<String, usize> {
        BTreeMap::from([(pool.to_string(), n)])
    }

    #[test]
    fn a_thousand_services_use_at_most_64_groups_of_at_most_16() {
        let groups = assign(&members(1000, "lb"), &nodes("lb", 3));
        assert_eq!(groups.len(), 1000);
        let s = sizes(&groups);
        assert!(s.len() <= 64, "{} groups", s.len());
        assert!(s.values().all(|n| *n <= GROUP_SIZE), "{s:?}");
        assert!(s.keys().all(|g| g.starts_with("lb-v4-")));
    }

    #[test]
    fn few_services_get_a_group_per_node_so_masters_spread() {
        let groups = assign(&members(6, "lb"), &nodes("lb", 3));
        assert_eq!(sizes(&groups).len(), 3);
        assert!(sizes(&groups).values().all(|n| *n == 2), "{groups:?}");
        let one = assign(&members(1, "lb"), &nodes("lb", 3));
        assert_eq!(sizes(&one).len(), 1);
        assert_eq!(groups_for(40, 100), SPREAD);
        assert_eq!(groups_for(0, 3), 1);
    }

    #[test]
    fn placements_local_services_and_families_are_apart() {
        let mut m = members(4, "a");
        m.extend(members(4, "b").into_iter().map(|mut x| {
            x.key.push_str("-b");
            x
        }));
        m[0].groupable = false;
        m[1].ipv6 = true;
        let groups = assign(&m, &BTreeMap::from([("a".into(), 1), ("b".into(), 1)]));
        assert!(!groups.contains_key(&m[0].key), "Local services run alone");
        assert_eq!(groups[&m[1].key], "a-v6-0");
        let names: BTreeSet<&str> = groups.values().map(String::as_str).collect();
        assert_eq!(names, BTreeSet::from(["a-v4-0", "a-v6-0", "b-v4-0"]));
    }

    #[test]
    fn members_keep_their_group_when_others_come_and_go() {
        let mut m = members(300, "lb");
        let first = assign(&m, &nodes("lb", 3));
        for x in &mut m {
            x.recorded = first.get(&x.key).cloned();
        }
        // 300 more arrive, and an operator restart reads the annotations back.
        m.extend(members(600, "lb").into_iter().skip(300));
        let second = assign(&m, &nodes("lb", 3));
        for (k, g) in &first {
            assert_eq!(&second[k], g, "{k} moved");
        }
        assert!(sizes(&second).values().all(|n| *n <= GROUP_SIZE));
        // Half go: the groups left keep their members; only those of dropped groups move.
        let kept: Vec<Member> = m
            .iter()
            .filter(|x| x.key.ends_with('0') || x.key.ends_with('5'))
            .map(|x| Member {
                recorded: second.get(&x.key).cloned(),
                ..x.clone()
            })
            .collect();
        let third = assign(&kept, &nodes("lb", 3));
        let count = groups_for(kept.len(), 3);
        for x in &kept {
            let was: usize = second[&x.key].rsplit('-').next().unwrap().parse().unwrap();
            if was < count {
                assert_eq!(third[&x.key], second[&x.key]);
            }
        }
        assert!(sizes(&third).len() <= count);
    }

    #[test]
    fn a_recorded_group_of_another_placement_or_garbage_is_replaced() {
        let mut m = members(2, "lb");
        m[0].recorded = Some("other-v4-0".into());
        m[1].recorded = Some("lb-v4-99".into());
        let groups = assign(&m, &nodes("lb", 1));
        assert_eq!(groups[&m[0].key], "lb-v4-0");
        assert_eq!(groups[&m[1].key], "lb-v4-0");
    }
}
