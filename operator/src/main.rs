//! `buoy-operator`: the cluster side of Buoy. Parses the command line and wires: `crds` prints
//! the CustomResourceDefinitions, `run` starts logging and the async runtime and hands the
//! flags to [`buoy_operator::run`].

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

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
    Run(Box<buoy_operator::Flags>),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Crds {
            out_dirs,
            reference,
        } => crds(out_dirs, reference),
        Command::Run(flags) => {
            // kube-rs builds its TLS client with the process's provider: with the agent in the
            // same build rustls has two and would not choose.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            rt.block_on(buoy_operator::run(*flags))?;
            Ok(())
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
