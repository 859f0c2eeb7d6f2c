//! Prometheus metrics and the small HTTP endpoint that serves them with `/healthz` and
//! `/readyz` (hyper 1).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use tokio::net::TcpListener;
use tracing::warn;

/// The operator's metrics. A "reconcile" is one pass: plan the whole desired state, apply the
/// differences.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) reconciles: IntCounter,
    pub(crate) reconcile_errors: IntCounter,
    pub(crate) reconcile_duration: Histogram,
    /// Writes to the API by kind (`daemonset`, `virtualip`, `virtualip_status`, …).
    pub(crate) writes: IntCounterVec,
    pub(crate) leader: IntGauge,
    pub(crate) virtualips: IntGauge,
    /// Set when the process is ready: the election runs and, when leading, the caches are
    /// synced.
    pub(crate) ready: AtomicBool,
}

impl Metrics {
    pub(crate) fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounter::new(
            "buoy_operator_reconciles_total",
            "Reconcile passes (plan the desired state, apply the differences)",
        )?;
        let reconcile_errors = IntCounter::new(
            "buoy_operator_reconcile_errors_total",
            "Reconcile passes in which some write failed (retried with backoff)",
        )?;
        let reconcile_duration = Histogram::with_opts(
            HistogramOpts::new(
                "buoy_operator_reconcile_duration_seconds",
                "Duration of a reconcile pass",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let writes = IntCounterVec::new(
            Opts::new(
                "buoy_operator_writes_total",
                "Writes to the Kubernetes API by kind",
            ),
            &["kind"],
        )?;
        let leader = IntGauge::new("buoy_operator_leader", "1 while this replica leads")?;
        let virtualips = IntGauge::new("buoy_operator_virtualips", "VirtualIPs in the cache")?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(writes.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        registry.register(Box::new(virtualips.clone()))?;
        Ok(Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            writes,
            leader,
            virtualips,
            ready: AtomicBool::new(false),
        })
    }

    fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            warn!(error = %e, "cannot encode metrics");
        }
        out
    }
}

fn respond(metrics: &Metrics, path: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics.render(),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", b"ok\n".to_vec()),
        "/readyz" if metrics.ready.load(Ordering::Relaxed) => {
            (StatusCode::OK, "text/plain", b"ok\n".to_vec())
        }
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            b"not ready\n".to_vec(),
        ),
        _ => (StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// Binds `addr` (so that a busy port fails at start) and returns the serving task's future.
pub(crate) async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> std::io::Result<impl Future<Output = ()>> {
    let listener = TcpListener::bind(addr).await?;
    Ok(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let r = respond(&metrics, req.uri().path());
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let m = Metrics::new().unwrap();
        m.reconciles.inc();
        assert_eq!(
            respond(&m, "/readyz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        m.ready.store(true, Ordering::Relaxed);
        assert_eq!(respond(&m, "/readyz").status(), StatusCode::OK);
        assert_eq!(respond(&m, "/healthz").status(), StatusCode::OK);
        assert_eq!(respond(&m, "/nope").status(), StatusCode::NOT_FOUND);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("buoy_operator_reconciles_total 1"));
    }
}
