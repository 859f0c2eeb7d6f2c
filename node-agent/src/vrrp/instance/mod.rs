//! The IO shell around one VRRP router: it opens the interface's socket, netlink and the
//! announcement socket ([`open`]), then loops: it waits for an advert, a link-state change, a
//! control from the agent or the router's next deadline, tells the sans-IO
//! [`Router`](buoy_vrrp::router::Router) (`buoy-vrrp`), and does what it answers ([`shell`]).
//! All decisions (election, announcements, bind retries, faults) are the router's.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::{Arc, Mutex},
};

use buoy_vrrp::{fault::Health, machine::State, packet::DropReason, router::Router};
use tokio::{
    sync::{broadcast::error::RecvError, mpsc, watch},
    time::sleep_until,
};
use tracing::{info, warn};

use super::host::{Host, VridInUse};
use crate::net::{handover::Handover, netlink::NetError};

mod clock;
mod config;
mod open;
mod shell;

pub use buoy_vrrp::{announce::AnnounceConfig, fault::DataPath, router::Stop};
pub use config::InstanceConfig;

/// Foreign routers an instance tracks one by one (counters, status, a log line each); more are
/// counted together. Spoofed adverts from many source addresses must not grow memory, logs or
/// metric series without bound.
pub(crate) const MAX_FOREIGN_ROUTERS: usize = 16;

/// How the agent talks to a running instance.
pub struct Controls {
    /// How to stop, once asked (`None`: run).
    pub shutdown: watch::Receiver<Option<Stop>>,
    /// Whether this node's proxy can serve the VIP (listeners open, healthy backends).
    pub data_path: watch::Receiver<DataPath>,
    /// Where the instance reports.
    pub events: mpsc::UnboundedSender<InstanceEvent>,
    /// Where the instance counts.
    pub stats: Arc<Mutex<Stats>>,
    /// The node's connection handover rules; `None`: no forwarding after a takeover.
    pub handover: Option<Handover>,
    /// The previous instance of this VirtualIP was master and left the VIP bound
    /// ([`Ended::vip_left_bound`]): start as master, and keep the addresses found bound.
    pub successor: bool,
    /// The addresses of the VirtualIP's other nodes and configured peers: the only ones
    /// connections are forwarded to after a takeover. `None`: any master heard (the debug
    /// command, without handover).
    pub peers: Option<watch::Receiver<BTreeSet<IpAddr>>>,
    /// A VRRP group's addresses as its members come and go (`None`: they never change).
    pub addresses: Option<watch::Receiver<AddressUpdate>>,
}

/// A group instance's new set of addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressUpdate {
    /// Every address, with its prefix length.
    pub addresses: Vec<(IpAddr, u8)>,
    /// Of the addresses that leave, those another instance of the node now carries: a master
    /// keeps them a few adverts more, make-before-break.
    pub moved: BTreeSet<IpAddr>,
}

/// How an instance ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ended {
    /// The VIP is still bound, for a successor instance ([`Stop::ForSuccessor`]).
    pub vip_left_bound: bool,
}

#[derive(Debug, thiserror::Error)]
/// Why an instance cannot run.
pub enum InstanceError {
    #[error(transparent)]
    /// A host network change failed.
    Net(#[from] NetError),
    #[error("opening the VRRP socket on {interface}: {source}")]
    /// The VRRP socket could not be opened.
    Socket {
        /// The interface.
        interface: String,
        /// The error.
        source: std::io::Error,
    },
    #[error("opening the announcement socket on {interface}: {source}")]
    /// The ARP/NA socket could not be opened.
    Announcer {
        /// The interface.
        interface: String,
        /// The error.
        source: std::io::Error,
    },
    #[error("receiving VRRP packets: {0}")]
    /// Receiving failed.
    Receive(std::io::Error),
    #[error("no addresses configured")]
    /// The instance has no address.
    NoAddresses,
    #[error(transparent)]
    /// Another instance of the node uses the VRID.
    VridInUse(#[from] VridInUse),
    /// The node must not bind what the VirtualIP asks for (see `net::claim`): not retried until
    /// the configuration changes.
    #[error("{0}")]
    Refused(String),
}

/// What an instance reports while it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstanceEvent {
    /// The instance entered a state.
    StateChanged {
        /// The new state.
        state: State,
        /// The state left.
        previous: State,
        /// Why.
        reason: String,
        /// The effective priority then.
        priority: u8,
    },
    /// A router that is not ours uses our VRID (another address list, interval, or unknown peer).
    /// Reported for the first [`MAX_FOREIGN_ROUTERS`] only.
    Collision {
        /// The foreign router.
        from: IpAddr,
        /// How its adverts differ from ours.
        reason: DropReason,
    },
    /// The address this node sends adverts from (its peers forward connections only to it).
    Source(IpAddr),
}

/// Counters of one instance (exported as metrics by the agent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Adverts accepted.
    pub adverts_received: u64,
    /// Adverts sent.
    pub adverts_sent: u64,
    /// Adverts for other VRIDs on the interface.
    pub other_vrid: u64,
    /// Packets dropped, by reason.
    pub drops: BTreeMap<&'static str, u64>,
    /// Adverts from foreign routers using our VRID, by source (at most
    /// [`MAX_FOREIGN_ROUTERS`] sources; the rest in `collisions_other`).
    pub collisions: BTreeMap<IpAddr, u64>,
    /// Foreign adverts beyond the tracked sources.
    pub collisions_other: u64,
    /// Adverts that could not be sent.
    pub send_errors: u64,
}

impl Stats {
    /// All collision adverts, whatever their source.
    pub(crate) fn collisions_total(&self) -> u64 {
        self.collisions.values().sum::<u64>() + self.collisions_other
    }
}

/// Runs one instance until it has stopped (see [`Controls::shutdown`]).
pub async fn run(config: InstanceConfig, controls: Controls) -> Result<Ended, InstanceError> {
    run_on(&Host::new()?, config, controls).await
}

/// Runs one instance with the sockets and netlink connection of `host`, shared with the agent's
/// other instances: opens it, then feeds its router until it stops.
pub async fn run_on(
    host: &Arc<Host>,
    config: InstanceConfig,
    controls: Controls,
) -> Result<Ended, InstanceError> {
    let Controls {
        mut shutdown,
        mut data_path,
        events,
        stats,
        handover,
        successor,
        mut peers,
        mut addresses,
    } = controls;
    let (opened, mut inbox) = open::open(host, &config, successor).await?;
    let mut shell = start(config, opened, *data_path.borrow(), stats, events, handover);
    if let Some(p) = &mut peers {
        let known = p.borrow_and_update().clone();
        shell.filter.known.clone_from(&known);
        shell.feed(|r, now| r.set_known_peers(now, known)).await;
    }
    if successor {
        shell.hold_all();
    }
    shell.feed(|r, now| r.start(now, successor)).await;
    // Members that came or went while the instance opened.
    if let Some(a) = &mut addresses {
        let update = a.borrow_and_update().clone();
        shell.on_addresses(update).await;
    }

    while !shell.stopped {
        let wake = shell.router.poll_timeout().map(|t| shell.clock.instant(t));
        tokio::select! {
            () = sleep_until_some(wake) => shell.feed(Router::handle_timeout).await,
            incoming = inbox.adverts.recv() => match incoming {
                Some(incoming) => shell.on_packet(incoming).await,
                None => {
                    // The interface's socket failed: without adverts we would wrongly become
                    // master, so stop (and let the supervisor restart us) instead.
                    shell.feed(|r, now| r.stop(now, Stop::Now)).await;
                    return Err(InstanceError::Receive(std::io::Error::other("the VRRP socket of this interface failed")));
                }
            },
            update = inbox.links.recv() => {
                let updates = match update {
                    Ok(update) => vec![update],
                    // Missed some changes: read the current state of every link instead.
                    Err(RecvError::Lagged(_)) => shell.netlink.links().await.unwrap_or_default(),
                    Err(RecvError::Closed) => Vec::new(),
                };
                shell.on_links(updates).await;
            }
            Ok(()) = data_path.changed() => {
                let path = *data_path.borrow();
                shell.feed(|r, now| r.data_path_changed(now, path)).await;
            }
            Some(known) = async {
                match &mut peers {
                    Some(p) => p.changed().await.ok().map(|()| p.borrow_and_update().clone()),
                    None => std::future::pending().await,
                }
            } => {
                shell.filter.known.clone_from(&known);
                shell.feed(|r, now| r.set_known_peers(now, known)).await;
            }
            Some(update) = async {
                match &mut addresses {
                    Some(a) => a.changed().await.ok().map(|()| a.borrow_and_update().clone()),
                    None => std::future::pending().await,
                }
            } => shell.on_addresses(update).await,
            changed = shutdown.changed() => {
                let how = if changed.is_ok() { *shutdown.borrow() } else { Some(Stop::Now) };
                if let Some(how) = how {
                    shell.feed(|r, now| r.stop(now, how)).await;
                }
            }
        }
    }
    Ok(finish(&shell).await)
}

/// The router of an opened instance, and the shell that will do what it decides.
fn start(
    config: InstanceConfig,
    mut opened: open::Opened,
    data_path: DataPath,
    stats: Arc<Mutex<Stats>>,
    events: mpsc::UnboundedSender<InstanceEvent>,
    handover: Option<Handover>,
) -> shell::Shell {
    let health = Health {
        link_up: opened.link.up,
        bind_failed: false,
        data_path,
        tracked: std::mem::take(&mut opened.tracked),
        track_upstreams: config.track_upstreams,
        track_http_get: config.track_http_get.as_ref().map(|t| t.weight),
    };
    let router = Router::new(
        config.machine(opened.source, handover.is_some()),
        config.announce.clone(),
        opened.link.index,
        health,
    );
    if let Some(handover) = &handover {
        // From now until the agent exits: our sockets stay reachable after the VIP leaves.
        handover.deliver(&config.vips());
    }
    let source = opened.source;
    info!(vrid = config.vrid, interface = %opened.link.name, %source, priority = config.priority, "VRRP instance starting");
    let shell = shell::Shell::new(config, opened, router, stats, events, handover);
    let _ = shell.events.send(InstanceEvent::Source(source));
    shell
}

/// After the router stopped: the virtual-MAC interface goes, unless the VIP on it stays.
async fn finish(shell: &shell::Shell) -> Ended {
    let vip_left_bound = shell.router.handed_to_successor();
    shell.forget_holds();
    if shell.config.virtual_mac
        && !vip_left_bound
        && let Err(e) = shell.netlink.delete_link(&shell.vip_link.name).await
    {
        warn!(vrid = shell.config.vrid, error = %e, "cannot remove the virtual MAC interface");
    }
    info!(
        vrid = shell.config.vrid,
        vip_left_bound, "VRRP instance stopped"
    );
    Ended { vip_left_bound }
}

/// Sleeps until `wake`; forever without one.
async fn sleep_until_some(wake: Option<tokio::time::Instant>) {
    match wake {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}
