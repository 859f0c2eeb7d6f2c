//! The Services kube-vip serves, handed over to Buoy: `kube-vip.io/loadbalancerIPs` (which
//! kube-vip-cloud-provider writes on every Service it gives an address) becomes
//! `buoy.io/load-balancer-ips`, so that each Service keeps its address; Services of one namespace
//! that kube-vip made share an address get one `buoy.io/allow-shared-ip` key.

use std::{collections::BTreeMap, net::IpAddr};

use buoy_crds::service::{
    ALLOW_SHARED_IP_ANNOTATION, LOAD_BALANCER_CLASS, LOAD_BALANCER_IPS_ANNOTATION,
    parse_load_balancer_ips,
};
use serde_json::Value;

use crate::{
    diagnostics::{ImportError, Warnings},
    manifests::Manifest,
    objects::Doc,
    ranges::Span,
    services,
};

const PREFIX: &str = "kube-vip.io/";
const LOAD_BALANCER_IPS: &str = "kube-vip.io/loadbalancerIPs";
/// What kube-vip-cloud-provider writes from the ConfigMap's `interface-*` keys.
const SERVICE_INTERFACE: &str = "kube-vip.io/serviceInterface";
/// kube-vip's record of the node that holds the address.
const VIP_HOST: &str = "kube-vip.io/vipHost";
/// kube-vip-cloud-provider's class, when it runs with a class.
const CLASS: &str = "kube-vip.io/kube-vip-class";

/// A Service with the addresses it asks for, before sharing is worked out.
struct Read<'a> {
    m: &'a Manifest,
    ips: Option<String>,
    notes: Vec<String>,
}

/// The Services handed over to Buoy. `pools` are the AddressPools' names and spans (to say
/// when an address lies in none); `has_interfaces`: the ConfigMap names interfaces, so
/// `kube-vip.io/serviceInterface` is its copy.
pub(super) fn translate(
    all: &[Manifest],
    pools: &[(String, Vec<Span>)],
    has_interfaces: bool,
    warnings: &mut Warnings,
) -> Result<Vec<Doc<Value>>, ImportError> {
    let (plain, served): (Vec<&Manifest>, Vec<&Manifest>) = all
        .iter()
        .partition(|m| services::is_plain(m, |k| k.starts_with(PREFIX)));
    services::warn_plain(&plain, warnings);
    let mut read = Vec::new();
    for m in served {
        if let Some(r) = read_one(m, pools, has_interfaces, warnings)? {
            read.push(r);
        }
    }
    // Addresses that several Services ask for: kube-vip shares them. The namespaces that ask
    // for each, in the order of the input.
    let mut users: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in &read {
        if let Some(ips) = &r.ips {
            let namespaces = users.entry(ips).or_default();
            let ns = r.m.namespace().unwrap_or("default");
            if !namespaces.contains(&ns) {
                namespaces.push(ns);
            }
        }
    }
    let mut count: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for r in &read {
        if let Some(ips) = &r.ips {
            *count
                .entry((r.m.namespace().unwrap_or("default"), ips))
                .or_default() += 1;
        }
    }
    let mut out = Vec::new();
    for r in &read {
        let mut set: Vec<(&str, String)> = Vec::new();
        let mut notes = r.notes.clone();
        if let Some(ips) = &r.ips {
            set.push((LOAD_BALANCER_IPS_ANNOTATION, ips.clone()));
            let ns = r.m.namespace().unwrap_or("default");
            if let Some(first) = users.get(ips.as_str()).and_then(|n| n.first())
                && *first != ns
            {
                r.m.warn(
                    warnings,
                    &["metadata", "annotations", LOAD_BALANCER_IPS],
                    format!(
                        "kube-vip shares {ips} with namespace {first}; Buoy shares an address only \
                         among the Services of one namespace: give this Service another address"
                    ),
                );
            }
            let has_key = services::annotations(r.m)?.contains_key(ALLOW_SHARED_IP_ANNOTATION);
            if count.get(&(ns, ips.as_str())).is_some_and(|&n| n > 1) && !has_key {
                notes.push(format!(
                    "kube-vip shares {ips} among Services of {ns}: so does Buoy, by their key."
                ));
                set.push((ALLOW_SHARED_IP_ANNOTATION, ips.clone()));
            }
        }
        let ips = r.ips.clone();
        let value = services::handed_over(
            r.m,
            |k| k.starts_with(PREFIX),
            &set,
            |spec| {
                // kube-vip-cloud-provider copies the first address to spec.loadBalancerIP.
                if ips.is_some() {
                    spec.remove("loadBalancerIP");
                }
            },
        );
        out.push(services::doc(r.m, value, notes));
    }
    Ok(out)
}

/// A Service's request, or `None` (with a warning) when kube-vip does not serve it.
fn read_one<'a>(
    m: &'a Manifest,
    pools: &[(String, Vec<Span>)],
    has_interfaces: bool,
    warnings: &mut Warnings,
) -> Result<Option<Read<'a>>, ImportError> {
    let annotations = services::annotations(m)?;
    let ours = annotations.keys().any(|k| k.starts_with(PREFIX));
    if services::service_type(m) != "LoadBalancer" {
        m.warn(
            warnings,
            &[],
            "not a LoadBalancer Service, so kube-vip ignores its annotations: left out",
        );
        return Ok(None);
    }
    let mut notes = Vec::new();
    if let Some(class) = m.str(&["spec", "loadBalancerClass"])
        && class != LOAD_BALANCER_CLASS
    {
        if class != CLASS && !ours {
            m.warn(
                warnings,
                &["spec", "loadBalancerClass"],
                format!("{class}: another load balancer's Service: left out"),
            );
            return Ok(None);
        }
        notes.push(format!("Its spec.loadBalancerClass was {class}."));
    }
    let at = |k: &str| ["metadata", "annotations", k].map(String::from);
    let warn = |warnings: &mut Warnings, k: &str, why: String| {
        let path = at(k);
        m.warn(warnings, &path.each_ref().map(String::as_str), why);
    };
    let mut ips = None;
    if let Some(value) = annotations.get(LOAD_BALANCER_IPS) {
        match parse_load_balancer_ips(value) {
            Ok(list) if list.iter().any(IpAddr::is_unspecified) => warn(
                warnings,
                LOAD_BALANCER_IPS,
                "0.0.0.0 asks kube-vip for an address by DHCP; Buoy does not: the Service gets \
                 one from a pool"
                    .into(),
            ),
            Ok(list) => {
                for ip in &list {
                    if !pools.is_empty()
                        && !pools.iter().any(|(_, s)| s.iter().any(|s| s.contains(*ip)))
                    {
                        warn(
                            warnings,
                            LOAD_BALANCER_IPS,
                            format!(
                                "{ip} is in none of the ConfigMap's pools: Buoy gives it only if \
                                 an AddressPool admitting namespace {} holds it",
                                m.namespace().unwrap_or("default")
                            ),
                        );
                    }
                }
                let text: Vec<String> = list.iter().map(ToString::to_string).collect();
                ips = Some(text.join(","));
            }
            Err(e) => {
                warn(
                    warnings,
                    LOAD_BALANCER_IPS,
                    format!("{e}: kube-vip gives it no address either: the Service is left out"),
                );
                return Ok(None);
            }
        }
    }
    if let (Some(ips), Some(legacy)) = (&ips, m.str(&["spec", "loadBalancerIP"]))
        && !ips.split(',').any(|ip| ip == legacy)
    {
        m.warn(
            warnings,
            &["spec", "loadBalancerIP"],
            format!("{legacy}: kube-vip uses {LOAD_BALANCER_IPS} ({ips}) instead: left out"),
        );
    }
    for key in annotations.keys().filter(|k| k.starts_with(PREFIX)) {
        let copy = key == LOAD_BALANCER_IPS
            || key == VIP_HOST
            || (key == SERVICE_INTERFACE && has_interfaces);
        if !copy {
            let why = if key == SERVICE_INTERFACE {
                "Buoy puts a Service's address on its AddressPool's interfaces: left out"
            } else {
                "Buoy has no annotation like it: left out"
            };
            warn(warnings, key, why.into());
        }
    }
    Ok(Some(Read { m, ips, notes }))
}
