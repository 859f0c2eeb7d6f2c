//! MetalLB's `L2Advertisement`s: which pools each announces, and from where (`nodeSelectors`,
//! `interfaces`), as the one `nodeSelector` and `interfaces` of each AddressPool.
//!
//! MetalLB announces a pool from a node when any of the advertisements that select the pool
//! matches the node, on the union of their interfaces (all when one names none). An AddressPool
//! has one node selector and one interface list: several advertisements come to the same when
//! their selectors can be written as one; else the first is kept and what is lost is said.

use std::collections::BTreeSet;

use buoy_crds::InterfaceName;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::pool::Pool;
use crate::{
    diagnostics::{ImportError, Warnings},
    manifests::Manifest,
    selectors::{self, AnyOf},
};

/// An `L2Advertisement` read.
#[derive(Clone, Debug)]
pub(super) struct L2 {
    pub(super) source: Manifest,
    /// The pools it announces (indexes into the input's pools).
    pub(super) pools: Vec<usize>,
    /// Empty: every node.
    node_selectors: Vec<LabelSelector>,
    /// Empty: every interface.
    interfaces: Vec<String>,
}

/// An `L2Advertisement`, announcing some of `pools`.
pub(super) fn read(
    m: Manifest,
    pools: &[Pool],
    warnings: &mut Warnings,
) -> Result<L2, ImportError> {
    m.warn_unknown_fields(
        warnings,
        &["spec"],
        &[
            "ipAddressPools",
            "ipAddressPoolSelectors",
            "nodeSelectors",
            "interfaces",
        ],
        "MetalLB",
    );
    Ok(L2 {
        pools: super::pool::selected(&m, pools, warnings)?,
        node_selectors: m.typed_at(&["spec", "nodeSelectors"])?.unwrap_or_default(),
        interfaces: m.strings_at(&["spec", "interfaces"])?,
        source: m,
    })
}

/// Sets the pool's `nodeSelector` and `interfaces` from the advertisements that announce it
/// (at least one); returns the comment lines saying which they are.
pub(super) fn place(pool: &mut Pool, ads: &[&L2], warnings: &mut Warnings) -> Vec<String> {
    let comments: Vec<String> = ads
        .iter()
        .map(|a| {
            format!(
                "Announced where {} ({}) announces it.",
                a.source.label(),
                a.source.at
            )
        })
        .collect();
    pool.spec.node_selector = node_selector(pool, ads, warnings);
    let interfaces: Option<BTreeSet<&String>> = if ads.iter().any(|a| a.interfaces.is_empty()) {
        None
    } else {
        Some(ads.iter().flat_map(|a| &a.interfaces).collect())
    };
    pool.spec.interfaces =
        interfaces.map(|set| set.into_iter().cloned().map(InterfaceName).collect());
    // Which nodes use which interfaces is lost when advertisements that all name interfaces
    // differ in both.
    let node_sets: BTreeSet<String> = ads
        .iter()
        .map(|a| serde_json::to_string(&a.node_selectors).unwrap_or_default())
        .collect();
    let interface_sets: BTreeSet<&Vec<String>> = ads.iter().map(|a| &a.interfaces).collect();
    if pool.spec.interfaces.is_some()
        && node_sets.len() > 1
        && interface_sets.len() > 1
        && let Some(second) = ads.get(1)
    {
        second.source.warn(
            warnings,
            &["spec", "interfaces"],
            format!(
                "AddressPool {} has one list of interfaces for all its nodes: the nodes of every \
                 advertisement of the pool may use the interfaces of every other one",
                pool.name
            ),
        );
    }
    comments
}

/// The one node selector of the advertisements `ads` (none: every node).
fn node_selector(pool: &Pool, ads: &[&L2], warnings: &mut Warnings) -> Option<LabelSelector> {
    if ads.iter().any(|a| a.node_selectors.is_empty()) {
        return None;
    }
    let all: Vec<LabelSelector> = ads
        .iter()
        .flat_map(|a| a.node_selectors.iter().cloned())
        .collect();
    match selectors::any_of(&all) {
        AnyOf::Everything => None,
        AnyOf::One(s) => Some(s),
        AnyOf::Several(distinct) => {
            let kept = distinct.first().cloned().unwrap_or_default();
            let dropped: Vec<String> = distinct.iter().skip(1).map(selectors::show).collect();
            // Said at the advertisement whose selector is dropped first.
            let dropped_at = ads
                .iter()
                .flat_map(|a| {
                    a.node_selectors
                        .iter()
                        .enumerate()
                        .map(move |(i, s)| (a, i, s))
                })
                .find(|(_, _, s)| **s != kept);
            if let Some((ad, index, _)) = dropped_at {
                let index = index.to_string();
                ad.source.warn(
                    warnings,
                    &["spec", "nodeSelectors", &index],
                    format!(
                        "AddressPool {} has one nodeSelector: the first, {}, is kept; nodes \
                         matching only {} no longer announce its addresses: label them to match \
                         the first",
                        pool.name,
                        selectors::show(&kept),
                        dropped.join(" or ")
                    ),
                );
            }
            Some(kept)
        }
    }
}
