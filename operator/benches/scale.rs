//! `cargo bench -p buoy-operator --bench scale`: 1,000 VirtualIPs applied at once to the
//! Kubernetes API test server, the real `buoy-operator run` binary reconciling them. Reports the
//! time until every VirtualIP is at steady state (VRID allocated, priorities and finalizer
//! written, conditions set, the DaemonSet present), the operator's resident memory, and that it
//! goes quiet afterwards. `BUOY_BENCH_VIPS` changes the count.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use buoy_crds::VirtualIP;
use buoy_tests::process::Proc;
use buoy_tests::testapi::TestApi;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NS: &str = "buoy-system";

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds (user + system) of process `pid` ("self" for this one).
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command (which may hold spaces) come state, ppid, …: utime and stime are
    // fields 14 and 15 of proc(5), the 12th and 13th after the command.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    (field(11) + field(12)) as f64 / 100.0
}

async fn scrape(metrics: &str) -> String {
    let Ok(mut s) = tokio::net::TcpStream::connect(metrics).await else {
        return String::new();
    };
    let _ = s
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out
}

/// The sum of the samples of `metric` (all label sets).
fn sample(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(metric))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn writes(metrics: &str) -> u64 {
    sample(&scrape(metrics).await, "buoy_operator_writes_total") as u64
}

fn steady(v: &VirtualIP) -> bool {
    let Some(s) = &v.status else { return false };
    s.virtual_router_id.is_some()
        && s.conditions.len() == 3
        && v.annotations().contains_key("buoy.io/priorities")
        && v.finalizers().iter().any(|f| f == "buoy.io/release")
}

async fn bench(n: usize) -> Result<()> {
    let api = TestApi::start().await?;
    api.install_buoy_crds()?;
    let client: Client = api.client()?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}}))?,
        )
        .await?;
    let nodes: Api<Node> = Api::all(client.clone());
    for i in 1..=5 {
        nodes
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": format!("node-{i}")}}))?,
            )
            .await?;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let metrics = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_buoy-operator"));
    cmd.args([
        "run",
        "--namespace",
        NS,
        "--leader-election",
        "false",
        "--metrics-address",
        &metrics,
    ])
    .env("KUBECONFIG", api.kubeconfig_path())
    .env("RUST_LOG", "warn,buoy_operator=info");
    let op = Proc::spawn("buoy-operator", cmd)?;
    if op
        .wait_for_line("caches synced", Duration::from_secs(30))
        .is_none()
    {
        bail!("the operator did not start: {:?}", op.output());
    }
    let (idle_rss, _) = rss_kib(op.pid());

    // 1,000 VirtualIPs at once: four interfaces (LANs) of 250, so that VRIDs suffice.
    let vips: Api<VirtualIP> = Api::namespaced(client.clone(), NS);
    let start = Instant::now();
    let created: Vec<Result<VirtualIP, kube::Error>> = futures::stream::iter(0..n)
        .map(|i| {
            let vips = vips.clone();
            async move {
                let v: VirtualIP = serde_json::from_value(json!({
                    "apiVersion": "buoy.io/v1alpha1", "kind": "VirtualIP",
                    "metadata": {"name": format!("vip-{i}")},
                    "spec": {"addresses": [format!("10.{}.{}.{}", i / 250 % 250, i % 250, 1)],
                             "interface": format!("eth{}", i % 4)}}))
                .map_err(kube::Error::SerdeError)?;
                vips.create(&PostParams::default(), &v).await
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    for r in created {
        r.context("creating a VirtualIP")?;
    }
    let applied = start.elapsed();

    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), NS);
    let deadline = start + Duration::from_secs(120);
    let mut peak = 0;
    let (done, list) = loop {
        peak = peak.max(rss_kib(op.pid()).0);
        let list = vips.list(&ListParams::default()).await?;
        let done = list.items.iter().filter(|v| steady(v)).count();
        if done == n && dss.get("buoy-agent-ad1269f96e").await.is_ok() {
            // Steady means quiet too: no write for a second (priorities settle as the last
            // VirtualIPs arrive).
            let at = start.elapsed();
            let w = writes(&metrics).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            if writes(&metrics).await == w {
                break (at, list);
            }
            continue;
        }
        if Instant::now() > deadline {
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
            bail!("only {done} of {n} VirtualIPs reached steady state in 120 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (rss, hwm) = rss_kib(op.pid());
    let op_cpu = cpu_secs(&op.pid().to_string());
    let server_cpu = cpu_secs("self");
    let text = scrape(&metrics).await;
    let passes = sample(&text, "buoy_operator_reconciles_total");
    let pass_secs = sample(&text, "buoy_operator_reconcile_duration_seconds_sum");

    // Quiet afterwards: no more writes once steady.
    let before = writes(&metrics).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = writes(&metrics).await;

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

    let mut seen = HashSet::new();
    let mut duplicates = 0;
    for v in &list.items {
        let key = (
            v.spec.interface.clone(),
            v.status.as_ref().and_then(|s| s.virtual_router_id),
        );
        if !seen.insert(key) {
            duplicates += 1;
        }
    }
    println!("buoy-operator scale bench: {n} VirtualIPs on 5 nodes, 4 interfaces");
    println!(
        "  created (64 concurrent clients)   {:>8.2} s",
        applied.as_secs_f64()
    );
    println!(
        "  steady state after                {:>8.2} s",
        done.as_secs_f64()
    );
    println!(
        "  operator RSS idle / steady / peak {:>5} / {} / {} MiB",
        idle_rss / 1024,
        rss / 1024,
        hwm.max(peak) / 1024
    );
    println!("  API writes to steady state        {before:>8}");
    println!(
        "  reconcile passes / mean duration  {passes:>8} / {:.3} s",
        pass_secs / passes.max(1.0)
    );
    println!("  CPU: operator / API test server   {op_cpu:>8.2} / {server_cpu:.2} s");
    println!("  API writes in the 3 s after       {:>8}", after - before);
    println!("  duplicate (interface, VRID) pairs {duplicates:>8}");
    println!("  test server round trip GET / PATCH {get_ms:>7.1} / {patch_ms:.1} ms (sequential)");
    if duplicates > 0 || after > before {
        bail!("not at a quiet, consistent steady state");
    }
    Ok(())
}

fn main() -> Result<()> {
    let n = std::env::var("BUOY_BENCH_VIPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(n))
}
