//! What one VRRP instance is configured with, and what the core's pieces are built from it:
//! the state machine's configuration and the receive filter.

use std::{collections::BTreeSet, net::IpAddr, time::Duration};

use crate::probe::HttpGetTrack;
use buoy_vrrp::{
    announce::AnnounceConfig,
    machine::Config as MachineConfig,
    packet::{AUTH_LEN, Version},
    receive::Filter,
};

/// Everything one VRRP instance needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceConfig {
    /// Interface name; `None`: the one whose subnet holds the first address.
    pub interface: Option<String>,
    /// Virtual router ID.
    pub vrid: u8,
    /// VRRP version (3, or 2 for old peers).
    pub version: Version,
    /// Priority before tracking.
    pub priority: u8,
    /// Virtual addresses with their prefix lengths.
    pub addresses: Vec<(IpAddr, u8)>,
    /// Advertisement interval.
    pub advert_interval: Duration,
    /// Adverts sent per interval while master (the machine's `adverts_per_interval`).
    pub adverts_per_interval: u8,
    /// Whether a higher priority takes over from a running master.
    pub preempt: bool,
    /// How long a higher priority waits before it preempts.
    pub preempt_delay: Duration,
    /// Unicast peers; empty means multicast.
    pub unicast_peers: Vec<IpAddr>,
    /// Send adverts to `unicast_peers` instead of the multicast group.
    pub unicast: bool,
    /// VRRPv2 password (first 8 bytes used).
    pub auth: Option<[u8; AUTH_LEN]>,
    /// Source address of adverts; default: the interface's primary address.
    pub source_address: Option<IpAddr>,
    /// Gratuitous ARP / unsolicited NA on becoming master.
    pub announce: AnnounceConfig,
    /// Other interfaces to track, with keepalived weights (`track_interface`).
    pub track_interfaces: Vec<(String, i32)>,
    /// Weight of the "this node has healthy upstreams" condition (`track.upstreams`).
    pub track_upstreams: Option<i32>,
    /// The HTTP GET probe whose condition moves the priority (`track.httpGet`); the agent runs
    /// it and reports it with the data path.
    pub track_http_get: Option<HttpGetTrack>,
    /// Hold the VIP on a macvlan with the VRRP virtual MAC (keepalived's `use_vmac`; adverts still
    /// leave from the parent interface, as with keepalived's `vmac_xmit_base`).
    pub virtual_mac: bool,
    /// After taking the VIP from a live master, how long packets of connections we do not know
    /// are forwarded to it (`net::handover`); zero: never.
    pub handover_forward: Duration,
    /// Interfaces the addresses may go on (the AddressPool's `interfaces`); empty: any.
    pub allowed_interfaces: Vec<String>,
    /// A VRRP group's instance: its addresses change in place as members come and go, and
    /// its routers on other nodes may list a few others meanwhile (see [`Filter::group`]).
    pub group: bool,
}

/// Default [`InstanceConfig::handover_forward`], the API's `vrrp.connectionHandover` default:
/// long enough for a draining agent's connections (its default drain timeout is 10 s) and for
/// clients' idle keep-alive connections to the old master to send their next request.
pub(crate) const HANDOVER_FORWARD: Duration = Duration::from_secs(30);

impl Default for InstanceConfig {
    /// The API's defaults: VRRPv3, 1 s adverts, preemption, multicast, no tracking.
    fn default() -> Self {
        InstanceConfig {
            interface: None,
            vrid: 1,
            version: Version::V3,
            priority: 100,
            addresses: Vec::new(),
            advert_interval: Duration::from_secs(1),
            adverts_per_interval: 2,
            preempt: true,
            preempt_delay: Duration::ZERO,
            unicast_peers: Vec::new(),
            unicast: false,
            auth: None,
            source_address: None,
            announce: AnnounceConfig::default(),
            track_interfaces: Vec::new(),
            track_upstreams: None,
            track_http_get: None,
            virtual_mac: false,
            handover_forward: HANDOVER_FORWARD,
            allowed_interfaces: Vec::new(),
            group: false,
        }
    }
}

impl InstanceConfig {
    /// Whether `other` is this instance with other addresses only: a group's instance takes
    /// that in place (see [`super::Controls::addresses`]), anything else restarts it.
    pub fn same_but_addresses(&self, other: &InstanceConfig) -> bool {
        self.group
            && other.group
            && InstanceConfig {
                addresses: Vec::new(),
                ..self.clone()
            } == InstanceConfig {
                addresses: Vec::new(),
                ..other.clone()
            }
    }

    /// The virtual addresses, without their prefix lengths.
    pub(crate) fn vips(&self) -> Vec<IpAddr> {
        self.addresses.iter().map(|(a, _)| *a).collect()
    }

    /// The state machine's configuration, advertising from `source`; `handover`: whether
    /// connections can be forwarded after a takeover at all.
    pub(super) fn machine(&self, source: IpAddr, handover: bool) -> MachineConfig {
        MachineConfig {
            version: self.version,
            priority: self.priority,
            advert_interval: self.advert_interval,
            adverts_per_interval: self.adverts_per_interval,
            preempt: self.preempt,
            preempt_delay: self.preempt_delay,
            primary_address: source,
            handover_forward: if handover {
                self.handover_forward
            } else {
                Duration::ZERO
            },
        }
    }

    /// What adverts of this instance's router look like, on a node with the addresses `own`.
    pub(super) fn filter(&self, own: Vec<IpAddr>) -> Filter {
        Filter {
            vrid: self.vrid,
            version: self.version,
            auth: self.auth,
            addresses: self.vips().into_iter().collect::<BTreeSet<_>>(),
            peers: (self.unicast && !self.unicast_peers.is_empty())
                .then(|| self.unicast_peers.clone()),
            own,
            group: self.group,
            known: BTreeSet::new(),
        }
    }
}

/// The VRRP virtual MAC of a router (RFC 5798 section 7.3).
pub(crate) fn virtual_mac(vrid: u8, ipv6: bool) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, if ipv6 { 0x02 } else { 0x01 }, vrid]
}

#[cfg(test)]
mod tests {
    use buoy_vrrp::packet::{self, Advertisement, DropReason, MULTICAST_V4};

    use super::*;
    use crate::vrrp::socket::Incoming;

    fn config() -> InstanceConfig {
        InstanceConfig {
            interface: Some("eth0".into()),
            vrid: 51,
            version: Version::V2,
            addresses: vec![("192.168.60.88".parse().unwrap(), 32)],
            auth: Some(packet::auth_data(b"1111")),
            ..InstanceConfig::default()
        }
    }

    fn incoming(advert: &Advertisement, src: &str) -> Incoming {
        let src: IpAddr = src.parse().unwrap();
        let dst = IpAddr::V4(MULTICAST_V4);
        Incoming {
            src,
            dst,
            ttl: 255,
            payload: packet::encode(advert, src, dst),
        }
    }

    fn advert() -> Advertisement {
        Advertisement {
            version: Version::V2,
            vrid: 51,
            priority: 99,
            interval_cs: 100,
            auth: Some(packet::auth_data(b"1111")),
            addresses: vec!["192.168.60.88".parse().unwrap()],
        }
    }

    /// What the instance checks a received packet with.
    fn check_advert(
        config: &InstanceConfig,
        own: &[IpAddr],
        incoming: &Incoming,
    ) -> Result<Option<Advertisement>, DropReason> {
        config.filter(own.to_vec()).check(
            incoming.src,
            incoming.dst,
            incoming.ttl,
            &incoming.payload,
        )
    }

    #[test]
    fn receive_checks() {
        let c = config();
        let own = vec!["192.168.60.93".parse().unwrap()];
        assert!(
            check_advert(&c, &own, &incoming(&advert(), "192.168.60.94"))
                .unwrap()
                .is_some()
        );
        assert_eq!(
            check_advert(&c, &own, &incoming(&advert(), "192.168.60.93")),
            Err(DropReason::OwnAddress)
        );
        let mut low_ttl = incoming(&advert(), "192.168.60.94");
        low_ttl.ttl = 64;
        assert_eq!(check_advert(&c, &own, &low_ttl), Err(DropReason::BadTtl));
        let other_vrid = Advertisement {
            vrid: 52,
            ..advert()
        };
        assert_eq!(
            check_advert(&c, &own, &incoming(&other_vrid, "192.168.60.94")),
            Ok(None)
        );
        let bad_pass = Advertisement {
            auth: Some(packet::auth_data(b"2222")),
            ..advert()
        };
        assert_eq!(
            check_advert(&c, &own, &incoming(&bad_pass, "192.168.60.94")),
            Err(DropReason::AuthMismatch)
        );
        let other_vips = Advertisement {
            addresses: vec!["192.168.60.89".parse().unwrap()],
            ..advert()
        };
        assert_eq!(
            check_advert(&c, &own, &incoming(&other_vips, "192.168.60.94")),
            Err(DropReason::AddressMismatch)
        );
        let v3 = Advertisement {
            version: Version::V3,
            auth: None,
            ..advert()
        };
        assert_eq!(
            check_advert(&c, &own, &incoming(&v3, "192.168.60.94")),
            Err(DropReason::WrongVersion)
        );
        let mut unicast = config();
        unicast.unicast = true;
        unicast.unicast_peers = vec!["192.168.60.94".parse().unwrap()];
        assert_eq!(
            check_advert(&unicast, &own, &incoming(&advert(), "192.168.60.95")),
            Err(DropReason::UnknownPeer)
        );
        assert!(
            check_advert(&unicast, &own, &incoming(&advert(), "192.168.60.94"))
                .unwrap()
                .is_some()
        );
    }
}
