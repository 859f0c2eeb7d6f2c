//! The Kubernetes API test server, driven by kube-rs as Buoy's operator and agents will drive a
//! real cluster: `Api`, `watcher`, `Controller`, the finalizer helper, the event recorder and
//! server-side apply. Each test asserts one behaviour of the issue's scope.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use buoy_crds::VirtualIP;
use buoy_tests::testapi::{FailWith, TestApi, buoy_crds};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::{
    api::{
        apps::v1::DaemonSet,
        core::v1::{ConfigMap, Namespace, Node, Pod, Secret},
        events::v1::Event as K8sEvent,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams},
    config::{KubeConfigOptions, Kubeconfig},
    core::GroupVersionKind,
    discovery::Discovery,
    runtime::{
        Controller,
        controller::Action,
        events::{Event, EventType, Recorder},
        finalizer::{self, finalizer},
        watcher,
    },
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

async fn start() -> (TestApi, Client) {
    let api = TestApi::start().await.unwrap();
    let client = api.client().unwrap();
    (api, client)
}

async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in buoy_crds().unwrap() {
        let crd: CustomResourceDefinition = serde_json::from_value(crd).unwrap();
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
}

fn vip(name: &str, addresses: &[&str]) -> VirtualIP {
    serde_json::from_value(json!({
        "apiVersion": "buoy.io/v1alpha1", "kind": "VirtualIP",
        "metadata": {"name": name},
        "spec": {"addresses": addresses},
    }))
    .unwrap()
}

fn status_of(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Polls `check` until it returns Some, or fails the test after `WAIT`.
async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    buoy_tests::eventually(what, WAIT, Duration::from_millis(20), check).await
}

fn cm(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).unwrap()
}

#[tokio::test]
async fn kubeconfig_and_discovery_serve_kube_rs() {
    let api = TestApi::start().await.unwrap();
    let kubeconfig = Kubeconfig::read_from(api.kubeconfig_path()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    assert_eq!(
        config.cluster_url.to_string(),
        format!("http://{}/", api.addr())
    );
    let client = {
        buoy_tests::install_crypto_provider();
        Client::try_from(config).unwrap()
    };
    assert_eq!(client.apiserver_version().await.unwrap().major, "1");

    install_crds(&client).await;
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let (vip, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("buoy.io", "v1alpha1", "VirtualIP"))
        .unwrap();
    assert_eq!(vip.plural, "virtualips");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    assert!(caps.subresources.iter().any(|(r, _)| r.plural == "status"));
    for (g, v, k) in [
        ("", "v1", "Pod"),
        ("", "v1", "Node"),
        ("", "v1", "Event"),
        ("apps", "v1", "DaemonSet"),
        ("coordination.k8s.io", "v1", "Lease"),
        ("discovery.k8s.io", "v1", "EndpointSlice"),
        ("events.k8s.io", "v1", "Event"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole"),
        ("buoy.io", "v1alpha1", "UpstreamPool"),
    ] {
        assert!(
            discovery
                .resolve_gvk(&GroupVersionKind::gvk(g, v, k))
                .is_some(),
            "{g}/{v} {k} not discovered"
        );
    }
    // Aggregated discovery (one request per root) finds the same.
    let aggregated = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .unwrap();
    let (vip, caps) = aggregated
        .resolve_gvk(&GroupVersionKind::gvk("buoy.io", "v1alpha1", "VirtualIP"))
        .unwrap();
    assert_eq!(
        (vip.plural.as_str(), caps.scope),
        ("virtualips", kube::discovery::Scope::Namespaced)
    );
    assert!(caps.subresources.iter().any(|(r, _)| r.plural == "status"));
    let (node, caps) = aggregated
        .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Node"))
        .unwrap();
    assert_eq!(
        (node.plural.as_str(), caps.scope),
        ("nodes", kube::discovery::Scope::Cluster)
    );

    // A CRD's kinds go away with it.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.delete("upstreampools.buoy.io", &DeleteParams::default())
        .await
        .unwrap();
    let discovery = Discovery::new(client).run().await.unwrap();
    assert!(
        discovery
            .resolve_gvk(&GroupVersionKind::gvk(
                "buoy.io",
                "v1alpha1",
                "UpstreamPool"
            ))
            .is_none()
    );
}

#[tokio::test]
async fn a_cluster_scoped_crd_is_served_at_once() {
    let (_api, client) = start().await;
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Cluster", "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer", "minimum": 1, "default": 3}}},
                    "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}}}}}]}});
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let created = crds
        .create(
            &PostParams::default(),
            &serde_json::from_value(crd).unwrap(),
        )
        .await
        .unwrap();
    let established = created.status.unwrap().conditions.unwrap_or_default();
    assert!(
        established
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );

    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &ar);
    let w: kube::api::DynamicObject =
        serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {}})).unwrap();
    let stored = widgets.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(stored.data["spec"]["size"], 3, "defaulted");
    assert_eq!(stored.metadata.namespace, None);
    let status = widgets
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": true}})),
        )
        .await
        .unwrap();
    assert_eq!(status.data["status"]["ready"], true);
    assert_eq!(
        widgets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    // Not served under a namespace.
    let namespaced: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &ar);
    assert_eq!(
        status_of(namespaced.list(&ListParams::default()).await.unwrap_err()).code,
        404
    );
}

#[tokio::test]
async fn crud_system_fields_and_status_errors() {
    let (_api, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let a = cms
        .create(&PostParams::default(), &cm("a", json!({"k": "v"})))
        .await
        .unwrap();
    assert!(a.metadata.uid.is_some() && a.metadata.creation_timestamp.is_some());
    let rv_a: u64 = a.resource_version().unwrap().parse().unwrap();

    // One global, monotonic resourceVersion across kinds.
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let s = secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap(),
        )
        .await
        .unwrap();
    assert!(s.resource_version().unwrap().parse::<u64>().unwrap() > rv_a);

    let dup = status_of(
        cms.create(&PostParams::default(), &cm("a", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    let missing = status_of(cms.get("nope").await.unwrap_err());
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "configmaps \"nope\" not found");

    // Optimistic concurrency: a stale resourceVersion is a 409 Conflict.
    let mut fresh = a.clone();
    fresh.data = Some([("k".to_string(), "w".to_string())].into());
    let updated = cms
        .replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_ne!(updated.resource_version(), a.resource_version());
    let stale = status_of(
        cms.replace("a", &PostParams::default(), &fresh)
            .await
            .unwrap_err(),
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));

    // generateName.
    let generated: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let g = cms
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    assert!(
        g.name_any().starts_with("gen-") && g.name_any().len() == "gen-".len() + 5,
        "{}",
        g.name_any()
    );

    // Namespaces must exist.
    let elsewhere: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let no_ns = status_of(
        elsewhere
            .create(&PostParams::default(), &cm("x", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(no_ns.code, 404);

    // Dry runs store nothing.
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    cms.create(&dry, &cm("dry", json!({}))).await.unwrap();
    assert_eq!(status_of(cms.get("dry").await.unwrap_err()).code, 404);

    cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(status_of(cms.get("a").await.unwrap_err()).code, 404);

    // deletecollection, with a selector.
    for (name, tier) in [("x1", "cache"), ("x2", "cache"), ("x3", "db")] {
        let labelled: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {"tier": tier}}}))
                .unwrap();
        cms.create(&PostParams::default(), &labelled).await.unwrap();
    }
    cms.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("tier=cache"),
    )
    .await
    .unwrap();
    let left: Vec<String> = cms
        .list(&ListParams::default().labels("tier"))
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(left, vec!["x3"]);
}

#[tokio::test]
async fn generation_follows_spec_and_status_is_a_subresource() {
    let (api, client) = start().await;
    api.install_buoy_crds().unwrap();
    let vips: Api<VirtualIP> = Api::default_namespaced(client.clone());
    let mut v = vip("web", &["10.0.0.1"]);
    v.status = Some(serde_json::from_value(json!({"master": "sneaky"})).unwrap());
    let created = vips.create(&PostParams::default(), &v).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.status, None, "status is not set on create");

    // Status writes: no generation bump; spec changes through /status are ignored.
    let mut s = created.clone();
    s.status = Some(serde_json::from_value(json!({"master": "n1"})).unwrap());
    s.spec.interface = Some("eth9".into());
    let after_status = vips
        .replace_status("web", &PostParams::default(), &s)
        .await
        .unwrap();
    assert_eq!(
        after_status.status.as_ref().unwrap().master.as_deref(),
        Some("n1")
    );
    assert_eq!(after_status.spec.interface, None);
    assert_eq!(after_status.metadata.generation, Some(1));

    // The main endpoint ignores status; spec changes bump the generation.
    let mut m = after_status.clone();
    m.status = Some(serde_json::from_value(json!({"master": "n2"})).unwrap());
    m.spec.interface = Some("eth1".into());
    let after_main = vips
        .replace("web", &PostParams::default(), &m)
        .await
        .unwrap();
    assert_eq!(
        after_main.status.as_ref().unwrap().master.as_deref(),
        Some("n1")
    );
    assert_eq!(after_main.spec.interface.as_deref(), Some("eth1"));
    assert_eq!(after_main.metadata.generation, Some(2));

    // A metadata-only change leaves the generation alone.
    let labelled = vips
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(2));
}

#[tokio::test]
async fn lists_filter_by_label_and_field_selectors() {
    let (_api, client) = start().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "other"}})).unwrap(),
        )
        .await
        .unwrap();
    for (ns, name, node, app) in [
        ("default", "p1", "n1", "web"),
        ("default", "p2", "n2", "web"),
        ("other", "p3", "n1", "db"),
    ] {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let pod = json!({"metadata": {"name": name, "labels": {"app": app}}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}});
        pods.create(
            &PostParams::default(),
            &serde_json::from_value(pod).unwrap(),
        )
        .await
        .unwrap();
    }
    let all: Api<Pod> = Api::all(client.clone());
    let names = |l: kube::core::ObjectList<Pod>| {
        l.items
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(all.list(&ListParams::default()).await.unwrap()),
        vec!["p1", "p2", "p3"]
    );
    assert_eq!(
        names(
            all.list(&ListParams::default().labels("app=web"))
                .await
                .unwrap()
        ),
        vec!["p1", "p2"]
    );
    assert_eq!(
        names(
            all.list(&ListParams::default().fields("spec.nodeName=n1"))
                .await
                .unwrap()
        ),
        vec!["p1", "p3"]
    );
    assert_eq!(
        names(
            all.list(&ListParams::default().fields("metadata.namespace=other"))
                .await
                .unwrap()
        ),
        vec!["p3"]
    );
    assert_eq!(
        names(
            all.list(&ListParams::default().fields("metadata.name=p2"))
                .await
                .unwrap()
        ),
        vec!["p2"]
    );
    assert_eq!(
        names(
            all.list(&ListParams::default().labels("app in (db),app!=web"))
                .await
                .unwrap()
        ),
        vec!["p3"]
    );
    // Pages, as the watcher asks for them.
    let page = all.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(names(page.clone()), vec!["p1", "p2"]);
    let token = page.metadata.continue_.clone().unwrap();
    assert_eq!(
        names(
            all.list(&ListParams::default().limit(2).continue_token(&token))
                .await
                .unwrap()
        ),
        vec!["p3"]
    );
}

/// Next non-bookmark event of a raw watch, within `WAIT`.
async fn next_change<S>(stream: &mut S) -> WatchEvent<ConfigMap>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin,
{
    loop {
        let ev = tokio::time::timeout(WAIT, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if !matches!(ev, WatchEvent::Bookmark(_)) {
            return ev;
        }
    }
}

#[tokio::test]
async fn watch_from_a_version_with_bookmarks_resumes_and_expires() {
    let (api, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let list = cms.list(&ListParams::default()).await.unwrap();
    let from = list.metadata.resource_version.unwrap();
    let mut stream = cms
        .watch(&WatchParams::default(), &from)
        .await
        .unwrap()
        .boxed();

    cms.create(&PostParams::default(), &cm("w", json!({"a": "1"})))
        .await
        .unwrap();
    cms.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "2"}})),
    )
    .await
    .unwrap();
    cms.delete("w", &DeleteParams::default()).await.unwrap();
    assert!(matches!(next_change(&mut stream).await, WatchEvent::Added(o) if o.name_any() == "w"));
    assert!(
        matches!(next_change(&mut stream).await, WatchEvent::Modified(o) if o.data.as_ref().unwrap()["a"] == "2")
    );
    assert!(
        matches!(next_change(&mut stream).await, WatchEvent::Deleted(o) if o.name_any() == "w")
    );

    // A bookmark arrives; a new watch from its version sees only what came after.
    let bookmark_rv = match tokio::time::timeout(WAIT, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        WatchEvent::Bookmark(b) => b.metadata.resource_version,
        other => panic!("expected a bookmark, got {other:?}"),
    };
    drop(stream);
    cms.create(&PostParams::default(), &cm("after", json!({})))
        .await
        .unwrap();
    let mut resumed = cms
        .watch(&WatchParams::default(), &bookmark_rv)
        .await
        .unwrap()
        .boxed();
    assert!(
        matches!(next_change(&mut resumed).await, WatchEvent::Added(o) if o.name_any() == "after")
    );

    // After compaction, an old version is 410 Gone, as an ERROR event.
    api.compact();
    let mut gone = cms
        .watch(&WatchParams::default(), &from)
        .await
        .unwrap()
        .boxed();
    match next_change(&mut gone).await {
        WatchEvent::Error(s) => assert_eq!(s.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    // timeoutSeconds ends a watch.
    let mut short = cms
        .watch(&WatchParams::default().timeout(1), &bookmark_rv)
        .await
        .unwrap()
        .boxed();
    let ended = tokio::time::timeout(WAIT, async { while short.next().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the watch outlived its timeoutSeconds");
}

#[tokio::test]
async fn stopped_like_a_killed_server_then_resumed_on_the_same_address_and_objects() {
    let (mut api, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let kept = cms
        .create(&PostParams::default(), &cm("kept", json!({"a": "1"})))
        .await
        .unwrap();
    let from = kept.resource_version().unwrap();
    let mut open = cms
        .watch(&WatchParams::default(), &from)
        .await
        .unwrap()
        .boxed();
    let addr = api.addr();

    api.stop();
    assert!(!api.serving());
    // Refused, and the open watch is cut.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    let cut =
        tokio::time::timeout(WAIT, async { while let Some(Ok(_)) = open.next().await {} }).await;
    assert!(cut.is_ok(), "the open watch outlived the server");
    assert!(cms.get("kept").await.is_err());

    // Back on the same address: the same object, and a watch resumes from the version seen
    // before the outage.
    api.resume().unwrap();
    assert!(api.serving());
    assert_eq!(api.addr(), addr);
    let again = cms.get("kept").await.unwrap();
    assert_eq!(again.uid(), kept.uid());
    assert_eq!(again.resource_version(), kept.resource_version());
    let mut resumed = cms
        .watch(&WatchParams::default(), &from)
        .await
        .unwrap()
        .boxed();
    cms.patch(
        "kept",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "2"}})),
    )
    .await
    .unwrap();
    assert!(
        matches!(next_change(&mut resumed).await, WatchEvent::Modified(o) if o.data.as_ref().unwrap()["a"] == "2")
    );
    // Twice over: stop and resume are repeatable; resume while serving does nothing.
    api.resume().unwrap();
    api.stop();
    api.stop();
    api.resume().unwrap();
    assert_eq!(cms.get("kept").await.unwrap().data.unwrap()["a"], "2");
}

#[tokio::test]
async fn watcher_lists_then_watches_and_recovers_from_gone() {
    let api = TestApi::start().await.unwrap();
    let client = api.client().unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("before", json!({})))
        .await
        .unwrap();

    for config in [
        watcher::Config::default(),
        watcher::Config::default().streaming_lists(),
    ] {
        let mut events = watcher(cms.clone(), config).boxed();
        let mut initial = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, events.try_next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
            {
                watcher::Event::Init => {}
                watcher::Event::InitApply(o) => initial.push(o.name_any()),
                watcher::Event::InitDone => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(initial.contains(&"before".to_string()), "{initial:?}");
        let name = format!("live-{}", initial.len());
        cms.create(&PostParams::default(), &cm(&name, json!({})))
            .await
            .unwrap();
        let seen = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(watcher::Event::Apply(o)) = events.try_next().await.unwrap()
                    && o.name_any() == name
                {
                    return;
                }
            }
        })
        .await;
        assert!(seen.is_ok(), "watcher missed {name}");
    }

    // A watcher whose version was compacted away relists: its watch (re)starts from its list's
    // version (no bookmarks move it; timeoutSeconds=1 ends the watch if it was already open),
    // gets 410 Gone, and starts over.
    let config = watcher::Config::default().disable_bookmarks().timeout(1);
    let mut events = watcher(cms.clone(), config).boxed();
    let mut inits = 0;
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let relisted = tokio::time::timeout(WAIT, async {
        loop {
            match events.try_next().await {
                Ok(Some(watcher::Event::Init)) => {
                    inits += 1;
                    if inits == 2 {
                        return;
                    }
                }
                Ok(Some(watcher::Event::InitDone)) if inits == 1 => {
                    // Other kinds move the resourceVersion on; then the history goes.
                    let s: Secret =
                        serde_json::from_value(json!({"metadata": {"generateName": "s-"}}))
                            .unwrap();
                    secrets.create(&PostParams::default(), &s).await.unwrap();
                    api.compact();
                }
                // The 410 surfaces as an error before the relist.
                _ => {}
            }
        }
    })
    .await;
    assert!(
        relisted.is_ok(),
        "the watcher did not relist after 410 Gone"
    );
    drop(events);

    // A reflector (what Controller uses) mirrors the objects.
    let (reader, writer) = kube::runtime::reflector::store::<ConfigMap>();
    let reflected = kube::runtime::WatchStreamExt::reflect(
        watcher(cms.clone(), watcher::Config::default()),
        writer,
    );
    let task = tokio::spawn(reflected.for_each(|_| async {}));
    let expected = cms.list(&ListParams::default()).await.unwrap().items.len();
    eventually("the reflector's store", || async {
        (reader.state().len() == expected).then_some(())
    })
    .await;
    cms.delete("before", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the deletion reflected", || async {
        (reader.state().len() == expected - 1).then_some(())
    })
    .await;
    task.abort();

    // A list with an exact, compacted resourceVersion is 410 Gone.
    let old = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    cms.create(&PostParams::default(), &cm("newer", json!({})))
        .await
        .unwrap();
    let exact = ListParams::default()
        .at(&old)
        .matching(kube::api::VersionMatch::Exact);
    assert_eq!(status_of(cms.list(&exact).await.unwrap_err()).code, 410);
}

/// A kube-rs client without the default retries of 429, 503 and 504: it sees them.
fn client_without_retries(api: &TestApi) -> Client {
    let mut config = kube::Config::new(format!("http://{}", api.addr()).parse().unwrap());
    config.default_retry = false;
    {
        buoy_tests::install_crypto_provider();
        Client::try_from(config).unwrap()
    }
}

#[tokio::test]
async fn injected_failures_answer_with_their_status_and_cut_watches() {
    let (api, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let c = cms
        .create(&PostParams::default(), &cm("c", json!({"a": "1"})))
        .await
        .unwrap();
    let mut open = cms
        .watch(&WatchParams::default(), &c.resource_version().unwrap())
        .await
        .unwrap()
        .boxed();

    // 500 on every request until cleared: the open watch ends, a get fails with the Status.
    api.fail_requests(FailWith::status(500));
    let cut =
        tokio::time::timeout(WAIT, async { while let Some(Ok(_)) = open.next().await {} }).await;
    assert!(cut.is_ok(), "the open watch outlived the failure's start");
    let err = status_of(cms.get("c").await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (500, "InternalError"));
    assert!(cms.watch(&WatchParams::default(), "0").await.is_err());
    api.clear_failures();
    assert_eq!(cms.get("c").await.unwrap().uid(), c.uid());

    // 429 for a window: a client that does not retry gets it, with Retry-After; kube-rs' default
    // client waits as told and gets through once the window has passed.
    let window = Duration::from_secs(2);
    let since = std::time::Instant::now();
    api.fail_requests(FailWith::status(429).until(since + window));
    let plain: Api<ConfigMap> = Api::default_namespaced(client_without_retries(&api));
    let err = status_of(plain.get("c").await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (429, "TooManyRequests"));
    assert_eq!(err.details.unwrap().retry_after_seconds, 1);
    let req = http::Request::get("/api/v1/namespaces/default/configmaps/c")
        .body(kube::client::Body::empty())
        .unwrap();
    let resp = client_without_retries(&api).send(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    cms.get("c").await.unwrap();
    assert!(since.elapsed() >= window, "got through within the window");
    plain.get("c").await.unwrap();

    // A filter: only PATCHes of ConfigMaps fail; reads, other kinds and their watches go on.
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let mut secret_watch = secrets
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    api.fail_requests(
        FailWith::status(500)
            .method(http::Method::PATCH)
            .path_contains("/configmaps/"),
    );
    let patch = Patch::Merge(json!({"data": {"a": "2"}}));
    let err = status_of(
        cms.patch("c", &PatchParams::default(), &patch)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 500);
    cms.get("c").await.unwrap();
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();
    let seen = tokio::time::timeout(WAIT, secret_watch.next()).await;
    assert!(
        matches!(seen, Ok(Some(Ok(WatchEvent::Added(ref o)))) if o.name_any() == "s"),
        "the Secret watch was cut: {seen:?}"
    );
    api.clear_failures();
    cms.patch("c", &PatchParams::default(), &patch)
        .await
        .unwrap();

    // A watcher meets the errors while they last (its watch cut, its restarts refused), then
    // recovers by itself and sees what changed meanwhile.
    let mut events = kube::runtime::WatchStreamExt::default_backoff(watcher(
        cms.clone(),
        watcher::Config::default(),
    ))
    .boxed();
    tokio::time::timeout(WAIT, async {
        while !matches!(events.try_next().await, Ok(Some(watcher::Event::InitDone))) {}
    })
    .await
    .unwrap();
    api.fail_requests(FailWith::status(500).lasting(Duration::from_secs(1)));
    let failed =
        tokio::time::timeout(WAIT, async { while events.try_next().await.is_ok() {} }).await;
    assert!(failed.is_ok(), "the watcher met no error");
    // Written behind the failure's back (the store is not behind it).
    api.with_store(|store| {
        let rt = store.type_of("", "configmaps").unwrap();
        store
            .create(
                &rt,
                "default",
                json!({"metadata": {"name": "meanwhile"}}),
                &buoy_tests::testapi::store::WriteCtx::internal("test"),
            )
            .unwrap();
    });
    let recovered = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(Some(watcher::Event::Apply(o) | watcher::Event::InitApply(o))) =
                events.try_next().await
                && o.name_any() == "meanwhile"
            {
                return;
            }
        }
    })
    .await;
    assert!(recovered.is_ok(), "the watcher did not recover");
}

#[tokio::test]
async fn merge_json_and_strategic_patches() {
    let (_api, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(
        &PostParams::default(),
        &cm("p", json!({"a": "1", "b": "2"})),
    )
    .await
    .unwrap();
    let merged = cms
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": null, "c": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(merged.data).unwrap(),
        json!({"b": "2", "c": "3"})
    );

    let ops: json_patch::Patch = serde_json::from_value(json!([{"op": "test", "path": "/data/b", "value": "2"}, {"op": "replace", "path": "/data/b", "value": "20"}])).unwrap();
    let patched = cms
        .patch("p", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["b"], "20");
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/b", "value": "nope"}]))
            .unwrap();
    assert_eq!(
        status_of(
            cms.patch("p", &PatchParams::default(), &Patch::Json::<()>(failing))
                .await
                .unwrap_err()
        )
        .code,
        422
    );

    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod = json!({"metadata": {"name": "pod"}, "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}});
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod).unwrap(),
    )
    .await
    .unwrap();
    let smp = json!({"spec": {"containers": [{"name": "b", "image": "b:2"}]}});
    let patched = pods
        .patch("pod", &PatchParams::default(), &Patch::Strategic(smp))
        .await
        .unwrap();
    let images: Vec<_> = patched
        .spec
        .unwrap()
        .containers
        .iter()
        .map(|c| c.image.clone().unwrap())
        .collect();
    assert_eq!(images, vec!["a:1", "b:2"], "containers are merged by name");
}

fn managers_of(obj: &VirtualIP) -> Vec<(String, String)> {
    obj.metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| {
            (
                m.manager.clone().unwrap(),
                serde_json::to_string(&m.fields_v1.as_ref().unwrap().0).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn server_side_apply_two_agents_own_their_status_nodes_entries() {
    let (_api, client) = start().await;
    install_crds(&client).await;
    let vips: Api<VirtualIP> = Api::default_namespaced(client.clone());
    let spec = json!({"apiVersion": "buoy.io/v1alpha1", "kind": "VirtualIP", "metadata": {"name": "web"}, "spec": {"addresses": ["10.0.0.1"]}});
    // Apply creates.
    let created = vips
        .patch(
            "web",
            &PatchParams::apply("buoy-operator"),
            &Patch::Apply(&spec),
        )
        .await
        .unwrap();
    assert_eq!(created.spec.addresses[0].0, "10.0.0.1");

    let node_status = |node: &str, state: &str| json!({"apiVersion": "buoy.io/v1alpha1", "kind": "VirtualIP", "status": {"nodes": [{"node": node, "state": state}]}});
    vips.patch_status(
        "web",
        &PatchParams::apply("agent-n1"),
        &Patch::Apply(node_status("n1", "Master")),
    )
    .await
    .unwrap();
    let both = vips
        .patch_status(
            "web",
            &PatchParams::apply("agent-n2"),
            &Patch::Apply(node_status("n2", "Backup")),
        )
        .await
        .unwrap();
    let nodes: Vec<_> = both
        .status
        .as_ref()
        .unwrap()
        .nodes
        .iter()
        .map(|n| (n.node.clone(), format!("{:?}", n.state)))
        .collect();
    assert_eq!(
        nodes,
        vec![
            ("n1".into(), "Master".into()),
            ("n2".into(), "Backup".into())
        ]
    );
    let managers = managers_of(&both);
    let owns = |m: &str, key: &str| managers.iter().any(|(n, f)| n == m && f.contains(key));
    assert!(
        owns("agent-n1", r#"k:{\"node\":\"n1\"}"#) && !owns("agent-n1", r#"k:{\"node\":\"n2\"}"#),
        "{managers:?}"
    );
    assert!(
        owns("agent-n2", r#"k:{\"node\":\"n2\"}"#) && !owns("agent-n2", r#"k:{\"node\":\"n1\"}"#),
        "{managers:?}"
    );
    assert!(owns("buoy-operator", "f:addresses"));

    // Re-applying one's own entry updates it and leaves the other alone.
    let updated = vips
        .patch_status(
            "web",
            &PatchParams::apply("agent-n1"),
            &Patch::Apply(node_status("n1", "Backup")),
        )
        .await
        .unwrap();
    let states: Vec<_> = updated
        .status
        .as_ref()
        .unwrap()
        .nodes
        .iter()
        .map(|n| format!("{}={:?}", n.node, n.state))
        .collect();
    assert_eq!(states, vec!["n1=Backup", "n2=Backup"]);

    // Writing another manager's field with another value conflicts, unless forced.
    let conflict = status_of(
        vips.patch_status(
            "web",
            &PatchParams::apply("agent-n1"),
            &Patch::Apply(node_status("n2", "Fault")),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert!(
        conflict.message.contains("conflict with \"agent-n2\"")
            && conflict
                .message
                .contains(".status.nodes[node=\"n2\"].state"),
        "{}",
        conflict.message
    );
    let forced = vips
        .patch_status(
            "web",
            &PatchParams::apply("operator").force(),
            &Patch::Apply(node_status("n2", "Fault")),
        )
        .await
        .unwrap();
    assert_eq!(
        format!("{:?}", forced.status.as_ref().unwrap().nodes[1].state),
        "Fault"
    );
    assert!(
        managers_of(&forced)
            .iter()
            .any(|(m, f)| m == "operator" && f.contains("f:state"))
    );

    // An agent that stops reporting its entry removes it, and only it.
    let empty =
        json!({"apiVersion": "buoy.io/v1alpha1", "kind": "VirtualIP", "status": {"nodes": []}});
    let after = vips
        .patch_status("web", &PatchParams::apply("agent-n1"), &Patch::Apply(empty))
        .await
        .unwrap();
    let left: Vec<_> = after
        .status
        .as_ref()
        .unwrap()
        .nodes
        .iter()
        .map(|n| n.node.clone())
        .collect();
    assert_eq!(left, vec!["n2"]);

    // Spec apply by the owner: omitting a field it applied before removes it.
    let with_iface = json!({"apiVersion": "buoy.io/v1alpha1", "kind": "VirtualIP", "metadata": {"name": "web"}, "spec": {"addresses": ["10.0.0.1"], "interface": "eth0"}});
    let a = vips
        .patch(
            "web",
            &PatchParams::apply("buoy-operator"),
            &Patch::Apply(&with_iface),
        )
        .await
        .unwrap();
    assert_eq!(a.spec.interface.as_deref(), Some("eth0"));
    let b = vips
        .patch(
            "web",
            &PatchParams::apply("buoy-operator"),
            &Patch::Apply(&spec),
        )
        .await
        .unwrap();
    assert_eq!(b.spec.interface, None);
    assert_eq!(
        b.status.unwrap().nodes.len(),
        1,
        "a spec apply leaves status alone"
    );

    // A plain update (here a merge patch) takes ownership of what it changes, so applying a
    // different value afterwards conflicts with that updater.
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    let edited = vips
        .patch(
            "web",
            &edit,
            &Patch::Merge(json!({"spec": {"interface": "eth7"}})),
        )
        .await
        .unwrap();
    let entry = edited
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .find(|m| m.manager.as_deref() == Some("kubectl-edit"))
        .unwrap();
    assert_eq!(entry.operation.as_deref(), Some("Update"));
    assert!(
        serde_json::to_string(&entry.fields_v1)
            .unwrap()
            .contains("f:interface")
    );
    let clash = status_of(
        vips.patch(
            "web",
            &PatchParams::apply("buoy-operator"),
            &Patch::Apply(&with_iface),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(clash.code, 409);
    assert!(
        clash.message.contains("conflict with \"kubectl-edit\"")
            && clash.message.contains(".spec.interface"),
        "{}",
        clash.message
    );
}

#[tokio::test]
async fn custom_resources_are_validated_defaulted_and_pruned() {
    let (_api, client) = start().await;
    install_crds(&client).await;
    let vips: Api<VirtualIP> = Api::default_namespaced(client.clone());

    let cel = status_of(
        vips.create(
            &PostParams::default(),
            &vip("mixed", &["10.0.0.1", "fd00::1"]),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((cel.code, cel.reason.as_str()), (422, "Invalid"));
    let fields: Vec<_> = cel
        .details
        .as_ref()
        .unwrap()
        .causes
        .iter()
        .map(|c| (c.field.clone(), c.message.clone()))
        .collect();
    assert_eq!(
        fields,
        vec![(
            "spec.addresses".to_string(),
            "all addresses must be of one family (all IPv4 or all IPv6)".to_string()
        )]
    );
    assert!(
        cel.message
            .starts_with("VirtualIP.buoy.io \"mixed\" is invalid: spec.addresses:"),
        "{}",
        cel.message
    );

    let mut bad = serde_json::to_value(vip("vrid", &["10.0.0.1"])).unwrap();
    bad["spec"]["virtualRouterID"] = json!(256);
    let raw: Api<kube::api::DynamicObject> = Api::default_namespaced_with(
        client.clone(),
        &kube::api::ApiResource::erase::<VirtualIP>(&()),
    );
    let schema = status_of(
        raw.create(
            &PostParams::default(),
            &serde_json::from_value(bad).unwrap(),
        )
        .await
        .unwrap_err(),
    );
    let fields: Vec<_> = schema
        .details
        .unwrap()
        .causes
        .iter()
        .map(|c| c.field.clone())
        .collect();
    assert_eq!(fields, vec!["spec.virtualRouterID"]);

    // Defaults are applied, unknown fields pruned.
    let mut extra = serde_json::to_value(vip("ok", &["10.0.0.1"])).unwrap();
    extra["spec"]["vrrp"] = json!({"preemt": false});
    let created = raw
        .create(
            &PostParams::default(),
            &serde_json::from_value(extra).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(created.data["spec"]["vrrp"]["version"], 3);
    assert_eq!(created.data["spec"]["vrrp"]["advertisementInterval"], "1s");
    assert!(created.data["spec"]["vrrp"].get("preemt").is_none());

    // CEL rules run on updates too.
    let err = status_of(
        vips.patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"vrrp": {"version": 2}, "addresses": ["fd00::1"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.details.unwrap().causes[0].field, "spec.vrrp.version");
}

struct Ctx {
    api: Api<VirtualIP>,
    recorder: Recorder,
    cleaned: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct ReconcileError(#[from] finalizer::Error<kube::Error>);

async fn reconcile(vip: Arc<VirtualIP>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    let api = ctx.api.clone();
    Ok(finalizer(&api, "buoy.io/test-cleanup", vip, |event| async {
        match event {
            finalizer::Event::Apply(vip) => {
                let status = json!({"apiVersion": "buoy.io/v1alpha1", "kind": "VirtualIP", "status": {"master": "n1", "observedGeneration": vip.metadata.generation}});
                ctx.api.patch_status(&vip.name_any(), &PatchParams::apply("buoy-operator").force(), &Patch::Apply(status)).await?;
                let event = Event { type_: EventType::Normal, reason: "Elected".into(), note: Some("n1 holds the addresses".into()), action: "Reconcile".into(), secondary: None };
                ctx.recorder.publish(&event, &vip.object_ref(&())).await?;
                Ok(Action::await_change())
            }
            finalizer::Event::Cleanup(_) => {
                ctx.cleaned.store(true, Ordering::SeqCst);
                Ok::<_, kube::Error>(Action::await_change())
            }
        }
    })
    .await?)
}

#[tokio::test]
async fn controller_finalizer_and_event_recorder() {
    let (_api, client) = start().await;
    install_crds(&client).await;
    let vips: Api<VirtualIP> = Api::default_namespaced(client.clone());
    let ctx = Arc::new(Ctx {
        api: vips.clone(),
        recorder: Recorder::new(client.clone(), "buoy-operator".into()),
        cleaned: AtomicBool::new(false),
    });
    let controller = Controller::new(vips.clone(), watcher::Config::default())
        .run(
            reconcile,
            |_, _, _| Action::requeue(Duration::from_millis(100)),
            ctx.clone(),
        )
        .for_each(|_| async {});
    let task = tokio::spawn(controller);

    vips.create(&PostParams::default(), &vip("web", &["10.0.0.1"]))
        .await
        .unwrap();
    let done = eventually("the finalizer and status", || async {
        let v = vips.get("web").await.ok()?;
        (v.finalizers().contains(&"buoy.io/test-cleanup".to_string())
            && v.status.as_ref()?.master.as_deref() == Some("n1"))
        .then_some(v)
    })
    .await;
    assert_eq!(done.status.unwrap().observed_generation, Some(1));

    let events: Api<K8sEvent> = Api::default_namespaced(client.clone());
    let recorded = eventually("the recorded event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Elected"))
    })
    .await;
    assert_eq!(recorded.regarding.unwrap().name.as_deref(), Some("web"));
    // Reconciled again after its own status write: the recorder patches the event into a series.
    eventually("an event series", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.series.as_ref().is_some_and(|s| s.count >= 2))
    })
    .await;

    // Deleting waits for the finalizer: cleanup runs, then the object goes.
    vips.delete("web", &DeleteParams::default()).await.unwrap();
    eventually("cleanup and removal", || async {
        let gone = matches!(vips.get("web").await, Err(kube::Error::Api(s)) if s.code == 404);
        (gone && ctx.cleaned.load(Ordering::SeqCst)).then_some(())
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let (_api, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let held: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .unwrap();
    cms.create(&PostParams::default(), &held).await.unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let deleting = cms.get("held").await.unwrap();
    assert!(deleting.metadata.deletion_timestamp.is_some());
    let adding = cms
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold", "more"]}})),
        )
        .await
        .unwrap_err();
    assert_eq!(
        status_of(adding).code,
        422,
        "no new finalizers while deleting"
    );
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(status_of(cms.get("held").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn garbage_collection_of_owned_objects() {
    let (_api, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let owner = cms
        .create(&PostParams::default(), &cm("owner", json!({})))
        .await
        .unwrap();
    let owned_by = |name: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.uid().unwrap()}]}})).unwrap()
    };
    cms.create(&PostParams::default(), &owned_by("child"))
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let mut secret = serde_json::to_value(owned_by("child-secret")).unwrap();
    secret
        .as_object_mut()
        .unwrap()
        .retain(|k, _| k == "metadata");
    let secret: Secret = serde_json::from_value(secret).unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    cms.create(&PostParams::default(), &cm("bystander", json!({})))
        .await
        .unwrap();

    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    eventually("dependents collected", || async {
        let child_gone = cms.get("child").await.is_err();
        let secret_gone = secrets.get("child-secret").await.is_err();
        (child_gone && secret_gone).then_some(())
    })
    .await;
    assert!(cms.get("bystander").await.is_ok());

    // Foreground: the owner waits for its dependents (held here by a finalizer).
    let owner = cms
        .create(&PostParams::default(), &cm("fg-owner", json!({})))
        .await
        .unwrap();
    let held: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "fg-child", "finalizers": ["example.com/hold"],
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "fg-owner", "uid": owner.uid().unwrap()}]}})).unwrap();
    cms.create(&PostParams::default(), &held).await.unwrap();
    cms.delete("fg-owner", &DeleteParams::foreground())
        .await
        .unwrap();
    let waiting = cms.get("fg-owner").await.unwrap();
    assert!(
        waiting.metadata.deletion_timestamp.is_some()
            && waiting
                .finalizers()
                .contains(&"foregroundDeletion".to_string())
    );
    assert!(
        cms.get("fg-child")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    cms.patch(
        "fg-child",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually("the foreground owner goes after its dependent", || async {
        matches!(cms.get("fg-owner").await, Err(kube::Error::Api(s)) if s.code == 404).then_some(())
    })
    .await;

    // Orphaning keeps dependents and drops their reference.
    let owner = cms
        .create(&PostParams::default(), &cm("owner", json!({})))
        .await
        .unwrap();
    let orphan: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "orphan", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.uid().unwrap()}]}})).unwrap();
    cms.create(&PostParams::default(), &orphan).await.unwrap();
    cms.delete("owner", &DeleteParams::orphan()).await.unwrap();
    let kept = cms.get("orphan").await.unwrap();
    assert!(
        kept.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );

    // Deleting a namespace deletes its content, then the namespace.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap(),
        )
        .await
        .unwrap();
    let inside: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    inside
        .create(&PostParams::default(), &cm("x", json!({})))
        .await
        .unwrap();
    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    eventually("namespace deleted", || async {
        namespaces.get("doomed").await.is_err().then_some(())
    })
    .await;
    assert!(
        inside
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn daemonset_shim_places_one_pod_per_eligible_node() {
    let (_api, client) = start().await;
    let nodes: Api<Node> = Api::all(client.clone());
    for (name, labels, taints) in [
        ("n1", json!({"role": "lb"}), json!([])),
        (
            "n2",
            json!({"role": "lb"}),
            json!([{"key": "dedicated", "value": "lb", "effect": "NoSchedule"}]),
        ),
        ("n3", json!({}), json!([])),
    ] {
        let node =
            json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}});
        nodes
            .create(
                &PostParams::default(),
                &serde_json::from_value(node).unwrap(),
            )
            .await
            .unwrap();
    }
    let dss: Api<DaemonSet> = Api::default_namespaced(client.clone());
    let ds = json!({"metadata": {"name": "agent"}, "spec": {
        "selector": {"matchLabels": {"app": "agent"}},
        "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"nodeSelector": {"role": "lb"}, "containers": [{"name": "agent", "image": "buoy"}]}}}});
    dss.create(&PostParams::default(), &serde_json::from_value(ds).unwrap())
        .await
        .unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let placed = || async {
        let mut on: Vec<String> = pods
            .list(&ListParams::default().labels("app=agent"))
            .await
            .unwrap()
            .items
            .iter()
            .filter_map(|p| p.spec.as_ref()?.node_name.clone())
            .collect();
        on.sort();
        on
    };
    assert_eq!(
        placed().await,
        vec!["n1"],
        "n2's taint is not tolerated, n3 does not match"
    );
    assert_eq!(
        dss.get("agent")
            .await
            .unwrap()
            .status
            .unwrap()
            .desired_number_scheduled,
        1
    );

    // Tolerating the taint adds n2.
    let tolerate = json!({"spec": {"template": {"spec": {"tolerations": [{"key": "dedicated", "operator": "Exists"}]}}}});
    dss.patch("agent", &PatchParams::default(), &Patch::Merge(tolerate))
        .await
        .unwrap();
    assert_eq!(placed().await, vec!["n1", "n2"]);
    let status = dss.get("agent").await.unwrap().status.unwrap();
    assert_eq!(
        (
            status.desired_number_scheduled,
            status.current_number_scheduled,
            status.number_ready
        ),
        (2, 2, 0)
    );

    // A ready pod counts as ready.
    let pod = pods
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .unwrap()
        .items
        .remove(0);
    pods.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})),
    )
    .await
    .unwrap();
    assert_eq!(
        dss.get("agent").await.unwrap().status.unwrap().number_ready,
        1
    );

    // A node that goes loses its pod; deleting the DaemonSet collects the rest.
    nodes.delete("n1", &DeleteParams::default()).await.unwrap();
    assert_eq!(placed().await, vec!["n2"]);
    dss.delete("agent", &DeleteParams::default()).await.unwrap();
    eventually("pods collected", || async {
        placed().await.is_empty().then_some(())
    })
    .await;
}

async fn raw(
    client: &Client,
    method: &str,
    uri: &str,
    content_type: &str,
    body: &str,
) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(body.as_bytes().to_vec())
        .unwrap();
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn malformed_requests_get_status_errors_not_crashes() {
    let (_api, client) = start().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let (code, body) = raw(&client, "POST", cms, "application/json", "{not json").await;
    assert_eq!(
        (code, body["kind"].as_str(), body["reason"].as_str()),
        (400, Some("Status"), Some("BadRequest"))
    );
    assert_eq!(
        raw(&client, "POST", cms, "application/json", "[1, 2]")
            .await
            .0,
        400
    );
    raw(
        &client,
        "POST",
        cms,
        "application/json",
        r#"{"metadata": {"name": "c"}}"#,
    )
    .await;
    assert_eq!(
        raw(&client, "PATCH", &format!("{cms}/c"), "text/plain", "{}")
            .await
            .0,
        415
    );
    assert_eq!(
        raw(
            &client,
            "PATCH",
            &format!("{cms}/c"),
            "application/apply-patch+yaml",
            "data: {a: b}"
        )
        .await
        .0,
        422,
        "apply needs a fieldManager"
    );
    assert_eq!(
        raw(
            &client,
            "PATCH",
            &format!("{cms}/c"),
            "application/json-patch+json",
            r#"{"op": 5}"#
        )
        .await
        .0,
        400
    );
    assert_eq!(
        raw(
            &client,
            "GET",
            "/apis/nope.io/v1/things",
            "application/json",
            ""
        )
        .await
        .0,
        404
    );
    // Paths deeper than resource/name/subresource are not served.
    let node = r#"{"metadata": {"name": "n1"}}"#;
    let created = raw(&client, "POST", "/api/v1/nodes", "application/json", node).await;
    assert_eq!(created.0, 201);
    let status = raw(
        &client,
        "GET",
        "/api/v1/nodes/n1/status",
        "application/json",
        "",
    )
    .await;
    assert_eq!(status.0, 200);
    let too_deep = "/api/v1/nodes/n1/status/extra";
    assert_eq!(
        raw(&client, "GET", too_deep, "application/json", "")
            .await
            .0,
        404
    );
    assert_eq!(
        raw(
            &client,
            "GET",
            &format!("{cms}?labelSelector=a+b+c"),
            "application/json",
            ""
        )
        .await
        .0,
        400
    );
    assert_eq!(
        raw(
            &client,
            "GET",
            &format!("{cms}?watch=true&resourceVersion=abc"),
            "application/json",
            ""
        )
        .await
        .0,
        400
    );
    // Still serving.
    assert_eq!(
        raw(&client, "GET", &format!("{cms}/c"), "application/json", "")
            .await
            .0,
        200
    );
}
