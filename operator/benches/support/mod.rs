//! What the operator's benches share: the test server set up as a new user would (the
//! namespace, five Nodes, an AddressPool admitting the namespace), the real `buoy-operator run`
//! started against it, the objects created at once, the two runs (N and 2N) and their ratios, and
//! the readings of its process and metrics.

#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use buoy_tests::process::Proc;
use buoy_tests::testapi::TestApi;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) const NS: &str = "buoy-system";
pub(crate) const NODES: usize = 5;
/// The user agent of this bench's own requests, told apart from the operator's.
pub(crate) const AGENT: &str = "buoy-scale-bench";

pub(crate) fn rss_kib(pid: u32) -> (u64, u64) {
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
pub(crate) fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command (which may hold spaces) come state, ppid, …: utime and stime are
    // fields 14 and 15 of proc(5), the 12th and 13th after the command.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    (field(11) + field(12)) as f64 / 100.0
}

pub(crate) async fn scrape(metrics: &str) -> String {
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
pub(crate) fn sample(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(metric))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub(crate) async fn writes(metrics: &str) -> u64 {
    sample(&scrape(metrics).await, "buoy_operator_writes_total") as u64
}

/// The server's requests that are not this bench's.
pub(crate) fn operator_requests(api: &TestApi) -> u64 {
    api.requests()
        .iter()
        .filter(|(agent, _)| *agent != AGENT)
        .map(|(_, n)| n)
        .sum()
}

pub(crate) async fn setup(client: &Client) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}}))?,
        )
        .await?;
    let nodes: Api<Node> = Api::all(client.clone());
    for i in 1..=NODES {
        nodes
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": format!("node-{i}")}}))?,
            )
            .await?;
    }
    // As a new user would: a pool that admits the namespace and its addresses (the operator
    // enforces AddressPools by default).
    let pools: Api<buoy_crds::AddressPool> = Api::all(client.clone());
    pools
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "buoy.io/v1alpha1", "kind": "AddressPool",
                "metadata": {"name": "bench"},
                "spec": {"addresses": ["10.0.0.0/8"], "namespaces": [NS]}}))?,
        )
        .await?;
    Ok(())
}

/// A fresh set-up on `api` (see [`setup`]) and the real operator running against it, with its
/// metrics address, once its caches are synced.
pub(crate) async fn start(api: &TestApi, client: &Client) -> Result<(Proc, String)> {
    api.install_buoy_crds()?;
    setup(client).await?;
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
    Ok((op, metrics))
}

/// Creates `objects` with 64 concurrent clients, as a burst of `kubectl apply` would; the first
/// failure, saying what was being created.
pub(crate) async fn create_all<K>(api: &Api<K>, objects: Vec<K>, what: &str) -> Result<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    let created: Vec<Result<K, kube::Error>> = futures::stream::iter(objects)
        .map(|o| async move { api.create(&PostParams::default(), &o).await })
        .buffer_unordered(64)
        .collect()
        .await;
    for r in created {
        r.with_context(|| format!("creating a {what}"))?;
    }
    Ok(())
}

/// Runs `bench` with `n` and with `2n`, each on a fresh server and operator, printing each run's
/// figures as it ends.
pub(crate) fn twice<F, Fut>(
    n: usize,
    bench: impl Fn(usize) -> Fut,
    print: impl Fn(&F),
) -> Result<(F, F)>
where
    Fut: std::future::Future<Output = Result<F>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let a = rt.block_on(bench(n))?;
    print(&a);
    let b = rt.block_on(bench(2 * n))?;
    print(&b);
    Ok((a, b))
}

/// `y / x`, the second run's figure against the first's (NaN without a first).
pub(crate) fn ratio(x: f64, y: f64) -> f64 {
    if x > 0.0 { y / x } else { f64::NAN }
}
