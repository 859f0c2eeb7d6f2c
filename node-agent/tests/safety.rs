//! What a crashed agent, a hostile LAN and the VIPs' own clients cannot do to a node, in
//! standalone mode on the lab (examples/seed on two nodes): an agent killed with SIGKILL while
//! master leaves its VIP bound, and its restart removes it before it joins the election (then
//! nothing is left once the agents stop); the admin endpoint never answers on a VIP nor tells a
//! password; adverts from many spoofed sources are counted, not kept. Needs root.
#![allow(clippy::unwrap_used)]

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    time::{Duration, Instant},
};

use buoy_tests::{
    backend::{Backend, request},
    netlab::{Lab, in_netns, ip, ns_exec},
    process::workspace_bin,
    seed::VIP,
    vrrp_wire,
};

fn vip() -> IpAddr {
    VIP.parse().unwrap()
}

fn spawn_agent(lab: &mut Lab, config: &Path, node: &str, metrics: &str) -> usize {
    let agent = workspace_bin("buoy-agent");
    lab.spawn(
        node,
        agent.to_str().unwrap(),
        &[
            "standalone",
            "--config",
            config.to_str().unwrap(),
            "--node-name",
            node,
            "--threads",
            "1",
            "--metrics-address",
            metrics,
        ],
    )
    .unwrap()
}

/// The lab, the seed's backends, and lb1 and lb2's agents; lb1 holds the VIP.
fn seed(metrics: &str) -> (Lab, std::path::PathBuf, [usize; 2], Vec<Backend>) {
    let mut lab = Lab::new(&["lb1", "lb2", "web1", "web2", "client"]).unwrap();
    let config = buoy_tests::seed::lab_config(lab.dir()).unwrap();
    let backends = lab.web_backends(&["web1", "web2"], false);
    let lb1 = spawn_agent(&mut lab, &config, "lb1", metrics);
    let lb2 = spawn_agent(&mut lab, &config, "lb2", metrics);
    assert!(
        lab.wait_sole_holder(vip(), "lb1", Duration::from_secs(10)),
        "{}",
        lab.logs()
    );
    (lab, config, [lb1, lb2], backends)
}

/// Buoy's rules in `node`'s mangle table and policy routing.
fn leftovers(lab: &Lab, node: &str) -> (bool, bool) {
    let ns = &lab.host(node).ns;
    let chains = ns_exec(ns, &["iptables", "-w", "-t", "mangle", "-S"]).unwrap();
    let rules = ns_exec(ns, &["ip", "rule"]).unwrap();
    (chains.contains("BUOY-HANDOVER"), rules.contains("1900:"))
}

#[test]
fn a_master_killed_and_restarted_removes_its_stale_vip_before_it_joins() {
    let (mut lab, config, [lb1, lb2], _backends) = seed("127.0.0.1:9901");
    assert_eq!(
        leftovers(&lab, "lb1"),
        (true, true),
        "lb1 has its handover rules"
    );
    // SIGKILL: nothing is handed over or cleaned up. lb2 takes over after Master_Down_Interval,
    // and the dead master's address stays: the VIP is on both nodes.
    lab.proc(lb1).signal(libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab.holders(vip()).len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lab.holders(vip()), ["lb1", "lb2"], "{}", lab.logs());
    // The restart removes it before anything else: before its VRRP instance even starts.
    let restarted = spawn_agent(&mut lab, &config, "lb1", "127.0.0.1:9901");
    let cleaned = lab
        .proc(restarted)
        .wait_for_line("did not exit cleanly", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{}", lab.logs()));
    assert!(cleaned.contains("10.77.0.100"), "{cleaned}");
    lab.proc(restarted)
        .wait_for_line("VRRP instance starting", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{}", lab.logs()));
    let lines = lab.proc(restarted).output();
    let at = |needle: &str| lines.iter().position(|l| l.contains(needle));
    assert!(
        at("did not exit cleanly") < at("VRRP instance starting"),
        "{lines:#?}"
    );
    // Then the VIP is on one node only: lb2's until lb1 (higher priority) preempts.
    assert!(
        lab.wait_sole_holder(vip(), "lb1", Duration::from_secs(15)),
        "{}",
        lab.logs()
    );
    // Uninstall: both agents stop (SIGTERM); nothing of Buoy is left on either node.
    for agent in [restarted, lb2] {
        lab.proc(agent).signal(libc::SIGTERM);
        assert_eq!(lab.proc(agent).wait_exit(Duration::from_secs(20)), Some(0));
    }
    assert!(lab.holders(vip()).is_empty(), "{}", lab.logs());
    for node in ["lb1", "lb2"] {
        assert_eq!(leftovers(&lab, node), (false, false), "{node}");
        let state = lab.dir().join("state").join(node);
        let files: Vec<_> = std::fs::read_dir(&state)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(files.is_empty(), "{node}: ledger left: {files:?}");
    }
}

#[test]
fn the_admin_endpoint_never_answers_on_a_vip_and_tells_no_password() {
    // Even told to listen on every address.
    let (lab, _config, _agents, _backends) = seed("0.0.0.0:9901");
    let client = lab.host("client").ns.clone();
    let on = |addr: IpAddr| {
        let target = SocketAddr::new(addr, 9901);
        in_netns(&client, move || request(target, "GET", "/status", &[], ""))
            .unwrap()
            .join()
            .unwrap()
    };
    assert!(on(vip()).is_none(), "the VIP answered the admin endpoint");
    let lb1 = IpAddr::V4(lab.host("lb1").ipv4);
    let status = on(lb1).unwrap();
    assert_eq!(status.status, 200);
    assert!(status.body.contains("default/test-web"), "{}", status.body);
    // The seed's VRRP password is 1111: never in what the endpoint says.
    assert!(!status.body.contains("1111"), "{}", status.body);
    assert!(on(lb1).is_some());
}

#[test]
fn adverts_from_many_spoofed_sources_are_counted_not_kept() {
    let (mut lab, _config, [lb1_agent, _], _backends) = seed("127.0.0.1:9901");
    let client = lab.host("client").ns.clone();
    // 40 routers (or one attacker with 40 addresses) claim the seed's router ID with other
    // addresses.
    let sources: Vec<Ipv4Addr> = (150..190).map(|i| Ipv4Addr::new(10, 77, 0, i)).collect();
    for s in &sources {
        ip(&[
            "-n",
            &client,
            "addr",
            "add",
            &format!("{s}/24"),
            "dev",
            "eth0",
        ])
        .unwrap();
    }
    let sent = sources.clone();
    in_netns(&client, move || {
        for s in sent {
            let sender = vrrp_wire::Sender::open_from(s).unwrap();
            let advert = vrrp_wire::advert_v3(51, 254, 100, &[Ipv4Addr::new(10, 77, 0, 250)], s);
            sender.send(&advert, 255).unwrap();
        }
    })
    .unwrap()
    .join()
    .unwrap();
    let lb1 = lab.host("lb1").ns.clone();
    let get = move |path: &'static str| {
        let ns = lb1.clone();
        in_netns(&ns, move || {
            request("127.0.0.1:9901".parse().unwrap(), "GET", path, &[], "").unwrap()
        })
        .unwrap()
        .join()
        .unwrap()
        .body
    };
    let counted = |text: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with("buoy_vrrp_collisions_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut metrics = get("/metrics");
    while counted(&metrics) < 40 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        metrics = get("/metrics");
    }
    // Every advert counted, in one series per VirtualIP (no label per source).
    assert_eq!(counted(&metrics), 40, "{metrics}");
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("buoy_vrrp_collisions_total{") && l.contains("from=")),
        "{metrics}"
    );
    // At most 16 foreign routers kept in /status and logged, one line saying so for the rest.
    let status: serde_json::Value = serde_json::from_str(&get("/status")).unwrap();
    let kept = status["default/test-web"]["collisions"]
        .as_object()
        .map_or(0, serde_json::Map::len);
    assert_eq!(kept, 16, "{status}");
    let logs = lab.proc(lb1_agent).output();
    let logged = logs.iter().filter(|l| l.contains("VRID collision")).count();
    assert_eq!(logged, 16, "{logs:#?}");
    assert!(
        logs.iter()
            .any(|l| l.contains("more than 16 foreign routers")),
        "{logs:#?}"
    );
    // Nothing moved.
    assert_eq!(lab.holders(vip()), ["lb1"]);
}
