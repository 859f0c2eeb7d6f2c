//! The agent's life, the same in both modes: undo what a crashed predecessor left on the host
//! (before anything else, before the API server is asked anything), serve the admin endpoint,
//! wait for the source, then plan and apply on every change, reload, signal and tick, and on
//! SIGTERM hand every VIP over, drain, and clean up. Nothing here waits on the network: names,
//! Secrets and API writes live in their own tasks, with their own timeouts.

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{Notify, watch},
};
use tracing::{error, info};

use crate::{
    admin::{self, Admin},
    agent::{Agent, Identity},
    dns,
    metrics::Registry,
    net::{cleanup, ledger::Ledger},
    node::{NodeConfig, PlanError},
    proxy::metrics::ProxyMetrics,
    source::Source,
    vrrp::metrics::VrrpMetrics,
};

/// How the agent runs, from its flags.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Who this agent is.
    pub identity: Identity,
    /// Where to serve /metrics, /healthz, /readyz and /status; `None`: nowhere.
    pub admin: Option<SocketAddr>,
    /// On SIGTERM, how long open client connections may take to finish.
    pub drain_timeout: Duration,
    /// How the agent reaches FRR, for VirtualIPs announced by BGP.
    pub bgp: crate::agent::ecmp::BgpSettings,
}

#[derive(Debug, thiserror::Error)]
/// Why the agent stopped before it was asked to.
pub enum RunError {
    #[error("invalid configuration:\n{0}")]
    /// The desired state cannot be read.
    Invalid(String),
    #[error("serving the admin endpoint on {0}: {1}")]
    /// The admin endpoint cannot listen.
    Admin(SocketAddr, std::io::Error),
    #[error("handling signals: {0}")]
    /// Signal handlers cannot be installed.
    Signals(std::io::Error),
    #[error("registering the metrics: {0}")]
    /// A metric family cannot be registered.
    Metrics(prometheus::Error),
}

/// How often the proxy's view of each VIP reaches its VRRP instance, and metrics are refreshed.
const TICK: Duration = Duration::from_millis(250);

/// Runs the agent on `source` until SIGTERM or SIGINT, its metrics in `registry` (see
/// [`crate::metrics::registry`]). A first plan the source refuses ends it with the reasons (a
/// configuration that never ran); a later one keeps the running state.
pub async fn run(
    mut source: impl Source,
    settings: Settings,
    registry: Registry,
) -> Result<(), RunError> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(RunError::Signals)?;
    // A VIP a SIGKILLed predecessor left bound must go before this node joins any election,
    // whether or not the API server answers.
    let ledger = match &settings.identity.state_dir {
        Some(dir) => cleanup::recover(dir, &settings.identity.name).await.0,
        None => Ledger::in_memory(),
    };
    // One registry for the process: the proxy's and the VRRP instances' families join the
    // process's own, served by the admin endpoint.
    let proxy_metrics = ProxyMetrics::new(&registry).map_err(RunError::Metrics)?;
    let metrics = VrrpMetrics::new(&registry).map_err(RunError::Metrics)?;
    let mut agent = Agent::with_ledger(settings.identity.clone(), ledger, proxy_metrics);
    agent.set_bgp(settings.bgp.clone());
    let (vips_tx, vips) = watch::channel(BTreeSet::new());
    let admin = Arc::new(Admin::new(agent.status(), registry));
    if let Some(addr) = settings.admin {
        admin::serve(addr, admin.clone(), vips)
            .await
            .map_err(|e| RunError::Admin(addr, e))?;
    }
    let changed = Arc::new(Notify::new());
    let resolver = dns::resolver(changed.clone());
    info!("waiting for the configuration source");
    tokio::select! {
        () = source.ready() => {}
        _ = sigterm.recv() => return Ok(()),
        _ = sigint.recv() => return Ok(()),
    }
    source.report(&agent);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut exported = Default::default();
    let mut logged = Default::default();
    let mut applied: Option<NodeConfig> = None;
    let mut reason = Some("starting");
    loop {
        if let Some(why) = reason.take() {
            match source.plan(&resolver.snapshot()) {
                Ok(plan) => {
                    resolver.want(plan.wants.names.iter().cloned());
                    log_plan_errors(&plan.errors, &mut logged);
                    if applied.as_ref() != Some(&plan.config) {
                        info!(
                            reason = why,
                            virtualips = plan.config.vips.len() + plan.config.ecmp.len(),
                            listeners = plan.config.proxy.listeners.len(),
                            "applying the node's configuration"
                        );
                        vips_tx.send_replace(
                            plan.config
                                .vips
                                .values()
                                .flat_map(|v| v.instance.addresses.iter().map(|(a, _)| *a))
                                .chain(
                                    plan.config
                                        .ecmp
                                        .values()
                                        .flat_map(|e| e.addresses.iter().copied()),
                                )
                                .collect::<BTreeSet<IpAddr>>(),
                        );
                        agent.apply(plan.config.clone()).await;
                        applied = Some(plan.config);
                    }
                    admin.ready.store(true, Ordering::Relaxed);
                }
                Err(e) if applied.is_none() => return Err(RunError::Invalid(e.to_string())),
                Err(e) => error!(
                    reason = why,
                    "configuration rejected; the running one stays:\n{e}"
                ),
            }
        }
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = sighup.recv() => reason = Some("SIGHUP"),
            why = source.changed() => reason = Some(why),
            () = changed.notified() => reason = Some("a backend name resolved differently"),
            _ = tick.tick() => {
                agent.tick().await;
                export_metrics(&agent, applied.as_ref(), &metrics, &mut exported);
            }
        }
    }
    info!("stopping: handing over every virtual address");
    agent.shutdown(settings.drain_timeout).await;
    source.finish().await;
    Ok(())
}

/// Logs what the planner refused (once per distinct message).
pub(crate) fn log_plan_errors(errors: &[PlanError], logged: &mut BTreeSet<String>) {
    let now: BTreeSet<String> = errors.iter().map(ToString::to_string).collect();
    for e in now.difference(logged) {
        info!("not served on this node: {e}");
    }
    *logged = now;
}

/// Copies the instances' status, settings (as `applied`) and counters into the metrics, and
/// the Fault of the VirtualIPs `applied` could not run.
fn export_metrics(
    agent: &Agent,
    applied: Option<&NodeConfig>,
    metrics: &VrrpMetrics,
    exported: &mut BTreeSet<String>,
) {
    let status = agent.status().borrow().clone();
    let stats = agent.stats();
    for (key, s) in &stats {
        if let Some(v) = status.get(key) {
            metrics.record_state(key, v.state, v.since, v.priority);
        }
        if let Some(plan) = applied.and_then(|c| c.vips.get(key)) {
            metrics.record_interval(key, plan.instance.advert_interval);
        }
        metrics.record_counters(key, s);
    }
    // VirtualIPs the plan cannot run here (no router ID, a missing password...) have no
    // instance, but this node is in Fault for them all the same.
    let mut now: BTreeSet<String> = stats.into_keys().collect();
    for key in applied.iter().flat_map(|c| c.faults.keys()) {
        if let Some(v) = status.get(key).filter(|_| !now.contains(key)) {
            metrics.record_state(key, v.state, v.since, v.priority);
            now.insert(key.clone());
        }
    }
    for (interface, ipv6, s) in agent.port_stats() {
        metrics.record_port(&interface, ipv6, &s);
    }
    for gone in exported.difference(&now) {
        metrics.forget(gone);
    }
    *exported = now;
}

/// Raises the soft limit of open files to the hard one, as nginx's `worker_rlimit_nofile` and
/// Go's runtime do: every client connection is a file, and the usual soft limit of 1024 would
/// cap a listener far below its `maxConnections`. Returns the limit now in force.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(limit.rlim_cur)
}
