//! From the API objects to the running pieces' configuration. Every input (cluster or files or
//! flags) goes through these functions, so they all mean the same thing.

use std::net::IpAddr;

use buoy_crds::{VipAddress, VirtualIPSpec};

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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            vrrp_instance(&vip.spec, 100, None, None),
            Err(ConfigError::MissingPassword("vrrp-auth".into()))
        );
    }
}
