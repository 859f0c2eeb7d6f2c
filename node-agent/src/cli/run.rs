//! `buoy-agent run`: the agent in a Kubernetes cluster.

use std::{net::IpAddr, path::PathBuf};

use anyhow::{Context, Result};

use super::{parse_duration, settings, with_timeouts};

#[derive(clap::Args)]
pub(super) struct RunArgs {
    /// This node's name (the Kubernetes Node; the DaemonSet passes spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    pub(super) node_name: String,
    /// Serve only VirtualIPs of this placement (set by the operator on each agent DaemonSet).
    #[arg(long)]
    pub(super) placement: Option<String>,
    /// Proxy worker threads (default: the number of cores).
    #[arg(long)]
    pub(super) threads: Option<usize>,
    /// Where to serve /metrics, /healthz, /readyz and /status (never reachable through a VIP);
    /// `off` to disable. Default: port 9901 of $HOST_IP (the DaemonSet passes status.hostIP),
    /// else of 127.0.0.1.
    #[arg(long)]
    pub(super) metrics_address: Option<String>,
    /// On SIGTERM, how long open client connections may take to finish.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(super) drain_timeout: std::time::Duration,
    /// Serve only VirtualIPs whose addresses, interface and tolerations an AddressPool admitting
    /// their namespace allows (`Enforce`), or any (`Off`). The operator sets it.
    #[arg(long, default_value = "Off")]
    pub(super) address_policy: buoy_crds::policy::AddressPolicy,
    /// Allow backends on the node itself (loopback, link-local such as 169.254.169.254, the
    /// node's own addresses). The operator sets it.
    #[arg(long)]
    pub(super) allow_node_local_backends: bool,
    /// Where the agent records what it puts on the host, to undo it after a crash.
    #[arg(
        long,
        env = "BUOY_STATE_DIR",
        default_value = "/run/buoy",
        value_name = "DIR"
    )]
    pub(super) state_dir: PathBuf,
    #[command(flatten)]
    pub(super) bgp: super::BgpArgs,
}

pub(super) async fn run(args: RunArgs) -> Result<()> {
    use buoy_agent::cluster::{self, ClusterSource};
    let identity = cluster::Identity {
        node: args.node_name.clone(),
        placement: args.placement.clone(),
    };
    let config = kube::Config::infer()
        .await
        .context("finding the Kubernetes API (in-cluster, or KUBECONFIG)")?;
    let client = kube::Client::try_from(with_timeouts(config))
        .context("connecting to the Kubernetes API")?;
    let metrics_address = args.metrics_address.unwrap_or_else(|| {
        let host = std::env::var("HOST_IP").unwrap_or_else(|_| "127.0.0.1".into());
        // An IPv6 host address needs brackets before the port.
        match host.parse::<IpAddr>() {
            Ok(IpAddr::V6(a)) => format!("[{a}]:9901"),
            _ => format!("{host}:9901"),
        }
    });
    let settings = settings(
        args.placement.clone().unwrap_or_else(|| "cluster".into()),
        args.state_dir,
        &metrics_address,
        args.drain_timeout,
        &args.bgp,
    )?;
    tracing::info!(node = %identity.node, placement = ?identity.placement, "starting");
    let registry = buoy_agent::metrics::registry().context("registering the metrics")?;
    let watches =
        buoy_agent::metrics::WatchMetrics::new(&registry).context("registering the metrics")?;
    let source = ClusterSource::start(
        client,
        identity,
        cluster::Settings {
            policy: args.address_policy,
            allow_node_local_backends: args.allow_node_local_backends,
        },
        &watches,
    );
    buoy_agent::runner::run(source, settings, registry).await?;
    Ok(())
}
