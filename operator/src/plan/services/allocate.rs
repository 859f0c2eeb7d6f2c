//! Addresses for LoadBalancer Services, pure: Services that share a key become one unit, each
//! unit gets one address per family it serves — the address it asks for, else the one it was
//! given before (read back from its VirtualIPs, so a restarted operator hands out the same),
//! else the first free one of a pool that admits its namespace — or a refusal that names the
//! reason and, for an address in use, its holder.
//!
//! Requested and recorded addresses are reserved first, in precedence order, and only then are
//! new ones allocated: a new Service never takes the address an older one holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use buoy_crds::{AddressPool, policy};

use super::request::Request;

/// Why a Service gets no address. The variant name is the Event's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A malformed annotation or field.
    InvalidRequest(String),
    /// No pool admitting the namespace holds the address asked for, or the named pool does
    /// not admit the namespace.
    AddressNotAllowed(String),
    /// The pools that apply have no free address of the family.
    PoolExhausted(String),
    /// The address asked for is someone else's.
    AddressInUse { address: IpAddr, holder: String },
    /// A Service sharing a key asks for ports another member already has.
    PortsClash { other: String, ports: Vec<String> },
    /// A Service sharing a key disagrees with the first member on what the address is.
    SharingMismatch(String),
    /// The VirtualIP that would carry the Service's address exists and is not the operator's.
    NameInUse(String),
}

impl Refusal {
    /// The Event reason.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Refusal::InvalidRequest(_) => "InvalidRequest",
            Refusal::AddressNotAllowed(_) => "AddressNotAllowed",
            Refusal::PoolExhausted(_) => "PoolExhausted",
            Refusal::AddressInUse { .. } => "AddressInUse",
            Refusal::PortsClash { .. } => "PortsClash",
            Refusal::SharingMismatch(_) => "SharingMismatch",
            Refusal::NameInUse(_) => "NameInUse",
        }
    }

    /// The Event message.
    pub(crate) fn message(&self) -> String {
        match self {
            Refusal::InvalidRequest(m)
            | Refusal::AddressNotAllowed(m)
            | Refusal::PoolExhausted(m)
            | Refusal::SharingMismatch(m)
            | Refusal::NameInUse(m) => m.clone(),
            Refusal::AddressInUse { address, holder } => {
                format!("{address} is in use by {holder}")
            }
            Refusal::PortsClash { other, ports } => format!(
                "the address shared with Service {other} already serves {}",
                ports.join(", ")
            ),
        }
    }
}

/// Services that share one address: one Service, or the Services of a namespace with the same
/// sharing key whose ports do not clash. The first member (oldest) decides what is asked for.
#[derive(Clone, Debug)]
pub(crate) struct Unit<'a> {
    pub(crate) members: Vec<&'a Request<'a>>,
    /// `(namespace, key)` for a sharing unit.
    pub(crate) sharing: Option<(&'a str, &'a str)>,
}

impl<'a> Unit<'a> {
    pub(crate) fn first(&self) -> &'a Request<'a> {
        self.members[0]
    }
}

/// An address given to a unit, and the pool it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Given {
    pub(crate) address: IpAddr,
    pub(crate) pool: String,
}

/// An address a Service was given before, and the pool it came from when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) address: IpAddr,
    pub(crate) pool: Option<String>,
}

/// What allocation decides.
#[derive(Clone, Debug, Default)]
pub(crate) struct Allocation<'a> {
    /// Units with their addresses (one per family served, in the unit's family order).
    pub(crate) units: Vec<(Unit<'a>, Vec<Given>)>,
    /// Services refused, by key, with the reason.
    pub(crate) refused: BTreeMap<String, Refusal>,
}

/// The inputs of allocation besides the requests.
pub(crate) struct Pools<'a, 'b> {
    /// Every AddressPool.
    pub(crate) pools: &'b [&'a AddressPool],
    /// Namespace labels (for `namespaceSelector`).
    pub(crate) namespaces: &'b BTreeMap<String, BTreeMap<String, String>>,
    /// Addresses held by VirtualIPs that are not Services', with their holder's description.
    pub(crate) taken: &'b BTreeMap<IpAddr, String>,
    /// Addresses Services were given before, by Service key, with their pool when known.
    pub(crate) records: &'b BTreeMap<String, Vec<Record>>,
}

/// Groups requests (in precedence order) into units; members that cannot share are refused.
pub(crate) fn units<'a>(
    requests: &'a [Request<'a>],
    refused: &mut BTreeMap<String, Refusal>,
) -> Vec<Unit<'a>> {
    let mut out: Vec<Unit<'a>> = Vec::new();
    let mut by_key: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for r in requests {
        let Some(key) = r.sharing else {
            out.push(Unit {
                members: vec![r],
                sharing: None,
            });
            continue;
        };
        let Some(&i) = by_key.get(&(r.namespace, key)) else {
            by_key.insert((r.namespace, key), out.len());
            out.push(Unit {
                members: vec![r],
                sharing: Some((r.namespace, key)),
            });
            continue;
        };
        let unit = &mut out[i];
        let first = unit.first();
        if let Some(other) = unit.members.iter().find(|m| !m.ports.is_disjoint(&r.ports)) {
            let ports = other
                .ports
                .intersection(&r.ports)
                .map(|(p, n)| format!("{p}/{n}"))
                .collect();
            refused.insert(
                r.key.clone(),
                Refusal::PortsClash {
                    other: other.name.to_string(),
                    ports,
                },
            );
            continue;
        }
        let mismatch = if !r.requested.is_empty() && r.requested != first.requested {
            Some("asks for other addresses".to_string())
        } else if r.pool.is_some() && r.pool != first.pool {
            Some("names another AddressPool".to_string())
        } else if r.local != first.local {
            Some("has another externalTrafficPolicy".to_string())
        } else if r.families != first.families {
            Some("serves other address families".to_string())
        } else {
            None
        };
        if let Some(why) = mismatch {
            refused.insert(
                r.key.clone(),
                Refusal::SharingMismatch(format!(
                    "sharing key {key:?}: this Service {why} than Service {}, the first to use the key",
                    first.name
                )),
            );
            continue;
        }
        unit.members.push(r);
    }
    out
}

fn sorted<'a>(pools: &[&'a AddressPool]) -> Vec<&'a AddressPool> {
    let mut p = pools.to_vec();
    p.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    p
}

fn name_of(p: &AddressPool) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

fn family(ipv6: bool) -> &'static str {
    if ipv6 { "IPv6" } else { "IPv4" }
}

impl<'a> Pools<'a, '_> {
    fn labels(&self, namespace: &str) -> BTreeMap<String, String> {
        self.namespaces.get(namespace).cloned().unwrap_or_default()
    }

    /// The pools `r` may take addresses from: the one it names, or every pool admitting its
    /// namespace (with `autoAssign` unless `requested`).
    fn candidates(
        &self,
        r: &Request<'_>,
        requested: bool,
    ) -> Result<Vec<&'a AddressPool>, Refusal> {
        let labels = self.labels(r.namespace);
        let admits = |p: &AddressPool| policy::admits_namespace(p, r.namespace, &labels);
        if let Some(name) = r.pool {
            let Some(p) = self
                .pools
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(name))
            else {
                return Err(Refusal::AddressNotAllowed(format!(
                    "AddressPool {name} does not exist"
                )));
            };
            if !admits(p) {
                return Err(Refusal::AddressNotAllowed(format!(
                    "AddressPool {name} does not admit namespace {}",
                    r.namespace
                )));
            }
            return Ok(vec![*p]);
        }
        let found: Vec<&AddressPool> = sorted(self.pools)
            .into_iter()
            .filter(|p| admits(p) && (requested || p.spec.auto_assign))
            .collect();
        if found.is_empty() {
            return Err(Refusal::AddressNotAllowed(format!(
                "no AddressPool{} admits namespace {}",
                if requested { "" } else { " with autoAssign" },
                r.namespace
            )));
        }
        Ok(found)
    }

    /// The pool in which `r` keeps the address of `record`: the one it came from while that
    /// one still allows it, else any that does.
    fn keeping(&self, r: &Request<'_>, record: &Record) -> Result<String, Refusal> {
        let still = record.pool.as_deref().is_some_and(|name| {
            self.candidates(r, true).is_ok_and(|c| {
                c.iter().any(|p| {
                    p.metadata.name.as_deref() == Some(name) && policy::contains(p, record.address)
                })
            })
        });
        match &record.pool {
            Some(name) if still => Ok(name.clone()),
            _ => self.allowing(r, record.address),
        }
    }

    /// The pool that allows `r` the address `ip`.
    fn allowing(&self, r: &Request<'_>, ip: IpAddr) -> Result<String, Refusal> {
        let pools = self.candidates(r, true)?;
        pools
            .iter()
            .find(|p| policy::contains(p, ip))
            .map(|p| name_of(p))
            .ok_or_else(|| {
                let names: Vec<String> = pools.iter().map(|p| name_of(p)).collect();
                Refusal::AddressNotAllowed(format!(
                    "{ip} is in no AddressPool that admits namespace {} ({})",
                    r.namespace,
                    names.join(", ")
                ))
            })
    }
}

/// Who holds which address: other VirtualIPs, then units as they are served.
struct Holders {
    by: BTreeMap<IpAddr, String>,
    /// The same addresses, as `policy::first_free` reads them.
    used: BTreeSet<IpAddr>,
    /// Per pool and family, an address below which none is free: where the next search starts
    /// (a burst of new Services is allocated in linear, not quadratic, time).
    low: HashMap<(String, bool), IpAddr>,
}

impl Holders {
    fn hold(&mut self, address: IpAddr, holder: String) {
        self.by.insert(address, holder);
        self.used.insert(address);
    }

    fn release(&mut self, address: IpAddr) {
        self.by.remove(&address);
        self.used.remove(&address);
        // Rare (a refused unit gives back what it held): search from the start again.
        self.low.clear();
    }
}

/// One unit's addresses, by family slot, and why it is refused (if it is).
type Row = (Vec<Option<Given>>, Option<Refusal>);

/// The addresses `unit` asks for and those it was given before, held for it.
fn reserve(unit: &Unit<'_>, pools: &Pools<'_, '_>, holders: &mut Holders) -> Row {
    let first = unit.first();
    let mut row: Vec<Option<Given>> = vec![None; first.families.len()];
    let mut failed = None;
    for (slot, &v6) in first.families.iter().enumerate() {
        if let Some(ip) = first.requested(v6) {
            match pools.allowing(first, ip) {
                Err(e) => failed = Some(e),
                Ok(_) if holders.by.contains_key(&ip) => {
                    failed = Some(Refusal::AddressInUse {
                        address: ip,
                        holder: holders.by[&ip].clone(),
                    });
                }
                Ok(pool) => row[slot] = Some(Given { address: ip, pool }),
            }
            continue;
        }
        let recorded = unit
            .members
            .iter()
            .filter_map(|m| pools.records.get(&m.key))
            .flatten()
            .find(|r| r.address.is_ipv6() == v6 && !holders.by.contains_key(&r.address));
        if let Some(r) = recorded
            && let Ok(pool) = pools.keeping(first, r)
        {
            // Still allowed: kept, from the pool it came from while that one allows it.
            row[slot] = Some(Given {
                address: r.address,
                pool,
            });
        }
    }
    if failed.is_none() {
        for g in row.iter().flatten() {
            holders.hold(g.address, format!("Service {}", first.key));
        }
    }
    (row, failed)
}

/// New addresses for the families `unit` still lacks; on a refusal, what it held is released.
fn fill(unit: &Unit<'_>, row: &mut Row, pools: &Pools<'_, '_>, holders: &mut Holders) {
    let first = unit.first();
    for (slot, &v6) in first.families.iter().enumerate() {
        if row.0[slot].is_some() {
            continue;
        }
        let wanted = slot == 0 || first.require_all;
        let found = pools.candidates(first, false).and_then(|cands| {
            cands
                .iter()
                .find_map(|p| {
                    let key = (name_of(p), v6);
                    let from = holders.low.get(&key).copied();
                    let address = policy::first_free_from(p, &holders.used, Some(v6), from)?;
                    holders.low.insert(key.clone(), address);
                    Some(Given {
                        address,
                        pool: key.0,
                    })
                })
                .ok_or_else(|| {
                    let names: Vec<String> = cands.iter().map(|p| name_of(p)).collect();
                    Refusal::PoolExhausted(format!(
                        "AddressPool{} {} {} no free {} address",
                        if names.len() > 1 { "s" } else { "" },
                        names.join(", "),
                        if names.len() > 1 { "have" } else { "has" },
                        family(v6)
                    ))
                })
        });
        match found {
            Ok(g) => {
                holders.hold(g.address, format!("Service {}", first.key));
                row.0[slot] = Some(g);
            }
            Err(e) if wanted => {
                row.1 = Some(e);
                break;
            }
            // PreferDualStack: the second family is a bonus.
            Err(_) => {}
        }
    }
    if row.1.is_some() {
        for g in row.0.iter().flatten() {
            holders.release(g.address);
        }
    }
}

/// Allocates addresses to the units: first every address asked for or given before, then new
/// ones.
pub(crate) fn allocate<'a>(
    units: Vec<Unit<'a>>,
    pools: &Pools<'a, '_>,
    mut refused: BTreeMap<String, Refusal>,
) -> Allocation<'a> {
    let mut holders = Holders {
        by: pools.taken.clone(),
        used: pools.taken.keys().copied().collect(),
        low: HashMap::new(),
    };
    let mut rows: Vec<Row> = units
        .iter()
        .map(|u| reserve(u, pools, &mut holders))
        .collect();
    for (unit, row) in units.iter().zip(rows.iter_mut()) {
        if row.1.is_none() {
            fill(unit, row, pools, &mut holders);
        }
    }
    let mut out = Allocation::default();
    for (unit, (row, fail)) in units.into_iter().zip(rows) {
        match fail {
            Some(e) => {
                for m in &unit.members {
                    refused.insert(m.key.clone(), e.clone());
                }
            }
            None => out.units.push((unit, row.into_iter().flatten().collect())),
        }
    }
    out.refused = refused;
    out
}
