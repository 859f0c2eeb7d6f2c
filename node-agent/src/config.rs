//! From the API objects to the running pieces' configuration. Every input (cluster or files or
//! flags) goes through these functions, so they all mean the same thing.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr, ToSocketAddrs},
    time::Duration,
};

use buoy_crds::{UpstreamPool, VipAddress, VirtualIP, VirtualIPSpec};

use crate::proxy::{
    active::Thresholds,
    listener::ListenerConfig,
    passive::PassivePolicy,
    pool::{ActiveCheck, BackendSpec, PoolConfig},
    service::ProxyConfig,
};
use crate::vrrp::{
    instance::{AnnounceConfig, InstanceConfig},
    packet::{Version, auth_data},
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("address {0:?} is not an IP address with an optional prefix length")]
    BadAddress(String),
    #[error("the VirtualIP has no virtualRouterID yet (the operator allocates one)")]
    NoRouterId,
    #[error("VRRP version 2 authentication needs the password from Secret {0:?}")]
    MissingPassword(String),
    #[error("backend {0:?} of pool {1} does not resolve to an address")]
    Unresolvable(String, String),
}

/// nginx's default `keepalive_timeout`.
const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(75);
/// nginx's default `client_body_timeout` (HTTP) and a generous idle limit for TCP clients.
const DEFAULT_CLIENT_IDLE: Duration = Duration::from_secs(60);
const DEFAULT_TCP_IDLE: Duration = Duration::from_secs(600);

fn key(namespace: Option<&String>, name: Option<&String>) -> String {
    format!(
        "{}/{}",
        namespace.map_or("default", String::as_str),
        name.map_or("", String::as_str)
    )
}

/// The pool as the proxy runs it. Static backends only: a Service-backed pool gets its backends
/// from EndpointSlices in cluster mode (until then it has none and answers 503).
pub fn pool(pool: &UpstreamPool) -> Result<PoolConfig, ConfigError> {
    let name = key(
        pool.metadata.namespace.as_ref(),
        pool.metadata.name.as_ref(),
    );
    let s = &pool.spec;
    let passive = &s.health_check.passive;
    let mut backends = Vec::new();
    for b in s.backends.iter().flatten() {
        // Names are resolved when the configuration is loaded, as nginx does for `server`.
        let addr = (b.address.as_str(), b.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| ConfigError::Unresolvable(b.address.clone(), name.clone()))?;
        backends.push(BackendSpec {
            addr,
            weight: b.weight,
            backup: b.backup,
            down: b.down,
            passive: PassivePolicy {
                max_fails: b.max_fails.unwrap_or(passive.max_fails),
                fail_timeout: b.fail_timeout.unwrap_or(passive.fail_timeout).as_std(),
            },
        });
    }
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
    });
    Ok(PoolConfig {
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
    })
}

/// The listeners of a VirtualIP: one per address and listener.
pub fn listeners(vip: &VirtualIP) -> Result<Vec<ListenerConfig>, ConfigError> {
    let ns = vip.metadata.namespace.as_deref().unwrap_or("default");
    let name = vip.metadata.name.as_deref().unwrap_or("");
    let mut out = Vec::new();
    for address in &vip.spec.addresses {
        let (ip, _) = parse_vip(address)?;
        for l in &vip.spec.listeners {
            let client = l.client.clone().unwrap_or_default();
            let tcp = l.protocol == buoy_crds::ListenerProtocol::TCP;
            out.push(ListenerConfig {
                name: format!("{ns}/{name}/{}@{ip}", l.name),
                addr: SocketAddr::new(ip, l.port),
                protocol: l.protocol,
                pool: format!("{ns}/{}", l.upstream_pool),
                max_connections: client.max_connections,
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
                // nginx: large_client_header_buffers 4 8k, client_max_body_size 1m.
                max_header_bytes: client.max_request_header_bytes.unwrap_or(32 * 1024),
                max_body_bytes: client.max_request_body_bytes.unwrap_or(1024 * 1024),
            });
        }
    }
    Ok(out)
}

/// The whole proxy configuration of a node serving `vips`, with the pools they reference.
pub fn proxy(vips: &[&VirtualIP], pools: &[&UpstreamPool]) -> Result<ProxyConfig, ConfigError> {
    let mut config = ProxyConfig {
        listeners: Vec::new(),
        pools: BTreeMap::new(),
    };
    for vip in vips {
        config.listeners.extend(listeners(vip)?);
    }
    for p in pools {
        let p = pool(p)?;
        if config.listeners.iter().any(|l| l.pool == p.name) {
            config.pools.insert(p.name.clone(), p);
        }
    }
    Ok(config)
}

/// Parses `192.168.60.88` or `192.168.60.88/24`; a bare address is a host address (/32, /128),
/// as in keepalived.
pub fn parse_vip(a: &VipAddress) -> Result<(IpAddr, u8), ConfigError> {
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

/// The VRRP instance for `spec` on a node with `priority`. `password` is the Secret's value when
/// the spec asks for authentication; `source` the node's `sourceAddress`, if set.
pub fn vrrp_instance(
    spec: &VirtualIPSpec,
    priority: u8,
    password: Option<&[u8]>,
    source: Option<IpAddr>,
) -> Result<InstanceConfig, ConfigError> {
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
        interface: spec.interface.clone(),
        vrid,
        version,
        priority,
        addresses: spec
            .addresses
            .iter()
            .map(parse_vip)
            .collect::<Result<_, _>>()?,
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(l.max_connections, Some(1024));
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
        let c = vrrp_instance(&off, 100, Some(b"1111"), None).unwrap();
        assert_eq!(c.handover_forward, std::time::Duration::ZERO);
        assert_eq!(
            vrrp_instance(&vip.spec, 100, None, None),
            Err(ConfigError::MissingPassword("vrrp-auth".into()))
        );
    }
}
