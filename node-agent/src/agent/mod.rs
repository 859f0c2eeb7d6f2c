//! Runs a node's desired state: one supervised VRRP instance per VirtualIP and the proxy's
//! listeners, reconciled incrementally (changing one VirtualIP never touches another), with the
//! proxy's view of each VIP (listeners open, healthy backends) fed to its instance, and the
//! VirtualIP's peers (the only addresses its connections may be forwarded to).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use buoy_vrrp::machine::{Role, State};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{info, warn};

use crate::{
    net::{
        cleanup,
        handover::{Handover, chain_name},
        ledger::Ledger,
    },
    node::{NodeConfig, VipPlan},
    proxy::{
        metrics::ProxyMetrics,
        service::{ListenError, PoolReport, ProxyService},
    },
    track,
    vrrp::{
        host::{Host, PortStats},
        instance::{
            self, AddressUpdate, Controls, DataPath, InstanceError, InstanceEvent, Stats, Stop,
        },
    },
};

pub mod ecmp;

use ecmp::{BgpSettings, Ecmp};

/// What this node knows about one of its VirtualIPs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipStatus {
    /// Master (addresses bound and announced, listeners open), Backup, Fault, Initialize.
    pub state: Role,
    /// Effective priority (after tracking).
    pub priority: u8,
    /// Why the state was entered (the last transition).
    pub reason: String,
    /// When the state was entered.
    pub since: SystemTime,
    /// Routers seen using our router ID that are not ours (at most
    /// [`instance::MAX_FOREIGN_ROUTERS`]).
    pub collisions: BTreeMap<IpAddr, String>,
    /// Every listener is open and has a healthy backend on this node.
    pub serving: bool,
    /// Why not, when not serving (a listener that cannot open, a pool without backends).
    pub not_serving: Option<String>,
    /// The address this node sends its adverts from.
    pub address: Option<IpAddr>,
    /// What the node serves it with but should be told (see [`VipPlan::warnings`]).
    pub warnings: Vec<String>,
}

impl VipStatus {
    pub(crate) fn new(state: Role) -> VipStatus {
        VipStatus {
            state,
            priority: 0,
            reason: String::new(),
            since: SystemTime::now(),
            collisions: BTreeMap::new(),
            serving: false,
            not_serving: None,
            address: None,
            warnings: Vec::new(),
        }
    }

    /// One line on why the node is in this state and what it lacks, for the VirtualIP's
    /// status entry and Events.
    pub(crate) fn message(&self) -> String {
        let mut parts = Vec::new();
        if !self.reason.is_empty() {
            parts.push(self.reason.clone());
        }
        if let Some(why) = &self.not_serving {
            parts.push(format!("not serving: {why}"));
        }
        parts.extend(self.warnings.iter().cloned());
        parts.join("; ")
    }
}

/// The status of every VirtualIP of the node, by `namespace/name`.
pub(crate) type NodeStatus = BTreeMap<String, VipStatus>;

struct Running {
    plan: VipPlan,
    shutdown: watch::Sender<Option<Stop>>,
    data_path: watch::Sender<DataPath>,
    peers: watch::Sender<BTreeSet<IpAddr>>,
    /// A group's addresses, changed in place.
    addresses: watch::Sender<AddressUpdate>,
    stats: Arc<Mutex<Stats>>,
    /// Ends with whether the VIP was left bound for a successor instance.
    task: JoinHandle<bool>,
    /// The `track.httpGet` probe, stopped with the instance.
    http_get: Option<track::RunningProbe>,
}

/// Where the agent keeps its ledger, and who it is on the node.
#[derive(Clone, Debug)]
pub struct Identity {
    /// `standalone`, or the operator's placement key: names the ledger and the handover chain.
    pub name: String,
    /// The state directory (`--state-dir`); `None`: no crash cleanup (tests, the debug
    /// commands).
    pub state_dir: Option<PathBuf>,
}

/// Runs this node's VRRP instances and proxy from the desired state, and reports their status.
pub struct Agent {
    proxy: ProxyService,
    running: BTreeMap<String, Running>,
    /// Listeners that could not open at the last apply (retried by [`Agent::tick`]).
    listen_errors: Vec<ListenError>,
    desired: NodeConfig,
    /// The status of each instance (a group's under its `group:` key) and of each fault.
    status: watch::Sender<NodeStatus>,
    /// The VirtualIPs each group instance serves: its status is theirs.
    members: watch::Sender<BTreeMap<String, Vec<String>>>,
    /// The status by VirtualIP, as reported.
    by_vip: watch::Sender<NodeStatus>,
    events: mpsc::UnboundedSender<(String, InstanceEvent)>,
    /// The node's connection handover rules, shared by every instance.
    handover: Option<Handover>,
    /// Netlink, the link watcher and the VRRP sockets, shared by every instance (one raw
    /// socket per interface and family, not one per VirtualIP).
    host: Option<Arc<Host>>,
    identity: Identity,
    ledger: Ledger,
    /// What each pool has on this node, refreshed with the data path.
    pools: watch::Sender<BTreeMap<String, PoolReport>>,
    /// The VirtualIPs announced by BGP.
    ecmp: Ecmp,
}

/// How long a graceful stop of one instance may take: the handover waits for the new master's
/// first advert (3 × the longest interval plus margin).
const STOP_GRACE: Duration = Duration::from_secs(5);
/// A failed instance (interface missing, socket error) is restarted after this.
const RESTART_BACKOFF: Duration = Duration::from_secs(2);
/// An instance refused what its VirtualIP asks for (a node's own address): tried again after
/// this, in case the node changed (the configuration changing restarts it at once).
const REFUSED_BACKOFF: Duration = Duration::from_secs(30);

impl Agent {
    /// A node agent of `identity` writing what it puts on the host to `ledger` (see
    /// `net::cleanup::recover`, which undoes a dead predecessor's first), its proxy reporting
    /// to `metrics`. Instance events update the status channel.
    pub(crate) fn with_ledger(identity: Identity, ledger: Ledger, metrics: ProxyMetrics) -> Agent {
        let (status, _) = watch::channel(NodeStatus::new());
        let (events, mut events_rx) = mpsc::unbounded_channel::<(String, InstanceEvent)>();
        let status_tx = status.clone();
        tokio::spawn(async move {
            while let Some((key, event)) = events_rx.recv().await {
                status_tx.send_modify(|all| apply_event(all, key, event));
            }
        });
        let (members, _) = watch::channel(BTreeMap::new());
        let (by_vip, _) = watch::channel(NodeStatus::new());
        tokio::spawn(fan_out(
            status.subscribe(),
            members.subscribe(),
            by_vip.clone(),
        ));
        Agent {
            proxy: ProxyService::new(metrics),
            running: BTreeMap::new(),
            listen_errors: Vec::new(),
            desired: NodeConfig::default(),
            status,
            members,
            by_vip,
            events,
            handover: Handover::start(chain_name(&identity.name), ledger.clone())
                .inspect_err(|e| warn!(error = %e, "no connection handover: a VIP moving between live nodes may reset connections"))
                .ok(),
            // Without it each instance opens its own (and reports the same error if it fails).
            host: Host::with_ledger(ledger.clone()).ok(),
            identity,
            ledger,
            pools: watch::channel(BTreeMap::new()).0,
            ecmp: Ecmp::new(BgpSettings::default()),
        }
    }

    /// Follows this node's side of its BGP sessions, by BGPPeer name.
    pub(crate) fn bgp_report(&self) -> watch::Receiver<ecmp::BgpReport> {
        self.ecmp.report()
    }

    /// How this agent reaches FRR for the VirtualIPs announced by BGP (before the first
    /// [`Agent::apply`]).
    pub(crate) fn set_bgp(&mut self, settings: BgpSettings) {
        self.ecmp = Ecmp::new(settings);
    }

    /// Follows every status change of this node's VirtualIPs (a VRRP group's status is each
    /// member's).
    pub fn status(&self) -> watch::Receiver<NodeStatus> {
        self.by_vip.subscribe()
    }

    /// The counters of the VRRP sockets: packets no instance took, per interface and family.
    pub(crate) fn port_stats(&self) -> Vec<(String, bool, PortStats)> {
        self.host
            .as_ref()
            .map(|h| h.port_stats())
            .unwrap_or_default()
    }

    /// Follows what each pool the node runs has: backends, usable ones, problems.
    pub(crate) fn pool_status(&self) -> watch::Receiver<BTreeMap<String, PoolReport>> {
        self.pools.subscribe()
    }

    /// The counters of each running instance.
    pub(crate) fn stats(&self) -> BTreeMap<String, Stats> {
        self.running
            .iter()
            .filter_map(|(k, r)| r.stats.lock().ok().map(|s| (k.clone(), s.clone())))
            .collect()
    }

    /// Brings the node to `desired`: listeners first (so that a new master can serve at once),
    /// then instances are stopped (gracefully, handing over), restarted when their VRRP settings
    /// changed, or started.
    pub async fn apply(&mut self, desired: NodeConfig) {
        self.listen_errors = self.proxy.apply(&desired.proxy).await;
        for e in &self.listen_errors {
            warn!(error = %e, "cannot open a listener; its VirtualIP goes to Fault until it can");
        }
        let (successors, mut carried) = self.stop_changed(&desired).await;
        self.members.send_if_modified(|m| {
            let now: BTreeMap<String, Vec<String>> = desired
                .vips
                .iter()
                .filter(|(_, p)| !p.members.is_empty())
                .map(|(k, p)| (k.clone(), p.members.clone()))
                .collect();
            let changed = *m != now;
            *m = now;
            changed
        });
        for (key, plan) in &desired.vips {
            match self.running.get_mut(key) {
                // Same VRRP settings: only the listener set, peers, warnings or (for a group)
                // addresses may differ.
                Some(r) => {
                    r.peers.send_if_modified(|p| {
                        let changed = *p != plan.peers;
                        p.clone_from(&plan.peers);
                        changed
                    });
                    if r.plan.instance.addresses != plan.instance.addresses {
                        let _ = r.addresses.send(AddressUpdate {
                            addresses: plan.instance.addresses.clone(),
                            moved: moved_elsewhere(key, &r.plan, &desired),
                        });
                    }
                    r.plan = plan.clone();
                }
                None => {
                    let r = self.start(
                        plan.clone(),
                        carried.remove(key).unwrap_or_default(),
                        successors.contains(key),
                    );
                    self.running.insert(key.clone(), r);
                }
            }
        }
        self.report_faults_and_warnings(&desired);
        self.ecmp
            .apply(self.host.as_ref(), self.handover.as_ref(), &desired)
            .await;
        self.desired = desired;
        self.refresh_data_path();
        self.refresh_bgp().await;
    }

    /// Feeds the BGP announcement what the node can serve now.
    async fn refresh_bgp(&mut self) {
        self.ecmp
            .refresh(self.host.as_ref(), &self.proxy, &self.status)
            .await;
    }

    /// Stops the instances whose VRRP settings changed or that are no longer wanted. Returns
    /// the VirtualIPs whose master kept the VIP bound for its successor, and the counters of
    /// the instances that restart.
    async fn stop_changed(
        &mut self,
        desired: &NodeConfig,
    ) -> (BTreeSet<String>, BTreeMap<String, Arc<Mutex<Stats>>>) {
        let gone: Vec<String> = self
            .running
            .iter()
            .filter(|(key, r)| {
                desired.vips.get(*key).is_none_or(|p| {
                    p.instance != r.plan.instance
                        && !r.plan.instance.same_but_addresses(&p.instance)
                })
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut stopping = Vec::new();
        let mut successors = BTreeSet::new();
        // A VirtualIP whose instance restarts (another VRID, priority…) keeps its counters: they
        // are Prometheus counters, and a fresh start from zero would hide new drops until they
        // exceed the old total.
        let mut carried = BTreeMap::new();
        for key in gone {
            if let Some(r) = self.running.remove(&key) {
                if desired.vips.contains_key(&key) {
                    carried.insert(key.clone(), r.stats.clone());
                }
                // Same addresses on the same interface (another VRID, priority, interval…):
                // a master keeps the VIP bound and its successor starts as master, so nothing
                // moves. Otherwise it hands over to another node, make-before-break.
                let keep = desired
                    .vips
                    .get(&key)
                    .is_some_and(|p| can_succeed(&r.plan.instance, &p.instance));
                info!(virtualip = %key, keep_the_vip_if_master = keep, "stopping the VRRP instance");
                let _ = r.shutdown.send(Some(if keep {
                    Stop::ForSuccessor
                } else {
                    Stop::Gracefully
                }));
                stopping.push((key, r.shutdown, r.task));
            }
        }
        for (key, shutdown, task) in stopping {
            if stop_instance(&key, &shutdown, task).await {
                successors.insert(key.clone());
            }
            if !desired.vips.contains_key(&key) {
                self.status.send_modify(|s| {
                    s.remove(&key);
                });
            }
        }
        (successors, carried)
    }

    /// What cannot run here is a Fault of this node, with the reason; what runs has its
    /// warnings.
    fn report_faults_and_warnings(&self, desired: &NodeConfig) {
        self.status.send_if_modified(|all| {
            let mut changed = false;
            for (key, why) in &desired.faults {
                let entry = all
                    .entry(key.clone())
                    .or_insert_with(|| VipStatus::new(Role::Fault));
                if entry.state != Role::Fault || entry.reason != *why {
                    entry.state = Role::Fault;
                    entry.reason.clone_from(why);
                    entry.priority = 0;
                    entry.since = SystemTime::now();
                    changed = true;
                }
            }
            all.retain(|key, _| {
                let keep = desired.vips.contains_key(key)
                    || desired.faults.contains_key(key)
                    || desired.ecmp.contains_key(key);
                changed |= !keep;
                keep
            });
            for (key, plan) in &desired.vips {
                if let Some(entry) = all.get_mut(key)
                    && entry.warnings != plan.warnings
                {
                    entry.warnings.clone_from(&plan.warnings);
                    changed = true;
                }
            }
            changed
        });
    }

    /// Starts the instance of `plan`; `successor`: its previous instance left the VIP bound.
    fn start(&self, plan: VipPlan, stats: Arc<Mutex<Stats>>, successor: bool) -> Running {
        let (shutdown, shutdown_rx) = watch::channel(None);
        let http_get = plan
            .instance
            .track_http_get
            .clone()
            .map(|t| track::start(&plan.key, t));
        let mut first = self.proxy.data_path(&plan.listeners);
        first.http_get_ok = http_get.as_ref().is_none_or(|p| *p.ok.borrow());
        let (data_path, data_path_rx) = watch::channel(first);
        let (peers, peers_rx) = watch::channel(plan.peers.clone());
        let (addresses, addresses_rx) = watch::channel(AddressUpdate {
            addresses: plan.instance.addresses.clone(),
            moved: BTreeSet::new(),
        });
        let group = plan.instance.group;
        let key = plan.key.clone();
        let config = plan.instance.clone();
        let events = self.events.clone();
        let stats_for_task = stats.clone();
        let handover = self.handover.clone();
        let host = self.host.clone();
        info!(virtualip = %key, vrid = config.vrid, priority = config.priority, "starting the VRRP instance");
        let task = tokio::spawn(async move {
            let mut successor = successor;
            loop {
                let (tx, mut rx) = mpsc::unbounded_channel();
                let forward_key = key.clone();
                let forward_events = events.clone();
                let forward = tokio::spawn(async move {
                    while let Some(e) = rx.recv().await {
                        let _ = forward_events.send((forward_key.clone(), e));
                    }
                });
                let controls = Controls {
                    shutdown: shutdown_rx.clone(),
                    data_path: data_path_rx.clone(),
                    events: tx,
                    stats: stats_for_task.clone(),
                    handover: handover.clone(),
                    // Only the first run: a restart after a failure starts afresh.
                    successor: std::mem::take(&mut successor),
                    peers: Some(peers_rx.clone()),
                    addresses: group.then(|| addresses_rx.clone()),
                };
                // A restart after a failure runs with the group's addresses as they are now.
                let mut config = config.clone();
                if group {
                    config
                        .addresses
                        .clone_from(&addresses_rx.borrow().addresses);
                }
                let result = match &host {
                    Some(host) => instance::run_on(host, config.clone(), controls).await,
                    None => instance::run(config.clone(), controls).await,
                };
                let _ = forward.await;
                let e = match result {
                    Ok(ended) => return ended.vip_left_bound,
                    Err(e) => e,
                };
                if shutdown_rx.borrow().is_some() {
                    return false;
                }
                let backoff = if matches!(e, InstanceError::Refused(_)) {
                    warn!(virtualip = %key, reason = %e, "refusing to bind the VirtualIP's addresses on this node");
                    REFUSED_BACKOFF
                } else {
                    warn!(virtualip = %key, error = %e, "the VRRP instance failed; restarting it");
                    RESTART_BACKOFF
                };
                let _ = events.send((
                    key.clone(),
                    InstanceEvent::StateChanged {
                        state: State::Fault,
                        previous: State::Initialize,
                        reason: e.to_string(),
                        priority: 0,
                    },
                ));
                let mut shutdown_wait = shutdown_rx.clone();
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = shutdown_wait.changed() => return false,
                }
            }
        });
        Running {
            plan,
            shutdown,
            data_path,
            peers,
            addresses,
            stats,
            task,
            http_get,
        }
    }

    /// Feeds each instance what the proxy says about its listeners and retries listeners that
    /// could not open. Call it often (a few times a second): health changes reach VRRP this way.
    pub(crate) async fn tick(&mut self) {
        if !self.listen_errors.is_empty() {
            self.listen_errors = self.proxy.apply(&self.desired.proxy).await;
        }
        self.refresh_data_path();
        self.refresh_bgp().await;
    }

    fn refresh_data_path(&self) {
        let reports = self.proxy.pool_reports();
        self.pools.send_if_modified(|p| {
            let changed = *p != reports;
            *p = reports;
            changed
        });
        for (key, r) in &self.running {
            let mut now = self.proxy.data_path(&r.plan.listeners);
            now.local_endpoint = r.plan.local_endpoint.unwrap_or(true);
            now.http_get_ok = r.http_get.as_ref().is_none_or(|p| *p.ok.borrow());
            r.data_path.send_if_modified(|d| {
                let changed = *d != now;
                *d = now;
                changed
            });
            // A route that cannot serve is said too, though the VRRP data path stays healthy.
            let why = self.proxy.why_not_serving(&r.plan.listeners);
            let serving = now.listening && now.upstreams_healthy && why.is_none();
            self.status.send_if_modified(|all| match all.get_mut(key) {
                Some(s) if s.serving != serving || s.not_serving != why => {
                    s.serving = serving;
                    s.not_serving = why;
                    true
                }
                _ => false,
            });
        }
    }

    /// Stops everything gracefully: every master hands over (priority 0, make-before-break),
    /// listeners stop accepting, and open connections get up to `grace` to finish.
    pub async fn shutdown(mut self, grace: Duration) {
        // BGP routes drain while everything still serves: routers move flows to the other
        // nodes first, which hand this node's connections back to it.
        self.ecmp.withdraw().await;
        for r in self.running.values() {
            let _ = r.shutdown.send(Some(Stop::Gracefully));
        }
        for (key, r) in std::mem::take(&mut self.running) {
            stop_instance(&key, &r.shutdown, r.task).await;
        }
        self.proxy.stop_listening().await;
        let deadline = tokio::time::Instant::now() + grace;
        while self.proxy.open_connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.ecmp.release(self.host.as_ref()).await;
        // The shared policy routing goes with the namespace's last agent.
        let last_agent = self
            .identity
            .state_dir
            .as_ref()
            .is_none_or(|dir| !cleanup::others_alive(dir, &self.identity.name));
        if let Some(handover) = &self.handover {
            handover.clear(last_agent).await;
        }
        // Everything it listed is undone: nothing for a successor to clean up.
        self.ledger.close();
        info!(
            open = self.proxy.open_connections(),
            "stopped; every virtual address released"
        );
    }
}

/// Waits for a stopping instance; past the grace period it is told to stop at once (its
/// handover may wait up to 4 adverts of a long interval), and finally aborted. Returns whether
/// it left the VIP bound for a successor.
async fn stop_instance(
    key: &str,
    shutdown: &watch::Sender<Option<Stop>>,
    mut task: JoinHandle<bool>,
) -> bool {
    if let Ok(ended) = tokio::time::timeout(STOP_GRACE, &mut task).await {
        return ended.unwrap_or(false);
    }
    warn!(virtualip = %key, "the handover takes too long; stopping at once");
    let _ = shutdown.send(Some(Stop::Now));
    if tokio::time::timeout(Duration::from_secs(2), &mut task)
        .await
        .is_err()
    {
        warn!(virtualip = %key, "the instance did not stop; aborting it");
        task.abort();
    }
    false
}

/// Whether a new instance can take over the VIP its predecessor leaves bound: the same
/// addresses on the same interface, without virtual MACs (the macvlan holding the VIP is
/// re-created at start).
fn can_succeed(old: &instance::InstanceConfig, new: &instance::InstanceConfig) -> bool {
    old.addresses == new.addresses
        && old.interface == new.interface
        && !old.virtual_mac
        && !new.virtual_mac
}

/// Of the addresses `old` (the running plan of `key`) loses, those another instance of the
/// node carries in `desired`: they moved, and are handed over make-before-break.
fn moved_elsewhere(key: &str, old: &VipPlan, desired: &NodeConfig) -> BTreeSet<IpAddr> {
    let Some(new) = desired.vips.get(key) else {
        return BTreeSet::new();
    };
    let carried: BTreeSet<IpAddr> = desired
        .vips
        .iter()
        .filter(|(k, _)| k.as_str() != key)
        .flat_map(|(_, p)| p.instance.vips())
        .collect();
    old.instance
        .addresses
        .iter()
        .filter(|a| !new.instance.addresses.contains(a))
        .map(|(a, _)| *a)
        .filter(|a| carried.contains(a))
        .collect()
}

/// The status by VirtualIP: a group instance's status is each member's.
fn by_vip(status: &NodeStatus, members: &BTreeMap<String, Vec<String>>) -> NodeStatus {
    let mut out = NodeStatus::new();
    for (key, s) in status {
        match members.get(key) {
            Some(ms) => {
                for m in ms {
                    out.insert(m.clone(), s.clone());
                }
            }
            None => {
                out.insert(key.clone(), s.clone());
            }
        }
    }
    out
}

/// Keeps `out` at [`by_vip`] of the instances' status and the groups' members.
async fn fan_out(
    mut status: watch::Receiver<NodeStatus>,
    mut members: watch::Receiver<BTreeMap<String, Vec<String>>>,
    out: watch::Sender<NodeStatus>,
) {
    loop {
        let now = by_vip(&status.borrow_and_update(), &members.borrow_and_update());
        out.send_if_modified(|s| {
            let changed = *s != now;
            *s = now;
            changed
        });
        tokio::select! {
            r = status.changed() => if r.is_err() { return },
            r = members.changed() => if r.is_err() { return },
        }
    }
}

fn apply_event(all: &mut NodeStatus, key: String, event: InstanceEvent) {
    let entry = all
        .entry(key)
        .or_insert_with(|| VipStatus::new(Role::Initialize));
    match event {
        InstanceEvent::StateChanged {
            state,
            reason,
            priority,
            ..
        } => {
            if entry.state != state.role() {
                entry.since = SystemTime::now();
            }
            entry.state = state.role();
            entry.priority = priority;
            entry.reason = reason;
        }
        InstanceEvent::Collision { from, reason } => {
            if entry.collisions.len() < instance::MAX_FOREIGN_ROUTERS {
                entry.collisions.insert(from, reason.to_string());
            }
        }
        InstanceEvent::Source(address) => entry.address = Some(address),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_update_the_status() {
        let mut all = NodeStatus::new();
        apply_event(
            &mut all,
            "default/a".into(),
            InstanceEvent::StateChanged {
                state: State::Master,
                previous: State::Backup,
                reason: "master down".into(),
                priority: 102,
            },
        );
        let a = &all["default/a"];
        assert_eq!((a.state, a.priority), (Role::Master, 102));
        let since = a.since;
        apply_event(
            &mut all,
            "default/a".into(),
            InstanceEvent::StateChanged {
                state: State::Resigning,
                previous: State::Master,
                reason: "stopping".into(),
                priority: 0,
            },
        );
        // Resigning is still MASTER to the outside: the transition time stays.
        assert_eq!(all["default/a"].since, since);
        apply_event(
            &mut all,
            "default/a".into(),
            InstanceEvent::Collision {
                from: "10.0.0.9".parse().unwrap(),
                reason: buoy_vrrp::packet::DropReason::UnknownPeer,
            },
        );
        assert!(
            all["default/a"]
                .collisions
                .contains_key(&"10.0.0.9".parse::<IpAddr>().unwrap())
        );
    }

    #[test]
    fn a_groups_status_is_each_members_and_addresses_moving_elsewhere_are_told_apart() {
        let mut status = NodeStatus::new();
        status.insert("group:lb-v4-0".into(), VipStatus::new(Role::Master));
        status.insert("web/faulty".into(), VipStatus::new(Role::Fault));
        let members = BTreeMap::from([(
            "group:lb-v4-0".to_string(),
            vec!["web/a".to_string(), "web/b".to_string()],
        )]);
        let out = by_vip(&status, &members);
        assert_eq!(
            out.keys().collect::<Vec<_>>(),
            ["web/a", "web/b", "web/faulty"]
        );
        assert_eq!(out["web/b"].state, Role::Master);

        let plan = |key: &str, addresses: &[&str]| VipPlan {
            key: key.into(),
            instance: instance::InstanceConfig {
                addresses: addresses.iter().map(|a| (a.parse().unwrap(), 32)).collect(),
                group: true,
                ..Default::default()
            },
            listeners: Vec::new(),
            peers: BTreeSet::new(),
            warnings: Vec::new(),
            local_endpoint: None,
            members: Vec::new(),
            bgp: false,
        };
        let old = plan("group:g", &["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        let mut desired = NodeConfig::default();
        desired
            .vips
            .insert("group:g".into(), plan("group:g", &["10.0.0.1"]));
        // 10.0.0.2 now has an instance of its own (a Service that became Local); 10.0.0.3 is
        // gone (its Service was deleted).
        desired
            .vips
            .insert("web/local".into(), plan("web/local", &["10.0.0.2"]));
        assert_eq!(
            moved_elsewhere("group:g", &old, &desired),
            BTreeSet::from(["10.0.0.2".parse::<IpAddr>().unwrap()])
        );
        assert!(
            old.instance
                .same_but_addresses(&desired.vips["group:g"].instance)
        );
        assert!(!old.instance.same_but_addresses(&instance::InstanceConfig {
            vrid: 9,
            ..desired.vips["group:g"].instance.clone()
        }));
    }
}
