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
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder, process_collector::ProcessCollector,
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
    /// The part of a pass spent on each kind (`plan`, then the writes of `daemonset`,
    /// `virtualip`, `upstreampool`, `addresspool`, `bgppeer`, `service`).
    pub(crate) reconcile_step_duration: HistogramVec,
    /// Failed attempts of the watches, by kind (each retries with backoff).
    pub(crate) watch_errors: IntCounterVec,
    /// By AddressPool: addresses in use, and still free.
    pub(crate) pool_allocated: IntGaugeVec,
    pub(crate) pool_available: IntGaugeVec,
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
        registry.register(Box::new(ProcessCollector::for_self()))?;
        let info = IntGaugeVec::new(
            Opts::new(
                "buoy_build_info",
                "Always 1; the version and commit the running binary was built from",
            ),
            &["version", "commit"],
        )?;
        info.with_label_values(&[env!("CARGO_PKG_VERSION"), env!("BUOY_COMMIT")])
            .set(1);
        registry.register(Box::new(info))?;
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
        let reconcile_step_duration = HistogramVec::new(
            HistogramOpts::new(
                "buoy_operator_reconcile_step_duration_seconds",
                "Time a reconcile pass spends on each kind: planning, then the writes of each",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["kind"],
        )?;
        let watch_errors = IntCounterVec::new(
            Opts::new(
                "buoy_operator_watch_errors_total",
                "Failed attempts of the operator's watches of the Kubernetes API, by kind",
            ),
            &["kind"],
        )?;
        let pool_allocated = IntGaugeVec::new(
            Opts::new(
                "buoy_addresspool_allocated_addresses",
                "Addresses of an AddressPool that VirtualIPs and Services use",
            ),
            &["addresspool"],
        )?;
        let pool_available = IntGaugeVec::new(
            Opts::new(
                "buoy_addresspool_available_addresses",
                "Addresses of an AddressPool still free (at most 2^63 - 1)",
            ),
            &["addresspool"],
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
        registry.register(Box::new(reconcile_step_duration.clone()))?;
        registry.register(Box::new(watch_errors.clone()))?;
        registry.register(Box::new(pool_allocated.clone()))?;
        registry.register(Box::new(pool_available.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        registry.register(Box::new(virtualips.clone()))?;
        Ok(Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            reconcile_step_duration,
            watch_errors,
            pool_allocated,
            pool_available,
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
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.contains(&format!(
            "buoy_build_info{{commit=\"{}\",version=\"{}\"}} 1",
            env!("BUOY_COMMIT"),
            env!("CARGO_PKG_VERSION")
        )));
    }
}
