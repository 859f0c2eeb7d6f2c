//! The IO shell around one VRRP state machine: the raw socket, the clock, netlink for the VIP,
//! link-state events and announcements. All decisions are the machine's; this module only does
//! what the machine's actions say, and checks and counts every received packet.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    sync::{mpsc, watch},
    time::{Instant, sleep_until},
};
use tracing::{debug, info, warn};

use buoy_vrrp::{
    machine::{Action, Config as MachineConfig, Machine, Received, State},
    packet::{self, AUTH_LEN, Advertisement, DropReason, MULTICAST_V4, MULTICAST_V6, TTL, Version},
    track::{Condition, effective_priority},
};

use super::{
    host::{Host, Port, VridInUse},
    socket::Incoming,
};
use crate::net::{
    announce::Announcer,
    claim,
    handover::Handover,
    netlink::{Link, NetError, Netlink, primary_address},
};

/// Foreign routers an instance tracks one by one (counters, status, a log line each); more are
/// counted together. Spoofed adverts from many source addresses must not grow memory, logs or
/// metric series without bound.
pub const MAX_FOREIGN_ROUTERS: usize = 16;

/// Gratuitous ARP / NA schedule (keepalived's garp_master_*).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceConfig {
    pub delay: Duration,
    pub repeat: u32,
    pub refresh_interval: Duration,
    pub refresh_repeat: u32,
}

impl Default for AnnounceConfig {
    fn default() -> Self {
        AnnounceConfig {
            delay: Duration::from_secs(5),
            repeat: 5,
            refresh_interval: Duration::ZERO,
            refresh_repeat: 1,
        }
    }
}

/// Everything one VRRP instance needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceConfig {
    /// Interface name; `None`: the one whose subnet holds the first address.
    pub interface: Option<String>,
    pub vrid: u8,
    pub version: Version,
    pub priority: u8,
    /// Virtual addresses with their prefix lengths.
    pub addresses: Vec<(IpAddr, u8)>,
    pub advert_interval: Duration,
    /// Adverts sent per interval while master (the machine's `adverts_per_interval`).
    pub adverts_per_interval: u8,
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// Unicast peers; empty means multicast.
    pub unicast_peers: Vec<IpAddr>,
    pub unicast: bool,
    /// VRRPv2 password (first 8 bytes used).
    pub auth: Option<[u8; AUTH_LEN]>,
    /// Source address of adverts; default: the interface's primary address.
    pub source_address: Option<IpAddr>,
    pub announce: AnnounceConfig,
    /// Other interfaces to track, with keepalived weights (`track_interface`).
    pub track_interfaces: Vec<(String, i32)>,
    /// Weight of the "this node has healthy upstreams" condition (`track.upstreams`).
    pub track_upstreams: Option<i32>,
    /// Hold the VIP on a macvlan with the VRRP virtual MAC (keepalived's `use_vmac`; adverts still
    /// leave from the parent interface, as with keepalived's `vmac_xmit_base`).
    pub virtual_mac: bool,
    /// After taking the VIP from a live master, how long packets of connections we do not know
    /// are forwarded to it (`net::handover`); zero: never.
    pub handover_forward: Duration,
    /// Interfaces the addresses may go on (the AddressPool's `interfaces`); empty: any.
    pub allowed_interfaces: Vec<String>,
}

/// Default [`InstanceConfig::handover_forward`], the API's `vrrp.connectionHandover` default:
/// long enough for a draining agent's connections (its default drain timeout is 10 s) and for
/// clients' idle keep-alive connections to the old master to send their next request.
pub const HANDOVER_FORWARD: Duration = Duration::from_secs(30);

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
            virtual_mac: false,
            handover_forward: HANDOVER_FORWARD,
            allowed_interfaces: Vec::new(),
        }
    }
}

/// The VRRP virtual MAC of a router (RFC 5798 section 7.3).
pub fn virtual_mac(vrid: u8, ipv6: bool) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, if ipv6 { 0x02 } else { 0x01 }, vrid]
}

/// What the node's proxy says about the VIP's listeners: a master must be able to serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataPath {
    /// Every listener has a healthy backend (for `track.upstreams`).
    pub upstreams_healthy: bool,
    /// Every listener is open; a node that cannot listen goes to Fault and gives up mastership.
    pub listening: bool,
}

impl DataPath {
    /// Listeners open with healthy backends (also: nothing to track).
    pub const SERVING: DataPath = DataPath {
        upstreams_healthy: true,
        listening: true,
    };
}

/// [`Controls::shutdown`]: a graceful stop (make-before-break handover).
pub const STOP_GRACEFULLY: u32 = 1;
/// [`Controls::shutdown`]: stop now, releasing the VIP.
pub const STOP_NOW: u32 = 2;
/// [`Controls::shutdown`]: stop now; a master leaves the VIP bound for the new instance of this
/// VirtualIP, which starts with [`Controls::successor`] (others stop gracefully).
pub const STOP_FOR_SUCCESSOR: u32 = 3;

/// How the agent talks to a running instance.
pub struct Controls {
    /// [`STOP_GRACEFULLY`], [`STOP_NOW`] or [`STOP_FOR_SUCCESSOR`].
    pub shutdown: watch::Receiver<u32>,
    /// Whether this node's proxy can serve the VIP (listeners open, healthy backends).
    pub data_path: watch::Receiver<DataPath>,
    pub events: mpsc::UnboundedSender<InstanceEvent>,
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
}

/// How an instance ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ended {
    /// The VIP is still bound, for a successor instance ([`STOP_FOR_SUCCESSOR`]).
    pub vip_left_bound: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("opening the VRRP socket on {interface}: {source}")]
    Socket {
        interface: String,
        source: std::io::Error,
    },
    #[error("opening the announcement socket on {interface}: {source}")]
    Announcer {
        interface: String,
        source: std::io::Error,
    },
    #[error("receiving VRRP packets: {0}")]
    Receive(std::io::Error),
    #[error("no addresses configured")]
    NoAddresses,
    #[error(transparent)]
    VridInUse(#[from] VridInUse),
    /// The node must not bind what the VirtualIP asks for (see `net::claim`): not retried until
    /// the configuration changes.
    #[error("{0}")]
    Refused(String),
}

/// What an instance reports while it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstanceEvent {
    StateChanged {
        state: State,
        previous: State,
        reason: String,
        priority: u8,
    },
    /// A router that is not ours uses our VRID (another address list, interval, or unknown peer).
    /// Reported for the first [`MAX_FOREIGN_ROUTERS`] only.
    Collision { from: IpAddr, reason: DropReason },
    /// The address this node sends adverts from (its peers forward connections only to it).
    Source(IpAddr),
}

/// Counters of one instance (exported as metrics by the agent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub adverts_received: u64,
    pub adverts_sent: u64,
    pub other_vrid: u64,
    pub drops: BTreeMap<&'static str, u64>,
    /// Adverts from foreign routers using our VRID, by source (at most
    /// [`MAX_FOREIGN_ROUTERS`] sources; the rest in `collisions_other`).
    pub collisions: BTreeMap<IpAddr, u64>,
    pub collisions_other: u64,
    pub send_errors: u64,
}

impl Stats {
    /// All collision adverts, whatever their source.
    pub fn collisions_total(&self) -> u64 {
        self.collisions.values().sum::<u64>() + self.collisions_other
    }
}

/// Why a packet for our VRID is not accepted, given our configuration (sans IO, testable).
pub fn check_advert(
    config: &InstanceConfig,
    own: &[IpAddr],
    incoming: &Incoming,
) -> Result<Option<Advertisement>, DropReason> {
    if incoming.ttl != TTL {
        return Err(DropReason::BadTtl);
    }
    let advert = packet::decode(&incoming.payload, incoming.src, incoming.dst)?;
    if advert.vrid != config.vrid {
        return Ok(None);
    }
    if advert.version != config.version {
        return Err(DropReason::WrongVersion);
    }
    if own.contains(&incoming.src) {
        return Err(DropReason::OwnAddress);
    }
    if config.version == Version::V2 && advert.auth != config.auth {
        return Err(DropReason::AuthMismatch);
    }
    let ours: BTreeSet<IpAddr> = config.addresses.iter().map(|(a, _)| *a).collect();
    let theirs: BTreeSet<IpAddr> = advert.addresses.iter().copied().collect();
    if ours != theirs {
        return Err(DropReason::AddressMismatch);
    }
    if config.unicast
        && !config.unicast_peers.is_empty()
        && !config.unicast_peers.contains(&incoming.src)
    {
        return Err(DropReason::UnknownPeer);
    }
    Ok(Some(advert))
}

/// Whether a drop means another router uses our VRID.
fn is_collision(reason: DropReason) -> bool {
    matches!(
        reason,
        DropReason::AddressMismatch
            | DropReason::UnknownPeer
            | DropReason::AuthMismatch
            | DropReason::WrongVersion
    )
}

struct Shell {
    config: InstanceConfig,
    netlink: Netlink,
    link: Link,
    /// Where the VIPs live: the interface itself, or its virtual-MAC macvlan.
    vip_link: Link,
    source: IpAddr,
    own: Vec<IpAddr>,
    port: Arc<Port>,
    announcer: Announcer,
    machine: Machine,
    epoch: Instant,
    stats: Arc<Mutex<Stats>>,
    events: mpsc::UnboundedSender<InstanceEvent>,
    /// Announcement bursts still to send: (when, how many per address).
    announce_at: Vec<(Instant, u32)>,
    refresh_at: Option<Instant>,
    /// Retry binding after a failure (the machine is in Fault meanwhile).
    bind_retry_at: Option<Instant>,
    bind_failed: bool,
    /// Tracked interfaces: (index, name, weight, up).
    tracked: Vec<(u32, String, i32, bool)>,
    data_path: DataPath,
    stopped: bool,
    /// Foreign routers already reported by this instance (at most [`MAX_FOREIGN_ROUTERS`]).
    collisions_reported: BTreeSet<IpAddr>,
    /// More foreign routers than that were seen (logged once).
    collisions_capped: bool,
    handover: Option<Handover>,
}

impl Shell {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn bump(&self, f: impl FnOnce(&mut Stats)) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s);
        }
    }

    async fn execute(&mut self, actions: Vec<Action>) {
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::SendAdvert { priority } => self.send_advert(priority),
                Action::BindVip => {
                    // Make before break: with the old master alive, its connections' packets
                    // must find the forwarding rule once clients hear of us. Bounded well
                    // within its patience (it resigns for four of its intervals, and serves on
                    // while being preempted); after a real failure nothing is forwarded, and
                    // the takeover does not wait for iptables.
                    let patience = self
                        .config
                        .advert_interval
                        .min(self.machine.master_adver_interval());
                    if let Some(handover) = &self.handover
                        && self.machine.forwarding_to().is_some()
                        && !handover.settled(2 * patience).await
                    {
                        warn!(
                            vrid = self.config.vrid,
                            "the connection handover rules are late; taking the VIP over without them"
                        );
                    }
                    if let Err(e) = self.bind().await {
                        warn!(vrid = self.config.vrid, error = %e, "cannot bind the virtual addresses; giving up mastership");
                        // Through reevaluate, so that no other change clears this fault
                        // before the retry.
                        self.bind_failed = true;
                        self.bind_retry_at = Some(Instant::now() + Duration::from_secs(1));
                        queue.extend(self.reevaluate());
                    }
                }
                Action::ReleaseVip => {
                    self.announce_at.clear();
                    self.refresh_at = None;
                    for (addr, prefix) in self.config.addresses.clone() {
                        if let Err(e) = self
                            .netlink
                            .remove_address(&self.vip_link, addr, prefix)
                            .await
                        {
                            warn!(vrid = self.config.vrid, %addr, error = %e, "cannot remove a virtual address");
                        }
                    }
                }
                Action::Announce => {
                    let now = Instant::now();
                    self.announce_at = vec![(now, self.config.announce.repeat)];
                    if !self.config.announce.delay.is_zero() {
                        self.announce_at.push((
                            now + self.config.announce.delay,
                            self.config.announce.repeat,
                        ));
                    }
                    self.refresh_at = (!self.config.announce.refresh_interval.is_zero())
                        .then(|| now + self.config.announce.refresh_interval);
                    self.send_due_announcements();
                }
                Action::StateChanged { from, to, reason } => {
                    info!(
                        vrid = self.config.vrid,
                        priority = self.machine.effective_priority(),
                        "state={} previous={} reason=\"{reason}\"",
                        to.name(),
                        from.name().to_lowercase()
                    );
                    let _ = self.events.send(InstanceEvent::StateChanged {
                        state: to,
                        previous: from,
                        reason: reason.to_string(),
                        priority: self.machine.effective_priority(),
                    });
                }
                Action::Reannounce { again_after } => {
                    let now = Instant::now();
                    let repeat = self.config.announce.repeat;
                    self.announce_at.push((now, repeat));
                    self.announce_at.push((now + again_after, repeat));
                    self.send_due_announcements();
                }
                Action::Forward { to } => {
                    if let Some(handover) = &self.handover {
                        let vips: Vec<IpAddr> =
                            self.config.addresses.iter().map(|(a, _)| *a).collect();
                        handover.forward(&vips, to.map(|to| (to, self.link.name.clone())));
                    }
                }
                Action::ForwardRefused { to } => {
                    warn!(
                        vrid = self.config.vrid,
                        master = %to,
                        "connections of this master are not forwarded after a takeover: it is not a known peer of the VirtualIP (standalone: name it in priorities[].sourceAddress or vrrp.unicastPeers)"
                    );
                }
                Action::Stopped => self.stopped = true,
            }
        }
    }

    /// Applies link-state updates; returns whether anything tracked changed.
    async fn on_links(&mut self, updates: Vec<Link>) -> bool {
        let mut changed = false;
        for update in updates {
            if update.index == self.link.index && update.up != self.link.up {
                self.link.up = update.up;
                changed = true;
                if update.up && self.machine.holds_vip() {
                    // Switches forgot us while the link was down: announce again.
                    self.execute(vec![Action::Announce]).await;
                }
            }
            for t in self
                .tracked
                .iter_mut()
                .filter(|t| t.0 == update.index && t.3 != update.up)
            {
                t.3 = update.up;
                changed = true;
            }
        }
        changed
    }

    /// Recomputes the fault condition and the effective priority from everything tracked, and
    /// tells the machine.
    fn reevaluate(&mut self) -> Vec<Action> {
        let now = self.now();
        let mut conditions: Vec<Condition> = self
            .tracked
            .iter()
            .map(|(_, name, weight, up)| Condition {
                name: format!("interface {name}"),
                weight: *weight,
                ok: *up,
            })
            .collect();
        if let Some(weight) = self.config.track_upstreams {
            conditions.push(Condition {
                name: "upstreams".into(),
                weight,
                ok: self.data_path.upstreams_healthy,
            });
        }
        let tracked = effective_priority(self.config.priority, &conditions);
        let fault: Option<&'static str> = if !self.link.up {
            Some("interface down")
        } else if self.bind_failed {
            Some("cannot bind the virtual addresses")
        } else if !self.data_path.listening {
            Some("cannot open a listener")
        } else {
            match &tracked {
                Err(name) if name == "upstreams" => Some("no healthy upstream"),
                Err(_) => Some("tracked interface down"),
                Ok(_) => None,
            }
        };
        let mut actions = Vec::new();
        if let Ok(p) = tracked {
            actions.extend(self.machine.set_priority(now, p));
        }
        actions.extend(
            self.machine
                .set_fault(now, fault.is_some(), fault.unwrap_or("recovered")),
        );
        actions
    }

    async fn bind(&self) -> Result<(), NetError> {
        for (addr, prefix) in &self.config.addresses {
            self.netlink
                .add_address(&self.vip_link, *addr, *prefix)
                .await?;
        }
        Ok(())
    }

    fn destinations(&self) -> Vec<IpAddr> {
        if self.config.unicast {
            self.config.unicast_peers.clone()
        } else if self.source.is_ipv4() {
            vec![IpAddr::V4(MULTICAST_V4)]
        } else {
            vec![IpAddr::V6(MULTICAST_V6)]
        }
    }

    fn send_advert(&mut self, priority: u8) {
        let advert = Advertisement {
            version: self.config.version,
            vrid: self.config.vrid,
            priority,
            interval_cs: (self.config.advert_interval.as_millis() / 10).min(0x0fff) as u16,
            auth: self.config.auth,
            addresses: self.config.addresses.iter().map(|(a, _)| *a).collect(),
        };
        for dst in self.destinations() {
            let bytes = packet::encode(&advert, self.source, dst);
            match self.port.socket().send(&bytes, self.source, dst) {
                Ok(()) => self.bump(|s| s.adverts_sent += 1),
                Err(e) => {
                    // An interface going down makes sends fail; the link watcher handles the state.
                    debug!(vrid = self.config.vrid, %dst, error = %e, "advert not sent");
                    self.bump(|s| s.send_errors += 1);
                }
            }
        }
    }

    fn send_due_announcements(&mut self) {
        let now = Instant::now();
        let mut due = 0;
        self.announce_at.retain(|(at, n)| {
            if *at <= now {
                due += n;
                false
            } else {
                true
            }
        });
        if let Some(at) = self.refresh_at
            && at <= now
        {
            due += self.config.announce.refresh_repeat;
            self.refresh_at = Some(now + self.config.announce.refresh_interval);
        }
        for _ in 0..due {
            for (addr, _) in &self.config.addresses {
                if let Err(e) = self.announcer.announce(*addr) {
                    debug!(vrid = self.config.vrid, %addr, error = %e, "announcement not sent");
                }
            }
        }
    }

    fn next_wakeup(&self) -> Instant {
        let machine = self.machine.poll_timeout().map(|t| self.epoch + t);
        [
            machine,
            self.announce_at.iter().map(|(t, _)| *t).min(),
            self.refresh_at,
            self.bind_retry_at,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
    }

    async fn on_packet(&mut self, packet: Result<Incoming, DropReason>) {
        let incoming = match packet {
            Ok(incoming) => incoming,
            Err(reason) => return self.count_drop(reason),
        };
        match check_advert(&self.config, &self.own, &incoming) {
            Ok(None) => self.bump(|s| s.other_vrid += 1),
            Ok(Some(advert)) => {
                self.bump(|s| s.adverts_received += 1);
                let received = Received {
                    from: incoming.src,
                    priority: advert.priority,
                    interval: Duration::from_millis(u64::from(advert.interval_cs) * 10),
                };
                let now = self.now();
                let actions = self.machine.handle_advert(now, received);
                self.execute(actions).await;
            }
            Err(reason) => {
                self.count_drop(reason);
                if is_collision(reason) {
                    self.collision(incoming.src, reason);
                }
            }
        }
    }

    fn count_drop(&self, reason: DropReason) {
        self.bump(|s| *s.drops.entry(reason.label()).or_default() += 1);
        debug!(vrid = self.config.vrid, reason = %reason, "advert dropped");
    }

    /// Another router uses our VRID: reported once per foreign address, then counted; past
    /// [`MAX_FOREIGN_ROUTERS`] addresses, counted together and logged once.
    fn collision(&mut self, from: IpAddr, reason: DropReason) {
        self.bump(|s| {
            if s.collisions.len() < MAX_FOREIGN_ROUTERS || s.collisions.contains_key(&from) {
                *s.collisions.entry(from).or_default() += 1;
            } else {
                s.collisions_other += 1;
            }
        });
        // Once per instance, not per counter: the counters outlive a restart with another VRID,
        // and a router colliding with the new VRID must be reported again.
        if self.collisions_reported.contains(&from) {
            return;
        }
        if self.collisions_reported.len() < MAX_FOREIGN_ROUTERS {
            self.collisions_reported.insert(from);
            warn!(vrid = self.config.vrid, %from, reason = %reason, "VRID collision: another router uses this virtual router ID");
            let _ = self.events.send(InstanceEvent::Collision { from, reason });
        } else if !self.collisions_capped {
            self.collisions_capped = true;
            warn!(
                vrid = self.config.vrid,
                "more than {MAX_FOREIGN_ROUTERS} foreign routers use this virtual router ID (spoofed adverts?); the others are counted, not reported"
            );
        }
    }
}

/// Runs one instance until it has stopped (see [`Controls::shutdown`]).
pub async fn run(config: InstanceConfig, controls: Controls) -> Result<Ended, InstanceError> {
    run_on(&Host::new()?, config, controls).await
}

/// Runs one instance with the sockets and netlink connection of `host`, shared with the agent's
/// other instances.
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
    } = controls;
    let first = config
        .addresses
        .first()
        .map(|(a, _)| *a)
        .ok_or(InstanceError::NoAddresses)?;
    let ipv6 = first.is_ipv6();
    let netlink = host.netlink.clone();
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
    // One dump serves the claim check, the stale-address check, the source address and our
    // own addresses.
    let addresses = netlink.addresses().await?;
    let gateways = netlink.default_gateways().await?;
    for (addr, prefix) in &config.addresses {
        if let Some(why) = claim::refusal(*addr, *prefix, link.index, &addresses, &gateways) {
            return Err(InstanceError::Refused(why));
        }
    }
    let vips: Vec<IpAddr> = config.addresses.iter().map(|(a, _)| *a).collect();
    // Buoy's addresses left by an earlier instance must not make two nodes answer for the VIP
    // (a successor's were left for it on purpose); an address Buoy did not add is refused
    // above, never removed.
    for stale in addresses
        .iter()
        .filter(|a| vips.contains(&a.address) && a.buoys() && !successor)
    {
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
    let mut adverts = port.subscribe(config.vrid)?;
    let vip_link = if config.virtual_mac {
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
        vmac
    } else {
        link.clone()
    };
    let announcer = Announcer::open(vip_link.index, &vip_link.name, vip_link.mac, !ipv6, ipv6)
        .map_err(|source| InstanceError::Announcer {
            interface: vip_link.name.clone(),
            source,
        })?;
    let mut link_events = host.link_updates();
    let links = netlink.links().await?;
    let mut tracked = Vec::new();
    for (name, weight) in &config.track_interfaces {
        let l = links
            .iter()
            .find(|l| &l.name == name)
            .ok_or_else(|| NetError::NoSuchInterface(name.clone()))?;
        tracked.push((l.index, name.clone(), *weight, l.up));
    }
    let initial_data_path = *data_path.borrow();
    let machine = Machine::new(MachineConfig {
        version: config.version,
        priority: config.priority,
        advert_interval: config.advert_interval,
        adverts_per_interval: config.adverts_per_interval,
        preempt: config.preempt,
        preempt_delay: config.preempt_delay,
        primary_address: source,
        handover_forward: if handover.is_some() {
            config.handover_forward
        } else {
            Duration::ZERO
        },
    });
    if let Some(handover) = &handover {
        // From now until the agent exits: our sockets stay reachable after the VIP leaves.
        handover.deliver(&vips);
    }
    info!(vrid = config.vrid, interface = %link.name, %source, priority = config.priority, "VRRP instance starting");
    let mut shell = Shell {
        config,
        netlink,
        link: link.clone(),
        vip_link,
        source,
        own,
        port,
        announcer,
        machine,
        epoch: Instant::now(),
        stats,
        events,
        announce_at: Vec::new(),
        refresh_at: None,
        bind_retry_at: None,
        bind_failed: false,
        tracked,
        data_path: initial_data_path,
        stopped: false,
        collisions_reported: BTreeSet::new(),
        collisions_capped: false,
        handover,
    };
    let _ = shell.events.send(InstanceEvent::Source(source));
    if let Some(p) = &mut peers {
        let known = p.borrow_and_update().clone();
        let actions = shell.machine.set_known_peers(known);
        shell.execute(actions).await;
    }
    let now = shell.now();
    let mut actions = shell.reevaluate();
    actions.extend(if successor {
        shell.machine.startup_as_successor(now)
    } else {
        shell.machine.startup(now)
    });
    shell.execute(actions).await;
    let mut signals_seen = 0;

    while !shell.stopped {
        let wake = shell.next_wakeup();
        tokio::select! {
            _ = sleep_until(wake) => {
                let now = shell.now();
                let actions = shell.machine.handle_timeout(now);
                shell.execute(actions).await;
                shell.send_due_announcements();
                if shell.bind_retry_at.is_some_and(|t| t <= Instant::now()) {
                    shell.bind_retry_at = None;
                    shell.bind_failed = false;
                    let actions = shell.reevaluate();
                    shell.execute(actions).await;
                }
            }
            incoming = adverts.recv() => match incoming {
                Some(incoming) => shell.on_packet(Ok(incoming)).await,
                None => {
                    // The interface's socket failed: without adverts we would wrongly become
                    // master, so stop (and let the supervisor restart us) instead.
                    let actions = shell.machine.stop_now();
                    shell.execute(actions).await;
                    return Err(InstanceError::Receive(std::io::Error::other("the VRRP socket of this interface failed")));
                }
            },
            update = link_events.recv() => {
                let updates = match update {
                    Ok(update) => vec![update],
                    // Missed some changes: read the current state of every link instead.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => shell.netlink.links().await.unwrap_or_default(),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => Vec::new(),
                };
                if shell.on_links(updates).await {
                    let actions = shell.reevaluate();
                    shell.execute(actions).await;
                }
            }
            Ok(()) = data_path.changed() => {
                shell.data_path = *data_path.borrow();
                let actions = shell.reevaluate();
                shell.execute(actions).await;
            }
            Some(known) = async {
                match &mut peers {
                    Some(p) => p.changed().await.ok().map(|()| p.borrow_and_update().clone()),
                    None => std::future::pending().await,
                }
            } => {
                let actions = shell.machine.set_known_peers(known);
                shell.execute(actions).await;
            }
            changed = shutdown.changed() => {
                let level = if changed.is_ok() { *shutdown.borrow() } else { STOP_NOW };
                if level != signals_seen {
                    signals_seen = level;
                    let now = shell.now();
                    let actions = match level {
                        STOP_GRACEFULLY => shell.machine.shutdown(now),
                        STOP_FOR_SUCCESSOR => shell.machine.hand_to_successor(now),
                        _ => shell.machine.stop_now(),
                    };
                    shell.execute(actions).await;
                }
            }
        }
    }
    let vip_left_bound = shell.machine.handed_to_successor();
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
    Ok(Ended { vip_left_bound })
}

#[cfg(test)]
mod tests {
    use super::*;

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
