//! Backend host names, as nginx's `server … resolve` treats them: looked up asynchronously
//! (never on the planning path, never blocking the agent), every address a name resolves to is
//! a backend, the records are looked up again when their TTL runs out (within bounds), and a
//! failed lookup keeps the last good addresses. A name that never resolved leaves only the
//! pools that use it without those backends.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use hickory_resolver::TokioResolver;
use tokio::sync::Notify;

use crate::refresh::{Fetched, Refresher};

/// Records are looked up again after their TTL, but not sooner than this (a TTL of 0 must not
/// make the agent query in a loop) …
pub(crate) const MIN_REFRESH: Duration = Duration::from_secs(5);
/// … nor later than this (a record changed without its old TTL running out is seen).
pub(crate) const MAX_REFRESH: Duration = Duration::from_secs(300);
/// A lookup that takes longer fails (and is retried with backoff).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// What every wanted name resolves to now.
pub(crate) type Resolutions = BTreeMap<String, Fetched<Vec<IpAddr>>>;

/// When to look a name up again, given its records' TTL.
pub(crate) fn refresh_after(ttl: Duration) -> Duration {
    ttl.clamp(MIN_REFRESH, MAX_REFRESH)
}

/// Keeps the names wanted resolved with the system's resolver configuration
/// (`/etc/resolv.conf`, `/etc/hosts`), notifying `changed` when an answer changes.
pub fn resolver(changed: Arc<Notify>) -> Refresher<String, Vec<IpAddr>> {
    let system = TokioResolver::builder_tokio()
        .and_then(|b| b.build())
        .map(Arc::new)
        .map_err(|e| e.to_string());
    Refresher::new(
        move |name: String| {
            let system = system.clone();
            async move {
                let resolver = system.map_err(|e| format!("no resolver configuration: {e}"))?;
                let found = resolver
                    .lookup_ip(name.as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                let ttl = found
                    .valid_until()
                    .saturating_duration_since(Instant::now());
                let mut addresses: Vec<IpAddr> = found.iter().collect();
                addresses.sort();
                addresses.dedup();
                if addresses.is_empty() {
                    return Err(format!("{name} has no address"));
                }
                Ok((addresses, refresh_after(ttl)))
            }
        },
        LOOKUP_TIMEOUT,
        changed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_honoured_within_bounds() {
        assert_eq!(refresh_after(Duration::ZERO), MIN_REFRESH);
        assert_eq!(
            refresh_after(Duration::from_secs(60)),
            Duration::from_secs(60)
        );
        assert_eq!(refresh_after(Duration::from_secs(86400)), MAX_REFRESH);
    }

    #[tokio::test]
    async fn names_in_etc_hosts_resolve() {
        let changed = Arc::new(Notify::new());
        let r = resolver(changed.clone());
        r.want(["localhost".to_string()]);
        tokio::time::timeout(Duration::from_secs(10), changed.notified())
            .await
            .expect("an answer within the lookup timeout");
        let localhost = &r.snapshot()["localhost"];
        assert!(
            localhost
                .value
                .as_ref()
                .is_some_and(|a| a.iter().all(IpAddr::is_loopback) && !a.is_empty()),
            "{localhost:?}"
        );
    }
}
