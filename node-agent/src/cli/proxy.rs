//! `buoy-agent proxy`: only the proxy of the VirtualIPs in files, without VRRP.

use std::{path::PathBuf, sync::Arc};

use anyhow::{Result, bail};
use tracing::info;

pub(super) async fn proxy(configs: &[PathBuf]) -> Result<()> {
    let objects = buoy_crds::manifest::load(configs).map_err(|errors| {
        anyhow::anyhow!(
            "invalid configuration:\n{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    let vips = buoy_crds::manifest::virtual_ips(&objects);
    let pools = buoy_crds::manifest::upstream_pools(&objects);
    let secrets = buoy_crds::manifest::secrets(&objects);
    // Backend names resolve beside the proxy, as in the agent; the first answers are awaited
    // briefly so that the proxy starts with them.
    let changed = Arc::new(tokio::sync::Notify::new());
    let resolver = buoy_agent::dns::resolver(changed.clone());
    resolver.want(pools.iter().flat_map(|p| buoy_agent::config::host_names(p)));
    let deadline = tokio::time::Instant::now() + buoy_agent::dns::LOOKUP_TIMEOUT;
    let wanted = pools
        .iter()
        .flat_map(|p| buoy_agent::config::host_names(p))
        .count();
    while resolver.snapshot().len() < wanted && tokio::time::Instant::now() < deadline {
        let _ = tokio::time::timeout_at(deadline, changed.notified()).await;
    }
    let policy = buoy_agent::config::BackendPolicy::default();
    let desired =
        buoy_agent::config::proxy_with(&vips, &pools, &secrets, &resolver.snapshot(), &policy)?;
    let registry = buoy_agent::metrics::registry()?;
    let metrics = buoy_agent::proxy::metrics::ProxyMetrics::new(&registry)?;
    let mut service = buoy_agent::proxy::service::ProxyService::new(metrics);
    let errors = service.apply(&desired).await;
    if !errors.is_empty() {
        bail!(
            "cannot listen:\n{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    info!(
        listeners = desired.listeners.len(),
        pools = desired.pools.len(),
        "proxy ready"
    );
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            () = changed.notified() => {
                let desired = buoy_agent::config::proxy_with(&vips, &pools, &secrets, &resolver.snapshot(), &policy)?;
                service.apply(&desired).await;
            }
        }
    }
    info!("stopping: no new connections; draining open ones");
    service.stop_listening().await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while service.open_connections() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    info!(open = service.open_connections(), "proxy stopped");
    Ok(())
}
