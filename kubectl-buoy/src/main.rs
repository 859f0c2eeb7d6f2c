//! `kubectl-buoy`, run by kubectl as `kubectl buoy …` (any executable named `kubectl-NAME` on
//! PATH is a plugin): parses kubectl's flags, which kubectl passes through, and runs the command.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use kubectl_buoy::{Listing, connect, events, status};

#[derive(Parser)]
#[command(
    name = "kubectl buoy",
    bin_name = "kubectl buoy",
    version,
    about = "Buoy's VirtualIPs at a glance: where each one is and why, its failover history, and offline checks of manifests"
)]
struct Cli {
    /// The kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,
    /// The namespace (default: the context's namespace).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One line per VirtualIP and node: the addresses, the node's VRRP state, priority, since
    /// when, whether it serves the listeners, and why (from the agents' status.nodes[]).
    Status {
        /// Only this VirtualIP.
        name: Option<String>,
        /// The VirtualIPs of every namespace.
        #[arg(short = 'A', long, conflicts_with = "name")]
        all_namespaces: bool,
    },
    /// A VirtualIP's history from its Events, oldest first: time, node, type, reason, message.
    Events {
        /// The VirtualIP.
        name: String,
    },
    /// Validate VirtualIP, UpstreamPool, AddressPool, BGPPeer and Secret manifests without a
    /// cluster, as `buoy-agent check` does (files, or directories of *.yaml / *.yml).
    Check {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let connection = connect::Connection {
        kubeconfig: cli.kubeconfig,
        context: cli.context,
    };
    let namespace = cli.namespace;
    let result = match cli.command {
        Command::Check { files } => {
            let valid =
                buoy_agent::check::report(&files, &mut std::io::stdout(), &mut std::io::stderr())
                    .context("writing the report");
            return match valid {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => fail(e),
            };
        }
        Command::Status {
            name,
            all_namespaces,
        } => run_async(async {
            let (client, namespace) = connect(&connection, namespace).await?;
            let scope = match all_namespaces {
                true => status::Scope::All,
                false => status::Scope::Namespace(namespace),
            };
            let now = k8s_openapi::jiff::Timestamp::now();
            status::status(client, &scope, name.as_deref(), now)
                .await
                .context("reading VirtualIPs")
        }),
        Command::Events { name } => run_async(async {
            let (client, namespace) = connect(&connection, namespace).await?;
            events::events(client, &namespace, &name)
                .await
                .with_context(|| format!("reading the Events of VirtualIP {namespace}/{name}"))
        }),
    };
    match result {
        Ok(Listing::Table(table)) => print!("{table}"),
        Ok(Listing::Empty(note)) => eprintln!("{note}"),
        Err(e) => return fail(e),
    }
    ExitCode::SUCCESS
}

async fn connect(
    connection: &connect::Connection,
    namespace: Option<String>,
) -> Result<(kube::Client, String)> {
    connect::client(connection, namespace)
        .await
        .context("connecting to the cluster")
}

fn run_async(f: impl std::future::Future<Output = Result<Listing>>) -> Result<Listing> {
    // kube-rs's TLS: the agent's crypto provider (two are compiled in; rustls would not choose).
    buoy_agent::proxy::tls::install_provider();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(f)
}

/// Prints the error and its causes, each once: kube-rs's errors repeat their source's text in
/// their own.
fn fail(e: anyhow::Error) -> ExitCode {
    let mut message = String::new();
    for cause in e.chain().map(ToString::to_string) {
        if message.contains(&cause) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&cause);
    }
    eprintln!("error: {message}");
    ExitCode::FAILURE
}
