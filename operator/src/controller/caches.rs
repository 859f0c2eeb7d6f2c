//! The controller's caches: kube-runtime reflectors of everything the plan reads, Buoy's own
//! kinds watched untyped and decoded one by one ([`Decoded`]) so that one bad object is left out
//! alone.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use buoy_crds::{AddressPool, BGPPeer, UpstreamPool, VirtualIP};
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use prometheus::{IntCounter, IntCounterVec};
use serde_json::Value;
use tokio::sync::Notify;
use tracing::warn;

use super::Error;
use crate::daemonset;

pub(super) struct Caches {
    /// Buoy's own kinds are watched untyped and decoded one by one (see [`Decoded`]).
    pub(super) vips: Store<DynamicObject>,
    pub(super) pools: Store<DynamicObject>,
    pub(super) address_pools: Store<DynamicObject>,
    pub(super) bgp_peers: Store<DynamicObject>,
    /// Namespaces' labels (metadata only), for AddressPools' `namespaceSelector`.
    pub(super) namespaces: Store<PartialObjectMeta<Namespace>>,
    pub(super) nodes: Store<Node>,
    /// Every Service (LoadBalancers of Buoy's class get addresses).
    pub(super) services: Store<Service>,
    pub(super) slices: Store<EndpointSlice>,
    pub(super) daemonsets: Store<DaemonSet>,
}

impl Caches {
    /// Starts every reflector; every event wakes `notify`, every failure counts in `errors`
    /// (by kind).
    pub(super) fn start(
        client: &Client,
        ns: &str,
        notify: &Arc<Notify>,
        errors: &IntCounterVec,
    ) -> Caches {
        // Each kind's series exists from zero, so that its first error is an increase.
        let failed = |kind: &str| errors.with_label_values(&[kind]);
        Caches {
            vips: reflect_untyped::<VirtualIP>(client, notify.clone(), failed("VirtualIP")),
            pools: reflect_untyped::<UpstreamPool>(client, notify.clone(), failed("UpstreamPool")),
            address_pools: reflect_untyped::<AddressPool>(
                client,
                notify.clone(),
                failed("AddressPool"),
            ),
            bgp_peers: reflect_untyped::<BGPPeer>(client, notify.clone(), failed("BGPPeer")),
            namespaces: reflect(
                Api::all(client.clone()),
                watcher::Config::default(),
                notify.clone(),
                failed("Namespace"),
            ),
            nodes: reflect(
                Api::all(client.clone()),
                watcher::Config::default(),
                notify.clone(),
                failed("Node"),
            ),
            services: reflect(
                Api::all(client.clone()),
                watcher::Config::default(),
                notify.clone(),
                failed("Service"),
            ),
            slices: reflect(
                Api::all(client.clone()),
                watcher::Config::default().labels("kubernetes.io/service-name"),
                notify.clone(),
                failed("EndpointSlice"),
            ),
            daemonsets: reflect(
                Api::namespaced(client.clone(), ns),
                watcher::Config::default().labels(&format!(
                    "{}={}",
                    daemonset::APP_LABEL,
                    daemonset::APP
                )),
                notify.clone(),
                failed("DaemonSet"),
            ),
        }
    }

    /// Waits until every cache is filled.
    pub(super) async fn ready(&self) -> Result<(), Error> {
        let fail = |kind| move |_| Error::CacheSync(kind);
        self.vips
            .wait_until_ready()
            .await
            .map_err(fail("VirtualIP"))?;
        self.pools
            .wait_until_ready()
            .await
            .map_err(fail("UpstreamPool"))?;
        self.address_pools
            .wait_until_ready()
            .await
            .map_err(fail("AddressPool"))?;
        self.bgp_peers
            .wait_until_ready()
            .await
            .map_err(fail("BGPPeer"))?;
        self.namespaces
            .wait_until_ready()
            .await
            .map_err(fail("Namespace"))?;
        self.nodes.wait_until_ready().await.map_err(fail("Node"))?;
        self.services
            .wait_until_ready()
            .await
            .map_err(fail("Service"))?;
        self.slices
            .wait_until_ready()
            .await
            .map_err(fail("EndpointSlice"))?;
        self.daemonsets
            .wait_until_ready()
            .await
            .map_err(fail("DaemonSet"))
    }
}

/// Starts an untyped reflector for the kind `K`; every event wakes `notify`.
fn reflect_untyped<K>(
    client: &Client,
    notify: Arc<Notify>,
    failed: IntCounter,
) -> Store<DynamicObject>
where
    K: Resource<DynamicType = ()>,
{
    let ar = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let writer = reflector::store::Writer::new(ar);
    let store = writer.as_reader();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
    tokio::spawn(drive(stream, notify, failed));
    store
}

/// An object that does not decode, and why.
type Rejected = (Arc<DynamicObject>, String);

/// Objects of one of Buoy's kinds, decoded from the untyped cache and kept by uid and
/// resourceVersion. An object that does not decode (a CRD and operator of different versions,
/// an object written around validation) is left out with one warning per version, instead of
/// failing the whole watch as a typed list would.
pub(super) struct Decoded<K> {
    kind: &'static str,
    objects: HashMap<String, (Option<String>, Arc<K>)>,
    rejected: HashSet<(String, Option<String>)>,
}

impl<K: serde::de::DeserializeOwned + Resource<DynamicType = ()>> Decoded<K> {
    pub(super) fn new(kind: &'static str) -> Self {
        Decoded {
            kind,
            objects: HashMap::new(),
            rejected: HashSet::new(),
        }
    }

    /// The decodable objects of `raw`, and the ones newly found undecodable with the error.
    pub(super) fn decode(&mut self, raw: &[Arc<DynamicObject>]) -> (Vec<Arc<K>>, Vec<Rejected>) {
        let mut out = Vec::with_capacity(raw.len());
        let mut bad = Vec::new();
        let mut seen = HashSet::with_capacity(raw.len());
        for o in raw {
            let uid = o.metadata.uid.clone().unwrap_or_else(|| o.name_any());
            let rv = o.metadata.resource_version.clone();
            seen.insert(uid.clone());
            if let Some((r, k)) = self.objects.get(&uid)
                && *r == rv
            {
                out.push(k.clone());
                continue;
            }
            let value = serde_json::to_value(o.as_ref()).map(|mut v| {
                // List items may come without their type.
                if v.get("kind").is_none() {
                    v["apiVersion"] = Value::from(K::api_version(&()).into_owned());
                    v["kind"] = Value::from(K::kind(&()).into_owned());
                }
                v
            });
            match value.and_then(serde_json::from_value::<K>) {
                Ok(k) => {
                    let k = Arc::new(k);
                    self.objects.insert(uid, (rv, k.clone()));
                    out.push(k);
                }
                Err(e) => {
                    self.objects.remove(&uid);
                    if self.rejected.insert((uid, rv)) {
                        warn!(kind = self.kind, name = %o.name_any(), namespace = ?o.metadata.namespace, error = %e, "cannot decode; left out");
                        bad.push((o.clone(), e.to_string()));
                    }
                }
            }
        }
        self.objects.retain(|uid, _| seen.contains(uid));
        self.rejected.retain(|(uid, _)| seen.contains(uid));
        (out, bad)
    }
}

/// Starts a reflector for `api`; every event wakes `notify`.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    notify: Arc<Notify>,
    failed: IntCounter,
) -> Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
    tokio::spawn(drive(stream, notify, failed));
    store
}

async fn drive<S, T>(stream: S, notify: Arc<Notify>, failed: IntCounter)
where
    S: Stream<Item = Result<T, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(ev) = stream.next().await {
        if let Err(e) = ev {
            failed.inc();
            // The watcher retries with backoff; an object that cannot be decoded is reported
            // here and never crashes the operator.
            warn!(error = %e, "watch error");
        }
        notify.notify_one();
    }
}
