//! The BGP mode's FRR driver against real FRR, in network namespaces: a "tor" namespace runs
//! FRR as the routers' side (explicit neighbors, `maximum-paths 8`, BFD at 100 ms × 3), and two
//! node namespaces run FRR driven only through `buoy_agent::bgp::Frr` with an `FrrConfig`.
//! Shows sessions established, ECMP on the tor's kernel, graceful shutdown's community, a
//! withdrawal without a session reset, BFD up, a wrong password reported while the other node
//! stays up, and bgpd stopped reported as not running. Needs root (CI runs it as root).
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use buoy_agent::bgp::{
    BfdConfig, Frr, FrrConfig, FrrError, PeerConfig, RouteConfig, SessionState, state::NO_ANSWER,
};
use buoy_crds::BgpSessionState;
use buoy_tests::{frr, netlab::Lab};

const PASSWORD: &str = "s3cret!";
const NODE_ASN: u32 = 64512;
const TOR_ASN: u32 = 64500;

/// The tor: every node's address as a neighbor in the node's AS with the password, BFD with
/// the `fast` profile, ECMP over up to 8 paths, and fd77::2 (n1) over IPv6.
fn tor_config() -> String {
    let mut c = String::from(
        "bfd\n profile fast\n  receive-interval 100\n  transmit-interval 100\n  detect-multiplier 3\n exit\nexit\n",
    );
    c.push_str(&format!(
        "router bgp {TOR_ASN}\n bgp router-id 10.77.0.1\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n bgp bestpath as-path multipath-relax\n"
    ));
    for n in ["10.77.0.2", "10.77.0.3", "fd77::2"] {
        c.push_str(&format!(
            " neighbor {n} remote-as {NODE_ASN}\n neighbor {n} password {PASSWORD}\n neighbor {n} bfd profile fast\n"
        ));
    }
    c.push_str(
        " address-family ipv4 unicast\n  maximum-paths 8\n  neighbor 10.77.0.2 activate\n  neighbor 10.77.0.3 activate\n exit-address-family\n address-family ipv6 unicast\n  maximum-paths 8\n  neighbor fd77::2 activate\n exit-address-family\nexit\n",
    );
    c
}

fn peer(name: &str, address: &str, password: &str, communities: &[&str]) -> PeerConfig {
    PeerConfig {
        name: name.into(),
        address: address.parse().unwrap(),
        asn: TOR_ASN,
        port: 179,
        hold_time: Duration::from_secs(9),
        keepalive: Duration::from_secs(3),
        password: Some(password.into()),
        bfd: Some(BfdConfig {
            receive: Duration::from_millis(100),
            transmit: Duration::from_millis(100),
            multiplier: 3,
        }),
        communities: communities.iter().map(|c| c.to_string()).collect(),
        local_pref: None,
    }
}

fn node_config(n: u8, peers: Vec<PeerConfig>, routes: &[(&str, bool)]) -> FrrConfig {
    FrrConfig {
        asn: NODE_ASN,
        router_id: Ipv4Addr::new(10, 77, 0, n),
        peers,
        routes: routes
            .iter()
            .map(|(a, shut)| RouteConfig {
                prefix: a.parse().unwrap(),
                graceful_shutdown: *shut,
            })
            .collect(),
    }
}

/// The lab (tor, n1, n2), FRR on each, the tor configured, and the nodes' drivers.
struct Setup {
    tor: frr::Frr,
    nodes: [(frr::Frr, Frr); 2],
    // Last: the daemons die with the lab, after the `frr::Frr` guards above.
    lab: Lab,
}

fn setup() -> Setup {
    let mut lab = Lab::new(&["tor", "n1", "n2"]).unwrap();
    let tor = frr::Frr::start(&mut lab, "tor").unwrap();
    tor.configure(&tor_config()).unwrap();
    let nodes = ["n1", "n2"].map(|h| {
        let f = frr::Frr::start(&mut lab, h).unwrap();
        let driver = Frr::new(f.dir.join("etc"))
            .pathspace(f.pathspace.clone())
            .vty_socket(f.vty_socket.clone());
        (f, driver)
    });
    Setup { tor, nodes, lab }
}

/// Polls `check` every 100 ms until it returns Some, for up to `within`.
async fn poll<T>(within: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn session(driver: &Frr, address: &str) -> SessionState {
    let address: IpAddr = address.parse().unwrap();
    driver
        .sessions()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.address == address)
        .unwrap_or_else(|| panic!("no session with {address}"))
}

/// Waits until the session is Established; its state.
async fn established(driver: &Frr, address: &str, lab: &Lab) -> SessionState {
    let up = poll(Duration::from_secs(30), async || {
        let s = session(driver, address).await;
        (s.state == BgpSessionState::Established).then_some(s)
    })
    .await;
    match up {
        Some(s) => s,
        None => panic!(
            "session with {address}: {:?}\n{}",
            session(driver, address).await,
            lab.logs()
        ),
    }
}

/// Applies and says how long it took.
async fn apply(driver: &Frr, config: &FrrConfig, what: &str) -> Duration {
    let started = Instant::now();
    let reloaded = driver.apply(config).await.unwrap();
    let took = started.elapsed();
    assert!(reloaded, "{what}: a new configuration is reloaded");
    eprintln!("apply ({what}): {took:?}");
    took
}

/// How many times the tor's session with `neighbor` came up.
fn tor_connections(tor: &frr::Frr, neighbor: &str) -> u64 {
    tor.json(&format!("show bgp neighbors {neighbor} json"))
        .unwrap()
        .pointer(&format!("/{neighbor}/connectionsEstablished"))
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
}

#[tokio::test]
async fn nodes_announce_through_frr_ecmp_graceful_shutdown_withdrawal_and_bfd() {
    let s = setup();
    let (lab, tor) = (&s.lab, &s.tor);
    let (n1, n2) = (&s.nodes[0].1, &s.nodes[1].1);
    let n1_peers = || {
        vec![
            peer("tor", "10.77.0.1", PASSWORD, &["64512:100", "64512:7:7"]),
            peer("tor6", "fd77::1", PASSWORD, &[]),
        ]
    };
    let routes = [
        ("10.96.0.10", false),
        ("10.96.0.11", false),
        ("fd96::10", false),
    ];
    apply(n1, &node_config(2, n1_peers(), &routes), "n1, first").await;
    let n2_config = node_config(
        3,
        vec![peer("tor", "10.77.0.1", PASSWORD, &[])],
        &[("10.96.0.10", false)],
    );
    apply(n2, &n2_config, "n2, first").await;
    assert!(
        !n2.apply(&n2_config).await.unwrap(),
        "the same configuration again is not reloaded"
    );

    // What FRR runs is what was rendered: frr-reload.py would remove nothing of it but the
    // host name (no lines of ours), and add back only what FRR does not show.
    let (delete, add) = s.nodes[0].0.reload_diff(&n1.config_file()).unwrap();
    assert!(
        delete.iter().all(|l| l.starts_with("no hostname")),
        "frr-reload.py would remove {delete:#?}"
    );
    let shown_as_default = [
        "router bgp 64512",
        " no bgp ebgp-requires-policy",
        " neighbor 10.77.0.1 port 179",
        " neighbor fd77::1 port 179",
        "bfd",
        " profile buoy-tor",
        " profile buoy-tor6",
        "  transmit-interval 100",
        "  receive-interval 100",
        "  detect-multiplier 3",
    ];
    assert!(
        add.iter().all(|l| shown_as_default.contains(&l.as_str())),
        "frr-reload.py would add {add:#?}"
    );

    for (driver, address) in [(n1, "10.77.0.1"), (n1, "fd77::1"), (n2, "10.77.0.1")] {
        let up = established(driver, address, lab).await;
        assert_eq!(up.reason, None);
        assert!(up.established_for.is_some(), "{up:?}");
    }

    // Both nodes announce 10.96.0.10: the tor's kernel has both as nexthops.
    let ecmp = poll(Duration::from_secs(15), async || {
        let hops = frr::kernel_nexthops(lab, "tor", "10.96.0.10/32");
        (hops == ["10.77.0.2", "10.77.0.3"]).then_some(hops)
    })
    .await;
    assert!(
        ecmp.is_some(),
        "ECMP route on the tor: {:?}\n{}",
        frr::kernel_nexthops(lab, "tor", "10.96.0.10/32"),
        tor.vtysh("show bgp ipv4 unicast").unwrap()
    );
    // IPv6 over the IPv6 session, and the peer's communities on the way out.
    let v6 = poll(Duration::from_secs(15), async || {
        let hops = frr::kernel_nexthops(lab, "tor", "fd96::10/128");
        (!hops.is_empty()).then_some(hops)
    })
    .await;
    assert!(v6.is_some(), "fd96::10/128 reaches the tor's kernel");
    assert_eq!(
        tor.communities("10.96.0.11/32"),
        Some(vec!["64512:100".to_string()])
    );
    let large = tor
        .json("show bgp ipv4 unicast 10.96.0.11/32 json")
        .unwrap()
        .pointer("/paths/0/largeCommunity/string")
        .and_then(|v| v.as_str().map(String::from));
    assert_eq!(large.as_deref(), Some("64512:7:7"));
    // The nodes learn nothing back from the tor.
    let learned = frr::kernel_nexthops(lab, "tor", "10.96.0.11/32");
    assert_eq!(learned, ["10.77.0.2"]);

    // BFD: up on both sides, at 100 ms × 3.
    let bfd = poll(Duration::from_secs(10), async || {
        let s = session(n1, "10.77.0.1").await;
        (s.bfd == Some(true)).then_some(s)
    })
    .await;
    assert!(bfd.is_some(), "{:?}", session(n1, "10.77.0.1").await);
    let peers = tor.json("show bfd peers json").unwrap();
    let n1_bfd = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer"] == "10.77.0.2")
        .unwrap_or_else(|| panic!("no BFD peer 10.77.0.2 on the tor: {peers}"));
    assert_eq!(n1_bfd["status"], "up", "{n1_bfd}");
    assert_eq!(n1_bfd["detect-multiplier"], 3, "{n1_bfd}");
    assert_eq!(n1_bfd["receive-interval"], 100, "{n1_bfd}");
    assert_eq!(n1_bfd["transmit-interval"], 100, "{n1_bfd}");

    // Graceful shutdown of 10.96.0.11: the tor receives it with 65535:0.
    let (before, read_before) = (session(n1, "10.77.0.1").await, Instant::now());
    let connections = tor_connections(tor, "10.77.0.2");
    let draining = [
        ("10.96.0.10", false),
        ("10.96.0.11", true),
        ("fd96::10", false),
    ];
    apply(
        n1,
        &node_config(2, n1_peers(), &draining),
        "n1, graceful shutdown",
    )
    .await;
    let started = Instant::now();
    let shut = poll(Duration::from_secs(15), async || {
        let c = tor.communities("10.96.0.11/32")?;
        c.contains(&"graceful-shutdown".to_string()).then_some(c)
    })
    .await;
    assert!(shut.is_some(), "{:?}", tor.communities("10.96.0.11/32"));
    eprintln!(
        "graceful shutdown seen on the tor {:?} after the apply",
        started.elapsed()
    );
    let by_value = tor
        .json("show bgp ipv4 unicast community 65535:0 json")
        .unwrap();
    assert!(
        by_value.pointer("/routes/10.96.0.11~132").is_some(),
        "the tor finds 10.96.0.11/32 by the community 65535:0: {by_value}"
    );

    // Withdrawal: 10.96.0.11 leaves the tor, the session stays up.
    apply(
        n1,
        &node_config(2, n1_peers(), &[("10.96.0.10", false), ("fd96::10", false)]),
        "n1, withdrawal",
    )
    .await;
    let started = Instant::now();
    let gone = poll(Duration::from_secs(15), async || {
        frr::kernel_nexthops(lab, "tor", "10.96.0.11/32")
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(gone.is_some(), "10.96.0.11/32 withdrawn from the tor");
    // Withdrawn in one vtysh run before frr-reload.py, which then finds what was rendered.
    let (delete, _) = s.nodes[0].0.reload_diff(&n1.config_file()).unwrap();
    assert!(
        delete.iter().all(|l| l.starts_with("no hostname")),
        "frr-reload.py would remove {delete:#?}"
    );
    eprintln!(
        "withdrawal seen on the tor {:?} after the apply",
        started.elapsed()
    );
    // FRR counts the uptime in whole seconds: long enough for it to show.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = session(n1, "10.77.0.1").await;
    let between = read_before.elapsed();
    assert_eq!(after.state, BgpSessionState::Established);
    let (up_before, up_after) = (
        before.established_for.unwrap(),
        after.established_for.unwrap(),
    );
    assert!(
        up_after + Duration::from_secs(1) >= up_before + between,
        "the session was not reset: up {up_before:?}, then {up_after:?}, {between:?} later"
    );
    assert_eq!(after.prefixes_sent, 1, "{after:?}");
    assert_eq!(tor_connections(tor, "10.77.0.2"), connections);
    assert_eq!(
        frr::kernel_nexthops(lab, "tor", "10.96.0.10/32"),
        ["10.77.0.2", "10.77.0.3"]
    );
}

#[tokio::test]
async fn a_wrong_password_is_reported_and_bgpd_stopped_is_not_running() {
    let mut s = setup();
    let (n1, n2) = (&s.nodes[0].1, &s.nodes[1].1);
    let routes = [("10.96.0.20", false)];
    apply(
        n1,
        &node_config(2, vec![peer("tor", "10.77.0.1", PASSWORD, &[])], &routes),
        "n1",
    )
    .await;
    apply(
        n2,
        &node_config(
            3,
            vec![peer("tor", "10.77.0.1", "not-the-password", &[])],
            &routes,
        ),
        "n2, wrong password",
    )
    .await;
    established(n1, "10.77.0.1", &s.lab).await;
    // Long enough for several connection attempts.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let wrong = session(n2, "10.77.0.1").await;
    assert_ne!(wrong.state, BgpSessionState::Established, "{wrong:?}");
    assert_eq!(wrong.reason.as_deref(), Some(NO_ANSWER), "{wrong:?}");
    let right = session(n1, "10.77.0.1").await;
    assert_eq!(right.state, BgpSessionState::Established, "{right:?}");
    assert_eq!(
        frr::kernel_nexthops(&s.lab, "tor", "10.96.0.20/32"),
        ["10.77.0.2"]
    );

    // Each host's daemons keep their pid files and sockets in their own directory, and
    // nothing in FRR's shared ones.
    for (f, _) in &s.nodes {
        for file in ["zebra.pid", "bgpd.pid", "bfdd.pid", "bgpd.vty", "zserv.api"] {
            assert!(f.dir.join(file).exists(), "{}/{file}", f.dir.display());
        }
        for d in f.shared_dirs() {
            let files = std::fs::read_dir(&d).map(|e| e.count()).unwrap_or(0);
            assert_eq!(files, 0, "{} is FRR's, not the test's", d.display());
        }
    }
    assert_ne!(s.nodes[0].0.dir, s.nodes[1].0.dir);

    // bgpd stopped: both reading and applying say FRR is not running.
    let bgpd = s.nodes[0].0.bgpd;
    s.lab.proc(bgpd).signal(libc::SIGTERM);
    assert!(
        s.lab
            .proc(bgpd)
            .wait_exit(Duration::from_secs(10))
            .is_some()
    );
    let (n1, n2) = (&s.nodes[0].1, &s.nodes[1].1);
    match n1.sessions().await {
        Err(FrrError::NotRunning(why)) => eprintln!("sessions with bgpd stopped: {why}"),
        other => panic!("sessions with bgpd stopped: {other:?}"),
    }
    let changed = node_config(2, vec![peer("tor", "10.77.0.1", PASSWORD, &[])], &[]);
    match n1.apply(&changed).await {
        Err(FrrError::NotRunning(why)) => eprintln!("apply with bgpd stopped: {why}"),
        other => panic!("apply with bgpd stopped: {other:?}"),
    }
    // The other node is not affected.
    assert_eq!(
        session(n2, "10.77.0.1").await.reason.as_deref(),
        Some(NO_ANSWER)
    );

    // Nothing of the daemons is left in FRR's own directories once the lab is gone.
    let shared: Vec<_> = std::iter::once(&s.tor)
        .chain(s.nodes.iter().map(|(f, _)| f))
        .flat_map(|f| f.shared_dirs())
        .collect();
    drop(s);
    for d in shared {
        assert!(!d.exists(), "{} is left behind", d.display());
    }
}
