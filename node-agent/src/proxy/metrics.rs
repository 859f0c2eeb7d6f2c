//! Prometheus metrics of the proxy (served on the agent's `/metrics`).

use std::time::Duration;

use prometheus::{
    HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Registry, histogram_opts, opts,
};

/// The proxy's metric families, registered once in the agent's registry and handed to each
/// listener and health checker (a cheap clone: the families are shared handles).
#[derive(Clone)]
pub struct ProxyMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    retries: IntCounterVec,
    connections: IntGaugeVec,
    backends: IntGaugeVec,
    access_log_dropped: IntCounter,
    udp_dropped: IntCounterVec,
    handshake_failures: IntCounterVec,
    certificate_expiry: IntGaugeVec,
    listener_pools: IntGaugeVec,
    backend_requests: IntCounterVec,
}

impl ProxyMetrics {
    /// The families, registered in `registry` (an error if they already are).
    pub fn new(registry: &Registry) -> Result<ProxyMetrics, prometheus::Error> {
        let m = ProxyMetrics {
            requests: IntCounterVec::new(
                opts!(
                    "buoy_proxy_requests_total",
                    "Requests (HTTP) or connections (TCP) by listener and status class"
                ),
                &["listener", "class"],
            )?,
            duration: HistogramVec::new(
                histogram_opts!(
                    "buoy_proxy_request_duration_seconds",
                    "Time from request to response end, by listener",
                    vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0
                    ]
                ),
                &["listener"],
            )?,
            retries: IntCounterVec::new(
                opts!(
                    "buoy_proxy_retries_total",
                    "Attempts sent to another backend"
                ),
                &["listener"],
            )?,
            connections: IntGaugeVec::new(
                opts!("buoy_proxy_active_connections", "Open client connections"),
                &["listener"],
            )?,
            backends: IntGaugeVec::new(
                opts!(
                    "buoy_proxy_backend_healthy",
                    "1 while a backend passes its health checks"
                ),
                &["pool", "backend"],
            )?,
            access_log_dropped: IntCounter::with_opts(opts!(
                "buoy_proxy_access_log_dropped_total",
                "Access log lines dropped because the writer was behind"
            ))?,
            udp_dropped: IntCounterVec::new(
                opts!(
                    "buoy_proxy_udp_datagrams_dropped_total",
                    "Client datagrams dropped because the UDP listener had maxConnections flows"
                ),
                &["listener"],
            )?,
            handshake_failures: IntCounterVec::new(
                opts!(
                    "buoy_proxy_tls_handshake_failures_total",
                    "TLS handshakes that failed or timed out, by listener"
                ),
                &["listener"],
            )?,
            certificate_expiry: IntGaugeVec::new(
                opts!(
                    "buoy_tls_certificate_expiry_timestamp_seconds",
                    "When each certificate an HTTPS listener serves expires (Unix time)"
                ),
                &["listener", "secret"],
            )?,
            backend_requests: IntCounterVec::new(
                opts!(
                    "buoy_proxy_backend_requests_total",
                    "Requests sent to each backend of a pool: HTTP attempts (retries included), \
                     TCP connections, UDP flows"
                ),
                &["pool", "backend"],
            )?,
            // Joins a listener's series with its pools' backend health in queries (an alert on a
            // listener without a healthy backend).
            listener_pools: IntGaugeVec::new(
                opts!(
                    "buoy_proxy_listener_pool",
                    "1 for each pool a running listener sends requests to (its pool and its \
                     routes' pools)"
                ),
                &["listener", "pool"],
            )?,
        };
        registry.register(Box::new(m.listener_pools.clone()))?;
        registry.register(Box::new(m.backend_requests.clone()))?;
        registry.register(Box::new(m.handshake_failures.clone()))?;
        registry.register(Box::new(m.certificate_expiry.clone()))?;
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.retries.clone()))?;
        registry.register(Box::new(m.connections.clone()))?;
        registry.register(Box::new(m.backends.clone()))?;
        registry.register(Box::new(m.access_log_dropped.clone()))?;
        registry.register(Box::new(m.udp_dropped.clone()))?;
        Ok(m)
    }

    /// The metrics of listener `name`.
    pub fn listener(&self, name: &str) -> ListenerMetrics {
        ListenerMetrics {
            by_class: CLASSES.map(|c| self.requests.with_label_values(&[name, c])),
            duration: self.duration.with_label_values(&[name]),
            retries: self.retries.with_label_values(&[name]),
            connections: self.connections.with_label_values(&[name]),
            udp_dropped: self.udp_dropped.with_label_values(&[name]),
            handshake_failures: self.handshake_failures.with_label_values(&[name]),
        }
    }

    /// The certificates listener `name` serves now (`None`: it has stopped): their expiry
    /// series, the ones it no longer serves removed.
    pub(crate) fn certificates(
        &self,
        name: &str,
        before: Option<&super::tls::TlsConfig>,
        now: Option<&super::tls::TlsConfig>,
    ) {
        for c in before.iter().flat_map(|t| &t.certificates) {
            if !now.is_some_and(|t| t.certificates.iter().any(|n| n.secret == c.secret)) {
                let _ = self
                    .certificate_expiry
                    .remove_label_values(&[name, &c.secret]);
            }
        }
        for c in now.iter().flat_map(|t| &t.certificates) {
            let at = c
                .not_after
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            self.certificate_expiry
                .with_label_values(&[name, &c.secret])
                .set(at);
        }
    }

    /// Listener `name` with `config` has started (`running`) or stopped: the pools it sends
    /// requests to.
    pub(crate) fn listener_pools(
        &self,
        name: &str,
        config: &super::listener::ListenerConfig,
        running: bool,
    ) {
        for pool in config
            .pool
            .iter()
            .chain(config.routes.iter().map(|r| &r.pool))
        {
            if running {
                self.listener_pools.with_label_values(&[name, pool]).set(1);
            } else {
                let _ = self.listener_pools.remove_label_values(&[name, pool]);
            }
        }
    }

    /// The request counters of each backend of `pool`, in its order (resolved once per pool, not
    /// per request).
    pub(crate) fn backend_requests(&self, pool: &super::pool::PoolConfig) -> Vec<IntCounter> {
        pool.backends
            .iter()
            .map(|b| {
                self.backend_requests
                    .with_label_values(&[&pool.name, &b.addr.to_string()])
            })
            .collect()
    }

    /// Removes the series of the backends of `before` that `now` no longer has (`None`: the
    /// pool is gone).
    pub(crate) fn forget_backends(
        &self,
        before: &super::pool::PoolConfig,
        now: Option<&super::pool::PoolConfig>,
    ) {
        for b in &before.backends {
            if now.is_some_and(|n| n.backends.iter().any(|k| k.addr == b.addr)) {
                continue;
            }
            let labels = [before.name.as_str(), &b.addr.to_string()];
            let _ = self.backend_requests.remove_label_values(&labels);
            let _ = self.backends.remove_label_values(&labels);
        }
    }

    /// The counter of access log lines dropped.
    pub fn access_log_dropped(&self) -> IntCounter {
        self.access_log_dropped.clone()
    }

    /// Whether `backend` of `pool` passes its health checks now.
    pub(crate) fn backend_health(&self, pool: &str, backend: &str, healthy: bool) {
        self.backends
            .with_label_values(&[pool, backend])
            .set(i64::from(healthy));
    }
}

/// The metrics of one listener, with the label resolved once (not per request).
pub struct ListenerMetrics {
    by_class: [prometheus::IntCounter; 6],
    duration: prometheus::Histogram,
    retries: prometheus::IntCounter,
    connections: prometheus::IntGauge,
    udp_dropped: prometheus::IntCounter,
    handshake_failures: prometheus::IntCounter,
}

const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

impl ListenerMetrics {
    /// One finished request; `status` 0 when no response was sent.
    pub(crate) fn observe(&self, status: u16, elapsed: Duration, retries: u32) {
        let class = match status {
            100..=599 => usize::from(status / 100 - 1),
            _ => 5,
        };
        self.by_class[class].inc();
        self.duration.observe(elapsed.as_secs_f64());
        if retries > 0 {
            self.retries.inc_by(u64::from(retries));
        }
    }

    /// A client datagram dropped: the UDP listener was at its flow limit.
    pub(crate) fn udp_dropped(&self) {
        self.udp_dropped.inc();
    }

    /// A TLS handshake failed or timed out.
    pub(crate) fn handshake_failed(&self) {
        self.handshake_failures.inc();
    }

    pub(crate) fn connection_opened(&self) {
        self.connections.inc();
    }

    pub(crate) fn connection_closed(&self) {
        self.connections.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_class() {
        let registry = Registry::new();
        let m = ProxyMetrics::new(&registry)
            .unwrap()
            .listener("test/vip:80");
        m.observe(200, Duration::from_millis(3), 0);
        m.observe(502, Duration::from_millis(3), 2);
        m.connection_opened();
        let text = crate::metrics::encode(&registry);
        assert!(
            text.contains(r#"buoy_proxy_requests_total{class="2xx",listener="test/vip:80"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"buoy_proxy_requests_total{class="5xx",listener="test/vip:80"} 1"#)
        );
        assert!(text.contains(r#"buoy_proxy_retries_total{listener="test/vip:80"} 2"#));
        assert!(text.contains(r#"buoy_proxy_active_connections{listener="test/vip:80"} 1"#));
    }

    #[test]
    fn requests_are_counted_by_backend_and_gone_backends_forgotten() {
        let registry = Registry::new();
        let metrics = ProxyMetrics::new(&registry).unwrap();
        let config = crate::proxy::pool::tests::config(2);
        let pool = crate::proxy::pool::Pool::new(config.clone())
            .counting(metrics.backend_requests(&config));
        for _ in 0..4 {
            let i = pool.select(None, &[]).unwrap();
            pool.finished(i, false);
        }
        metrics.backend_health("default/web", "10.0.0.1:80", true);
        let text = crate::metrics::encode(&registry);
        for backend in ["10.0.0.1:80", "10.0.0.2:80"] {
            let series = format!(
                r#"buoy_proxy_backend_requests_total{{backend="{backend}",pool="default/web"}} 2"#
            );
            assert!(text.contains(&series), "{text}");
        }
        // The pool loses its first backend: that backend's series go, the other's stay.
        let mut smaller = config.clone();
        smaller.backends.remove(0);
        metrics.forget_backends(&config, Some(&smaller));
        let text = crate::metrics::encode(&registry);
        assert!(!text.contains(r#"backend="10.0.0.1:80""#), "{text}");
        assert!(text.contains(r#"backend="10.0.0.2:80",pool="default/web"} 2"#));
        metrics.forget_backends(&smaller, None);
        assert!(!crate::metrics::encode(&registry).contains("backend="));
    }
}
