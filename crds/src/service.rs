//! `type: LoadBalancer` Services that Buoy serves: the load balancer class, and the annotations
//! a Service may carry to ask for an address (the MetalLB and kube-vip equivalents are listed in
//! `docs/migration.md`).

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
