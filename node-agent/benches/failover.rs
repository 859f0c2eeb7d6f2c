//! Failover benchmark: the client-visible outage when the master's link is cut and when the
//! master is stopped gracefully, Buoy against keepalived on the same namespaced LAN with the same
//! settings (VRRPv3, multicast, priorities 150/100), a TCP probe every 10 ms from a client.
//!
//!     cargo bench -p buoy-agent --bench failover [-- --runs N] [--timeline PATH]
//!
//! Prints medians over N runs (default 5) at 1 s and 100 ms adverts, and the ratios to keepalived.
//! `--timeline PATH` also writes, as CSV, the probe samples of the median run of each
//! implementation for a link cut at 100 ms adverts, timed from the cut (for the plot in
//! `docs/benchmarks.md`).
//! A command, not a test: it asserts nothing and measures wall-clock time.

#![allow(clippy::unwrap_used)]

use std::{
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
    thread,
    time::{Duration, Instant},
};

use buoy_tests::{
    keepalived,
    netlab::Lab,
    probe::{Probe, Responder, report},
};

const AGENT: &str = env!("CARGO_BIN_EXE_buoy-agent");
const PORT: u16 = 8080;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Impl {
    Buoy,
    Keepalived,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    LinkCut,
    GracefulStop,
}

fn start(lab: &mut Lab, implementation: Impl, host: &str, priority: u8, interval_ms: u64) -> usize {
    match implementation {
        Impl::Buoy => {
            let (p, i) = (priority.to_string(), format!("{interval_ms}ms"));
            lab.spawn(
                host,
                AGENT,
                &[
                    "vrrp",
                    "--interface",
                    "eth0",
                    "--vrid",
                    "10",
                    "--priority",
                    &p,
                    "--address",
                    "10.77.0.100/24",
                    "--advert-interval",
                    &i,
                ],
            )
            .unwrap()
        }
        Impl::Keepalived => {
            let instance = keepalived::Instance {
                interface: "eth0".into(),
                vrid: 10,
                priority,
                advert_int: interval_ms as f64 / 1000.0,
                addresses: vec!["10.77.0.100/24".into()],
                password: None,
                unicast: None,
            };
            keepalived::start(lab, host, &keepalived::config(3, &[instance]), true)
                .unwrap()
                .0
        }
    }
}

fn wait_holder(lab: &Lab, host: &str, within: Duration) -> bool {
    lab.wait_sole_holder("10.77.0.100".parse().unwrap(), host, within)
}

/// One run's result.
struct Outcome {
    longest_outage: Duration,
    failed: usize,
    /// Every probe: ms since the fault (negative: before it), and who answered.
    samples: Vec<(f64, Option<String>)>,
}

/// One run; None if no master came up or the VIP did not move.
fn run(implementation: Impl, fault: Fault, interval_ms: u64) -> Option<Outcome> {
    let mut lab = Lab::new(&["n1", "n2", "client"]).unwrap();
    let _r: Vec<Responder> = ["n1", "n2"]
        .iter()
        .map(|h| Responder::start(&lab.host(h).ns, PORT, h).unwrap())
        .collect();
    let n1 = start(&mut lab, implementation, "n1", 150, interval_ms);
    let _n2 = start(&mut lab, implementation, "n2", 100, interval_ms);
    let settle = Duration::from_millis(interval_ms * 6 + 2000);
    if !wait_holder(&lab, "n1", settle) {
        eprintln!("{implementation:?}: no master\n{}", lab.logs());
        return None;
    }
    thread::sleep(Duration::from_millis(interval_ms * 2));
    let vip: IpAddr = "10.77.0.100".parse().unwrap();
    let probe = Probe::start(
        &lab.host("client").ns,
        SocketAddr::new(vip, PORT),
        Duration::from_millis(10),
        Duration::from_secs(30),
    )
    .unwrap();
    thread::sleep(Duration::from_millis(500));
    let fault_at = Instant::now();
    match fault {
        Fault::LinkCut => lab.cut("n1").unwrap(),
        Fault::GracefulStop => lab.proc(n1).signal(libc::SIGTERM),
    }
    let moved = wait_holder(&lab, "n2", settle);
    thread::sleep(Duration::from_millis(1000));
    let offset = fault_at.duration_since(probe.started()).as_secs_f64() * 1000.0;
    let samples = probe.finish();
    let r = report(&samples);
    moved.then(|| Outcome {
        longest_outage: r.longest_outage,
        failed: r.failed,
        samples: samples
            .into_iter()
            .map(|s| (s.at.as_secs_f64() * 1000.0 - offset, s.served_by))
            .collect(),
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn main() {
    let runs: usize = buoy_tests::bench_flag("--runs", 5);
    let timeline: String = buoy_tests::bench_flag("--timeline", String::new());
    let mut csv = String::from("implementation,ms_since_cut,served_by\n");
    println!(
        "Failover: client-visible outage (TCP probe every 10 ms), median of {runs} runs, VRRPv3 multicast, priorities 150/100"
    );
    println!(
        "| advert interval | fault | keepalived | Buoy | Buoy / keepalived | failed probes (keepalived, Buoy) |"
    );
    println!("|---|---|---|---|---|---|");
    for interval_ms in [1000u64, 100] {
        for fault in [Fault::LinkCut, Fault::GracefulStop] {
            let mut medians = Vec::new();
            let mut failed = Vec::new();
            for implementation in [Impl::Keepalived, Impl::Buoy] {
                let mut results: Vec<Outcome> = (0..runs)
                    .filter_map(|_| run(implementation, fault, interval_ms))
                    .collect();
                medians.push(median(results.iter().map(|r| r.longest_outage).collect()));
                let mut f: Vec<usize> = results.iter().map(|r| r.failed).collect();
                f.sort();
                failed.push(f.get(f.len() / 2).copied().unwrap_or(0));
                // The run whose outage is the median one (as `median` picks it) stands for all.
                if interval_ms == 100 && fault == Fault::LinkCut {
                    results.sort_by_key(|r| r.longest_outage);
                    if let Some(r) = results.get(results.len() / 2) {
                        for (ms, by) in &r.samples {
                            let by = by.as_deref().unwrap_or("");
                            let _ = writeln!(csv, "{implementation:?},{ms:.1},{by}");
                        }
                    }
                }
            }
            let ratio = if medians[0].is_zero() {
                "n/a (keepalived lost nothing)".to_string()
            } else {
                format!(
                    "{:.2}×",
                    medians[1].as_secs_f64() / medians[0].as_secs_f64()
                )
            };
            println!(
                "| {interval_ms} ms | {fault:?} | {:.0} ms | {:.0} ms | {ratio} | {}, {} |",
                medians[0].as_secs_f64() * 1000.0,
                medians[1].as_secs_f64() * 1000.0,
                failed[0],
                failed[1]
            );
        }
    }
    if !timeline.is_empty()
        && let Err(e) = std::fs::write(&timeline, csv)
    {
        eprintln!("--timeline {timeline}: {e}");
        std::process::exit(1);
    }
}
