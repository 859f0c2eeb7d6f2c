//! The IO shell of the BGP announcement: one task per agent that keeps FRR's configuration equal
//! to what the [`Announcer`] decides (the node's peers, and its eligible addresses as /32 and
//! /128 routes, draining ones with GRACEFUL_SHUTDOWN), fires the announcer's timers, and reads
//! the sessions back for status. FRR itself speaks BGP and BFD; nothing here does.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use buoy_crds::BgpSessionState;
use tokio::{
    sync::watch,
    task::JoinHandle,
    time::{Instant, MissedTickBehavior},
};
use tracing::{info, warn};

use super::{
    announce::{Announced, Announcer},
    config::{FrrConfig, PeerConfig, RouteConfig},
    driver::Frr,
    state::SessionState,
};

/// How often the sessions are read back from FRR (and a failed apply retried).
const POLL: Duration = Duration::from_secs(1);

/// This node's side of its BGP sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpNode {
    /// The node's ASN (its peers' `myASN`).
    pub asn: u32,
    /// The peers that select this node, by name.
    pub peers: Vec<PeerConfig>,
}

/// Whether FRR reports the session established.
pub(crate) fn established(session: &SessionState) -> bool {
    session.state == BgpSessionState::Established
}

/// The router ID of a node that was given none: the address it reaches its first IPv4 peer
/// from (the kernel's choice of source, without sending anything).
fn router_id_toward(peers: &[PeerConfig]) -> Option<Ipv4Addr> {
    peers.iter().find_map(|p| {
        let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
        socket.connect((p.address, p.port)).ok()?;
        match socket.local_addr().ok()?.ip() {
            IpAddr::V4(a) if !a.is_unspecified() => Some(a),
            _ => None,
        }
    })
}

/// What the speaker should announce.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Desired {
    /// The node's sessions; `None`: no peer selects this node (nothing can be announced).
    pub node: Option<BgpNode>,
    /// Addresses the node can serve.
    pub eligible: BTreeSet<IpAddr>,
    /// Addresses the node has but cannot serve now (withdrawn at once).
    pub ineligible: BTreeSet<IpAddr>,
}

/// What the speaker last saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BgpStatus {
    /// The routes in FRR's configuration (draining ones with GRACEFUL_SHUTDOWN).
    pub announced: Vec<Announced>,
    /// Each peer's session, as FRR reports it.
    pub sessions: Vec<SessionState>,
    /// Why FRR's configuration or state could not be had (FRR not running…).
    pub error: Option<String>,
}

impl BgpStatus {
    /// Whether `address` is announced (not draining) to at least one established session.
    pub(crate) fn announces(&self, address: IpAddr) -> bool {
        self.error.is_none()
            && self.sessions.iter().any(established)
            && self
                .announced
                .iter()
                .any(|a| a.address == address && !a.draining)
    }

    /// Whether FRR still has a route for `address` (announced or draining).
    pub(crate) fn has_route(&self, address: IpAddr) -> bool {
        self.announced.iter().any(|a| a.address == address)
    }
}

/// The running speaker.
pub(crate) struct Speaker {
    desired: watch::Sender<Desired>,
    stop: watch::Sender<bool>,
    status: watch::Receiver<BgpStatus>,
    task: JoinHandle<()>,
}

impl Speaker {
    /// Starts driving `frr`, draining for `drain` before a planned withdrawal, with
    /// `router_id` (`None`: the address toward the first IPv4 peer).
    pub(crate) fn start(frr: Frr, drain: Duration, router_id: Option<Ipv4Addr>) -> Speaker {
        let (desired, desired_rx) = watch::channel(Desired::default());
        let (stop, stop_rx) = watch::channel(false);
        let (status_tx, status) = watch::channel(BgpStatus::default());
        let task = tokio::spawn(run(frr, drain, router_id, desired_rx, stop_rx, status_tx));
        Speaker {
            desired,
            stop,
            status,
            task,
        }
    }

    /// What to announce from now on.
    pub(crate) fn set(&self, desired: Desired) {
        self.desired.send_if_modified(|d| {
            let changed = *d != desired;
            *d = desired;
            changed
        });
    }

    /// What the speaker last saw.
    pub(crate) fn status(&self) -> watch::Receiver<BgpStatus> {
        self.status.clone()
    }

    /// Drains every route (GRACEFUL_SHUTDOWN, then withdrawn) and ends; waits at most `limit`.
    pub(crate) async fn stop(self, limit: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(limit, self.task).await.is_err() {
            warn!("BGP routes not all withdrawn in time; FRR keeps what it has");
        }
    }
}

/// FRR's configuration for `node`'s sessions and `routes`; `Err` when the node has no router
/// ID.
fn frr_config(
    node: &BgpNode,
    router_id: Option<Ipv4Addr>,
    routes: &[Announced],
) -> Result<FrrConfig, String> {
    let router_id = router_id
        .or_else(|| router_id_toward(&node.peers))
        .ok_or("no BGP router ID: no IPv4 peer to take it from; set --bgp-router-id")?;
    Ok(FrrConfig {
        asn: node.asn,
        router_id,
        peers: node.peers.clone(),
        routes: routes
            .iter()
            .map(|r| RouteConfig {
                prefix: r.address,
                graceful_shutdown: r.draining,
            })
            .collect(),
    })
}

/// What the speaker's task holds between events: FRR, what it last applied, and the error to
/// report.
struct Shell {
    frr: Frr,
    applied: Option<FrrConfig>,
    error: Option<String>,
    /// The last apply error logged.
    warned: Option<String>,
    status: watch::Sender<BgpStatus>,
}

impl Shell {
    /// Applies `config` unless it is what FRR runs already.
    async fn apply(&mut self, config: FrrConfig) {
        if self.applied.as_ref() == Some(&config) {
            return;
        }
        let started = Instant::now();
        match self.frr.apply(&config).await {
            Ok(_) => {
                info!(
                    routes = config.routes.len(),
                    draining = config.routes.iter().filter(|r| r.graceful_shutdown).count(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "FRR configuration applied"
                );
                self.applied = Some(config);
                self.error = None;
                self.warned = None;
            }
            Err(e) => {
                let e = e.to_string();
                // Retried every second while FRR is down: said once per cause.
                if self.warned.as_ref() != Some(&e) {
                    warn!(error = %e, "cannot apply FRR's configuration; retrying");
                    self.warned = Some(e.clone());
                }
                self.error = Some(e);
            }
        }
    }

    /// Publishes the routes FRR has and the error, if any.
    fn publish(&self) {
        self.status.send_modify(|s| {
            s.announced = self.applied.as_ref().map_or_else(Vec::new, |c| {
                c.routes
                    .iter()
                    .map(|r| Announced {
                        address: r.prefix,
                        draining: r.graceful_shutdown,
                    })
                    .collect()
            });
            s.error.clone_from(&self.error);
        });
    }

    /// Reads the sessions back; FRR not answering, or answering with fewer peers than ours
    /// (restarted with an older configuration), has ours applied again.
    async fn read_sessions(&mut self) {
        match self.frr.sessions().await {
            Ok(sessions) => {
                if self
                    .applied
                    .as_ref()
                    .is_some_and(|c| c.peers.len() != sessions.len())
                {
                    self.applied = None;
                }
                self.status.send_modify(|s| s.sessions = sessions);
            }
            Err(e) => {
                let e = e.to_string();
                self.status.send_modify(|s| {
                    s.sessions.clear();
                    s.error = Some(e.clone());
                });
                self.applied = None;
                self.error = Some(e);
            }
        }
    }

    /// Every route withdrawn from FRR (or none ever applied).
    fn nothing_announced(&self) -> bool {
        self.applied.as_ref().is_none_or(|c| c.routes.is_empty())
    }
}

async fn run(
    frr: Frr,
    drain: Duration,
    router_id: Option<Ipv4Addr>,
    mut desired: watch::Receiver<Desired>,
    mut stop: watch::Receiver<bool>,
    status: watch::Sender<BgpStatus>,
) {
    let mut announcer = Announcer::new(drain);
    let mut shell = Shell {
        frr,
        applied: None,
        error: None,
        warned: None,
        status,
    };
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let now = Instant::now().into_std();
        let want = desired.borrow_and_update().clone();
        announcer.update(&want.eligible, &want.ineligible, now);
        if *stop.borrow_and_update() {
            announcer.stop(now);
        }
        announcer.handle_timeout(now);
        if let Some(node) = &want.node {
            match frr_config(node, router_id, &announcer.routes()) {
                Ok(config) => shell.apply(config).await,
                Err(e) => shell.error = Some(e),
            }
        }
        shell.publish();
        if announcer.finished() && shell.nothing_announced() {
            return;
        }
        let timer = announcer
            .poll_timeout()
            .map(|(_, at)| Instant::from_std(at));
        tokio::select! {
            r = desired.changed() => if r.is_err() { return },
            r = stop.changed() => if r.is_err() { return },
            () = sleep_until(timer) => {}
            _ = poll.tick() => shell.read_sessions().await,
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
