//! Cluster mode's source of desired state: reflectors (list + watch, never polling) of
//! VirtualIPs, UpstreamPools, AddressPools, Namespaces, Services, EndpointSlices and this node's
//! Node, and a cache of the Secrets holding VRRP passwords; every change re-plans the node (the
//! same pure [`crate::node::plan`] as standalone mode). Each VirtualIP's and UpstreamPool's
//! status entry of this node is written by server-side apply under this node's own field
//! manager, only on change, and state changes become Events. An API outage keeps the last state
//! running: watches retry with backoff, every write has a timeout and retries at the next round,
//! and nothing is released for want of the API.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use buoy_crds::{
    AddressPool, BGPPeer, UpstreamPool, VirtualIP, VrrpState, contract::NodeEntries,
    policy::AddressPolicy,
};
use buoy_vrrp::machine::Role;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, ObjectReference, Secret};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    core::PartialObjectMeta,
    runtime::{
        WatchStreamExt,
        events::{Event, EventType, Recorder, Reporter},
        reflector::{self, Store},
        watcher::{self, watcher},
    },
};
use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
};
use tracing::warn;

mod peer_status;

use crate::{
    agent::{Agent, NodeStatus, VipStatus},
    config::BackendPolicy,
    dns::Resolutions,
    metrics::WatchMetrics,
    node::{Inputs, NodeIdentity, Plan, plan},
    proxy::service::PoolReport,
    refresh::Refresher,
    secret_watch::SecretWatch,
    source::{Invalid, Source},
    watch::{EndpointStores, spawn_reflector, watch_backoff},
};

/// Every write to the API server (a status entry, an Event) gives up after this and is retried
/// at the next round: an API server that hangs must not hold the agent.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);
/// Secrets holding VRRP passwords are read again this often (agents may only `get` them, by
/// name: no watch).
pub(crate) const SECRET_REFRESH: Duration = Duration::from_secs(60);

/// What this agent is.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The node's name (the Node object and the NodeStatus entries).
    pub node: String,
    /// Serve only the VirtualIPs of this placement (`buoy_crds::placement::key_in`); None: all.
    pub placement: Option<String>,
}

impl Identity {
    /// The field manager of this node's status entries.
    pub(crate) fn field_manager(&self) -> String {
        buoy_crds::contract::agent_field_manager(&self.node)
    }
}

/// The reflector stores the planner reads.
#[derive(Clone)]
pub(crate) struct Stores {
    vips: Store<VirtualIP>,
    pools: Store<UpstreamPool>,
    address_pools: Store<AddressPool>,
    bgp_peers: Store<BGPPeer>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    endpoints: EndpointStores,
    nodes: Store<Node>,
}

/// Namespaces' labels only (for AddressPools' `namespaceSelector`): metadata, not whole objects.
fn spawn_namespaces(
    client: &Client,
    changed: Arc<Notify>,
    watches: &WatchMetrics,
) -> Store<PartialObjectMeta<Namespace>> {
    let (store, writer) = reflector::store();
    watches.started("Namespace");
    let watches = watches.clone();
    // An Api of PartialObjectMeta asks for metadata only.
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
    tokio::spawn(async move {
        let mut stream = watcher(api, Default::default())
            .backoff(watch_backoff())
            .reflect(writer)
            .boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => changed.notify_one(),
                Err(e) => {
                    watches.failed("Namespace");
                    warn!(kind = "Namespace", error = %e, "watch failed; retrying");
                }
            }
        }
    });
    store
}

/// Starts the watches. `changed` is notified on every change.
pub(crate) fn watch_all(
    client: &Client,
    identity: &Identity,
    changed: Arc<Notify>,
    watches: &WatchMetrics,
) -> Stores {
    let own_node = watcher::Config::default().fields(&format!("metadata.name={}", identity.node));
    Stores {
        vips: spawn_reflector(
            Api::all(client.clone()),
            Default::default(),
            changed.clone(),
            watches,
        ),
        pools: spawn_reflector(
            Api::all(client.clone()),
            Default::default(),
            changed.clone(),
            watches,
        ),
        address_pools: spawn_reflector(
            Api::all(client.clone()),
            Default::default(),
            changed.clone(),
            watches,
        ),
        bgp_peers: spawn_reflector(
            Api::all(client.clone()),
            Default::default(),
            changed.clone(),
            watches,
        ),
        namespaces: spawn_namespaces(client, changed.clone(), watches),
        endpoints: EndpointStores::watch(client, changed.clone(), watches),
        nodes: spawn_reflector(Api::all(client.clone()), own_node, changed, watches),
    }
}

impl Stores {
    /// The BGPPeers, as last seen.
    pub(crate) fn bgp_peers(&self) -> Vec<Arc<BGPPeer>> {
        self.bgp_peers.state()
    }

    /// Waits until every watch has listed once (a plan from half the objects would stop VIPs).
    pub(crate) async fn ready(&self) {
        let _ = self.vips.wait_until_ready().await;
        let _ = self.pools.wait_until_ready().await;
        let _ = self.address_pools.wait_until_ready().await;
        let _ = self.bgp_peers.wait_until_ready().await;
        let _ = self.namespaces.wait_until_ready().await;
        self.endpoints.services_and_slices_ready().await;
        let _ = self.nodes.wait_until_ready().await;
    }
}

/// How an agent serves a cluster, from its flags (the operator sets them on its DaemonSets).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Which addresses this agent may bind and forward to.
    pub policy: AddressPolicy,
    /// Allow backends on the node itself (loopback, link-local, the node's addresses).
    pub allow_node_local_backends: bool,
}

/// Cluster mode's [`Source`].
pub struct ClusterSource {
    client: Client,
    identity: Identity,
    settings: Settings,
    stores: Stores,
    changed: Arc<Notify>,
    secrets: Refresher<(String, String), Secret>,
    certificates: SecretWatch,
    reporters: Vec<JoinHandle<()>>,
    /// A change was seen and is settling (kept across a cancelled [`Source::changed`]).
    pending: bool,
}

impl ClusterSource {
    /// Starts the watches, counting their failures in `watches`, and the Secret cache (on the
    /// current runtime).
    pub fn start(
        client: Client,
        identity: Identity,
        settings: Settings,
        watches: &WatchMetrics,
    ) -> ClusterSource {
        let changed = Arc::new(Notify::new());
        let stores = watch_all(&client, &identity, changed.clone(), watches);
        let secret_client = client.clone();
        let secrets = Refresher::new(
            move |(namespace, name): (String, String)| {
                let api: Api<Secret> = Api::namespaced(secret_client.clone(), &namespace);
                async move {
                    match api.get_opt(&name).await {
                        Ok(Some(s)) => Ok((s, SECRET_REFRESH)),
                        Ok(None) => Err("not found".to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                }
            },
            API_TIMEOUT,
            changed.clone(),
        );
        let certificates = SecretWatch::new(client.clone(), changed.clone(), watches);
        ClusterSource {
            certificates,
            client,
            identity,
            settings,
            stores,
            changed,
            secrets,
            reporters: Vec::new(),
            pending: false,
        }
    }
}

/// The node's own addresses, from its Node object (a backend there is the node itself).
fn node_addresses(node: Option<&Node>) -> BTreeSet<IpAddr> {
    node.and_then(|n| n.status.as_ref())
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|a| a.address.parse().ok())
        .collect()
}

#[async_trait]
impl Source for ClusterSource {
    async fn ready(&mut self) {
        self.stores.ready().await;
    }

    async fn changed(&mut self) -> &'static str {
        // Cancel-safe: the runner drops this future when another event comes first.
        if !self.pending {
            self.changed.notified().await;
            self.pending = true;
        }
        // Let a burst of changes settle into one plan.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.pending = false;
        "the cluster's objects changed"
    }

    fn plan(&mut self, resolved: &Resolutions) -> Result<Plan, Invalid> {
        let nodes = self.stores.nodes.state();
        let own = nodes.iter().find(|n| n.name_any() == self.identity.node);
        let node = NodeIdentity {
            name: self.identity.node.clone(),
            labels: own.map(|n| n.labels().clone()).unwrap_or_default(),
        };
        let backends = BackendPolicy {
            refuse_node_local: !self.settings.allow_node_local_backends,
            node_addresses: node_addresses(own.map(|n| &**n)),
        };
        let vips = self.stores.vips.state();
        let endpoints = self.stores.endpoints.snapshot();
        let pools: Vec<UpstreamPool> = self
            .stores
            .pools
            .state()
            .iter()
            .map(|p| endpoints.resolve(p))
            .collect();
        let address_pools = self.stores.address_pools.state();
        let namespaces: BTreeMap<String, BTreeMap<String, String>> = self
            .stores
            .namespaces
            .state()
            .iter()
            .map(|n| (n.name_any(), n.labels().clone()))
            .collect();
        let mut cached = self.secrets.snapshot();
        // A Secret both wanted for a password and for a certificate is read either way.
        cached.extend(self.certificates.snapshot());
        let secrets: Vec<&Secret> = cached.values().filter_map(|f| f.value.as_ref()).collect();
        let secret_problems: BTreeMap<(String, String), String> = cached
            .iter()
            .filter_map(|(k, f)| Some((k.clone(), f.error.clone()?)))
            .collect();
        let vip_refs: Vec<&VirtualIP> = vips.iter().map(|v| &**v).collect();
        let pool_refs: Vec<&UpstreamPool> = pools.iter().collect();
        let address_pool_refs: Vec<&AddressPool> = address_pools.iter().map(|p| &**p).collect();
        let bgp_peers = self.stores.bgp_peers.state();
        let bgp_peer_refs: Vec<&BGPPeer> = bgp_peers.iter().map(|p| &**p).collect();
        let local_endpoints = endpoints.ready_on(&self.identity.node);
        let planned = plan(Inputs {
            node: &node,
            vips: &vip_refs,
            pools: &pool_refs,
            secrets: &secrets,
            secret_problems: &secret_problems,
            address_pools: &address_pool_refs,
            bgp_peers: &bgp_peer_refs,
            namespaces: &namespaces,
            policy: self.settings.policy,
            placement: self.identity.placement.as_deref(),
            resolved,
            backends: &backends,
            local_endpoints: &local_endpoints,
        });
        // Read off the planning path; a Secret not read yet is a plan away.
        self.secrets.want(planned.wants.secrets.iter().cloned());
        self.certificates.want(&planned.wants.certificates);
        Ok(planned)
    }

    fn report(&mut self, agent: &Agent) {
        self.reporters.push(tokio::spawn(report_status(
            self.client.clone(),
            self.identity.clone(),
            self.stores.clone(),
            agent.status(),
            Duration::from_millis(500),
        )));
        self.reporters.push(tokio::spawn(report_pools(
            self.client.clone(),
            self.identity.clone(),
            self.stores.clone(),
            agent.pool_status(),
        )));
        self.reporters.push(tokio::spawn(peer_status::report(
            self.client.clone(),
            self.identity.clone(),
            self.stores.clone(),
            agent.bgp_report(),
        )));
    }

    async fn finish(&mut self) {
        for r in self.reporters.drain(..) {
            r.abort();
        }
        if tokio::time::timeout(
            Duration::from_secs(5),
            clear_entries(&self.client, &self.identity, &self.stores),
        )
        .await
        .is_err()
        {
            warn!(
                "the API server did not answer: this node's status entries stay until the operator sees the node gone"
            );
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The API's name for this node's state of a VirtualIP: the one place the agent's state
/// becomes the API's.
fn api_state(role: Role) -> VrrpState {
    match role {
        Role::Initialize => VrrpState::Initialize,
        Role::Backup => VrrpState::Backup,
        Role::Master => VrrpState::Master,
        Role::Fault => VrrpState::Fault,
    }
}

/// At most this much of a message goes into a status entry or an Event.
const MESSAGE_LIMIT: usize = 1024;

/// Whether this node's entry in the API is what it would write now: the same as it last wrote,
/// or nothing to write and no entry there.
pub(crate) fn entry_unchanged<T: PartialEq>(
    last: Option<&Option<T>>,
    mine: Option<&T>,
    has_entry: bool,
) -> bool {
    match (last, mine) {
        (Some(Some(a)), Some(b)) => a == b,
        (Some(None) | None, None) => !has_entry,
        _ => false,
    }
}

pub(crate) fn bounded(text: &str) -> String {
    text.chars().take(MESSAGE_LIMIT).collect()
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
            "state": api_state(s.state),
            "priority": s.priority,
            "lastTransitionTime": rfc3339(s.since),
            "serving": s.serving,
        });
        let message = s.message();
        if !message.is_empty() {
            entry["message"] = bounded(&message).into();
        }
        if let Some(a) = s.address {
            entry["address"] = a.to_string().into();
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
    buoy_crds::contract::key(vip.namespace().as_deref(), Some(&vip.name_any()))
}

/// Writes this node's entries of `status.nodes[]` as the agent's status changes, and emits an
/// Event per state change and when the node stops serving. Writes are coalesced: at most one
/// round per `min_interval`.
pub(crate) async fn report_status(
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
            let has_entry = vip.has_entry_of(&identity.node);
            let last = written.get(&key);
            if entry_unchanged(last, mine, has_entry) {
                continue;
            }
            let api: Api<VirtualIP> =
                Api::namespaced(client.clone(), &vip.namespace().unwrap_or_default());
            let body = entry_patch(vip, &identity.node, mine);
            let patched = tokio::time::timeout(
                API_TIMEOUT,
                api.patch_status(&vip.name_any(), &params, &Patch::Apply(&body)),
            )
            .await;
            match patched {
                Ok(Ok(_)) => {
                    let before = last.and_then(|l| l.as_ref());
                    if let Some(s) = mine {
                        if before.map(|b| b.state) != Some(s.state) {
                            let reason = api_state(s.state).as_str();
                            publish(&recorder, vip, &identity.node, s, reason).await;
                        } else if s.not_serving.is_some()
                            && before.and_then(|b| b.not_serving.as_ref()) != s.not_serving.as_ref()
                        {
                            publish(&recorder, vip, &identity.node, s, "NotServing").await;
                        }
                    }
                    written.insert(key, mine.cloned());
                }
                // Retried at the next round (the VirtualIP may be gone).
                Ok(Err(e)) => warn!(virtualip = %key, error = %e, "cannot write status"),
                Err(_) => {
                    warn!(virtualip = %key, "cannot write status: the API server did not answer in time")
                }
            }
        }
        written.retain(|k, _| seen.contains(k));
        tokio::time::sleep(min_interval).await;
        // Wake on a status change, or every few seconds to catch objects that were recreated.
        let _ = tokio::time::timeout(Duration::from_secs(5), status.changed()).await;
    }
}

/// The apply body of this node's entry of an UpstreamPool (None: remove our entry).
fn pool_entry_patch(
    pool: &UpstreamPool,
    node: &str,
    report: Option<&PoolReport>,
) -> serde_json::Value {
    let mut body = serde_json::json!({
        "apiVersion": buoy_crds::API_VERSION,
        "kind": "UpstreamPool",
        "metadata": {"name": pool.name_any(), "namespace": pool.namespace()},
    });
    if let Some(r) = report {
        let mut entry = serde_json::json!({
            "node": node,
            "backends": {"total": r.total, "ready": r.ready},
        });
        if !r.problems.is_empty() {
            entry["message"] = bounded(&r.problems.join("; ")).into();
        }
        body["status"] = serde_json::json!({ "nodes": [entry] });
    }
    body
}

/// Writes this node's entries of the UpstreamPools it runs (`status.nodes[]`): backends,
/// ready ones, and what is wrong with the others; a Warning Event when a pool's problems
/// change. Checked every few seconds and on every change.
pub(crate) async fn report_pools(
    client: Client,
    identity: Identity,
    stores: Stores,
    mut reports: watch::Receiver<BTreeMap<String, PoolReport>>,
) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "buoy-agent".into(),
            instance: Some(identity.node.clone()),
        },
    );
    let params = PatchParams::apply(&identity.field_manager()).force();
    let mut written: BTreeMap<String, Option<PoolReport>> = BTreeMap::new();
    loop {
        let now = reports.borrow_and_update().clone();
        let mut seen = BTreeSet::new();
        for pool in stores.pools.state() {
            let key = buoy_crds::contract::key(pool.namespace().as_deref(), Some(&pool.name_any()));
            seen.insert(key.clone());
            let mine = now.get(&key);
            let has_entry = pool.has_entry_of(&identity.node);
            let last = written.get(&key);
            if entry_unchanged(last, mine, has_entry) {
                continue;
            }
            let api: Api<UpstreamPool> =
                Api::namespaced(client.clone(), &pool.namespace().unwrap_or_default());
            let body = pool_entry_patch(&pool, &identity.node, mine);
            let patched = tokio::time::timeout(
                API_TIMEOUT,
                api.patch_status(&pool.name_any(), &params, &Patch::Apply(&body)),
            )
            .await;
            match patched {
                Ok(Ok(_)) => {
                    let before = last.and_then(|l| l.as_ref()).map(|r| &r.problems);
                    if let Some(r) = mine
                        && !r.problems.is_empty()
                        && before != Some(&r.problems)
                    {
                        let note = format!("node {}: {}", identity.node, r.problems.join("; "));
                        let event = Event {
                            type_: EventType::Warning,
                            reason: "BackendsUnavailable".into(),
                            note: Some(bounded(&note)),
                            action: "Resolve".into(),
                            secondary: None,
                        };
                        let reference: ObjectReference = pool.object_ref(&());
                        if !matches!(
                            tokio::time::timeout(API_TIMEOUT, recorder.publish(&event, &reference))
                                .await,
                            Ok(Ok(()))
                        ) {
                            warn!(pool = %key, "cannot publish an event");
                        }
                    }
                    written.insert(key, mine.cloned());
                }
                Ok(Err(e)) => warn!(pool = %key, error = %e, "cannot write the pool's status"),
                Err(_) => {
                    warn!(pool = %key, "cannot write the pool's status: the API server did not answer in time")
                }
            }
        }
        written.retain(|k, _| seen.contains(k));
        let _ = tokio::time::timeout(Duration::from_secs(5), reports.changed()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Removes this node's entries from every VirtualIP, UpstreamPool and BGPPeer (the agent is stopping: it
/// no longer takes part, and the operator's finalizer waits for masters to go).
pub(crate) async fn clear_entries(client: &Client, identity: &Identity, stores: &Stores) {
    let node = identity.node.as_str();
    remove_entries(identity, stores.vips.state(), |vip| {
        let api = Api::namespaced(client.clone(), &vip.namespace().unwrap_or_default());
        (api, entry_patch(vip, node, None))
    })
    .await;
    remove_entries(identity, stores.pools.state(), |pool| {
        let api = Api::namespaced(client.clone(), &pool.namespace().unwrap_or_default());
        (api, pool_entry_patch(pool, node, None))
    })
    .await;
    remove_entries(identity, stores.bgp_peers.state(), |peer| {
        (
            Api::all(client.clone()),
            buoy_crds::contract::bgp_peer_entry_apply(&peer.name_any(), None),
        )
    })
    .await;
}

/// Applies, to each of `objects` that has this node's entry, the body that removes it (with
/// the object's Api), under the node's field manager.
async fn remove_entries<K>(
    identity: &Identity,
    objects: Vec<Arc<K>>,
    removal: impl Fn(&K) -> (Api<K>, serde_json::Value),
) where
    K: NodeEntries
        + Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let params = PatchParams::apply(&identity.field_manager()).force();
    for object in objects.iter().filter(|o| o.has_entry_of(&identity.node)) {
        let (api, body) = removal(object);
        if let Err(e) = api
            .patch_status(&object.name_any(), &params, &Patch::Apply(&body))
            .await
        {
            warn!(
                kind = %K::kind(&()),
                object = %buoy_crds::contract::key_of(object.meta()),
                error = %e,
                "cannot remove this node's status entry"
            );
        }
    }
}

async fn publish(recorder: &Recorder, vip: &VirtualIP, node: &str, s: &VipStatus, reason: &str) {
    let type_ = if s.state == Role::Fault || reason == "NotServing" {
        EventType::Warning
    } else {
        EventType::Normal
    };
    let note = format!(
        "node {node} is {} (priority {}): {}",
        api_state(s.state).as_str(),
        s.priority,
        s.message()
    );
    let reference: ObjectReference = vip.object_ref(&());
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(bounded(&note)),
        action: "VRRP".into(),
        secondary: None,
    };
    match tokio::time::timeout(API_TIMEOUT, recorder.publish(&event, &reference)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "cannot publish an event"),
        Err(_) => warn!("cannot publish an event: the API server did not answer in time"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_patch_carries_only_this_nodes_entry() {
        let vip: VirtualIP = serde_yaml::from_str(
            "{apiVersion: buoy.io/v1alpha1, kind: VirtualIP, metadata: {name: web, namespace: shop},
              spec: {addresses: [10.0.0.1]}}",
        )
        .unwrap();
        let s = VipStatus {
            state: Role::Master,
            priority: 102,
            reason: "no advert within Master_Down_Interval".into(),
            since: SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000),
            collisions: [("10.0.0.9".parse().unwrap(), "x".to_string())].into(),
            serving: true,
            not_serving: None,
            address: Some("10.0.0.1".parse().unwrap()),
            warnings: Vec::new(),
        };
        let body = entry_patch(&vip, "n1", Some(&s));
        assert_eq!(body["metadata"]["namespace"], "shop");
        let nodes = body["status"]["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0]["node"], "n1");
        assert_eq!(nodes[0]["state"], "Master");
        assert_eq!(nodes[0]["lastTransitionTime"], "2025-11-24T16:00:00Z");
        assert_eq!(nodes[0]["foreignRouters"][0], "10.0.0.9");
        assert_eq!(nodes[0]["address"], "10.0.0.1");
        // The typed status accepts it.
        let typed: buoy_crds::VirtualIPStatus =
            serde_json::from_value(body["status"].clone()).unwrap();
        assert_eq!(typed.nodes[0].state, buoy_crds::VrrpState::Master);
        // No status: applying it removes our entry.
        assert!(entry_patch(&vip, "n1", None).get("status").is_none());
    }
}
