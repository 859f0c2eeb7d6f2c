//! The commands of `buoy-agent`. This module belongs to the binary, not to the library: it
//! turns flags into the library's calls and errors into messages (with anyhow's context), one
//! file per command.

mod check;
mod import;
mod manifest;
mod proxy;
mod run;
mod standalone;
mod vrrp;

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "buoy-agent",
    version,
    about = "Buoy node agent: VRRP elections, VIP binding and the HTTP/TCP proxy"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate VirtualIP, UpstreamPool, AddressPool, BGPPeer and Secret manifests without running anything (like `nginx -t`).
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
    Standalone(standalone::StandaloneArgs),
    /// Run the agent in a Kubernetes cluster: every VirtualIP that selects this node (and, with
    /// `--placement`, belongs to that placement), from the API; status in `status.nodes[]`,
    /// Events on state changes. SIGTERM hands every VIP over, drains connections and exits.
    Run(run::RunArgs),
    /// Run one VRRP instance only, for debugging (like `keepalived --vrrp`). Logs every state change
    /// as a line with `state=MASTER|BACKUP|FAULT`; SIGTERM or SIGINT hands over gracefully.
    Vrrp(vrrp::VrrpArgs),
    /// Translate keepalived.conf (one per host) and nginx.conf into VirtualIP, UpstreamPool and
    /// Secret YAML on stdout; what cannot be translated is listed on stderr with file and line.
    Import(import::ImportArgs),
    /// Print manifests for setups that run without a cluster: `control-plane`, the VIP in front
    /// of the API servers, as a static Pod.
    #[command(subcommand)]
    Manifest(manifest::ManifestArgs),
}

impl Cli {
    /// Runs the command; its exit status.
    pub(crate) fn run(self) -> ExitCode {
        buoy_agent::proxy::tls::install_provider();
        if matches!(
            self.command,
            Command::Proxy { .. } | Command::Run(_) | Command::Standalone(_)
        ) && let Err(e) = buoy_agent::runner::raise_open_files_limit()
        {
            eprintln!("warning: cannot raise the open files limit: {e}");
        }
        match self.command {
            Command::Check { configs } => check::check(&configs),
            Command::Proxy { configs, threads } => {
                init_logging();
                exit_code(runtime(threads).and_then(|rt| rt.block_on(proxy::proxy(&configs))))
            }
            Command::Run(args) => {
                init_logging();
                exit_code(runtime(args.threads).and_then(|rt| rt.block_on(run::run(args))))
            }
            Command::Standalone(args) => {
                init_logging();
                exit_code(
                    runtime(args.threads).and_then(|rt| rt.block_on(standalone::standalone(args))),
                )
            }
            Command::Import(args) => import::import(args),
            Command::Manifest(args) => manifest::manifest(args),
            Command::Vrrp(args) => {
                init_logging();
                exit_code(run_async(vrrp::vrrp(args)))
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

pub(super) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    buoy_crds::duration::parse(s)
        .map(|d| d.as_std())
        .map_err(|e| e.to_string())
}

/// How the agent reaches FRR, for VirtualIPs whose addresses are announced by BGP.
#[derive(clap::Args, Clone, Debug)]
pub(super) struct BgpArgs {
    /// FRR's configuration directory: Buoy writes `frr.conf` there and has FRR reload it
    /// (frr-reload.py).
    #[arg(long, default_value = "/etc/frr", value_name = "DIR")]
    pub(super) frr_config_dir: PathBuf,
    /// FRR's pathspace (its daemons' `-N NAME`), when several FRRs run on the host.
    #[arg(long, value_name = "NAME")]
    pub(super) frr_pathspace: Option<String>,
    /// The directory of FRR's vty sockets (its daemons' `--vty_socket`), such as a volume
    /// shared with FRR's container.
    #[arg(long, value_name = "DIR")]
    pub(super) frr_vty_socket: Option<PathBuf>,
    /// The BGP router ID (default: the node's address toward its first IPv4 peer).
    #[arg(long, value_name = "IPV4")]
    pub(super) bgp_router_id: Option<std::net::Ipv4Addr>,
    /// On a planned withdrawal (SIGTERM, a VirtualIP deleted), how long routes are announced
    /// with GRACEFUL_SHUTDOWN (RFC 8326) before they are withdrawn.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub(super) bgp_drain: std::time::Duration,
}

impl BgpArgs {
    fn settings(&self) -> buoy_agent::agent::ecmp::BgpSettings {
        buoy_agent::agent::ecmp::BgpSettings {
            config_dir: self.frr_config_dir.clone(),
            pathspace: self.frr_pathspace.clone(),
            vty_socket: self.frr_vty_socket.clone(),
            router_id: self.bgp_router_id,
            drain: self.bgp_drain,
        }
    }
}

/// The runner's settings from the flags.
pub(super) fn settings(
    identity: String,
    state_dir: PathBuf,
    metrics_address: &str,
    drain_timeout: std::time::Duration,
    bgp: &BgpArgs,
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
        bgp: bgp.settings(),
    })
}

/// Every call the agent makes to the API server is bounded: connecting and sending (watches
/// keep their own long reads, which end and resume on their own).
pub(super) fn with_timeouts(mut config: kube::Config) -> kube::Config {
    config.connect_timeout = Some(std::time::Duration::from_secs(5));
    config.write_timeout = Some(buoy_agent::cluster::API_TIMEOUT);
    config
}
