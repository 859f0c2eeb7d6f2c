//! The router's unit tests: announcements, bind retries, faults and stops around the machine.

use super::*;
use crate::{fault::TrackedInterface, packet::Version};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config(handover_forward: Duration) -> Config {
    Config {
        version: Version::V3,
        priority: 100,
        advert_interval: ms(1000),
        adverts_per_interval: 1,
        preempt: true,
        preempt_delay: Duration::ZERO,
        primary_address: "10.0.0.1".parse().unwrap(),
        handover_forward,
    }
}

fn healthy() -> Health {
    Health {
        link_up: true,
        bind_failed: false,
        data_path: DataPath::SERVING,
        tracked: vec![TrackedInterface {
            index: 9,
            name: "uplink".into(),
            weight: -50,
            up: true,
        }],
        track_upstreams: Some(2),
        track_http_get: None,
    }
}

fn router() -> Router {
    router_with(ms(1000))
}

fn router_with(advert_interval: Duration) -> Router {
    Router::new(
        Config {
            advert_interval,
            ..config(Duration::ZERO)
        },
        AnnounceConfig {
            refresh_interval: ms(60_000),
            ..AnnounceConfig::default()
        },
        3,
        healthy(),
    )
}

/// Starts `r` and runs its timers until it is master; returns the actions of the takeover.
fn master(r: &mut Router) -> (Time, Vec<Action>) {
    r.start(ms(0), false);
    let (timer, at) = r.next_timer().unwrap();
    assert_eq!(timer, Timer::Election(machine::Timer::MasterDown));
    let actions = r.handle_timeout(at);
    assert_eq!(r.machine().state(), State::Master);
    (at, actions)
}

fn announced(actions: &[Action]) -> u32 {
    actions
        .iter()
        .map(|a| match a {
            Action::Announce { rounds } => *rounds,
            _ => 0,
        })
        .sum()
}

#[test]
fn a_new_master_binds_announces_at_once_after_the_delay_and_refreshes() {
    // 700 ms adverts: none falls on an announcement's deadline.
    let mut r = router_with(ms(700));
    let (at, actions) = master(&mut r);
    assert_eq!(
        actions,
        [
            Action::BindVip {
                handover_wait: None
            },
            Action::SendAdvert { priority: 102 },
            Action::Announce { rounds: 5 },
            Action::StateChanged {
                from: State::Backup,
                to: State::Master,
                reason: "no advert within Master_Down_Interval",
                priority: 102,
            },
        ]
    );
    let mut bursts = Vec::new();
    while let Some((timer, t)) = r.next_timer() {
        if t > at + ms(61_000) {
            break;
        }
        let n = announced(&r.handle_timeout(t));
        if n > 0 {
            bursts.push((timer, (t - at).as_millis(), n));
        }
    }
    assert_eq!(
        bursts,
        [
            (Timer::Announce, 5000, 5),
            (Timer::AnnounceRefresh, 60_000, 1)
        ]
    );
}

#[test]
fn a_failed_bind_is_a_fault_until_the_retry() {
    let mut r = router();
    master(&mut r);
    let t = ms(4000);
    let actions = r.bind_failed(t);
    assert_eq!(
        actions,
        [
            Action::SendAdvert { priority: 0 },
            Action::ReleaseVip,
            Action::StateChanged {
                from: State::Master,
                to: State::Fault,
                reason: "cannot bind the virtual addresses",
                priority: 102,
            },
        ]
    );
    assert_eq!(r.next_timer(), Some((Timer::BindRetry, t + BIND_RETRY)));
    assert!(r.handle_timeout(t + ms(999)).is_empty());
    let actions = r.handle_timeout(t + BIND_RETRY);
    assert!(
        matches!(
            actions[..],
            [Action::StateChanged {
                to: State::Backup,
                reason: "recovered",
                ..
            }]
        ),
        "{actions:?}"
    );
}

#[test]
fn the_interface_down_comes_before_any_other_fault() {
    let mut r = router();
    r.start(ms(0), false);
    r.data_path_changed(
        ms(10),
        DataPath {
            upstreams_healthy: true,
            listening: false,
            local_endpoint: true,
            http_get_ok: true,
        },
    );
    assert_eq!(r.machine().state(), State::Fault);
    // Still in Fault, for a more fundamental reason now: no new transition.
    assert!(
        r.links_changed(
            ms(20),
            [LinkState {
                index: 3,
                up: false
            }]
        )
        .is_empty()
    );
    r.data_path_changed(ms(30), DataPath::SERVING);
    assert_eq!(r.machine().state(), State::Fault, "the link is still down");
    let a = r.links_changed(ms(40), [LinkState { index: 3, up: true }]);
    assert!(
        matches!(
            a[..],
            [Action::StateChanged {
                to: State::Backup,
                ..
            }]
        ),
        "{a:?}"
    );
}

#[test]
fn tracking_moves_the_priority_a_master_advertises() {
    let mut r = router();
    master(&mut r);
    assert_eq!(
        r.links_changed(
            ms(5000),
            [LinkState {
                index: 9,
                up: false
            }]
        ),
        [Action::SendAdvert { priority: 52 }]
    );
    assert_eq!(
        r.data_path_changed(
            ms(5100),
            DataPath {
                upstreams_healthy: false,
                listening: true,
                local_endpoint: true,
                http_get_ok: true,
            }
        ),
        [Action::SendAdvert { priority: 50 }]
    );
}

#[test]
fn a_resigning_master_whose_link_comes_back_announces_again() {
    let mut r = router();
    master(&mut r);
    r.stop(ms(5000), Stop::Gracefully);
    assert_eq!(r.machine().state(), State::Resigning);
    r.links_changed(
        ms(5100),
        [LinkState {
            index: 3,
            up: false,
        }],
    );
    let a = r.links_changed(ms(5200), [LinkState { index: 3, up: true }]);
    assert_eq!(a, [Action::Announce { rounds: 5 }]);
}

#[test]
fn a_stop_asked_twice_is_acted_on_once() {
    let mut r = router();
    master(&mut r);
    assert_eq!(
        r.stop(ms(5000), Stop::Gracefully)[0],
        Action::SendAdvert { priority: 0 }
    );
    assert!(r.stop(ms(5001), Stop::Gracefully).is_empty());
    let a = r.stop(ms(5002), Stop::Now);
    assert_eq!(a[0], Action::ReleaseVip);
    assert_eq!(a.last(), Some(&Action::Stopped));
    assert_eq!(r.poll_timeout(), None, "released: nothing more to announce");
}

#[test]
fn taking_over_from_a_live_master_waits_for_the_handover_rules() {
    let mut r = Router::new(config(ms(30_000)), AnnounceConfig::default(), 3, healthy());
    r.start(ms(0), false);
    let mut peer = Received {
        from: "10.0.0.2".parse().unwrap(),
        priority: 200,
        interval: ms(200),
    };
    r.handle_advert(ms(100), peer);
    peer.priority = 0;
    r.handle_advert(ms(300), peer);
    let a = r.handle_timeout(r.poll_timeout().unwrap());
    assert_eq!(
        a[0],
        Action::BindVip {
            handover_wait: Some(ms(400))
        },
        "twice the shorter interval: {a:?}"
    );
}

#[test]
fn a_faulted_router_starts_in_fault() {
    let mut r = Router::new(
        config(Duration::ZERO),
        AnnounceConfig::default(),
        3,
        Health {
            link_up: false,
            ..healthy()
        },
    );
    assert_eq!(
        r.start(ms(0), false),
        [Action::StateChanged {
            from: State::Initialize,
            to: State::Fault,
            reason: "interface down",
            priority: 102,
        }]
    );
}

#[test]
fn a_master_without_a_local_endpoint_hands_over_before_it_lets_go() {
    let mut r = router();
    let (at, _) = master(&mut r);
    let no_endpoint = DataPath {
        local_endpoint: false,
        ..DataPath::SERVING
    };
    let a = r.data_path_changed(at + ms(10), no_endpoint);
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::SendAdvert { priority: 0 })),
        "{a:?}"
    );
    assert!(!a.iter().any(|x| matches!(x, Action::ReleaseVip)), "{a:?}");
    assert!(r.machine().holds_vip(), "kept until the successor speaks");
    // A backup without the endpoint stays out of the election.
    let mut b = router();
    b.start(ms(0), false);
    b.data_path_changed(ms(10), no_endpoint);
    assert_eq!(b.machine().state(), State::Fault);
}

#[test]
fn a_master_binds_added_addresses_and_keeps_moved_ones_until_their_new_router_can_hold_them() {
    let mut r = router();
    let (at, _) = master(&mut r);
    let actions = r.addresses_changed(at, true, None);
    assert_eq!(
        actions.first(),
        Some(&Action::BindVip {
            handover_wait: None
        })
    );
    assert!(
        actions.iter().any(|a| matches!(a, Action::Announce { .. })),
        "new addresses are announced: {actions:?}"
    );
    // Moved: kept for MOVED_KEPT_INTERVALS, then released, by a named timer.
    let actions = r.addresses_changed(at, false, Some(Leaving::Moved));
    assert!(!actions.contains(&Action::ReleaseLeft));
    let due = at + ms(1000) * MOVED_KEPT_INTERVALS;
    assert!(!r.handle_timeout(due - ms(1)).contains(&Action::ReleaseLeft));
    assert!(r.handle_timeout(due).contains(&Action::ReleaseLeft));
    // Deleted: released at once.
    assert_eq!(
        r.addresses_changed(due, false, Some(Leaving::Deleted)),
        vec![Action::ReleaseLeft]
    );
}

#[test]
fn a_backup_binds_nothing_when_addresses_change_and_lets_go_of_what_left() {
    let mut r = router();
    r.start(ms(0), false);
    assert!(!r.machine().holds_vip());
    assert!(r.addresses_changed(ms(10), true, None).is_empty());
    assert_eq!(
        r.addresses_changed(ms(10), false, Some(Leaving::Moved)),
        vec![Action::ReleaseLeft]
    );
}
