//! The plan's address phase, pure: under the address policy, which VirtualIPs are served, with
//! which addresses (their spec's, or one allocated from the AddressPool they name, kept for
//! their life), from which pool (whose `nodeSelector` joins their placement); and each
//! AddressPool's status. The agents decide admission again with the same function
//! (`buoy_crds::policy::admit`) before they bind anything.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use buoy_crds::{
    AddressPool, Announcement, VirtualIP,
    policy::{self, AddressPolicy, Admission},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::world::namespace_of;
use crate::conditions::{self, READY, Want};

/// A VirtualIP's addresses, as the policy decides.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Standing {
    /// Served on `addresses` (as written in `status.addresses`), from `pool` (its name,
    /// `nodeSelector` and `announcement`) if one applies; without a pool, `L2`.
    Served {
        addresses: Vec<String>,
        pool: Option<String>,
        pool_selector: Option<LabelSelector>,
        announcement: Announcement,
    },
    /// Not served: `reason` (`AddressNotAllowed`, `PoolExhausted`) and a message naming the
    /// address and what would allow it.
    NotServed {
        reason: &'static str,
        message: String,
    },
}

/// The status the operator writes on an AddressPool.
#[derive(Clone, Debug)]
pub(crate) struct AddressPoolPlan {
    pub(crate) name: String,
    pub(crate) observed_generation: Option<i64>,
    pub(crate) allocated: i64,
    pub(crate) available: i64,
    pub(crate) conditions: Vec<Condition>,
    pub(crate) changed: bool,
}

impl AddressPoolPlan {
    /// The server-side apply body for the status subresource.
    pub(crate) fn apply_body(&self) -> Value {
        let mut status = json!({
            "allocated": self.allocated,
            "available": self.available,
            "conditions": self.conditions,
        });
        if let Some(g) = self.observed_generation {
            status["observedGeneration"] = json!(g);
        }
        json!({"apiVersion": buoy_crds::API_VERSION, "kind": "AddressPool",
               "metadata": {"name": self.name}, "status": status})
    }
}

/// What the phase decides.
#[derive(Clone, Debug)]
pub(super) struct Addresses {
    /// One per VirtualIP, in the order given.
    pub(super) standings: Vec<Standing>,
    pub(super) pools: Vec<AddressPoolPlan>,
}

fn ip_of(address: &str) -> Option<IpAddr> {
    address.split('/').next()?.parse().ok()
}

/// The family a VirtualIP without addresses asks for: IPv4 for VRRPv2, else that of its
/// unicast peers or source addresses; `None`: either.
fn wanted_family(v: &VirtualIP) -> Option<bool> {
    if v.spec.vrrp.version == 2 {
        return Some(false);
    }
    let peers = v.spec.vrrp.unicast_peers.iter().flatten().map(|p| &p.0);
    let sources = v
        .spec
        .priorities
        .iter()
        .flatten()
        .filter_map(|p| p.source_address.as_ref().map(|a| &a.0));
    peers.chain(sources).next().map(|a| a.contains(':'))
}

/// A VirtualIP's own addresses (named in its spec, or held from its pool) and their admission.
struct Own<'p> {
    addresses: Vec<String>,
    /// Whether the addresses come from `spec.addressPool` (none yet: one to allocate).
    allocated: bool,
    admission: Admission<'p>,
}

/// The addresses `v` names or holds, and whether the policy admits them. `recorded`: what its
/// status (or the operator's memory) says it holds.
fn own<'p>(
    v: &VirtualIP,
    recorded: Vec<String>,
    pools: &[&'p AddressPool],
    labels: &BTreeMap<String, String>,
    policy: AddressPolicy,
) -> Own<'p> {
    let (addresses, allocated) = if v.spec.addresses.is_empty() {
        // Kept for the VirtualIP's life: what it holds, if its pool still holds that.
        let named = v.spec.address_pool.as_deref();
        let held: Vec<String> = recorded
            .into_iter()
            .filter(|a| {
                ip_of(a).is_some_and(|ip| {
                    pools
                        .iter()
                        .any(|p| p.metadata.name.as_deref() == named && policy::contains(p, ip))
                })
            })
            .collect();
        (held, true)
    } else {
        (
            v.spec.addresses.iter().map(|a| a.0.clone()).collect(),
            false,
        )
    };
    let ips: Vec<IpAddr> = addresses.iter().filter_map(|a| ip_of(a)).collect();
    let admission = policy::admit(policy, pools, namespace_of(v), labels, &v.spec, &ips);
    Own {
        addresses,
        allocated,
        admission,
    }
}

/// `v`'s standing given its own addresses and their admission; an address allocated from its
/// pool is taken from the free ones and added to `used`.
fn standing(
    v: &VirtualIP,
    own: Own,
    pools: &[&AddressPool],
    used: &mut BTreeSet<IpAddr>,
) -> Standing {
    match own.admission {
        Admission::NotAllowed(message) => Standing::NotServed {
            reason: "AddressNotAllowed",
            message,
        },
        Admission::Allowed(pool) if own.allocated && own.addresses.is_empty() => {
            // The named pool admits it: a free address of the family it can use.
            let from = pool.or_else(|| {
                pools
                    .iter()
                    .copied()
                    .find(|p| p.metadata.name.as_deref() == v.spec.address_pool.as_deref())
            });
            match from.and_then(|p| policy::first_free(p, used, wanted_family(v)).map(|ip| (p, ip)))
            {
                Some((p, ip)) => {
                    used.insert(ip);
                    Standing::Served {
                        addresses: vec![ip.to_string()],
                        pool: p.metadata.name.clone(),
                        pool_selector: p.spec.node_selector.clone(),
                        announcement: p.spec.announcement,
                    }
                }
                None => Standing::NotServed {
                    reason: "PoolExhausted",
                    message: format!(
                        "AddressPool {} has no free address{}",
                        v.spec.address_pool.as_deref().unwrap_or_default(),
                        match wanted_family(v) {
                            Some(true) => " of family IPv6",
                            Some(false) => " of family IPv4",
                            None => "",
                        }
                    ),
                },
            }
        }
        Admission::Allowed(pool) => Standing::Served {
            addresses: own.addresses,
            pool: pool.and_then(|p| p.metadata.name.clone()),
            pool_selector: pool.and_then(|p| p.spec.node_selector.clone()),
            announcement: pool.map(|p| p.spec.announcement).unwrap_or_default(),
        },
    }
}

/// Decides every VirtualIP's addresses. `vips` in precedence order (oldest first: an earlier
/// VirtualIP keeps an address a later one asks for); `remembered`: allocations this operator
/// wrote that its cache may not show yet, by uid.
pub(super) fn decide(
    vips: &[&VirtualIP],
    pools: &[&AddressPool],
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
    policy: AddressPolicy,
    remembered: &HashMap<String, Vec<String>>,
    now: Timestamp,
) -> Addresses {
    let empty = BTreeMap::new();
    let recorded = |v: &VirtualIP| -> Vec<String> {
        v.metadata
            .uid
            .as_ref()
            .and_then(|u| remembered.get(u))
            .cloned()
            .or_else(|| v.status.as_ref().map(|s| s.addresses.clone()))
            .unwrap_or_default()
    };
    // First every VirtualIP's own addresses (named in its spec, or held from its pool) and their
    // admission; then allocation. Every address an admitted VirtualIP names or holds is taken:
    // allocation never hands it out again. A refused VirtualIP takes nothing, so a namespace no
    // pool admits cannot use up another team's pool by naming its addresses.
    let mut used: BTreeSet<IpAddr> = BTreeSet::new();
    let owned: Vec<Own> = vips
        .iter()
        .map(|v| {
            let labels = namespaces.get(namespace_of(v)).unwrap_or(&empty);
            let own = own(v, recorded(v), pools, labels, policy);
            if matches!(own.admission, Admission::Allowed(_)) {
                used.extend(own.addresses.iter().filter_map(|a| ip_of(a)));
            }
            own
        })
        .collect();
    let mut standings = Vec::with_capacity(vips.len());
    let mut in_effect: Vec<(Option<String>, Vec<IpAddr>)> = Vec::new();
    for (v, own) in vips.iter().zip(owned) {
        let standing = standing(v, own, pools, &mut used);
        if let Standing::Served {
            addresses, pool, ..
        } = &standing
        {
            in_effect.push((
                pool.clone(),
                addresses.iter().filter_map(|a| ip_of(a)).collect(),
            ));
        }
        standings.push(standing);
    }
    let pools = pools
        .iter()
        .filter_map(|p| pool_status(p, &in_effect, &used, now))
        .collect();
    Addresses { standings, pools }
}

/// One pool's status: what VirtualIPs use of it, what is free, whether it is usable.
fn pool_status(
    p: &AddressPool,
    in_effect: &[(Option<String>, Vec<IpAddr>)],
    used: &BTreeSet<IpAddr>,
    now: Timestamp,
) -> Option<AddressPoolPlan> {
    let name = p.metadata.name.clone()?;
    let allocated = in_effect
        .iter()
        .filter(|(pool, _)| pool.as_deref() == Some(name.as_str()))
        .flat_map(|(_, ips)| ips)
        .count();
    let available = policy::available(p, used);
    let want = match policy::ranges(p) {
        Err(e) => Want::new(READY, false, "InvalidAddresses", e),
        Ok(_) if available == 0 => Want::new(
            READY,
            false,
            "Exhausted",
            "every address of the pool is in use",
        ),
        Ok(_) => Want::new(
            READY,
            true,
            "AddressesAvailable",
            format!("{available} address(es) free, {allocated} in use by VirtualIPs"),
        ),
    };
    let observed = p.status.clone().unwrap_or_default();
    let generation = p.metadata.generation;
    let conditions = vec![conditions::build(
        &want,
        generation,
        now,
        &observed.conditions,
    )];
    let allocated = i64::try_from(allocated).unwrap_or(i64::MAX);
    let changed = observed.observed_generation != generation
        || observed.allocated != allocated
        || observed.available != available
        || observed.conditions != conditions;
    Some(AddressPoolPlan {
        name,
        observed_generation: generation,
        allocated,
        available,
        conditions,
        changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fixture::{self, Fixture, cond, node, of, reasons};

    fn vip(yaml: &str) -> VirtualIP {
        serde_yaml::from_str(yaml).unwrap()
    }
    fn pool(yaml: &str) -> AddressPool {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn lan() -> AddressPool {
        pool(
            "apiVersion: buoy.io/v1alpha1\nkind: AddressPool\nmetadata: {name: lan}\nspec: {addresses: ['10.0.0.10-10.0.0.11'], namespaces: [web], nodeSelector: {matchLabels: {lb: 'true'}}}",
        )
    }

    fn served(s: &Standing) -> Option<&[String]> {
        match s {
            Standing::Served { addresses, .. } => Some(addresses),
            Standing::NotServed { .. } => None,
        }
    }

    #[test]
    fn allocation_is_first_free_stable_and_exhausts_cleanly() {
        let lan = lan();
        let asks = |name: &str, uid: &str| {
            vip(&format!(
                "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {{name: {name}, namespace: web, uid: {uid}}}\nspec: {{addressPool: lan}}"
            ))
        };
        let named = vip(
            "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {name: fixed, namespace: web, uid: u0}\nspec: {addresses: [10.0.0.10]}",
        );
        let (a, b, c) = (asks("a", "u1"), asks("b", "u2"), asks("c", "u3"));
        let ns = BTreeMap::new();
        let now = Timestamp::now();
        let p = decide(
            &[&named, &a, &b, &c],
            &[&lan],
            &ns,
            AddressPolicy::Enforce,
            &HashMap::new(),
            now,
        );
        // The address a VirtualIP names is never handed out.
        assert_eq!(
            served(&p.standings[0]),
            Some(&["10.0.0.10".to_string()][..])
        );
        assert_eq!(
            served(&p.standings[1]),
            Some(&["10.0.0.11".to_string()][..])
        );
        assert!(matches!(
            &p.standings[2],
            Standing::NotServed {
                reason: "PoolExhausted",
                ..
            }
        ));
        assert_eq!((p.pools[0].allocated, p.pools[0].available), (2, 0));
        assert!(p.pools[0].conditions[0].reason == "Exhausted");
        // Stable across restarts: what the status records is kept, whatever comes first now.
        let mut a_recorded = a.clone();
        a_recorded.status =
            Some(serde_json::from_value(json!({"addresses": ["10.0.0.11"]})).unwrap());
        let p = decide(
            &[&b, &a_recorded],
            &[&lan],
            &ns,
            AddressPolicy::Enforce,
            &HashMap::new(),
            now,
        );
        assert!(
            matches!(&p.standings[0], Standing::Served { addresses, .. } if addresses == &["10.0.0.10"])
        );
        assert_eq!(
            served(&p.standings[1]),
            Some(&["10.0.0.11".to_string()][..])
        );
        // A write the cache does not show yet counts too.
        let remembered: HashMap<String, Vec<String>> =
            [("u2".into(), vec!["10.0.0.11".into()])].into();
        let p = decide(
            &[&a, &b],
            &[&lan],
            &ns,
            AddressPolicy::Enforce,
            &remembered,
            now,
        );
        assert_eq!(
            served(&p.standings[0]),
            Some(&["10.0.0.10".to_string()][..])
        );
        assert_eq!(
            served(&p.standings[1]),
            Some(&["10.0.0.11".to_string()][..])
        );
        // Released on delete: without `a`, its address is free again.
        let p = decide(
            &[&c],
            &[&lan],
            &ns,
            AddressPolicy::Enforce,
            &HashMap::new(),
            now,
        );
        assert_eq!(
            served(&p.standings[0]),
            Some(&["10.0.0.10".to_string()][..])
        );
    }

    #[test]
    fn refused_virtualips_take_no_address_of_a_pool() {
        // Another namespace names every address of `lan` (refused: no pool admits it); `web`
        // still gets one allocated, and the pool counts only what `web` uses.
        let lan = lan();
        let squatters: Vec<VirtualIP> = ["10.0.0.10", "10.0.0.11"]
            .iter()
            .enumerate()
            .map(|(i, a)| {
                vip(&format!(
                    "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {{name: s{i}, namespace: shop}}\nspec: {{addresses: [{a}]}}"
                ))
            })
            .collect();
        let asks = vip(
            "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {name: a, namespace: web, uid: u1}\nspec: {addressPool: lan}",
        );
        let p = decide(
            &[&squatters[0], &squatters[1], &asks],
            &[&lan],
            &BTreeMap::new(),
            AddressPolicy::Enforce,
            &HashMap::new(),
            Timestamp::now(),
        );
        for s in &p.standings[..2] {
            assert!(matches!(
                s,
                Standing::NotServed {
                    reason: "AddressNotAllowed",
                    ..
                }
            ));
        }
        assert_eq!(
            served(&p.standings[2]),
            Some(&["10.0.0.10".to_string()][..])
        );
        assert_eq!((p.pools[0].allocated, p.pools[0].available), (1, 1));
    }

    #[test]
    fn the_policy_refuses_with_the_address_and_the_pool_selector_is_kept() {
        let lan = lan();
        let outside = vip(
            "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {name: x, namespace: web}\nspec: {addresses: [192.168.1.1]}",
        );
        let other_ns = vip(
            "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {name: y, namespace: shop}\nspec: {addresses: [10.0.0.10]}",
        );
        let inside = vip(
            "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {name: z, namespace: web}\nspec: {addresses: [10.0.0.10]}",
        );
        let p = decide(
            &[&outside, &other_ns, &inside],
            &[&lan],
            &BTreeMap::new(),
            AddressPolicy::Enforce,
            &HashMap::new(),
            Timestamp::now(),
        );
        let Standing::NotServed { reason, message } = &p.standings[0] else {
            panic!()
        };
        assert_eq!(*reason, "AddressNotAllowed");
        assert!(
            message.contains("192.168.1.1") && message.contains("lan"),
            "{message}"
        );
        let Standing::NotServed { message, .. } = &p.standings[1] else {
            panic!()
        };
        assert!(message.contains("namespace shop"), "{message}");
        let Standing::Served {
            pool,
            pool_selector,
            ..
        } = &p.standings[2]
        else {
            panic!()
        };
        assert_eq!(pool.as_deref(), Some("lan"));
        assert!(pool_selector.is_some());
        // Off: served, no pool.
        let p = decide(
            &[&outside],
            &[&lan],
            &BTreeMap::new(),
            AddressPolicy::Off,
            &HashMap::new(),
            Timestamp::now(),
        );
        assert!(matches!(
            &p.standings[0],
            Standing::Served { pool: None, .. }
        ));
    }

    #[test]
    fn the_address_policy_serves_only_what_a_pool_allows_and_allocates_from_pools() {
        let mut f = Fixture::new(vec![
            fixture::vip("a", "allowed", 30, json!({"addresses": ["10.0.0.5"]})),
            fixture::vip("a", "outside", 20, json!({"addresses": ["192.168.9.9"]})),
            fixture::vip(
                "b",
                "other-namespace",
                15,
                json!({"addresses": ["10.0.0.6"]}),
            ),
            fixture::vip("a", "given", 10, json!({"addressPool": "lan"})),
        ]);
        f.policy = AddressPolicy::Enforce;
        f.address_pools = vec![fixture::address_pool(json!({
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
