//! The whole product as a user runs it (`buoy_tests::system`): install, serve and delete; the
//! master node lost and back; a rolling restart. Needs root (CI runs it as root).
#![allow(clippy::unwrap_used)]

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use buoy_tests::system::{NODES, VIP, condition, installed, served_by};
use serde_json::Value;

#[test]
fn install_serve_and_delete_with_the_operator_and_three_agents() {
    let (s, _) = installed();
    let vip: IpAddr = VIP.parse().unwrap();
    // Delete: the VIP leaves every node, the finalizer is released, the DaemonSet goes.
    s.kubectl(
        &[
            "delete",
            "virtualip",
            "web",
            "-n",
            "default",
            "--wait=false",
        ],
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let gone = s
            .kubectl(&["get", "virtualips", "-n", "default", "-o", "name"], None)
            .trim()
            .is_empty();
        let daemonsets = s.json(&["get", "daemonsets", "-n", "buoy-system"]);
        let no_ds = daemonsets["items"].as_array().is_none_or(|i| i.is_empty());
        if gone && no_ds && s.lab.holders(vip).is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "deletion incomplete (vip gone {gone}, daemonset gone {no_ds}, holders {:?})\n{}",
            s.lab.holders(vip),
            s.lab.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_master_node_lost_then_back_with_the_operator_and_three_agents() {
    let (s, master) = installed();
    let vip: IpAddr = VIP.parse().unwrap();
    let probe = buoy_tests::probe::Probe::start_http(
        &s.lab.host("client").ns,
        SocketAddr::new(vip, 80),
        Duration::from_millis(10),
        Duration::from_secs(30),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let cut_at = probe.started().elapsed();
    let successor = s.cut_and_wait_successor(&master);
    // Probe on until answered again (bounded), then a little longer.
    let deadline = Instant::now() + Duration::from_secs(5);
    while served_by(&s.lab).is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let samples = probe.finish();
    let back = samples
        .iter()
        .find(|x| x.at > cut_at && x.served_by.is_some())
        .map(|x| x.at - cut_at)
        .unwrap_or_else(|| {
            let after: Vec<_> = samples
                .iter()
                .filter(|x| x.at > cut_at)
                .map(|x| (x.at.as_millis(), x.served_by.clone()))
                .collect();
            panic!(
                "not served again after the cut at {cut_at:?}: {after:?}\nholders {:?}\n{}",
                s.lab.holders(vip),
                s.lab.logs()
            )
        });
    // 3 × 100 ms + skew (at most (256 − 1) / 256 × 100 ms) + 100 ms.
    let bound = Duration::from_millis(300 + 100 + 100);
    eprintln!("master {master} cut: served by {successor} again after {back:?} (bound {bound:?})");
    assert!(back <= bound, "outage {back:?} > {bound:?}");
    // The successor reports Master (the cut node cannot reach the API to update its entry).
    s.wait_status("status not updated", Duration::from_secs(10), |st| {
        let state = st["nodes"]
            .as_array()
            .and_then(|n| n.iter().find(|e| e["node"] == successor.as_str()).cloned())
            .map(|e| e["state"].clone());
        state == Some(Value::from("Master"))
    });

    // The node returns: it has the highest priority, takes the VIP back; one holder.
    s.lab.restore(&master).unwrap();
    assert!(
        s.lab
            .wait_sole_holder(vip, &master, Duration::from_secs(10)),
        "{}",
        s.lab.logs()
    );
    s.wait_status("status not back", Duration::from_secs(10), |st| {
        st["master"] == master.as_str() && condition(st, "Ready").as_deref() == Some("True")
    });
}

#[test]
fn a_rolling_restart_of_every_agent_fails_no_request() {
    let (mut s, _) = installed();
    let vip: IpAddr = VIP.parse().unwrap();
    let probe = buoy_tests::probe::Probe::start_http(
        &s.lab.host("client").ns,
        SocketAddr::new(vip, 80),
        Duration::from_millis(10),
        Duration::from_secs(60),
    )
    .unwrap();
    // As a DaemonSet rolling update with maxUnavailable 1 does: one node at a time, SIGTERM
    // first, the new agent up (its status entry back) before the next node.
    for node in NODES {
        let (index, argv) = s.agents[node].clone();
        s.lab.proc(index).signal(libc::SIGTERM);
        assert_eq!(
            s.lab.proc(index).wait_exit(Duration::from_secs(20)),
            Some(0),
            "{}",
            s.lab.logs()
        );
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let new = s.lab.spawn(node, "env", &refs).unwrap();
        s.agents.insert(node.to_string(), (new, argv.clone()));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let st = s.vip_status();
            let entries = st["nodes"].as_array().cloned().unwrap_or_default();
            let back = entries
                .iter()
                .any(|e| e["node"] == node && (e["state"] == "Backup" || e["state"] == "Master"));
            if back && entries.len() == 3 && s.lab.holders(vip).len() == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "{node} did not rejoin: {st}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let samples = probe.finish();
    let r = buoy_tests::probe::report(&samples);
    let failed: Vec<_> = samples
        .iter()
        .filter(|x| x.served_by.is_none())
        .map(|x| x.at)
        .collect();
    assert!(r.total > 100, "{r:?}");
    // No failed request: each switch is a planned one between live agents (a handover on
    // SIGTERM, then the restarted agent preempting back), and a connection whose handshake
    // raced the gratuitous ARP is forwarded by the new master to the old one (docs/vrrp.md).
    assert!(
        r.failed == 0,
        "a rolling restart fails no request: {r:?} at {failed:?}\n{}",
        s.lab.logs()
    );
    assert_eq!(s.lab.holders(vip).len(), 1);
}
