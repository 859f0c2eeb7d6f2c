//! Cluster mode's IO shell: reflectors (list + watch, never polling) of VirtualIPs,
//! UpstreamPools, Services, EndpointSlices and this node's Node; every change re-plans the node
//! (the same pure [`crate::node::plan`] as standalone mode). Each VirtualIP's status entry of
//! this node is written by server-side apply under this node's own field manager, only on
//! change, and state changes become Events. An API outage keeps the last state running: watches
//! retry with backoff and nothing is released for want of the API.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, SystemTime},
};

use buoy_crds::{UpstreamPool, VirtualIP};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        WatchStreamExt,
        events::{Event, EventType, Recorder, Reporter},
        reflector::{self, Store},
        utils::ResetTimerBackoff,
        watcher::{self, ExponentialBackoff, watcher},
    },
};
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::{
    agent::{NodeStatus, VipStatus},
    endpoints,
    node::{NodeConfig, NodeIdentity, PlanError, plan},
};

/// What this agent is.
#[derive(Clone, Debug)]
pub struct Identity {
    pub node: String,
    /// Serve only the VirtualIPs of this placement (`buoy_crds::placement::key`); None: all.
    pub placement: Option<String>,
}

impl Identity {
    /// The field manager of this node's `status.nodes[]` entries.
    pub fn field_manager(&self) -> String {
        format!("buoy-agent/{}", self.node)
    }
}

/// The reflector stores the planner reads.
#[derive(Clone)]
pub struct Stores {
    vips: Store<VirtualIP>,
    pools: Store<UpstreamPool>,
    endpoints: EndpointStores,
    nodes: Store<Node>,
}

/// First retry of a failed watch, and the longest wait between retries before jitter (which
/// adds up to as much again).
const WATCH_RETRY_MIN: Duration = Duration::from_millis(500);
const WATCH_RETRY_MAX: Duration = Duration::from_millis(2500);

/// How watches retry while the API server is away. kube-runtime's default (client-go's
/// reflector: up to 30 s) spares an API server with thousands of watching nodes, but leaves an
/// agent blind for up to half a minute after an outage; the agents are the few load-balancer
/// nodes, so they retry at most every 5 s and catch up within seconds of the API's return.
fn watch_backoff() -> ResetTimerBackoff<ExponentialBackoff> {
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

fn spawn_reflector<K>(api: Api<K>, config: watcher::Config, changed: Arc<Notify>) -> Store<K>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let kind = K::kind(&K::DynamicType::default()).to_string();
    tokio::spawn(async move {
        let mut stream = watcher(api, config)
            .backoff(watch_backoff())
            .reflect(writer)
            .boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => changed.notify_one(),
                // The backoff retries; the store keeps the last known state meanwhile.
                Err(e) => warn!(kind = %kind, error = %e, "watch failed; retrying"),
            }
        }
    });
    store
}

/// Starts the watches. `changed` is notified on every change.
pub fn watch_all(client: &Client, identity: &Identity, changed: Arc<Notify>) -> Stores {
    let own_node = watcher::Config::default().fields(&format!("metadata.name={}", identity.node));
    Stores {
        vips: spawn_reflector(
            Api::all(client.clone()),
            Default::default(),
            changed.clone(),
        ),
        pools: spawn_reflector(
            Api::all(client.clone()),
            Default::default(),
            changed.clone(),
        ),
        endpoints: EndpointStores::watch(client, changed.clone()),
        nodes: spawn_reflector(Api::all(client.clone()), own_node, changed),
    }
}

/// Services and EndpointSlices only: what standalone mode needs for Service-backed pools.
#[derive(Clone)]
pub struct EndpointStores {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
}

impl EndpointStores {
    pub fn watch(client: &Client, changed: Arc<Notify>) -> EndpointStores {
        EndpointStores {
            services: spawn_reflector(
                Api::all(client.clone()),
                Default::default(),
                changed.clone(),
            ),
            slices: spawn_reflector(
                Api::all(client.clone()),
                watcher::Config::default().labels(endpoints::SERVICE_NAME_LABEL),
                changed,
            ),
        }
    }

    /// Waits until both watches have listed once.
    pub async fn services_and_slices_ready(&self) {
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
    /// `pool` with its Service's ready endpoints as static backends.
    pub fn resolve(&self, pool: &UpstreamPool) -> UpstreamPool {
        let services: Vec<&Service> = self.services.iter().map(|s| &**s).collect();
        let slices: Vec<&EndpointSlice> = self.slices.iter().map(|s| &**s).collect();
        endpoints::resolve(pool, &services, &slices)
    }
}

impl Stores {
    /// Waits until every watch has listed once (a plan from half the objects would stop VIPs).
    pub async fn ready(&self) {
        let _ = self.vips.wait_until_ready().await;
        let _ = self.pools.wait_until_ready().await;
        self.endpoints.services_and_slices_ready().await;
        let _ = self.nodes.wait_until_ready().await;
    }
}

/// The node's desired state from the stores (Secrets for VRRPv2 passwords are read on demand:
/// agents get no cluster-wide access to Secrets).
pub async fn desired(
    client: &Client,
    identity: &Identity,
    stores: &Stores,
) -> (NodeConfig, Vec<PlanError>) {
    let labels: BTreeMap<String, String> = stores
        .nodes
        .state()
        .iter()
        .find(|n| n.name_any() == identity.node)
        .map(|n| n.labels().clone())
        .unwrap_or_default();
    let node = NodeIdentity {
        name: identity.node.clone(),
        labels,
    };
    let vips: Vec<Arc<VirtualIP>> = stores
        .vips
        .state()
        .into_iter()
        .filter(|v| {
            identity
                .placement
                .as_ref()
                .is_none_or(|p| *p == buoy_crds::placement::key(&v.spec))
        })
        .collect();
    let endpoints = stores.endpoints.snapshot();
    let pools: Vec<UpstreamPool> = stores
        .pools
        .state()
        .iter()
        .map(|p| endpoints.resolve(p))
        .collect();
    let mut secrets = Vec::new();
    for vip in &vips {
        if let Some(auth) = &vip.spec.vrrp.authentication {
            let ns = vip.namespace().unwrap_or_else(|| "default".into());
            match Api::<Secret>::namespaced(client.clone(), &ns)
                .get_opt(&auth.secret_ref.name)
                .await
            {
                Ok(Some(s)) => secrets.push(s),
                Ok(None) => {}
                Err(e) => {
                    warn!(secret = %auth.secret_ref.name, error = %e, "cannot read the VRRP password")
                }
            }
        }
    }
    let vip_refs: Vec<&VirtualIP> = vips.iter().map(|v| &**v).collect();
    let pool_refs: Vec<&UpstreamPool> = pools.iter().collect();
    let secret_refs: Vec<&Secret> = secrets.iter().collect();
    plan(&node, &vip_refs, &pool_refs, &secret_refs)
}

fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn state_name(s: &VipStatus) -> &'static str {
    match s.state {
        "MASTER" => "Master",
        "BACKUP" => "Backup",
        "FAULT" => "Fault",
        _ => "Initialize",
    }
}

/// The apply body of this node's entry (None: remove our entry).
fn entry_patch(vip: &VirtualIP, node: &str, status: Option<&VipStatus>) -> serde_json::Value {
    let mut body = serde_json::json!({
        "apiVersion": buoy_crds::API_VERSION,
        "kind": "VirtualIP",
        "metadata": {"name": vip.name_any(), "namespace": vip.namespace()},
    });
    if let Some(s) = status {
        let mut entry = serde_json::json!({
            "node": node,
            "state": state_name(s),
            "priority": s.priority,
            "lastTransitionTime": rfc3339(s.since),
            "serving": s.serving,
        });
        if !s.reason.is_empty() {
            entry["message"] = s.reason.clone().into();
        }
        if !s.collisions.is_empty() {
            entry["foreignRouters"] = s
                .collisions
                .keys()
                .take(16)
                .map(|ip| ip.to_string())
                .collect();
        }
        body["status"] = serde_json::json!({ "nodes": [entry] });
    }
    body
}

fn vip_key(vip: &VirtualIP) -> String {
    format!(
        "{}/{}",
        vip.namespace().unwrap_or_else(|| "default".into()),
        vip.name_any()
    )
}

/// Writes this node's entries of `status.nodes[]` as the agent's status changes, and emits an
/// Event per state change. Writes are coalesced: at most one round per `min_interval`.
pub async fn report_status(
    client: Client,
    identity: Identity,
    stores: Stores,
    mut status: watch::Receiver<NodeStatus>,
    min_interval: Duration,
) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "buoy-agent".into(),
            instance: Some(identity.node.clone()),
        },
    );
    let params = PatchParams::apply(&identity.field_manager()).force();
    // What the API has from us, by VirtualIP key (None: no entry).
    let mut written: BTreeMap<String, Option<VipStatus>> = BTreeMap::new();
    loop {
        let now = status.borrow_and_update().clone();
        let vips = stores.vips.state();
        let mut seen = BTreeSet::new();
        for vip in &vips {
            let key = vip_key(vip);
            seen.insert(key.clone());
            let mine = now.get(&key);
            let has_entry = vip
                .status
                .as_ref()
                .is_some_and(|s| s.nodes.iter().any(|n| n.node == identity.node));
            let last = written.get(&key);
            let unchanged = match (last, mine) {
                (Some(Some(a)), Some(b)) => a == b,
                (Some(None), None) | (None, None) => !has_entry,
                _ => false,
            };
            if unchanged {
                continue;
            }
            let api: Api<VirtualIP> =
                Api::namespaced(client.clone(), &vip.namespace().unwrap_or_default());
            let body = entry_patch(vip, &identity.node, mine);
            match api
                .patch_status(&vip.name_any(), &params, &Patch::Apply(&body))
                .await
            {
                Ok(_) => {
                    let previous = last.and_then(|l| l.as_ref()).map(|s| s.state);
                    if let Some(s) = mine
                        && previous != Some(s.state)
                    {
                        publish(&recorder, vip, &identity.node, s).await;
                    }
                    written.insert(key, mine.cloned());
                }
                // Retried at the next round (the VirtualIP may be gone).
                Err(e) => warn!(virtualip = %key, error = %e, "cannot write status"),
            }
        }
        written.retain(|k, _| seen.contains(k));
        tokio::time::sleep(min_interval).await;
        // Wake on a status change, or every few seconds to catch objects that were recreated.
        let _ = tokio::time::timeout(Duration::from_secs(5), status.changed()).await;
    }
}

/// Removes this node's entries from every VirtualIP (the agent is stopping: it no longer takes
/// part, and the operator's finalizer waits for masters to go).
pub async fn clear_entries(client: &Client, identity: &Identity, stores: &Stores) {
    let params = PatchParams::apply(&identity.field_manager()).force();
    for vip in stores.vips.state() {
        let ours = vip
            .status
            .as_ref()
            .is_some_and(|s| s.nodes.iter().any(|n| n.node == identity.node));
        if !ours {
            continue;
        }
        let api: Api<VirtualIP> =
            Api::namespaced(client.clone(), &vip.namespace().unwrap_or_default());
        let body = entry_patch(&vip, &identity.node, None);
        if let Err(e) = api
            .patch_status(&vip.name_any(), &params, &Patch::Apply(&body))
            .await
        {
            warn!(virtualip = %vip_key(&vip), error = %e, "cannot remove this node's status entry");
        }
    }
}

async fn publish(recorder: &Recorder, vip: &VirtualIP, node: &str, s: &VipStatus) {
    let type_ = if s.state == "FAULT" {
        EventType::Warning
    } else {
        EventType::Normal
    };
    let note = format!(
        "node {node} is {} (priority {}): {}",
        state_name(s),
        s.priority,
        s.reason
    );
    let reference: ObjectReference = vip.object_ref(&());
    let event = Event {
        type_,
        reason: state_name(s).into(),
        note: Some(note.chars().take(1024).collect()),
        action: "VRRP".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &reference).await {
        warn!(error = %e, "cannot publish an event");
    }
}

/// Logs what the planner refused (once per distinct message).
pub fn log_plan_errors(errors: &[PlanError], logged: &mut BTreeSet<String>) {
    let now: BTreeSet<String> = errors.iter().map(ToString::to_string).collect();
    for e in now.difference(logged) {
        info!("not served on this node: {e}");
    }
    *logged = now;
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

    #[test]
    fn the_entry_patch_carries_only_this_nodes_entry() {
        let vip: VirtualIP = serde_yaml::from_str(
            "{apiVersion: buoy.io/v1alpha1, kind: VirtualIP, metadata: {name: web, namespace: shop},
              spec: {addresses: [10.0.0.1]}}",
        )
        .unwrap();
        let s = VipStatus {
            state: "MASTER",
            priority: 102,
            reason: "no advert within Master_Down_Interval".into(),
            since: SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000),
            collisions: [("10.0.0.9".parse().unwrap(), "x".to_string())].into(),
            serving: true,
        };
        let body = entry_patch(&vip, "n1", Some(&s));
        assert_eq!(body["metadata"]["namespace"], "shop");
        let nodes = body["status"]["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0]["node"], "n1");
        assert_eq!(nodes[0]["state"], "Master");
        assert_eq!(nodes[0]["lastTransitionTime"], "2025-11-24T16:00:00Z");
        assert_eq!(nodes[0]["foreignRouters"][0], "10.0.0.9");
        // The typed status accepts it.
        let typed: buoy_crds::VirtualIPStatus =
            serde_json::from_value(body["status"].clone()).unwrap();
        assert_eq!(typed.nodes[0].state, buoy_crds::VrrpState::Master);
        // No status: applying it removes our entry.
        assert!(entry_patch(&vip, "n1", None).get("status").is_none());
    }
}
