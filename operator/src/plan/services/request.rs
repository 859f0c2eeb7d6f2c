//! What a `type: LoadBalancer` Service asks of Buoy, read from its spec and annotations, pure:
//! whether it is Buoy's (its class), the address families, the addresses it asks for, the pool,
//! the sharing key and the ports that sharing must keep apart.

use std::collections::BTreeSet;
use std::net::IpAddr;

use buoy_crds::{contract, service};
use k8s_openapi::api::core::v1::Service;

/// One Service's request.
#[derive(Clone, Debug)]
pub(crate) struct Request<'a> {
    pub(crate) service: &'a Service,
    pub(crate) namespace: &'a str,
    pub(crate) name: &'a str,
    /// `namespace/name`.
    pub(crate) key: String,
    /// The families to serve, in order of preference (`true`: IPv6).
    pub(crate) families: Vec<bool>,
    /// Every family is required (`RequireDualStack`); otherwise only the first.
    pub(crate) require_all: bool,
    /// Addresses asked for (at most one per family).
    pub(crate) requested: Vec<IpAddr>,
    /// The AddressPool named by the annotation.
    pub(crate) pool: Option<&'a str>,
    /// The sharing key of the annotation.
    pub(crate) sharing: Option<&'a str>,
    /// `(protocol, port)` of every port.
    pub(crate) ports: BTreeSet<(String, i32)>,
    /// `externalTrafficPolicy: Local`.
    pub(crate) local: bool,
}

impl Request<'_> {
    /// The address asked for in family `ipv6`.
    pub(crate) fn requested(&self, ipv6: bool) -> Option<IpAddr> {
        self.requested.iter().copied().find(|a| a.is_ipv6() == ipv6)
    }
}

/// Whether the Service is Buoy's: `type: LoadBalancer` and class `buoy.io/vrrp`, or no class
/// when Buoy is the default load balancer.
pub(crate) fn is_ours(svc: &Service, default_class: bool) -> bool {
    let Some(spec) = &svc.spec else { return false };
    if spec.type_.as_deref() != Some("LoadBalancer") {
        return false;
    }
    match spec.load_balancer_class.as_deref() {
        Some(c) => c == service::LOAD_BALANCER_CLASS,
        None => default_class,
    }
}

fn annotation<'a>(svc: &'a Service, name: &str) -> Option<&'a str> {
    svc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(name))
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
}

/// The Service's request, or why it cannot be read (a malformed annotation or field).
pub(crate) fn read(svc: &Service) -> Result<Request<'_>, String> {
    let namespace = svc
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(contract::DEFAULT_NAMESPACE);
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    let spec = svc.spec.clone().unwrap_or_default();
    let requested = requested(svc)?;

    let mut families: Vec<bool> = Vec::new();
    for f in spec.ip_families.iter().flatten() {
        let v6 = match f.as_str() {
            "IPv4" => false,
            "IPv6" => true,
            other => return Err(format!("spec.ipFamilies: unknown family {other:?}")),
        };
        if !families.contains(&v6) {
            families.push(v6);
        }
    }
    if families.is_empty() {
        // The API server fills ipFamilies in; without it, the family of what is asked for.
        families = requested.iter().map(IpAddr::is_ipv6).collect();
        if families.is_empty() {
            families.push(false);
        }
    }
    let policy = spec.ip_family_policy.as_deref().unwrap_or("SingleStack");
    match policy {
        "SingleStack" => families.truncate(1),
        "PreferDualStack" | "RequireDualStack" => {}
        other => return Err(format!("spec.ipFamilyPolicy: unknown policy {other:?}")),
    }
    if let Some(a) = requested.iter().find(|a| !families.contains(&a.is_ipv6())) {
        let have: Vec<&str> = families
            .iter()
            .map(|v6| if *v6 { "IPv6" } else { "IPv4" })
            .collect();
        return Err(format!(
            "{a} is asked for but the Service's families are {} (spec.ipFamilies, spec.ipFamilyPolicy)",
            have.join(", ")
        ));
    }

    let ports = spec
        .ports
        .iter()
        .flatten()
        .map(|p| (p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.port))
        .collect();
    Ok(Request {
        service: svc,
        namespace,
        name,
        key: contract::key(Some(namespace), Some(name)),
        families,
        require_all: policy == "RequireDualStack",
        requested,
        pool: annotation(svc, service::ADDRESS_POOL_ANNOTATION),
        sharing: annotation(svc, service::ALLOW_SHARED_IP_ANNOTATION),
        ports,
        local: spec.external_traffic_policy.as_deref() == Some("Local"),
    })
}

/// The addresses asked for: the annotation (comma-separated, one per family; read as
/// `buoy-agent check` reads it), else `spec.loadBalancerIP`.
fn requested(svc: &Service) -> Result<Vec<IpAddr>, String> {
    if let Some(text) = annotation(svc, service::LOAD_BALANCER_IPS_ANNOTATION) {
        return service::parse_load_balancer_ips(text)
            .map_err(|e| format!("annotation {}: {e}", service::LOAD_BALANCER_IPS_ANNOTATION));
    }
    match svc
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_ip.as_deref())
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        Some(t) => t
            .parse()
            .map(|ip| vec![ip])
            .map_err(|_| format!("spec.loadBalancerIP: {t:?} is not an IP address")),
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).expect("a Service")
    }

    #[test]
    fn only_load_balancers_of_buoys_class_are_buoys() {
        let lb = |class: Option<&str>| {
            svc(json!({"metadata": {"name": "a", "namespace": "web"},
                       "spec": {"type": "LoadBalancer", "loadBalancerClass": class}}))
        };
        assert!(is_ours(&lb(Some("buoy.io/vrrp")), false));
        assert!(!is_ours(&lb(Some("metallb.io/metallb")), true));
        assert!(!is_ours(&lb(None), false));
        assert!(is_ours(&lb(None), true));
        let cluster_ip = svc(json!({"metadata": {"name": "a"}, "spec": {"type": "ClusterIP"}}));
        assert!(!is_ours(&cluster_ip, true));
    }

    #[test]
    fn families_follow_the_policy_and_requests_their_family() {
        let r = svc(
            json!({"metadata": {"name": "a", "namespace": "web"}, "spec": {
            "type": "LoadBalancer", "ipFamilies": ["IPv6", "IPv4"],
            "ipFamilyPolicy": "RequireDualStack",
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53}]}}),
        );
        let r = read(&r).expect("valid");
        assert_eq!(r.families, vec![true, false]);
        assert!(r.require_all);
        assert_eq!(r.key, "web/a");
        assert_eq!(
            r.ports,
            BTreeSet::from([("TCP".to_string(), 53), ("UDP".to_string(), 53)])
        );
        let single = svc(json!({"metadata": {"name": "a"}, "spec": {
            "type": "LoadBalancer", "ipFamilies": ["IPv4", "IPv6"]}}));
        assert_eq!(read(&single).expect("valid").families, vec![false]);
        let v6 = svc(json!({"metadata": {"name": "a"}, "spec": {
            "type": "LoadBalancer", "loadBalancerIP": "fd00::5"}}));
        let v6 = read(&v6).expect("valid");
        assert_eq!(v6.families, vec![true]);
        assert_eq!(v6.requested(true), Some("fd00::5".parse().expect("ip")));
    }

    #[test]
    fn malformed_requests_are_clear_errors() {
        let with = |ann: &str, spec: serde_json::Value| {
            let mut s = json!({"metadata": {"name": "a",
                "annotations": {"buoy.io/load-balancer-ips": ann}}, "spec": spec});
            s["spec"]["type"] = json!("LoadBalancer");
            read(&svc(s)).map(|_| ()).expect_err("refused")
        };
        assert_eq!(
            with("10.0.0.1,bad", json!({})),
            "annotation buoy.io/load-balancer-ips: \"bad\" is not an IPv4 or IPv6 address"
        );
        assert_eq!(
            with("10.0.0.1, 10.0.0.2", json!({})),
            "annotation buoy.io/load-balancer-ips: 10.0.0.1 and 10.0.0.2 are of one family: at most one address per family"
        );
        assert!(
            with("fd00::1", json!({"ipFamilies": ["IPv4"]}))
                .starts_with("fd00::1 is asked for but the Service's families are IPv4")
        );
        assert_eq!(
            with("10.0.0.1", json!({"ipFamilyPolicy": "Sometimes"})),
            "spec.ipFamilyPolicy: unknown policy \"Sometimes\""
        );
    }

    #[test]
    fn the_annotation_wins_over_the_deprecated_field() {
        let s = svc(json!({"metadata": {"name": "a", "annotations": {
            "buoy.io/load-balancer-ips": "10.0.0.7", "buoy.io/address-pool": "pub",
            "buoy.io/allow-shared-ip": "dns"}},
            "spec": {"type": "LoadBalancer", "loadBalancerIP": "10.0.0.9",
                     "externalTrafficPolicy": "Local"}}));
        let r = read(&s).expect("valid");
        assert_eq!(r.requested, vec!["10.0.0.7".parse::<IpAddr>().expect("ip")]);
        assert_eq!(r.pool, Some("pub"));
        assert_eq!(r.sharing, Some("dns"));
        assert!(r.local);
    }
}
