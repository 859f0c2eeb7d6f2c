//! `buoy-operator`: the cluster side of Buoy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use buoy_operator::{controller, daemonset::AgentSettings, leader, telemetry::Metrics};
use clap::{Args, Parser, Subcommand};
use k8s_openapi::api::core::v1::ResourceRequirements;
use tokio::sync::watch;
use tracing::{error, info};

#[derive(Parser)]
#[command(
    name = "buoy-operator",
    version,
    about = "Buoy operator: turns VirtualIPs and UpstreamPools into node agents, allocations and status"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions of VirtualIP and UpstreamPool (generated from the Rust types).
    Crds {
        /// Write one file per CRD into each of these directories instead of printing.
        #[arg(long = "out-dir", value_name = "DIR")]
        out_dirs: Vec<PathBuf>,
        /// Print the Markdown API reference instead of the CRDs.
        #[arg(long, conflicts_with = "out_dirs")]
        reference: bool,
    },
    /// Run the operator: reconcile VirtualIPs and UpstreamPools into agent DaemonSets,
    /// VRID and priority allocations, conflicts and status. Connects with the in-cluster
    /// service account, or $KUBECONFIG / ~/.kube/config outside a cluster.
    Run(Box<RunArgs>),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Namespace of the operator: agent DaemonSets and the leader Lease live here.
    #[arg(long, env = "POD_NAMESPACE", default_value = "buoy-system")]
    namespace: String,
    /// Image of the node agent.
    #[arg(long, env = "BUOY_AGENT_IMAGE", default_value = concat!("ghcr.io/buoy-io/buoy-agent:", env!("CARGO_PKG_VERSION")))]
    agent_image: String,
    /// imagePullPolicy of the node agent.
    #[arg(long, default_value = "IfNotPresent", value_parser = ["Always", "IfNotPresent", "Never"])]
    agent_image_pull_policy: String,
    /// ServiceAccount of the node agents.
    #[arg(long, default_value = "buoy-agent")]
    agent_service_account: String,
    /// Resources of the agent container, as the JSON of a Kubernetes ResourceRequirements.
    #[arg(
        long,
        env = "BUOY_AGENT_RESOURCES",
        default_value = r#"{"requests":{"cpu":"50m","memory":"64Mi"},"limits":{"memory":"256Mi"}}"#
    )]
    agent_resources: String,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:9900")]
    metrics_address: SocketAddr,
    /// Leader election on a Lease, so that several replicas can run (only the leader acts).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, default_value = "buoy-operator")]
    lease_name: String,
    /// Namespace of the leader Lease (default: `--namespace`).
    #[arg(long)]
    leader_election_namespace: Option<String>,
    /// Lease duration: a leader that stops renewing is replaced after this long.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// This replica's identity in the Lease and in Events (default: $POD_NAME, else
    /// hostname-pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// How long a deleted VirtualIP waits for its master to release the addresses.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    release_timeout: Duration,
    /// Concurrent writes to the API.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// `Enforce`: a VirtualIP is served only when an AddressPool admitting its namespace allows
    /// its addresses, interface and tolerations (else Ready=False, AddressNotAllowed). `Off`:
    /// any address; pools only hand out addresses to VirtualIPs that name one.
    #[arg(long, default_value = "Enforce")]
    address_policy: buoy_crds::policy::AddressPolicy,
    /// Let UpstreamPool backends be the node itself (loopback, link-local such as the cloud
    /// metadata address 169.254.169.254, the node's own addresses). Off: such backends are
    /// refused and reported on the pool.
    #[arg(long)]
    allow_node_local_backends: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    buoy_crds::duration::parse(s)
        .map(|d| d.as_std())
        .map_err(|e| e.to_string())
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Crds {
            out_dirs,
            reference,
        } => crds(out_dirs, reference),
        Command::Run(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(run(*args))
        }
    }
}

fn crds(out_dirs: Vec<PathBuf>, reference: bool) -> Result<()> {
    if reference {
        print!("{}", buoy_crds::reference::markdown());
    } else if out_dirs.is_empty() {
        print!("{}", buoy_crds::crdgen::all_yaml()?);
    } else {
        for dir in &out_dirs {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for crd in buoy_crds::crdgen::crds() {
                let path = dir.join(buoy_crds::crdgen::file_name(&crd));
                std::fs::write(&path, buoy_crds::crdgen::to_yaml(&crd)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(())
}

fn identity(args: &RunArgs) -> String {
    args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "buoy-operator".into());
        format!("{host}-{}", std::process::id())
    })
}

/// Fires on SIGTERM or SIGINT.
async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn run(args: RunArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let resources: ResourceRequirements = serde_json::from_str(&args.agent_resources)
        .context("--agent-resources must be the JSON of a ResourceRequirements")?;
    let identity = identity(&args);
    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let server = buoy_operator::telemetry::serve(args.metrics_address, metrics.clone())
        .await
        .with_context(|| format!("listening on {}", args.metrics_address))?;
    tokio::spawn(server);
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    info!(%identity, namespace = %args.namespace, metrics = %args.metrics_address, "buoy-operator starting");

    let settings = controller::Settings {
        agents: AgentSettings {
            namespace: args.namespace.clone(),
            image: args.agent_image.clone(),
            image_pull_policy: args.agent_image_pull_policy.clone(),
            service_account: args.agent_service_account.clone(),
            resources,
            address_policy: args.address_policy,
            allow_node_local_backends: args.allow_node_local_backends,
        },
        release_timeout: args.release_timeout,
        concurrency: args.concurrency,
        identity: identity.clone(),
        address_policy: args.address_policy,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        terminated().await;
        info!("stopping");
        let _ = stop_tx.send(true);
    });

    if !args.leader_election {
        metrics.ready.store(true, Ordering::Relaxed);
        metrics.leader.set(1);
        controller::run(client, settings, metrics, stop_rx).await?;
        return Ok(());
    }

    let (lead_tx, mut lead_rx) = watch::channel(false);
    let election = tokio::spawn(leader::run(
        kube::Api::namespaced(
            client.clone(),
            args.leader_election_namespace
                .as_deref()
                .unwrap_or(&args.namespace),
        ),
        leader::Settings {
            lease_name: args.lease_name.clone(),
            identity: identity.clone(),
            lease_duration: args.lease_duration,
        },
        lead_tx,
        stop_rx.clone(),
    ));
    metrics.ready.store(true, Ordering::Relaxed);
    let mut stop = stop_rx.clone();
    // Follow until we lead or stop.
    loop {
        if *lead_rx.borrow_and_update() {
            break;
        }
        tokio::select! {
            r = lead_rx.changed() => if r.is_err() { bail!("the leader election stopped") },
            _ = stop.changed() => {
                let _ = election.await;
                return Ok(());
            }
        }
    }
    info!(%identity, "leading: reconciling");
    metrics.leader.set(1);
    let (ctrl_stop_tx, ctrl_stop_rx) = watch::channel(false);
    let ctrl = tokio::spawn(controller::run(
        client,
        settings,
        metrics.clone(),
        ctrl_stop_rx,
    ));
    let lost = loop {
        tokio::select! {
            r = lead_rx.changed() => {
                if r.is_err() || !*lead_rx.borrow_and_update() {
                    break !*stop.borrow();
                }
            }
            _ = stop.changed() => break false,
        }
    };
    let _ = ctrl_stop_tx.send(true);
    match ctrl.await {
        Ok(Err(e)) => error!(error = %e, "controller stopped"),
        Err(e) => error!(error = %e, "controller task failed"),
        Ok(Ok(())) => {}
    }
    metrics.leader.set(0);
    if lost {
        // Another replica may lead now: stop acting at once and let Kubernetes restart us.
        bail!("lost leadership");
    }
    let _ = election.await;
    info!("stopped");
    Ok(())
}
