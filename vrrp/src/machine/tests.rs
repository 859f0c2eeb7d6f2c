//! The state machine's unit tests: RFC 5798 timers and transitions, preemption, resignation,
//! faults, redundant adverts and connection handover, each fed events and virtual time.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config(priority: u8, ip: &str) -> Config {
    Config {
        version: Version::V3,
        priority,
        advert_interval: ms(1000),
        adverts_per_interval: 1,
        preempt: true,
        preempt_delay: Duration::ZERO,
        primary_address: ip.parse().unwrap(),
        handover_forward: Duration::ZERO,
    }
}

fn advert(from: &str, priority: u8) -> Received {
    Received {
        from: from.parse().unwrap(),
        priority,
        interval: ms(1000),
    }
}

#[test]
fn timers_follow_rfc_5798() {
    let m = Machine::new(config(100, "10.0.0.1"));
    // Skew = (256 - 100) * 1 s / 256 = 609.375 ms; Master_Down = 3 s + skew.
    assert_eq!(m.skew_time(), Duration::from_micros(609_375));
    assert_eq!(m.master_down_interval(), Duration::from_micros(3_609_375));
    let v2 = Machine::new(Config {
        version: Version::V2,
        advert_interval: ms(3000),
        ..config(100, "10.0.0.1")
    });
    assert_eq!(v2.master_down_interval(), Duration::from_micros(9_609_375));
}

#[test]
fn backup_becomes_master_after_master_down_interval() {
    let mut m = Machine::new(config(100, "10.0.0.1"));
    let a = m.startup(ms(0));
    assert_eq!(
        a,
        vec![Action::StateChanged {
            from: State::Initialize,
            to: State::Backup,
            reason: "startup"
        }]
    );
    assert_eq!(m.poll_timeout(), Some(Duration::from_micros(3_609_375)));
    assert!(
        m.handle_timeout(ms(3000)).is_empty(),
        "early timeout does nothing"
    );
    let a = m.handle_timeout(Duration::from_micros(3_609_375));
    assert_eq!(
        &a[..3],
        &[
            Action::BindVip,
            Action::SendAdvert { priority: 100 },
            Action::Announce
        ]
    );
    assert_eq!(m.state(), State::Master);
    assert_eq!(m.poll_timeout(), Some(Duration::from_micros(4_609_375)));
    assert_eq!(
        m.handle_timeout(Duration::from_micros(4_609_375)),
        vec![Action::SendAdvert { priority: 100 }]
    );
}

#[test]
fn owner_is_master_at_once() {
    let mut m = Machine::new(config(255, "10.0.0.1"));
    m.startup(ms(0));
    assert_eq!(m.state(), State::Master);
}

#[test]
fn adverts_from_a_better_master_keep_a_backup_down() {
    let mut m = Machine::new(config(100, "10.0.0.1"));
    m.startup(ms(0));
    for t in (1000..10_000).step_by(1000) {
        assert!(m.handle_advert(ms(t), advert("10.0.0.2", 150)).is_empty());
        m.handle_timeout(ms(t + 1));
        assert_eq!(m.state(), State::Backup);
    }
}

#[test]
fn backup_preempts_lower_master_only_with_preempt() {
    let mut m = Machine::new(config(150, "10.0.0.1"));
    m.startup(ms(0));
    m.handle_advert(ms(1000), advert("10.0.0.2", 100));
    m.handle_advert(ms(2000), advert("10.0.0.2", 100));
    m.handle_timeout(m.poll_timeout().unwrap());
    assert_eq!(
        m.state(),
        State::Master,
        "lower adverts are discarded, so the timer runs out"
    );

    let mut np = Machine::new(Config {
        preempt: false,
        ..config(150, "10.0.0.1")
    });
    np.startup(ms(0));
    for t in (1000..20_000).step_by(1000) {
        np.handle_advert(ms(t), advert("10.0.0.2", 100));
        np.handle_timeout(ms(t + 1));
    }
    assert_eq!(np.state(), State::Backup);
}

#[test]
fn a_master_answers_a_lower_master_with_an_advert_and_a_new_announcement() {
    let mut m = Machine::new(config(150, "10.0.0.1"));
    m.startup(ms(0));
    m.handle_timeout(m.poll_timeout().unwrap());
    assert_eq!(m.state(), State::Master);
    let actions = m.handle_advert(ms(5000), advert("10.0.0.2", 149));
    assert_eq!(
        actions,
        vec![
            Action::SendAdvert { priority: 150 },
            Action::Reannounce {
                again_after: ms(1000)
            }
        ],
        "the lower router may have announced the VIP too"
    );
    assert_eq!(m.state(), State::Master);
}

#[test]
fn preempt_delay_holds_back_preemption() {
    let mut m = Machine::new(Config {
        preempt_delay: ms(10_000),
        ..config(150, "10.0.0.1")
    });
    m.startup(ms(0));
    for t in (1000..10_000).step_by(1000) {
        m.handle_advert(ms(t), advert("10.0.0.2", 100));
        m.handle_timeout(ms(t + 1));
        assert_eq!(m.state(), State::Backup, "at {t} ms");
    }
    m.handle_advert(ms(10_000), advert("10.0.0.2", 100));
    m.handle_advert(ms(11_000), advert("10.0.0.2", 100));
    let deadline = m.poll_timeout().unwrap();
    assert!(deadline < ms(14_000));
    m.handle_timeout(deadline);
    assert_eq!(m.state(), State::Master);
}

#[test]
fn master_yields_to_higher_priority_and_to_higher_address_on_ties() {
    let mut m = Machine::new(config(100, "10.0.0.5"));
    m.startup(ms(0));
    m.handle_timeout(m.poll_timeout().unwrap());
    let stay = vec![
        Action::SendAdvert { priority: 100 },
        Action::Reannounce {
            again_after: ms(1000),
        },
    ];
    assert_eq!(
        m.handle_advert(ms(5000), advert("10.0.0.4", 100)),
        stay,
        "tie, lower address: we stay (and answer it)"
    );
    assert_eq!(
        m.handle_advert(ms(5001), advert("10.0.0.9", 99)),
        stay,
        "lower priority: we stay (and answer it)"
    );
    assert_eq!(m.state(), State::Master);
    let a = m.handle_advert(ms(5002), advert("10.0.0.6", 100));
    assert_eq!(
        a[..2],
        [Action::SendAdvert { priority: 100 }, Action::ReleaseVip],
        "a last advert, so the winner announces again, then the VIP goes"
    );
    assert_eq!(m.state(), State::Backup);
}

#[test]
fn resign_advert_makes_backup_take_over_after_skew() {
    let mut m = Machine::new(config(200, "10.0.0.1"));
    m.startup(ms(0));
    m.handle_advert(ms(1000), advert("10.0.0.2", 250));
    m.handle_advert(ms(1500), advert("10.0.0.2", 0));
    // Skew at priority 200 and 1 s: 56 * 1000 / 256 = 218.75 ms.
    assert_eq!(m.poll_timeout(), Some(Duration::from_micros(1_718_750)));
}

#[test]
fn graceful_shutdown_keeps_the_vip_until_the_new_master_speaks() {
    let mut m = Machine::new(config(100, "10.0.0.1"));
    m.startup(ms(0));
    m.handle_timeout(m.poll_timeout().unwrap());
    let a = m.shutdown(ms(10_000));
    assert_eq!(a[0], Action::SendAdvert { priority: 0 });
    assert!(!a.contains(&Action::ReleaseVip));
    assert!(m.holds_vip());
    assert!(
        m.handle_timeout(ms(10_900)).is_empty(),
        "no more adverts while resigning"
    );
    assert!(
        m.handle_advert(ms(10_950), advert("10.0.0.2", 0))
            .is_empty(),
        "another resigning router is not a new master"
    );
    let a = m.handle_advert(ms(11_000), advert("10.0.0.2", 99));
    assert_eq!(a[0], Action::ReleaseVip);
    assert_eq!(a.last(), Some(&Action::Stopped));
    assert!(!m.holds_vip());
}

#[test]
fn graceful_shutdown_alone_gives_up_after_a_deadline() {
    let mut m = Machine::new(config(100, "10.0.0.1"));
    m.startup(ms(0));
    m.handle_timeout(m.poll_timeout().unwrap());
    m.shutdown(ms(10_000));
    let a = m.handle_timeout(m.poll_timeout().unwrap());
    assert_eq!(a[0], Action::ReleaseVip);
    assert_eq!(a.last(), Some(&Action::Stopped));
}

#[test]
fn fault_releases_and_recovery_returns_to_backup() {
    let mut m = Machine::new(config(100, "10.0.0.1"));
    m.startup(ms(0));
    m.handle_timeout(m.poll_timeout().unwrap());
    let a = m.set_fault(ms(5000), true, "interface down");
    assert_eq!(
        &a[..2],
        &[Action::SendAdvert { priority: 0 }, Action::ReleaseVip]
    );
    assert_eq!(m.state(), State::Fault);
    assert_eq!(m.poll_timeout(), None);
    assert!(m.handle_advert(ms(5500), advert("10.0.0.2", 50)).is_empty());
    m.set_fault(ms(6000), false, "interface up");
    assert_eq!(m.state(), State::Backup);
}

#[test]
fn priority_change_is_advertised_at_once_by_a_master() {
    let mut m = Machine::new(config(100, "10.0.0.1"));
    m.startup(ms(0));
    m.handle_timeout(m.poll_timeout().unwrap());
    assert_eq!(
        m.set_priority(ms(5000), 90),
        vec![Action::SendAdvert { priority: 90 }]
    );
    assert_eq!(m.effective_priority(), 90);
}

#[test]
fn v3_backup_learns_the_masters_interval() {
    let mut m = Machine::new(config(100, "10.0.0.1"));
    m.startup(ms(0));
    m.handle_advert(
        ms(100),
        Received {
            from: "10.0.0.2".parse().unwrap(),
            priority: 200,
            interval: ms(100),
        },
    );
    assert_eq!(m.master_adver_interval(), ms(100));
    assert_eq!(
        m.poll_timeout(),
        Some(ms(100) + ms(300) + Duration::from_nanos(60_937_500))
    );
}

#[test]
fn a_master_sends_redundant_copies_shortly_after_each_advert() {
    let mut m = Machine::new(Config {
        adverts_per_interval: 4,
        ..config(100, "10.0.0.1")
    });
    m.startup(ms(0));
    let became = m.poll_timeout().unwrap();
    m.handle_timeout(became);
    assert_eq!(m.state(), State::Master);
    let mut sent = Vec::new();
    while let Some(t) = m.poll_timeout() {
        if t > became + ms(2000) {
            break;
        }
        if m.handle_timeout(t) == vec![Action::SendAdvert { priority: 100 }] {
            sent.push((t - became).as_millis());
        }
    }
    assert_eq!(
        sent,
        [20, 40, 60, 1000, 1020, 1040, 1060, 2000],
        "each interval: the advert, then three copies 20 ms apart"
    );
    // An answer to another router starts an interval too.
    m.handle_advert(ms(10_000), advert("10.0.0.2", 50));
    assert_eq!(m.poll_timeout(), Some(ms(10_020)));
    m.set_priority(ms(11_000), 90);
    assert_eq!(m.poll_timeout(), Some(ms(11_020)));
}

#[test]
fn adverts_per_interval_is_clamped_and_leaves_backup_timing_alone() {
    for (n, interval, gap) in [
        (0, 1000, 20_000),
        (2, 1000, 20_000),
        (4, 1000, 20_000),
        (9, 1000, 20_000),
        (2, 10, 5_000),
        (4, 10, 2_500),
    ] {
        let m = Machine::new(Config {
            adverts_per_interval: n,
            advert_interval: ms(interval),
            ..config(100, "10.0.0.1")
        });
        assert_eq!(m.copy_gap().as_micros(), gap, "{n} per {interval} ms");
        // What peers (and our own backup side) wait is the interval's business only.
        assert_eq!(
            m.master_down_interval(),
            3 * ms(interval) + ms(interval) * 156 / 256
        );
    }
}

/// Whether a backup stays Backup for 30 s while every run of 5 adverts of the master is lost
/// and the 6th arrives.
fn backup_survives_bursts_of_loss(adverts_per_interval: u8) -> bool {
    let mut master = Machine::new(Config {
        adverts_per_interval,
        ..config(200, "10.0.0.2")
    });
    let mut backup = Machine::new(config(100, "10.0.0.1"));
    master.startup(ms(0));
    let mut now = master.poll_timeout().unwrap();
    master.handle_timeout(now);
    // The backup starts hearing the new master's first advert.
    backup.startup(now);
    backup.handle_advert(now, advert("10.0.0.2", 200));
    let mut sent = 0;
    while now < ms(30_000) && backup.state() == State::Backup {
        let (t_master, t_backup) = (
            master.poll_timeout().unwrap(),
            backup.poll_timeout().unwrap(),
        );
        now = t_master.min(t_backup);
        if t_backup <= t_master {
            backup.handle_timeout(now);
        } else if master.handle_timeout(now) == vec![Action::SendAdvert { priority: 200 }] {
            sent += 1;
            if sent % 6 == 0 {
                backup.handle_advert(now, advert("10.0.0.2", 200));
            }
        }
    }
    backup.state() == State::Backup
}

#[test]
fn redundant_adverts_ride_out_losses_that_make_a_backup_take_over() {
    // 5 lost adverts: 5 s of silence at one per interval (over Master_Down_Interval, 3.6 s),
    // 2.5 s at two.
    assert!(!backup_survives_bursts_of_loss(1));
    assert!(backup_survives_bursts_of_loss(2));
}

fn forwarding(handover_forward: Duration) -> Machine {
    let mut m = Machine::new(Config {
        handover_forward,
        ..config(200, "10.0.0.1")
    });
    m.startup(ms(0));
    m
}

fn forwards(actions: &[Action]) -> Vec<Option<IpAddr>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Forward { to } => Some(*to),
            _ => None,
        })
        .collect()
}

#[test]
fn forwarding_points_only_at_known_peers() {
    let mut m = forwarding(ms(10_000));
    let peer: IpAddr = "10.0.0.2".parse().unwrap();
    assert!(m.set_known_peers([peer].into()).is_empty());
    // A spoofed advert from any other source never becomes the forwarding target.
    assert!(forwards(&m.handle_advert(ms(100), advert("10.9.9.9", 250))).is_empty());
    assert_eq!(m.forwarding_to(), None);
    assert_eq!(
        forwards(&m.handle_advert(ms(1100), advert("10.0.0.2", 250))),
        [Some(peer)]
    );
    // The peer leaves the VirtualIP: forwarding to it stops.
    assert_eq!(forwards(&m.set_known_peers(Default::default())), [None]);
    // A takeover from a resigning unknown master forwards nothing.
    let resign = m.handle_advert(ms(2100), advert("10.9.9.9", 0));
    assert!(forwards(&resign).is_empty());
    let took = m.handle_timeout(ms(3000));
    assert!(took.contains(&Action::BindVip), "{took:?}");
    assert!(forwards(&took).iter().all(Option::is_none), "{took:?}");
}

#[test]
fn a_backup_points_forwarding_at_the_master_it_hears() {
    let mut m = forwarding(ms(10_000));
    let master: IpAddr = "10.0.0.2".parse().unwrap();
    assert_eq!(
        forwards(&m.handle_advert(ms(100), advert("10.0.0.2", 250))),
        [Some(master)]
    );
    // Once per change of master, not per advert.
    assert!(forwards(&m.handle_advert(ms(1100), advert("10.0.0.2", 250))).is_empty());
    assert_eq!(
        forwards(&m.handle_advert(ms(2100), advert("10.0.0.3", 250))),
        [Some("10.0.0.3".parse().unwrap())]
    );
}

#[test]
fn taking_over_from_a_resigning_master_forwards_to_it_for_the_window() {
    let mut m = forwarding(ms(10_000));
    m.handle_advert(ms(100), advert("10.0.0.2", 250));
    m.handle_advert(ms(1100), advert("10.0.0.2", PRIORITY_RESIGN));
    let a = m.handle_timeout(ms(1100) + m.skew_time());
    assert_eq!(m.state(), State::Master);
    assert!(forwards(&a).is_empty(), "still pointed at 10.0.0.2: {a:?}");
    let end = ms(1100) + m.skew_time() + ms(10_000);
    let mut until_end = Vec::new();
    let mut t = ms(1100) + m.skew_time();
    while t < end {
        t = m.poll_timeout().unwrap().min(end);
        until_end.extend(m.handle_timeout(t));
    }
    assert_eq!(forwards(&until_end), [None], "the window ends at {end:?}");
    assert_eq!(m.state(), State::Master);
}

#[test]
fn preempting_a_live_master_forwards_to_it() {
    let mut m = forwarding(ms(10_000));
    // A lower-priority master keeps advertising; we preempt when our timer runs out.
    let mut actions = Vec::new();
    let mut t = ms(0);
    while m.state() == State::Backup {
        t += ms(1000);
        let next = m.poll_timeout().unwrap();
        if next <= t {
            actions.extend(m.handle_timeout(next));
        } else {
            actions.extend(m.handle_advert(t, advert("10.0.0.2", 100)));
        }
    }
    assert_eq!(forwards(&actions), [Some("10.0.0.2".parse().unwrap())]);
}

#[test]
fn taking_over_from_a_dead_master_forwards_nowhere() {
    let mut m = forwarding(ms(10_000));
    m.handle_advert(ms(100), advert("10.0.0.2", 250));
    // Silence: Master_Down_Interval after the last advert.
    let at = m.poll_timeout().unwrap();
    let a = m.handle_timeout(at);
    assert_eq!(m.state(), State::Master);
    assert_eq!(forwards(&a), [None]);
}

#[test]
fn without_a_window_nothing_is_forwarded() {
    let mut m = forwarding(Duration::ZERO);
    let mut a = m.handle_advert(ms(100), advert("10.0.0.2", 250));
    a.extend(m.handle_advert(ms(1100), advert("10.0.0.2", PRIORITY_RESIGN)));
    a.extend(m.handle_timeout(ms(1100) + m.skew_time()));
    assert_eq!(m.state(), State::Master);
    assert!(forwards(&a).is_empty(), "{a:?}");
}

#[test]
fn stopping_clears_forwarding() {
    let mut m = forwarding(ms(10_000));
    m.handle_advert(ms(100), advert("10.0.0.2", 250));
    assert_eq!(forwards(&m.shutdown(ms(200))), [None]);
}

#[test]
fn a_master_hands_its_vip_to_its_successor_without_resigning() {
    let mut m = Machine::new(config(100, "10.0.0.1"));
    m.startup(ms(0));
    m.handle_timeout(m.poll_timeout().unwrap());
    assert_eq!(m.state(), State::Master);
    let a = m.hand_to_successor(ms(5000));
    assert!(
        !a.iter()
            .any(|a| matches!(a, Action::ReleaseVip | Action::SendAdvert { .. })),
        "no resignation, the VIP stays: {a:?}"
    );
    assert_eq!(a.last(), Some(&Action::Stopped));
    assert!(m.handed_to_successor());
    // The successor (another VRID, same addresses) is master at once.
    let mut next = Machine::new(config(100, "10.0.0.1"));
    let a = next.startup_as_successor(ms(0));
    assert_eq!(next.state(), State::Master);
    assert_eq!(
        &a[..3],
        &[
            Action::BindVip,
            Action::SendAdvert { priority: 100 },
            Action::Announce
        ]
    );
}

#[test]
fn only_a_master_hands_over_to_a_successor() {
    let mut m = Machine::new(config(100, "10.0.0.1"));
    m.startup(ms(0));
    let a = m.hand_to_successor(ms(100));
    assert!(!m.handed_to_successor());
    assert_eq!(a.last(), Some(&Action::Stopped), "a backup just stops");
    // A faulted successor removes what it was left.
    let mut next = Machine::new(config(100, "10.0.0.1"));
    next.set_fault(ms(0), true, "interface down");
    let a = next.startup_as_successor(ms(0));
    assert_eq!(next.state(), State::Fault);
    assert!(a.contains(&Action::ReleaseVip), "{a:?}");
}

#[test]
fn a_graceful_fault_keeps_the_vip_until_the_new_master_speaks_then_faults() {
    let mut m = Machine::new(config(100, "10.0.0.1"));
    m.startup(ms(0));
    m.handle_timeout(m.poll_timeout().unwrap());
    assert_eq!(m.state(), State::Master);
    let a = m.yield_to_fault(ms(5000), "no ready local endpoint");
    assert_eq!(a[0], Action::SendAdvert { priority: 0 });
    assert!(!a.contains(&Action::ReleaseVip), "make before break: {a:?}");
    assert!(m.holds_vip(), "still holds the VIP");
    // Its successor's resignation echo is not a master speaking; a real advert is.
    assert!(m.handle_advert(ms(5010), advert("10.0.0.2", 0)).is_empty());
    let a = m.handle_advert(ms(5050), advert("10.0.0.2", 90));
    assert_eq!(a[0], Action::ReleaseVip);
    assert_eq!(m.state(), State::Fault);
    assert!(!a.contains(&Action::Stopped), "it keeps running");
    // The endpoint comes back: Backup, ready to take over again.
    m.set_fault(ms(6000), false, "recovered");
    assert_eq!(m.state(), State::Backup);
}

#[test]
fn a_graceful_fault_alone_gives_up_after_a_deadline_and_a_hard_fault_lets_go_at_once() {
    let mut m = Machine::new(config(100, "10.0.0.1"));
    m.startup(ms(0));
    m.handle_timeout(m.poll_timeout().unwrap());
    m.yield_to_fault(ms(5000), "no ready local endpoint");
    let a = m.handle_timeout(m.poll_timeout().unwrap());
    assert_eq!(a[0], Action::ReleaseVip);
    assert_eq!(m.state(), State::Fault);

    let mut m = Machine::new(config(100, "10.0.0.1"));
    m.startup(ms(0));
    m.handle_timeout(m.poll_timeout().unwrap());
    m.yield_to_fault(ms(5000), "no ready local endpoint");
    let a = m.set_fault(ms(5010), true, "interface down");
    assert_eq!(a[0], Action::ReleaseVip);
    assert_eq!(m.state(), State::Fault);
    assert_eq!(m.poll_timeout(), None);

    // Recovered before anyone took over: back as Backup once the wait ends.
    let mut m = Machine::new(config(100, "10.0.0.1"));
    m.startup(ms(0));
    m.handle_timeout(m.poll_timeout().unwrap());
    m.yield_to_fault(ms(5000), "no ready local endpoint");
    assert!(m.set_fault(ms(5010), false, "recovered").is_empty());
    let a = m.handle_advert(ms(5050), advert("10.0.0.2", 90));
    assert_eq!(a[0], Action::ReleaseVip);
    assert_eq!(m.state(), State::Backup);
}

#[test]
fn a_shutdown_while_yielding_ends_the_instance() {
    let mut m = Machine::new(config(100, "10.0.0.1"));
    m.startup(ms(0));
    m.handle_timeout(m.poll_timeout().unwrap());
    m.yield_to_fault(ms(5000), "no ready local endpoint");
    assert!(m.shutdown(ms(5010)).is_empty(), "already resigned");
    let a = m.handle_advert(ms(5050), advert("10.0.0.2", 90));
    assert_eq!(a[0], Action::ReleaseVip);
    assert_eq!(a.last(), Some(&Action::Stopped));
}
