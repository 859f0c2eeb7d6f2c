//! The proxy of a node: every listener and pool it should run, reconciled in place. Applying a new
//! desired state starts, stops or changes only what differs: other listeners keep their
//! connections, a changed pool is swapped under its listeners (requests in flight finish on the
//! old one, so removed backends drain), and health checks follow the current pool.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use buoy_vrrp::fault::DataPath;
use tokio::sync::watch;
use tracing::{info, warn};

use super::{
    access_log::AccessLogSink,
    health,
    http::PoolSlot,
    listener::{Listener, ListenerConfig},
    metrics::ProxyMetrics,
    pool::{Pool, PoolConfig},
};

/// What the node's proxy should be doing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Every listener of the node.
    pub listeners: Vec<ListenerConfig>,
    /// By `namespace/name`.
    pub pools: BTreeMap<String, PoolConfig>,
}

struct PoolEntry {
    slot: PoolSlot,
    stop_checks: watch::Sender<bool>,
}

/// The node's proxy: its listeners and pools, changed in place by `apply`.
pub struct ProxyService {
    metrics: ProxyMetrics,
    access_log: AccessLogSink,
    pools: BTreeMap<String, PoolEntry>,
    listeners: BTreeMap<String, Listener>,
    /// Connection counters of stopped listeners whose connections may still be open.
    draining: Vec<Arc<std::sync::atomic::AtomicUsize>>,
}

/// What one pool has on this node, for status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PoolReport {
    /// Backends (static ones resolved, or endpoints).
    pub total: usize,
    /// Of those, the ones that may receive traffic now (not down, passing both checks).
    pub ready: usize,
    /// Backends of the spec that are not there, and why (see `PoolConfig::problems`).
    pub problems: Vec<String>,
}

/// A listener that could not start (for status: a node that cannot listen reports Fault).
#[derive(Debug, thiserror::Error)]
#[error("listener {name} on {addr}: {source}")]
pub struct ListenError {
    /// The listener.
    pub name: String,
    /// Its address.
    pub addr: std::net::SocketAddr,
    /// Why it could not listen.
    pub source: std::io::Error,
}

impl ProxyService {
    /// A proxy with nothing to serve yet, reporting to `metrics`.
    pub fn new(metrics: ProxyMetrics) -> Self {
        ProxyService {
            access_log: AccessLogSink::new(metrics.access_log_dropped()),
            metrics,
            pools: BTreeMap::new(),
            listeners: BTreeMap::new(),
            draining: Vec::new(),
        }
    }

    /// Brings the running proxy to `desired`. Returns the listeners that failed to start (the
    /// others run).
    pub async fn apply(&mut self, desired: &ProxyConfig) -> Vec<ListenError> {
        // Pools first, so that new listeners find theirs.
        self.apply_pools(desired);
        let wanted: BTreeMap<&str, &ListenerConfig> = desired
            .listeners
            .iter()
            .map(|l| (l.name.as_str(), l))
            .collect();
        for (name, running) in &mut self.listeners {
            if let Some(w) = wanted.get(name.as_str())
                && running.only_certificates_differ(w)
            {
                self.metrics
                    .certificates(name, running.config.tls.as_ref(), w.tls.as_ref());
                running.rotate(w);
            }
        }
        let stale: Vec<String> = self
            .listeners
            .iter()
            .filter(|(name, running)| {
                wanted
                    .get(name.as_str())
                    .is_none_or(|w| **w != running.config)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(l) = self.listeners.remove(&name) {
                info!(listener = %name, "listener stopped");
                self.metrics
                    .certificates(&name, l.config.tls.as_ref(), None);
                self.metrics.listener_pools(&name, &l.config, false);
                self.draining.push(l.open_connections.clone());
                l.stop().await;
            }
        }
        let mut errors = Vec::new();
        for (name, config) in wanted {
            if self.listeners.contains_key(name) {
                continue;
            }
            let pool = config.pool.as_deref().map(|p| self.slot(name, p));
            let routes = config
                .routes
                .iter()
                .map(|r| self.slot(name, &r.pool))
                .collect();
            match Listener::start(
                config.clone(),
                pool,
                routes,
                &self.metrics,
                &self.access_log,
            ) {
                Ok(l) => {
                    self.metrics.certificates(name, None, l.config.tls.as_ref());
                    self.metrics.listener_pools(name, &l.config, true);
                    self.listeners.insert(name.to_string(), l);
                }
                Err(source) => errors.push(ListenError {
                    name: name.to_string(),
                    addr: config.addr,
                    source,
                }),
            }
        }
        self.remove_unused_pools(desired);
        errors
    }

    /// Starts the pools `desired` adds, and reconfigures the ones it changes in place.
    fn apply_pools(&mut self, desired: &ProxyConfig) {
        for (name, config) in &desired.pools {
            match self.pools.get(name) {
                Some(entry) => {
                    let mut slot = entry.slot.lock().unwrap_or_else(|e| e.into_inner());
                    if slot.config != *config {
                        info!(pool = %name, "pool changed");
                        self.metrics.forget_backends(&slot.config, Some(config));
                        *slot = Arc::new(
                            Pool::reconfigured(config.clone(), &slot)
                                .counting(self.metrics.backend_requests(config)),
                        );
                    }
                }
                None => {
                    let pool =
                        Pool::new(config.clone()).counting(self.metrics.backend_requests(config));
                    let slot: PoolSlot = Arc::new(Mutex::new(Arc::new(pool)));
                    let (stop_checks, stop_rx) = watch::channel(false);
                    tokio::spawn(health::run(slot.clone(), stop_rx, self.metrics.clone()));
                    self.pools
                        .insert(name.clone(), PoolEntry { slot, stop_checks });
                }
            }
        }
    }

    /// Stops the pools `desired` no longer has (their health checks, their series).
    fn remove_unused_pools(&mut self, desired: &ProxyConfig) {
        let unused: Vec<String> = self
            .pools
            .keys()
            .filter(|p| !desired.pools.contains_key(*p))
            .cloned()
            .collect();
        for name in unused {
            if let Some(entry) = self.pools.remove(&name) {
                let _ = entry.stop_checks.send(true);
                let slot = entry.slot.lock().unwrap_or_else(|e| e.into_inner());
                self.metrics.forget_backends(&slot.config, None);
            }
        }
    }

    /// The slot of pool `pool` for listener `listener`. Validation and the operator catch a
    /// pool that does not exist earlier; until it appears its requests get 503s that say so.
    fn slot(&self, listener: &str, pool: &str) -> PoolSlot {
        match self.pools.get(pool) {
            Some(p) => p.slot.clone(),
            None => {
                warn!(listener = %listener, pool = %pool, "listener names a pool that does not exist");
                let mut config = PoolConfig::empty(pool);
                config
                    .problems
                    .push(format!("UpstreamPool {pool} not found"));
                Arc::new(Mutex::new(Arc::new(Pool::new(config))))
            }
        }
    }

    /// Whether the listeners named (one VirtualIP's) are all open, and all have at least one
    /// usable backend (`track.upstreams`): in their own pool, or, for a listener without one,
    /// in any of its routes' pools.
    pub fn data_path(&self, names: &[String]) -> DataPath {
        let open: Vec<&Listener> = names.iter().filter_map(|n| self.listeners.get(n)).collect();
        DataPath {
            local_endpoint: true,
            http_get_ok: true,
            listening: open.len() == names.len(),
            upstreams_healthy: open.iter().all(|l| {
                l.health_pools()
                    .iter()
                    .any(|s| s.lock().is_ok_and(|p| p.counts().1 > 0))
            }),
        }
    }

    /// Why the listeners named do not all serve, if they do not: the first listener that is
    /// not open, or without a usable backend (see [`ProxyService::data_path`]), or with a route
    /// that cannot serve (a pool that does not exist, a host and path another route has).
    pub(crate) fn why_not_serving(&self, names: &[String]) -> Option<String> {
        for name in names {
            let Some(l) = self.listeners.get(name) else {
                return Some(format!("listener {name} cannot open"));
            };
            let pools: Vec<Arc<Pool>> = l
                .health_pools()
                .iter()
                .filter_map(|s| s.lock().ok().map(|p| p.clone()))
                .collect();
            if !pools.iter().any(|p| p.counts().1 > 0)
                && let Some(pool) = pools.first()
            {
                let why = pool.why(if pool.config.backends.is_empty() {
                    super::pool::NoBackend::Empty
                } else {
                    super::pool::NoBackend::AllDown
                });
                return Some(format!(
                    "listener {name}: UpstreamPool {}: {why}",
                    pool.config.name
                ));
            }
            let expiring = l
                .config
                .tls
                .iter()
                .flat_map(|t| t.expiry_problems(std::time::SystemTime::now()));
            let problems: Vec<String> = l.config.problems.iter().cloned().chain(expiring).collect();
            if !problems.is_empty() {
                return Some(format!("listener {name}: {}", problems.join("; ")));
            }
        }
        None
    }

    /// What each pool has now, by `namespace/name`.
    pub(crate) fn pool_reports(&self) -> BTreeMap<String, PoolReport> {
        self.pools
            .iter()
            .filter_map(|(name, entry)| {
                let pool = entry.slot.lock().ok()?.clone();
                let (total, ready) = pool.counts();
                Some((
                    name.clone(),
                    PoolReport {
                        total,
                        ready,
                        problems: pool.config.problems.clone(),
                    },
                ))
            })
            .collect()
    }

    /// Open client connections over all listeners.
    pub fn open_connections(&self) -> usize {
        let load =
            |c: &Arc<std::sync::atomic::AtomicUsize>| c.load(std::sync::atomic::Ordering::Relaxed);
        self.listeners
            .values()
            .map(|l| load(&l.open_connections))
            .sum::<usize>()
            + self.draining.iter().map(load).sum::<usize>()
    }

    /// Stops accepting everywhere (established connections continue until they end).
    pub async fn stop_listening(&mut self) {
        for (_, l) in std::mem::take(&mut self.listeners) {
            self.draining.push(l.open_connections.clone());
            l.stop().await;
        }
    }
}
