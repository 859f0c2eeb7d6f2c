//! A served VirtualIP's conditions, pure: `Ready`, `Degraded` and `Conflict` from what the
//! phases decided (router ID, conflict, nodes), the UpstreamPools its listeners name, and the
//! agents' reports (`status.nodes[]`, typed [`NodeStatus`] entries), where a node the API server
//! has lost counts as stale.

use std::collections::BTreeSet;

use buoy_crds::{NodeStatus, VrrpState, contract};

use super::served::ServedVip;
use super::world::namespace_of;
use crate::allocate::Vrid;
use crate::conditions::{CONFLICT, DEGRADED, READY, Want};

/// The agents' reports on one VirtualIP. A node the API server has lost keeps its last report
/// (a cut master still says Master): it is left out of the counts and named instead.
struct Reports<'a> {
    /// Reports of nodes the API server hears from.
    live: Vec<&'a NodeStatus>,
    /// Reports of lost nodes.
    stale: Vec<&'a NodeStatus>,
}

impl<'a> Reports<'a> {
    fn of(v: &'a ServedVip, lost: &BTreeSet<&str>) -> Reports<'a> {
        let all = v
            .vip
            .status
            .as_ref()
            .map(|s| s.nodes.as_slice())
            .unwrap_or_default();
        let (stale, live) = all.iter().partition(|n| lost.contains(n.node.as_str()));
        Reports { live, stale }
    }

    /// The live nodes in `state`.
    fn in_state(&self, state: VrrpState) -> Vec<&'a str> {
        self.live
            .iter()
            .filter(|n| n.state == state)
            .map(|n| n.node.as_str())
            .collect()
    }
}

/// Ready, Degraded and Conflict of `v`, in that order. `pools`: the UpstreamPools by
/// [`contract::key`]; `lost`: nodes whose status is unknown.
pub(super) fn wants(v: &ServedVip, pools: &BTreeSet<String>, lost: &BTreeSet<&str>) -> [Want; 3] {
    let reports = Reports::of(v, lost);
    [
        ready(v, &reports, pools),
        degraded(v, &reports),
        conflict(v),
    ]
}

fn conflict(v: &ServedVip) -> Want {
    match &v.conflict {
        Some(c) => Want::new(CONFLICT, true, c.reason, c.message.clone()),
        None => Want::new(
            CONFLICT,
            false,
            "NoConflict",
            "no other VirtualIP uses its addresses, router ID or ports",
        ),
    }
}

/// Ready: the first reason `v` is not served, else whether its one master serves.
fn ready(v: &ServedVip, reports: &Reports, pools: &BTreeSet<String>) -> Want {
    let namespace = namespace_of(&v.vip);
    let missing: Vec<String> = v
        .vip
        .spec
        .listeners
        .iter()
        .flat_map(|l| l.pool_names().map(move |p| (l, p)))
        .filter(|(_, p)| !pools.contains(&contract::key(Some(namespace), Some(p))))
        .map(|(l, p)| format!("listener {}: UpstreamPool {p}", l.name))
        .fold(Vec::new(), |mut all, m| {
            // A pool named twice by a listener (its own and a route's) is said once.
            if !all.contains(&m) {
                all.push(m);
            }
            all
        });
    let masters = reports.in_state(VrrpState::Master);
    if let Some(c) = &v.conflict {
        Want::new(
            READY,
            false,
            "Conflict",
            format!("not served: {}", c.message),
        )
    } else if matches!(v.router_id.vrid, Vrid::Exhausted) {
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
    } else if v.assignment.nodes.is_empty() {
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
        serving(v, reports, m)
    } else if let Some(n) = reports.stale.iter().find(|n| n.state == VrrpState::Master) {
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
    }
}

/// Ready with one master, `m`: whether every listener serves there.
fn serving(v: &ServedVip, reports: &Reports, m: &str) -> Want {
    let entry = reports.live.iter().find(|n| n.node == m);
    let serving = entry.and_then(|n| n.serving);
    if serving == Some(true) || (serving.is_none() && v.vip.spec.listeners.is_empty()) {
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
}

/// Degraded: the first reason `v` is not redundant.
fn degraded(v: &ServedVip, reports: &Reports) -> Want {
    let masters = reports.in_state(VrrpState::Master);
    let backups = reports.in_state(VrrpState::Backup);
    let faults: Vec<String> = reports
        .live
        .iter()
        .filter(|n| n.state == VrrpState::Fault)
        .map(|n| match &n.message {
            Some(m) => format!("{} ({m})", n.node),
            None => n.node.clone(),
        })
        .collect();
    let foreign = &v.router_id.foreign_routers;
    if masters.len() > 1 {
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
    } else if !reports.stale.is_empty() {
        let last: Vec<String> = reports
            .stale
            .iter()
            .map(|n| format!("{} (last reported {:?})", n.node, n.state))
            .collect();
        Want::new(
            DEGRADED,
            true,
            "NodeUnreachable",
            format!("status unknown (kubelet silent): {}", last.join(", ")),
        )
    } else if matches!(v.router_id.vrid, Vrid::Spec(_)) && !foreign.is_empty() {
        Want::new(
            DEGRADED,
            true,
            "ForeignRouters",
            format!(
                "routers outside this VirtualIP use virtual router ID {} on the LAN: {}",
                v.router_id.vrid.value().unwrap_or_default(),
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
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    use crate::conditions::{DEGRADED, READY};
    use crate::plan::fixture::{Fixture, cond, now, of, pool, vip};

    #[test]
    fn a_route_to_a_missing_pool_is_said_once_per_pool() {
        let mut f = Fixture::new(vec![vip(
            "a",
            "web",
            30,
            json!({"addresses": ["10.0.0.1"], "listeners": [{"name": "http", "port": 80, "upstreamPool": "p", "routes": [
                {"hosts": ["a.example.com"], "upstreamPool": "p"},
                {"hosts": ["b.example.com"], "upstreamPool": "gone"},
                {"hosts": ["c.example.com"], "upstreamPool": "gone"}]}]}),
        )]);
        f.pools.push(pool("a", "p"));
        let p = f.settle();
        let r = cond(&p, "web", READY);
        assert_eq!(
            (r.reason.as_str(), r.message.as_str()),
            (
                "UpstreamPoolNotFound",
                "listener http: UpstreamPool gone not found in namespace a"
            )
        );
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
}
