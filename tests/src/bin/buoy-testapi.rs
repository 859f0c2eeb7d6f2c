//! `buoy-testapi`: Buoy's in-memory Kubernetes API test server, standalone. Writes a kubeconfig
//! that points at it and prints `listening on ADDR` once it serves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use buoy_tests::testapi::{Options, TestApi, TlsFiles};
use clap::Parser;

#[derive(Parser)]
#[command(about = "In-memory Kubernetes API server for Buoy's tests")]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where to write the kubeconfig that points at the server.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Seconds between watch bookmarks (for watches that ask for them).
    #[arg(long, default_value_t = 1)]
    bookmark_interval: u64,
    /// Serve HTTPS with this certificate (PEM; with --tls-key).
    #[arg(long, requires = "tls_key", value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "tls_cert", value_name = "PEM")]
    tls_key: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let api = TestApi::start_with(Options {
        listen: args.listen,
        kubeconfig: Some(args.kubeconfig.clone()),
        bookmark_interval: Duration::from_secs(args.bookmark_interval.max(1)),
        tls: args
            .tls_cert
            .zip(args.tls_key)
            .map(|(cert, key)| TlsFiles { cert, key }),
        ..Options::default()
    })
    .with_context(|| format!("starting the test API server on {}", args.listen))?;
    println!("listening on {}", api.addr());
    // Serves until killed; the server runs on its own thread.
    loop {
        std::thread::park();
    }
}
