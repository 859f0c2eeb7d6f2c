//! MetalLB's configuration (`metallb.io/v1beta1`) into AddressPools: each `IPAddressPool` that
//! an `L2Advertisement` announces becomes the AddressPool of the same name, placed as its
//! advertisements place it; the LoadBalancer Services among the input are handed over to Buoy
//! (`services`). What has no translation (BGP, pool priorities, Service selectors, pools that
//! are not announced in L2) is warned.
//!
//! A pool that no L2Advertisement announces is left out, with a warning: MetalLB gives its
//! addresses but does not announce them on the LAN (it announces them by BGP, or not at all),
//! and Buoy announces every address it gives by VRRP and ARP/NDP, so translating it would start
//! answering ARP for addresses that are routed elsewhere. Services using such a pool are left out
//! too.

mod l2;
mod pool;
mod services;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use buoy_crds::AddressPool;

use crate::{
    diagnostics::{ImportError, Warnings},
    manifests::{self, Manifest},
    objects::{Doc, Import},
    services as handover,
};
use pool::Pool;

/// MetalLB's BGP kinds: Buoy announces by VRRP and ARP/NDP on the LAN; BGP is future work.
const BGP_KINDS: [&str; 4] = ["BGPAdvertisement", "BGPPeer", "BFDProfile", "Community"];

/// Kinds MetalLB writes itself (status), with nothing to translate.
const STATUS_KINDS: [&str; 3] = ["ServiceL2Status", "ServiceBGPStatus", "ConfigurationState"];

/// Reads the files and translates MetalLB's objects and the Services; warns about the rest.
pub(crate) fn import(paths: &[PathBuf], warnings: &mut Warnings) -> Result<Import, ImportError> {
    let mut objects = Vec::new();
    for path in paths {
        objects.extend(manifests::read_file(path)?);
    }
    translate(objects, warnings)
}

/// The objects of the input, by what they are to MetalLB.
#[derive(Default)]
struct Input {
    pools: Vec<Pool>,
    l2: Vec<Manifest>,
    bgp: Vec<Manifest>,
    services: Vec<Manifest>,
}

/// Sorts the objects, reading the pools; warns about those with nothing to translate.
fn classify(objects: Vec<Manifest>, warnings: &mut Warnings) -> Result<Input, ImportError> {
    let mut input = Input::default();
    for m in objects {
        match (m.group(), m.kind()) {
            ("metallb.io", "IPAddressPool") => {
                let p = pool::read(m, warnings)?;
                if let Some(other) = input.pools.iter().find(|o| o.name == p.name) {
                    return Err(p.source.error(
                        &["metadata", "name"],
                        format!(
                            "a second IPAddressPool named {} (the first is at {}): AddressPools \
                             are cluster-scoped, one name each",
                            p.name, other.source.at
                        ),
                    ));
                }
                input.pools.push(p);
            }
            ("metallb.io", "L2Advertisement") => input.l2.push(m),
            ("metallb.io", "BGPAdvertisement") => {
                m.warn(warnings, &[], bgp_why());
                input.bgp.push(m);
            }
            ("metallb.io", kind) if BGP_KINDS.contains(&kind) => m.warn(warnings, &[], bgp_why()),
            ("metallb.io", kind) if STATUS_KINDS.contains(&kind) => m.warn(
                warnings,
                &[],
                "written by MetalLB itself (status): nothing to translate",
            ),
            ("metallb.io", "AddressPool") => m.warn(
                warnings,
                &[],
                "MetalLB's AddressPool kind, deprecated in MetalLB 0.13 and removed in 0.14: \
                 rewrite it as an IPAddressPool and an L2Advertisement, then import those",
            ),
            ("metallb.io", _) => m.warn(
                warnings,
                &[],
                "not a MetalLB kind the importer knows: left out",
            ),
            _ if handover::is_service(&m) => input.services.push(m),
            ("", "ConfigMap") if is_legacy_config(&m) => m.warn(
                warnings,
                &[],
                "MetalLB's ConfigMap configuration, before MetalLB 0.13: convert it to \
                 IPAddressPool and L2Advertisement objects first (MetalLB's configmaptocrs), \
                 then import those",
            ),
            _ => m.warn(
                warnings,
                &[],
                "neither MetalLB's configuration nor a Service: left out",
            ),
        }
    }
    Ok(input)
}

/// Translates the objects read.
fn translate(objects: Vec<Manifest>, warnings: &mut Warnings) -> Result<Import, ImportError> {
    let Input {
        pools,
        l2: l2_sources,
        bgp,
        services,
    } = classify(objects, warnings)?;
    let mut l2 = Vec::new();
    for m in l2_sources {
        l2.push(l2::read(m, &pools, warnings)?);
    }
    let mut announced_by_bgp = vec![false; pools.len()];
    for m in &bgp {
        for i in pool::selected(m, &pools, warnings)? {
            announced_by_bgp[i] = true;
        }
    }
    let mut import = Import::default();
    let mut left_out = Vec::new();
    for (i, pool) in pools.iter().enumerate() {
        let ads: Vec<&l2::L2> = l2.iter().filter(|a| a.pools.contains(&i)).collect();
        if ads.is_empty() {
            pool.source
                .warn(warnings, &[], not_announced_why(announced_by_bgp[i]));
            left_out.push(i);
            continue;
        }
        let mut placed = pool.clone();
        let mut comments = vec![format!(
            "From {} ({}).",
            pool.source.label(),
            pool.source.at
        )];
        comments.extend(l2::place(&mut placed, &ads, warnings));
        let mut object = AddressPool::new(&placed.name, placed.spec);
        object.metadata.namespace = None;
        import.address_pools.push(Doc { object, comments });
    }
    let split = services::Pools {
        kept: (0..pools.len())
            .filter(|i| !left_out.contains(i))
            .map(|i| &pools[i])
            .collect(),
        left_out: left_out.iter().map(|&i| &pools[i]).collect(),
    };
    let (plain, served): (Vec<&Manifest>, Vec<&Manifest>) = services
        .iter()
        .partition(|m| handover::is_plain(m, services::is_metallb));
    handover::warn_plain(&plain, warnings);
    for m in served {
        if let Some(doc) = services::translate(m, &split, warnings)? {
            import.services.push(doc);
        }
    }
    if let Some(first) = import.services.first_mut() {
        let mut comments = handover::class_note("MetalLB");
        comments.append(&mut first.comments);
        first.comments = comments;
    }
    Ok(import)
}

fn bgp_why() -> String {
    "Buoy announces addresses by VRRP and ARP/NDP on the LAN; its BGP mode is future work".into()
}

fn not_announced_why(by_bgp: bool) -> String {
    let how = if by_bgp {
        "MetalLB announces its addresses by BGP only"
    } else {
        "MetalLB gives its addresses but announces them nowhere"
    };
    format!(
        "no L2Advertisement announces this pool: {how}, and Buoy would announce them on the LAN \
         (ARP/NDP), so the pool is left out, with the Services using it; to have Buoy announce it, \
         add an L2Advertisement for it and import again"
    )
}

/// MetalLB's configuration before 0.13: a ConfigMap whose `config` key lists `address-pools`.
fn is_legacy_config(m: &Manifest) -> bool {
    m.str(&["data", "config"])
        .is_some_and(|c| c.contains("address-pools"))
}
