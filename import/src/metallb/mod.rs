//! MetalLB's configuration (`metallb.io/v1beta1`, and `v1beta2` BGPPeers) into AddressPools
//! and BGPPeers: each `IPAddressPool` that an `L2Advertisement` announces becomes the AddressPool
//! of the same name, placed as its advertisements place it; one that only `BGPAdvertisement`s
//! announce becomes an AddressPool with `announcement: BGP`, and MetalLB's `BGPPeer`s (with their
//! `BFDProfile`s and the advertisements' communities) Buoy's BGPPeers (`bgp`); the LoadBalancer
//! Services among the input are handed over to Buoy (`services`). What has no translation (pool
//! priorities, Service selectors, pools announced nowhere, BGP fields Buoy lacks) is warned.
//!
//! A pool that no advertisement announces is left out, with a warning: MetalLB gives its
//! addresses but does not announce them, and Buoy announces every address it gives, so
//! translating it would start answering ARP for addresses that are routed elsewhere. Services
//! using such a pool are left out too. A pool announced both in L2 and by BGP stays L2: a Buoy
//! pool announces one way.

mod bgp;
mod l2;
mod pool;
mod services;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_bgp;

use std::path::PathBuf;

use buoy_crds::{AddressPool, Announcement};

use crate::{
    diagnostics::{ImportError, Warnings},
    manifests::{self, Manifest},
    objects::{Doc, Import},
    services as handover,
};
use pool::Pool;

/// Kinds MetalLB writes itself (status), with nothing to translate.
const STATUS_KINDS: [&str; 3] = ["ServiceL2Status", "ServiceBGPStatus", "ConfigurationState"];

/// Reads the files and translates MetalLB's objects and the Services; warns about the rest.
/// A plain-text BGP password becomes a Secret in `namespace`.
pub(crate) fn import(
    paths: &[PathBuf],
    namespace: &str,
    warnings: &mut Warnings,
) -> Result<Import, ImportError> {
    let mut objects = Vec::new();
    for path in paths {
        objects.extend(manifests::read_file(path)?);
    }
    translate(objects, namespace, warnings)
}

/// The objects of the input, by what they are to MetalLB.
#[derive(Default)]
struct Input {
    pools: Vec<Pool>,
    l2: Vec<Manifest>,
    bgp: Vec<Manifest>,
    peers: Vec<Manifest>,
    bfd: Vec<bgp::Bfd>,
    aliases: bgp::Aliases,
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
            ("metallb.io", "BGPAdvertisement") => input.bgp.push(m),
            ("metallb.io", "BGPPeer") => input.peers.push(m),
            ("metallb.io", "BFDProfile") => input.bfd.push(bgp::read_bfd(m, warnings)?),
            ("metallb.io", "Community") => input.aliases.read(&m, warnings),
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

/// Translates the objects read; a plain-text BGP password becomes a Secret in `namespace`.
fn translate(
    objects: Vec<Manifest>,
    namespace: &str,
    warnings: &mut Warnings,
) -> Result<Import, ImportError> {
    let Input {
        pools,
        l2: l2_sources,
        bgp: bgp_sources,
        peers: peer_sources,
        bfd,
        aliases,
        services,
    } = classify(objects, warnings)?;
    let mut l2 = Vec::new();
    for m in l2_sources {
        l2.push(l2::read(m, &pools, warnings)?);
    }
    let mut bgp_ads = Vec::new();
    for m in bgp_sources {
        bgp_ads.push(bgp::read_ad(m, &pools, &aliases, warnings)?);
    }
    let mut peers = bgp::read_peers(peer_sources, &bfd, namespace, warnings)?;
    let mut import = Import::default();
    let mut left_out = Vec::new();
    let mut by_bgp = Vec::new();
    for (i, pool) in pools.iter().enumerate() {
        let ads: Vec<&l2::L2> = l2.iter().filter(|a| a.pools.contains(&i)).collect();
        let bgp_of: Vec<&bgp::BgpAd> = bgp_ads.iter().filter(|a| a.pools.contains(&i)).collect();
        let mut placed = pool.clone();
        let mut comments = vec![format!(
            "From {} ({}).",
            pool.source.label(),
            pool.source.at
        )];
        if let Some(first) = ads.first() {
            for ad in &bgp_of {
                ad.source.warn(
                    warnings,
                    &[],
                    format!(
                        "IPAddressPool {} is announced in L2 too ({} at {}), and a Buoy pool \
                         announces one way: it stays L2 (VRRP and ARP/NDP), not announced by BGP",
                        pool.name,
                        first.source.label(),
                        first.source.at
                    ),
                );
            }
            comments.extend(l2::place(&mut placed, &ads, warnings));
        } else if !bgp_of.is_empty() {
            placed.spec.announcement = Announcement::BGP;
            comments.extend(bgp_of.iter().map(|a| {
                format!(
                    "Announced by BGP as {} ({}) announces it.",
                    a.source.label(),
                    a.source.at
                )
            }));
            by_bgp.push(i);
        } else {
            pool.source.warn(warnings, &[], not_announced_why());
            left_out.push(i);
            continue;
        }
        let mut object = AddressPool::new(&placed.name, placed.spec);
        object.metadata.namespace = None;
        import.address_pools.push(Doc { object, comments });
    }
    // Only the advertisements that announce some pool by BGP say anything to the peers.
    let announcing: Vec<&bgp::BgpAd> = bgp_ads
        .iter()
        .filter(|a| a.pools.iter().any(|i| by_bgp.contains(i)))
        .collect();
    bgp::attach(&announcing, &mut peers, &by_bgp, &pools, warnings);
    for p in peers {
        import.secrets.extend(p.secret);
        import.bgp_peers.push(p.doc);
    }
    hand_over(&services, &pools, &left_out, &mut import, warnings)?;
    Ok(import)
}

/// Hands the Services MetalLB serves over to Buoy, but those using pools `left_out`.
fn hand_over(
    services: &[Manifest],
    pools: &[Pool],
    left_out: &[usize],
    import: &mut Import,
    warnings: &mut Warnings,
) -> Result<(), ImportError> {
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
    Ok(())
}

fn not_announced_why() -> String {
    "no L2Advertisement nor BGPAdvertisement announces this pool: MetalLB gives its addresses \
     but announces them nowhere, and Buoy would announce them, so the pool is left out, with the \
     Services using it; to have Buoy announce it, add an L2Advertisement or a BGPAdvertisement \
     for it and import again"
        .into()
}

/// MetalLB's configuration before 0.13: a ConfigMap whose `config` key lists `address-pools`.
fn is_legacy_config(m: &Manifest) -> bool {
    m.str(&["data", "config"])
        .is_some_and(|c| c.contains("address-pools"))
}
