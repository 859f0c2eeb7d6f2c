//! VRRP on a real (namespaced) LAN: Buoy nodes among themselves and with Debian's keepalived.
//! Needs root, iproute2, iptables, keepalived and tshark (installed by .ci/run).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    net::{IpAddr, SocketAddr},
    thread,
    time::Duration,
};

use buoy_tests::{
    netlab::{Lab, in_netns},
    probe::{Probe, Responder, report},
};

const AGENT: &str = env!("CARGO_BIN_EXE_buoy-agent");
const VIP4: &str = "10.77.0.100";
const VIP6: &str = "fd77::100";
const PORT: u16 = 8080;

fn vip4() -> IpAddr {
    VIP4.parse().unwrap()
}

/// Waits until exactly `expected` holds `vip` (and stays so for 3 checks); panics with the logs.
#[track_caller]
fn expect_holder(lab: &Lab, vip: IpAddr, expected: &str, within: Duration) {
    if !lab.wait_sole_holder(vip, expected, within) {
        panic!(
            "expected {expected} alone to hold {vip}, found {:?}\n{}",
            lab.holders(vip),
            lab.logs()
        );
    }
}

/// Starts a Buoy VRRP instance on `host`.
fn buoy(lab: &mut Lab, host: &str, priority: u8, extra: &[&str]) -> usize {
    let p = priority.to_string();
    let mut args = vec![
        "vrrp",
        "--interface",
        "eth0",
        "--vrid",
        "10",
        "--priority",
        &p,
    ];
    if !extra.contains(&"--address") {
        args.extend(["--address", "10.77.0.100/24"]);
    }
    if !extra.contains(&"--advert-interval") {
        args.extend(["--advert-interval", "100ms"]);
    }
    args.extend_from_slice(extra);
    lab.spawn(host, AGENT, &args).expect("start buoy-agent")
}

#[track_caller]
fn wait_line(lab: &mut Lab, proc: usize, needle: &str) -> String {
    let found = lab
        .proc(proc)
        .wait_for_line(needle, Duration::from_secs(15));
    found.unwrap_or_else(|| panic!("no line with {needle:?}\n{}", lab.logs()))
}

fn last_state(lines: &[String]) -> Option<&'static str> {
    lines.iter().rev().find_map(|l| {
        ["state=MASTER", "state=BACKUP", "state=FAULT", "state=INIT"]
            .into_iter()
            .find(|s| l.contains(s))
    })
}

#[test]
fn three_nodes_elect_fail_over_on_link_cut_and_preempt_on_return() {
    let mut lab = Lab::new(&["n1", "n2", "n3", "client"]).unwrap();
    let _r: Vec<Responder> = ["n1", "n2", "n3"]
        .iter()
        .map(|h| Responder::start(&lab.host(h).ns, PORT, h).unwrap())
        .collect();
    let n1 = buoy(&mut lab, "n1", 150, &[]);
    let n2 = buoy(&mut lab, "n2", 100, &[]);
    let _n3 = buoy(&mut lab, "n3", 50, &[]);
    wait_line(&mut lab, n1, "state=MASTER");
    expect_holder(&lab, vip4(), "n1", Duration::from_secs(5));

    let probe = Probe::start(
        &lab.host("client").ns,
        SocketAddr::new(vip4(), PORT),
        Duration::from_millis(10),
        Duration::from_secs(30),
    )
    .unwrap();
    thread::sleep(Duration::from_millis(300));
    lab.cut("n1").unwrap();
    wait_line(&mut lab, n1, "state=FAULT");
    wait_line(&mut lab, n2, "state=MASTER");
    expect_holder(&lab, vip4(), "n2", Duration::from_secs(5));
    thread::sleep(Duration::from_millis(300));
    let cut = report(&probe.finish());
    // Master_Down_Interval at 100 ms adverts and priority 100 is 360.9 ms; the rest is the
    // client's ARP update and the probe's own 50 ms timeout. A loose bound: behaviour, not speed.
    assert!(
        cut.failed > 0 && cut.longest_outage < Duration::from_secs(2),
        "link cut: {cut:?}"
    );
    eprintln!("link cut: {cut:?}");

    // Back with preemption: n1 takes over again, make-before-break.
    let probe = Probe::start(
        &lab.host("client").ns,
        SocketAddr::new(vip4(), PORT),
        Duration::from_millis(10),
        Duration::from_secs(30),
    )
    .unwrap();
    lab.restore("n1").unwrap();
    expect_holder(&lab, vip4(), "n1", Duration::from_secs(5));
    thread::sleep(Duration::from_millis(300));
    let back = report(&probe.finish());
    assert!(
        back.failed <= 10,
        "preemption on return lost more than one interval of probes: {back:?}"
    );
    assert_eq!(last_state(&lab.proc(n2).output()), Some("state=BACKUP"));
}

#[test]
fn without_preemption_a_returning_node_stays_backup() {
    let mut lab = Lab::new(&["n1", "n2"]).unwrap();
    let n2 = buoy(&mut lab, "n2", 100, &["--no-preempt"]);
    wait_line(&mut lab, n2, "state=MASTER");
    let n1 = buoy(&mut lab, "n1", 200, &["--no-preempt"]);
    wait_line(&mut lab, n1, "state=BACKUP");
    thread::sleep(Duration::from_secs(2));
    expect_holder(&lab, vip4(), "n2", Duration::from_secs(1));
    assert_eq!(last_state(&lab.proc(n1).output()), Some("state=BACKUP"));
}

#[test]
fn graceful_stop_hands_over_without_losing_a_probe() {
    let mut lab = Lab::new(&["n1", "n2", "client"]).unwrap();
    let _r: Vec<Responder> = ["n1", "n2"]
        .iter()
        .map(|h| Responder::start(&lab.host(h).ns, PORT, h).unwrap())
        .collect();
    let n1 = buoy(&mut lab, "n1", 150, &[]);
    let n2 = buoy(&mut lab, "n2", 100, &[]);
    wait_line(&mut lab, n1, "state=MASTER");
    expect_holder(&lab, vip4(), "n1", Duration::from_secs(5));
    let probe = Probe::start(
        &lab.host("client").ns,
        SocketAddr::new(vip4(), PORT),
        Duration::from_millis(10),
        Duration::from_secs(30),
    )
    .unwrap();
    thread::sleep(Duration::from_millis(300));
    lab.proc(n1).signal(libc::SIGTERM);
    assert_eq!(
        lab.proc(n1).wait_exit(Duration::from_secs(5)),
        Some(0),
        "{}",
        lab.logs()
    );
    wait_line(&mut lab, n2, "state=MASTER");
    expect_holder(&lab, vip4(), "n2", Duration::from_secs(2));
    thread::sleep(Duration::from_millis(500));
    let samples = probe.finish();
    let r = report(&samples);
    assert_eq!(
        r.failed,
        0,
        "graceful handover lost probes: {r:?}\n{}",
        lab.logs()
    );
    assert!(
        samples.iter().any(|s| s.served_by.as_deref() == Some("n1"))
            && samples.iter().any(|s| s.served_by.as_deref() == Some("n2"))
    );
}

#[test]
fn unicast_mode_elects_and_fails_over() {
    let mut lab = Lab::new(&["n1", "n2"]).unwrap();
    let n1 = buoy(&mut lab, "n1", 150, &["--unicast-peer", "10.77.0.2"]);
    let n2 = buoy(&mut lab, "n2", 100, &["--unicast-peer", "10.77.0.1"]);
    wait_line(&mut lab, n1, "state=MASTER");
    expect_holder(&lab, vip4(), "n1", Duration::from_secs(5));
    assert_eq!(last_state(&lab.proc(n2).output()), Some("state=BACKUP"));
    lab.cut("n1").unwrap();
    wait_line(&mut lab, n2, "state=MASTER");
    expect_holder(&lab, vip4(), "n2", Duration::from_secs(5));
}

#[test]
fn ipv6_elects_fails_over_and_serves_the_client() {
    let mut lab = Lab::new(&["n1", "n2", "client"]).unwrap();
    let _r: Vec<Responder> = ["n1", "n2"]
        .iter()
        .map(|h| Responder::start(&lab.host(h).ns, PORT, h).unwrap())
        .collect();
    let n1 = buoy(&mut lab, "n1", 150, &["--address", "fd77::100/64"]);
    let n2 = buoy(&mut lab, "n2", 100, &["--address", "fd77::100/64"]);
    let vip: IpAddr = VIP6.parse().unwrap();
    wait_line(&mut lab, n1, "state=MASTER");
    expect_holder(&lab, vip, "n1", Duration::from_secs(5));
    let probe = Probe::start(
        &lab.host("client").ns,
        SocketAddr::new(vip, PORT),
        Duration::from_millis(10),
        Duration::from_secs(30),
    )
    .unwrap();
    thread::sleep(Duration::from_millis(300));
    lab.cut("n1").unwrap();
    wait_line(&mut lab, n2, "state=MASTER");
    expect_holder(&lab, vip, "n2", Duration::from_secs(5));
    thread::sleep(Duration::from_millis(500));
    let samples = probe.finish();
    // The unsolicited NA (override) moves the client to n2 without waiting for neighbour timeouts.
    assert_eq!(
        samples.last().and_then(|s| s.served_by.clone()).as_deref(),
        Some("n2"),
        "{:?}",
        report(&samples)
    );
    assert!(
        report(&samples).longest_outage < Duration::from_secs(2),
        "{:?}",
        report(&samples)
    );
}

#[test]
fn malformed_and_foreign_adverts_are_dropped_counted_and_reported() {
    let mut lab = Lab::new(&["n1", "n2", "attacker"]).unwrap();
    let n1 = buoy(&mut lab, "n1", 150, &[]);
    let _n2 = buoy(&mut lab, "n2", 100, &[]);
    wait_line(&mut lab, n1, "state=MASTER");
    // Garbage and a foreign router claiming VRID 10 with priority 254 for another address.
    let sender = in_netns(&lab.host("attacker").ns, || {
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(112)),
        )
        .unwrap();
        s.set_multicast_ttl_v4(255).unwrap();
        s.bind_device(Some(b"eth0")).unwrap();
        let dst: SocketAddr = "224.0.0.18:0".parse().unwrap();
        let foreign = buoy_vrrp::packet::encode(
            &buoy_vrrp::packet::Advertisement {
                version: buoy_vrrp::packet::Version::V3,
                vrid: 10,
                priority: 254,
                interval_cs: 10,
                auth: None,
                addresses: vec!["10.77.0.200".parse().unwrap()],
            },
            "10.77.0.3".parse().unwrap(),
            "224.0.0.18".parse().unwrap(),
        );
        for i in 0..50u8 {
            let junk = [0x31, 10, 254, 1, 0, 10, i, i, 10, 77, 0, 100];
            s.send_to(&junk, &dst.into()).unwrap();
            s.send_to(&[0x31, 10, 0xfe], &dst.into()).unwrap();
            s.send_to(&foreign, &dst.into()).unwrap();
            thread::sleep(Duration::from_millis(10));
        }
    })
    .unwrap();
    sender.join().unwrap();
    wait_line(&mut lab, n1, "VRID collision");
    thread::sleep(Duration::from_millis(300));
    // Nothing moved.
    expect_holder(&lab, vip4(), "n1", Duration::from_secs(1));
    let collision = wait_line(&mut lab, n1, "VRID collision");
    assert!(collision.contains("10.77.0.3"), "{collision}");
    lab.proc(n1).signal(libc::SIGTERM);
    lab.proc(n1).wait_exit(Duration::from_secs(5));
    let exit = wait_line(&mut lab, n1, "exiting");
    assert!(
        exit.contains("bad_checksum")
            && exit.contains("truncated")
            && exit.contains("address_mismatch"),
        "{exit}"
    );
    assert_eq!(
        lab.proc(n1)
            .output()
            .iter()
            .filter(|l| l.contains("state=MASTER"))
            .count(),
        2,
        "only the election and the resignation: {}",
        lab.logs()
    );
}

/// An instance run in-process on a thread inside a namespace, for what the debug command's fixed
/// flags do not expose (tracking, virtual MAC).
struct InProcess {
    shutdown: tokio::sync::watch::Sender<Option<buoy_agent::vrrp::instance::Stop>>,
    data_path: tokio::sync::watch::Sender<buoy_agent::vrrp::instance::DataPath>,
    handle: Option<thread::JoinHandle<()>>,
}

impl InProcess {
    fn start(ns: &str, config: buoy_agent::vrrp::instance::InstanceConfig) -> InProcess {
        use buoy_agent::vrrp::instance::{Controls, Stats, run};
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(None);
        let (data_path, data_path_rx) =
            tokio::sync::watch::channel(buoy_agent::vrrp::instance::DataPath::SERVING);
        let handle = in_netns(ns, move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let (events, mut events_rx) = tokio::sync::mpsc::unbounded_channel();
            rt.block_on(async move {
                tokio::spawn(async move { while events_rx.recv().await.is_some() {} });
                let controls = Controls {
                    shutdown: shutdown_rx,
                    data_path: data_path_rx,
                    events,
                    stats: Default::default(),
                    handover: None,
                    successor: false,
                    peers: None,
                    addresses: None,
                };
                let _: std::sync::Arc<std::sync::Mutex<Stats>> = controls.stats.clone();
                run(config, controls).await.unwrap();
            });
        })
        .unwrap();
        InProcess {
            shutdown,
            data_path,
            handle: Some(handle),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let _ = self
            .shutdown
            .send(Some(buoy_agent::vrrp::instance::Stop::Now));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn instance_config(priority: u8) -> buoy_agent::vrrp::instance::InstanceConfig {
    buoy_agent::vrrp::instance::InstanceConfig {
        interface: Some("eth0".into()),
        vrid: 10,
        priority,
        addresses: vec![(vip4(), 24)],
        advert_interval: Duration::from_millis(100),
        ..Default::default()
    }
}

#[test]
fn tracked_upstreams_move_the_vip_with_keepalived_weights() {
    // The reference setup: priorities 100 and 99, `chk_nginx` weight 2.
    let lab = Lab::new(&["n1", "n2"]).unwrap();
    let n1 = InProcess::start(
        &lab.host("n1").ns,
        buoy_agent::vrrp::instance::InstanceConfig {
            track_upstreams: Some(2),
            ..instance_config(100)
        },
    );
    let _n2 = InProcess::start(
        &lab.host("n2").ns,
        buoy_agent::vrrp::instance::InstanceConfig {
            track_upstreams: Some(2),
            ..instance_config(99)
        },
    );
    expect_holder(&lab, vip4(), "n1", Duration::from_secs(5));
    // n1's proxy loses its backends: 100 < 99 + 2, so n2 takes over.
    n1.data_path.send_modify(|d| d.upstreams_healthy = false);
    expect_holder(&lab, vip4(), "n2", Duration::from_secs(5));
    n1.data_path.send_modify(|d| d.upstreams_healthy = true);
    expect_holder(&lab, vip4(), "n1", Duration::from_secs(5));
}

#[test]
fn a_tracked_interface_going_down_is_a_fault() {
    let lab = Lab::new(&["n1", "n2"]).unwrap();
    let ns1 = lab.host("n1").ns.clone();
    buoy_tests::netlab::ip(&[
        "-n",
        &ns1,
        "link",
        "add",
        "uplink",
        "type",
        "veth",
        "peer",
        "name",
        "uplink-peer",
    ])
    .unwrap();
    buoy_tests::netlab::ip(&["-n", &ns1, "link", "set", "uplink-peer", "up"]).unwrap();
    buoy_tests::netlab::ip(&["-n", &ns1, "link", "set", "uplink", "up"]).unwrap();
    let _n1 = InProcess::start(
        &ns1,
        buoy_agent::vrrp::instance::InstanceConfig {
            track_interfaces: vec![("uplink".into(), 0)],
            ..instance_config(150)
        },
    );
    let _n2 = InProcess::start(&lab.host("n2").ns, instance_config(100));
    expect_holder(&lab, vip4(), "n1", Duration::from_secs(5));
    buoy_tests::netlab::ip(&["-n", &ns1, "link", "set", "uplink", "down"]).unwrap();
    expect_holder(&lab, vip4(), "n2", Duration::from_secs(5));
    buoy_tests::netlab::ip(&["-n", &ns1, "link", "set", "uplink", "up"]).unwrap();
    expect_holder(&lab, vip4(), "n1", Duration::from_secs(5));
}

#[test]
fn virtual_mac_moves_with_the_vip() {
    let lab = Lab::new(&["n1", "n2", "client"]).unwrap();
    let _r: Vec<Responder> = ["n1", "n2"]
        .iter()
        .map(|h| Responder::start(&lab.host(h).ns, PORT, h).unwrap())
        .collect();
    let _n1 = InProcess::start(
        &lab.host("n1").ns,
        buoy_agent::vrrp::instance::InstanceConfig {
            virtual_mac: true,
            ..instance_config(150)
        },
    );
    let _n2 = InProcess::start(
        &lab.host("n2").ns,
        buoy_agent::vrrp::instance::InstanceConfig {
            virtual_mac: true,
            ..instance_config(100)
        },
    );
    expect_holder(&lab, vip4(), "n1", Duration::from_secs(5));
    let client = lab.host("client").ns.clone();
    let neighbour = || {
        buoy_tests::netlab::ns_exec(&client, &["ping", "-c", "1", "-W", "1", VIP4]).ok();
        buoy_tests::netlab::ip(&["-n", &client, "neigh", "show", VIP4]).unwrap()
    };
    assert!(
        neighbour().contains("00:00:5e:00:01:0a"),
        "client must see the virtual MAC: {}",
        neighbour()
    );
    let vmac = buoy_tests::netlab::ip(&[
        "-n",
        &lab.host("n1").ns,
        "-o",
        "addr",
        "show",
        "dev",
        "vrrp4.10",
    ])
    .unwrap();
    assert!(vmac.contains(VIP4), "the VIP lives on the macvlan: {vmac}");
    lab.cut("n1").unwrap();
    expect_holder(&lab, vip4(), "n2", Duration::from_secs(5));
    let probe = Probe::start(
        &client,
        SocketAddr::new(vip4(), PORT),
        Duration::from_millis(10),
        Duration::from_secs(2),
    )
    .unwrap();
    thread::sleep(Duration::from_millis(300));
    let samples = probe.finish();
    assert_eq!(
        samples.last().and_then(|s| s.served_by.clone()).as_deref(),
        Some("n2"),
        "{:?}",
        report(&samples)
    );
    assert!(
        neighbour().contains("00:00:5e:00:01:0a"),
        "same MAC after failover: {}",
        neighbour()
    );
}

#[test]
fn a_stale_vip_from_a_crashed_run_is_removed_at_start() {
    let mut lab = Lab::new(&["n1", "n2"]).unwrap();
    let n1 = buoy(&mut lab, "n1", 150, &[]);
    wait_line(&mut lab, n1, "state=MASTER");
    // n2 crashed earlier while master and left the address behind, tagged as Buoy's
    // (`proto 0xb0`, which `ip address show` prints).
    add_tagged(&lab, "n2", vip4(), 24);
    assert_eq!(lab.holders(vip4()), ["n1", "n2"]);
    let n2 = buoy(&mut lab, "n2", 100, &[]);
    let removed = wait_line(&mut lab, n2, "removed a stale virtual address");
    assert!(removed.contains("10.77.0.100"), "{removed}");
    expect_holder(&lab, vip4(), "n1", Duration::from_secs(3));
}

/// Adds `addr/prefix` to `host`'s eth0 as Buoy adds a VIP (tagged with its address protocol),
/// as an agent that crashed while master leaves it.
fn add_tagged(lab: &Lab, host: &str, addr: IpAddr, prefix: u8) {
    let ns = lab.host(host).ns.clone();
    buoy_tests::netlab::in_netns(&ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let netlink = buoy_agent::net::netlink::Netlink::connect().unwrap();
            let link = netlink.link_by_name("eth0").await.unwrap();
            netlink.add_address(&link, addr, prefix).await.unwrap();
        });
    })
    .unwrap()
    .join()
    .unwrap();
}

#[test]
fn a_node_address_is_refused_never_removed() {
    let mut lab = Lab::new(&["n1", "n2"]).unwrap();
    // The VIP is n2's own address (added without Buoy's tag, as an admin or DHCP would):
    // the agent refuses to take part rather than remove or claim it.
    buoy_tests::netlab::ip(&[
        "-n",
        &lab.host("n2").ns,
        "addr",
        "add",
        "10.77.0.100/24",
        "dev",
        "eth0",
    ])
    .unwrap();
    let n2 = buoy(&mut lab, "n2", 200, &[]);
    let refused = wait_line(&mut lab, n2, "already an address of this node");
    assert!(refused.contains("10.77.0.100"), "{refused}");
    // The debug command has nothing else to run: it exits with the reason.
    assert_eq!(lab.proc(n2).wait_exit(Duration::from_secs(5)), Some(1));
    assert_eq!(lab.holders(vip4()), ["n2"], "the node's address stays");
    let lines = lab.proc(n2).output();
    assert!(
        !lines.iter().any(|l| l.contains("state=MASTER")),
        "{lines:?}"
    );
}
