//! The Services MetalLB serves, handed over to Buoy: MetalLB's annotations (`metallb.io/*`, and
//! the older `metallb.universe.tf/*`, which MetalLB still reads when the new one is absent)
//! become Buoy's, and the address MetalLB gave (`status.loadBalancer.ingress`) is kept by
//! asking for it, so that the Service keeps its address through the migration.

use std::{collections::BTreeMap, net::IpAddr};

use buoy_crds::service::{
    ADDRESS_POOL_ANNOTATION, ALLOW_SHARED_IP_ANNOTATION, LOAD_BALANCER_CLASS,
    LOAD_BALANCER_IPS_ANNOTATION, parse_load_balancer_ips,
};
use serde_json::Value;

use super::pool::Pool;
use crate::{
    diagnostics::{ImportError, Warnings},
    manifests::Manifest,
    objects::Doc,
    services,
};

/// MetalLB's annotation prefixes, the one it reads first first.
const PREFIXES: [&str; 2] = ["metallb.io/", "metallb.universe.tf/"];

/// The annotations MetalLB reads on a Service (after the prefix).
const KNOWN: [&str; 4] = [
    "loadBalancerIPs",
    "address-pool",
    "allow-shared-ip",
    "ip-allocated-from-pool",
];

/// Whether an annotation is MetalLB's.
pub(super) fn is_metallb(key: &str) -> bool {
    PREFIXES.iter().any(|p| key.starts_with(p))
}

/// The pools of the input: the ones translated, and the ones left out (not announced).
pub(super) struct Pools<'a> {
    pub(super) kept: Vec<&'a Pool>,
    pub(super) left_out: Vec<&'a Pool>,
}

impl Pools<'_> {
    fn left_out_named(&self, name: &str) -> bool {
        self.left_out.iter().any(|p| p.name == name)
    }

    fn left_out_holding(&self, ip: IpAddr) -> Option<&str> {
        self.left_out
            .iter()
            .find(|p| p.spans.iter().any(|s| s.contains(ip)))
            .map(|p| p.name.as_str())
    }

    fn known(&self, name: &str) -> bool {
        self.kept
            .iter()
            .chain(&self.left_out)
            .any(|p| p.name == name)
    }
}

/// The Service handed over to Buoy, or `None` (with a warning) when MetalLB does not serve it
/// or serves it from a pool that is not translated.
pub(super) fn translate(
    m: &Manifest,
    pools: &Pools,
    warnings: &mut Warnings,
) -> Result<Option<Doc<Value>>, ImportError> {
    let annotations = services::annotations(m)?;
    let ours: Vec<&String> = annotations.keys().filter(|k| is_metallb(k)).collect();
    if services::service_type(m) != "LoadBalancer" {
        m.warn(
            warnings,
            &[],
            "not a LoadBalancer Service, so MetalLB ignores its annotations: left out",
        );
        return Ok(None);
    }
    let mut notes = Vec::new();
    if let Some(class) = m.str(&["spec", "loadBalancerClass"])
        && class != LOAD_BALANCER_CLASS
    {
        if ours.is_empty() {
            m.warn(
                warnings,
                &["spec", "loadBalancerClass"],
                format!(
                    "{class}: another load balancer's Service (MetalLB serves a class only when \
                     started with --lb-class): left out"
                ),
            );
            return Ok(None);
        }
        notes.push(format!(
            "Its spec.loadBalancerClass was {class} (MetalLB's, with --lb-class)."
        ));
    }
    let Some(mut wanted) = read_annotations(m, &annotations, pools, warnings) else {
        return Ok(None);
    };
    let requested = wanted
        .iter()
        .any(|(k, _)| *k == LOAD_BALANCER_IPS_ANNOTATION)
        || m.str(&["spec", "loadBalancerIP"]).is_some();
    let given = services::status_ips(m);
    let asked: Option<IpAddr> = m
        .str(&["spec", "loadBalancerIP"])
        .and_then(|ip| ip.parse().ok());
    if let Some(pool) = asked.and_then(|ip| pools.left_out_holding(ip)) {
        m.warn(
            warnings,
            &["spec", "loadBalancerIP"],
            format!(
                "the address is in IPAddressPool {pool}, which is not translated (MetalLB does \
                 not announce it): left out"
            ),
        );
        return Ok(None);
    }
    if let Some(pool) = given.iter().find_map(|ip| pools.left_out_holding(*ip)) {
        m.warn(
            warnings,
            &["status", "loadBalancer", "ingress"],
            format!(
                "its address is from IPAddressPool {pool}, which is not translated (MetalLB does \
                 not announce it): left out"
            ),
        );
        return Ok(None);
    }
    if !requested && !given.is_empty() {
        let ips: Vec<String> = given.iter().map(ToString::to_string).collect();
        let value = ips.join(",");
        if parse_load_balancer_ips(&value).is_ok() {
            notes.push(format!(
                "MetalLB gave it {value}: kept by asking for it in {LOAD_BALANCER_IPS_ANNOTATION}."
            ));
            wanted.push((LOAD_BALANCER_IPS_ANNOTATION, value));
        }
    }
    let value = services::handed_over(m, is_metallb, &wanted, |_| {});
    Ok(Some(services::doc(m, value, notes)))
}

/// A Service's annotations, read as MetalLB reads them.
struct Annotations<'a> {
    m: &'a Manifest,
    map: &'a BTreeMap<String, String>,
}

impl Annotations<'_> {
    /// Warns at the annotation `key`.
    fn warn(&self, warnings: &mut Warnings, key: &str, why: String) {
        self.m
            .warn(warnings, &["metadata", "annotations", key], why);
    }

    /// The annotation MetalLB reads for `name` (metallb.io's, else metallb.universe.tf's): its
    /// key and value.
    fn value(&self, name: &str, warnings: &mut Warnings) -> Option<(String, String)> {
        let [new, old] = PREFIXES.map(|p| format!("{p}{name}"));
        match (self.map.get(&new), self.map.get(&old)) {
            (Some(v), Some(o)) => {
                if v != o {
                    self.warn(
                        warnings,
                        &old,
                        format!("MetalLB reads {new} ({v:?}) instead: ignored, as by MetalLB"),
                    );
                }
                Some((new, v.clone()))
            }
            (Some(v), None) => Some((new, v.clone())),
            (None, Some(o)) => Some((old, o.clone())),
            (None, None) => None,
        }
    }

    /// Warns about the MetalLB annotations that MetalLB does not read.
    fn warn_unknown(&self, warnings: &mut Warnings) {
        for key in self.map.keys().filter(|k| is_metallb(k)) {
            let name = PREFIXES
                .iter()
                .find_map(|p| key.strip_prefix(p))
                .unwrap_or(key);
            if !KNOWN.contains(&name) {
                self.warn(
                    warnings,
                    key,
                    "not an annotation MetalLB reads, and Buoy has none like it: left out".into(),
                );
            }
        }
    }
}

/// Why a Service asking for `ips` is left out, if it is: MetalLB refuses the request, or the
/// addresses are in a pool that is not translated.
fn refused(m: &Manifest, ips: &str, pools: &Pools) -> Option<String> {
    match parse_load_balancer_ips(ips) {
        Err(e) => Some(format!("{e}; MetalLB refuses it too and gives no address")),
        Ok(_) if m.str(&["spec", "loadBalancerIP"]).is_some() => {
            Some("with spec.loadBalancerIP too, which MetalLB refuses (it gives no address)".into())
        }
        Ok(list) => list
            .iter()
            .find_map(|ip| pools.left_out_holding(*ip))
            .map(|p| {
                format!("{ips} is in IPAddressPool {p}, which is not translated (not announced)")
            }),
    }
}

/// Buoy's annotations for MetalLB's, warning about the rest; `None` (with a warning) when the
/// Service is left out.
fn read_annotations(
    m: &Manifest,
    annotations: &BTreeMap<String, String>,
    pools: &Pools,
    warnings: &mut Warnings,
) -> Option<Vec<(&'static str, String)>> {
    let notes = Annotations {
        m,
        map: annotations,
    };
    let value = |name: &str, warnings: &mut Warnings| notes.value(name, warnings);
    let warn_at = |warnings: &mut Warnings, key: &str, why: String| notes.warn(warnings, key, why);
    let mut out = Vec::new();
    if let Some((key, ips)) = value("loadBalancerIPs", warnings) {
        if let Some(why) = refused(m, &ips, pools) {
            warn_at(warnings, &key, format!("{why}: the Service is left out"));
            return None;
        }
        out.push((LOAD_BALANCER_IPS_ANNOTATION, ips.trim().to_string()));
    }
    if let Some((key, pool)) = value("address-pool", warnings) {
        if pools.left_out_named(&pool) {
            warn_at(
                warnings,
                &key,
                format!(
                    "IPAddressPool {pool} is not translated (MetalLB does not announce it): \
                     the Service is left out"
                ),
            );
            return None;
        }
        if !pools.known(&pool) {
            warn_at(
                warnings,
                &key,
                format!(
                    "no IPAddressPool {pool} in the input files: translated as \
                     {ADDRESS_POOL_ANNOTATION}: {pool}, which needs an AddressPool of that name"
                ),
            );
        }
        out.push((ADDRESS_POOL_ANNOTATION, pool));
    }
    if let Some((_, key)) = value("allow-shared-ip", warnings) {
        out.push((ALLOW_SHARED_IP_ANNOTATION, key));
    }
    if let Some((key, pool)) = value("ip-allocated-from-pool", warnings)
        && pools.left_out_named(&pool)
    {
        warn_at(
            warnings,
            &key,
            format!(
                "MetalLB gave its address from IPAddressPool {pool}, which is not translated \
                 (not announced): the Service is left out"
            ),
        );
        return None;
    }
    notes.warn_unknown(warnings);
    Some(out)
}
