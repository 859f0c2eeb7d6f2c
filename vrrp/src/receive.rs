//! Which received packets are adverts of our virtual router (RFC 5798 section 7.1, plus known
//! peers for unicast), and which tell of another router using our VRID. Sans IO: the shell
//! hands over what the socket read, and counts what this rejects by reason.

use std::{collections::BTreeSet, net::IpAddr, time::Duration};

use crate::{
    machine::Received,
    packet::{self, AUTH_LEN, Advertisement, DropReason, TTL, Version},
};

/// What adverts of our virtual router look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// Our virtual router ID.
    pub vrid: u8,
    /// Our protocol version.
    pub version: Version,
    /// VRRPv2 password (v3 has none).
    pub auth: Option<[u8; AUTH_LEN]>,
    /// The virtual addresses: a router advertising others is not ours.
    pub addresses: BTreeSet<IpAddr>,
    /// Unicast with configured peers: adverts from anyone else are refused.
    pub peers: Option<Vec<IpAddr>>,
    /// This node's own addresses: adverts from them are our own.
    pub own: Vec<IpAddr>,
    /// A VRRP group's router: its members come and go on each node a little apart, so an
    /// advert whose address list differs from ours is still our router's when it shares an
    /// address with ours or comes from a known peer ([`Filter::known`]).
    pub group: bool,
    /// The group's known peers (the other nodes of its VirtualIPs).
    pub known: BTreeSet<IpAddr>,
}

impl Filter {
    /// The advert in `payload`, if it is one of our VRID that we accept; `Ok(None)`: another
    /// VRID (not ours to judge).
    pub fn check(
        &self,
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        payload: &[u8],
    ) -> Result<Option<Advertisement>, DropReason> {
        if ttl != TTL {
            return Err(DropReason::BadTtl);
        }
        let advert = packet::decode(payload, src, dst)?;
        if advert.vrid != self.vrid {
            return Ok(None);
        }
        if advert.version != self.version {
            return Err(DropReason::WrongVersion);
        }
        if self.own.contains(&src) {
            return Err(DropReason::OwnAddress);
        }
        if self.version == Version::V2 && advert.auth != self.auth {
            return Err(DropReason::AuthMismatch);
        }
        let theirs: BTreeSet<IpAddr> = advert.addresses.iter().copied().collect();
        if self.addresses != theirs
            && !(self.group && (self.known.contains(&src) || !self.addresses.is_disjoint(&theirs)))
        {
            return Err(DropReason::AddressMismatch);
        }
        if self.peers.as_ref().is_some_and(|p| !p.contains(&src)) {
            return Err(DropReason::UnknownPeer);
        }
        Ok(Some(advert))
    }
}

/// What the state machine needs of an accepted advert from `from`.
pub fn received(from: IpAddr, advert: &Advertisement) -> Received {
    Received {
        from,
        priority: advert.priority,
        interval: Duration::from_millis(u64::from(advert.interval_cs) * 10),
    }
}

/// Whether a drop means another router uses our VRID.
pub fn is_collision(reason: DropReason) -> bool {
    matches!(
        reason,
        DropReason::AddressMismatch
            | DropReason::UnknownPeer
            | DropReason::AuthMismatch
            | DropReason::WrongVersion
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{self, MULTICAST_V4};

    fn advert(addresses: &[&str]) -> Vec<u8> {
        let a = Advertisement {
            version: Version::V3,
            vrid: 7,
            priority: 100,
            interval_cs: 100,
            auth: None,
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        };
        packet::encode(&a, peer(), IpAddr::V4(MULTICAST_V4))
    }

    fn peer() -> IpAddr {
        "10.0.0.2".parse().unwrap()
    }

    fn filter(group: bool) -> Filter {
        Filter {
            vrid: 7,
            version: Version::V3,
            auth: None,
            addresses: ["10.0.1.1", "10.0.1.2"]
                .iter()
                .map(|a| a.parse().unwrap())
                .collect(),
            peers: None,
            own: vec!["10.0.0.1".parse().unwrap()],
            group,
            known: BTreeSet::new(),
        }
    }

    fn check(f: &Filter, addresses: &[&str]) -> Result<Option<Advertisement>, DropReason> {
        let bytes = advert(addresses);
        // The encoded packet carries the IP header's payload only.
        f.check(peer(), IpAddr::V4(MULTICAST_V4), TTL, &bytes)
    }

    #[test]
    fn a_group_accepts_its_own_routers_while_members_change_but_not_strangers() {
        let plain = filter(false);
        assert!(check(&plain, &["10.0.1.1", "10.0.1.2"]).unwrap().is_some());
        assert_eq!(
            check(&plain, &["10.0.1.1"]).unwrap_err(),
            DropReason::AddressMismatch
        );
        let mut group = filter(true);
        // One member more or less on the sender: the same router.
        assert!(check(&group, &["10.0.1.1"]).unwrap().is_some());
        assert!(
            check(&group, &["10.0.1.1", "10.0.1.2", "10.0.1.3"])
                .unwrap()
                .is_some()
        );
        // Nothing in common, from a stranger: another router on our VRID.
        assert_eq!(
            check(&group, &["10.9.9.9"]).unwrap_err(),
            DropReason::AddressMismatch
        );
        // From a known peer (every member replaced at once): ours.
        group.known.insert(peer());
        assert!(check(&group, &["10.9.9.9"]).unwrap().is_some());
    }
}
