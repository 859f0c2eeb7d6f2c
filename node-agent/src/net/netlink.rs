//! Interfaces and addresses through rtnetlink: find the interface of a VIP, its MAC and primary
//! address, add and remove virtual addresses (tagged as Buoy's and written to the agent's
//! ledger first, so that nothing is left behind by a crash and nothing Buoy did not add is ever
//! removed), and watch links go up and down.

use std::net::IpAddr;

use futures::{StreamExt, TryStreamExt};
use rtnetlink::{
    AddressMessageBuilder, Handle, LinkMacVlan, MulticastGroup,
    packet_core::NetlinkPayload,
    packet_route::{
        AddressFamily, RouteNetlinkMessage,
        address::{AddressAttribute, AddressFlags, AddressMessage, AddressProtocol, AddressScope},
        link::{LinkAttribute, LinkFlags, LinkMessage, MacVlanMode},
        route::{RouteMessage, RouteScope, RouteType},
        rule::{RuleAction, RuleAttribute, RuleMessage},
    },
};
use tokio::sync::mpsc;

use super::ledger::{ADDRESS_PROTOCOL, Ledger};

#[derive(Debug, thiserror::Error)]
/// Why a change to the host network failed.
pub enum NetError {
    #[error("netlink: {0}")]
    /// The kernel refused a request.
    Netlink(#[from] rtnetlink::Error),
    #[error("cannot open a netlink socket: {0}")]
    /// The netlink socket could not be opened.
    Io(#[from] std::io::Error),
    #[error("no interface named {0:?}")]
    /// No interface has this name.
    NoSuchInterface(String),
    #[error("no interface has a connected subnet that holds {0}")]
    /// No connected subnet holds this address.
    NoInterfaceFor(IpAddr),
    #[error("interface {0} has no {1} address to send adverts from")]
    /// The interface has no address of this family.
    NoSourceAddress(String, &'static str),
    #[error(
        "{0} is already on interface {1} and was not added by Buoy (a node address?): not touched"
    )]
    /// The address is there but not Buoy's: left alone.
    NotOurs(IpAddr, String),
}

/// `fwmark MARK/MARK lookup TABLE pref P` in one family: added and deleted as this one message.
fn fwmark_rule(ipv6: bool, mark: u32, table: u32, preference: u32) -> RuleMessage {
    let mut rule = RuleMessage::default();
    rule.header.family = if ipv6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    rule.header.action = RuleAction::ToTable;
    rule.attributes = vec![
        RuleAttribute::Priority(preference),
        RuleAttribute::Table(table),
        RuleAttribute::FwMark(mark),
        RuleAttribute::FwMask(mark),
    ];
    rule
}

/// `local default dev lo table TABLE`.
fn local_default_route(ipv6: bool, table: u32, lo: u32) -> RouteMessage {
    if ipv6 {
        rtnetlink::RouteMessageBuilder::<std::net::Ipv6Addr>::new()
            .table_id(table)
            .kind(RouteType::Local)
            .scope(RouteScope::Host)
            .output_interface(lo)
            .build()
    } else {
        rtnetlink::RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .table_id(table)
            .kind(RouteType::Local)
            .scope(RouteScope::Host)
            .output_interface(lo)
            .build()
    }
}

fn ignore_exists(result: Result<(), rtnetlink::Error>) -> Result<(), rtnetlink::Error> {
    match result {
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
        other => other,
    }
}

fn ignore_missing(result: Result<(), rtnetlink::Error>) -> Result<(), rtnetlink::Error> {
    match result {
        Err(rtnetlink::Error::NetlinkError(e))
            if [-libc::ENOENT, -libc::ESRCH].contains(&e.raw_code()) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// What the agent needs to know about an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Kernel interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address.
    pub mac: [u8; 6],
    /// Administratively up and with carrier (IFF_UP and IFF_LOWER_UP).
    pub up: bool,
}

/// An address on an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InterfaceAddress {
    /// Kernel interface index.
    pub index: u32,
    pub address: IpAddr,
    pub prefix_len: u8,
    pub link_local: bool,
    /// `IFA_PROTO`: who added it ([`ADDRESS_PROTOCOL`]: Buoy); `None` on kernels before 6.1
    /// and for addresses added without one.
    pub protocol: Option<u8>,
}

impl InterfaceAddress {
    /// Whether Buoy added it (the kernel keeps the tag).
    pub(crate) fn buoys(&self) -> bool {
        self.protocol == Some(ADDRESS_PROTOCOL)
    }
}

/// A netlink connection (its task runs on the current tokio runtime). Requests are serialised:
/// the kernel refuses a second dump on a socket while one is running (EBUSY), and many
/// instances share this connection. Addresses and links it adds are written to its ledger first.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
    lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    ledger: Ledger,
}

fn link_from(msg: &LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        mac: [0; 6],
        up: msg.header.flags.contains(LinkFlags::Up)
            && msg.header.flags.contains(LinkFlags::LowerUp),
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Address(a) if a.len() == 6 => link.mac.copy_from_slice(a),
            _ => {}
        }
    }
    link
}

fn address_from(msg: &AddressMessage) -> Option<InterfaceAddress> {
    // IFA_LOCAL is the address itself on point-to-point links; IFA_ADDRESS otherwise.
    let mut address = None;
    let mut protocol = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(a) => address = Some(*a),
            AddressAttribute::Address(a) if address.is_none() => address = Some(*a),
            AddressAttribute::Protocol(p) => protocol = Some(u8::from(*p)),
            _ => {}
        }
    }
    Some(InterfaceAddress {
        index: msg.header.index,
        address: address?,
        prefix_len: msg.header.prefix_len,
        link_local: msg.header.scope == AddressScope::Link,
        protocol,
    })
}

/// The address adverts are sent from: for IPv4 the first address on the interface that is not one
/// of `exclude` (the VIPs); for IPv6 the link-local address (RFC 5798).
pub(crate) fn primary_address(
    addresses: &[InterfaceAddress],
    link: &Link,
    ipv6: bool,
    exclude: &[IpAddr],
) -> Result<IpAddr, NetError> {
    addresses
        .iter()
        .filter(|a| {
            a.index == link.index && a.address.is_ipv6() == ipv6 && !exclude.contains(&a.address)
        })
        .find(|a| !ipv6 || a.link_local)
        .map(|a| a.address)
        .ok_or_else(|| {
            NetError::NoSourceAddress(
                link.name.clone(),
                if ipv6 { "IPv6 link-local" } else { "IPv4" },
            )
        })
}

/// The node's address whose connected subnet holds `addr` (the narrowest), and so its
/// interface: `None` when `addr` is no neighbour of the node.
pub(crate) fn on_link(addr: IpAddr, addresses: &[InterfaceAddress]) -> Option<&InterfaceAddress> {
    addresses
        .iter()
        .filter(|a| {
            a.prefix_len < if addr.is_ipv4() { 32 } else { 128 }
                && in_subnet(addr, a.address, a.prefix_len)
        })
        .max_by_key(|a| a.prefix_len)
}

/// Whether `addr` lies in `net/prefix`.
pub(crate) fn in_subnet(addr: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix.min(32)))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix.min(128)))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl Netlink {
    /// Opens a connection; the connection task is spawned on the current runtime. What it adds
    /// is remembered in memory only (see [`Netlink::with_ledger`]).
    pub fn connect() -> Result<Self, NetError> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Netlink {
            handle,
            lock: Default::default(),
            ledger: Ledger::in_memory(),
        })
    }

    /// This connection, writing what it adds to `ledger`.
    pub(crate) fn with_ledger(mut self, ledger: Ledger) -> Self {
        self.ledger = ledger;
        self
    }

    /// The ledger this connection writes to.
    pub(crate) fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Gateways of the default routes of the main table (the node's routers: never a VIP).
    pub(crate) async fn default_gateways(&self) -> Result<Vec<IpAddr>, NetError> {
        use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
        let _serial = self.lock.lock().await;
        let mut out = Vec::new();
        for ipv6 in [false, true] {
            let filter = if ipv6 {
                rtnetlink::RouteMessageBuilder::<std::net::Ipv6Addr>::new().build()
            } else {
                rtnetlink::RouteMessageBuilder::<std::net::Ipv4Addr>::new().build()
            };
            let routes: Vec<RouteMessage> = self
                .handle
                .route()
                .get(filter)
                .execute()
                .try_collect()
                .await?;
            for r in routes
                .iter()
                .filter(|r| r.header.destination_prefix_length == 0)
            {
                for attr in &r.attributes {
                    if let RouteAttribute::Gateway(g) = attr {
                        match g {
                            RouteAddress::Inet(a) => out.push(IpAddr::V4(*a)),
                            RouteAddress::Inet6(a) => out.push(IpAddr::V6(*a)),
                            _ => {}
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    pub(crate) async fn links(&self) -> Result<Vec<Link>, NetError> {
        let _serial = self.lock.lock().await;
        self.links_unlocked().await
    }

    async fn links_unlocked(&self) -> Result<Vec<Link>, NetError> {
        let msgs: Vec<LinkMessage> = self.handle.link().get().execute().try_collect().await?;
        Ok(msgs.iter().map(link_from).collect())
    }

    /// The interface of this name.
    pub async fn link_by_name(&self, name: &str) -> Result<Link, NetError> {
        self.links()
            .await?
            .into_iter()
            .find(|l| l.name == name)
            .ok_or_else(|| NetError::NoSuchInterface(name.to_string()))
    }

    pub(crate) async fn addresses(&self) -> Result<Vec<InterfaceAddress>, NetError> {
        let _serial = self.lock.lock().await;
        let msgs: Vec<AddressMessage> = self.handle.address().get().execute().try_collect().await?;
        Ok(msgs.iter().filter_map(address_from).collect())
    }

    /// The interface whose connected subnet holds `addr` (the default for `spec.interface`).
    pub(crate) async fn interface_for(&self, addr: IpAddr) -> Result<Link, NetError> {
        let addresses = self.addresses().await?;
        let index = on_link(addr, &addresses)
            .ok_or(NetError::NoInterfaceFor(addr))?
            .index;
        self.links()
            .await?
            .into_iter()
            .find(|l| l.index == index)
            .ok_or(NetError::NoInterfaceFor(addr))
    }

    /// Adds `addr/prefix` to `link`, tagged as Buoy's (IPv6 without duplicate address
    /// detection, so that it is usable at once, as keepalived does), after writing it to the
    /// ledger. An address that is there already is fine if Buoy added it (a successor instance
    /// takes over its predecessor's VIP); one Buoy did not add is refused, never replaced.
    pub async fn add_address(&self, link: &Link, addr: IpAddr, prefix: u8) -> Result<(), NetError> {
        self.ledger.binding(&link.name, addr, prefix);
        let _serial = self.lock.lock().await;
        let mut req = self.handle.address().add(link.index, addr, prefix);
        req.message_mut()
            .attributes
            .push(AddressAttribute::Protocol(AddressProtocol::from(
                ADDRESS_PROTOCOL,
            )));
        if addr.is_ipv6() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {
                let msgs: Vec<AddressMessage> =
                    self.handle.address().get().execute().try_collect().await?;
                let existing = msgs
                    .iter()
                    .filter_map(address_from)
                    .find(|a| a.index == link.index && a.address == addr);
                match existing {
                    // Without the kernel's tag (before Linux 6.1), ours is what the ledger lists.
                    Some(a) if a.buoys() || a.protocol.is_none() => Ok(()),
                    _ => Err(NetError::NotOurs(addr, link.name.clone())),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes `addr/prefix`, which Buoy added, from `link`; returns whether it was there. No
    /// dump: with hundreds of VIPs a dump per release would be quadratic (the caller knows the
    /// address is its own: it added it, or found it tagged).
    pub(crate) async fn remove_address(
        &self,
        link: &Link,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<bool, NetError> {
        let removed = self.remove_address_at(link.index, addr, prefix).await;
        if removed.is_ok() {
            self.ledger.released(&link.name, addr, prefix);
        }
        removed
    }

    /// [`Netlink::remove_address`] by interface index, without the ledger.
    pub(crate) async fn remove_address_at(
        &self,
        index: u32,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<bool, NetError> {
        let _serial = self.lock.lock().await;
        let msg = match addr {
            IpAddr::V4(a) => AddressMessageBuilder::<std::net::Ipv4Addr>::new()
                .index(index)
                .address(a, prefix)
                .build(),
            IpAddr::V6(a) => AddressMessageBuilder::<std::net::Ipv6Addr>::new()
                .index(index)
                .address(a, prefix)
                .build(),
        };
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(true),
            // EADDRNOTAVAIL: it was not there.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EADDRNOTAVAIL => {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Policy routing for connection handover: packets carrying `mark` are delivered to the
    /// local stack (`ip rule add fwmark MARK/MARK lookup TABLE pref P` and
    /// `ip route add local default dev lo table TABLE`). Idempotent.
    pub(crate) async fn ensure_local_delivery(
        &self,
        ipv6: bool,
        mark: u32,
        table: u32,
        preference: u32,
    ) -> Result<(), rtnetlink::Error> {
        self.ledger.update(|e| {
            e.local_delivery.insert(ipv6);
        });
        let _serial = self.lock.lock().await;
        let mut add = self.handle.rule().add();
        *add.message_mut() = fwmark_rule(ipv6, mark, table, preference);
        ignore_exists(add.execute().await)?;
        let lo = self.loopback_index().await?;
        ignore_exists(
            self.handle
                .route()
                .add(local_default_route(ipv6, table, lo))
                .execute()
                .await,
        )
    }

    /// The loopback interface's index (1 in every namespace Linux creates, but asked anyway).
    async fn loopback_index(&self) -> Result<u32, rtnetlink::Error> {
        Ok(self
            .handle
            .link()
            .get()
            .match_name("lo".to_string())
            .execute()
            .try_next()
            .await?
            .map_or(1, |l| l.header.index))
    }

    /// Undoes [`Netlink::ensure_local_delivery`]; what is missing already is fine.
    pub(crate) async fn remove_local_delivery(
        &self,
        ipv6: bool,
        mark: u32,
        table: u32,
        preference: u32,
    ) -> Result<(), rtnetlink::Error> {
        let _serial = self.lock.lock().await;
        ignore_missing(
            self.handle
                .rule()
                .del(fwmark_rule(ipv6, mark, table, preference))
                .execute()
                .await,
        )?;
        let lo = self.loopback_index().await?;
        ignore_missing(
            self.handle
                .route()
                .del(local_default_route(ipv6, table, lo))
                .execute()
                .await,
        )?;
        self.ledger.update(|e| {
            e.local_delivery.remove(&ipv6);
        });
        Ok(())
    }

    /// Creates (or re-creates) the macvlan interface `name` on `parent` with the VRRP virtual MAC,
    /// up, in private mode (keepalived's `use_vmac`).
    pub(crate) async fn create_vmac(
        &self,
        parent: u32,
        name: &str,
        mac: [u8; 6],
    ) -> Result<Link, NetError> {
        self.ledger.update(|e| {
            e.links.insert(name.to_string());
        });
        let _serial = self.lock.lock().await;
        self.delete_link_unlocked(name).await?;
        let msg = LinkMacVlan::new(name, parent, MacVlanMode::Private)
            .address(mac.to_vec())
            .up()
            .build();
        self.handle.link().add(msg).execute().await?;
        self.links_unlocked()
            .await?
            .into_iter()
            .find(|l| l.name == name)
            .ok_or_else(|| NetError::NoSuchInterface(name.to_string()))
    }

    /// Deletes the interface `name` if it exists.
    pub(crate) async fn delete_link(&self, name: &str) -> Result<(), NetError> {
        let _serial = self.lock.lock().await;
        self.delete_link_unlocked(name).await?;
        self.ledger.update(|e| {
            e.links.remove(name);
        });
        Ok(())
    }

    async fn delete_link_unlocked(&self, name: &str) -> Result<(), NetError> {
        if let Some(l) = self
            .links_unlocked()
            .await?
            .into_iter()
            .find(|l| l.name == name)
        {
            self.handle.link().del(l.index).execute().await?;
        }
        Ok(())
    }
}

/// Watches link state (`ip monitor link`): sends every change of every link.
pub(crate) fn watch_links() -> Result<mpsc::UnboundedReceiver<Link>, NetError> {
    let (conn, _handle, mut messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link])?;
    tokio::spawn(conn);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some((msg, _)) = messages.next().await {
            if let NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewLink(link) | RouteNetlinkMessage::DelLink(link),
            ) = msg.payload
                && tx.send(link_from(&link)).is_err()
            {
                break;
            }
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_membership() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_subnet(ip("192.168.60.88"), ip("192.168.60.93"), 24));
        assert!(!in_subnet(ip("192.168.61.88"), ip("192.168.60.93"), 24));
        assert!(in_subnet(ip("fd00::88"), ip("fd00::1"), 64));
        assert!(!in_subnet(ip("fd01::88"), ip("fd00::1"), 64));
        assert!(!in_subnet(ip("fd00::88"), ip("192.168.60.93"), 0));
        assert!(in_subnet(ip("8.8.8.8"), ip("0.0.0.0"), 0));
    }
}
