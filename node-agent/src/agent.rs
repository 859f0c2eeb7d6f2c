//! Runs a node's desired state: one supervised VRRP instance per VirtualIP and the proxy's
//! listeners, reconciled incrementally (changing one VirtualIP never touches another), with the
//! proxy's view of each VIP (listeners open, healthy backends) fed to its instance.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{info, warn};

use crate::{
    net::handover::Handover,
    node::{NodeConfig, VipPlan},
    proxy::service::{ListenError, ProxyService},
    vrrp::{
        host::{Host, PortStats},
        instance::{self, Controls, DataPath, InstanceEvent, Stats},
        machine::State,
    },
};

/// What this node knows about one of its VirtualIPs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipStatus {
    /// `MASTER` (addresses bound and announced, listeners open), `BACKUP`, `FAULT`, `INIT`.
    pub state: &'static str,
    /// Effective priority (after tracking).
    pub priority: u8,
    pub reason: String,
    pub since: SystemTime,
    /// Routers seen using our router ID that are not ours.
    pub collisions: BTreeMap<IpAddr, String>,
    /// Every listener is open and has a healthy backend on this node.
    pub serving: bool,
}

/// The status of every VirtualIP of the node, by `namespace/name`.
pub type NodeStatus = BTreeMap<String, VipStatus>;

struct Running {
    plan: VipPlan,
    shutdown: watch::Sender<u32>,
    data_path: watch::Sender<DataPath>,
    stats: Arc<Mutex<Stats>>,
    /// Ends with whether the VIP was left bound for a successor instance.
    task: JoinHandle<bool>,
}

pub struct Agent {
    proxy: ProxyService,
    running: BTreeMap<String, Running>,
    /// Listeners that could not open at the last apply (retried by [`Agent::tick`]).
    listen_errors: Vec<ListenError>,
    desired: NodeConfig,
    status: watch::Sender<NodeStatus>,
    events: mpsc::UnboundedSender<(String, InstanceEvent)>,
    /// The node's connection handover rules, shared by every instance.
    handover: Option<Handover>,
    /// Netlink, the link watcher and the VRRP sockets, shared by every instance (one raw
    /// socket per interface and family, not one per VirtualIP).
    host: Option<Arc<Host>>,
}

/// How long a graceful stop of one instance may take: the handover waits for the new master's
/// first advert (3 × the longest interval plus margin).
const STOP_GRACE: Duration = Duration::from_secs(5);
/// A failed instance (interface missing, socket error) is restarted after this.
const RESTART_BACKOFF: Duration = Duration::from_secs(2);

impl Agent {
    /// A node agent with nothing to run yet. Instance events update the status channel.
    pub fn new() -> Agent {
        let (status, _) = watch::channel(NodeStatus::new());
        let (events, mut events_rx) = mpsc::unbounded_channel::<(String, InstanceEvent)>();
        let status_tx = status.clone();
        tokio::spawn(async move {
            while let Some((key, event)) = events_rx.recv().await {
                status_tx.send_modify(|all| apply_event(all, key, event));
            }
        });
        Agent {
            proxy: ProxyService::new(),
            running: BTreeMap::new(),
            listen_errors: Vec::new(),
            desired: NodeConfig::default(),
            status,
            events,
            handover: Handover::start()
                .inspect_err(|e| warn!(error = %e, "no connection handover: a VIP moving between live nodes may reset connections"))
                .ok(),
            // Without it each instance opens its own (and reports the same error if it fails).
            host: Host::new().ok(),
        }
    }

    /// Follows every status change of this node's VirtualIPs.
    pub fn status(&self) -> watch::Receiver<NodeStatus> {
        self.status.subscribe()
    }

    /// The counters of the VRRP sockets: packets no instance took, per interface and family.
    pub fn port_stats(&self) -> Vec<(String, bool, PortStats)> {
        self.host
            .as_ref()
            .map(|h| h.port_stats())
            .unwrap_or_default()
    }

    /// The counters of each running instance.
    pub fn stats(&self) -> BTreeMap<String, Stats> {
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
        let gone: Vec<String> = self
            .running
            .iter()
            .filter(|(key, r)| {
                desired
                    .vips
                    .get(*key)
                    .is_none_or(|p| p.instance != r.plan.instance)
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
                let _ = r.shutdown.send(if keep {
                    instance::STOP_FOR_SUCCESSOR
                } else {
                    instance::STOP_GRACEFULLY
                });
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
        for (key, plan) in &desired.vips {
            match self.running.get_mut(key) {
                // Same VRRP settings: only the listener set may differ.
                Some(r) => r.plan = plan.clone(),
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
        self.desired = desired;
        self.refresh_data_path();
    }

    /// Starts the instance of `plan`; `successor`: its previous instance left the VIP bound.
    fn start(&self, plan: VipPlan, stats: Arc<Mutex<Stats>>, successor: bool) -> Running {
        let (shutdown, shutdown_rx) = watch::channel(0u32);
        let (data_path, data_path_rx) = watch::channel(self.proxy.data_path(&plan.listeners));
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
                };
                let result = match &host {
                    Some(host) => instance::run_on(host, config.clone(), controls).await,
                    None => instance::run(config.clone(), controls).await,
                };
                let _ = forward.await;
                let e = match result {
                    Ok(ended) => return ended.vip_left_bound,
                    Err(e) => e,
                };
                if *shutdown_rx.borrow() > 0 {
                    return false;
                }
                warn!(virtualip = %key, error = %e, "the VRRP instance failed; restarting it");
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
                    () = tokio::time::sleep(RESTART_BACKOFF) => {}
                    _ = shutdown_wait.changed() => return false,
                }
            }
        });
        Running {
            plan,
            shutdown,
            data_path,
            stats,
            task,
        }
    }

    /// Feeds each instance what the proxy says about its listeners and retries listeners that
    /// could not open. Call it often (a few times a second): health changes reach VRRP this way.
    pub async fn tick(&mut self) {
        if !self.listen_errors.is_empty() {
            self.listen_errors = self.proxy.apply(&self.desired.proxy).await;
        }
        self.refresh_data_path();
    }

    fn refresh_data_path(&self) {
        for (key, r) in &self.running {
            let now = self.proxy.data_path(&r.plan.listeners);
            r.data_path.send_if_modified(|d| {
                let changed = *d != now;
                *d = now;
                changed
            });
            let serving = now.listening && now.upstreams_healthy;
            self.status.send_if_modified(|all| match all.get_mut(key) {
                Some(s) if s.serving != serving => {
                    s.serving = serving;
                    true
                }
                _ => false,
            });
        }
    }

    /// Stops everything gracefully: every master hands over (priority 0, make-before-break),
    /// listeners stop accepting, and open connections get up to `grace` to finish.
    pub async fn shutdown(mut self, grace: Duration) {
        for r in self.running.values() {
            let _ = r.shutdown.send(instance::STOP_GRACEFULLY);
        }
        for (key, r) in std::mem::take(&mut self.running) {
            stop_instance(&key, &r.shutdown, r.task).await;
        }
        self.proxy.stop_listening().await;
        let deadline = tokio::time::Instant::now() + grace;
        while self.proxy.open_connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Some(handover) = &self.handover {
            handover.clear().await;
        }
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
    shutdown: &watch::Sender<u32>,
    mut task: JoinHandle<bool>,
) -> bool {
    if let Ok(ended) = tokio::time::timeout(STOP_GRACE, &mut task).await {
        return ended.unwrap_or(false);
    }
    warn!(virtualip = %key, "the handover takes too long; stopping at once");
    let _ = shutdown.send(instance::STOP_NOW);
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

impl Default for Agent {
    fn default() -> Self {
        Agent::new()
    }
}

fn apply_event(all: &mut NodeStatus, key: String, event: InstanceEvent) {
    let entry = all.entry(key).or_insert_with(|| VipStatus {
        state: State::Initialize.name(),
        priority: 0,
        reason: String::new(),
        since: SystemTime::now(),
        collisions: BTreeMap::new(),
        serving: false,
    });
    match event {
        InstanceEvent::StateChanged {
            state,
            reason,
            priority,
            ..
        } => {
            if entry.state != state.name() {
                entry.since = SystemTime::now();
            }
            entry.state = state.name();
            entry.priority = priority;
            entry.reason = reason;
        }
        InstanceEvent::Collision { from, reason } => {
            entry.collisions.insert(from, reason.to_string());
        }
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
        assert_eq!((a.state, a.priority), ("MASTER", 102));
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
                reason: crate::vrrp::packet::DropReason::UnknownPeer,
            },
        );
        assert!(
            all["default/a"]
                .collisions
                .contains_key(&"10.0.0.9".parse::<IpAddr>().unwrap())
        );
    }
}
