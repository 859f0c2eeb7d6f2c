//! kube-vip-cloud-provider's configuration into AddressPools: its ConfigMap (`kubevip` in
//! kube-system) gives addresses per namespace (`cidr-NAMESPACE`, `range-NAMESPACE`) and to the
//! rest (`cidr-global`, `range-global`), and the LoadBalancer Services among the input are
//! handed over to Buoy (`services`).
//!
//! As kube-vip reads it: a namespace with addresses of its own takes them from nowhere else (so
//! the global pool admits every namespace but those); `cidr-*` wins over `range-*` of the same
//! scope; an IPv4 CIDR gives its hosts, without its network and broadcast addresses;
//! `interface-*` names the interface (a namespace's, else the global one);
//! `skip-end-ips-in-cidr: "true"` avoids addresses ending in .0 and .255.

mod services;
#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, path::PathBuf};

use buoy_crds::{AddressPool, AddressPoolSpec, AddressRange, InterfaceName, NamespaceName};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::{
    diagnostics::{ImportError, Warnings},
    manifests::{self, Manifest},
    objects::{Doc, Import},
    ranges::{self, Span},
    services as handover,
};

/// The scope of the keys that apply to namespaces without keys of their own.
const GLOBAL: &str = "global";

/// kube-vip's address for "ask DHCP", which Buoy does not do.
const DHCP: &str = "0.0.0.0/32";

/// The label the API server puts on every namespace, with its name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Reads the files and translates the ConfigMap and the Services; warns about the rest.
pub(crate) fn import(paths: &[PathBuf], warnings: &mut Warnings) -> Result<Import, ImportError> {
    let mut objects = Vec::new();
    for path in paths {
        objects.extend(manifests::read_file(path)?);
    }
    translate(objects, warnings)
}

/// Translates the objects read.
fn translate(objects: Vec<Manifest>, warnings: &mut Warnings) -> Result<Import, ImportError> {
    let mut config: Option<Manifest> = None;
    let mut services = Vec::new();
    for m in objects {
        if handover::is_service(&m) {
            services.push(m);
        } else if m.api_version() == "v1" && m.kind() == "ConfigMap" && is_kube_vip_config(&m) {
            if let Some(first) = &config {
                return Err(m.error(
                    &[],
                    format!(
                        "a second kube-vip ConfigMap (the first is {} at {}): kube-vip reads one",
                        first.label(),
                        first.at
                    ),
                ));
            }
            config = Some(m);
        } else {
            m.warn(
                warnings,
                &[],
                "neither kube-vip-cloud-provider's ConfigMap nor a Service: left out",
            );
        }
    }
    let mut import = Import::default();
    let mut spans: Vec<(String, Vec<Span>)> = Vec::new();
    let mut has_interfaces = false;
    if let Some(m) = &config {
        let keys = Keys::read(m, warnings)?;
        has_interfaces = !keys.interfaces.is_empty();
        for (pool, pool_spans) in keys.pools(m, warnings)? {
            spans.push((
                pool.object.metadata.name.clone().unwrap_or_default(),
                pool_spans,
            ));
            import.address_pools.push(pool);
        }
    }
    import.services = services::translate(&services, &spans, has_interfaces, warnings)?;
    if let Some(first) = import.services.first_mut() {
        let mut comments = handover::class_note("kube-vip");
        comments.append(&mut first.comments);
        first.comments = comments;
    }
    Ok(import)
}

/// A ConfigMap with a `cidr-*` or `range-*` key: kube-vip-cloud-provider's.
fn is_kube_vip_config(m: &Manifest) -> bool {
    m.get(&["data"])
        .and_then(|d| d.as_object())
        .is_some_and(|d| {
            d.keys()
                .any(|k| k.starts_with("cidr-") || k.starts_with("range-"))
        })
}

/// An AddressPool, and its addresses (to tell whether a Service's address is in a pool).
type PoolAndSpans = (Doc<AddressPool>, Vec<Span>);

/// A namespace's name: an RFC 1123 label.
fn is_namespace_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The ConfigMap's keys, by what they say.
#[derive(Default)]
struct Keys {
    /// By scope (`global` or a namespace): the `cidr-*` or `range-*` key and value that kube-vip
    /// uses.
    addresses: BTreeMap<String, (String, String)>,
    /// By scope: the interface.
    interfaces: BTreeMap<String, String>,
    avoid_buggy_ips: bool,
}

impl Keys {
    fn read(m: &Manifest, warnings: &mut Warnings) -> Result<Keys, ImportError> {
        let data: BTreeMap<String, String> = m.typed_at(&["data"])?.unwrap_or_default();
        let mut keys = Keys::default();
        for (key, value) in &data {
            let field = ["data", key.as_str()];
            if let Some(scope) = key.strip_prefix("cidr-") {
                keys.addresses
                    .insert(scope.to_string(), (key.clone(), value.clone()));
            } else if let Some(scope) = key.strip_prefix("range-") {
                if data.contains_key(&format!("cidr-{scope}")) {
                    m.warn(
                        warnings,
                        &field,
                        format!("kube-vip uses cidr-{scope} instead: ignored, as by kube-vip"),
                    );
                } else {
                    keys.addresses
                        .insert(scope.to_string(), (key.clone(), value.clone()));
                }
            } else if let Some(scope) = key.strip_prefix("interface-") {
                keys.interfaces.insert(scope.to_string(), value.clone());
            } else if key == "skip-end-ips-in-cidr" {
                keys.avoid_buggy_ips = value == "true";
            } else if key.starts_with("allow-share-") {
                m.warn(
                    warnings,
                    &field,
                    "kube-vip shares an address among Services whose ports differ; Buoy shares \
                     one among the Services of a namespace with the same buoy.io/allow-shared-ip \
                     key (Services of the input that share an address are given one)",
                );
            } else if key == "search-order" {
                m.warn(
                    warnings,
                    &field,
                    "Buoy gives the lowest free address of a pool; no other order",
                );
            } else {
                m.warn(
                    warnings,
                    &field,
                    "not a key kube-vip-cloud-provider reads: left out",
                );
            }
        }
        for scope in keys.interfaces.keys() {
            if scope != GLOBAL && !keys.addresses.contains_key(scope) {
                let key = format!("interface-{scope}");
                m.warn(
                    warnings,
                    &["data", &key],
                    format!(
                        "namespace {scope} has no addresses of its own: it uses the global \
                         pool, whose AddressPool has one list of interfaces for every namespace"
                    ),
                );
            }
        }
        Ok(keys)
    }

    /// One AddressPool per scope with addresses, and its spans.
    fn pools(
        &self,
        m: &Manifest,
        warnings: &mut Warnings,
    ) -> Result<Vec<PoolAndSpans>, ImportError> {
        let mut out = Vec::new();
        // The global pool first, then the namespaces'.
        let scopes = self
            .addresses
            .iter()
            .filter(|(s, _)| *s == GLOBAL)
            .chain(self.addresses.iter().filter(|(s, _)| *s != GLOBAL));
        for (scope, (key, value)) in scopes {
            let field = ["data", key.as_str()];
            if !is_namespace_name(scope) {
                return Err(m.error(
                    &field,
                    format!("{scope:?} is not a namespace name (nor `global`)"),
                ));
            }
            let mut addresses: Vec<AddressRange> = Vec::new();
            let mut spans = Vec::new();
            for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                if part == DHCP {
                    m.warn(
                        warnings,
                        &field,
                        format!("{DHCP} asks kube-vip to get addresses by DHCP; Buoy does not"),
                    );
                    continue;
                }
                let read = if key.starts_with("cidr-") {
                    ranges::kube_vip_cidr(part)
                } else {
                    ranges::kube_vip_range(part)
                };
                let (written, span) = read.map_err(|e| m.error(&field, e))?;
                if !addresses.iter().any(|a| a.0 == written) {
                    addresses.push(AddressRange(written));
                    spans.push(span);
                }
            }
            if addresses.is_empty() {
                continue;
            }
            let interface = self
                .interfaces
                .get(scope)
                .or_else(|| self.interfaces.get(GLOBAL));
            let (namespaces, namespace_selector) = self.admitted(scope);
            let spec = AddressPoolSpec {
                addresses,
                namespaces,
                namespace_selector,
                node_selector: None,
                interfaces: interface.map(|i| vec![InterfaceName(i.clone())]),
                allowed_tolerations: None,
                auto_assign: true,
                avoid_buggy_ips: self.avoid_buggy_ips,
                announcement: Default::default(),
            };
            let mut object = AddressPool::new(&format!("kubevip-{scope}"), spec);
            object.metadata.namespace = None;
            let comments = vec![format!(
                "From {} ({}), key {key}.",
                m.label(),
                m.loc(&field)
            )];
            out.push((Doc { object, comments }, spans));
        }
        Ok(out)
    }

    /// The namespaces a scope's pool admits: its own; or, for the global one, every namespace
    /// but those with addresses of their own.
    fn admitted(&self, scope: &str) -> (Option<Vec<NamespaceName>>, Option<LabelSelector>) {
        if scope != GLOBAL {
            return (Some(vec![NamespaceName(scope.to_string())]), None);
        }
        let own: Vec<String> = self
            .addresses
            .keys()
            .filter(|s| *s != GLOBAL)
            .cloned()
            .collect();
        if own.is_empty() {
            return (None, Some(LabelSelector::default()));
        }
        let selector = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: NAMESPACE_NAME_LABEL.into(),
                operator: "NotIn".into(),
                values: Some(own),
            }]),
            match_labels: None,
        };
        (None, Some(selector))
    }
}
