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
        if self.addresses != theirs {
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
