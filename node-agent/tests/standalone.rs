//! The whole agent in standalone mode, end to end: the reference architecture (examples/seed,
//! translated to the lab's addresses) on two Buoy nodes in network namespaces, two web backends
//! and a client. Needs root (CI runs it as root).
#![allow(clippy::unwrap_used)]

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use buoy_tests::{
    announce_wire::AnnouncementWatch,
    backend::{Backend, KeepAlive, request, served_by_from},
    netlab::{Lab, in_netns, ns_exec},
    probe::{Probe, report},
    process::workspace_bin,
    promtool,
};

use buoy_tests::seed::VIP;

fn vip() -> IpAddr {
    VIP.parse().unwrap()
}

fn vip_http() -> SocketAddr {
    SocketAddr::new(vip(), 80)
}

struct Setup {
    lab: Lab,
    config: PathBuf,
    agents: [usize; 2],
    backends: Vec<Backend>,
}

fn setup() -> Setup {
    let s = start();
    assert!(
        s.lab
            .wait_sole_holder(vip(), "lb1", Duration::from_secs(10)),
        "lb1 (priority 100 + 2 for healthy upstreams) should hold the VIP\n{}",
        s.lab.logs()
    );
    s
}

/// The lab and both agents, without waiting for the election.
fn start() -> Setup {
    start_with(|_| {})
}

/// Like [`start`]; `before` runs once the lab exists, before the agents start.
fn start_with(before: impl FnOnce(&Lab)) -> Setup {
    let mut lab = Lab::new(&["lb1", "lb2", "web1", "web2", "client"]).unwrap();
    let config = buoy_tests::seed::lab_config(lab.dir()).unwrap();
    let backends = lab.web_backends(&["web1", "web2"], false);
    before(&lab);
    let mut agents = [0; 2];
    for (i, node) in ["lb1", "lb2"].iter().enumerate() {
        agents[i] = spawn_agent(&mut lab, &config, node);
    }
    Setup {
        lab,
        config,
        agents,
        backends,
    }
}

/// Starts `buoy-agent standalone` on `node`; returns its process index.
fn spawn_agent(lab: &mut Lab, config: &std::path::Path, node: &str) -> usize {
    spawn_agent_with(lab, config, node, &[])
}

/// Like [`spawn_agent`], with these `NAME=value` settings in the agent's environment.
fn spawn_agent_with(
    lab: &mut Lab,
    config: &std::path::Path,
    node: &str,
    environment: &[&str],
) -> usize {
    let agent = workspace_bin("buoy-agent");
    let mut args: Vec<&str> = environment.to_vec();
    args.extend([
        agent.to_str().unwrap(),
        "standalone",
        "--config",
        config.to_str().unwrap(),
        "--node-name",
        node,
        "--threads",
        "1",
        "--metrics-address",
        "127.0.0.1:9901",
    ]);
    lab.spawn(node, "env", &args).unwrap()
}

/// A `PATH` whose `iptables-restore` and `ip6tables-restore` take `delay` longer, as on a
/// loaded host or one where kube-proxy holds the xtables lock for a while.
fn slow_iptables_path(lab: &Lab, delay: Duration) -> String {
    let dir = lab.dir().join("slow-iptables");
    std::fs::create_dir_all(&dir).unwrap();
    for tool in ["iptables-restore", "ip6tables-restore"] {
        let real = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
        assert!(!real.is_empty(), "{tool} is installed");
        let wrapper = dir.join(tool);
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nsleep {}\nexec {real} \"$@\"\n",
                delay.as_secs_f64()
            ),
        )
        .unwrap();
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    format!(
        "PATH={}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// `n` requests from the client through the VIP; who answered each.
fn served(lab: &Lab, n: usize) -> Vec<String> {
    served_by_from(&lab.host("client").ns, vip_http(), n)
}

#[test]
fn seed_config_serves_both_backends_and_fails_over_when_the_master_link_is_cut() {
    let s = setup();
    let answers = served(&s.lab, 20);
    let web1 = answers.iter().filter(|a| *a == "web1").count();
    let web2 = answers.iter().filter(|a| *a == "web2").count();
    assert_eq!(
        (web1, web2),
        (10, 10),
        "round robin over both backends: {answers:?}\n{}",
        s.lab.logs()
    );

    let probe = Probe::start_http(
        &s.lab.host("client").ns,
        vip_http(),
        Duration::from_millis(10),
        Duration::from_secs(20),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let cut_at = probe.started().elapsed();
    s.lab.cut("lb1").unwrap();
    assert!(
        s.lab.wait_sole_holder(vip(), "lb2", Duration::from_secs(8)),
        "lb2 takes over\n{}",
        s.lab.logs()
    );
    std::thread::sleep(Duration::from_millis(300));
    let samples = probe.finish();
    let first_after = samples
        .iter()
        .find(|x| x.at > cut_at && x.served_by.is_some())
        .map(|x| x.at - cut_at);
    // Master_Down_Interval = 3 × 1 s + skew (256 − 99) / 256 s, plus 100 ms.
    let bound = Duration::from_millis(3000 + 157 * 1000 / 256 + 100);
    let failover = first_after.expect("the backup serves");
    assert!(
        failover <= bound,
        "the backup serves {failover:?} after the cut (bound {bound:?})"
    );
    eprintln!("link cut: served again by lb2 after {failover:?} (bound {bound:?})");

    // The link comes back: lb1 (higher priority) preempts; exactly one holder.
    s.lab.restore("lb1").unwrap();
    assert!(
        s.lab
            .wait_sole_holder(vip(), "lb1", Duration::from_secs(10)),
        "{}",
        s.lab.logs()
    );
}

/// The agent's `/metrics` on `node` (its admin endpoint on 127.0.0.1:9901 there).
fn metrics_of(lab: &Lab, node: &str) -> String {
    let ns = lab.host(node).ns.clone();
    in_netns(&ns, move || {
        request(
            "127.0.0.1:9901".parse().unwrap(),
            "GET",
            "/metrics",
            &[],
            "",
        )
        .unwrap()
    })
    .unwrap()
    .join()
    .unwrap()
    .body
}

#[test]
fn the_metrics_pass_promtool_with_the_series_operators_expect() {
    let unix = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let started = unix(std::time::SystemTime::now());
    let s = setup();
    let answers = served(&s.lab, 20);
    // The VRRP series are refreshed every 250 ms.
    std::thread::sleep(Duration::from_millis(600));
    let now = unix(std::time::SystemTime::now());
    for (node, state) in [("lb1", "MASTER"), ("lb2", "BACKUP")] {
        let text = metrics_of(&s.lab, node);
        if let Err(e) = promtool::check_metrics(&text) {
            panic!("promtool check metrics on {node}'s /metrics:\n{e}\n{text}");
        }
        let value = |series: &str| {
            promtool::sample(&text, series)
                .unwrap_or_else(|| panic!("no {series} on {node}:\n{text}"))
        };
        // The process, as the process collector reads it from /proc.
        assert!(value("process_resident_memory_bytes") > 1e6);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_threads") >= 1.0);
        assert!(value("process_cpu_seconds_total") >= 0.0);
        let born = value("process_start_time_seconds");
        assert!(
            born >= started - 2.0 && born <= now,
            "{born} not in [{started}, {now}]"
        );
        // The build.
        let info = text
            .lines()
            .find(|l| l.starts_with("buoy_build_info{"))
            .unwrap_or_else(|| panic!("no buoy_build_info:\n{text}"));
        assert!(info.ends_with("} 1"), "{info}");
        assert!(
            info.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
            "{info}"
        );
        let commit = info
            .split("commit=\"")
            .nth(1)
            .and_then(|c| c.split('"').next());
        assert!(
            commit
                .is_some_and(|c| c == "unknown"
                    || (c.len() == 12 && c.chars().all(|x| x.is_ascii_hexdigit()))),
            "{info}"
        );
        // The state since when, and the interval that makes "3 intervals without a master".
        let vip = "virtualip=\"default/test-web\"";
        assert_eq!(
            value(&format!("buoy_vrrp_state{{state=\"{state}\",{vip}}}")),
            1.0,
            "{node}"
        );
        let since = value(&format!(
            "buoy_vrrp_last_transition_timestamp_seconds{{{vip}}}"
        ));
        assert!(
            since >= started && since <= now,
            "{node}: {since} not in [{started}, {now}]"
        );
        assert_eq!(
            value(&format!("buoy_vrrp_advert_interval_seconds{{{vip}}}")),
            1.0
        );
        // Which pool the listener sends to, and its backends' health.
        let listener = text
            .lines()
            .find(|l| l.starts_with("buoy_proxy_listener_pool{listener=\"default/test-web/"))
            .unwrap_or_else(|| panic!("no listener's pool on {node}:\n{text}"));
        assert!(
            listener.ends_with(",pool=\"default/test-web\"} 1"),
            "{listener}"
        );
        for backend in ["10.77.0.3:80", "10.77.0.4:80"] {
            let labels = format!("{{backend=\"{backend}\",pool=\"default/test-web\"}}");
            assert_eq!(value(&format!("buoy_proxy_backend_healthy{labels}")), 1.0);
        }
    }
    // Requests by backend: on the master, as many as each backend answered.
    let text = metrics_of(&s.lab, "lb1");
    for (web, backend) in [("web1", "10.77.0.3:80"), ("web2", "10.77.0.4:80")] {
        let answered = answers.iter().filter(|a| *a == web).count();
        let series = format!(
            "buoy_proxy_backend_requests_total{{backend=\"{backend}\",pool=\"default/test-web\"}}"
        );
        assert_eq!(
            promtool::sample(&text, &series),
            Some(answered as f64),
            "{text}"
        );
    }
    assert_eq!(answers.len(), 20);
    let text = metrics_of(&s.lab, "lb2");
    let sent: f64 = text
        .lines()
        .filter(|l| l.starts_with("buoy_proxy_backend_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(sent, 0.0, "the backup proxied nothing:\n{text}");
}

#[test]
fn sigterm_on_the_master_hands_over_without_a_failed_request() {
    let mut s = setup();
    let probe = Probe::start_http(
        &s.lab.host("client").ns,
        vip_http(),
        Duration::from_millis(10),
        Duration::from_secs(20),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let agent = s.agents[0];
    s.lab.proc(agent).signal(libc::SIGTERM);
    assert!(
        s.lab.wait_sole_holder(vip(), "lb2", Duration::from_secs(8)),
        "{}",
        s.lab.logs()
    );
    let code = s.lab.proc(agent).wait_exit(Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(500));
    let samples = probe.finish();
    let r = report(&samples);
    assert_eq!(code, Some(0), "the agent exits cleanly\n{}", s.lab.logs());
    assert!(r.total > 50, "{r:?}");
    let failed: Vec<_> = samples
        .iter()
        .filter(|x| x.served_by.is_none())
        .map(|x| x.at)
        .collect();
    assert_eq!(
        r.failed,
        0,
        "no failed request during the handover: {r:?} at {failed:?}\n{}",
        s.lab.logs()
    );
    assert!(
        samples.iter().rev().take(10).all(|x| x.served_by.is_some()),
        "still served after the handover"
    );
    assert_eq!(
        s.lab.holders(vip()),
        ["lb2"],
        "lb1 released the VIP on exit"
    );
}

/// The MAC address of a host's `eth0`.
/// `host`'s IPv6 link-local address on eth0.
fn link_local(lab: &Lab, host: &str) -> String {
    let text = ns_exec(
        &lab.host(host).ns,
        &[
            "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link",
        ],
    )
    .unwrap();
    text.split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{host} has no link-local address: {text}"))
}

fn mac_of(lab: &Lab, host: &str) -> [u8; 6] {
    let text = ns_exec(&lab.host(host).ns, &["cat", "/sys/class/net/eth0/address"]).unwrap();
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

/// lb2 alone holds the VIP; a client opens a keep-alive connection to it; lb1 (higher
/// priority) starts and preempts. The client's next request goes to lb1 (its gratuitous ARP or
/// NA moved the VIP), which knows no such connection: without handover it would answer with a
/// reset. It forwards the packets to lb2, whose proxy still holds the connection and answers.
/// Then both agents stop and take their rules with them. `slow_iptables`: lb1's
/// `iptables-restore` takes this much longer.
fn keep_alive_across_a_preemption(
    mut lab: Lab,
    config: &std::path::Path,
    vip: SocketAddr,
    slow_iptables: Option<Duration>,
) {
    let (iptables, ip_family) = if vip.is_ipv6() {
        ("ip6tables", "-6")
    } else {
        ("iptables", "-4")
    };
    let lb2 = spawn_agent(&mut lab, config, "lb2");
    assert!(
        lab.wait_sole_holder(vip.ip(), "lb2", Duration::from_secs(10)),
        "{}",
        lab.logs()
    );
    let mut conn = KeepAlive::connect_in(&lab.host("client").ns, vip).unwrap();
    let first = conn.get("/").unwrap();
    assert_eq!(first.status, 200, "{first:?}");
    // The next request leaves the moment the client hears lb1 announce the VIP: lb1 must
    // already have the rule that forwards it to lb2 (make before break), or it resets it.
    let lb1_mac = mac_of(&lab, "lb1");
    let announced = AnnouncementWatch::start(
        &lab.host("client").ns,
        vip.ip(),
        lb1_mac,
        Duration::from_secs(10),
    )
    .unwrap();
    let environment = slow_iptables.map(|delay| slow_iptables_path(&lab, delay));
    let lb1 = spawn_agent_with(
        &mut lab,
        config,
        "lb1",
        &environment.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    announced
        .wait()
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    // The capture sees the announcement just before the client's kernel takes it in.
    std::thread::sleep(Duration::from_millis(2));
    let second = conn.get("/");
    assert!(
        lab.wait_sole_holder(vip.ip(), "lb1", Duration::from_secs(10)),
        "lb1 preempts\n{}",
        lab.logs()
    );
    let forwarded = handover_chain(&lab, "lb1", iptables);
    let second = second.unwrap_or_else(|e| {
        panic!(
            "the connection opened on lb2 broke after the preemption: {e}\n{forwarded}\n{}",
            lab.logs()
        )
    });
    assert_eq!(second.status, 200, "{second:?}");
    let tee_packets = packets(&forwarded, |l| l.contains("TEE"));
    assert!(tee_packets > 0, "lb1 forwarded nothing:\n{forwarded}");
    // New connections are lb1's own.
    let fresh = served_by_from(&lab.host("client").ns, vip, 4);
    assert!(
        fresh.iter().all(|b| b != "failed"),
        "{fresh:?}\n{}",
        lab.logs()
    );
    eprintln!(
        "{vip}: keep-alive request after the preemption served; lb1 forwarded {tee_packets} packets"
    );

    // The old master goes away while the new one still forwards to it, and it forwards IP (as
    // Kubernetes nodes do): what it has no socket for, it routes back to the VIP's holder,
    // which must drop it rather than forward it again until the TTL runs out.
    let forwarding = if vip.is_ipv6() {
        "net.ipv6.conf.all.forwarding=1"
    } else {
        "net.ipv4.ip_forward=1"
    };
    ns_exec(&lab.host("lb2").ns, &["sysctl", "-qw", forwarding]).unwrap();
    stop_agent(&mut lab, lb2, "lb2", iptables, ip_family);
    let counters = |lab: &Lab| -> (u64, u64) {
        let chain = handover_chain(lab, "lb1", iptables);
        (
            packets(&chain, |l| l.contains("TEE")),
            packets(&chain, |l| l.contains("DROP") && l.contains("DSCP match")),
        )
    };
    let (forwarded_before, _) = counters(&lab);
    // Packets of connections nobody has any more (lb2 exited; its own leftover sockets would
    // still take the packets of the one above): lb1 forwards each to lb2 once.
    let client = lab.host("client");
    let src = if vip.is_ipv6() {
        IpAddr::V6(client.ipv6)
    } else {
        IpAddr::V4(client.ipv4)
    };
    buoy_tests::tcp_wire::send_stray_acks(&client.ns, src, vip, 5).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (forwarded_after, bounced) = counters(&lab);
    let forwarded = forwarded_after - forwarded_before;
    // Each stray comes back exactly once: one forwarded again would come back again. (lb1 also
    // forwards what the client still sends on the connection lb2's exit closed.)
    assert!(
        bounced == 5 && forwarded >= 5,
        "5 stray packets: forwarded {forwarded} times, routed back and dropped {bounced} times\n{}",
        ns_exec(
            &lab.host("lb1").ns,
            &[iptables, "-w", "-t", "mangle", "-L", "-v", "-x", "-n"]
        )
        .unwrap_or_default()
    );
    eprintln!(
        "{vip}: after lb2 exited, {forwarded} stray packets forwarded, {bounced} routed back and dropped"
    );
    drop(conn);
    stop_agent(&mut lab, lb1, "lb1", iptables, ip_family);
}

/// `node`'s handover chain as `iptables -L -v -x -n` lists it, packet counters first.
fn handover_chain(lab: &Lab, node: &str, iptables: &str) -> String {
    let list = [
        "-w",
        "-t",
        "mangle",
        "-L",
        "BUOY-HANDOVER",
        "-v",
        "-x",
        "-n",
    ];
    let args: Vec<&str> = std::iter::once(iptables).chain(list).collect();
    ns_exec(&lab.host(node).ns, &args).unwrap_or_default()
}

/// Packets counted by the rules of `listing` that `pick` selects.
fn packets(listing: &str, pick: impl Fn(&str) -> bool) -> u64 {
    listing
        .lines()
        .filter(|l| pick(l))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// SIGTERM to an agent: it exits cleanly and takes its handover rules with it.
fn stop_agent(lab: &mut Lab, agent: usize, node: &str, iptables: &str, ip_family: &str) {
    lab.proc(agent).signal(libc::SIGTERM);
    assert_eq!(
        lab.proc(agent).wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        lab.logs()
    );
    let left = ns_exec(&lab.host(node).ns, &[iptables, "-w", "-t", "mangle", "-S"]).unwrap();
    assert!(!left.contains("BUOY-HANDOVER"), "{node}: {left}");
    let rules = ns_exec(&lab.host(node).ns, &["ip", ip_family, "rule"]).unwrap();
    assert!(!rules.contains("1900:"), "{node}: {rules}");
}

#[test]
fn a_keep_alive_connection_survives_a_preemption_on_the_master_that_accepted_it() {
    let lab = Lab::new(&["lb1", "lb2", "web1", "web2", "client"]).unwrap();
    let config = buoy_tests::seed::lab_config(lab.dir()).unwrap();
    let _backends = lab.web_backends(&["web1", "web2"], false);
    // lb1 preempts lb2 about 3.6 s after its own start (three adverts and its skew; lb2's
    // lower-priority adverts do not restart its timer). Its first two rule changes (its own
    // VIP, then forwarding to lb2, asked for within the first advert) taking 2.2 s each put the
    // forwarding rule about 0.8 s after lb1 would announce itself, within the 2 s it waits.
    keep_alive_across_a_preemption(lab, &config, vip_http(), Some(Duration::from_millis(2200)));
}

#[test]
fn a_keep_alive_connection_survives_a_preemption_over_ipv6() {
    let lab = Lab::new(&["lb1", "lb2", "web1", "web2", "client"]).unwrap();
    let dir = lab.dir().to_path_buf();
    let backends: Vec<String> = ["web1", "web2"]
        .iter()
        .map(|h| format!("    - address: \"{}\"\n      port: 80\n", lab.host(h).ipv6))
        .collect();
    // VRRPv3 over IPv6: adverts from link-local addresses, so forwarding goes to lb2's
    // link-local address through eth0. Connections are forwarded only to a node the files name
    // with its address (a spoofed advert's source is never a target): each node's link-local
    // address is its sourceAddress (keepalived: `unicast_src_ip`), the address it sends from
    // anyway.
    let (ll1, ll2) = (link_local(&lab, "lb1"), link_local(&lab, "lb2"));
    let config = dir.join("v6.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: web, namespace: default}}\nspec:\n  backends:\n{}---\napiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {{name: web, namespace: default}}\nspec:\n  addresses: [\"fd77::100\"]\n  interface: eth0\n  virtualRouterID: 61\n  vrrp: {{advertisementInterval: 200ms}}\n  priorities:\n    - {{node: lb1, priority: 150, sourceAddress: \"{ll1}\"}}\n    - {{node: lb2, priority: 100, sourceAddress: \"{ll2}\"}}\n  listeners:\n    - {{name: http, port: 80, protocol: HTTP, upstreamPool: web}}\n",
            backends.concat()
        ),
    )
    .unwrap();
    let _backends = lab.web_backends(&["web1", "web2"], true);
    keep_alive_across_a_preemption(lab, &config, "[fd77::100]:80".parse().unwrap(), None);
}

#[test]
fn a_dead_backend_and_a_bad_reload_do_not_fail_requests() {
    let mut s = setup();
    // web2 dies: after passive detection (max_fails 2), no request fails.
    drop(s.backends.remove(1));
    let warmup = served(&s.lab, 6);
    assert!(
        warmup.iter().all(|a| a == "web1"),
        "retried on web1: {warmup:?}"
    );
    let after = served(&s.lab, 20);
    assert!(
        after.iter().all(|a| a == "web1"),
        "only web1 serves once web2 is marked down: {after:?}"
    );

    // A bad configuration is rejected; the running one stays and keeps serving.
    let probe = Probe::start_http(
        &s.lab.host("client").ns,
        vip_http(),
        Duration::from_millis(10),
        Duration::from_secs(20),
    )
    .unwrap();
    let file = s.config.join("virtualip.yaml");
    let good = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        good.replace("virtualRouterID: 51", "virtualRouterID: 300"),
    )
    .unwrap();
    let agent = s.agents[0];
    s.lab.proc(agent).signal(libc::SIGHUP);
    let rejected = s
        .lab
        .proc(agent)
        .wait_for_line("configuration rejected", Duration::from_secs(5));
    let line = rejected.unwrap_or_else(|| panic!("{}", s.lab.logs()));
    assert!(
        s.lab
            .proc(agent)
            .output()
            .iter()
            .any(|l| l.contains("spec.virtualRouterID")),
        "the rejection names the field: {line}\n{}",
        s.lab.logs()
    );
    std::thread::sleep(Duration::from_millis(500));
    let samples = probe.finish();
    let r = report(&samples);
    assert_eq!(r.failed, 0, "{r:?}");
    assert_eq!(s.lab.holders(vip()), ["lb1"]);

    // A good change is applied without a restart: a second listener appears.
    std::fs::write(
        &file,
        good.replace(
            "  listeners:\n",
            "  listeners:\n    - {name: alt, port: 8080, protocol: HTTP, upstreamPool: test-web}\n",
        ),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let alt = SocketAddr::new(vip(), 8080);
    let ok = loop {
        let r = in_netns(&s.lab.host("client").ns, move || {
            buoy_tests::backend::request(alt, "GET", "/", &[], "").map(|r| r.status)
        })
        .unwrap()
        .join()
        .unwrap();
        if r == Some(200) || Instant::now() > deadline {
            break r == Some(200);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        ok,
        "the new listener serves after the file changed\n{}",
        s.lab.logs()
    );
}

#[test]
fn a_node_that_cannot_listen_gives_up_mastership_until_it_can() {
    // Something else holds port 80 on lb1 (a wildcard listener without SO_REUSEADDR).
    let (blocker_tx, blocker_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let mut s = start_with(|lab| {
        let blocker = in_netns(&lab.host("lb1").ns, move || {
            let l = std::net::TcpListener::bind("0.0.0.0:80").unwrap();
            blocker_tx.send(()).unwrap();
            let _ = release_rx.recv();
            drop(l);
        })
        .unwrap();
        std::mem::drop(blocker);
        blocker_rx.recv().unwrap();
    });
    assert!(
        s.lab
            .wait_sole_holder(vip(), "lb2", Duration::from_secs(10)),
        "lb1 cannot open its listener, so lb2 serves\n{}",
        s.lab.logs()
    );
    let answers = served(&s.lab, 4);
    assert!(answers.iter().all(|a| a.starts_with("web")), "{answers:?}");
    let agent = s.agents[0];
    assert!(
        s.lab
            .proc(agent)
            .wait_for_line("state=FAULT", Duration::from_secs(5))
            .is_some_and(|l| l.contains("cannot open a listener")),
        "lb1 reports Fault with the reason\n{}",
        s.lab.logs()
    );
    // The port frees up: lb1 opens its listener, recovers and preempts.
    release_tx.send(()).unwrap();
    assert!(
        s.lab
            .wait_sole_holder(vip(), "lb1", Duration::from_secs(10)),
        "{}",
        s.lab.logs()
    );
    let answers = served(&s.lab, 4);
    assert!(answers.iter().all(|a| a.starts_with("web")), "{answers:?}");
}

/// UDP queries from the client to `VIP:53`, each from a fresh socket, retried as a DNS client
/// does: the answers and where they came from (`None`: no answer).
fn ask_udp(lab: &Lab, queries: usize) -> Vec<Option<(String, SocketAddr)>> {
    in_netns(&lab.host("client").ns, move || {
        (0..queries)
            .map(|i| {
                let c = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
                c.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let mut buf = [0u8; 512];
                (0..6).find_map(|_| {
                    c.send_to(format!("q{i}").as_bytes(), SocketAddr::new(vip(), 53))
                        .ok()?;
                    let (n, from) = c.recv_from(&mut buf).ok()?;
                    Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from))
                })
            })
            .collect()
    })
    .unwrap()
    .join()
    .unwrap()
}

#[test]
fn udp_through_the_vip_reaches_both_backends_and_survives_a_failover() {
    let mut s = start_with(|lab| {
        let dir = lab.dir().join("config");
        let vip_file = dir.join("virtualip.yaml");
        let text = std::fs::read_to_string(&vip_file).unwrap().replace(
            "  listeners:\n",
            "  listeners:\n    - {name: dns, port: 53, protocol: UDP, upstreamPool: dns, client: {idleTimeout: 5s}}\n",
        );
        std::fs::write(&vip_file, text).unwrap();
        let pool = format!(
            "apiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: dns, namespace: default}}\nspec:\n  backends:\n    - {{address: \"{}\", port: 5353}}\n    - {{address: \"{}\", port: 5353}}\n",
            lab.host("web1").ipv4,
            lab.host("web2").ipv4
        );
        std::fs::write(dir.join("dns.yaml"), pool).unwrap();
    });
    // The UDP backends: each answers NAME:query.
    let echo = "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',5353))\nwhile True:\n d,a=s.recvfrom(2048)\n s.sendto(sys.argv[1].encode()+b':'+d,a)\n";
    for web in ["web1", "web2"] {
        s.lab.spawn(web, "python3", &["-c", echo, web]).unwrap();
    }
    assert!(
        s.lab
            .wait_sole_holder(vip(), "lb1", Duration::from_secs(10)),
        "{}",
        s.lab.logs()
    );
    let check = |answers: Vec<Option<(String, SocketAddr)>>| {
        let mut by = std::collections::BTreeMap::new();
        for (i, a) in answers.into_iter().enumerate() {
            let (reply, from) = a.unwrap_or_else(|| panic!("query {i} got no answer"));
            assert_eq!(
                from,
                SocketAddr::new(vip(), 53),
                "answers come from the VIP"
            );
            let web = reply.split(':').next().unwrap_or_default().to_string();
            assert_eq!(reply, format!("{web}:q{i}"));
            *by.entry(web).or_insert(0) += 1;
        }
        by
    };
    let before = check(ask_udp(&s.lab, 10));
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        ["web1", "web2"],
        "{before:?}"
    );
    // The master's link is cut: lb2 takes the VIP, and the queries are answered again.
    s.lab.cut("lb1").unwrap();
    assert!(
        s.lab.wait_sole_holder(vip(), "lb2", Duration::from_secs(8)),
        "{}",
        s.lab.logs()
    );
    let after = check(ask_udp(&s.lab, 10));
    assert_eq!(after.values().sum::<i32>(), 10, "{after:?}");
    eprintln!("UDP through the VIP: {before:?} before the cut, {after:?} from lb2 after it");
}
