//! `buoy-agent standalone`: the agent without a cluster, from YAML files.

use std::{path::PathBuf, sync::Arc};

use anyhow::{Context, Result};

use super::{parse_duration, settings, with_timeouts};

#[derive(clap::Args)]
pub(super) struct StandaloneArgs {
    /// Files or directories (every *.yaml / *.yml inside).
    #[arg(long = "config", value_name = "PATH", required = true)]
    pub(super) configs: Vec<PathBuf>,
    /// This node's name, as in `spec.priorities[].node` (default: the host name).
    #[arg(long, env = "NODE_NAME")]
    pub(super) node_name: Option<String>,
    /// A label of this node, for `spec.nodeSelector`; repeatable.
    #[arg(long = "node-label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub(super) node_labels: Vec<(String, String)>,
    /// Proxy worker threads (default: the number of cores).
    #[arg(long)]
    pub(super) threads: Option<usize>,
    /// Where to serve /metrics, /healthz, /readyz and /status (never reachable through a VIP);
    /// `off` to disable.
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub(super) metrics_address: String,
    /// On SIGTERM, how long open client connections may take to finish.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(super) drain_timeout: std::time::Duration,
    /// A cluster to take the backends of Service-backed pools from (EndpointSlices); without
    /// it only static backends are served.
    #[arg(long, value_name = "PATH")]
    pub(super) kubeconfig: Option<PathBuf>,
    /// Apply the AddressPools of the files (`Enforce`), or let the files claim any address
    /// (`Off`: they are the host admin's own).
    #[arg(long, default_value = "Off")]
    pub(super) address_policy: buoy_crds::policy::AddressPolicy,
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

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

pub(super) async fn standalone(args: StandaloneArgs) -> Result<()> {
    use buoy_agent::{files::FileSource, node::NodeIdentity};
    let name = args.node_name.unwrap_or_else(hostname);
    let mut labels: std::collections::BTreeMap<String, String> =
        args.node_labels.into_iter().collect();
    labels
        .entry("kubernetes.io/hostname".into())
        .or_insert_with(|| name.clone());
    let registry = buoy_agent::metrics::registry().context("registering the metrics")?;
    let endpoints = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let config =
                kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
            let client = kube::Client::try_from(with_timeouts(config))
                .context("connecting to the cluster")?;
            let changed = Arc::new(tokio::sync::Notify::new());
            let watches = buoy_agent::metrics::WatchMetrics::new(&registry)
                .context("registering the metrics")?;
            let stores =
                buoy_agent::watch::EndpointStores::watch(&client, changed.clone(), &watches);
            Some((stores, changed))
        }
        None => None,
    };
    let source = FileSource::new(
        args.configs,
        NodeIdentity { name, labels },
        args.address_policy,
        endpoints,
    );
    let settings = settings(
        "standalone".into(),
        args.state_dir,
        &args.metrics_address,
        args.drain_timeout,
        &args.bgp,
    )?;
    buoy_agent::runner::run(source, settings, registry).await?;
    Ok(())
}
