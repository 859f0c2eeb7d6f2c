//! Active health checks (the IO side): every interval, each backend of a pool is probed with a
//! TCP connect or an HTTP(S) GET ([`crate::probe`]), and the result is fed to the pool's
//! rise/fall state.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use buoy_crds::HealthCheckProtocol;
use tokio::{io::AsyncWriteExt, net::TcpStream, time::timeout};

use crate::probe::HttpGet;

use super::{active::status_expected, http::PoolSlot, metrics::ProxyMetrics, pool::ActiveCheck};

/// One probe; true when the backend passed.
pub(crate) async fn probe(addr: SocketAddr, check: &ActiveCheck) -> bool {
    timeout(check.timeout, probe_inner(addr, check))
        .await
        .unwrap_or(false)
}

async fn probe_inner(addr: SocketAddr, check: &ActiveCheck) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return false;
    };
    if let Some(version) = check.proxy_protocol {
        // A backend that expects the header refuses a connection without one.
        let hello = super::proxy_protocol::header(version, None);
        if stream.write_all(&hello.unwrap_or_default()).await.is_err() {
            return false;
        }
    }
    let tls = match check.protocol {
        HealthCheckProtocol::TCP => return true,
        HealthCheckProtocol::HTTP => false,
        HealthCheckProtocol::HTTPS => true,
    };
    let get = HttpGet {
        tls,
        host: check.host.clone().unwrap_or_else(|| addr.to_string()),
        path: check.path.clone(),
    };
    crate::probe::get(stream, addr, &get)
        .await
        .is_some_and(|c| status_expected(c, &check.statuses))
}

/// Probes the pool in `slot` until `stop` turns true. The slot's current pool is read at every
/// round, so reconfiguration takes effect at the next interval.
pub(crate) async fn run(
    slot: PoolSlot,
    mut stop: tokio::sync::watch::Receiver<bool>,
    metrics: ProxyMetrics,
) {
    loop {
        let Ok(pool) = slot.lock().map(|p| Arc::clone(&p)) else {
            return;
        };
        let interval = pool
            .config
            .active
            .as_ref()
            .map_or(Duration::from_secs(1), |c| c.interval);
        if let Some(check) = pool.config.active.clone() {
            let probes = pool.config.backends.iter().map(|b| {
                let check = check.clone();
                let addr = b.addr;
                async move { probe(addr, &check).await }
            });
            let results = futures::future::join_all(probes).await;
            for (i, ok) in results.into_iter().enumerate() {
                pool.probed(i, ok);
            }
        }
        for (i, b) in pool.config.backends.iter().enumerate() {
            metrics.backend_health(&pool.config.name, &b.addr.to_string(), pool.usable(i));
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}
