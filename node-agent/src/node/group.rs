//! VRRP groups on a node: the VirtualIPs the operator put in one group (the annotation
//! `buoy.io/vrrp-group`: Services' addresses of one placement) run as one VRRP instance, under
//! the router ID and priorities of the group's oldest member, advertising every member's
//! addresses. Members come and go without restarting the instance (see `agent`); a member
//! that cannot join (another family or interface than the group's) is a fault of its own.

use std::collections::BTreeMap;

use buoy_crds::{VirtualIP, contract};

use super::{Plan, PlanError, VipPlan};

/// One member as the node planned it alone.
struct Member {
    key: String,
    /// When it was created: the oldest member (then the first by key) leads the group.
    created: Option<i64>,
}

/// Merges the planned VirtualIPs of each group in `vips` into one plan per group, keyed by
/// [`contract::group_key`]; those that cannot join are faults.
pub(crate) fn merge(vips: &[&VirtualIP], out: &mut Plan) {
    let mut groups: BTreeMap<String, Vec<Member>> = BTreeMap::new();
    for v in vips {
        let Some(group) = contract::group_of(&v.metadata) else {
            continue;
        };
        let key = contract::key_of(&v.metadata);
        if !out.config.vips.contains_key(&key) {
            continue;
        }
        let created = v
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second());
        groups
            .entry(group.to_string())
            .or_default()
            .push(Member { key, created });
    }
    for (group, mut members) in groups {
        members.sort_by(|a, b| (a.created, &a.key).cmp(&(b.created, &b.key)));
        let mut plans = members
            .iter()
            .filter_map(|m| out.config.vips.remove(&m.key));
        let Some(mut merged) = plans.next() else {
            continue;
        };
        let leader = merged.key.clone();
        merged.members = vec![leader.clone()];
        for p in plans {
            let fits = p.instance.interface == merged.instance.interface
                && p.instance.addresses.first().map(|(a, _)| a.is_ipv6())
                    == merged.instance.addresses.first().map(|(a, _)| a.is_ipv6());
            if !fits {
                let error = format!(
                    "VRRP group {group}: its family or interface differs from the group's first member, {leader}"
                );
                out.errors.push(PlanError {
                    key: p.key.clone(),
                    error: error.clone(),
                });
                out.config.faults.insert(p.key.clone(), error);
                out.config
                    .proxy
                    .listeners
                    .retain(|l| !p.listeners.contains(&l.name));
                continue;
            }
            for a in p.instance.addresses {
                if !merged.instance.addresses.contains(&a) {
                    merged.instance.addresses.push(a);
                }
            }
            merged.listeners.extend(p.listeners);
            merged.peers.extend(p.peers);
            for w in p.warnings {
                if !merged.warnings.contains(&w) {
                    merged.warnings.push(w);
                }
            }
            merged.members.push(p.key);
        }
        // Members of `externalTrafficPolicy: Local` are never grouped by the operator; a hand
        // edit that groups them gets the leader's requirement.
        merged.instance.group = true;
        merged.key = contract::group_key(&group);
        out.config.vips.insert(merged.key.clone(), merged);
    }
}

impl VipPlan {
    /// The VirtualIPs this instance serves: its members, or itself.
    pub fn served(&self) -> Vec<String> {
        if self.members.is_empty() {
            vec![self.key.clone()]
        } else {
            self.members.clone()
        }
    }
}
