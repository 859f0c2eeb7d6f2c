//! Buoy's test infrastructure: the network-namespace lab, traffic probes, process guards, and
//! the Kubernetes API test server (`testapi`) and benchmarks.

pub mod backend;
pub mod keepalived;
pub mod kubectl;
pub mod netlab;
pub mod probe;
pub mod process;
pub mod seed;
pub mod testapi;

/// A `--name VALUE` flag of a bench command, or `default`.
pub fn bench_flag<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
