//! The address policy, pure and shared: the operator decides with it which VirtualIPs are served
//! (and reports why not), and every agent decides again with the same function before it binds
//! anything, so that neither an edited annotation nor a stale status can make an agent claim an
//! address that no AddressPool allows. Also the pools' address arithmetic: membership, size and
//! the next free address.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::{AddressPool, VirtualIPSpec};

/// Whether the operator (and the agents it runs) enforce AddressPools.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AddressPolicy {
    /// A VirtualIP is served only when an AddressPool that admits its namespace allows its
    /// addresses, interface and tolerations; the pool's `nodeSelector` applies.
    #[default]
    Enforce,
    /// Any address; pools only hand out addresses to VirtualIPs that name one.
    Off,
}

impl std::str::FromStr for AddressPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Enforce" => Ok(AddressPolicy::Enforce),
            "Off" => Ok(AddressPolicy::Off),
            other => Err(format!("{other:?} is not Enforce or Off")),
        }
    }
}

impl AddressPolicy {
    /// The flag value (`--address-policy`).
    pub fn as_str(self) -> &'static str {
        match self {
            AddressPolicy::Enforce => "Enforce",
            AddressPolicy::Off => "Off",
        }
    }
}

/// Whether `labels` match `selector` (absent: everything). An unknown operator matches nothing,
/// as the API server would have rejected it.
pub fn selector_matches(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(sel) = selector else { return true };
    let by_labels = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

/// An inclusive range of addresses of one family, as numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// The first address, as a number.
    pub first: u128,
    /// The last address, as a number.
    pub last: u128,
    /// Whether the addresses are IPv6.
    pub ipv6: bool,
}

fn number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn address(n: u128, ipv6: bool) -> IpAddr {
    if ipv6 {
        IpAddr::V6(n.into())
    } else {
        // A v4 range never holds a number above u32::MAX.
        IpAddr::V4(u32::try_from(n).unwrap_or(u32::MAX).into())
    }
}

impl Range {
    /// Parses a CIDR (`192.168.60.0/24`) or `first-last`.
    pub fn parse(text: &str) -> Result<Range, String> {
        let bad = || format!("{text:?} is neither a CIDR nor a range first-last");
        if let Some((first, last)) = text.split_once('-') {
            let first: IpAddr = first.trim().parse().map_err(|_| bad())?;
            let last: IpAddr = last.trim().parse().map_err(|_| bad())?;
            if first.is_ipv6() != last.is_ipv6() {
                return Err(format!("{text:?}: both ends must be of one address family"));
            }
            if number(first) > number(last) {
                return Err(format!("{text:?}: the first address comes after the last"));
            }
            return Ok(Range {
                first: number(first),
                last: number(last),
                ipv6: first.is_ipv6(),
            });
        }
        let (ip, prefix) = text.split_once('/').ok_or_else(bad)?;
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let bits: u32 = if ip.is_ipv6() { 128 } else { 32 };
        let prefix: u32 = prefix.parse().map_err(|_| bad())?;
        if prefix > bits {
            return Err(bad());
        }
        let host = bits - prefix;
        let mask = if host >= 128 {
            u128::MAX
        } else {
            (1u128 << host) - 1
        };
        let first = number(ip) & !mask;
        Ok(Range {
            first,
            last: first | mask,
            ipv6: ip.is_ipv6(),
        })
    }

    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv6() == self.ipv6 && (self.first..=self.last).contains(&number(ip))
    }

    /// Addresses in the range (saturating at u128::MAX for `::/0`).
    pub fn len(&self) -> u128 {
        (self.last - self.first).saturating_add(1)
    }

    /// Never: a range holds at least its first address.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// IPv4 addresses ending in .0 or .255 in the range.
    fn buggy(&self) -> u128 {
        if self.ipv6 {
            return 0;
        }
        // Count n in [first, last] with n % 256 in {0, 255}.
        let upto = |n: u128| -> u128 {
            // Of 0..=n.
            let full = (n + 1) / 256;
            let rest = (n + 1) % 256;
            full * 2 + u128::from(rest > 0)
        };
        let below = if self.first == 0 {
            0
        } else {
            upto(self.first - 1)
        };
        upto(self.last) - below
    }
}

fn is_buggy(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(a) if matches!(a.octets()[3], 0 | 255))
}

/// The pool's ranges, or why one of them is not valid (the CRD's rules catch all but the order
/// of an IPv6 range, which CEL cannot compare).
pub fn ranges(pool: &AddressPool) -> Result<Vec<Range>, String> {
    pool.spec
        .addresses
        .iter()
        .map(|a| Range::parse(&a.0))
        .collect()
}

/// Whether `pool` holds `ip`.
pub fn contains(pool: &AddressPool, ip: IpAddr) -> bool {
    ranges(pool).is_ok_and(|r| r.iter().any(|r| r.contains(ip)))
}

/// Free addresses of `pool` given the ones in `used` (saturating at i64::MAX), without the
/// buggy ones when the pool avoids them. Overlapping ranges count once per range.
pub fn available(pool: &AddressPool, used: &BTreeSet<IpAddr>) -> i64 {
    let Ok(ranges) = ranges(pool) else { return 0 };
    let mut total: u128 = 0;
    for r in &ranges {
        let mut n = r.len();
        if pool.spec.avoid_buggy_ips {
            n -= r.buggy();
        }
        total = total.saturating_add(n);
    }
    let taken = used
        .iter()
        .filter(|ip| ranges.iter().any(|r| r.contains(**ip)))
        .filter(|ip| !(pool.spec.avoid_buggy_ips && is_buggy(**ip)))
        .count();
    i64::try_from(total.saturating_sub(taken as u128)).unwrap_or(i64::MAX)
}

/// The first address of `pool` of the family asked for (`None`: either) that is not in `used`,
/// in the order of the pool's ranges.
pub fn first_free(
    pool: &AddressPool,
    used: &BTreeSet<IpAddr>,
    ipv6: Option<bool>,
) -> Option<IpAddr> {
    first_free_from(pool, used, ipv6, None)
}

/// [`first_free`], knowing that no address below `from` is free: an allocator that hands out
/// many addresses in one pass starts where the last one was found, linear rather than quadratic
/// in the addresses it hands out.
pub fn first_free_from(
    pool: &AddressPool,
    used: &BTreeSet<IpAddr>,
    ipv6: Option<bool>,
    from: Option<IpAddr>,
) -> Option<IpAddr> {
    for r in ranges(pool).ok()? {
        if ipv6.is_some_and(|v6| v6 != r.ipv6) {
            continue;
        }
        let low = from
            .filter(|f| f.is_ipv6() == r.ipv6)
            .map_or(r.first, |f| number(f).max(r.first));
        if low > r.last {
            continue;
        }
        let mut n = low;
        loop {
            let ip = address(n, r.ipv6);
            let skipped = pool.spec.avoid_buggy_ips && is_buggy(ip);
            if !skipped && !used.contains(&ip) {
                return Some(ip);
            }
            if n == r.last {
                break;
            }
            n += 1;
        }
    }
    None
}

/// Whether `pool` admits VirtualIPs of the namespace `namespace` with `labels`.
pub fn admits_namespace(
    pool: &AddressPool,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let by_name = pool
        .spec
        .namespaces
        .iter()
        .flatten()
        .any(|n| n.0 == namespace);
    let by_label = pool
        .spec
        .namespace_selector
        .as_ref()
        .is_some_and(|s| selector_matches(Some(s), labels));
    by_name || by_label
}

/// Whether the pool's toleration `allowed` covers the VirtualIP's toleration `t`.
pub fn covers(allowed: &Toleration, t: &Toleration) -> bool {
    let exists = allowed.operator.as_deref() == Some("Exists");
    let key = match allowed.key.as_deref().unwrap_or("") {
        "" => exists,
        k => t.key.as_deref() == Some(k),
    };
    let effect = match allowed.effect.as_deref().unwrap_or("") {
        "" => true,
        e => t.effect.as_deref() == Some(e),
    };
    let value = exists
        || (t.operator.as_deref().unwrap_or("Equal") != "Exists"
            && t.value.as_deref().unwrap_or("") == allowed.value.as_deref().unwrap_or(""));
    key && effect && value
}

/// Why `pool` does not allow a VirtualIP of `spec` with `addresses` (its namespace admitted);
/// `None` when it does. The node selector is not a reason: it is combined with the VirtualIP's.
pub fn refusal(pool: &AddressPool, spec: &VirtualIPSpec, addresses: &[IpAddr]) -> Option<String> {
    let name = pool.metadata.name.as_deref().unwrap_or("");
    let ranges = match ranges(pool) {
        Ok(r) => r,
        Err(e) => return Some(format!("AddressPool {name} is not valid: {e}")),
    };
    let outside: Vec<String> = addresses
        .iter()
        .filter(|ip| !ranges.iter().any(|r| r.contains(**ip)))
        .map(ToString::to_string)
        .collect();
    if !outside.is_empty() {
        let held: Vec<&str> = pool.spec.addresses.iter().map(|a| a.0.as_str()).collect();
        return Some(format!(
            "AddressPool {name} ({}) does not hold {}",
            held.join(", "),
            outside.join(", ")
        ));
    }
    let interfaces = pool.spec.interfaces.as_deref().unwrap_or_default();
    if let Some(i) = &spec.interface
        && !interfaces.is_empty()
        && !interfaces.iter().any(|a| &a.0 == i)
    {
        let allowed: Vec<&str> = interfaces.iter().map(|a| a.0.as_str()).collect();
        return Some(format!(
            "AddressPool {name} allows interfaces {} only, not {i}",
            allowed.join(", ")
        ));
    }
    let allowed = pool.spec.allowed_tolerations.as_deref().unwrap_or_default();
    if let Some(t) = spec
        .tolerations
        .iter()
        .flatten()
        .find(|t| !allowed.iter().any(|a| covers(a, t)))
    {
        return Some(format!(
            "AddressPool {name} does not allow the toleration {} (allowedTolerations)",
            describe_toleration(t)
        ));
    }
    None
}

fn describe_toleration(t: &Toleration) -> String {
    let key = t.key.as_deref().unwrap_or("*");
    let op = t.operator.as_deref().unwrap_or("Equal");
    let effect = t.effect.as_deref().unwrap_or("any effect");
    match t.value.as_deref() {
        Some(v) if op != "Exists" => format!("{key}={v}:{effect}"),
        _ => format!("{key} {op}:{effect}"),
    }
}

/// A VirtualIP's standing under the policy.
#[derive(Clone, Debug, PartialEq)]
pub enum Admission<'a> {
    /// Served; the pool in effect, if any (its `nodeSelector` and interface list apply).
    Allowed(Option<&'a AddressPool>),
    /// Not served: the message names the address and what would allow it.
    NotAllowed(String),
}

/// Decides whether a VirtualIP of `namespace` (with `namespace_labels`) and `spec`, whose
/// addresses in effect are `addresses` (empty: none yet, to be allocated from its pool), is
/// served under `policy`. Pools are tried by name; the first that allows everything is the one
/// in effect. With [`AddressPolicy::Off`] only a pool the VirtualIP names applies.
pub fn admit<'a>(
    policy: AddressPolicy,
    pools: &[&'a AddressPool],
    namespace: &str,
    namespace_labels: &BTreeMap<String, String>,
    spec: &VirtualIPSpec,
    addresses: &[IpAddr],
) -> Admission<'a> {
    let mut sorted: Vec<&AddressPool> = pools.to_vec();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let named = |p: &&AddressPool| {
        spec.address_pool
            .as_deref()
            .is_none_or(|n| p.metadata.name.as_deref() == Some(n))
    };
    if policy == AddressPolicy::Off {
        return match &spec.address_pool {
            None => Admission::Allowed(None),
            Some(n) => match sorted.iter().find(|p| named(p)) {
                Some(p) => match refusal(p, spec, addresses) {
                    None => Admission::Allowed(Some(p)),
                    Some(why) => Admission::NotAllowed(why),
                },
                None => Admission::NotAllowed(format!("AddressPool {n} does not exist")),
            },
        };
    }
    let admitting: Vec<&AddressPool> = sorted
        .iter()
        .copied()
        .filter(|p| admits_namespace(p, namespace, namespace_labels))
        .collect();
    let candidates: Vec<&AddressPool> = admitting.iter().copied().filter(named).collect();
    let mut reasons = Vec::new();
    for p in &candidates {
        match refusal(p, spec, addresses) {
            None => return Admission::Allowed(Some(p)),
            Some(why) => reasons.push(why),
        }
    }
    let what = if addresses.is_empty() {
        "no address".to_string()
    } else {
        format!(
            "address {}",
            addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let message = match (&spec.address_pool, candidates.is_empty()) {
        (Some(n), true) if sorted.iter().any(|p| p.metadata.name.as_deref() == Some(n)) => format!(
            "{what}: AddressPool {n} does not admit namespace {namespace} (add it to the pool's namespaces or namespaceSelector)"
        ),
        (Some(n), true) => format!("{what}: AddressPool {n} does not exist"),
        (None, true) => format!(
            "{what} is not allowed: no AddressPool admits namespace {namespace} (an AddressPool holding the address, with {namespace} in its namespaces or namespaceSelector, would allow it)"
        ),
        (_, false) => format!(
            "{what} is not allowed in namespace {namespace}: {} (an AddressPool admitting {namespace} that allows it would)",
            reasons.join("; ")
        ),
    };
    Admission::NotAllowed(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(yaml: &str) -> AddressPool {
        serde_yaml::from_str(yaml).unwrap()
    }
    fn spec(yaml: &str) -> VirtualIPSpec {
        serde_yaml::from_str(yaml).unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_cidrs_and_sizes() {
        let r = Range::parse("192.168.60.0/24").unwrap();
        assert!(r.contains(ip("192.168.60.255")) && !r.contains(ip("192.168.61.0")));
        assert_eq!(r.len(), 256);
        assert_eq!(r.buggy(), 2);
        let r = Range::parse("192.168.60.10-192.168.61.10").unwrap();
        assert_eq!(r.len(), 257);
        // .255 of .60 and .0 of .61.
        assert_eq!(r.buggy(), 2);
        assert_eq!(Range::parse("10.0.0.0-10.0.0.0").unwrap().buggy(), 1);
        assert_eq!(Range::parse("0.0.0.0/0").unwrap().buggy(), 2 * (1 << 24));
        assert!(Range::parse("fd00::/120").unwrap().contains(ip("fd00::ff")));
        assert_eq!(Range::parse("::/0").unwrap().len(), u128::MAX);
        assert!(Range::parse("fd00::20-fd00::10").is_err());
        assert!(Range::parse("10.0.0.1-fd00::1").is_err());
        assert!(Range::parse("nonsense").is_err());
    }

    #[test]
    fn allocation_skips_used_and_buggy_addresses() {
        let p = pool(
            "metadata: {name: lan}\nspec: {addresses: ['10.0.0.254-10.0.1.1', 'fd00::/126'], avoidBuggyIPs: true}",
        );
        let mut used = BTreeSet::new();
        assert_eq!(available(&p, &used), 2 + 4);
        assert_eq!(first_free(&p, &used, Some(false)), Some(ip("10.0.0.254")));
        used.insert(ip("10.0.0.254"));
        // .255 and .0 are skipped.
        assert_eq!(first_free(&p, &used, Some(false)), Some(ip("10.0.1.1")));
        used.insert(ip("10.0.1.1"));
        assert_eq!(first_free(&p, &used, Some(false)), None);
        assert_eq!(first_free(&p, &used, None), Some(ip("fd00::")));
        assert_eq!(available(&p, &used), 4);
        let big = pool("metadata: {name: v6}\nspec: {addresses: ['fd00::/64', 'fd01::/64']}");
        assert_eq!(available(&big, &used), i64::MAX);
        // From a known-full prefix: the same answers, found without walking it.
        let unused = BTreeSet::new();
        assert_eq!(
            first_free_from(&p, &unused, Some(false), Some(ip("10.0.1.1"))),
            Some(ip("10.0.1.1"))
        );
        assert_eq!(
            first_free_from(&p, &unused, Some(false), Some(ip("10.0.9.9"))),
            None,
            "past the last range"
        );
        assert_eq!(
            first_free_from(&p, &unused, None, Some(ip("10.0.9.9"))),
            Some(ip("fd00::")),
            "a hint of the other family does not skip this one"
        );
        assert_eq!(
            first_free_from(&p, &unused, Some(false), Some(ip("9.0.0.0"))),
            Some(ip("10.0.0.254"))
        );
    }

    #[test]
    fn tolerations_are_covered_as_the_scheduler_matches_them() {
        let t = |y: &str| -> Toleration { serde_yaml::from_str(y).unwrap() };
        let cp =
            t("{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}");
        assert!(covers(&cp, &cp));
        assert!(!covers(&cp, &t("{key: other, operator: Exists}")));
        assert!(covers(&t("{operator: Exists}"), &cp));
        let equal = t("{key: k, operator: Equal, value: a}");
        assert!(covers(&equal, &equal));
        assert!(!covers(&equal, &t("{key: k, value: b}")));
        // A broader toleration than allowed is not covered.
        assert!(!covers(&equal, &t("{key: k, operator: Exists}")));
        assert!(covers(&t("{key: k, operator: Exists}"), &equal));
    }

    #[test]
    fn admission_names_the_address_and_what_would_allow_it() {
        let lan = pool(
            "metadata: {name: lan}\nspec: {addresses: [192.168.60.0/24], namespaces: [web], interfaces: [eth0]}",
        );
        let dmz = pool(
            "metadata: {name: dmz}\nspec: {addresses: [10.9.0.0/24], namespaceSelector: {matchLabels: {zone: dmz}}}",
        );
        let pools = [&lan, &dmz];
        let none = BTreeMap::new();
        let vip = spec("{addresses: [192.168.60.88], interface: eth0}");
        let here = [ip("192.168.60.88")];
        let admit =
            |ns: &str, labels: &BTreeMap<String, String>, s: &VirtualIPSpec, a: &[IpAddr]| {
                admit(AddressPolicy::Enforce, &pools, ns, labels, s, a)
            };
        assert_eq!(
            admit("web", &none, &vip, &here),
            Admission::Allowed(Some(&lan))
        );
        let Admission::NotAllowed(m) = admit("shop", &none, &vip, &here) else {
            panic!()
        };
        assert!(
            m.contains("192.168.60.88") && m.contains("no AddressPool admits namespace shop"),
            "{m}"
        );
        let dmz_labels: BTreeMap<String, String> = [("zone".to_string(), "dmz".to_string())].into();
        let Admission::NotAllowed(m) = admit("shop", &dmz_labels, &vip, &here) else {
            panic!()
        };
        assert!(
            m.contains("AddressPool dmz (10.9.0.0/24) does not hold 192.168.60.88"),
            "{m}"
        );
        let Admission::NotAllowed(m) = admit(
            "web",
            &none,
            &spec("{addresses: [192.168.60.88], interface: eth1}"),
            &here,
        ) else {
            panic!()
        };
        assert!(m.contains("allows interfaces eth0 only, not eth1"), "{m}");
        let tolerant = spec(
            "{addresses: [192.168.60.88], tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists}]}",
        );
        let Admission::NotAllowed(m) = admit("web", &none, &tolerant, &here) else {
            panic!()
        };
        assert!(
            m.contains("toleration node-role.kubernetes.io/control-plane Exists"),
            "{m}"
        );
        // Naming a pool restricts the choice to it.
        let named = spec("{addressPool: dmz}");
        let Admission::NotAllowed(m) = admit("web", &none, &named, &[]) else {
            panic!()
        };
        assert!(
            m.contains("AddressPool dmz does not admit namespace web"),
            "{m}"
        );
        let Admission::NotAllowed(m) = admit("web", &none, &spec("{addressPool: nope}"), &[])
        else {
            panic!()
        };
        assert!(m.contains("AddressPool nope does not exist"), "{m}");
        // Off: anything, and a named pool still applies.
        assert_eq!(
            super::admit(AddressPolicy::Off, &pools, "shop", &none, &vip, &here),
            Admission::Allowed(None)
        );
        assert_eq!(
            super::admit(
                AddressPolicy::Off,
                &pools,
                "shop",
                &none,
                &named,
                &[ip("10.9.0.1")]
            ),
            Admission::Allowed(Some(&dmz))
        );
    }
}
