//! CPU cost of 1,000 VRRP instances at 100 ms adverts (10,000 adverts/s each way), Buoy against
//! keepalived on the same namespaced LAN: one host holds every master, the other every backup.
//! 4 interfaces × 250 VRIDs, since a VRID is unique per interface.
//!
//!     cargo bench -p buoy-agent --bench vrrp_cpu [-- --seconds N]
//!
//! A command, not a test: it prints CPU percentages of one core.

#![allow(clippy::unwrap_used)]

use std::{
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use buoy_agent::vrrp::{
    host::Host,
    instance::{Controls, InstanceConfig, Stop, run_on},
};
use buoy_tests::{
    keepalived,
    netlab::{Lab, in_netns},
};

const LINKS: usize = 4;
const PER_LINK: u8 = 250;

fn thread_cpu() -> Duration {
    // SAFETY: clock_gettime with a valid clock id and a live timespec.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the ")".
    let ticks = f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0);
    // SAFETY: sysconf is always safe to call.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

fn configs(priority: u8) -> Vec<InstanceConfig> {
    (0..LINKS)
        .flat_map(|k| {
            (1..=PER_LINK).map(move |vrid| InstanceConfig {
                interface: Some(format!("eth{k}")),
                vrid,
                priority,
                addresses: vec![(format!("10.200.{k}.{vrid}").parse().unwrap(), 32)],
                advert_interval: Duration::from_millis(100),
                // Like for like with keepalived, which sends one advert per interval.
                adverts_per_interval: 1,
                ..Default::default()
            })
        })
        .collect()
}

/// Runs 1,000 Buoy instances in `ns` on one thread; returns the CPU share of that thread over
/// `measure` after `settle`.
fn buoy_side(
    ns: &str,
    priority: u8,
    settle: Duration,
    measure: Duration,
) -> thread::JoinHandle<f64> {
    in_netns(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let host = Host::new().unwrap();
            let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut stops = Vec::new();
            for config in configs(priority) {
                let (stop, shutdown) = tokio::sync::watch::channel(None);
                let (_up, data_path) =
                    tokio::sync::watch::channel(buoy_agent::vrrp::instance::DataPath::SERVING);
                let (events, mut rx) = tokio::sync::mpsc::unbounded_channel();
                tokio::spawn(async move { while rx.recv().await.is_some() {} });
                let controls = Controls {
                    shutdown,
                    data_path,
                    events,
                    stats: Arc::new(Mutex::new(Default::default())),
                    handover: None,
                    successor: false,
                    peers: None,
                    addresses: None,
                };
                let host = host.clone();
                let failed = failed.clone();
                tokio::spawn(async move {
                    let _keep = _up;
                    if let Err(e) = run_on(&host, config, controls).await {
                        eprintln!("instance failed: {e}");
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                });
                stops.push(stop);
            }
            tokio::time::sleep(settle).await;
            let t0 = thread_cpu();
            tokio::time::sleep(measure).await;
            let used = thread_cpu() - t0;
            let failed = failed.load(std::sync::atomic::Ordering::Relaxed);
            assert_eq!(
                failed, 0,
                "{failed} instances failed; the figures would be meaningless"
            );
            for s in &stops {
                let _ = s.send(Some(Stop::Now));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            100.0 * used.as_secs_f64() / measure.as_secs_f64()
        })
    })
    .unwrap()
}

fn keepalived_conf(priority: u8) -> String {
    let instances: Vec<keepalived::Instance> = (0..LINKS)
        .flat_map(|k| {
            (1..=PER_LINK).map(move |vrid| keepalived::Instance {
                interface: format!("eth{k}"),
                vrid,
                priority,
                advert_int: 0.1,
                addresses: vec![format!("10.200.{k}.{vrid}/32")],
                password: None,
                unicast: None,
            })
        })
        .collect();
    keepalived::config(3, &instances)
}

fn main() {
    let seconds: u64 = buoy_tests::bench_flag("--seconds", 10);
    let settle_s: u64 = buoy_tests::bench_flag("--settle", 8);
    let (settle, measure) = (Duration::from_secs(settle_s), Duration::from_secs(seconds));

    let buoy = {
        let lab = Lab::with_links(&["a", "b"], LINKS).unwrap();
        let master = buoy_side(&lab.host("a").ns, 150, settle, measure);
        let backup = buoy_side(&lab.host("b").ns, 100, settle, measure);
        thread::sleep(settle);
        let held = lab.holders("10.200.3.250".parse().unwrap());
        let r = (master.join().unwrap(), backup.join().unwrap());
        println!("(Buoy: 10.200.3.250 held by {held:?} during the run)");
        r
    };

    let keepalived = {
        let mut lab = Lab::with_links(&["a", "b"], LINKS).unwrap();
        let mut pids = Vec::new();
        for (host, priority) in [("a", 150u8), ("b", 100)] {
            let (_, vrrp_pid) =
                keepalived::start(&mut lab, host, &keepalived_conf(priority), false).unwrap();
            pids.push(vrrp_pid);
        }
        thread::sleep(settle);
        let pids: Vec<u32> = pids
            .iter()
            .map(|p| {
                std::fs::read_to_string(p)
                    .unwrap_or_default()
                    .trim()
                    .parse()
                    .unwrap_or(0)
            })
            .collect();
        let before: Vec<Duration> = pids.iter().map(|p| process_cpu(*p)).collect();
        thread::sleep(measure);
        let used: Vec<f64> = pids
            .iter()
            .zip(before)
            .map(|(p, b)| 100.0 * (process_cpu(*p) - b).as_secs_f64() / measure.as_secs_f64())
            .collect();
        let held = lab.holders("10.200.3.250".parse().unwrap());
        println!("(keepalived: 10.200.3.250 held by {held:?} during the run)");
        (used[0], used[1])
    };

    println!("CPU for 1,000 VRRP instances at 100 ms adverts (% of one core, {seconds} s)");
    println!("| side | keepalived | Buoy | Buoy / keepalived |");
    println!("|---|---|---|---|");
    for (side, k, b) in [
        ("master (sends 10,000 adverts/s)", keepalived.0, buoy.0),
        ("backup (receives 10,000 adverts/s)", keepalived.1, buoy.1),
    ] {
        println!(
            "| {side} | {k:.1}% | {b:.1}% | {:.2}× |",
            if k > 0.0 { b / k } else { f64::NAN }
        );
    }
}
