//! The rendering's tests: a golden configuration, determinism, and refused values.
use super::*;

/// A peer in AS 64500 with short timers and nothing else (other modules' tests too).
pub(crate) fn peer(name: &str, address: &str) -> PeerConfig {
    PeerConfig {
        name: name.into(),
        address: address.parse().unwrap(),
        asn: 64500,
        port: 179,
        hold_time: Duration::from_secs(9),
        keepalive: Duration::from_secs(3),
        password: None,
        bfd: None,
        communities: Vec::new(),
        local_pref: None,
    }
}

fn route(prefix: &str, graceful_shutdown: bool) -> RouteConfig {
    RouteConfig {
        prefix: prefix.parse().unwrap(),
        graceful_shutdown,
    }
}

/// An IPv6 peer with communities, an IPv4 one with BFD, a password, standard, large and
/// well-known communities and a local preference; one route in graceful shutdown.
fn small() -> FrrConfig {
    FrrConfig {
        asn: 64512,
        router_id: Ipv4Addr::new(10, 77, 0, 2),
        peers: vec![
            PeerConfig {
                communities: vec!["64500:200".into()],
                ..peer("tor-v6", "fd77::1")
            },
            PeerConfig {
                password: Some("s3cret!".into()),
                bfd: Some(BfdConfig {
                    receive: Duration::from_millis(100),
                    transmit: Duration::from_millis(300),
                    multiplier: 3,
                }),
                communities: vec!["no-export".into(), "64500:100".into(), "64500:1:2".into()],
                local_pref: Some(200),
                ..peer("tor", "10.77.0.1")
            },
        ],
        routes: vec![
            route("fd96::1", false),
            route("10.96.0.2", true),
            route("10.96.0.1", false),
        ],
    }
}

/// As FRR 8.4 takes it: frr-reload.py applies it with no warning and, once applied, finds
/// nothing to remove but the host name (it adds back only what FRR does not show: defaults and
/// the port).
const SMALL: &str = r#"! Written by buoy-agent for its BGP mode: changes made here are overwritten.
frr defaults datacenter
bgp route-map delay-timer 1
!
ip prefix-list buoy-graceful-shutdown-v4 seq 5 permit 10.96.0.2/32
!
route-map buoy-in deny 10
exit
!
route-map buoy-tor-out permit 10
 match ip address prefix-list buoy-graceful-shutdown-v4
 set community 64500:100 graceful-shutdown no-export additive
 set large-community 64500:1:2 additive
 set local-preference 0
exit
!
route-map buoy-tor-out permit 20
 set community 64500:100 no-export additive
 set large-community 64500:1:2 additive
 set local-preference 200
exit
!
route-map buoy-tor-v6-out permit 20
 set community 64500:200 additive
exit
!
bfd
 profile buoy-tor
  detect-multiplier 3
  receive-interval 100
  transmit-interval 300
 exit
 !
exit
!
router bgp 64512
 bgp router-id 10.77.0.2
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 no bgp network import-check
 neighbor 10.77.0.1 remote-as 64500
 neighbor 10.77.0.1 port 179
 neighbor 10.77.0.1 timers 3 9
 neighbor 10.77.0.1 password s3cret!
 neighbor 10.77.0.1 bfd
 neighbor 10.77.0.1 bfd profile buoy-tor
 neighbor fd77::1 remote-as 64500
 neighbor fd77::1 port 179
 neighbor fd77::1 timers 3 9
 !
 address-family ipv4 unicast
  network 10.96.0.1/32
  network 10.96.0.2/32
  neighbor 10.77.0.1 activate
  neighbor 10.77.0.1 route-map buoy-in in
  neighbor 10.77.0.1 route-map buoy-tor-out out
 exit-address-family
 !
 address-family ipv6 unicast
  network fd96::1/128
  neighbor fd77::1 activate
  neighbor fd77::1 route-map buoy-in in
  neighbor fd77::1 route-map buoy-tor-v6-out out
 exit-address-family
exit
!
"#;

#[test]
fn a_small_configuration_renders_as_frr_reads_it() {
    assert_eq!(render(&small()).unwrap(), SMALL);
}

#[test]
fn debug_output_hides_the_password() {
    let text = format!("{:?}", small());
    assert!(!text.contains("s3cret"), "{text}");
    assert!(text.contains("<hidden>"), "{text}");
}

#[test]
fn rendering_is_deterministic() {
    let mut shuffled = small();
    shuffled.peers.reverse();
    shuffled.routes.reverse();
    shuffled.peers[0].communities.reverse();
    // The same address twice: announced once, in graceful shutdown if either says so.
    shuffled.routes.push(route("10.96.0.2", false));
    assert_eq!(render(&shuffled).unwrap(), SMALL);
}

#[test]
fn without_graceful_shutdown_there_is_no_prefix_list() {
    let mut c = small();
    c.routes.retain(|r| !r.graceful_shutdown);
    c.peers.truncate(1);
    let text = render(&c).unwrap();
    assert!(!text.contains("prefix-list"), "{text}");
    assert!(!text.contains("bfd"), "{text}");
    assert!(
        text.contains(
            "route-map buoy-tor-v6-out permit 20\n set community 64500:200 additive\nexit\n"
        ),
        "{text}"
    );
}

#[test]
fn when_every_route_of_a_family_drains_no_prefix_list_is_needed() {
    let mut c = small();
    for r in &mut c.routes {
        r.graceful_shutdown = r.prefix.is_ipv6();
    }
    let text = render(&c).unwrap();
    assert!(!text.contains("prefix-list"), "{text}");
    // IPv6: every route drains; IPv4: none does.
    assert!(
        text.contains("route-map buoy-tor-v6-out permit 10\n set community 64500:200 graceful-shutdown additive\n set local-preference 0\nexit\n"),
        "{text}"
    );
    assert!(!text.contains("route-map buoy-tor-out permit 10"), "{text}");
}

#[test]
fn withdrawals_are_the_routes_no_longer_announced() {
    let old = small();
    let mut new = small();
    new.routes = vec![route("10.96.0.2", false)];
    assert_eq!(
        withdrawals(&old, &new).as_deref(),
        Some(
            "router bgp 64512\n address-family ipv4 unicast\n  no network 10.96.0.1/32\n exit-address-family\n address-family ipv6 unicast\n  no network fd96::1/128\n exit-address-family\nexit\n"
        )
    );
    assert_eq!(withdrawals(&old, &old), None);
    assert_eq!(
        withdrawals(&new, &old),
        None,
        "nothing withdrawn, only added"
    );
    new.asn = 64513;
    assert_eq!(
        withdrawals(&old, &new),
        None,
        "another AS: frr-reload.py's job"
    );
}

#[test]
fn values_that_would_add_lines_or_tokens_are_refused() {
    let base = small();
    type Change = Box<dyn Fn(&mut PeerConfig)>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "password",
            Box::new(|p| p.password = Some("pw\nrouter bgp 1".into())),
        ),
        (
            "password",
            Box::new(|p| p.password = Some("two words".into())),
        ),
        (
            "password",
            Box::new(|p| p.password = Some("tab\there".into())),
        ),
        ("password", Box::new(|p| p.password = Some(String::new()))),
        ("password", Box::new(|p| p.password = Some("x".repeat(81)))),
        ("name", Box::new(|p| p.name = "tor\n!".into())),
        ("name", Box::new(|p| p.name = "tor out".into())),
        ("name", Box::new(|p| p.name = "Tor".into())),
        (
            "community",
            Box::new(|p| p.communities = vec!["1:2 additive\nexit".into()]),
        ),
        (
            "community",
            Box::new(|p| p.communities = vec!["65536:1".into()]),
        ),
        (
            "community",
            Box::new(|p| p.communities = vec!["no-such-name".into()]),
        ),
        (
            "holdTime",
            Box::new(|p| p.hold_time = Duration::from_secs(2)),
        ),
        (
            "holdTime",
            Box::new(|p| p.hold_time = Duration::from_millis(9500)),
        ),
        (
            "keepaliveTime",
            Box::new(|p| p.keepalive = Duration::from_secs(10)),
        ),
        (
            "receiveInterval",
            Box::new(|p| {
                p.bfd = Some(BfdConfig {
                    receive: Duration::from_millis(5),
                    transmit: Duration::from_millis(100),
                    multiplier: 3,
                })
            }),
        ),
        (
            "detectMultiplier",
            Box::new(|p| {
                p.bfd = Some(BfdConfig {
                    receive: Duration::from_millis(100),
                    transmit: Duration::from_millis(100),
                    multiplier: 1,
                })
            }),
        ),
        ("peerPort", Box::new(|p| p.port = 0)),
        ("peerASN", Box::new(|p| p.asn = 0)),
    ];
    for (field, change) in cases {
        let mut c = base.clone();
        change(&mut c.peers[1]);
        let err = render(&c).unwrap_err();
        match &err {
            ConfigError::Peer { peer, problem } => {
                assert!(problem.contains(field), "{field}: {err}");
                assert!(!peer.is_empty());
            }
            other => panic!("{field}: {other}"),
        }
    }
}

#[test]
fn peers_that_collide_and_node_settings_are_refused() {
    let mut c = small();
    c.peers[0].address = c.peers[1].address;
    assert!(
        matches!(render(&c), Err(ConfigError::Node(e)) if e.contains("both peer with 10.77.0.1"))
    );
    let mut c = small();
    c.peers[0].name = "tor".into();
    assert!(
        matches!(render(&c), Err(ConfigError::Node(e)) if e.contains("two peers are named tor"))
    );
    let mut c = small();
    c.asn = 0;
    assert!(matches!(render(&c), Err(ConfigError::Node(_))));
}
