//! Watches of the Kubernetes API shared by both sources: reflectors that retry with Buoy's
//! backoff (the store keeps the last known state meanwhile), and the Services and
//! EndpointSlices of Service-backed pools (cluster mode, and standalone mode with a
//! kubeconfig).

use std::{sync::Arc, time::Duration};

use buoy_crds::UpstreamPool;
use futures::StreamExt;
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use kube::{
    Api, Client, Resource,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        utils::ResetTimerBackoff,
        watcher::{self, ExponentialBackoff, watcher},
    },
};
use tokio::sync::Notify;
use tracing::warn;

use crate::{endpoints, metrics::WatchMetrics};

/// First retry of a failed watch, and the longest wait between retries before jitter (which
/// adds up to as much again).
const WATCH_RETRY_MIN: Duration = Duration::from_millis(500);
const WATCH_RETRY_MAX: Duration = Duration::from_millis(2500);

/// How watches retry while the API server is away. kube-runtime's default (client-go's
/// reflector: up to 30 s) spares an API server with thousands of watching nodes, but leaves an
/// agent blind for up to half a minute after an outage; the agents are the few load-balancer
/// nodes, so they retry at most every 5 s and catch up within seconds of the API's return.
pub(crate) fn watch_backoff() -> ResetTimerBackoff<ExponentialBackoff> {
    ResetTimerBackoff::new(
        backon::ExponentialBuilder::default()
            .with_min_delay(WATCH_RETRY_MIN)
            .with_max_delay(WATCH_RETRY_MAX)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .into(),
        // A watch that has run this long without an error starts over from the first delay.
        Duration::from_secs(120),
    )
}

pub(crate) fn spawn_reflector<K>(
    api: Api<K>,
    config: watcher::Config,
    changed: Arc<Notify>,
    watches: &WatchMetrics,
) -> Store<K>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let kind = K::kind(&K::DynamicType::default()).to_string();
    watches.started(&kind);
    let watches = watches.clone();
    tokio::spawn(async move {
        let mut stream = watcher(api, config)
            .backoff(watch_backoff())
            .reflect(writer)
            .boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => changed.notify_one(),
                // The backoff retries; the store keeps the last known state meanwhile.
                Err(e) => {
                    watches.failed(&kind);
                    warn!(kind = %kind, error = %e, "watch failed; retrying");
                }
            }
        }
    });
    store
}

/// Services and EndpointSlices only: what standalone mode needs for Service-backed pools.
#[derive(Clone)]
pub struct EndpointStores {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
}

impl EndpointStores {
    /// Watches Services and EndpointSlices; `changed` is notified on every change, `watches`
    /// of every failure.
    pub fn watch(client: &Client, changed: Arc<Notify>, watches: &WatchMetrics) -> EndpointStores {
        EndpointStores {
            services: spawn_reflector(
                Api::all(client.clone()),
                Default::default(),
                changed.clone(),
                watches,
            ),
            slices: spawn_reflector(
                Api::all(client.clone()),
                watcher::Config::default().labels(endpoints::SERVICE_NAME_LABEL),
                changed,
                watches,
            ),
        }
    }

    /// Waits until both watches have listed once.
    pub(crate) async fn services_and_slices_ready(&self) {
        let _ = self.services.wait_until_ready().await;
        let _ = self.slices.wait_until_ready().await;
    }

    /// The Services and EndpointSlices now, to resolve every pool of one plan from one view.
    pub fn snapshot(&self) -> EndpointSnapshot {
        EndpointSnapshot {
            services: self.services.state(),
            slices: self.slices.state(),
        }
    }
}

/// Services and EndpointSlices at one moment.
pub struct EndpointSnapshot {
    services: Vec<Arc<Service>>,
    slices: Vec<Arc<EndpointSlice>>,
}

impl EndpointSnapshot {
    /// The Services (`namespace/name`) with a ready endpoint on `node`.
    pub(crate) fn ready_on(&self, node: &str) -> std::collections::BTreeSet<String> {
        let slices: Vec<&EndpointSlice> = self.slices.iter().map(|s| &**s).collect();
        endpoints::ready_on(node, &slices)
    }

    /// `pool` with its Service's ready endpoints as static backends.
    pub(crate) fn resolve(&self, pool: &UpstreamPool) -> UpstreamPool {
        let services: Vec<&Service> = self.services.iter().map(|s| &**s).collect();
        let slices: Vec<&EndpointSlice> = self.slices.iter().map(|s| &**s).collect();
        endpoints::resolve(pool, &services, &slices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_retry_within_five_seconds_forever() {
        let delays: Vec<Duration> = watch_backoff().take(50).collect();
        assert_eq!(delays.len(), 50, "never gives up");
        assert!(delays[0] >= WATCH_RETRY_MIN && delays[0] <= 2 * WATCH_RETRY_MIN);
        assert!(
            delays.iter().all(|d| *d <= 2 * WATCH_RETRY_MAX),
            "{delays:?}"
        );
        assert!(
            delays[10..].iter().all(|d| *d >= WATCH_RETRY_MAX),
            "{delays:?}"
        );
    }
}
