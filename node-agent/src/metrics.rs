//! The agent's Prometheus registry: one per process, made where the process is wired (the
//! `run` and `standalone` commands, the `proxy` command) and handed to each part that registers
//! metrics (the proxy, the VRRP instances, the API watches); the admin endpoint serves its text
//! exposition. No global registry: two agents in one process (tests) keep their series apart.

pub use prometheus::Registry;
use prometheus::{IntCounterVec, IntGaugeVec, opts, process_collector::ProcessCollector};

/// A new registry with the series every Buoy process exports: the process's own (memory, CPU,
/// file descriptors, start time, threads) and `buoy_build_info`.
pub fn registry() -> Result<Registry, prometheus::Error> {
    let registry = Registry::new();
    registry.register(Box::new(ProcessCollector::for_self()))?;
    let info = IntGaugeVec::new(
        opts!(
            "buoy_build_info",
            "Always 1; the version and commit the running binary was built from"
        ),
        &["version", "commit"],
    )?;
    info.with_label_values(&[env!("CARGO_PKG_VERSION"), env!("BUOY_COMMIT")])
        .set(1);
    registry.register(Box::new(info))?;
    Ok(registry)
}

/// The text exposition of every metric in `registry`.
pub(crate) fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Encoding into a String fails only on a metric that cannot be written, which the
    // families' constructors rule out.
    let _ = prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut out);
    out
}

/// The health of the agent's watches of the Kubernetes API, by kind: a cheap clone of shared
/// handles, given to each reflector.
#[derive(Clone, Debug)]
pub struct WatchMetrics {
    errors: IntCounterVec,
}

impl WatchMetrics {
    /// The family, registered in `registry` (an error if it already is).
    pub fn new(registry: &Registry) -> Result<WatchMetrics, prometheus::Error> {
        let errors = IntCounterVec::new(
            opts!(
                "buoy_agent_watch_errors_total",
                "Failed attempts of the agent's watches of the Kubernetes API, by kind (a failing \
                 watch retries at least every 5 s)"
            ),
            &["kind"],
        )?;
        registry.register(Box::new(errors.clone()))?;
        Ok(WatchMetrics { errors })
    }

    /// A watch of `kind` starts: its series exists from zero, so that its first error is an
    /// increase.
    pub(crate) fn started(&self, kind: &str) {
        let _ = self.errors.with_label_values(&[kind]);
    }

    /// A watch of `kind` failed (it retries).
    pub(crate) fn failed(&self, kind: &str) {
        self.errors.with_label_values(&[kind]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_and_build_series_are_exported() {
        let registry = registry().unwrap();
        let watches = WatchMetrics::new(&registry).unwrap();
        watches.started("VirtualIP");
        watches.started("Node");
        watches.failed("Node");
        let text = encode(&registry);
        let value = |name: &str| -> f64 {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        };
        assert!(value("process_resident_memory_bytes ") > 1e6);
        assert!(value("process_open_fds ") >= 3.0);
        assert!(value("process_start_time_seconds ") > 1.7e9);
        let info = format!(
            "buoy_build_info{{commit=\"{}\",version=\"{}\"}} 1",
            env!("BUOY_COMMIT"),
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&info), "{text}");
        assert!(text.contains(r#"buoy_agent_watch_errors_total{kind="VirtualIP"} 0"#));
        assert!(text.contains(r#"buoy_agent_watch_errors_total{kind="Node"} 1"#));
    }
}
