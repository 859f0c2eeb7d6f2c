//! The IO shell around [`crate::plan`]: kube-runtime reflectors keep caches of VirtualIPs,
//! UpstreamPools, AddressPools, BGPPeers, Nodes, EndpointSlices and the agent DaemonSets; any change wakes one
//! reconcile pass that plans the whole desired state from the caches and applies only the
//! differences (server-side apply under the field manager `buoy-operator`), publishes the
//! plan's Events, and retries failed writes with backoff.
//!
//! Why one global pass instead of kube-runtime's per-object `Controller`: every decision here
//! spans objects — VRID allocation and conflicts compare all VirtualIPs, a DaemonSet serves
//! every VirtualIP of its placement, master spreading balances all of them — so a per-object
//! reconciler would re-plan the world for each object anyway. Planning once per batch of
//! changes is cheaper (1,000 VirtualIPs plan in milliseconds) and cannot race with itself.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use buoy_crds::{AddressPool, BGPPeer, UpstreamPool, VirtualIP};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use crate::daemonset::{self, AgentSettings};
use crate::events::Recorders;
use crate::plan::{self, Memory, Plan, VirtualIpPlan, World};
use crate::telemetry::Metrics;

mod caches;
mod services;

use caches::{Caches, Decoded};

/// The operator's field manager for server-side apply, and its reporting controller in Events.
pub(crate) const FIELD_MANAGER: &str = "buoy-operator";

/// Errors that stop the controller (write failures do not: they are retried).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("the {0} cache stopped before it was filled")]
    CacheSync(&'static str),
}

/// How the controller runs.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// How the agents it deploys run.
    pub(crate) agents: AgentSettings,
    /// How long a deleted VirtualIP waits for its master to let go.
    pub(crate) release_timeout: Duration,
    /// Concurrent writes.
    pub(crate) concurrency: usize,
    /// Identity in Events (`reportingInstance`).
    pub(crate) identity: String,
    /// Whether AddressPools decide which VirtualIPs are served.
    pub(crate) address_policy: buoy_crds::policy::AddressPolicy,
    /// How LoadBalancer Services are served.
    pub(crate) load_balancers: plan::services::Settings,
}

/// What the controller works with, built once per process from the flags: the API client, its
/// settings, and the metrics it counts into.
pub(crate) struct Context {
    pub(crate) client: Client,
    pub(crate) settings: Settings,
    pub(crate) metrics: Arc<Metrics>,
}

/// How long to wait for more changes before a pass, so that a burst is planned once.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// A pass at least this often even without changes.
const RESYNC: Duration = Duration::from_secs(300);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

fn fingerprint(v: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    v.to_string().hash(&mut h);
    h.finish()
}

/// What the controller wrote that its caches may not show yet: `(resourceVersion seen when
/// planning, hash of the body)` by `kind/namespace/name`. A write is skipped while the cache
/// still shows the same version and the plan wants the same body.
#[derive(Default)]
struct InFlight(HashMap<String, (Option<String>, u64)>);

impl InFlight {
    fn pending(&self, key: &str, rv: &Option<String>, body: &Value) -> bool {
        self.0
            .get(key)
            .is_some_and(|(r, h)| r == rv && *h == fingerprint(body))
    }
    fn record(&mut self, key: String, rv: Option<String>, body: &Value) {
        self.0.insert(key, (rv, fingerprint(body)));
    }
}

/// Runs until `stop` changes.
pub(crate) async fn run(ctx: Context, mut stop: watch::Receiver<bool>) -> Result<(), Error> {
    let Context {
        client,
        settings,
        metrics,
    } = ctx;
    let notify = Arc::new(Notify::new());
    let ns = settings.agents.namespace.clone();
    let caches = Caches::start(&client, &ns, &notify, &metrics.watch_errors);
    tokio::select! {
        r = caches.ready() => r?,
        _ = stop.changed() => return Ok(()),
    }
    info!("caches synced; reconciling");
    let recorders = Recorders::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(settings.identity.clone()),
        },
    );
    let mut pass = Pass {
        client,
        settings,
        metrics,
        recorders,
        memory: Memory::default(),
        inflight: InFlight::default(),
        vips: Decoded::new("VirtualIP"),
        pools: Decoded::new("UpstreamPool"),
        address_pools: Decoded::new("AddressPool"),
        bgp_peers: Decoded::new("BGPPeer"),
        exported_pools: BTreeSet::new(),
    };
    let mut backoff: Option<Duration> = None;
    loop {
        let started = Instant::now();
        let (ok, wake) = pass.once(&caches).await;
        pass.metrics.reconciles.inc();
        pass.metrics
            .reconcile_duration
            .observe(started.elapsed().as_secs_f64());
        let mut next = RESYNC;
        if ok {
            backoff = None;
        } else {
            pass.metrics.reconcile_errors.inc();
            let b = backoff.map_or(BACKOFF_MIN, |b| (b * 2).min(BACKOFF_MAX));
            backoff = Some(b);
            next = next.min(b);
        }
        if let Some(w) = wake {
            next = next.min(w);
        }
        tokio::select! {
            _ = notify.notified() => tokio::time::sleep(DEBOUNCE).await,
            _ = tokio::time::sleep(next) => {}
            _ = stop.changed() => break,
        }
    }
    Ok(())
}

struct Pass {
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    recorders: Recorders,
    memory: Memory,
    inflight: InFlight,
    vips: Decoded<VirtualIP>,
    pools: Decoded<UpstreamPool>,
    address_pools: Decoded<AddressPool>,
    bgp_peers: Decoded<BGPPeer>,
    /// The AddressPools whose use the metrics show.
    exported_pools: BTreeSet<String>,
}

/// One VirtualIP's writes to do: plan index, metadata body, status body, the cached object,
/// the recorder of its Events.
type VipWork = (
    usize,
    Option<Value>,
    Option<Value>,
    Arc<VirtualIP>,
    Recorder,
);

/// The outcome of one VirtualIP's writes: each body written and how it went.
struct VipOutcome {
    index: usize,
    rv: Option<String>,
    meta: Option<(Value, Result<(), kube::Error>)>,
    status: Option<(Value, Result<(), kube::Error>)>,
}

fn gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl Pass {
    /// One pass; returns whether every write succeeded and when to plan again at the latest.
    async fn once(&mut self, caches: &Caches) -> (bool, Option<Duration>) {
        let planning = Instant::now();
        let (vips, bad_vips) = self.vips.decode(&caches.vips.state());
        let (pools, bad_pools) = self.pools.decode(&caches.pools.state());
        let (address_pools, bad_address_pools) =
            self.address_pools.decode(&caches.address_pools.state());
        let (bgp_peers, bad_bgp_peers) = self.bgp_peers.decode(&caches.bgp_peers.state());
        for (o, error) in bad_vips
            .iter()
            .chain(&bad_pools)
            .chain(&bad_address_pools)
            .chain(&bad_bgp_peers)
        {
            let ar = ApiResource::from_gvk(
                &o.types
                    .as_ref()
                    .map(kube::core::GroupVersionKind::try_from)
                    .and_then(Result::ok)
                    .unwrap_or_else(|| {
                        kube::core::GroupVersionKind::gvk(
                            buoy_crds::GROUP,
                            buoy_crds::VERSION,
                            "VirtualIP",
                        )
                    }),
            );
            let ev = Event {
                type_: EventType::Warning,
                reason: "InvalidObject".into(),
                note: Some(format!(
                    "the operator cannot read this object and leaves it out: {error}"
                )),
                action: "Decode".into(),
                secondary: None,
            };
            let recorder = self.recorders.of(&event_id(o.as_ref()));
            if let Err(e) = recorder.publish(&ev, &o.object_ref(&ar)).await {
                debug!(error = %e, "cannot publish event");
            }
        }
        self.forget_gone(caches);
        let nodes = caches.nodes.state();
        let slices = caches.slices.state();
        let daemonsets = caches.daemonsets.state();
        self.metrics
            .virtualips
            .set(i64::try_from(vips.len()).unwrap_or(i64::MAX));
        let endpoints = plan::endpoint_counts(slices.iter().map(|s| s.as_ref()));
        self.prune_memory(&vips);
        let namespaces: std::collections::BTreeMap<
            String,
            std::collections::BTreeMap<String, String>,
        > = caches
            .namespaces
            .state()
            .iter()
            .map(|n| (n.name_any(), n.labels().clone()))
            .collect();
        let services = caches.services.state();
        let plan = plan::plan_world(&World {
            vips: vips.iter().map(|v| v.as_ref()).collect(),
            services: services.iter().map(|s| s.as_ref()).collect(),
            load_balancers: &self.settings.load_balancers,
            pools: pools.iter().map(|p| p.as_ref()).collect(),
            address_pools: address_pools.iter().map(|p| p.as_ref()).collect(),
            bgp_peers: bgp_peers.iter().map(|p| p.as_ref()).collect(),
            namespaces: &namespaces,
            policy: self.settings.address_policy,
            nodes: nodes.iter().map(|n| n.as_ref()).collect(),
            endpoints: &endpoints,
            memory: &self.memory,
            agents: &self.settings.agents,
            now: Timestamp::now(),
            release_timeout_secs: i64::try_from(self.settings.release_timeout.as_secs())
                .unwrap_or(30),
        });
        self.memory.foreign = plan.foreign.clone();
        self.step("plan", planning);
        self.export_pools(&plan);
        let mut step = Instant::now();
        let mut ok = self.apply_daemonsets(&plan, &daemonsets).await;
        step = self.step("daemonset", step);
        ok &= self.apply_vips(&plan, &vips).await;
        step = self.step("virtualip", step);
        ok &= self.apply_pools(&plan, &pools).await;
        step = self.step("upstreampool", step);
        ok &= self.apply_address_pools(&plan, &address_pools).await;
        step = self.step("addresspool", step);
        ok &= self.apply_bgp_peers(&plan, &bgp_peers).await;
        step = self.step("bgppeer", step);
        ok &= self.apply_services(&plan).await;
        self.step("service", step);
        (
            ok,
            plan.wake_after_secs
                .map(|s| Duration::from_secs(u64::try_from(s.max(0)).unwrap_or(0) + 1)),
        )
    }

    /// Observes the time since `started` as the step `kind` of the pass; returns now.
    fn step(&self, kind: &str, started: Instant) -> Instant {
        let now = Instant::now();
        self.metrics
            .reconcile_step_duration
            .with_label_values(&[kind])
            .observe((now - started).as_secs_f64());
        now
    }

    /// The AddressPools' use, as planned; the series of pools gone are removed.
    fn export_pools(&mut self, plan: &Plan) {
        let (allocated, available) = (&self.metrics.pool_allocated, &self.metrics.pool_available);
        let now: BTreeSet<String> = plan.address_pools.iter().map(|p| p.name.clone()).collect();
        for gone in self.exported_pools.difference(&now) {
            let _ = allocated.remove_label_values(&[gone]);
            let _ = available.remove_label_values(&[gone]);
        }
        for p in &plan.address_pools {
            allocated.with_label_values(&[&p.name]).set(p.allocated);
            available.with_label_values(&[&p.name]).set(p.available);
        }
        self.exported_pools = now;
    }

    /// Drops the Event recorders of objects no longer in the caches.
    fn forget_gone(&mut self, caches: &Caches) {
        let objects: Vec<Arc<kube::api::DynamicObject>> = [
            &caches.vips,
            &caches.pools,
            &caches.address_pools,
            &caches.bgp_peers,
        ]
        .iter()
        .flat_map(|c| c.state())
        .collect();
        let live: std::collections::HashSet<String> = objects
            .iter()
            .map(|o| event_id(o.as_ref()))
            .chain(caches.services.state().iter().map(|s| event_id(s.as_ref())))
            .collect();
        self.recorders
            .retain(&live.iter().map(String::as_str).collect());
    }

    fn prune_memory(&mut self, vips: &[Arc<VirtualIP>]) {
        let recorded: HashMap<String, Option<u8>> = vips
            .iter()
            .filter_map(|v| {
                Some((
                    v.metadata.uid.clone()?,
                    v.status.as_ref().and_then(|s| s.virtual_router_id),
                ))
            })
            .collect();
        self.memory
            .vrids
            .retain(|uid, vrid| recorded.get(uid).is_some_and(|r| *r != Some(*vrid)));
        // Kept until the cache shows the allocation (or the VirtualIP is gone).
        let shown: HashMap<&str, &[String]> = vips
            .iter()
            .filter_map(|v| {
                Some((
                    v.metadata.uid.as_deref()?,
                    v.status
                        .as_ref()
                        .map_or(&[][..], |s| s.addresses.as_slice()),
                ))
            })
            .collect();
        self.memory
            .addresses
            .retain(|uid, a| shown.get(uid.as_str()).is_some_and(|s| *s != a.as_slice()));
        let now = Timestamp::now().as_second();
        self.memory
            .moved
            .retain(|_, t| now - t.as_second() < plan::FOREIGN_COOLDOWN_SECS);
        // Kept until the VirtualIP's annotation records them, or the VirtualIP is gone.
        let annotated: HashMap<&str, BTreeSet<u8>> = vips
            .iter()
            .filter_map(|v| Some((v.metadata.uid.as_deref()?, plan::avoided_of(v))))
            .collect();
        self.memory.left.retain(|uid, ids| {
            annotated
                .get(uid.as_str())
                .is_some_and(|a| !ids.is_subset(a))
        });
    }

    async fn apply_daemonsets(&mut self, plan: &Plan, observed: &[Arc<DaemonSet>]) -> bool {
        let api: Api<DaemonSet> =
            Api::namespaced(self.client.clone(), &self.settings.agents.namespace);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let mut ok = true;
        for (key, desired) in &plan.daemonsets {
            let name = daemonset::name(key);
            let current = observed.iter().find(|d| d.name_any() == name);
            if current.and_then(|d| daemonset::applied_hash(d)) == daemonset::desired_hash(desired)
            {
                continue;
            }
            let ikey = format!("ds/{name}");
            let rv = current.and_then(|d| d.resource_version());
            if self.inflight.pending(&ikey, &rv, desired) {
                continue;
            }
            match api.patch(&name, &params, &Patch::Apply(desired)).await {
                Ok(_) => {
                    self.metrics.writes.with_label_values(&["daemonset"]).inc();
                    self.inflight.record(ikey, rv, desired);
                    info!(daemonset = %name, "applied agent DaemonSet");
                }
                Err(e) => {
                    warn!(daemonset = %name, error = %e, "cannot apply agent DaemonSet");
                    ok = false;
                }
            }
        }
        let wanted: BTreeSet<String> = plan.daemonsets.keys().map(|k| daemonset::name(k)).collect();
        for d in observed {
            let name = d.name_any();
            if wanted.contains(&name) || d.metadata.deletion_timestamp.is_some() {
                continue;
            }
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {
                    self.metrics
                        .writes
                        .with_label_values(&["daemonset_delete"])
                        .inc();
                    info!(daemonset = %name, "deleted agent DaemonSet: no VirtualIP uses its placement");
                }
                Err(e) if gone(&e) => {}
                Err(e) => {
                    warn!(daemonset = %name, error = %e, "cannot delete agent DaemonSet");
                    ok = false;
                }
            }
        }
        ok
    }

    async fn apply_vips(&mut self, plan: &Plan, observed: &[Arc<VirtualIP>]) -> bool {
        let by_key: HashMap<String, &Arc<VirtualIP>> =
            observed.iter().map(|v| (plan::key_of(v), v)).collect();
        // What to write, decided before writing (the in-flight table is not shared).
        let mut work: Vec<VipWork> = Vec::new();
        for (i, vp) in plan.vips.iter().enumerate() {
            let Some(obj) = by_key.get(&vp.key()) else {
                continue;
            };
            let rv = obj.resource_version();
            let meta = vp
                .meta_changed
                .then(|| vp.meta.apply_body(&vp.namespace, &vp.name))
                .filter(|b| !self.inflight.pending(&key("meta", vp), &rv, b));
            let status = vp
                .status
                .as_ref()
                .filter(|_| vp.status_changed)
                .map(|s| s.apply_body(&vp.namespace, &vp.name))
                .filter(|b| !self.inflight.pending(&key("status", vp), &rv, b));
            if meta.is_some() || status.is_some() {
                let recorder = self.recorders.of(&event_id(obj.as_ref()));
                work.push((i, meta, status, (*obj).clone(), recorder));
            }
        }
        let concurrency = self.settings.concurrency.max(1);
        let client = self.client.clone();
        let outcomes: Vec<VipOutcome> = futures::stream::iter(work)
            .map(|(index, meta, status, obj, recorder)| {
                let client = client.clone();
                let vp = &plan.vips[index];
                async move { write_vip(client, recorder, index, vp, meta, status, &obj).await }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut ok = true;
        let now = Timestamp::now();
        for out in outcomes {
            let vp = &plan.vips[out.index];
            for (part, written) in [("meta", out.meta), ("status", out.status)] {
                match written {
                    Some((body, Ok(()))) => {
                        self.inflight.record(key(part, vp), out.rv.clone(), &body);
                        let kind = if part == "meta" {
                            "virtualip"
                        } else {
                            "virtualip_status"
                        };
                        self.metrics.writes.with_label_values(&[kind]).inc();
                        if part == "status"
                            && let Some(uid) = &vp.uid
                            && let Some(s) = &vp.status
                            && !s.addresses.is_empty()
                            && s.address_pool.is_some()
                        {
                            self.memory
                                .addresses
                                .insert(uid.clone(), s.addresses.clone());
                        }
                        if part == "status"
                            && let Some(uid) = &vp.uid
                            && let crate::allocate::Vrid::Allocated { vrid, moved } = &vp.vrid
                        {
                            self.memory.vrids.insert(uid.clone(), *vrid);
                            if let Some((old, why)) = moved {
                                self.memory.moved.insert(uid.clone(), now);
                                if *why == crate::allocate::MoveReason::ForeignRouters {
                                    self.memory
                                        .left
                                        .entry(uid.clone())
                                        .or_default()
                                        .insert(*old);
                                }
                            }
                        }
                    }
                    Some((_, Err(e))) if gone(&e) => {}
                    Some((_, Err(e))) => {
                        warn!(virtualip = %vp.key(), part, error = %e, "cannot apply");
                        ok = false;
                    }
                    None => {}
                }
            }
        }
        ok
    }

    async fn apply_pools(&mut self, plan: &Plan, observed: &[Arc<UpstreamPool>]) -> bool {
        let mut ok = true;
        for pp in plan.pools.iter().filter(|p| p.changed) {
            let rv = observed
                .iter()
                .find(|p| {
                    p.namespace().as_deref() == Some(&pp.namespace) && p.name_any() == pp.name
                })
                .and_then(|p| p.resource_version());
            let api: Api<UpstreamPool> = Api::namespaced(self.client.clone(), &pp.namespace);
            let ikey = format!("pool/{}", pp.key());
            ok &= self
                .apply_status(
                    &api,
                    &pp.name,
                    ikey,
                    rv,
                    &pp.apply_body(),
                    "upstreampool_status",
                )
                .await;
        }
        ok
    }

    async fn apply_address_pools(&mut self, plan: &Plan, observed: &[Arc<AddressPool>]) -> bool {
        let api: Api<AddressPool> = Api::all(self.client.clone());
        let mut ok = true;
        for pp in plan.address_pools.iter().filter(|p| p.changed) {
            let rv = observed
                .iter()
                .find(|p| p.name_any() == pp.name)
                .and_then(|p| p.resource_version());
            let ikey = format!("addresspool/{}", pp.name);
            ok &= self
                .apply_status(
                    &api,
                    &pp.name,
                    ikey,
                    rv,
                    &pp.apply_body(),
                    "addresspool_status",
                )
                .await;
        }
        ok
    }

    async fn apply_bgp_peers(&mut self, plan: &Plan, observed: &[Arc<BGPPeer>]) -> bool {
        let api: Api<BGPPeer> = Api::all(self.client.clone());
        let mut ok = true;
        for pp in plan.bgp_peers.iter().filter(|p| p.changed) {
            let rv = observed
                .iter()
                .find(|p| p.name_any() == pp.name)
                .and_then(|p| p.resource_version());
            let ikey = format!("bgppeer/{}", pp.name);
            ok &= self
                .apply_status(&api, &pp.name, ikey, rv, &pp.apply_body(), "bgppeer_status")
                .await;
        }
        ok
    }

    /// Applies `body` to the status of `name` (server-side apply), unless the same body is in
    /// flight at the version `rv` the cache shows; counts the write under `label`. False when
    /// the write failed (an object that is gone is not a failure).
    async fn apply_status<K>(
        &mut self,
        api: &Api<K>,
        name: &str,
        ikey: String,
        rv: Option<String>,
        body: &Value,
        label: &str,
    ) -> bool
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        if self.inflight.pending(&ikey, &rv, body) {
            return true;
        }
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match api.patch_status(name, &params, &Patch::Apply(body)).await {
            Ok(_) => {
                self.metrics.writes.with_label_values(&[label]).inc();
                self.inflight.record(ikey, rv, body);
                true
            }
            Err(e) if gone(&e) => true,
            Err(e) => {
                warn!(object = %ikey, error = %e, "cannot apply the status");
                false
            }
        }
    }
}

/// Whose Events an object's are: its uid (its `namespace/name` before it has one).
fn event_id<K: Resource>(o: &K) -> String {
    o.meta().uid.clone().unwrap_or_else(|| {
        format!(
            "{}/{}",
            o.meta().namespace.as_deref().unwrap_or_default(),
            o.meta().name.as_deref().unwrap_or_default()
        )
    })
}

/// The in-flight key of a VirtualIP's `part` (`meta` or `status`).
fn key(part: &str, vp: &VirtualIpPlan) -> String {
    format!("{part}/{}", vp.key())
}

async fn write_vip(
    client: Client,
    recorder: Recorder,
    index: usize,
    vp: &VirtualIpPlan,
    meta: Option<Value>,
    status: Option<Value>,
    obj: &VirtualIP,
) -> VipOutcome {
    let api: Api<VirtualIP> = Api::namespaced(client, &vp.namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    // Metadata first: the annotations are what agents act on (a conflict annotation must be
    // there by the time the Conflict condition is), and a VirtualIP being deleted gets no
    // status write after its finalizer goes.
    let meta = match meta {
        Some(b) => {
            let r = api
                .patch(&vp.name, &params, &Patch::Apply(&b))
                .await
                .map(|_| ());
            Some((b, r))
        }
        None => None,
    };
    let status = match status {
        Some(b) => {
            let r = api
                .patch_status(&vp.name, &params, &Patch::Apply(&b))
                .await
                .map(|_| ());
            Some((b, r))
        }
        None => None,
    };
    let wrote = [&meta, &status]
        .iter()
        .any(|w| matches!(w, Some((_, Ok(())))));
    if wrote {
        let reference = obj.object_ref(&());
        for d in &vp.events {
            let ev = Event {
                type_: if d.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: d.reason.clone(),
                note: Some(d.note.clone()),
                action: "Reconcile".into(),
                secondary: None,
            };
            if let Err(e) = recorder.publish(&ev, &reference).await {
                debug!(error = %e, "cannot publish event");
            }
        }
    }
    VipOutcome {
        index,
        rv: obj.resource_version(),
        meta,
        status,
    }
}
