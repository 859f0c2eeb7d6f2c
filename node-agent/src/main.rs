//! `buoy-agent`: the node side of Buoy.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check { configs } => check(&configs),
    }
}

fn check(configs: &[PathBuf]) -> ExitCode {
    match buoy_crds::manifest::load(configs) {
        Ok(objects) => {
            let count = |f: fn(&buoy_crds::manifest::Object) -> bool| {
                objects.iter().filter(|o| f(&o.object)).count()
            };
            println!(
                "configuration OK: {} VirtualIP(s), {} UpstreamPool(s), {} Secret(s)",
                count(|o| matches!(o, buoy_crds::manifest::Object::VirtualIP(_))),
                count(|o| matches!(o, buoy_crds::manifest::Object::UpstreamPool(_))),
                count(|o| matches!(o, buoy_crds::manifest::Object::Secret(_))),
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
