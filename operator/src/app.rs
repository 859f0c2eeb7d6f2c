//! The operator process, wired: the flags of `buoy-operator run` ([`Flags`]) become one
//! [`Context`] (the API client, the controller's settings, the metrics), the metrics endpoint
//! serves, and the controller reconciles — at once without leader election, else while this
//! replica holds the Lease. `main.rs` only parses the command line and calls [`run`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use buoy_crds::policy::AddressPolicy;
use k8s_openapi::api::core::v1::ResourceRequirements;
use tokio::sync::watch;
use tracing::{error, info};

use crate::controller::{self, Context};
use crate::daemonset::AgentSettings;
use crate::daemonset::frr::FrrSettings;
use crate::leader;
use crate::telemetry::{self, Metrics};

/// The flags of `buoy-operator run`.
#[derive(clap::Args, Debug)]
pub struct Flags {
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
    /// Image of FRR, run in a container `frr` of every agent Pod for the BGP mode (the agents
    /// then drive it through shared volumes). Without it, agent Pods have no FRR container.
    #[arg(long)]
    agent_frr_image: Option<String>,
    /// imagePullPolicy of the FRR container.
    #[arg(long, default_value = "IfNotPresent", value_parser = ["Always", "IfNotPresent", "Never"])]
    agent_frr_image_pull_policy: String,
    /// Resources of the FRR container, as the JSON of a Kubernetes ResourceRequirements.
    #[arg(
        long,
        default_value = r#"{"requests":{"cpu":"50m","memory":"64Mi"},"limits":{"memory":"256Mi"}}"#
    )]
    agent_frr_resources: String,
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
    address_policy: AddressPolicy,
    /// Let UpstreamPool backends be the node itself (loopback, link-local such as the cloud
    /// metadata address 169.254.169.254, the node's own addresses). Off: such backends are
    /// refused and reported on the pool.
    #[arg(long)]
    allow_node_local_backends: bool,
    /// Give addresses to Services of type LoadBalancer without a `loadBalancerClass` too (as
    /// MetalLB does); without it, only to those of class `buoy.io/vrrp`.
    #[arg(long)]
    default_load_balancer_class: bool,
    /// VRRP advertisement interval of the VirtualIPs that carry Services' addresses (failover
    /// takes about 3 intervals).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    load_balancer_advertisement_interval: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    buoy_crds::duration::parse(s)
        .map(|d| d.as_std())
        .map_err(|e| e.to_string())
}

/// Why the operator stops with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--agent-resources` does not parse.
    #[error("--agent-resources must be the JSON of a ResourceRequirements")]
    AgentResources(#[source] serde_json::Error),
    /// `--agent-frr-resources` does not parse.
    #[error("--agent-frr-resources must be the JSON of a ResourceRequirements")]
    FrrResources(#[source] serde_json::Error),
    /// The metrics cannot be registered.
    #[error("registering metrics")]
    Metrics(#[source] prometheus::Error),
    /// The metrics address cannot be bound.
    #[error("listening on {address}")]
    Listen {
        /// `--metrics-address`.
        address: SocketAddr,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
    /// No Kubernetes API client: neither in a cluster nor a kubeconfig.
    #[error("connecting to the Kubernetes API")]
    Connect(#[source] kube::Error),
    /// A watch cache of this kind stopped before it was filled.
    #[error("the {0} cache stopped before it was filled")]
    CacheSync(&'static str),
    /// The leader election task ended while following.
    #[error("the leader election stopped")]
    ElectionStopped,
    /// Another replica may lead now: this one stops acting at once and exits, and Kubernetes
    /// restarts it.
    #[error("lost leadership")]
    LostLeadership,
}

impl Flags {
    /// `--identity`, else `hostname-pid`.
    fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "buoy-operator".into());
            format!("{host}-{}", std::process::id())
        })
    }

    /// How the controller runs, and how its agents do.
    fn controller(&self, identity: String) -> Result<controller::Settings, Error> {
        let resources: ResourceRequirements =
            serde_json::from_str(&self.agent_resources).map_err(Error::AgentResources)?;
        let frr = match self.agent_frr_image.as_deref().filter(|i| !i.is_empty()) {
            None => None,
            Some(image) => Some(FrrSettings {
                image: image.to_string(),
                image_pull_policy: self.agent_frr_image_pull_policy.clone(),
                resources: serde_json::from_str(&self.agent_frr_resources)
                    .map_err(Error::FrrResources)?,
            }),
        };
        Ok(controller::Settings {
            agents: AgentSettings {
                namespace: self.namespace.clone(),
                image: self.agent_image.clone(),
                image_pull_policy: self.agent_image_pull_policy.clone(),
                service_account: self.agent_service_account.clone(),
                resources,
                address_policy: self.address_policy,
                allow_node_local_backends: self.allow_node_local_backends,
                frr,
            },
            release_timeout: self.release_timeout,
            concurrency: self.concurrency,
            identity,
            address_policy: self.address_policy,
            load_balancers: crate::plan::services::Settings {
                default_class: self.default_load_balancer_class,
                advertisement_interval: self.load_balancer_advertisement_interval,
            },
        })
    }
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

/// Runs the operator until SIGTERM or SIGINT: serves metrics and probes, then reconciles — at
/// once without leader election, else while this replica leads. Losing the lead is an error, so
/// that two leaders never act at once.
pub async fn run(flags: Flags) -> Result<(), Error> {
    let identity = flags.identity();
    let settings = flags.controller(identity.clone())?;
    let metrics = Arc::new(Metrics::new().map_err(Error::Metrics)?);
    let server = telemetry::serve(flags.metrics_address, metrics.clone())
        .await
        .map_err(|source| Error::Listen {
            address: flags.metrics_address,
            source,
        })?;
    tokio::spawn(server);
    let client = kube::Client::try_default().await.map_err(Error::Connect)?;
    info!(%identity, namespace = %flags.namespace, metrics = %flags.metrics_address, "buoy-operator starting");
    let ctx = Context {
        client,
        settings,
        metrics,
    };
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        terminated().await;
        info!("stopping");
        let _ = stop_tx.send(true);
    });
    if !flags.leader_election {
        ctx.metrics.ready.store(true, Ordering::Relaxed);
        ctx.metrics.leader.set(1);
        return controller::run(ctx, stop).await.map_err(|e| match e {
            controller::Error::CacheSync(kind) => Error::CacheSync(kind),
        });
    }
    let election = leader::Settings {
        lease_name: flags.lease_name.clone(),
        identity,
        lease_duration: flags.lease_duration,
    };
    let lease_namespace = flags
        .leader_election_namespace
        .as_deref()
        .unwrap_or(&flags.namespace);
    elected(ctx, election, lease_namespace, stop).await
}

/// Takes part in the election on the Lease in `namespace`; reconciles while leading.
async fn elected(
    ctx: Context,
    election: leader::Settings,
    namespace: &str,
    stop: watch::Receiver<bool>,
) -> Result<(), Error> {
    let identity = election.identity.clone();
    let (lead_tx, mut lead_rx) = watch::channel(false);
    let api = kube::Api::namespaced(ctx.client.clone(), namespace);
    let task = tokio::spawn(leader::run(api, election, lead_tx, stop.clone()));
    ctx.metrics.ready.store(true, Ordering::Relaxed);
    let mut stop = stop;
    if !follow(&mut lead_rx, &mut stop).await? {
        let _ = task.await;
        return Ok(());
    }
    info!(%identity, "leading: reconciling");
    let metrics = ctx.metrics.clone();
    metrics.leader.set(1);
    let lost = lead(ctx, &mut lead_rx, &mut stop).await;
    metrics.leader.set(0);
    if lost {
        return Err(Error::LostLeadership);
    }
    let _ = task.await;
    info!("stopped");
    Ok(())
}

/// Follows until this replica leads (true) or stops (false).
async fn follow(
    lead: &mut watch::Receiver<bool>,
    stop: &mut watch::Receiver<bool>,
) -> Result<bool, Error> {
    loop {
        if *lead.borrow_and_update() {
            return Ok(true);
        }
        tokio::select! {
            r = lead.changed() => if r.is_err() { return Err(Error::ElectionStopped) },
            _ = stop.changed() => return Ok(false),
        }
    }
}

/// Runs the controller until the lead is lost (true) or the operator stops (false).
async fn lead(
    ctx: Context,
    lead: &mut watch::Receiver<bool>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let (ctrl_stop_tx, ctrl_stop_rx) = watch::channel(false);
    let ctrl = tokio::spawn(controller::run(ctx, ctrl_stop_rx));
    let lost = loop {
        tokio::select! {
            r = lead.changed() => {
                if r.is_err() || !*lead.borrow_and_update() {
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
    lost
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        flags: Flags,
    }

    fn settings(args: &[&str]) -> Result<controller::Settings, Error> {
        let cli = Cli::try_parse_from(std::iter::once("buoy-operator").chain(args.iter().copied()))
            .unwrap();
        cli.flags.controller("test".into())
    }

    #[test]
    fn an_frr_image_puts_frr_beside_the_agents() {
        assert_eq!(settings(&[]).unwrap().agents.frr, None);
        assert_eq!(settings(&["--agent-frr-image="]).unwrap().agents.frr, None);
        let frr = settings(&[
            "--agent-frr-image=quay.io/frrouting/frr:8.4.4",
            "--agent-frr-image-pull-policy=Always",
            r#"--agent-frr-resources={"requests":{"cpu":"10m"}}"#,
        ])
        .unwrap()
        .agents
        .frr
        .unwrap();
        assert_eq!(frr.image, "quay.io/frrouting/frr:8.4.4");
        assert_eq!(frr.image_pull_policy, "Always");
        assert_eq!(
            serde_json::to_value(&frr.resources).unwrap(),
            serde_json::json!({"requests": {"cpu": "10m"}})
        );
        let bad = settings(&["--agent-frr-image=frr", "--agent-frr-resources=lots"]);
        assert!(
            matches!(bad, Err(Error::FrrResources(_))),
            "{:?}",
            bad.map(|s| s.agents.frr)
        );
    }
}
