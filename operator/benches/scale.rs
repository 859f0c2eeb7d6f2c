//! `cargo bench -p buoy-operator --bench scale`: VirtualIPs applied at once to the Kubernetes
//! API test server, the real `buoy-operator run` binary reconciling them, as a new user would
//! try it: an AddressPool admitting their namespace, the VirtualIPs spread over 8 interfaces
//! (router IDs are per interface, 255 each). Two runs, each on a fresh server and operator: N
//! VirtualIPs and 2N (`BUOY_BENCH_VIPS` sets N, default 1,000). For each it reports the time
//! until every VirtualIP is at steady state (VRID allocated, priorities and finalizer written,
//! conditions set, the DaemonSet present), the operator's CPU time, resident memory, API writes
//! and requests, that it goes quiet afterwards, and how long one more VirtualIP then takes to
//! get its router ID; then the ratios of the second run to the first (linear: 2).

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use buoy_crds::VirtualIP;
use buoy_tests::testapi::TestApi;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::{
    AGENT, NODES, NS, cpu_secs, create_all, operator_requests, ratio, rss_kib, sample, scrape,
    start, twice, writes,
};

/// Interfaces (LANs) the VirtualIPs are spread over: 2,000 need at least 8.
const INTERFACES: usize = 8;

fn steady(v: &VirtualIP) -> bool {
    let Some(s) = &v.status else { return false };
    s.virtual_router_id.is_some()
        && s.conditions.len() == 3
        && v.annotations().contains_key("buoy.io/priorities")
        && v.finalizers().iter().any(|f| f == "buoy.io/release")
}

/// The `i`th VirtualIP: a unique address, on interface `eth{i % 8}`.
fn virtualip(i: usize) -> Result<VirtualIP> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "buoy.io/v1alpha1", "kind": "VirtualIP",
        "metadata": {"name": format!("vip-{i}")},
        "spec": {"addresses": [format!("10.{}.{}.{}", i / 250 % 250, i % 250, 1)],
                 "interface": format!("eth{}", i % INTERFACES)}}))?)
}

/// What a watch on the VirtualIPs saw: which are steady, and when the last change came. Kept
/// from the watch's events (not by listing every VirtualIP again and again, which would cost
/// the test server more the longer a run takes, and tell the time only to the listing period).
struct Seen {
    state: Arc<Mutex<SeenState>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct SeenState {
    steady: HashMap<String, bool>,
    count: usize,
    last: Option<Instant>,
}

impl SeenState {
    fn update(&mut self, name: &str, steady: Option<bool>) {
        let was = match steady {
            Some(now) => self.steady.insert(name.to_string(), now),
            None => self.steady.remove(name),
        };
        if was == Some(true) {
            self.count -= 1;
        }
        if steady == Some(true) {
            self.count += 1;
        }
        self.last = Some(Instant::now());
    }
}

impl Seen {
    /// Watches `vips` from now on (returns once the watch has its initial list).
    async fn watch(vips: Api<VirtualIP>) -> Result<Seen> {
        let state = Arc::new(Mutex::new(SeenState::default()));
        let (ready, is_ready) = tokio::sync::oneshot::channel();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready);
            let mut events =
                std::pin::pin!(watcher(vips, watcher::Config::default()).default_backoff());
            while let Some(ev) = events.next().await {
                let mut s = shared.lock().unwrap();
                match ev {
                    Ok(watcher::Event::Apply(v) | watcher::Event::InitApply(v)) => {
                        s.update(&v.name_any(), Some(steady(&v)));
                    }
                    Ok(watcher::Event::Delete(v)) => s.update(&v.name_any(), None),
                    Ok(watcher::Event::InitDone) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(watcher::Event::Init) | Err(_) => {}
                }
            }
        });
        is_ready
            .await
            .context("the bench's watch ended before its initial list")?;
        Ok(Seen { state, task })
    }

    /// How many are steady, and when the last change came.
    fn now(&self) -> (usize, Option<Instant>) {
        let s = self.state.lock().unwrap();
        (s.count, s.last)
    }
}

impl Drop for Seen {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What one run measured.
struct Figures {
    n: usize,
    created: Duration,
    steady: Duration,
    idle_rss_kib: u64,
    rss_kib: u64,
    peak_kib: u64,
    writes: u64,
    /// The operator's requests to the API server (the server's count, less this bench's).
    requests: u64,
    passes: f64,
    pass_secs: f64,
    operator_cpu: f64,
    server_cpu: f64,
    writes_after: u64,
    duplicates: usize,
    get_ms: f64,
    patch_ms: f64,
    one_more: Duration,
}

async fn bench(n: usize) -> Result<Figures> {
    let api = TestApi::start().await?;
    let client: Client = api.client_as(AGENT)?;
    let (op, metrics) = start(&api, &client).await?;
    let (idle_rss, _) = rss_kib(op.pid());
    let (cpu_before, server_cpu_before) = (cpu_secs(&op.pid().to_string()), cpu_secs("self"));
    let requests_before = operator_requests(&api);

    let vips: Api<VirtualIP> = Api::namespaced(client.clone(), NS);
    let seen = Seen::watch(vips.clone()).await?;
    let objects = (0..n).map(virtualip).collect::<Result<Vec<_>>>()?;
    let start = Instant::now();
    create_all(&vips, objects, "VirtualIP").await?;
    let applied = start.elapsed();

    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), NS);
    let deadline = start + Duration::from_secs(300);
    let mut peak = 0;
    let done = loop {
        peak = peak.max(rss_kib(op.pid()).0);
        let (count, last) = seen.now();
        if count == n && !dss.list(&ListParams::default()).await?.items.is_empty() {
            // Steady means quiet too: no write for a second (priorities settle as the last
            // VirtualIPs arrive). The figure is when the last change came.
            let w = writes(&metrics).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            if writes(&metrics).await == w && seen.now() == (count, last) {
                break last.map_or(Duration::ZERO, |l| l.saturating_duration_since(start));
            }
            continue;
        }
        if Instant::now() > deadline {
            let list = vips.list(&ListParams::default()).await?;
            for v in list.items.iter().filter(|v| !steady(v)).take(2) {
                eprintln!(
                    "not steady: {}",
                    serde_json::to_string(v).unwrap_or_default()
                );
            }
            for l in op
                .output()
                .iter()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .take(10)
            {
                eprintln!("operator: {l}");
            }
            bail!("only {count} of {n} VirtualIPs reached steady state in 300 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let list = vips.list(&ListParams::default()).await?;
    let (rss, hwm) = rss_kib(op.pid());
    let operator_cpu = cpu_secs(&op.pid().to_string()) - cpu_before;
    let server_cpu = cpu_secs("self") - server_cpu_before;
    let requests = operator_requests(&api) - requests_before;
    let text = scrape(&metrics).await;
    let passes = sample(&text, "buoy_operator_reconciles_total");
    let pass_secs = sample(&text, "buoy_operator_reconcile_duration_seconds_sum");

    // Quiet afterwards: no more writes once steady.
    let before = writes(&metrics).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes_after = writes(&metrics).await - before;

    // One more VirtualIP on a busy interface: how long until it has its router ID.
    let extra = virtualip(n)?;
    let name = extra.name_any();
    let t = Instant::now();
    vips.create(&PostParams::default(), &extra).await?;
    let has_vrid = |v: Option<&VirtualIP>| {
        v.and_then(|v| v.status.as_ref())
            .is_some_and(|s| s.virtual_router_id.is_some())
    };
    tokio::time::timeout(
        Duration::from_secs(30),
        kube::runtime::wait::await_condition(vips.clone(), &name, has_vrid),
    )
    .await
    .context("one more VirtualIP got no router ID in 30 s")??;
    let one_more = t.elapsed();

    // The test server's round trips, for reading the figures above.
    let t = Instant::now();
    for _ in 0..20 {
        vips.get("vip-0").await?;
    }
    let get_ms = t.elapsed().as_secs_f64() * 1000.0 / 20.0;
    let t = Instant::now();
    for i in 0..20 {
        vips.patch(
            "vip-0",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {"probe": i.to_string()}}})),
        )
        .await?;
    }
    let patch_ms = t.elapsed().as_secs_f64() * 1000.0 / 20.0;

    let mut pairs = HashSet::new();
    let mut duplicates = 0;
    for v in &list.items {
        let key = (
            v.spec.interface.clone(),
            v.status.as_ref().and_then(|s| s.virtual_router_id),
        );
        if !pairs.insert(key) {
            duplicates += 1;
        }
    }
    Ok(Figures {
        n,
        created: applied,
        steady: done,
        idle_rss_kib: idle_rss,
        rss_kib: rss,
        peak_kib: hwm.max(peak),
        writes: before,
        requests,
        passes,
        pass_secs,
        operator_cpu,
        server_cpu,
        writes_after,
        duplicates,
        get_ms,
        patch_ms,
        one_more,
    })
}

fn print(f: &Figures) {
    println!(
        "buoy-operator scale bench: {} VirtualIPs on {NODES} nodes, {INTERFACES} interfaces",
        f.n
    );
    println!(
        "  created (64 concurrent clients)   {:>8.2} s",
        f.created.as_secs_f64()
    );
    println!(
        "  steady state after                {:>8.2} s",
        f.steady.as_secs_f64()
    );
    println!(
        "  operator RSS idle / steady / peak {:>5} / {} / {} MiB",
        f.idle_rss_kib / 1024,
        f.rss_kib / 1024,
        f.peak_kib / 1024
    );
    println!("  API writes to steady state        {:>8}", f.writes);
    println!("  API requests to steady state      {:>8}", f.requests);
    println!(
        "  reconcile passes / mean duration  {:>8} / {:.3} s",
        f.passes,
        f.pass_secs / f.passes.max(1.0)
    );
    println!(
        "  CPU: operator / API test server   {:>8.2} / {:.2} s",
        f.operator_cpu, f.server_cpu
    );
    println!("  API writes in the 3 s after       {:>8}", f.writes_after);
    println!("  duplicate (interface, VRID) pairs {:>8}", f.duplicates);
    println!(
        "  one more VirtualIP's router ID in {:>8.2} s",
        f.one_more.as_secs_f64()
    );
    println!(
        "  test server round trip GET / PATCH {:>7.1} / {:.1} ms (sequential)",
        f.get_ms, f.patch_ms
    );
}

fn main() -> Result<()> {
    let n = std::env::var("BUOY_BENCH_VIPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    if 2 * n + 1 > 255 * INTERFACES {
        bail!(
            "BUOY_BENCH_VIPS={n}: {} VirtualIPs do not fit the router IDs of {INTERFACES} interfaces",
            2 * n + 1
        );
    }
    let (a, b) = twice(n, bench, print)?;
    println!(
        "scaling: {} against {} VirtualIPs (linear: 2.00; target: at most 2.2 for steady state)",
        b.n, a.n
    );
    println!(
        "  steady state                      {:>8.2}",
        ratio(a.steady.as_secs_f64(), b.steady.as_secs_f64())
    );
    println!(
        "  operator CPU                      {:>8.2}",
        ratio(a.operator_cpu, b.operator_cpu)
    );
    println!(
        "  API test server CPU               {:>8.2}",
        ratio(a.server_cpu, b.server_cpu)
    );
    println!(
        "  API writes / requests             {:>8.2} / {:.2}",
        ratio(a.writes as f64, b.writes as f64),
        ratio(a.requests as f64, b.requests as f64)
    );
    println!(
        "  operator RSS at steady state      {:>8.2}",
        ratio(a.rss_kib as f64, b.rss_kib as f64)
    );
    for f in [&a, &b] {
        if f.duplicates > 0 || f.writes_after > 0 {
            bail!(
                "{} VirtualIPs: not at a quiet, consistent steady state",
                f.n
            );
        }
    }
    Ok(())
}
