//! The plan's Services phase, pure: `type: LoadBalancer` Services of Buoy's class get their
//! addresses. Each Service (or each sharing key) is carried by one VirtualIP per family that the
//! operator keeps in the Service's namespace, owned by the Service(s) ([`virtualip`]); from
//! there on it is a VirtualIP like any other (router ID, conflicts, priorities, DaemonSets,
//! status). The addresses come from [`allocate`]; the Service's `status.loadBalancer` lists
//! them once a node announces them; Events say what was given, or why not, and which node
//! became master.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use buoy_crds::{AddressPool, VirtualIP, contract, policy, service};
use k8s_openapi::api::core::v1::{Node, Service};
use serde_json::{Value, json};

mod allocate;
mod group;
mod request;
mod virtualip;

use allocate::{Allocation, Pools, Unit};
pub(crate) use allocate::{Record, Refusal};

use crate::applied;
use request::Request;

/// How Services are served (the operator's flags).
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Services of type LoadBalancer without a class are Buoy's (`--default-load-balancer-class`).
    pub(crate) default_class: bool,
    /// The VRRP advertisement interval of Services' VirtualIPs.
    pub(crate) advertisement_interval: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            default_class: false,
            advertisement_interval: Duration::from_secs(1),
        }
    }
}

/// What the Services phase reads.
pub(crate) struct Inputs<'a, 'b> {
    pub(crate) services: &'b [&'a Service],
    pub(crate) vips: &'b [&'a VirtualIP],
    pub(crate) pools: &'b [&'a AddressPool],
    pub(crate) namespaces: &'b BTreeMap<String, BTreeMap<String, String>>,
    /// The nodes (how many each pool has decides how many VRRP groups its Services get).
    pub(crate) nodes: &'b [&'a Node],
    /// Addresses given in earlier passes that the caches may not show yet, by Service key.
    pub(crate) remembered: &'b BTreeMap<String, Vec<Record>>,
    /// What the last Events said, by Service key (an Event only when it changes).
    pub(crate) told: &'b BTreeMap<String, String>,
    /// Services of type LoadBalancer without a class are Buoy's.
    pub(crate) default_class: bool,
    /// The VRRP advertisement interval of Services' VirtualIPs.
    pub(crate) advertisement_interval: Duration,
}

/// One Event for a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceEvent {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) uid: Option<String>,
    pub(crate) warning: bool,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

/// A Service's `status.loadBalancer` to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceStatus {
    pub(crate) namespace: String,
    pub(crate) name: String,
    /// The addresses announced now (empty: cleared).
    pub(crate) ingress: Vec<IpAddr>,
}

impl ServiceStatus {
    /// The merge patch of the status subresource.
    pub(crate) fn patch(&self) -> Value {
        let ingress: Vec<Value> = self
            .ingress
            .iter()
            .map(|ip| json!({"ip": ip.to_string(), "ipMode": "VIP"}))
            .collect();
        json!({"status": {"loadBalancer": {"ingress": ingress}}})
    }
}

/// What the phase decides.
#[derive(Clone, Debug, Default)]
pub(crate) struct ServicesPlan {
    /// The VirtualIPs to keep, as server-side apply bodies, by `namespace/name`.
    pub(crate) vips: BTreeMap<String, Value>,
    /// Of those, the ones that differ from what is observed: `(namespace, name)`.
    pub(crate) changed: Vec<(String, String)>,
    /// Services' VirtualIPs no Service needs any more: `(namespace, name)`.
    pub(crate) stale: Vec<(String, String)>,
    /// Service statuses that differ from what is observed.
    pub(crate) statuses: Vec<ServiceStatus>,
    pub(crate) events: Vec<ServiceEvent>,
    /// What the Events say now, by Service key (the next [`Inputs::told`]).
    pub(crate) told: BTreeMap<String, String>,
    /// Addresses given, by Service key (the next [`Inputs::remembered`]).
    pub(crate) given: BTreeMap<String, Vec<Record>>,
}

fn ingress_of(svc: &Service) -> Vec<IpAddr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

fn vip_addresses(v: &VirtualIP) -> impl Iterator<Item = IpAddr> + '_ {
    let status = v
        .status
        .as_ref()
        .map(|s| s.addresses.as_slice())
        .unwrap_or_default();
    v.spec
        .addresses
        .iter()
        .map(|a| a.0.as_str())
        .chain(status.iter().map(String::as_str))
        .filter_map(|a| a.split('/').next()?.parse().ok())
}

/// Services in precedence order: oldest first, then by key.
fn precedence<'a>(services: &[&'a Service]) -> Vec<&'a Service> {
    let mut s = services.to_vec();
    s.sort_by(|a, b| {
        let t = |s: &Service| s.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let k = |s: &Service| contract::key_of(&s.metadata);
        t(a).cmp(&t(b)).then_with(|| k(a).cmp(&k(b)))
    });
    s
}

/// What the Services' VirtualIPs and the other VirtualIPs tell.
struct Observed<'a> {
    /// What Services were given before (their VirtualIPs, their status, the operator's
    /// memory), by Service key.
    records: BTreeMap<String, Vec<Record>>,
    /// Addresses other VirtualIPs hold, with their holder.
    taken: BTreeMap<IpAddr, String>,
    /// Services' VirtualIPs, by `namespace/name`.
    carriers: BTreeMap<String, &'a VirtualIP>,
    /// The other VirtualIPs' `namespace/name`: names a Service's VirtualIP cannot take.
    others: BTreeSet<String>,
}

fn observe<'a>(inputs: &Inputs<'a, '_>, ours: &[&Service]) -> Observed<'a> {
    let mut o = Observed {
        records: inputs.remembered.clone(),
        taken: BTreeMap::new(),
        carriers: BTreeMap::new(),
        others: BTreeSet::new(),
    };
    for v in inputs.vips {
        let ns = v
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(contract::DEFAULT_NAMESPACE);
        let key = contract::key(Some(ns), v.metadata.name.as_deref());
        let owners = service::owners(&v.metadata);
        if owners.is_empty() {
            for ip in vip_addresses(v) {
                o.taken
                    .entry(ip)
                    .or_insert_with(|| format!("VirtualIP {key}"));
            }
            o.others.insert(key);
            continue;
        }
        for owner in owners {
            o.records
                .entry(contract::key(Some(ns), Some(owner)))
                .or_default()
                .extend(vip_addresses(v).map(|address| Record {
                    address,
                    pool: v.spec.address_pool.clone(),
                }));
        }
        o.carriers.insert(key, v);
    }
    for s in ours {
        let key = contract::key_of(&s.metadata);
        o.records
            .entry(key)
            .or_default()
            .extend(ingress_of(s).into_iter().map(|address| Record {
                address,
                pool: None,
            }));
    }
    o
}

/// The requests of Buoy's Services; those that cannot be read are refused.
fn requests<'a>(ours: &[&'a Service], refused: &mut BTreeMap<String, Refusal>) -> Vec<Request<'a>> {
    let mut out = Vec::new();
    for s in ours {
        match request::read(s) {
            Ok(r) => out.push(r),
            Err(e) => {
                let key = contract::key_of(&s.metadata);
                refused.insert(key, Refusal::InvalidRequest(e));
            }
        }
    }
    out
}

/// The units whose VirtualIP names are free: a name someone else's VirtualIP has is never
/// taken over (the unit is refused).
fn with_free_names<'a>(
    units: Vec<Unit<'a>>,
    observed: &Observed<'_>,
    refused: &mut BTreeMap<String, Refusal>,
) -> Vec<Unit<'a>> {
    units
        .into_iter()
        .filter(|u| {
            let first = u.first();
            let clash = first
                .families
                .iter()
                .map(|v6| virtualip::name(u, *v6))
                .find(|n| {
                    observed
                        .others
                        .contains(&contract::key(Some(first.namespace), Some(n)))
                });
            if let Some(n) = &clash {
                for m in &u.members {
                    refused.insert(
                        m.key.clone(),
                        Refusal::NameInUse(format!(
                            "the VirtualIP {n} that would carry this Service's address exists and is not the operator's"
                        )),
                    );
                }
            }
            clash.is_none()
        })
        .collect()
}

/// Where the given addresses are announced now: `(address, node)` by Service key.
type Announced = BTreeMap<String, Vec<(IpAddr, String)>>;

/// The VRRP group of each unit's VirtualIP that may share an instance, by VirtualIP key.
fn groups(
    units: &[(Unit<'_>, Vec<allocate::Given>)],
    inputs: &Inputs<'_, '_>,
    observed: &Observed<'_>,
) -> BTreeMap<String, String> {
    let mut members = Vec::new();
    for (unit, given) in units {
        let first = unit.first();
        for g in given {
            let key = contract::key(
                Some(first.namespace),
                Some(&virtualip::name(unit, g.address.is_ipv6())),
            );
            let recorded = observed
                .carriers
                .get(&key)
                .and_then(|v| contract::group_of(&v.metadata))
                .map(str::to_string);
            members.push(group::Member {
                key,
                pool: g.pool.clone(),
                ipv6: g.address.is_ipv6(),
                groupable: !first.local,
                recorded,
            });
        }
    }
    let nodes: BTreeMap<String, usize> = inputs
        .pools
        .iter()
        .filter_map(|p| {
            let name = p.metadata.name.clone()?;
            let count = inputs
                .nodes
                .iter()
                .filter(|n| {
                    let labels = n.metadata.labels.clone().unwrap_or_default();
                    !labels.contains_key(service::EXCLUDE_NODE_LABEL)
                        && policy::selector_matches(p.spec.node_selector.as_ref(), &labels)
                })
                .count();
            Some((name, count))
        })
        .collect();
    group::assign(&members, &nodes)
}

/// The VirtualIPs that carry the units' addresses (into `out`), and where they are announced.
fn carry(
    units: &[(Unit<'_>, Vec<allocate::Given>)],
    inputs: &Inputs<'_, '_>,
    observed: &Observed<'_>,
    out: &mut ServicesPlan,
) -> Announced {
    let groups = groups(units, inputs, observed);
    let mut announced = Announced::new();
    for (unit, given) in units {
        let first = unit.first();
        for g in given {
            let name = virtualip::name(unit, g.address.is_ipv6());
            let key = contract::key(Some(first.namespace), Some(&name));
            let pool = inputs
                .pools
                .iter()
                .copied()
                .find(|p| p.metadata.name.as_deref() == Some(g.pool.as_str()));
            let body = virtualip::desired(
                unit,
                g,
                pool,
                groups.get(&key).map(String::as_str),
                inputs.advertisement_interval,
            );
            let carrier = observed.carriers.get(&key);
            if carrier.and_then(|v| applied::of(&v.metadata)) != applied::desired(&body) {
                out.changed
                    .push((first.namespace.to_string(), name.clone()));
            }
            out.vips.insert(key, body);
            // Announced: a master holds the VirtualIP, with this address in its spec.
            let master = carrier.and_then(|v| {
                let ip = g.address.to_string();
                let in_spec = v
                    .spec
                    .addresses
                    .iter()
                    .any(|a| a.0.split('/').next() == Some(&ip));
                let m = v
                    .status
                    .as_ref()?
                    .master
                    .clone()
                    .filter(|m| !m.is_empty())?;
                in_spec.then_some(m)
            });
            for m in &unit.members {
                out.given.entry(m.key.clone()).or_default().push(Record {
                    address: g.address,
                    pool: Some(g.pool.clone()),
                });
                if let Some(node) = &master {
                    announced
                        .entry(m.key.clone())
                        .or_default()
                        .push((g.address, node.clone()));
                }
            }
        }
    }
    announced
}

/// What an Event on the Service says now: `(warning, reason, message)`.
fn outcome(
    key: &str,
    refused: &BTreeMap<String, Refusal>,
    given: &BTreeMap<String, Vec<Record>>,
    announced: &Announced,
) -> (bool, &'static str, String) {
    if let Some(r) = refused.get(key) {
        return (true, r.reason(), r.message());
    }
    let given: Vec<String> = given
        .get(key)
        .into_iter()
        .flatten()
        .map(|r| r.address.to_string())
        .collect();
    let held: Vec<String> = announced
        .get(key)
        .into_iter()
        .flatten()
        .map(|(ip, node)| format!("{ip} on node {node}"))
        .collect();
    if held.is_empty() {
        (
            false,
            "AddressAssigned",
            format!("given {}; no node announces it yet", given.join(", ")),
        )
    } else {
        (
            false,
            "Announced",
            format!("given {}; announced: {}", given.join(", "), held.join(", ")),
        )
    }
}

/// Each Service's status (when it differs) and Event (when it says something new).
fn tell(
    ours: &[&Service],
    refused: &BTreeMap<String, Refusal>,
    announced: &Announced,
    told: &BTreeMap<String, String>,
    out: &mut ServicesPlan,
) {
    for s in ours {
        let (Some(ns), Some(name)) = (s.metadata.namespace.clone(), s.metadata.name.clone()) else {
            continue;
        };
        let key = contract::key(Some(&ns), Some(&name));
        let now: Vec<IpAddr> = announced
            .get(&key)
            .into_iter()
            .flatten()
            .map(|(ip, _)| *ip)
            .collect();
        if now != ingress_of(s) {
            out.statuses.push(ServiceStatus {
                namespace: ns.clone(),
                name: name.clone(),
                ingress: now,
            });
        }
        let (warning, reason, message) = outcome(&key, refused, &out.given, announced);
        let said = format!("{reason}: {message}");
        if told.get(&key) != Some(&said) {
            out.events.push(ServiceEvent {
                namespace: ns,
                name,
                uid: s.metadata.uid.clone(),
                warning,
                reason,
                message,
            });
        }
        out.told.insert(key, said);
    }
}

/// Plans the Services.
pub(crate) fn plan(inputs: &Inputs<'_, '_>) -> ServicesPlan {
    let ours: Vec<&Service> = precedence(inputs.services)
        .into_iter()
        .filter(|s| s.metadata.name.is_some() && request::is_ours(s, inputs.default_class))
        .collect();
    let mut refused: BTreeMap<String, Refusal> = BTreeMap::new();
    let requests = requests(&ours, &mut refused);
    let observed = observe(inputs, &ours);
    let units = allocate::units(&requests, &mut refused);
    let units = with_free_names(units, &observed, &mut refused);
    let pools = Pools {
        pools: inputs.pools,
        namespaces: inputs.namespaces,
        taken: &observed.taken,
        records: &observed.records,
    };
    let Allocation { units, refused } = allocate::allocate(units, &pools, refused);

    let mut out = ServicesPlan::default();
    let announced = carry(&units, inputs, &observed, &mut out);
    out.stale = observed
        .carriers
        .iter()
        .filter(|(k, _)| !out.vips.contains_key(*k))
        .filter_map(|(_, v)| Some((v.metadata.namespace.clone()?, v.metadata.name.clone()?)))
        .collect();
    tell(&ours, &refused, &announced, inputs.told, &mut out);
    out
}

#[cfg(test)]
mod tests;
