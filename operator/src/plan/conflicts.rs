//! The plan's conflicts phase, pure: served VirtualIPs in precedence order are compared with
//! the earlier ones that are served; the later one of a clash (a shared address, the same VRID
//! in the same family on the same interface, or a listener on the agent's own port) is not
//! served. Indexed by address and by VRID so that only candidates are compared (linear, not
//! quadratic, in the number of VirtualIPs).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use buoy_crds::{VirtualIP, contract};

use super::served::{Conflict, ServedVip};
use super::world::key_of;
use crate::allocate::Family;
use crate::daemonset;

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
) -> Option<Conflict> {
    let other = key_of(earlier);
    let shared: Vec<String> = ips(later)
        .intersection(&ips(earlier))
        .map(ToString::to_string)
        .collect();
    if !shared.is_empty() {
        return Some(Conflict {
            reason: "AddressInUse",
            message: format!(
                "address {} is already used by VirtualIP {other}",
                shared.join(", ")
            ),
        });
    }
    let same_interface = match (&later.spec.interface, &earlier.spec.interface) {
        (Some(a), Some(b)) => a == b,
        // The default interface is the one holding the address's subnet: it may be the same.
        _ => true,
    };
    // The members of a VRRP group share their router ID on purpose.
    let same_group = contract::group_of(&later.metadata)
        .is_some_and(|g| contract::group_of(&earlier.metadata) == Some(g));
    if Family::of(&later.spec) == Family::of(&earlier.spec)
        && same_interface
        && !same_group
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
        return Some(Conflict {
            reason: "VirtualRouterIDInUse",
            message: format!(
                "virtual router ID {}{on} is already used by VirtualIP {other}",
                later_vrid.unwrap_or_default()
            ),
        });
    }
    None
}

/// A listener on the agent's own port cannot bind on the agent's host network.
fn reserved_port(vip: &VirtualIP) -> Option<Conflict> {
    vip.spec
        .listeners
        .iter()
        .find(|l| l.port == daemonset::AGENT_PORT)
        .map(|l| Conflict {
            reason: "PortInUse",
            message: format!(
                "listener {} uses port {}, the port of the node agent's metrics and probes",
                l.name,
                daemonset::AGENT_PORT
            ),
        })
}

/// Sets the `conflict` of each of `vips` (served, in precedence order, with their router IDs).
pub(super) fn find(vips: &mut [ServedVip]) {
    let mut by_ip: HashMap<IpAddr, Vec<usize>> = HashMap::new();
    let mut by_vrid: HashMap<(Family, u8), Vec<usize>> = HashMap::new();
    for i in 0..vips.len() {
        let v = &vips[i];
        let vrid = v.router_id.vrid.value();
        let my_ips = ips(&v.vip);
        let found = reserved_port(&v.vip).or_else(|| {
            let mut candidates: Vec<usize> = my_ips
                .iter()
                .filter_map(|ip| by_ip.get(ip))
                .flatten()
                .copied()
                .collect();
            if let Some(vr) = vrid {
                candidates.extend(
                    by_vrid
                        .get(&(Family::of(&v.vip.spec), vr))
                        .into_iter()
                        .flatten(),
                );
            }
            candidates.sort_unstable();
            candidates.dedup();
            candidates.into_iter().find_map(|j| {
                let earlier = &vips[j];
                clash(&v.vip, vrid, &earlier.vip, earlier.router_id.vrid.value())
            })
        });
        if found.is_none() {
            for ip in my_ips {
                by_ip.entry(ip).or_default().push(i);
            }
            if let Some(vr) = vrid {
                by_vrid
                    .entry((Family::of(&v.vip.spec), vr))
                    .or_default()
                    .push(i);
            }
        }
        vips[i].conflict = found;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::conditions::{CONFLICT, READY};
    use crate::plan::fixture::{Fixture, cond, of, vip};

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
}
