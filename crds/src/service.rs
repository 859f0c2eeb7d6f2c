//! `type: LoadBalancer` Services that Buoy serves: the load balancer class, and the annotations
//! a Service may carry to ask for an address (the MetalLB and kube-vip equivalents are listed in
//! `docs/migration.md`); and how a Service's Buoy annotations are read and checked, the same for
//! the operator and for `buoy-agent check`.

use std::{net::IpAddr, sync::LazyLock};

use k8s_openapi::api::core::v1::Service;
use regex::Regex;

use crate::{FieldError, names::DNS_SUBDOMAIN_PATTERN};

/// The `spec.loadBalancerClass` of Services whose address Buoy gives (and announces by VRRP).
pub const LOAD_BALANCER_CLASS: &str = "buoy.io/vrrp";

/// Annotation asking for specific addresses: comma-separated, at most one per family
/// (MetalLB's `metallb.io/loadBalancerIPs`).
pub const LOAD_BALANCER_IPS_ANNOTATION: &str = "buoy.io/load-balancer-ips";

/// Annotation naming the AddressPool to allocate from (MetalLB's `metallb.io/address-pool`).
pub const ADDRESS_POOL_ANNOTATION: &str = "buoy.io/address-pool";

/// Annotation with a sharing key: Services of one namespace with the same key share one address
/// when their ports do not clash (MetalLB's `metallb.io/allow-shared-ip`).
pub const ALLOW_SHARED_IP_ANNOTATION: &str = "buoy.io/allow-shared-ip";

/// Annotation on a Service's VirtualIP listing the Services (names, comma-separated) whose
/// address it carries.
pub const SERVICES_ANNOTATION: &str = "buoy.io/services";

/// Label on a Service's VirtualIP: the name of the (first) Service it carries, for
/// `kubectl get vip -l`.
pub const SERVICE_NAME_LABEL: &str = "buoy.io/service-name";

/// Node label that keeps load balancer addresses off a node (as for every Kubernetes load
/// balancer).
pub const EXCLUDE_NODE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// The names of the Services that own an object (its owner references of kind `v1/Service`):
/// a VirtualIP the operator keeps for them.
pub fn owners(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Vec<&str> {
    meta.owner_references
        .iter()
        .flatten()
        .filter(|o| o.api_version == "v1" && o.kind == "Service")
        .map(|o| o.name.as_str())
        .collect()
}

/// Annotation on a Service's VirtualIP whose Services have `externalTrafficPolicy: Local`: the
/// Services (names, comma-separated, in the VirtualIP's namespace) of which a node needs a ready
/// local endpoint to be master.
pub const LOCAL_ENDPOINTS_ANNOTATION: &str = "buoy.io/local-endpoints-of";

/// The Services of [`LOCAL_ENDPOINTS_ANNOTATION`]; empty when there is no such requirement.
pub fn local_endpoints_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Vec<&str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(LOCAL_ENDPOINTS_ANNOTATION))
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// The addresses of a [`LOAD_BALANCER_IPS_ANNOTATION`] value: comma-separated IPv4 and IPv6
/// addresses (blanks around them allowed), at most one per family.
pub fn parse_load_balancer_ips(value: &str) -> Result<Vec<IpAddr>, String> {
    let mut ips: Vec<IpAddr> = Vec::new();
    for part in value.split(',') {
        let part = part.trim();
        let ip: IpAddr = part
            .parse()
            .map_err(|_| format!("{part:?} is not an IPv4 or IPv6 address"))?;
        if let Some(other) = ips.iter().find(|o| o.is_ipv6() == ip.is_ipv6()) {
            return Err(format!(
                "{other} and {ip} are of one family: at most one address per family"
            ));
        }
        ips.push(ip);
    }
    Ok(ips)
}

static POOL_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(DNS_SUBDOMAIN_PATTERN)
        .unwrap_or_else(|e| panic!("the DNS subdomain pattern compiles: {e}"))
});

/// The errors of a Service's Buoy annotations (none when it carries none): requested addresses
/// that do not parse, a pool name that cannot name an AddressPool, an empty sharing key.
pub fn validate_service(service: &Service) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(annotations) = &service.metadata.annotations else {
        return errors;
    };
    let at = |key: &str| format!("metadata.annotations[{key}]");
    if let Some(v) = annotations.get(LOAD_BALANCER_IPS_ANNOTATION)
        && let Err(e) = parse_load_balancer_ips(v)
    {
        errors.push(FieldError::new(&at(LOAD_BALANCER_IPS_ANNOTATION), e));
    }
    if let Some(v) = annotations.get(ADDRESS_POOL_ANNOTATION)
        && (v.len() > 253 || !POOL_NAME.is_match(v))
    {
        errors.push(FieldError::new(
            &at(ADDRESS_POOL_ANNOTATION),
            format!("{v:?} is not an AddressPool's name (a lower case RFC 1123 subdomain)"),
        ));
    }
    if annotations
        .get(ALLOW_SHARED_IP_ANNOTATION)
        .is_some_and(|v| v.trim().is_empty())
    {
        errors.push(FieldError::new(
            &at(ALLOW_SHARED_IP_ANNOTATION),
            "the sharing key must not be empty".to_string(),
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_balancer_ips_one_per_family() {
        assert_eq!(
            parse_load_balancer_ips("192.168.10.5").unwrap(),
            ["192.168.10.5".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            parse_load_balancer_ips("192.168.10.5, fd00::5")
                .unwrap()
                .len(),
            2
        );
        assert!(
            parse_load_balancer_ips("192.168.10.5,192.168.10.6")
                .unwrap_err()
                .contains("one address per family")
        );
        assert!(
            parse_load_balancer_ips("192.168.10.0/24")
                .unwrap_err()
                .contains("not an IPv4 or IPv6 address")
        );
        assert!(parse_load_balancer_ips("").is_err());
    }

    #[test]
    fn a_services_buoy_annotations_are_checked() {
        let service = |annotations: &[(&str, &str)]| -> Service {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "web", "annotations": annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<std::collections::BTreeMap<_, _>>()},
            }))
            .unwrap()
        };
        assert!(validate_service(&service(&[])).is_empty());
        assert!(
            validate_service(&service(&[
                (LOAD_BALANCER_IPS_ANNOTATION, "192.168.10.5,fd00::5"),
                (ADDRESS_POOL_ANNOTATION, "production"),
                (ALLOW_SHARED_IP_ANNOTATION, "dns"),
                ("example.com/other", ""),
            ]))
            .is_empty()
        );
        let errors = validate_service(&service(&[
            (LOAD_BALANCER_IPS_ANNOTATION, "192.168.10.300"),
            (ADDRESS_POOL_ANNOTATION, "Production"),
            (ALLOW_SHARED_IP_ANNOTATION, " "),
        ]));
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "metadata.annotations[buoy.io/load-balancer-ips]",
                "metadata.annotations[buoy.io/address-pool]",
                "metadata.annotations[buoy.io/allow-shared-ip]"
            ]
        );
    }
}
