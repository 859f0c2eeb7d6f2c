//! What the VRRP instances of one agent share: one netlink connection, one link-state watcher,
//! and one raw socket per interface and address family, demultiplexed by VRID (as keepalived
//! does). Per-instance sockets would copy every advert on the LAN to every instance.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    sync::{Arc, Mutex, Weak},
};

use buoy_vrrp::packet::DropReason;
use tokio::{
    sync::{broadcast, mpsc},
    task::JoinHandle,
};
use tracing::warn;

use super::socket::{Incoming, VrrpSocket};
use crate::net::{
    ledger::Ledger,
    netlink::{Link, NetError, Netlink, watch_links},
};

/// Packets queued per instance before they are dropped (an instance that cannot keep up).
const QUEUE: usize = 256;

/// Counters of a port: packets that could not be given to an instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// IP-level drops, before any VRID is known.
    pub drops: BTreeMap<&'static str, u64>,
    /// Adverts for VRIDs no instance here serves (normal on a shared LAN).
    pub other_vrid: u64,
    /// Dropped because the instance's queue was full.
    pub queue_full: u64,
}

/// One raw socket on one interface for one family.
pub struct Port {
    interface: String,
    socket: Arc<VrrpSocket>,
    routes: Arc<Mutex<HashMap<u8, mpsc::Sender<Incoming>>>>,
    /// Counters of packets not routed to an instance.
    pub stats: Arc<Mutex<PortStats>>,
    task: JoinHandle<()>,
}

#[derive(Debug, thiserror::Error)]
#[error("VRID {0} is already served on this interface by another instance")]
/// Two instances asked for one VRID on one interface.
pub struct VridInUse(pub u8);

impl Port {
    fn open(link: &Link, ipv6: bool) -> std::io::Result<Port> {
        // Multicast membership is harmless for unicast instances: they only accept known peers.
        let socket = Arc::new(VrrpSocket::open(&link.name, link.index, ipv6, false)?);
        let routes: Arc<Mutex<HashMap<u8, mpsc::Sender<Incoming>>>> = Arc::default();
        let stats: Arc<Mutex<PortStats>> = Arc::default();
        let (s, r, st, name) = (
            socket.clone(),
            routes.clone(),
            stats.clone(),
            link.name.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let packet = match s.recv().await {
                    Ok(p) => p,
                    Err(e) => {
                        warn!(interface = %name, error = %e, "VRRP socket failed; no more adverts received here");
                        break;
                    }
                };
                let bump = |f: &dyn Fn(&mut PortStats)| {
                    if let Ok(mut s) = st.lock() {
                        f(&mut s);
                    }
                };
                let incoming = match packet {
                    Ok(i) => i,
                    Err(reason) => {
                        bump(&|s| *s.drops.entry(reason.label()).or_default() += 1);
                        continue;
                    }
                };
                let Some(&vrid) = incoming.payload.get(1) else {
                    bump(&|s| *s.drops.entry(DropReason::Truncated.label()).or_default() += 1);
                    continue;
                };
                let route = r.lock().ok().and_then(|r| r.get(&vrid).cloned());
                match route {
                    Some(tx) => {
                        if tx.try_send(incoming).is_err() {
                            bump(&|s| s.queue_full += 1);
                        }
                    }
                    None => bump(&|s| s.other_vrid += 1),
                }
            }
        });
        Ok(Port {
            interface: link.name.clone(),
            socket,
            routes,
            stats,
            task,
        })
    }

    /// Receives the adverts for `vrid` on this port.
    pub(crate) fn subscribe(&self, vrid: u8) -> Result<mpsc::Receiver<Incoming>, VridInUse> {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if routes.get(&vrid).is_some_and(|tx| !tx.is_closed()) {
            return Err(VridInUse(vrid));
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        routes.insert(vrid, tx);
        Ok(rx)
    }

    pub(crate) fn socket(&self) -> &VrrpSocket {
        &self.socket
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which of the node's instances hold which virtual addresses: an address that moves between
/// two instances of the node (a Service changing VRRP group) is removed by neither while the
/// other holds it.
#[derive(Debug, Default)]
pub(crate) struct Holds {
    by_address: Mutex<HashMap<IpAddr, BTreeSet<InstanceId>>>,
}

/// An instance on a host: its interface, VRID and family are unique there.
pub(crate) type InstanceId = (u32, u8, bool);

impl Holds {
    /// `who` holds `addresses`.
    pub(crate) fn hold(&self, who: InstanceId, addresses: impl IntoIterator<Item = IpAddr>) {
        let mut map = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        for a in addresses {
            map.entry(a).or_default().insert(who);
        }
    }

    /// `who` lets go of `address`: whether it may be removed (no other instance holds it).
    pub(crate) fn let_go(&self, who: InstanceId, address: IpAddr) -> bool {
        let mut map = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        let Some(holders) = map.get_mut(&address) else {
            return true;
        };
        holders.remove(&who);
        let free = holders.is_empty();
        if free {
            map.remove(&address);
        }
        free
    }

    /// `who` is gone (it released what it held, or left it bound for its successor, which
    /// holds it anew).
    pub(crate) fn forget(&self, who: InstanceId) {
        let mut map = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, holders| {
            holders.remove(&who);
            !holders.is_empty()
        });
    }

    /// Whether an instance other than `who` holds `address`.
    pub(crate) fn held_by_other(&self, who: InstanceId, address: IpAddr) -> bool {
        let map = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&address)
            .is_some_and(|h| h.iter().any(|other| *other != who))
    }
}

/// Shared by every instance of an agent.
pub struct Host {
    /// The node's netlink connection.
    pub netlink: Netlink,
    links: broadcast::Sender<Link>,
    ports: Mutex<HashMap<(u32, bool), Weak<Port>>>,
    /// Which instance holds which virtual address.
    pub(crate) holds: Arc<Holds>,
}

impl Host {
    /// Connects to netlink and starts watching links (on the current tokio runtime).
    pub fn new() -> Result<Arc<Host>, NetError> {
        Host::with_ledger(Ledger::in_memory())
    }

    /// [`Host::new`], writing the addresses and links it adds to `ledger` first.
    pub(crate) fn with_ledger(ledger: Ledger) -> Result<Arc<Host>, NetError> {
        let netlink = Netlink::connect()?.with_ledger(ledger);
        let (links, _) = broadcast::channel(1024);
        let mut updates = watch_links()?;
        let tx = links.clone();
        tokio::spawn(async move {
            while let Some(link) = updates.recv().await {
                let _ = tx.send(link);
            }
        });
        Ok(Arc::new(Host {
            netlink,
            links,
            ports: Mutex::new(HashMap::new()),
            holds: Arc::default(),
        }))
    }

    /// Link-state changes of every interface.
    pub(crate) fn link_updates(&self) -> broadcast::Receiver<Link> {
        self.links.subscribe()
    }

    /// The counters of every open port: (interface, IPv6, counters).
    pub(crate) fn port_stats(&self) -> Vec<(String, bool, PortStats)> {
        let ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        ports
            .iter()
            .filter_map(|((_, ipv6), p)| {
                let p = p.upgrade()?;
                let stats = p.stats.lock().ok()?.clone();
                Some((p.interface.clone(), *ipv6, stats))
            })
            .collect()
    }

    /// The port for `link` and family, opened on first use and closed with its last user.
    pub fn port(&self, link: &Link, ipv6: bool) -> std::io::Result<Arc<Port>> {
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = ports.get(&(link.index, ipv6)).and_then(Weak::upgrade) {
            return Ok(p);
        }
        let p = Arc::new(Port::open(link, ipv6)?);
        ports.insert((link.index, ipv6), Arc::downgrade(&p));
        Ok(p)
    }
}
