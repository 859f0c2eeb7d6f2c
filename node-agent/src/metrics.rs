//! The agent's Prometheus registry: one per process, made where the process is wired (the
//! runner, the `proxy` command) and handed to each part that registers metrics (the proxy, the
//! VRRP instances); the admin endpoint serves its text exposition. No global registry: two
//! agents in one process (tests) keep their series apart.

pub use prometheus::Registry;

/// The text exposition of every metric in `registry`.
pub(crate) fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Encoding into a String fails only on a metric that cannot be written, which the
    // families' constructors rule out.
    let _ = prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut out);
    out
}
