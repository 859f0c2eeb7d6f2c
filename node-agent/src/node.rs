//! The desired state of one node: which VirtualIPs it serves, with which VRRP settings and
//! priority, and the proxy listeners and pools behind them. Built from API objects by a pure
//! function, whatever their source (the cluster or YAML files), so both modes mean the same thing.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use buoy_crds::{UpstreamPool, VirtualIP};
use k8s_openapi::api::core::v1::Secret;
use kube::core::{Selector, SelectorExt};

use crate::{
    config::{self, ConfigError},
    proxy::service::ProxyConfig,
    vrrp::instance::InstanceConfig,
};

/// The priority of a node that no `spec.priorities` entry or operator assignment names:
/// keepalived's default. Equal priorities are broken by the higher primary address (RFC 5798).
pub const DEFAULT_PRIORITY: u8 = 100;

/// Annotation by which the operator assigns priorities when `spec.priorities` is omitted:
/// a JSON object `{"node": priority, …}`.
pub const PRIORITIES_ANNOTATION: &str = "buoy.io/priorities";

/// Annotation by which the operator marks a VirtualIP that clashes with an earlier one (same
/// address, router ID on an interface, or port): agents do not serve it.
pub const CONFLICT_ANNOTATION: &str = "buoy.io/conflict";

/// Who this node is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeIdentity {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// One VirtualIP as this node serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipPlan {
    /// `namespace/name`.
    pub key: String,
    pub instance: InstanceConfig,
    /// Names of this VIP's proxy listeners (see [`ProxyConfig::listeners`]).
    pub listeners: Vec<String>,
}

/// Everything this node should run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeConfig {
    pub vips: BTreeMap<String, VipPlan>,
    pub proxy: ProxyConfig,
}

/// A VirtualIP this node cannot serve, and why (the others are served regardless).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("VirtualIP {key}: {error}")]
pub struct PlanError {
    pub key: String,
    pub error: String,
}

fn key_of(namespace: Option<&String>, name: Option<&String>) -> String {
    format!(
        "{}/{}",
        namespace.map_or("default", String::as_str),
        name.map_or("", String::as_str)
    )
}

/// Whether `vip` selects `node` (no `nodeSelector`: every node).
pub fn selects(vip: &VirtualIP, node: &NodeIdentity) -> Result<bool, String> {
    match &vip.spec.node_selector {
        None => Ok(true),
        Some(s) => {
            let selector = Selector::try_from(s.clone()).map_err(|e| e.to_string())?;
            Ok(selector.matches(&node.labels))
        }
    }
}

/// This node's priority and advert source address for `vip`.
pub fn priority_of(vip: &VirtualIP, node: &str) -> (u8, Option<IpAddr>) {
    if let Some(p) = vip
        .spec
        .priorities
        .iter()
        .flatten()
        .find(|p| p.node == node)
    {
        let source = p.source_address.as_ref().and_then(|a| a.0.parse().ok());
        return (p.priority, source);
    }
    let assigned = vip
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PRIORITIES_ANNOTATION))
        .and_then(|v| serde_json::from_str::<BTreeMap<String, u8>>(v).ok())
        .and_then(|m| m.get(node).copied())
        .filter(|p| (1..=254).contains(p));
    (assigned.unwrap_or(DEFAULT_PRIORITY), None)
}

/// The password a VRRPv2 VirtualIP refers to, from the Secrets at hand.
fn password<'a>(vip: &VirtualIP, secrets: &'a [&Secret]) -> Option<Vec<u8>> {
    let auth = vip.spec.vrrp.authentication.as_ref()?;
    let namespace = vip.metadata.namespace.as_deref().unwrap_or("default");
    let secret: &'a Secret = secrets.iter().copied().find(|s| {
        s.metadata.name.as_deref() == Some(auth.secret_ref.name.as_str())
            && s.metadata.namespace.as_deref().unwrap_or("default") == namespace
    })?;
    let key = &auth.secret_ref.key;
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|s| s.clone().into_bytes())
        })
}

/// The desired state of `node` given every VirtualIP, UpstreamPool and Secret it can see.
/// A VirtualIP that cannot be served (no router ID yet, a missing password, a bad address) is
/// left out and reported; it never stops the others.
pub fn plan(
    node: &NodeIdentity,
    vips: &[&VirtualIP],
    pools: &[&UpstreamPool],
    secrets: &[&Secret],
) -> (NodeConfig, Vec<PlanError>) {
    let mut out = NodeConfig::default();
    let mut errors = Vec::new();
    let mut served: Vec<&VirtualIP> = Vec::new();
    for vip in vips {
        let key = key_of(vip.metadata.namespace.as_ref(), vip.metadata.name.as_ref());
        let fail = |error: String| PlanError {
            key: key.clone(),
            error,
        };
        match selects(vip, node) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                errors.push(fail(format!("nodeSelector: {e}")));
                continue;
            }
        }
        let conflicted = vip
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(CONFLICT_ANNOTATION));
        if vip.metadata.deletion_timestamp.is_some() || conflicted {
            continue;
        }
        let (priority, source) = priority_of(vip, &node.name);
        let mut spec = vip.spec.clone();
        // The operator's allocation, when the spec leaves the router ID out.
        if spec.virtual_router_id.is_none() {
            spec.virtual_router_id = vip.status.as_ref().and_then(|s| s.virtual_router_id);
        }
        let secret = password(vip, secrets);
        let instance = match config::vrrp_instance(&spec, priority, secret.as_deref(), source) {
            Ok(i) => i,
            Err(e) => {
                errors.push(fail(e.to_string()));
                continue;
            }
        };
        let listeners = match config::listeners(vip) {
            Ok(l) => l,
            Err(e) => {
                errors.push(fail(e.to_string()));
                continue;
            }
        };
        out.vips.insert(
            key.clone(),
            VipPlan {
                key,
                instance,
                listeners: listeners.iter().map(|l| l.name.clone()).collect(),
            },
        );
        served.push(vip);
    }
    // Two VirtualIPs with one router ID on one interface cannot both run here.
    let mut seen: BTreeMap<(Option<String>, u8, bool), String> = BTreeMap::new();
    let mut dropped = BTreeSet::new();
    for (key, plan) in &out.vips {
        let id = (
            plan.instance.interface.clone(),
            plan.instance.vrid,
            plan.instance
                .addresses
                .first()
                .is_some_and(|a| a.0.is_ipv6()),
        );
        if let Some(first) = seen.get(&id) {
            errors.push(PlanError {
                key: key.clone(),
                error: format!(
                    "virtualRouterID {} is already used by VirtualIP {first} on this node",
                    plan.instance.vrid
                ),
            });
            dropped.insert(key.clone());
        } else {
            seen.insert(id, key.clone());
        }
    }
    out.vips.retain(|k, _| !dropped.contains(k));
    served.retain(|v| {
        !dropped.contains(&key_of(
            v.metadata.namespace.as_ref(),
            v.metadata.name.as_ref(),
        ))
    });
    match config::proxy(&served, pools) {
        Ok(p) => out.proxy = p,
        Err(e) => errors.push(proxy_error(e)),
    }
    (out, errors)
}

fn proxy_error(e: ConfigError) -> PlanError {
    PlanError {
        key: "(pools)".into(),
        error: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(yaml: &str) -> Vec<buoy_crds::manifest::Located> {
        buoy_crds::manifest::parse(std::path::Path::new("test.yaml"), yaml).unwrap()
    }

    const TWO: &str = r#"
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {name: a, namespace: default}
spec:
  addresses: [10.0.0.10]
  interface: eth0
  virtualRouterID: 10
  priorities: [{node: n1, priority: 150, sourceAddress: 10.0.0.1}]
  listeners: [{name: web, port: 80, protocol: HTTP, upstreamPool: p}]
---
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata:
  name: b
  namespace: default
  annotations: {buoy.io/priorities: '{"n1": 77}'}
spec:
  addresses: [10.0.0.11]
  interface: eth0
  virtualRouterID: 11
  nodeSelector: {matchLabels: {role: lb}}
---
apiVersion: buoy.io/v1alpha1
kind: UpstreamPool
metadata: {name: p, namespace: default}
spec:
  backends: [{address: 10.0.1.1, port: 80}]
"#;

    fn node(name: &str, labels: &[(&str, &str)]) -> NodeIdentity {
        NodeIdentity {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn node_selector_priorities_and_listeners() {
        let o = objects(TWO);
        let vips = buoy_crds::manifest::virtual_ips(&o);
        let pools = buoy_crds::manifest::upstream_pools(&o);
        let (c, errors) = plan(&node("n1", &[]), &vips, &pools, &[]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(c.vips.keys().collect::<Vec<_>>(), ["default/a"]);
        let a = &c.vips["default/a"];
        assert_eq!(a.instance.priority, 150);
        assert_eq!(a.instance.source_address, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(a.listeners.len(), 1);
        assert_eq!(c.proxy.listeners.len(), 1);
        assert!(c.proxy.pools.contains_key("default/p"));

        let (c, _) = plan(&node("n1", &[("role", "lb")]), &vips, &pools, &[]);
        assert_eq!(c.vips.len(), 2);
        // The operator's assignment, by annotation.
        assert_eq!(c.vips["default/b"].instance.priority, 77);
        let (c, _) = plan(&node("n2", &[("role", "lb")]), &vips, &pools, &[]);
        assert_eq!(c.vips["default/a"].instance.priority, DEFAULT_PRIORITY);
        assert_eq!(c.vips["default/b"].instance.priority, DEFAULT_PRIORITY);
    }

    #[test]
    fn an_unservable_vip_does_not_stop_the_others() {
        let yaml = TWO.replace("virtualRouterID: 11\n", "virtualRouterID: 10\n");
        let o = objects(&yaml);
        let vips = buoy_crds::manifest::virtual_ips(&o);
        let pools = buoy_crds::manifest::upstream_pools(&o);
        let (c, errors) = plan(&node("n1", &[("role", "lb")]), &vips, &pools, &[]);
        assert_eq!(c.vips.keys().collect::<Vec<_>>(), ["default/a"]);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .to_string()
                .contains("already used by VirtualIP default/a")
        );

        // No router ID and no allocation yet.
        let yaml = TWO.replace("  virtualRouterID: 11\n", "");
        let o = objects(&yaml);
        let vips = buoy_crds::manifest::virtual_ips(&o);
        let (c, errors) = plan(&node("n1", &[("role", "lb")]), &vips, &pools, &[]);
        assert_eq!(c.vips.len(), 1);
        assert!(errors[0].error.contains("virtualRouterID"), "{errors:?}");
    }

    #[test]
    fn seed_password_comes_from_its_secret() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/seed");
        let o = buoy_crds::manifest::load(&[dir.into()]).unwrap();
        let vips = buoy_crds::manifest::virtual_ips(&o);
        let pools = buoy_crds::manifest::upstream_pools(&o);
        let secrets = buoy_crds::manifest::secrets(&o);
        let (c, errors) = plan(&node("lb2", &[]), &vips, &pools, &secrets);
        assert!(errors.is_empty(), "{errors:?}");
        let i = &c.vips["default/test-web"].instance;
        assert_eq!(i.priority, 99);
        assert_eq!(i.auth, Some(crate::vrrp::packet::auth_data(b"1111")));
        let (_, errors) = plan(&node("lb2", &[]), &vips, &pools, &[]);
        assert!(errors[0].error.contains("vrrp-auth"), "{errors:?}");
    }
}
