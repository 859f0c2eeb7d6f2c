//! Buoy's test infrastructure: the network-namespace lab, traffic probes, process guards, and
//! the Kubernetes API test server (`testapi`) and benchmarks.

pub mod announce_wire;
pub mod backend;
pub mod frr;
pub mod house;
pub mod keepalived;
pub mod kubectl;
pub mod netlab;
pub mod nginx;
pub mod probe;
pub mod process;
pub mod promtool;
pub mod seed;
pub mod system;
pub mod tcp_wire;
pub mod testapi;
pub mod tls;
pub mod vrrp_wire;

/// A `--name VALUE` flag of a bench command, or `default`.
pub fn bench_flag<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Polls `check` every `every` until it returns Some; fails the test after `within`.
pub async fn eventually<T, F, Fut>(
    what: &str,
    within: std::time::Duration,
    every: std::time::Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
}

/// Makes ring the process's rustls crypto provider, for kube-rs clients: with the agent in the
/// same build rustls has two (ring and aws-lc-rs) and would not choose.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
