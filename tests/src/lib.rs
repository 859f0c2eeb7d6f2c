//! Buoy's test infrastructure: the network-namespace lab, traffic probes, process guards, and
//! (later) the Kubernetes API test server and benchmarks.

pub mod backend;
pub mod netlab;
pub mod probe;
pub mod process;
