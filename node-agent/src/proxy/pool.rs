//! A pool of backends at run time: the balancing state and the health of each backend, shared by
//! every request of the listeners that use the pool. A reconfigured pool keeps the health of the
//! backends it still has; requests in flight keep the pool they started with, so removed backends
//! drain instead of failing.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use buoy_crds::{Algorithm, HashKey, HealthCheckProtocol, ProxyProtocolVersion};

use super::{
    active::{ActiveState, Thresholds},
    balance::{HashRing, SmoothRoundRobin, least_connections},
    passive::{PassivePolicy, PassiveState},
    retry::RetryPolicy,
    tls::{BackendTls, client::Connector},
    upstream::{Key, Tls},
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    pub addr: SocketAddr,
    /// The host name the address came from, if the spec named one (the default TLS name).
    pub host: Option<String>,
    pub weight: u32,
    pub backup: bool,
    pub down: bool,
    pub passive: PassivePolicy,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveCheck {
    pub protocol: HealthCheckProtocol,
    pub path: String,
    pub host: Option<String>,
    pub statuses: Vec<(u16, u16)>,
    pub interval: Duration,
    pub timeout: Duration,
    pub thresholds: Thresholds,
    /// Probes start with a PROXY protocol header without a client (the pool's version).
    pub proxy_protocol: Option<ProxyProtocolVersion>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
    pub write: Duration,
    pub idle: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderPolicy {
    pub preserve_host: bool,
    pub x_forwarded_for: bool,
    pub x_real_ip: bool,
    pub x_forwarded_proto: bool,
}

/// Everything a pool is configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// `namespace/name`, for logs and metrics.
    pub name: String,
    pub backends: Vec<BackendSpec>,
    pub algorithm: Algorithm,
    pub hash_key: HashKey,
    pub hash_key_name: Option<String>,
    pub retry: RetryPolicy,
    pub timeouts: Timeouts,
    pub headers: HeaderPolicy,
    pub active: Option<ActiveCheck>,
    /// Backend connections start with the client's PROXY protocol header (and are then never
    /// shared between clients).
    pub proxy_protocol: Option<ProxyProtocolVersion>,
    /// TLS to the backends (plain TCP without).
    pub tls: Option<BackendTls>,
    /// Backends of the spec that are not here, and why (a name that does not resolve, an
    /// address the backend policy refuses, a CA that cannot be read): told to clients that get
    /// no backend, and reported in status.
    pub problems: Vec<String>,
}

impl From<&buoy_crds::Retry> for RetryPolicy {
    fn from(r: &buoy_crds::Retry) -> Self {
        RetryPolicy {
            attempts: r.attempts,
            on: r.retry_on.clone(),
            non_idempotent: r.non_idempotent,
        }
    }
}

impl From<&buoy_crds::Timeouts> for Timeouts {
    fn from(t: &buoy_crds::Timeouts) -> Self {
        Timeouts {
            connect: t.connect.as_std(),
            read: t.read.as_std(),
            write: t.write.as_std(),
            idle: t.idle.as_std(),
        }
    }
}

impl From<&buoy_crds::HttpSettings> for HeaderPolicy {
    fn from(h: &buoy_crds::HttpSettings) -> Self {
        HeaderPolicy {
            preserve_host: h.preserve_host,
            x_forwarded_for: h.x_forwarded_for,
            x_real_ip: h.x_real_ip,
            x_forwarded_proto: h.x_forwarded_proto,
        }
    }
}

impl PoolConfig {
    /// A pool without backends and with the API's defaults (it answers 503).
    pub(crate) fn empty(name: &str) -> Self {
        PoolConfig {
            name: name.to_string(),
            backends: Vec::new(),
            algorithm: Algorithm::RoundRobin,
            hash_key: HashKey::ClientIp,
            hash_key_name: None,
            retry: (&buoy_crds::Retry::default()).into(),
            timeouts: (&buoy_crds::Timeouts::default()).into(),
            headers: (&buoy_crds::HttpSettings::default()).into(),
            active: None,
            proxy_protocol: None,
            tls: None,
            problems: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct BackendState {
    passive: PassiveState,
    active: ActiveState,
    in_flight: u64,
}

/// Whether a backend may take traffic now: not `down`, and passing both health checks.
fn usable_now(spec: &BackendSpec, b: &BackendState, now: Duration) -> bool {
    !spec.down && b.active.healthy && b.passive.available(&spec.passive, now)
}

struct State {
    backends: Vec<BackendState>,
    rr: SmoothRoundRobin,
}

pub(crate) struct Pool {
    pub config: PoolConfig,
    ring: HashRing,
    state: Mutex<State>,
    epoch: Instant,
    /// The TLS client of `config.tls`, or why it cannot be had.
    tls: Option<Result<Arc<Connector>, String>>,
    /// By backend: its connections' key and, with TLS, the name its certificate is verified
    /// for.
    targets: Vec<(Key, String)>,
    /// By backend: the Host field sent to it when the client's is not kept (its address), made
    /// once rather than formatted for every request.
    hosts: Vec<http::HeaderValue>,
    /// By backend: the counter of requests sent to it (`buoy_proxy_backend_requests_total`;
    /// empty: not counted).
    requests: Vec<prometheus::IntCounter>,
}

/// Why no backend could be chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoBackend {
    /// The pool has no backends at all.
    Empty,
    /// Every backend is down (checks or `down: true`) or was already tried.
    AllDown,
}

impl NoBackend {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            NoBackend::Empty => "no backends in the pool",
            NoBackend::AllDown => "no healthy backend",
        }
    }
}

impl Pool {
    /// Why `no` backend could serve, with the pool's first problem when it has one (what the
    /// client reads in `X-Buoy-Error`: printable ASCII, bounded).
    pub(crate) fn why(&self, no: NoBackend) -> String {
        match self.config.problems.first() {
            Some(p) if no == NoBackend::Empty => {
                let p: String = p
                    .chars()
                    .map(|c| {
                        if c.is_ascii_graphic() || c == ' ' {
                            c
                        } else {
                            '?'
                        }
                    })
                    .take(200)
                    .collect();
                format!("no usable backend: {p}")
            }
            _ => no.reason().to_string(),
        }
    }
}

impl Pool {
    pub(crate) fn new(config: PoolConfig) -> Pool {
        Pool::carrying_over(config, None)
    }

    /// A pool with a new configuration that keeps what `old` knew about backends it still has.
    pub(crate) fn reconfigured(config: PoolConfig, old: &Pool) -> Pool {
        Pool::carrying_over(config, Some(old))
    }

    fn carrying_over(config: PoolConfig, old: Option<&Pool>) -> Pool {
        let previous = old.map(|o| {
            (
                o.config.backends.iter().map(|b| b.addr).collect::<Vec<_>>(),
                o.lock().backends.clone(),
            )
        });
        let backends = config
            .backends
            .iter()
            .map(|b| {
                previous
                    .as_ref()
                    .and_then(|(addrs, states)| {
                        addrs
                            .iter()
                            .position(|a| *a == b.addr)
                            .map(|i| BackendState {
                                in_flight: 0,
                                ..states[i].clone()
                            })
                    })
                    .unwrap_or_default()
            })
            .collect();
        let weights: Vec<u32> = config.backends.iter().map(|b| b.weight).collect();
        let ids: Vec<String> = config.backends.iter().map(|b| b.addr.to_string()).collect();
        // The same settings keep their connector, and with it the sessions to resume.
        let tls = match (old, &config.tls) {
            (_, None) => None,
            (Some(o), Some(t)) if o.config.tls.as_ref() == Some(t) && o.tls.is_some() => {
                o.tls.clone()
            }
            (_, Some(t)) => Some(Connector::new(t).map(Arc::new).inspect_err(|e| {
                tracing::warn!(pool = %config.name, error = %e, "no TLS to the backends");
            })),
        };
        let targets = config
            .backends
            .iter()
            .map(|b| {
                let name = config
                    .tls
                    .as_ref()
                    .and_then(|t| t.server_name.clone())
                    .or_else(|| b.host.clone())
                    .unwrap_or_else(|| b.addr.ip().to_string());
                let key = match &tls {
                    Some(Ok(c)) => c.key(&name),
                    // Never made: the key does not matter.
                    Some(Err(_)) => u64::MAX,
                    None => 0,
                };
                (
                    Key {
                        addr: b.addr,
                        tls: key,
                    },
                    name,
                )
            })
            .collect();
        let hosts = config
            .backends
            .iter()
            .map(|b| {
                http::HeaderValue::from_maybe_shared(bytes::Bytes::from(b.addr.to_string()))
                    .unwrap_or_else(|_| http::HeaderValue::from_static(""))
            })
            .collect();
        Pool {
            tls,
            targets,
            hosts,
            requests: Vec::new(),
            ring: HashRing::new(&ids, &weights),
            state: Mutex::new(State {
                backends,
                rr: SmoothRoundRobin::new(&weights),
            }),
            epoch: old.map_or_else(Instant::now, |o| o.epoch),
            config,
        }
    }

    /// Counts each backend's requests in `requests` (by backend, in the configuration's order).
    pub(crate) fn counting(mut self, requests: Vec<prometheus::IntCounter>) -> Pool {
        self.requests = requests;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Chooses a backend not in `tried`: primaries first, backups only when no primary can be used
    /// (nginx `backup`). `key` is the consistent-hash key when the algorithm needs one.
    pub(crate) fn select(&self, key: Option<&[u8]>, tried: &[usize]) -> Result<usize, NoBackend> {
        if self.config.backends.is_empty() {
            return Err(NoBackend::Empty);
        }
        let now = self.now();
        let mut guard = self.lock();
        let state = &mut *guard;
        for backup_tier in [false, true] {
            // A closure, not a Vec: this runs for every request.
            let backends = &state.backends;
            let eligible = |i: usize| {
                let spec = &self.config.backends[i];
                spec.backup == backup_tier
                    && !tried.contains(&i)
                    && backends.get(i).is_some_and(|b| usable_now(spec, b, now))
            };
            let choice = match self.config.algorithm {
                Algorithm::RoundRobin => state.rr.pick(eligible),
                Algorithm::LeastConnections => {
                    let active: Vec<u64> = backends.iter().map(|b| b.in_flight).collect();
                    let weights: Vec<u32> = self.config.backends.iter().map(|b| b.weight).collect();
                    least_connections(&active, &weights, &mut state.rr, eligible)
                }
                Algorithm::ConsistentHash => match key {
                    Some(k) => self.ring.pick(k, eligible),
                    // No key (header or cookie missing): spread like round robin.
                    None => state.rr.pick(eligible),
                },
            };
            if let Some(i) = choice {
                let policy = self.config.backends[i].passive;
                state.backends[i].passive.chosen(&policy, now);
                state.backends[i].in_flight += 1;
                if let Some(counter) = self.requests.get(i) {
                    counter.inc();
                }
                return Ok(i);
            }
        }
        Err(NoBackend::AllDown)
    }

    /// The attempt on backend `i` ended; `failed` feeds the passive check.
    pub(crate) fn finished(&self, i: usize, failed: bool) {
        let now = self.now();
        let mut state = self.lock();
        let Some(b) = state.backends.get_mut(i) else {
            return;
        };
        b.in_flight = b.in_flight.saturating_sub(1);
        let policy = self.config.backends[i].passive;
        if failed {
            if b.passive.failed(&policy, now) {
                tracing::warn!(pool = %self.config.name, backend = %self.config.backends[i].addr, "backend temporarily disabled after {} failures", policy.max_fails);
            }
            state.rr.penalise(i, policy.max_fails);
        } else {
            b.passive.succeeded();
        }
    }

    /// The attempt on backend `i` ended without a verdict on the backend (a stale pooled
    /// connection).
    pub(crate) fn abandoned(&self, i: usize) {
        if let Some(b) = self.lock().backends.get_mut(i) {
            b.in_flight = b.in_flight.saturating_sub(1);
        }
    }

    /// An active probe of backend `i` returned; logs health changes.
    pub(crate) fn probed(&self, i: usize, ok: bool) {
        let Some(check) = &self.config.active else {
            return;
        };
        let mut state = self.lock();
        if let Some(b) = state.backends.get_mut(i)
            && let Some(healthy) = b.active.record(&check.thresholds, ok)
        {
            tracing::info!(pool = %self.config.name, backend = %self.config.backends[i].addr, healthy, "active health check changed");
        }
    }

    /// (total, ready) backends, as reported in status; ready: not down and passing both checks.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let now = self.now();
        let state = self.lock();
        let ready = self
            .config
            .backends
            .iter()
            .zip(&state.backends)
            .filter(|(spec, b)| usable_now(spec, b, now))
            .count();
        (self.config.backends.len(), ready)
    }

    /// Whether backend `i` may receive traffic now (not down, passing both checks).
    pub(crate) fn usable(&self, i: usize) -> bool {
        let now = self.now();
        let state = self.lock();
        match (self.config.backends.get(i), state.backends.get(i)) {
            (Some(spec), Some(b)) => usable_now(spec, b, now),
            _ => false,
        }
    }

    pub(crate) fn address(&self, i: usize) -> Option<SocketAddr> {
        self.config.backends.get(i).map(|b| b.addr)
    }

    /// The key of backend `i`'s connections (see [`Key`]).
    pub(crate) fn key(&self, i: usize) -> Option<Key> {
        self.targets.get(i).map(|(k, _)| *k)
    }

    /// The Host field for backend `i` when the client's is not kept: its address.
    pub(crate) fn host(&self, i: usize) -> Option<&http::HeaderValue> {
        self.hosts.get(i)
    }

    /// How a new connection to backend `i` does TLS, if the pool's backends speak it.
    pub(crate) fn tls(&self, i: usize) -> Option<Tls<'_>> {
        let connector = self.tls.as_ref()?;
        let (_, name) = self.targets.get(i)?;
        Some(Tls {
            connector: connector.as_deref().map_err(String::as_str),
            name,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use buoy_crds::RetryOn;

    pub(crate) fn config(n: usize) -> PoolConfig {
        PoolConfig {
            backends: (1..=n)
                .map(|i| BackendSpec {
                    addr: format!("10.0.0.{i}:80").parse().unwrap(),
                    host: None,
                    weight: 1,
                    backup: false,
                    down: false,
                    passive: PassivePolicy {
                        max_fails: 1,
                        fail_timeout: Duration::from_secs(10),
                    },
                })
                .collect(),
            retry: RetryPolicy {
                attempts: 2,
                on: vec![RetryOn::ConnectFailure],
                non_idempotent: false,
            },
            ..PoolConfig::empty("default/web")
        }
    }

    #[test]
    fn round_robin_skips_failed_and_tried_backends() {
        let pool = Pool::new(config(3));
        let picks: Vec<usize> = (0..3)
            .map(|_| {
                let i = pool.select(None, &[]).unwrap();
                pool.finished(i, false);
                i
            })
            .collect();
        let mut sorted = picks.clone();
        sorted.sort();
        assert_eq!(sorted, [0, 1, 2]);
        let i = pool.select(None, &[]).unwrap();
        pool.finished(i, true); // max_fails 1: out for fail_timeout
        for _ in 0..20 {
            let j = pool.select(None, &[]).unwrap();
            assert_ne!(j, i);
            pool.finished(j, false);
        }
        let j = pool.select(None, &[(i + 1) % 3]).unwrap();
        assert_eq!(
            j,
            (i + 2) % 3,
            "the tried one and the failed one are both skipped"
        );
        pool.finished(j, false);
        assert_eq!(pool.counts(), (3, 2));
    }

    #[test]
    fn backups_only_when_every_primary_is_down() {
        let mut c = config(3);
        c.backends[2].backup = true;
        let pool = Pool::new(c);
        for _ in 0..10 {
            let i = pool.select(None, &[]).unwrap();
            assert_ne!(i, 2);
            pool.finished(i, false);
        }
        assert_eq!(pool.select(None, &[0, 1]), Ok(2));
        pool.finished(2, false);
        let mut c = config(2);
        c.backends[0].down = true;
        c.backends[1].down = true;
        assert_eq!(Pool::new(c).select(None, &[]), Err(NoBackend::AllDown));
        assert_eq!(
            Pool::new(PoolConfig {
                backends: vec![],
                ..config(0)
            })
            .select(None, &[]),
            Err(NoBackend::Empty)
        );
    }

    #[test]
    fn reconfiguration_keeps_health_of_remaining_backends() {
        let pool = Pool::new(config(2));
        let i = pool.select(None, &[]).unwrap();
        pool.finished(i, true);
        let failed = pool.address(i).unwrap();
        let mut c = config(2);
        c.backends.push(BackendSpec {
            addr: "10.0.0.9:80".parse().unwrap(),
            ..c.backends[0].clone()
        });
        let bigger = Pool::reconfigured(c, &pool);
        let failed_index = bigger
            .config
            .backends
            .iter()
            .position(|b| b.addr == failed)
            .unwrap();
        for _ in 0..10 {
            let j = bigger.select(None, &[]).unwrap();
            assert_ne!(j, failed_index, "still disabled after the reconfiguration");
            bigger.finished(j, false);
        }
        assert_eq!(bigger.counts(), (3, 2));
    }

    #[test]
    fn active_checks_take_backends_out_and_back() {
        let mut c = config(2);
        c.active = Some(ActiveCheck {
            protocol: HealthCheckProtocol::TCP,
            path: "/".into(),
            host: None,
            statuses: vec![(200, 399)],
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            thresholds: Thresholds {
                healthy: 2,
                unhealthy: 2,
            },
            proxy_protocol: None,
        });
        let pool = Pool::new(c);
        pool.probed(0, false);
        assert_eq!(pool.counts(), (2, 2));
        pool.probed(0, false);
        assert_eq!(pool.counts(), (2, 1));
        for _ in 0..5 {
            let i = pool.select(None, &[]).unwrap();
            assert_eq!(i, 1);
            pool.finished(i, false);
        }
        pool.probed(0, true);
        pool.probed(0, true);
        assert_eq!(pool.counts(), (2, 2));
    }

    #[test]
    fn consistent_hash_keeps_a_client_on_one_backend() {
        let mut c = config(4);
        c.algorithm = Algorithm::ConsistentHash;
        let pool = Pool::new(c);
        let first = pool.select(Some(b"192.168.1.7"), &[]).unwrap();
        pool.finished(first, false);
        for _ in 0..20 {
            let i = pool.select(Some(b"192.168.1.7"), &[]).unwrap();
            assert_eq!(i, first);
            pool.finished(i, false);
        }
    }
}
