//! `buoy-agent`: the node side of Buoy.

// The proxy allocates per request (pingora headers and buffers); mimalloc is markedly cheaper than
// glibc malloc for that pattern.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{
    net::IpAddr,
    path::PathBuf,
    process::ExitCode,
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result, bail};
use buoy_agent::vrrp::instance::{self, InstanceEvent, Stats};
use clap::{Parser, Subcommand};
use tokio::sync::{mpsc, watch};
use tracing::info;

#[derive(Parser)]
#[command(
    name = "buoy-agent",
    version,
    about = "Buoy node agent: VRRP elections, VIP binding and the HTTP/TCP proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate VirtualIP, UpstreamPool and Secret manifests without running anything (like `nginx -t`).
    Check {
        /// Files or directories (every *.yaml / *.yml inside).
        #[arg(long = "config", value_name = "PATH", required = true)]
        configs: Vec<PathBuf>,
    },
    /// Run only the proxy for the listeners of the VirtualIPs in these files (static backends), on
    /// their addresses, without VRRP and without touching interfaces, until SIGTERM.
    Proxy {
        /// Files or directories (every *.yaml / *.yml inside).
        #[arg(long = "config", value_name = "PATH", required = true)]
        configs: Vec<PathBuf>,
        /// Proxy worker threads (default: the number of cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Run the agent without a cluster, from VirtualIP, UpstreamPool and Secret YAML files: VRRP
    /// for every VirtualIP that selects this node, and its proxy listeners. Reloads on SIGHUP and
    /// when a file changes (a bad new configuration is rejected; the running one stays). SIGTERM
    /// hands every VIP over to a backup, drains connections and exits.
    Standalone(StandaloneArgs),
    /// Run the agent in a Kubernetes cluster: every VirtualIP that selects this node (and, with
    /// `--placement`, belongs to that placement), from the API; status in `status.nodes[]`,
    /// Events on state changes. SIGTERM hands every VIP over, drains connections and exits.
    Run(RunArgs),
    /// Run one VRRP instance only, for debugging (like `keepalived --vrrp`). Logs every state change
    /// as a line with `state=MASTER|BACKUP|FAULT`; SIGTERM or SIGINT hands over gracefully.
    Vrrp(VrrpArgs),
    /// Translate keepalived.conf (one per host) and nginx.conf into VirtualIP, UpstreamPool and
    /// Secret YAML on stdout; what cannot be translated is listed on stderr with file and line.
    Import(ImportArgs),
}

#[derive(clap::Args)]
struct ImportArgs {
    /// keepalived.conf files, one per host (their instances merge into one VirtualIP per
    /// virtual_router_id and addresses, with one priority per host).
    #[arg(long = "keepalived", value_name = "FILE", num_args = 1..)]
    keepalived: Vec<PathBuf>,
    /// nginx.conf files (includes are followed).
    #[arg(long = "nginx", value_name = "FILE", num_args = 1..)]
    nginx: Vec<PathBuf>,
    /// Namespace of the objects.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Node names: keepalived's router_id (the file name where it is missing or shared), or
    /// always the file name without extension (lb1.conf → lb1).
    #[arg(long, default_value = "router_id", value_parser = ["router_id", "hostname-of-file"])]
    node_name_from: String,
}

#[derive(clap::Args)]
struct RunArgs {
    /// This node's name (the Kubernetes Node; the DaemonSet passes spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// Serve only VirtualIPs of this placement (set by the operator on each agent DaemonSet).
    #[arg(long)]
    placement: Option<String>,
    /// Proxy worker threads (default: the number of cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Where to serve /metrics, /healthz, /readyz and /status (never reachable through a VIP);
    /// `off` to disable. Default: port 9901 of $HOST_IP (the DaemonSet passes status.hostIP),
    /// else of 127.0.0.1.
    #[arg(long)]
    metrics_address: Option<String>,
    /// On SIGTERM, how long open client connections may take to finish.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    drain_timeout: std::time::Duration,
    /// Serve only VirtualIPs whose addresses, interface and tolerations an AddressPool admitting
    /// their namespace allows (`Enforce`), or any (`Off`). The operator sets it.
    #[arg(long, default_value = "Off")]
    address_policy: buoy_crds::policy::AddressPolicy,
    /// Allow backends on the node itself (loopback, link-local such as 169.254.169.254, the
    /// node's own addresses). The operator sets it.
    #[arg(long)]
    allow_node_local_backends: bool,
    /// Where the agent records what it puts on the host, to undo it after a crash.
    #[arg(
        long,
        env = "BUOY_STATE_DIR",
        default_value = "/run/buoy",
        value_name = "DIR"
    )]
    state_dir: PathBuf,
}

#[derive(clap::Args)]
struct StandaloneArgs {
    /// Files or directories (every *.yaml / *.yml inside).
    #[arg(long = "config", value_name = "PATH", required = true)]
    configs: Vec<PathBuf>,
    /// This node's name, as in `spec.priorities[].node` (default: the host name).
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// A label of this node, for `spec.nodeSelector`; repeatable.
    #[arg(long = "node-label", value_name = "KEY=VALUE", value_parser = parse_label)]
    node_labels: Vec<(String, String)>,
    /// Proxy worker threads (default: the number of cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Where to serve /metrics, /healthz, /readyz and /status (never reachable through a VIP);
    /// `off` to disable.
    #[arg(long, default_value = "127.0.0.1:9901")]
    metrics_address: String,
    /// On SIGTERM, how long open client connections may take to finish.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    drain_timeout: std::time::Duration,
    /// A cluster to take the backends of Service-backed pools from (EndpointSlices); without
    /// it only static backends are served.
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// Apply the AddressPools of the files (`Enforce`), or let the files claim any address
    /// (`Off`: they are the host admin's own).
    #[arg(long, default_value = "Off")]
    address_policy: buoy_crds::policy::AddressPolicy,
    /// Where the agent records what it puts on the host, to undo it after a crash.
    #[arg(
        long,
        env = "BUOY_STATE_DIR",
        default_value = "/run/buoy",
        value_name = "DIR"
    )]
    state_dir: PathBuf,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    buoy_crds::duration::parse(s)
        .map(|d| d.as_std())
        .map_err(|e| e.to_string())
}

#[derive(clap::Args)]
struct VrrpArgs {
    /// Interface that carries the addresses and the adverts.
    #[arg(long)]
    interface: String,
    /// Virtual router ID, 1..255.
    #[arg(long)]
    vrid: u8,
    /// Priority, 1..254 (255: address owner).
    #[arg(long)]
    priority: u8,
    /// Virtual address, optionally with a prefix length (default /32 or /128); repeatable.
    #[arg(long = "address", value_name = "IP/PREFIX", required = true)]
    addresses: Vec<String>,
    /// Advertisement interval (v3: 10ms steps; v2: whole seconds).
    #[arg(long, default_value = "1s")]
    advert_interval: String,
    /// Adverts sent per interval while master, the advert then copies 20 ms apart, 1..4 (each carries the interval).
    #[arg(long, default_value_t = 2)]
    adverts_per_interval: u8,
    /// VRRP version.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=3))]
    version: u8,
    /// Send adverts by unicast to this peer instead of multicast; repeatable.
    #[arg(long = "unicast-peer", value_name = "IP")]
    unicast_peers: Vec<IpAddr>,
    /// Do not take the VIP from a lower-priority master.
    #[arg(long)]
    no_preempt: bool,
    /// VRRPv2 simple password (keepalived auth_type PASS).
    #[arg(long, value_name = "SECRET")]
    auth_pass: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Proxy { .. } | Command::Run(_) | Command::Standalone(_)
    ) && let Err(e) = buoy_agent::runner::raise_open_files_limit()
    {
        eprintln!("warning: cannot raise the open files limit: {e}");
    }
    match cli.command {
        Command::Check { configs } => check(&configs),
        Command::Proxy { configs, threads } => {
            init_logging();
            exit_code(runtime(threads).and_then(|rt| rt.block_on(proxy(&configs))))
        }
        Command::Run(args) => {
            init_logging();
            exit_code(runtime(args.threads).and_then(|rt| rt.block_on(run(args))))
        }
        Command::Standalone(args) => {
            init_logging();
            exit_code(runtime(args.threads).and_then(|rt| rt.block_on(standalone(args))))
        }
        Command::Import(args) => import(args),
        Command::Vrrp(args) => {
            init_logging();
            match run_async(vrrp(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn exit_code(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The proxy's runtime: `threads` workers (default: the number of cores). One thread gets a
/// current-thread runtime, without work-stealing overhead.
fn runtime(threads: Option<usize>) -> Result<tokio::runtime::Runtime> {
    let threads = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .context("starting the runtime")
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

async fn standalone(args: StandaloneArgs) -> Result<()> {
    use buoy_agent::{files::FileSource, node::NodeIdentity};
    let name = args.node_name.unwrap_or_else(hostname);
    let mut labels: std::collections::BTreeMap<String, String> =
        args.node_labels.into_iter().collect();
    labels
        .entry("kubernetes.io/hostname".into())
        .or_insert_with(|| name.clone());
    let endpoints = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let config =
                kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
            let client = kube::Client::try_from(with_timeouts(config))
                .context("connecting to the cluster")?;
            let changed = Arc::new(tokio::sync::Notify::new());
            let stores = buoy_agent::watch::EndpointStores::watch(&client, changed.clone());
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
    )?;
    buoy_agent::runner::run(source, settings).await?;
    Ok(())
}

/// The runner's settings from the flags.
fn settings(
    identity: String,
    state_dir: PathBuf,
    metrics_address: &str,
    drain_timeout: std::time::Duration,
) -> Result<buoy_agent::runner::Settings> {
    let admin = match metrics_address {
        "off" => None,
        a => Some(
            a.parse()
                .with_context(|| format!("--metrics-address {a:?}"))?,
        ),
    };
    Ok(buoy_agent::runner::Settings {
        identity: buoy_agent::agent::Identity {
            name: identity,
            state_dir: Some(state_dir),
        },
        admin,
        drain_timeout,
    })
}

/// Every call the agent makes to the API server is bounded: connecting and sending (watches
/// keep their own long reads, which end and resume on their own).
fn with_timeouts(mut config: kube::Config) -> kube::Config {
    config.connect_timeout = Some(std::time::Duration::from_secs(5));
    config.write_timeout = Some(buoy_agent::cluster::API_TIMEOUT);
    config
}

async fn run(args: RunArgs) -> Result<()> {
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
    )?;
    tracing::info!(node = %identity.node, placement = ?identity.placement, "starting");
    let source = ClusterSource::start(
        client,
        identity,
        cluster::Settings {
            policy: args.address_policy,
            allow_node_local_backends: args.allow_node_local_backends,
        },
    );
    buoy_agent::runner::run(source, settings).await?;
    Ok(())
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
}

fn run_async<F: std::future::Future<Output = Result<()>>>(f: F) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(f)
}

fn import(args: ImportArgs) -> ExitCode {
    use buoy_import::{NodeNameFrom, Options};
    let options = Options {
        keepalived: args.keepalived,
        nginx: args.nginx,
        namespace: args.namespace,
        node_name_from: if args.node_name_from == "hostname-of-file" {
            NodeNameFrom::FileName
        } else {
            NodeNameFrom::RouterId
        },
    };
    match buoy_import::import(&options).and_then(|i| Ok((i.to_yaml()?, i.warnings))) {
        Ok((yaml, warnings)) => {
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(configs: &[PathBuf]) -> ExitCode {
    match buoy_crds::manifest::load(configs) {
        Ok(objects) => {
            use buoy_crds::manifest::Object;
            let count = |f: fn(&Object) -> bool| objects.iter().filter(|o| f(&o.object)).count();
            println!(
                "configuration OK: {} VirtualIP(s), {} UpstreamPool(s), {} AddressPool(s), {} Secret(s)",
                count(|o| matches!(o, Object::VirtualIP(_))),
                count(|o| matches!(o, Object::UpstreamPool(_))),
                count(|o| matches!(o, Object::AddressPool(_))),
                count(|o| matches!(o, Object::Secret(_))),
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!("configuration invalid: {} error(s)", errors.len());
            ExitCode::FAILURE
        }
    }
}

async fn proxy(configs: &[PathBuf]) -> Result<()> {
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
    let desired = buoy_agent::config::proxy_with(&vips, &pools, &resolver.snapshot(), &policy)?;
    let registry = buoy_agent::metrics::Registry::new();
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
                let desired = buoy_agent::config::proxy_with(&vips, &pools, &resolver.snapshot(), &policy)?;
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

/// The flags as a VirtualIP, validated by the API's own rules so that the debug command accepts
/// exactly what a VirtualIP would.
fn vrrp_spec(args: &VrrpArgs) -> Result<buoy_crds::VirtualIP> {
    let mut vrrp = serde_json::json!({
        "version": args.version,
        "advertisementInterval": args.advert_interval,
        "advertisementsPerInterval": args.adverts_per_interval,
        "preempt": !args.no_preempt,
        "unicast": !args.unicast_peers.is_empty(),
    });
    if !args.unicast_peers.is_empty() {
        vrrp["unicastPeers"] = args.unicast_peers.iter().map(|p| p.to_string()).collect();
    }
    if args.auth_pass.is_some() {
        vrrp["authentication"] = serde_json::json!({"type": "Password", "secretRef": {"name": "cli", "key": "password"}});
    }
    let object = serde_json::json!({
        "apiVersion": buoy_crds::API_VERSION,
        "kind": "VirtualIP",
        "metadata": {"name": "cli"},
        "spec": {
            "addresses": args.addresses,
            "interface": args.interface,
            "virtualRouterID": args.vrid,
            "vrrp": vrrp,
        }
    });
    if let Err(errors) = buoy_crds::validation::validate_value::<buoy_crds::VirtualIP>(&object) {
        bail!("invalid flags:\n{errors}");
    }
    if args.priority == 0 {
        bail!("--priority must be 1..255");
    }
    serde_json::from_value(object).context("decoding the flags")
}

async fn vrrp(args: VrrpArgs) -> Result<()> {
    let vip = vrrp_spec(&args)?;
    let config = buoy_agent::config::vrrp_instance(
        &vip.spec,
        &vip.spec.addresses,
        args.priority,
        args.auth_pass.as_deref().map(str::as_bytes),
        None,
    )?;
    let (shutdown_tx, shutdown_rx) = watch::channel(None);
    // No proxy runs here, so there is nothing to track: upstreams count as healthy.
    let (_data_path_tx, data_path) = watch::channel(instance::DataPath::SERVING);
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let stats = Arc::new(Mutex::new(Stats::default()));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = sigterm.recv() => {}
                _ = sigint.recv() => {}
            }
            // The first signal hands over gracefully, another stops at once.
            shutdown_tx.send_modify(|s| {
                *s = Some(match s {
                    None => instance::Stop::Gracefully,
                    Some(_) => instance::Stop::Now,
                })
            });
        }
    });
    tokio::spawn(async move {
        // State changes are logged by the instance; collisions are worth a line of their own too.
        while let Some(event) = events_rx.recv().await {
            if let InstanceEvent::Collision { from, reason } = event {
                info!(%from, %reason, "collision reported");
            }
        }
    });
    let controls = instance::Controls {
        shutdown: shutdown_rx,
        data_path,
        events: events_tx,
        stats: stats.clone(),
        handover: None,
        successor: false,
        // No handover here: nothing is forwarded anywhere.
        peers: None,
    };
    let result = instance::run(config, controls).await;
    if let Ok(s) = stats.lock() {
        info!(
            sent = s.adverts_sent,
            received = s.adverts_received,
            other_vrid = s.other_vrid,
            drops = ?s.drops,
            collisions = ?s.collisions,
            "exiting"
        );
    }
    result.map(|_| ()).map_err(Into::into)
}
