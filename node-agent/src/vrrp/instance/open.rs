//! Opening an instance: find its interface, refuse addresses the node must not bind, remove
//! stale ones, pick the source address, open the VRRP port, the virtual MAC and the
//! announcement socket, and read the tracked interfaces. Everything the loop then works with.

use std::{net::IpAddr, sync::Arc};

use buoy_vrrp::fault::TrackedInterface;
use tokio::sync::{broadcast, mpsc};
use tracing::warn;

use super::{InstanceError, config::InstanceConfig, config::virtual_mac};
use crate::{
    net::{
        announce::Announcer,
        claim,
        netlink::{Link, NetError, Netlink, primary_address},
    },
    vrrp::{
        host::{Holds, Host, InstanceId, Port},
        socket::Incoming,
    },
};

/// What an opened instance works with.
pub(super) struct Opened {
    pub(super) netlink: Netlink,
    /// The interface the instance runs on.
    pub(super) link: Link,
    /// Where the VIPs live: the interface itself, or its virtual-MAC macvlan.
    pub(super) vip_link: Link,
    /// The address adverts are sent from.
    pub(super) source: IpAddr,
    /// The node's own addresses (adverts from them are ours).
    pub(super) own: Vec<IpAddr>,
    pub(super) port: Arc<Port>,
    pub(super) announcer: Announcer,
    pub(super) tracked: Vec<TrackedInterface>,
    /// Which of the node's instances hold which address.
    pub(super) holds: Arc<Holds>,
    /// This instance among them.
    pub(super) id: InstanceId,
}

/// What an opened instance hears.
pub(super) struct Inbox {
    /// The adverts of our VRID.
    pub(super) adverts: mpsc::Receiver<Incoming>,
    /// Link-state changes of every interface.
    pub(super) links: broadcast::Receiver<Link>,
}

/// Opens what an instance of `config` needs on `host`; `successor`: the addresses found bound
/// were left for us and stay.
pub(super) async fn open(
    host: &Arc<Host>,
    config: &InstanceConfig,
    successor: bool,
) -> Result<(Opened, Inbox), InstanceError> {
    let first = config
        .addresses
        .first()
        .map(|(a, _)| *a)
        .ok_or(InstanceError::NoAddresses)?;
    let ipv6 = first.is_ipv6();
    let netlink = host.netlink.clone();
    let link = interface(&netlink, config, first).await?;
    // One dump serves the claim check, the stale-address check, the source address and our
    // own addresses.
    let addresses = netlink.addresses().await?;
    let gateways = netlink.default_gateways().await?;
    for (addr, prefix) in &config.addresses {
        if let Some(why) = claim::refusal(*addr, *prefix, link.index, &addresses, &gateways) {
            return Err(InstanceError::Refused(why));
        }
    }
    let vips = config.vips();
    let id: InstanceId = (link.index, config.vrid, ipv6);
    // Buoy's addresses left by an earlier instance must not make two nodes answer for the VIP
    // (a successor's were left for it on purpose, and another instance of this node may hold
    // one that moves to us); an address Buoy did not add is refused above, never removed.
    for stale in addresses.iter().filter(|a| {
        vips.contains(&a.address)
            && a.buoys()
            && !successor
            && !host.holds.held_by_other(id, a.address)
    }) {
        if netlink
            .remove_address_at(stale.index, stale.address, stale.prefix_len)
            .await?
        {
            warn!(vrid = config.vrid, addr = %stale.address, "removed a stale virtual address left by an earlier run");
        }
    }
    let source = match config.source_address {
        Some(a) => a,
        None => primary_address(&addresses, &link, ipv6, &vips)?,
    };
    let own: Vec<IpAddr> = addresses
        .iter()
        .map(|a| a.address)
        .filter(|a| !vips.contains(a))
        .collect();
    let port = host
        .port(&link, ipv6)
        .map_err(|source| InstanceError::Socket {
            interface: link.name.clone(),
            source,
        })?;
    let adverts = port.subscribe(config.vrid)?;
    let vip_link = vip_link(&netlink, config, &link, ipv6).await?;
    let announcer = Announcer::open(vip_link.index, &vip_link.name, vip_link.mac, !ipv6, ipv6)
        .map_err(|source| InstanceError::Announcer {
            interface: vip_link.name.clone(),
            source,
        })?;
    let links = host.link_updates();
    let tracked = tracked(&netlink, config).await?;
    let opened = Opened {
        netlink,
        link,
        vip_link,
        source,
        own,
        port,
        announcer,
        tracked,
        holds: host.holds.clone(),
        id,
    };
    Ok((opened, Inbox { adverts, links }))
}

/// The interface the instance runs on, if the AddressPool allows it.
async fn interface(
    netlink: &Netlink,
    config: &InstanceConfig,
    first: IpAddr,
) -> Result<Link, InstanceError> {
    let link = match &config.interface {
        Some(name) => netlink.link_by_name(name).await?,
        None => netlink.interface_for(first).await?,
    };
    if !config.allowed_interfaces.is_empty() && !config.allowed_interfaces.contains(&link.name) {
        return Err(InstanceError::Refused(format!(
            "interface {} is not one the AddressPool allows ({})",
            link.name,
            config.allowed_interfaces.join(", ")
        )));
    }
    Ok(link)
}

/// Where the VIPs go: `link`, or the virtual-MAC macvlan on it.
async fn vip_link(
    netlink: &Netlink,
    config: &InstanceConfig,
    link: &Link,
    ipv6: bool,
) -> Result<Link, InstanceError> {
    if !config.virtual_mac {
        return Ok(link.clone());
    }
    let name = format!("vrrp{}.{}", if ipv6 { 6 } else { 4 }, config.vrid);
    let vmac = netlink
        .create_vmac(link.index, &name, virtual_mac(config.vrid, ipv6))
        .await?;
    if !ipv6 {
        // The parent must neither answer ARP for the VIP (arp_ignore) nor put the VIP in its
        // own ARP requests (arp_announce) with its own MAC, or neighbours would learn the
        // parent's MAC for the VIP (keepalived adjusts the same settings).
        for (setting, value) in [("arp_ignore", "1"), ("arp_announce", "2")] {
            let path = format!("/proc/sys/net/ipv4/conf/{}/{setting}", link.name);
            if let Err(e) = std::fs::write(&path, value) {
                warn!(%path, error = %e, "cannot adjust ARP settings; neighbours may learn the parent's MAC for the VIP");
            }
        }
    }
    Ok(vmac)
}

/// The tracked interfaces as they are now.
async fn tracked(
    netlink: &Netlink,
    config: &InstanceConfig,
) -> Result<Vec<TrackedInterface>, InstanceError> {
    let links = netlink.links().await?;
    let mut tracked = Vec::new();
    for (name, weight) in &config.track_interfaces {
        let l = links
            .iter()
            .find(|l| &l.name == name)
            .ok_or_else(|| NetError::NoSuchInterface(name.clone()))?;
        tracked.push(TrackedInterface {
            index: l.index,
            name: name.clone(),
            weight: *weight,
            up: l.up,
        });
    }
    Ok(tracked)
}
