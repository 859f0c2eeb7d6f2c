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
