//! Prometheus metrics of the proxy (served on the agent's `/metrics`).

use std::{sync::LazyLock, time::Duration};

use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec, Registry, histogram_opts, opts};

/// The agent's registry; the metrics endpoint encodes it.
pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

struct Families {
    requests: IntCounterVec,
    duration: HistogramVec,
    retries: IntCounterVec,
    connections: IntGaugeVec,
    backends: IntGaugeVec,
}

static FAMILIES: LazyLock<Families> = LazyLock::new(|| {
    let f = Families {
        requests: IntCounterVec::new(
            opts!(
                "buoy_proxy_requests_total",
                "Requests (HTTP) or connections (TCP) by listener and status class"
            ),
            &["listener", "class"],
        )
        .unwrap_or_else(|_| unreachable!()),
        duration: HistogramVec::new(
            histogram_opts!(
                "buoy_proxy_request_duration_seconds",
                "Time from request to response end, by listener",
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0
                ]
            ),
            &["listener"],
        )
        .unwrap_or_else(|_| unreachable!()),
        retries: IntCounterVec::new(
            opts!(
                "buoy_proxy_retries_total",
                "Attempts sent to another backend"
            ),
            &["listener"],
        )
        .unwrap_or_else(|_| unreachable!()),
        connections: IntGaugeVec::new(
            opts!("buoy_proxy_active_connections", "Open client connections"),
            &["listener"],
        )
        .unwrap_or_else(|_| unreachable!()),
        backends: IntGaugeVec::new(
            opts!(
                "buoy_proxy_backend_healthy",
                "1 while a backend passes its health checks"
            ),
            &["pool", "backend"],
        )
        .unwrap_or_else(|_| unreachable!()),
    };
    for c in [
        Box::new(f.requests.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(f.duration.clone()),
        Box::new(f.retries.clone()),
        Box::new(f.connections.clone()),
        Box::new(f.backends.clone()),
    ] {
        // Registering the same family twice is the only error, and it happens once here.
        let _ = REGISTRY.register(c);
    }
    f
});

/// The metrics of one listener, with the label resolved once (not per request).
pub struct ListenerMetrics {
    by_class: [prometheus::IntCounter; 6],
    duration: prometheus::Histogram,
    retries: prometheus::IntCounter,
    connections: prometheus::IntGauge,
}

const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

impl ListenerMetrics {
    pub fn new(listener: &str) -> Self {
        let f = &*FAMILIES;
        ListenerMetrics {
            by_class: CLASSES.map(|c| f.requests.with_label_values(&[listener, c])),
            duration: f.duration.with_label_values(&[listener]),
            retries: f.retries.with_label_values(&[listener]),
            connections: f.connections.with_label_values(&[listener]),
        }
    }

    /// One finished request; `status` 0 when no response was sent.
    pub fn observe(&self, status: u16, elapsed: Duration, retries: u32) {
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

    pub fn connection_opened(&self) {
        self.connections.inc();
    }

    pub fn connection_closed(&self) {
        self.connections.dec();
    }
}

pub fn backend_health(pool: &str, backend: &str, healthy: bool) {
    FAMILIES
        .backends
        .with_label_values(&[pool, backend])
        .set(i64::from(healthy));
}

/// The text exposition of every metric.
pub fn encode() -> String {
    let mut out = String::new();
    let _ = prometheus::TextEncoder::new().encode_utf8(&REGISTRY.gather(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_class() {
        let m = ListenerMetrics::new("test/vip:80");
        m.observe(200, Duration::from_millis(3), 0);
        m.observe(502, Duration::from_millis(3), 2);
        m.connection_opened();
        let text = encode();
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
}
