//! Buoy and Debian's keepalived share one VIP: both directions, VRRP v3 and v2 (PASS
//! authentication), multicast and unicast. After every fault exactly one namespace holds the VIP,
//! and it is the one both implementations say is master. A capture of Buoy's adverts decoded by
//! tshark shows valid VRRP with correct checksums.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    net::IpAddr,
    thread,
    time::{Duration, Instant},
};

use buoy_tests::{
    keepalived,
    netlab::{Lab, ns_exec},
};

const AGENT: &str = env!("CARGO_BIN_EXE_buoy-agent");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Impl {
    Buoy,
    Keepalived,
}

struct Scenario {
    version: u8,
    unicast: bool,
    password: Option<&'static str>,
    /// Who has the higher priority (150 against 100).
    master: Impl,
}

fn keepalived_conf(s: &Scenario, priority: u8, me: &str, peer: &str) -> String {
    let instance = keepalived::Instance {
        interface: "eth0".into(),
        vrid: 10,
        priority,
        advert_int: if s.version == 2 { 1.0 } else { 0.1 },
        addresses: vec!["10.77.0.100/24".into()],
        password: s.password.map(String::from),
        unicast: s.unicast.then(|| (me.to_string(), peer.to_string())),
    };
    keepalived::config(s.version, &[instance])
}

/// Starts the two routers: host n1 runs `s.master` with priority 150, n2 the other one with 100.
fn start(lab: &mut Lab, s: &Scenario) -> (usize, usize) {
    let mut procs = Vec::new();
    for (host, me, peer, implementation, priority) in [
        ("n1", "10.77.0.1", "10.77.0.2", s.master, 150u8),
        (
            "n2",
            "10.77.0.2",
            "10.77.0.1",
            if s.master == Impl::Buoy {
                Impl::Keepalived
            } else {
                Impl::Buoy
            },
            100,
        ),
    ] {
        let p = match implementation {
            Impl::Keepalived => {
                keepalived::start(lab, host, &keepalived_conf(s, priority, me, peer), true)
                    .unwrap()
                    .0
            }
            Impl::Buoy => {
                let prio = priority.to_string();
                let version = s.version.to_string();
                let advert = if s.version == 2 { "1s" } else { "100ms" };
                let mut args = vec![
                    "vrrp",
                    "--interface",
                    "eth0",
                    "--vrid",
                    "10",
                    "--priority",
                    &prio,
                    "--address",
                    "10.77.0.100/24",
                    "--advert-interval",
                    advert,
                    "--version",
                    &version,
                ];
                if s.unicast {
                    args.extend(["--unicast-peer", peer]);
                }
                if let Some(p) = s.password {
                    args.extend(["--auth-pass", p]);
                }
                lab.spawn(host, AGENT, &args).unwrap()
            }
        };
        procs.push(p);
    }
    (procs[0], procs[1])
}

/// The state each implementation says it is in, from its own log.
fn said_state(lab: &mut Lab, proc: usize, implementation: Impl) -> Option<&'static str> {
    let lines = lab.proc(proc).output();
    lines.iter().rev().find_map(|l| match implementation {
        Impl::Buoy => [
            ("state=MASTER", "MASTER"),
            ("state=BACKUP", "BACKUP"),
            ("state=FAULT", "FAULT"),
            ("state=INIT", "INIT"),
        ]
        .into_iter()
        .find(|(n, _)| l.contains(n))
        .map(|(_, s)| s),
        Impl::Keepalived => [
            ("Entering MASTER STATE", "MASTER"),
            ("Entering BACKUP STATE", "BACKUP"),
            ("Entering FAULT STATE", "FAULT"),
        ]
        .into_iter()
        .find(|(n, _)| l.contains(n))
        .map(|(_, s)| s),
    })
}

/// Waits until `holder` alone has the VIP and both implementations agree on who is master.
#[track_caller]
fn expect_agreement(
    lab: &mut Lab,
    routers: [(&str, usize, Impl); 2],
    holder: &str,
    master_alive: bool,
) {
    let vip: IpAddr = "10.77.0.100".parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut stable = 0;
    loop {
        let holders = lab.holders(vip);
        let states: Vec<Option<&str>> = routers
            .iter()
            .map(|(_, p, i)| said_state(lab, *p, *i))
            .collect();
        let agree = routers.iter().zip(&states).all(|((host, _, _), state)| {
            if *host == holder {
                *state == Some("MASTER")
            } else {
                !master_alive || *state != Some("MASTER")
            }
        });
        if holders == [holder] && agree {
            stable += 1;
            if stable == 5 {
                return;
            }
        } else {
            stable = 0;
        }
        if Instant::now() > deadline {
            panic!(
                "expected {holder} alone to hold the VIP with agreement; holders {holders:?}, states {states:?}\n{}",
                lab.logs()
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn run(s: Scenario) {
    let mut lab = Lab::new(&["n1", "n2"]).unwrap();
    let (p1, p2) = start(&mut lab, &s);
    let other = if s.master == Impl::Buoy {
        Impl::Keepalived
    } else {
        Impl::Buoy
    };
    let routers = [("n1", p1, s.master), ("n2", p2, other)];
    expect_agreement(&mut lab, routers, "n1", true);
    // Fault: the master's link is cut. The other takes over; the cut one must not hold the VIP.
    lab.cut("n1").unwrap();
    expect_agreement(&mut lab, routers, "n2", true);
    // Recovery: the higher priority preempts back.
    lab.restore("n1").unwrap();
    expect_agreement(&mut lab, routers, "n1", true);
    // Planned stop of the master: it resigns (priority 0) and the other takes over.
    lab.proc(p1).signal(libc::SIGTERM);
    lab.proc(p1).wait_exit(Duration::from_secs(10));
    expect_agreement(
        &mut lab,
        [("n2", p2, other), ("n1", p1, s.master)],
        "n2",
        false,
    );
}

#[test]
fn v3_multicast_keepalived_master_buoy_backup() {
    run(Scenario {
        version: 3,
        unicast: false,
        password: None,
        master: Impl::Keepalived,
    });
}

#[test]
fn v3_unicast_buoy_master_keepalived_backup() {
    run(Scenario {
        version: 3,
        unicast: true,
        password: None,
        master: Impl::Buoy,
    });
}

#[test]
fn v2_pass_multicast_buoy_master_keepalived_backup() {
    run(Scenario {
        version: 2,
        unicast: false,
        password: Some("1111"),
        master: Impl::Buoy,
    });
}

#[test]
fn v2_pass_unicast_keepalived_master_buoy_backup() {
    run(Scenario {
        version: 2,
        unicast: true,
        password: Some("s3cret"),
        master: Impl::Keepalived,
    });
}

#[test]
fn tshark_decodes_buoy_adverts_as_valid_vrrp() {
    let mut lab = Lab::new(&["n1", "n2"]).unwrap();
    let v3 = lab
        .spawn(
            "n1",
            AGENT,
            &[
                "vrrp",
                "--interface",
                "eth0",
                "--vrid",
                "21",
                "--priority",
                "100",
                "--address",
                "10.77.0.100/24",
                "--advert-interval",
                "100ms",
            ],
        )
        .unwrap();
    let v2 = lab
        .spawn(
            "n1",
            AGENT,
            &[
                "vrrp",
                "--interface",
                "eth0",
                "--vrid",
                "22",
                "--priority",
                "90",
                "--address",
                "10.77.0.101",
                "--version",
                "2",
                "--auth-pass",
                "1111",
            ],
        )
        .unwrap();
    let v6 = lab
        .spawn(
            "n1",
            AGENT,
            &[
                "vrrp",
                "--interface",
                "eth0",
                "--vrid",
                "23",
                "--priority",
                "80",
                "--address",
                "fd77::100/64",
                "--advert-interval",
                "100ms",
            ],
        )
        .unwrap();
    for p in [v3, v2, v6] {
        assert!(
            lab.proc(p)
                .wait_for_line("state=MASTER", Duration::from_secs(10))
                .is_some(),
            "{}",
            lab.logs()
        );
    }
    let pcap = lab.dir().join("vrrp.pcap");
    let ns = lab.host("n2").ns.clone();
    let pcap_s = pcap.display().to_string();
    ns_exec(
        &ns,
        &[
            "tshark",
            "-q",
            "-i",
            "eth0",
            "-a",
            "duration:3",
            "-f",
            "ip proto 112 or ip6 proto 112",
            "-w",
            &pcap_s,
        ],
    )
    .unwrap();
    let fields = ns_exec(
        &ns,
        &[
            "tshark",
            "-r",
            &pcap_s,
            "-o",
            "vrrp.v3_checksum_as_in_v2:FALSE",
            "-T",
            "fields",
            "-E",
            "separator=,",
            "-e",
            "vrrp.version",
            "-e",
            "vrrp.virt_rtr_id",
            "-e",
            "vrrp.prio",
            "-e",
            "vrrp.checksum.status",
            "-e",
            "ip.ttl",
            "-e",
            "ipv6.hlim",
            "-e",
            "vrrp.ip_addr",
            "-e",
            "vrrp.ipv6_addr",
            "-e",
            "vrrp.auth_string",
        ],
    )
    .unwrap();
    let rows: Vec<Vec<&str>> = fields.lines().map(|l| l.split(',').collect()).collect();
    for (vrid, version, prio, addr) in [
        ("21", "3", "100", "10.77.0.100"),
        ("22", "2", "90", "10.77.0.101"),
        ("23", "3", "80", "fd77::100"),
    ] {
        let mine: Vec<&Vec<&str>> = rows.iter().filter(|r| r.get(1) == Some(&vrid)).collect();
        assert!(mine.len() >= 2, "no adverts for VRID {vrid} in:\n{fields}");
        for r in mine {
            assert_eq!(r[0], version, "{r:?}");
            assert_eq!(r[2], prio, "{r:?}");
            // Wireshark: 0 bad, 1 good, 2 unverified.
            assert_eq!(r[3], "1", "checksum status must be Good (1): {r:?}");
            assert!(r[4] == "255" || r[5] == "255", "TTL / hop limit 255: {r:?}");
            assert!(r[6] == addr || r[7] == addr, "{r:?}");
            if version == "2" {
                assert_eq!(r[8], "1111", "{r:?}");
            }
        }
    }
}
