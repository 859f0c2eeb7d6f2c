//! VRRP's IO shell: the sockets, the hosts' shared resources, the instance that drives the
//! sans-IO core of the `buoy-vrrp` crate, and the metrics.

pub mod host;
pub mod instance;
pub mod metrics;
pub(crate) mod socket;
