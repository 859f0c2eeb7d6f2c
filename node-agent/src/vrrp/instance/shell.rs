//! What an instance does, as its [`Router`] decides: send adverts, bind and release the VIP,
//! announce it, point connection handover, report state changes; and what it reads: adverts
//! (checked, counted by drop reason, foreign routers reported) and link states.

use std::{
    collections::{BTreeSet, VecDeque},
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use buoy_vrrp::{
    fault::LinkState,
    machine::Time,
    packet::{self, Advertisement, DropReason, MULTICAST_V4, MULTICAST_V6},
    receive::{self, Filter},
    router::{Action, Leaving, Router},
};
use tracing::{debug, info, warn};

use super::{
    AddressUpdate, InstanceEvent, MAX_FOREIGN_ROUTERS, Stats, clock::Clock, config::InstanceConfig,
    open::Opened,
};
use crate::{
    net::{
        announce::Announcer,
        handover::Handover,
        netlink::{Link, NetError, Netlink},
    },
    vrrp::{
        host::{Holds, InstanceId, Port},
        socket::Incoming,
    },
};

pub(super) struct Shell {
    pub(super) config: InstanceConfig,
    pub(super) netlink: Netlink,
    link: Link,
    /// Where the VIPs live: the interface itself, or its virtual-MAC macvlan.
    pub(super) vip_link: Link,
    source: IpAddr,
    port: Arc<Port>,
    announcer: Announcer,
    pub(super) filter: Filter,
    pub(super) router: Router,
    pub(super) clock: Clock,
    stats: Arc<Mutex<Stats>>,
    pub(super) events: tokio::sync::mpsc::UnboundedSender<InstanceEvent>,
    /// The router said it stopped.
    pub(super) stopped: bool,
    /// Foreign routers already reported by this instance (at most [`MAX_FOREIGN_ROUTERS`]).
    collisions_reported: BTreeSet<IpAddr>,
    /// More foreign routers than that were seen (logged once).
    collisions_capped: bool,
    handover: Option<Handover>,
    /// Addresses that left the instance's set and may still be bound here.
    leaving: Vec<(IpAddr, u8)>,
    holds: Arc<Holds>,
    id: InstanceId,
}

impl Shell {
    pub(super) fn new(
        config: InstanceConfig,
        opened: Opened,
        router: Router,
        stats: Arc<Mutex<Stats>>,
        events: tokio::sync::mpsc::UnboundedSender<InstanceEvent>,
        handover: Option<Handover>,
    ) -> Shell {
        Shell {
            filter: config.filter(opened.own),
            leaving: Vec::new(),
            holds: opened.holds,
            id: opened.id,
            config,
            netlink: opened.netlink,
            link: opened.link,
            vip_link: opened.vip_link,
            source: opened.source,
            port: opened.port,
            announcer: opened.announcer,
            router,
            clock: Clock::start(),
            stats,
            events,
            stopped: false,
            collisions_reported: BTreeSet::new(),
            collisions_capped: false,
            handover,
        }
    }

    /// Tells the router something at the current time, and does what it decides.
    pub(super) async fn feed(&mut self, event: impl FnOnce(&mut Router, Time) -> Vec<Action>) {
        let now = self.clock.now();
        let actions = event(&mut self.router, now);
        self.execute(actions).await;
    }

    fn bump(&self, f: impl FnOnce(&mut Stats)) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s);
        }
    }

    async fn execute(&mut self, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::SendAdvert { priority } => self.send_advert(priority),
                Action::BindVip { handover_wait } => {
                    if !self.bind(handover_wait).await {
                        // After what is queued: the router is told at once, so that no other
                        // change clears this fault before the retry.
                        let now = self.clock.now();
                        queue.extend(self.router.bind_failed(now));
                    }
                }
                Action::ReleaseVip => self.release().await,
                Action::ReleaseLeft => {
                    let left = std::mem::take(&mut self.leaving);
                    self.remove(&left).await;
                }
                Action::Announce { rounds } => self.announce(rounds),
                Action::StateChanged {
                    from,
                    to,
                    reason,
                    priority,
                } => {
                    info!(
                        vrid = self.config.vrid,
                        priority,
                        "state={} previous={} reason=\"{reason}\"",
                        to.name(),
                        from.name().to_lowercase()
                    );
                    let _ = self.events.send(InstanceEvent::StateChanged {
                        state: to,
                        previous: from,
                        reason: reason.to_string(),
                        priority,
                    });
                }
                Action::Forward { to } => {
                    if let Some(handover) = &self.handover {
                        let vips = self.config.vips();
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

    /// Binds the virtual addresses, after the handover rules if asked; false: it failed.
    async fn bind(&mut self, handover_wait: Option<Duration>) -> bool {
        if let (Some(wait), Some(handover)) = (handover_wait, &self.handover)
            && !handover.settled(wait).await
        {
            warn!(
                vrid = self.config.vrid,
                "the connection handover rules are late; taking the VIP over without them"
            );
        }
        match self.add_addresses().await {
            Ok(()) => {
                self.holds.hold(self.id, self.config.vips());
                true
            }
            Err(e) => {
                warn!(vrid = self.config.vrid, error = %e, "cannot bind the virtual addresses; giving up mastership");
                false
            }
        }
    }

    async fn add_addresses(&self) -> Result<(), NetError> {
        for (addr, prefix) in &self.config.addresses {
            self.netlink
                .add_address(&self.vip_link, *addr, *prefix)
                .await?;
        }
        Ok(())
    }

    /// Releases every address, those that left the set too.
    async fn release(&mut self) {
        let mut all = std::mem::take(&mut self.leaving);
        all.extend(self.config.addresses.iter().copied());
        self.remove(&all).await;
    }

    /// Removes `addresses`, but not one another instance of the node holds now.
    async fn remove(&self, addresses: &[(IpAddr, u8)]) {
        for (addr, prefix) in addresses {
            if !self.holds.let_go(self.id, *addr) {
                debug!(vrid = self.config.vrid, %addr, "another instance of this node holds the address now; left bound");
                continue;
            }
            if let Err(e) = self
                .netlink
                .remove_address(&self.vip_link, *addr, *prefix)
                .await
            {
                warn!(vrid = self.config.vrid, %addr, error = %e, "cannot remove a virtual address");
            }
        }
    }

    /// A group's members changed: the new set of addresses, bound and announced at once by a
    /// master; what left is released as the router decides.
    pub(super) async fn on_addresses(&mut self, update: AddressUpdate) {
        if update.addresses.is_empty() || update.addresses == self.config.addresses {
            return;
        }
        let added = update
            .addresses
            .iter()
            .any(|a| !self.config.addresses.contains(a));
        let left: Vec<(IpAddr, u8)> = self
            .config
            .addresses
            .iter()
            .filter(|a| !update.addresses.contains(a))
            .copied()
            .collect();
        let how = if left.is_empty() {
            None
        } else if left.iter().all(|(a, _)| update.moved.contains(a)) {
            Some(Leaving::Moved)
        } else {
            Some(Leaving::Deleted)
        };
        info!(
            vrid = self.config.vrid,
            addresses = update.addresses.len(),
            left = left.len(),
            "the VRRP group's addresses changed"
        );
        // An address that comes back before it was released stays bound.
        self.leaving.retain(|a| !update.addresses.contains(a));
        self.leaving.extend(left);
        self.config.addresses = update.addresses;
        self.filter.addresses = self.config.vips().into_iter().collect();
        if let Some(handover) = &self.handover {
            handover.deliver(&self.config.vips());
        }
        self.feed(|r, now| r.addresses_changed(now, added, how))
            .await;
    }

    /// The instance ends: what it still holds is another's to hold (its successor's).
    pub(super) fn forget_holds(&self) {
        self.holds.forget(self.id);
    }

    /// A successor holds what its predecessor left bound.
    pub(super) fn hold_all(&self) {
        self.holds.hold(self.id, self.config.vips());
    }

    fn announce(&self, rounds: u32) {
        for _ in 0..rounds {
            for (addr, _) in &self.config.addresses {
                if let Err(e) = self.announcer.announce(*addr) {
                    debug!(vrid = self.config.vrid, %addr, error = %e, "announcement not sent");
                }
            }
        }
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
            addresses: self.config.vips(),
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

    /// Link-state updates, as netlink reports them.
    pub(super) async fn on_links(&mut self, updates: Vec<Link>) {
        let updates: Vec<LinkState> = updates
            .into_iter()
            .map(|l| LinkState {
                index: l.index,
                up: l.up,
            })
            .collect();
        self.feed(|r, now| r.links_changed(now, updates)).await;
    }

    pub(super) async fn on_packet(&mut self, incoming: Incoming) {
        let checked =
            self.filter
                .check(incoming.src, incoming.dst, incoming.ttl, &incoming.payload);
        match checked {
            Ok(None) => self.bump(|s| s.other_vrid += 1),
            Ok(Some(advert)) => {
                self.bump(|s| s.adverts_received += 1);
                let received = receive::received(incoming.src, &advert);
                self.feed(|r, now| r.handle_advert(now, received)).await;
            }
            Err(reason) => {
                self.count_drop(reason);
                if receive::is_collision(reason) {
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
