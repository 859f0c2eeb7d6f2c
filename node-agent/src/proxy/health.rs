//! Active health checks (the IO side): every interval, each backend of a pool is probed with a
//! TCP connect or an HTTP(S) GET ([`crate::probe`]), and the result is fed to the pool's
//! rise/fall state. A pool with `tls` is checked over its own TLS, verified as its traffic is
//! (an HTTP or HTTPS check alike); without, an HTTPS check does not verify the certificate.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use buoy_crds::HealthCheckProtocol;
use tokio::{io::AsyncWriteExt, net::TcpStream, time::timeout};

use crate::probe::HttpGet;

use super::{
    active::status_expected, buffered::Buffered, http::PoolSlot, metrics::ProxyMetrics,
    pool::ActiveCheck, upstream::Tls,
};

/// One probe, over the pool's TLS when it has some (`tls`); true when the backend passed.
pub(crate) async fn probe(addr: SocketAddr, check: &ActiveCheck, tls: Option<Tls<'_>>) -> bool {
    timeout(check.timeout, probe_inner(addr, check, tls))
        .await
        .unwrap_or(false)
}

async fn probe_inner(addr: SocketAddr, check: &ActiveCheck, tls: Option<Tls<'_>>) -> bool {
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
    let over_tls = match check.protocol {
        HealthCheckProtocol::TCP => return true,
        HealthCheckProtocol::HTTP => false,
        HealthCheckProtocol::HTTPS => true,
    };
    let get = HttpGet {
        tls: over_tls,
        host: check.host.clone().unwrap_or_else(|| addr.to_string()),
        path: check.path.clone(),
    };
    let status = match tls {
        // The pool's own TLS: a backend that fails its verification fails its checks.
        Some(tls) => match tls.connector {
            Ok(connector) => match connector.handshake(tls.name, Buffered::new(stream)).await {
                Ok(stream) => crate::probe::exchange(stream, &get).await,
                Err(_) => None,
            },
            Err(_) => None,
        },
        None => crate::probe::get(stream, addr, &get).await,
    };
    status.is_some_and(|c| status_expected(c, &check.statuses))
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
            let pool = &pool;
            let probes = pool.config.backends.iter().enumerate().map(|(i, b)| {
                let check = check.clone();
                let addr = b.addr;
                async move { probe(addr, &check, pool.tls(i)).await }
            });
            let results = futures::future::join_all(probes).await;
            for (i, ok) in results.into_iter().enumerate() {
                pool.probed(i, ok);
            }
        }
        // Only while this pool is still the slot's: the series of backends a reconfiguration
        // removed (or of a stopped pool) must not come back from a round that was under way.
        let current = slot.lock().is_ok_and(|p| Arc::ptr_eq(&p, &pool)) && !*stop.borrow();
        for (i, b) in pool.config.backends.iter().enumerate().filter(|_| current) {
            metrics.backend_health(&pool.config.name, &b.addr.to_string(), pool.usable(i));
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}
