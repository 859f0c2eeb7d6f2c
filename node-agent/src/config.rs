//! From the API objects to the running pieces' configuration. Every input (cluster or files or
//! flags) goes through these functions, so they all mean the same thing.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use buoy_crds::{UpstreamPool, VipAddress, VirtualIP, VirtualIPSpec, contract, secret_keys};
use buoy_vrrp::packet::{Version, auth_data};
use k8s_openapi::api::core::v1::Secret;

use crate::dns::Resolutions;

mod upstream_tls;
use crate::proxy::{
    active::Thresholds,
    listener::ListenerConfig,
    passive::PassivePolicy,
    pool::{ActiveCheck, BackendSpec, PoolConfig},
    route::RouteConfig,
    service::ProxyConfig,
    tls::{Certificate, TlsConfig},
};
use crate::vrrp::instance::{AnnounceConfig, InstanceConfig};
pub use upstream_tls::{PoolTls, pool_tls};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
/// Why a VirtualIP cannot be turned into a VRRP instance.
pub enum ConfigError {
    #[error("address {0:?} is not an IP address with an optional prefix length")]
    /// An address that does not parse.
    BadAddress(String),
    #[error("the VirtualIP has no virtualRouterID yet (the operator allocates one)")]
    /// No router ID allocated yet.
    NoRouterId,
    #[error("VRRP version 2 authentication needs the password from Secret {0:?}")]
    /// VRRPv2 authentication without its Secret.
    MissingPassword(String),
    #[error("the VirtualIP has no address yet (the operator allocates one from its AddressPool)")]
    /// No address allocated yet.
    NoAddresses,
}

/// nginx's default `keepalive_timeout`.
const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(75);
/// nginx's default `client_body_timeout` (HTTP) and a generous idle limit for TCP clients.
const DEFAULT_CLIENT_IDLE: Duration = Duration::from_secs(60);
const DEFAULT_TCP_IDLE: Duration = Duration::from_secs(600);
/// nginx's default `send_timeout`.
const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Client connections per listener unless `client.maxConnections` says otherwise: nginx's
/// `worker_connections` defaults to 512 and is commonly raised to 1024 (the reference config)
/// to a few thousand. A connection that has sent part of a request holds about 15 KiB here
/// (docs/benchmarks.md), so the default bounds a listener flooded with slow clients to about
/// 60 MiB; at the limit a new client takes the place of the connection that has waited longest
/// for a request, so the flood does not lock other clients out.
pub(crate) const DEFAULT_MAX_CONNECTIONS: u32 = 4096;

/// Which backend addresses a pool may reach. In a cluster, a VirtualIP's pool naming the
/// node's loopback, a link-local address (169.254.169.254 is the cloud's metadata service) or
/// one of the node's own addresses would let whoever creates it reach what only the node
/// should; such backends are refused unless the operator allows them. Standalone files are the
/// host admin's own: everything is allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendPolicy {
    /// Refuse loopback, link-local, unspecified and [`BackendPolicy::node_addresses`].
    pub refuse_node_local: bool,
    /// The node's own addresses (refused with `refuse_node_local`).
    pub node_addresses: BTreeSet<IpAddr>,
}

impl BackendPolicy {
    /// Why a backend at `ip` is refused, if it is.
    pub(crate) fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        if !self.refuse_node_local {
            return None;
        }
        let link_local = match ip {
            IpAddr::V4(a) => a.is_link_local(),
            IpAddr::V6(a) => a.is_unicast_link_local(),
        };
        if ip.is_loopback() || ip.is_unspecified() {
            Some("a loopback address of the node")
        } else if link_local {
            Some("a link-local address (169.254.0.0/16 holds cloud metadata services)")
        } else if self.node_addresses.contains(&ip) {
            Some("an address of the node itself")
        } else {
            None
        }
    }
}

/// The host names among a pool's static backends (IP literals need no lookup).
pub fn host_names(pool: &UpstreamPool) -> impl Iterator<Item = String> + '_ {
    pool.spec
        .backends
        .iter()
        .flatten()
        .filter(|b| b.address.parse::<IpAddr>().is_err())
        .map(|b| b.address.to_ascii_lowercase())
}

/// The pool as the proxy runs it. Never fails: a backend whose name does not resolve (yet), or
/// that the backend policy refuses, is left out and said in [`PoolConfig::problems`]; the pool's
/// other backends serve (and without any, its listeners answer 503 with the reason). A name
/// stands for every address it resolves to, as in nginx. Service-backed pools get their
/// backends from EndpointSlices in cluster mode (until then they have none). With a CA that
/// cannot be read ([`pool_tls`]) the pool has no backends, and says why first.
pub(crate) fn pool(
    pool: &UpstreamPool,
    resolved: &Resolutions,
    policy: &BackendPolicy,
    tls: PoolTls,
) -> PoolConfig {
    let name = contract::key_of(&pool.metadata);
    let s = &pool.spec;
    let (mut backends, mut problems) = static_backends(pool, resolved, policy);
    let active = s.health_check.active.as_ref().map(|a| ActiveCheck {
        protocol: a.protocol,
        path: a.path.clone().unwrap_or_else(|| "/".into()),
        host: a.host.clone(),
        statuses: a.expected_statuses.as_ref().map_or_else(
            || vec![(200, 399)],
            |r| r.iter().filter_map(|r| r.bounds()).collect(),
        ),
        interval: a.interval.as_std(),
        timeout: a.timeout.as_std(),
        thresholds: Thresholds {
            healthy: a.healthy_threshold,
            unhealthy: a.unhealthy_threshold,
        },
        proxy_protocol: s.proxy_protocol,
    });
    let (tls, tls_warnings) = tls;
    let tls = match tls {
        Ok(tls) => tls,
        Err(why) => {
            backends.clear();
            problems.insert(0, why);
            None
        }
    };
    problems.extend(tls_warnings);
    PoolConfig {
        name,
        backends,
        algorithm: s.load_balancing.algorithm,
        hash_key: s
            .load_balancing
            .hash_key
            .unwrap_or(buoy_crds::HashKey::ClientIp),
        hash_key_name: s.load_balancing.hash_key_name.clone(),
        retry: (&s.retry).into(),
        timeouts: (&s.timeouts).into(),
        headers: (&s.http).into(),
        active,
        proxy_protocol: s.proxy_protocol,
        tls,
        problems,
    }
}

/// The static backends of `pool`, each name for every address it resolves to, and why some
/// of the spec are not among them.
fn static_backends(
    pool: &UpstreamPool,
    resolved: &Resolutions,
    policy: &BackendPolicy,
) -> (Vec<BackendSpec>, Vec<String>) {
    let s = &pool.spec;
    let passive = &s.health_check.passive;
    let mut backends = Vec::new();
    let mut problems = Vec::new();
    for b in s.backends.iter().flatten() {
        let addresses: Vec<IpAddr> = match b.address.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => match resolved.get(&b.address.to_ascii_lowercase()) {
                Some(f) if f.value.as_ref().is_some_and(|a| !a.is_empty()) => {
                    if let Some(e) = &f.error {
                        problems.push(format!(
                            "backend {}: lookup failed ({e}); using the last addresses found",
                            b.address
                        ));
                    }
                    f.value.clone().unwrap_or_default()
                }
                Some(f) => {
                    problems.push(format!(
                        "backend {} does not resolve: {}",
                        b.address,
                        f.error.as_deref().unwrap_or("no address")
                    ));
                    continue;
                }
                None => {
                    problems.push(format!("backend {}: not resolved yet", b.address));
                    continue;
                }
            },
        };
        for ip in addresses {
            if let Some(why) = policy.refusal(ip) {
                problems.push(format!(
                    "backend {} ({ip}) refused: {why}; the operator allows such backends with --allow-node-local-backends",
                    b.address
                ));
                continue;
            }
            backends.push(BackendSpec {
                addr: SocketAddr::new(ip, b.port),
                host: b
                    .address
                    .parse::<IpAddr>()
                    .is_err()
                    .then(|| b.address.to_ascii_lowercase()),
                weight: b.weight,
                backup: b.backup,
                down: b.down,
                passive: PassivePolicy {
                    max_fails: b.max_fails.unwrap_or(passive.max_fails),
                    fail_timeout: b.fail_timeout.unwrap_or(passive.fail_timeout).as_std(),
                },
            });
        }
    }
    // Two names (or a name and a literal) for one address: one backend, as the pool's state is
    // kept per address.
    let mut seen = BTreeSet::new();
    backends.retain(|b| seen.insert(b.addr));
    (backends, problems)
}

/// The listeners of a VirtualIP on `addresses` (its addresses in effect): one per address and
/// listener.
pub(crate) fn listeners(
    vip: &VirtualIP,
    addresses: &[VipAddress],
    tls: &BTreeMap<String, (TlsConfig, Vec<String>)>,
) -> Result<Vec<ListenerConfig>, ConfigError> {
    let vip_key = contract::key_of(&vip.metadata);
    let ns = vip
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(contract::DEFAULT_NAMESPACE);
    let mut out = Vec::new();
    for address in addresses {
        let (ip, _) = parse_vip(address)?;
        for l in &vip.spec.listeners {
            let client = l.client.clone().unwrap_or_default();
            let tcp = l.protocol == buoy_crds::ListenerProtocol::TCP;
            let tls = tls.get(&l.name);
            let mut problems = l.route_conflicts();
            problems.extend(tls.iter().flat_map(|(_, p)| p.iter().cloned()));
            out.push(ListenerConfig {
                name: format!("{vip_key}/{}@{ip}", l.name),
                addr: SocketAddr::new(ip, l.port),
                protocol: l.protocol,
                pool: l
                    .upstream_pool
                    .as_ref()
                    .map(|p| contract::key(Some(ns), Some(p))),
                routes: l
                    .routes
                    .iter()
                    .map(|r| RouteConfig {
                        hosts: r.hosts.iter().map(|h| h.0.to_ascii_lowercase()).collect(),
                        paths: r
                            .paths
                            .iter()
                            .map(|p| (p.match_type, p.value.clone()))
                            .collect(),
                        pool: contract::key(Some(ns), Some(&r.upstream_pool)),
                    })
                    .collect(),
                problems,
                max_connections: client.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
                keepalive_timeout: client
                    .keepalive_timeout
                    .map_or(DEFAULT_KEEPALIVE, |d| d.as_std()),
                idle_timeout: client.idle_timeout.map_or(
                    if tcp {
                        DEFAULT_TCP_IDLE
                    } else {
                        DEFAULT_CLIENT_IDLE
                    },
                    |d| d.as_std(),
                ),
                header_timeout: client
                    .header_timeout
                    .map_or(DEFAULT_CLIENT_IDLE, |d| d.as_std()),
                send_timeout: client
                    .send_timeout
                    .map_or(DEFAULT_SEND_TIMEOUT, |d| d.as_std()),
                // nginx: large_client_header_buffers 4 8k, client_max_body_size 1m.
                max_header_bytes: client.max_request_header_bytes.unwrap_or(32 * 1024),
                max_body_bytes: client.max_request_body_bytes.unwrap_or(1024 * 1024),
                access_log: l.access_log.as_ref().map(|a| a.format),
                proxy_protocol: l.proxy_protocol,
                tls: tls.map(|(t, _)| t.clone()),
            });
        }
    }
    Ok(out)
}

/// By listener name (of the spec): its TLS, and what is wrong with its certificates.
pub type ListenerTls = BTreeMap<String, (TlsConfig, Vec<String>)>;

/// The TLS of each HTTPS listener of `vip` from the Secrets at hand (`problems`: why a wanted
/// Secret could not be read lately): each `kubernetes.io/tls` Secret read and checked
/// ([`Certificate::parse`]); one that is missing or broken is left out and said on its
/// listener, which serves with the others (with none, its handshakes fail and only it stops
/// serving). The Secrets they need go in `wants`.
pub fn listener_tls(
    vip: &VirtualIP,
    secrets: &[&Secret],
    problems_of: &BTreeMap<(String, String), String>,
    wants: &mut BTreeSet<(String, String)>,
) -> ListenerTls {
    let namespace = vip
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(contract::DEFAULT_NAMESPACE);
    let mut all = ListenerTls::new();
    for l in &vip.spec.listeners {
        let Some(tls) = &l.tls else { continue };
        let mut certificates = Vec::new();
        let mut problems = Vec::new();
        for r in &tls.certificates {
            let id = (namespace.to_string(), r.secret_name.clone());
            wants.insert(id.clone());
            let key = contract::key(Some(namespace), Some(&r.secret_name));
            let value = |k| secret_value(secrets, namespace, &r.secret_name, k);
            let parsed = match (value(secret_keys::CERTIFICATE), value(secret_keys::KEY)) {
                (Some(crt), Some(k)) => {
                    Certificate::parse(&key, &crt, &k).map_err(|e| e.to_string())
                }
                _ => Err(match problems_of.get(&id) {
                    Some(problem) => problem.clone(),
                    None if secrets
                        .iter()
                        .any(|s| s.metadata.name.as_deref() == Some(&r.secret_name)) =>
                    {
                        format!("no {} and {}", secret_keys::CERTIFICATE, secret_keys::KEY)
                    }
                    None => "not found".to_string(),
                }),
            };
            match parsed {
                Ok(c) => {
                    if let Some(problem) = problems_of.get(&id) {
                        problems.push(format!(
                            "certificate Secret {}: {problem}; the last certificate read is used",
                            r.secret_name
                        ));
                    }
                    certificates.push(c);
                }
                Err(why) => problems.push(format!(
                    "certificate Secret {}: {why}; not served",
                    r.secret_name
                )),
            }
        }
        if certificates.is_empty() {
            problems.push("no usable certificate: TLS handshakes fail".to_string());
        }
        let config = TlsConfig {
            certificates,
            min_version: tls.min_version,
            alpn: tls.alpn.clone(),
        };
        all.insert(l.name.clone(), (config, problems));
    }
    all
}

/// The value of `key` in Secret `namespace/name`, from the Secrets at hand (`data`, or
/// `stringData` as files may give it).
pub(crate) fn secret_value(
    secrets: &[&Secret],
    namespace: &str,
    name: &str,
    key: &str,
) -> Option<Vec<u8>> {
    let secret: &Secret = secrets.iter().copied().find(|s| {
        s.metadata.name.as_deref() == Some(name)
            && s.metadata
                .namespace
                .as_deref()
                .unwrap_or(contract::DEFAULT_NAMESPACE)
                == namespace
    })?;
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

/// The proxy configuration of `vips` on their own addresses, with the pools they reference,
/// static backends only (the `proxy` command and tests; names as `resolved` has them).
pub fn proxy_with(
    vips: &[&VirtualIP],
    pools: &[&UpstreamPool],
    secrets: &[&Secret],
    resolved: &Resolutions,
    policy: &BackendPolicy,
) -> Result<ProxyConfig, ConfigError> {
    let mut config = ProxyConfig {
        listeners: Vec::new(),
        pools: BTreeMap::new(),
    };
    for vip in vips {
        let tls = listener_tls(vip, secrets, &BTreeMap::new(), &mut BTreeSet::new());
        config
            .listeners
            .extend(listeners(vip, &vip.spec.addresses, &tls)?);
    }
    for p in pools {
        let tls = pool_tls(p, secrets, &BTreeMap::new(), &mut BTreeSet::new());
        let p = pool(p, resolved, policy, tls);
        if config
            .listeners
            .iter()
            .any(|l| l.pools().any(|n| n == p.name))
        {
            config.pools.insert(p.name.clone(), p);
        }
    }
    Ok(config)
}

/// [`proxy_with`] for IP literals only, every backend allowed.
pub fn proxy(vips: &[&VirtualIP], pools: &[&UpstreamPool]) -> Result<ProxyConfig, ConfigError> {
    proxy_with(
        vips,
        pools,
        &[],
        &Resolutions::new(),
        &BackendPolicy::default(),
    )
}

/// Parses `192.168.60.88` or `192.168.60.88/24`; a bare address is a host address (/32, /128),
/// as in keepalived.
pub(crate) fn parse_vip(a: &VipAddress) -> Result<(IpAddr, u8), ConfigError> {
    let bad = || ConfigError::BadAddress(a.0.clone());
    let (ip, prefix) = match a.0.split_once('/') {
        Some((ip, p)) => (ip, Some(p.parse::<u8>().map_err(|_| bad())?)),
        None => (a.0.as_str(), None),
    };
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    match prefix {
        Some(p) if p > max => Err(bad()),
        Some(p) => Ok((ip, p)),
        None => Ok((ip, max)),
    }
}

/// The VRRP instance for `spec` on `addresses` (its addresses in effect) on a node with
/// `priority`. `password` is the Secret's value when
/// the spec asks for authentication; `source` the node's `sourceAddress`, if set.
pub fn vrrp_instance(
    spec: &VirtualIPSpec,
    addresses: &[VipAddress],
    priority: u8,
    password: Option<&[u8]>,
    source: Option<IpAddr>,
) -> Result<InstanceConfig, ConfigError> {
    if addresses.is_empty() {
        return Err(ConfigError::NoAddresses);
    }
    let vrid = spec.virtual_router_id.ok_or(ConfigError::NoRouterId)?;
    let v = &spec.vrrp;
    let version = if v.version == 2 {
        Version::V2
    } else {
        Version::V3
    };
    let auth = match &v.authentication {
        Some(a) => Some(auth_data(password.ok_or_else(|| {
            ConfigError::MissingPassword(a.secret_ref.name.clone())
        })?)),
        None => None,
    };
    Ok(InstanceConfig {
        group: false,
        interface: spec.interface.clone(),
        vrid,
        version,
        priority,
        addresses: addresses.iter().map(parse_vip).collect::<Result<_, _>>()?,
        advert_interval: v.advertisement_interval.as_std(),
        adverts_per_interval: v.advertisements_per_interval,
        preempt: v.preempt,
        preempt_delay: v.preempt_delay.as_std(),
        unicast_peers: v
            .unicast_peers
            .iter()
            .flatten()
            .filter_map(|p| p.0.parse().ok())
            .collect(),
        unicast: v.unicast,
        auth,
        source_address: source,
        announce: AnnounceConfig {
            delay: v.gratuitous_arp.delay.as_std(),
            repeat: v.gratuitous_arp.repeat,
            refresh_interval: v.gratuitous_arp.refresh_interval.as_std(),
            refresh_repeat: v.gratuitous_arp.refresh_repeat,
        },
        track_interfaces: spec
            .track
            .iter()
            .flat_map(|t| t.interface.iter())
            .flat_map(|i| i.names.iter().map(move |n| (n.0.clone(), i.weight)))
            .collect(),
        track_upstreams: spec
            .track
            .as_ref()
            .and_then(|t| t.upstreams.as_ref())
            .map(|u| u.weight),
        virtual_mac: v.virtual_mac,
        handover_forward: v.connection_handover.as_std(),
        allowed_interfaces: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_on_the_node_are_refused_in_a_cluster_and_allowed_standalone() {
        let pool: UpstreamPool = serde_yaml::from_str(
            "apiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {name: p, namespace: t}\nspec:\n  backends:\n    - {address: 127.0.0.1, port: 80}\n    - {address: 169.254.169.254, port: 80}\n    - {address: 'fe80::1', port: 80}\n    - {address: 10.0.0.5, port: 80}\n    - {address: 0.0.0.0, port: 80}\n    - {address: 10.0.0.9, port: 80}\n",
        )
        .unwrap();
        let node: BTreeSet<IpAddr> = ["10.0.0.5".parse().unwrap()].into();
        let cluster = BackendPolicy {
            refuse_node_local: true,
            node_addresses: node.clone(),
        };
        let c = super::pool(&pool, &Resolutions::new(), &cluster, (Ok(None), vec![]));
        let kept: Vec<String> = c.backends.iter().map(|b| b.addr.to_string()).collect();
        assert_eq!(kept, ["10.0.0.9:80"]);
        assert_eq!(c.problems.len(), 5, "{:?}", c.problems);
        for (problem, why) in c.problems.iter().zip([
            "loopback",
            "link-local address (169.254.0.0/16",
            "link-local",
            "address of the node itself",
            "loopback",
        ]) {
            assert!(
                problem.contains(why) && problem.contains("--allow-node-local-backends"),
                "{problem}"
            );
        }
        // Standalone (and a cluster whose operator allows them): every backend serves.
        let allowed = BackendPolicy {
            refuse_node_local: false,
            node_addresses: node,
        };
        let c = super::pool(&pool, &Resolutions::new(), &allowed, (Ok(None), vec![]));
        assert_eq!((c.backends.len(), c.problems.len()), (6, 0));
    }

    #[test]
    fn seed_example_becomes_the_nginx_setup() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/seed");
        let objects = buoy_crds::manifest::load(&[dir.into()]).unwrap();
        let vips = buoy_crds::manifest::virtual_ips(&objects);
        let pools = buoy_crds::manifest::upstream_pools(&objects);
        let c = proxy(&vips, &pools).unwrap();
        assert_eq!(c.listeners.len(), 1);
        let l = &c.listeners[0];
        assert_eq!(l.addr, "192.168.60.88:80".parse().unwrap());
        assert_eq!(l.keepalive_timeout, Duration::from_secs(65));
        assert_eq!(l.max_connections, 1024);
        let p = &c.pools["default/test-web"];
        assert_eq!(p.backends.len(), 2);
        assert_eq!(
            p.backends[0].passive,
            PassivePolicy {
                max_fails: 2,
                fail_timeout: Duration::from_secs(15)
            }
        );
        assert_eq!(p.retry.attempts, 2);
        assert!(
            p.headers.preserve_host
                && p.headers.x_real_ip
                && p.headers.x_forwarded_for
                && !p.headers.x_forwarded_proto
        );
    }

    #[test]
    fn vip_prefixes_default_to_host_routes() {
        let p = |s: &str| parse_vip(&VipAddress(s.into()));
        assert_eq!(
            p("192.168.60.88"),
            Ok(("192.168.60.88".parse().unwrap(), 32))
        );
        assert_eq!(
            p("192.168.60.88/24"),
            Ok(("192.168.60.88".parse().unwrap(), 24))
        );
        assert_eq!(p("fd00::88"), Ok(("fd00::88".parse().unwrap(), 128)));
        assert_eq!(p("fd00::88/64"), Ok(("fd00::88".parse().unwrap(), 64)));
        assert!(p("192.168.60.88/33").is_err());
        assert!(p("nonsense").is_err());
    }

    #[test]
    fn seed_example_becomes_the_keepalived_instance() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/seed/virtualip.yaml"
        ))
        .unwrap();
        let vip: buoy_crds::VirtualIP = serde_yaml::from_str(&text).unwrap();
        let c = vrrp_instance(
            &vip.spec,
            &vip.spec.addresses,
            100,
            Some(b"1111"),
            Some("192.168.60.93".parse().unwrap()),
        )
        .unwrap();
        assert_eq!(c.vrid, 51);
        assert_eq!(c.version, Version::V2);
        assert_eq!(c.addresses, vec![("192.168.60.88".parse().unwrap(), 32)]);
        assert_eq!(c.advert_interval, std::time::Duration::from_secs(1));
        assert_eq!(c.auth, Some(auth_data(b"1111")));
        assert_eq!(c.interface.as_deref(), Some("eth0"));
        assert_eq!(c.announce.repeat, 5);
        assert_eq!(c.track_upstreams, Some(2));
        assert_eq!(c.handover_forward, std::time::Duration::from_secs(30));
        let mut off = vip.spec.clone();
        off.vrrp.connection_handover = buoy_crds::Duration::ZERO;
        let c = vrrp_instance(&off, &off.addresses, 100, Some(b"1111"), None).unwrap();
        assert_eq!(c.handover_forward, std::time::Duration::ZERO);
        assert_eq!(
            vrrp_instance(&vip.spec, &vip.spec.addresses, 100, None, None),
            Err(ConfigError::MissingPassword("vrrp-auth".into()))
        );
    }
}
