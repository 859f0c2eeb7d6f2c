//! `cargo bench -p buoy-operator --bench services`: LoadBalancer Services created at once on one
//! LAN, against the Kubernetes API test server and the real `buoy-operator run` binary. Two runs,
//! each on a fresh server and operator: N Services and 2N (`BUOY_BENCH_SERVICES` sets N, default
//! 1,000). For each it reports the time until every Service lists its address in
//! `status.loadBalancer.ingress` (the operator writes it once a node reports the address's
//! VirtualIP as master), the router IDs used (Services' addresses share VRRP groups), and the
//! operator's memory and CPU; then the ratio of the second run to the first (linear: 2).
//!
//! The node agents' part is played by the bench, at the API: for every Service VirtualIP with its
//! router ID and the operator's priorities, the node with the top priority writes its entry of
//! `status.nodes[]` as Master, with server-side apply under its own field manager, as a real
//! agent does (the agents' VRRP is measured by the failover bench and the end-to-end tests).

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use buoy_crds::VirtualIP;
use buoy_tests::testapi::TestApi;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::{
    AGENT, NODES, NS, cpu_secs, create_all, operator_requests, ratio, rss_kib, start, twice, writes,
};

/// The most router IDs the Services may use (the target; 255 exist per LAN).
const ROUTER_IDS: usize = 64;

/// The `i`th Service: type LoadBalancer, Buoy's class, one port.
fn service(i: usize) -> Result<Service> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("svc-{i}"), "namespace": NS},
        "spec": {"type": "LoadBalancer", "loadBalancerClass": "buoy.io/vrrp",
                 "selector": {"app": format!("app-{i}")},
                 "ports": [{"port": 80, "protocol": "TCP"}]}}))?)
}

/// The node with the top priority the operator assigned to `v`, and that priority.
fn top(v: &VirtualIP) -> Option<(String, u8)> {
    let p = buoy_crds::contract::assigned_priorities(v.metadata.annotations.as_ref())?;
    p.into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
}

/// The apply body of `node`'s entry of VirtualIP `name`'s status.
fn entry(name: &str, node: &str, state: &str, priority: u8) -> serde_json::Value {
    json!({
        "apiVersion": "buoy.io/v1alpha1", "kind": "VirtualIP",
        "metadata": {"name": name, "namespace": NS},
        "status": {"nodes": [{
            "node": node, "state": state, "priority": priority,
            "serving": true, "lastTransitionTime": "2026-01-01T00:00:00Z",
            "message": "the bench's stand-in for the node's agent",
        }]},
    })
}

/// The agents' part (see the header): each Service VirtualIP's top node reports Master; when
/// the top node changes (the operator spreads masters again as groups are added), the old one
/// reports Backup, as its agent would after the election.
fn play_agents(client: Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let vips: Api<VirtualIP> = Api::namespaced(client, NS);
        let masters: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let events = watcher(vips.clone(), watcher::Config::default())
            .default_backoff()
            .applied_objects();
        events
            .for_each_concurrent(32, |v| {
                let vips = vips.clone();
                let masters = masters.clone();
                async move {
                    let Ok(v) = v else { return };
                    let has_vrid = v.status.as_ref().and_then(|s| s.virtual_router_id);
                    let (Some(_), Some((node, priority))) = (has_vrid, top(&v)) else {
                        return;
                    };
                    let name = v.name_any();
                    let old = {
                        let mut m = masters.lock().unwrap();
                        match m.insert(name.clone(), node.clone()) {
                            Some(old) if old == node => return,
                            old => old,
                        }
                    };
                    let apply =
                        |node: &str| PatchParams::apply(&format!("buoy-agent/{node}")).force();
                    if let Some(old) = old {
                        let _ = vips
                            .patch_status(
                                &name,
                                &apply(&old),
                                &Patch::Apply(&entry(&name, &old, "Backup", 1)),
                            )
                            .await;
                    }
                    let body = entry(&name, &node, "Master", priority);
                    if vips
                        .patch_status(&name, &apply(&node), &Patch::Apply(&body))
                        .await
                        .is_err()
                    {
                        masters.lock().unwrap().remove(&name);
                    }
                }
            })
            .await;
    })
}

/// How many Services list an address, and when the last one came.
type Announced = Arc<Mutex<(usize, Option<Instant>)>>;

/// Services that list an address, from a watch (not by listing them again and again).
fn announced(services: Api<Service>) -> (Announced, tokio::task::JoinHandle<()>) {
    let state: Announced = Arc::default();
    let shared = state.clone();
    let task = tokio::spawn(async move {
        let mut seen: HashMap<String, bool> = HashMap::new();
        let mut events = std::pin::pin!(
            watcher(services, watcher::Config::default())
                .default_backoff()
                .applied_objects()
        );
        while let Some(s) = events.next().await {
            let Ok(s) = s else { continue };
            let has = s
                .status
                .as_ref()
                .and_then(|st| st.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .is_some_and(|i| !i.is_empty());
            let was = seen.insert(s.name_any(), has).unwrap_or(false);
            if has != was {
                let mut st = shared.lock().unwrap();
                if has {
                    st.0 += 1;
                    st.1 = Some(Instant::now());
                } else {
                    st.0 -= 1;
                }
            }
        }
    });
    (state, task)
}

/// What one run measured.
struct Figures {
    n: usize,
    created: Duration,
    announced: Duration,
    router_ids: usize,
    groups: usize,
    largest_group: usize,
    rss_kib: u64,
    peak_kib: u64,
    operator_cpu: f64,
    writes: u64,
    requests: u64,
}

async fn bench(n: usize) -> Result<Figures> {
    let api = TestApi::start().await?;
    let client: Client = api.client_as(AGENT)?;
    let (op, metrics) = start(&api, &client).await?;
    let cpu_before = cpu_secs(&op.pid().to_string());
    let requests_before = operator_requests(&api);
    let agents = play_agents(client.clone());
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let (seen, watch) = announced(services.clone());

    let objects = (0..n).map(service).collect::<Result<Vec<_>>>()?;
    let t0 = Instant::now();
    create_all(&services, objects, "Service").await?;
    let created = t0.elapsed();
    let deadline = t0 + Duration::from_secs(300);
    let mut peak = 0;
    let announced = loop {
        peak = peak.max(rss_kib(op.pid()).0);
        let (count, last) = *seen.lock().unwrap();
        if count == n {
            break last.map_or(Duration::ZERO, |l| l.saturating_duration_since(t0));
        }
        if Instant::now() > deadline {
            bail!("only {count} of {n} Services got an address and a master in 300 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (rss, hwm) = rss_kib(op.pid());
    let operator_cpu = cpu_secs(&op.pid().to_string()) - cpu_before;
    let requests = operator_requests(&api) - requests_before;
    let writes = writes(&metrics).await;
    agents.abort();
    watch.abort();

    let vips: Api<VirtualIP> = Api::namespaced(client, NS);
    let list = vips.list(&ListParams::default()).await?;
    let router_ids: BTreeSet<u8> = list
        .items
        .iter()
        .filter_map(|v| v.status.as_ref()?.virtual_router_id)
        .collect();
    let mut groups: HashMap<String, usize> = HashMap::new();
    for v in &list.items {
        if let Some(g) = buoy_crds::contract::group_of(&v.metadata) {
            *groups.entry(g.to_string()).or_default() += 1;
        }
    }
    Ok(Figures {
        n,
        created,
        announced,
        router_ids: router_ids.len(),
        groups: groups.len(),
        largest_group: groups.values().copied().max().unwrap_or(0),
        rss_kib: rss,
        peak_kib: hwm.max(peak),
        operator_cpu,
        writes,
        requests,
    })
}

fn print(f: &Figures) {
    println!(
        "buoy-operator Services bench: {} LoadBalancer Services on one LAN, {NODES} nodes",
        f.n
    );
    println!(
        "  created (64 concurrent clients)      {:>8.2} s",
        f.created.as_secs_f64()
    );
    println!(
        "  every one announced after            {:>8.2} s (target at 1,000: under 20 s)",
        f.announced.as_secs_f64()
    );
    println!(
        "  router IDs used                      {:>8} (target at 1,000: at most {ROUTER_IDS}; {} groups, at most {} addresses each)",
        f.router_ids, f.groups, f.largest_group
    );
    println!(
        "  operator RSS at the end / peak       {:>5} / {} MiB (target at 1,000: under 150 MB)",
        f.rss_kib / 1024,
        f.peak_kib / 1024
    );
    println!(
        "  operator CPU                         {:>8.2} s",
        f.operator_cpu
    );
    println!(
        "  operator API writes / requests       {:>8} / {}",
        f.writes, f.requests
    );
}

fn main() -> Result<()> {
    let n = std::env::var("BUOY_BENCH_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let (a, b) = twice(n, bench, print)?;
    println!(
        "scaling: {} against {} Services (linear: 2.00; target: at most 2.2)",
        b.n, a.n
    );
    println!(
        "  every one announced                  {:>8.2}",
        ratio(a.announced.as_secs_f64(), b.announced.as_secs_f64())
    );
    println!(
        "  operator CPU                         {:>8.2}",
        ratio(a.operator_cpu, b.operator_cpu)
    );
    println!(
        "  operator RSS                         {:>8.2}",
        ratio(a.rss_kib as f64, b.rss_kib as f64)
    );
    for f in [&a, &b] {
        if f.router_ids > ROUTER_IDS * f.n.div_ceil(1000) {
            bail!("{} Services used {} router IDs", f.n, f.router_ids);
        }
    }
    Ok(())
}
