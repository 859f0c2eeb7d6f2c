//! A MetalLB `IPAddressPool` as an AddressPool's spec: its addresses, `autoAssign`,
//! `avoidBuggyIPs`, and `serviceAllocation`'s namespaces; its priority and Service selectors
//! are warned. And which pools an advertisement selects.

use std::collections::BTreeMap;

use buoy_crds::{AddressPoolSpec, AddressRange, NamespaceName, policy::selector_matches};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::{
    diagnostics::{ImportError, Warnings},
    manifests::Manifest,
    ranges::{self, Span},
    selectors::{self, AnyOf},
};

/// An AddressPool holds at most this many `addresses` (its CRD's limit).
const MAX_ADDRESSES: usize = 64;

/// An `IPAddressPool` read: the AddressPool's spec, before the L2Advertisements place it.
#[derive(Clone, Debug)]
pub(super) struct Pool {
    pub(super) source: Manifest,
    pub(super) name: String,
    /// For `ipAddressPoolSelectors`.
    pub(super) labels: BTreeMap<String, String>,
    pub(super) spec: AddressPoolSpec,
    /// The addresses, for finding the pool of a Service's address.
    pub(super) spans: Vec<Span>,
}

/// The spec of an `IPAddressPool`, warning about what does not translate.
pub(super) fn read(m: Manifest, warnings: &mut Warnings) -> Result<Pool, ImportError> {
    if m.name().is_empty() {
        return Err(m.error(&["metadata"], "no metadata.name"));
    }
    m.warn_unknown_fields(
        warnings,
        &["spec"],
        &[
            "addresses",
            "autoAssign",
            "avoidBuggyIPs",
            "serviceAllocation",
        ],
        "MetalLB",
    );
    let (addresses, spans) = addresses(&m, warnings)?;
    let (namespaces, namespace_selector) = allocation(&m, warnings)?;
    let labels = m
        .typed_at::<BTreeMap<String, String>>(&["metadata", "labels"])?
        .unwrap_or_default();
    let spec = AddressPoolSpec {
        addresses,
        namespaces,
        namespace_selector,
        node_selector: None,
        interfaces: None,
        allowed_tolerations: None,
        auto_assign: m.bool_at(&["spec", "autoAssign"], true)?,
        avoid_buggy_ips: m.bool_at(&["spec", "avoidBuggyIPs"], false)?,
        announcement: Default::default(),
    };
    Ok(Pool {
        name: m.name().to_string(),
        labels,
        spec,
        spans,
        source: m,
    })
}

/// `spec.addresses`: CIDRs and ranges, as an AddressPool writes them.
fn addresses(
    m: &Manifest,
    warnings: &mut Warnings,
) -> Result<(Vec<AddressRange>, Vec<Span>), ImportError> {
    let texts = m.strings_at(&["spec", "addresses"])?;
    if texts.is_empty() {
        return Err(m.error(
            &["spec", "addresses"],
            "no addresses (MetalLB refuses such a pool too)",
        ));
    }
    if texts.len() > MAX_ADDRESSES {
        return Err(m.error(
            &["spec", "addresses"],
            format!(
                "{} entries: an AddressPool holds at most {MAX_ADDRESSES}; split the pool in two",
                texts.len()
            ),
        ));
    }
    let mut out: Vec<AddressRange> = Vec::new();
    let mut spans = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let i = i.to_string();
        let at = ["spec", "addresses", i.as_str()];
        let (written, span, note) = ranges::metallb(text).map_err(|e| m.error(&at, e))?;
        if let Some(note) = note {
            m.warn(warnings, &at, format!("{text}: {note}"));
        }
        if !out.iter().any(|a| a.0 == written) {
            out.push(AddressRange(written));
            spans.push(span);
        }
    }
    Ok((out, spans))
}

/// `spec.serviceAllocation`: the namespaces that may use the pool (every one when it names
/// none, as with MetalLB); its priority and Service selectors are warned.
fn allocation(
    m: &Manifest,
    warnings: &mut Warnings,
) -> Result<(Option<Vec<NamespaceName>>, Option<LabelSelector>), ImportError> {
    let at = ["spec", "serviceAllocation"];
    m.warn_unknown_fields(
        warnings,
        &at,
        &[
            "priority",
            "namespaces",
            "namespaceSelectors",
            "serviceSelectors",
        ],
        "MetalLB",
    );
    let field = |f: &'static str| [at[0], at[1], f];
    if m.get(&field("priority")).is_some() {
        m.warn(
            warnings,
            &field("priority"),
            "Buoy's pools have no priority: a Service that names no pool gets its address from \
             any pool that admits its namespace and has autoAssign; give Services that must use \
             this pool the annotation buoy.io/address-pool",
        );
    }
    if m.get(&field("serviceSelectors")).is_some() {
        m.warn(
            warnings,
            &field("serviceSelectors"),
            format!(
                "Buoy's pools admit namespaces, not Services by label: other Services of the \
                 admitted namespaces may get addresses from this pool too; to keep it to the \
                 selected Services, set autoAssign: false and give them the annotation \
                 buoy.io/address-pool: {}",
                m.name()
            ),
        );
    }
    let names = m.strings_at(&field("namespaces"))?;
    let selectors = m
        .typed_at::<Vec<LabelSelector>>(&field("namespaceSelectors"))?
        .unwrap_or_default();
    if names.is_empty() && selectors.is_empty() {
        // MetalLB: every namespace. Buoy: a pool that admits none is closed, so say every one.
        return Ok((None, Some(LabelSelector::default())));
    }
    let namespaces =
        (!names.is_empty()).then(|| names.into_iter().map(NamespaceName).collect::<Vec<_>>());
    let selector = match selectors::any_of(&selectors) {
        _ if selectors.is_empty() => None,
        AnyOf::Everything => Some(LabelSelector::default()),
        AnyOf::One(s) => Some(s),
        AnyOf::Several(all) => {
            let kept = all.first().cloned().unwrap_or_default();
            let dropped: Vec<String> = all.iter().skip(1).map(selectors::show).collect();
            m.warn(
                warnings,
                &["spec", "serviceAllocation", "namespaceSelectors", "1"],
                format!(
                    "an AddressPool has one namespaceSelector: the first, {}, is kept; \
                     namespaces matching only {} may no longer use the pool: list them in \
                     namespaces, or label them to match the first",
                    selectors::show(&kept),
                    dropped.join(" or ")
                ),
            );
            Some(kept)
        }
    };
    Ok((namespaces, selector))
}

/// The pools an advertisement selects (indexes into `pools`): those named by
/// `ipAddressPools` and those matching `ipAddressPoolSelectors`; all when it has neither.
pub(super) fn selected(
    m: &Manifest,
    pools: &[Pool],
    warnings: &mut Warnings,
) -> Result<Vec<usize>, ImportError> {
    let names = m.strings_at(&["spec", "ipAddressPools"])?;
    let selectors: Vec<LabelSelector> = m
        .typed_at(&["spec", "ipAddressPoolSelectors"])?
        .unwrap_or_default();
    if names.is_empty() && selectors.is_empty() {
        return Ok((0..pools.len()).collect());
    }
    for (i, name) in names.iter().enumerate() {
        if !pools.iter().any(|p| &p.name == name) {
            let i = i.to_string();
            m.warn(
                warnings,
                &["spec", "ipAddressPools", &i],
                format!("no IPAddressPool {name} in the input files: nothing to announce"),
            );
        }
    }
    Ok((0..pools.len())
        .filter(|&i| {
            names.contains(&pools[i].name)
                || selectors
                    .iter()
                    .any(|s| selector_matches(Some(s), &pools[i].labels))
        })
        .collect())
}
