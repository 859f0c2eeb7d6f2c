//! Deterministic simulation of VRRP routers on a LAN with a virtual clock: message loss, delay,
//! partitions and heals, crashes and restarts, graceful stops, faults and priority changes.
//! For every seed, once the network has been healthy for long enough, exactly one router holds
//! the VIP and it is the best candidate (with preemption), and at no moment does a router hold the
//! VIP while its state machine says it is not master.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use buoy_vrrp::{
    machine::{Action, Config, Machine, Received, State, Time},
    packet::Version,
};
use rand::{RngExt, SeedableRng, rngs::StdRng};

const SEEDS: u64 = 5_000;

struct Router {
    ip: IpAddr,
    machine: Option<Machine>,
    /// What the router did to its interface, according to the actions it was given.
    vip_bound: bool,
    faulted: bool,
    group: u8,
}

/// (arrival, sequence, to, from, priority): an advert in flight, ordered by arrival.
type Delivery = (Time, u64, usize, IpAddr, u8);

struct Lan {
    rng: StdRng,
    now: Time,
    routers: Vec<Router>,
    queue: BinaryHeap<Reverse<Delivery>>,
    seq: u64,
    loss: f64,
    max_delay: Duration,
    config: Config,
    base_priorities: Vec<u8>,
    effective: Vec<u8>,
}

impl Lan {
    fn apply(&mut self, i: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::BindVip => {
                    assert!(!self.routers[i].vip_bound, "router {i} bound the VIP twice");
                    self.routers[i].vip_bound = true;
                }
                Action::ReleaseVip => {
                    assert!(
                        self.routers[i].vip_bound,
                        "router {i} released a VIP it did not hold"
                    );
                    self.routers[i].vip_bound = false;
                }
                Action::SendAdvert { priority } => self.broadcast(i, priority),
                Action::Stopped => self.routers[i].machine = None,
                Action::Announce
                | Action::Reannounce { .. }
                | Action::StateChanged { .. }
                | Action::Forward { .. }
                | Action::ForwardRefused { .. } => {}
            }
        }
        let r = &self.routers[i];
        let holds = r.machine.as_ref().is_some_and(Machine::holds_vip);
        assert_eq!(
            r.vip_bound, holds,
            "router {i}: VIP bound = {} but machine holds = {holds}",
            r.vip_bound
        );
    }

    fn broadcast(&mut self, from: usize, priority: u8) {
        for to in 0..self.routers.len() {
            if to == from
                || self.routers[to].group != self.routers[from].group
                || self.rng.random_bool(self.loss)
            {
                continue;
            }
            let delay =
                Duration::from_micros(self.rng.random_range(0..=self.max_delay.as_micros() as u64));
            self.seq += 1;
            let ip = self.routers[from].ip;
            self.queue
                .push(Reverse((self.now + delay, self.seq, to, ip, priority)));
        }
    }

    fn start(&mut self, i: usize) {
        let mut config = self.config.clone();
        config.priority = self.base_priorities[i];
        config.primary_address = self.routers[i].ip;
        let mut m = Machine::new(config);
        let faulted = self.routers[i].faulted;
        let mut actions = m.set_fault(self.now, faulted, "tracked condition");
        actions.extend(m.set_priority(self.now, self.effective[i]));
        actions.extend(m.startup(self.now));
        self.routers[i].machine = Some(m);
        self.apply(i, actions);
    }

    fn crash(&mut self, i: usize) {
        // Power loss: the machine and the address vanish with the host.
        self.routers[i].machine = None;
        self.routers[i].vip_bound = false;
    }

    fn with_machine(&mut self, i: usize, f: impl FnOnce(&mut Machine, Time) -> Vec<Action>) {
        let now = self.now;
        if let Some(m) = self.routers[i].machine.as_mut() {
            let actions = f(m, now);
            self.apply(i, actions);
        }
    }

    /// Runs until `until`, processing deliveries and timers in time order.
    fn run_until(&mut self, until: Time) {
        loop {
            let next_delivery = self.queue.peek().map(|Reverse((t, ..))| *t);
            let next_timer = self
                .routers
                .iter()
                .enumerate()
                .filter_map(|(i, r)| Some((r.machine.as_ref()?.poll_timeout()?, i)))
                .min();
            let next = match (next_delivery, next_timer) {
                (Some(d), Some((t, _))) => d.min(t),
                (Some(d), None) => d,
                (None, Some((t, _))) => t,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.now = next;
            if next_delivery == Some(next) {
                let Some(Reverse((_, _, to, from, priority))) = self.queue.pop() else {
                    break;
                };
                let interval = self.config.advert_interval;
                self.with_machine(to, |m, now| {
                    m.handle_advert(
                        now,
                        Received {
                            from,
                            priority,
                            interval,
                        },
                    )
                });
            } else if let Some((_, i)) = next_timer {
                self.with_machine(i, |m, now| m.handle_timeout(now));
            }
        }
        self.now = until;
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.routers.len())
            .filter(|&i| self.routers[i].vip_bound)
            .collect()
    }
}

fn simulate(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = rng.random_range(2..=5);
    let version = if rng.random_bool(0.3) {
        Version::V2
    } else {
        Version::V3
    };
    let interval = match version {
        Version::V2 => Duration::from_secs(1),
        Version::V3 => Duration::from_millis(10 * rng.random_range(1..=100u64)),
    };
    let preempt = rng.random_bool(0.7);
    let config = Config {
        version,
        priority: 100,
        advert_interval: interval,
        // Redundant adverts change only the master's sending; every count must converge alike.
        adverts_per_interval: rng.random_range(1..=4),
        preempt,
        preempt_delay: if rng.random_bool(0.3) {
            interval * rng.random_range(1..=3u32)
        } else {
            Duration::ZERO
        },
        primary_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        // Forwarding changes no election; every setting must converge alike.
        handover_forward: if rng.random_bool(0.5) {
            interval * 10
        } else {
            Duration::ZERO
        },
    };
    let base_priorities: Vec<u8> = (0..n).map(|_| rng.random_range(1..=254)).collect();
    let mut lan = Lan {
        routers: (0..n)
            .map(|i| Router {
                ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1)),
                machine: None,
                vip_bound: false,
                faulted: false,
                group: 0,
            })
            .collect(),
        rng,
        now: Duration::ZERO,
        queue: BinaryHeap::new(),
        seq: 0,
        loss: 0.0,
        max_delay: interval / 5,
        config,
        effective: base_priorities.clone(),
        base_priorities,
    };
    for i in 0..n {
        lan.start(i);
    }

    // Chaos.
    let chaos_events = lan.rng.random_range(0..25);
    for _ in 0..chaos_events {
        let gap = interval * lan.rng.random_range(0..=8u32);
        let until = lan.now + gap;
        lan.run_until(until);
        let i = lan.rng.random_range(0..n);
        match lan.rng.random_range(0..9) {
            0 => lan.crash(i),
            1 => {
                if lan.routers[i].machine.is_none() {
                    lan.start(i);
                }
            }
            2 => {
                for r in &mut lan.routers {
                    r.group = 0;
                }
                let cut = lan.rng.random_range(0..n);
                for r in lan.routers.iter_mut().skip(cut) {
                    r.group = 1;
                }
            }
            3 => lan.routers.iter_mut().for_each(|r| r.group = 0),
            4 => lan.loss = lan.rng.random_range(0.0..0.6),
            5 => {
                let p = lan.rng.random_range(1..=254);
                lan.effective[i] = p;
                lan.with_machine(i, |m, now| m.set_priority(now, p));
            }
            6 => {
                let f = !lan.routers[i].faulted;
                lan.routers[i].faulted = f;
                lan.with_machine(i, |m, now| m.set_fault(now, f, "tracked condition"));
            }
            7 => lan.with_machine(i, |m, now| m.shutdown(now)),
            _ => lan.with_machine(i, |m, _| m.stop_now()),
        }
    }

    // The network heals and stays healthy.
    lan.routers.iter_mut().for_each(|r| r.group = 0);
    lan.loss = 0.0;
    if !(0..n).any(|i| {
        lan.routers[i]
            .machine
            .as_ref()
            .is_some_and(|m| !m.is_stopping())
            && !lan.routers[i].faulted
    }) {
        let i = lan.rng.random_range(0..n);
        lan.routers[i].faulted = false;
        lan.crash(i);
        lan.start(i);
    }
    let healed = lan.now;
    // Slowest convergence: a resigning router gives up after 4 intervals, a backup waits out the
    // preempt delay and one Master_Down_Interval (≤ 4 intervals, or 3 intervals + 1 s in v2).
    let settle = 4 * interval
        + config_slack(&lan)
        + lan.config.preempt_delay
        + 4 * interval
        + lan.max_delay * 2;
    lan.run_until(healed + settle);

    let candidates: Vec<usize> = (0..n)
        .filter(|&i| {
            lan.routers[i]
                .machine
                .as_ref()
                .is_some_and(|m| m.state() != State::Fault)
                && !lan.routers[i].faulted
        })
        .collect();
    let masters = lan.masters();
    assert_eq!(
        masters.len(),
        1,
        "seed {seed}: masters {masters:?} after healing (candidates {candidates:?})"
    );
    let master = masters[0];
    assert!(
        candidates.contains(&master),
        "seed {seed}: master {master} is not a candidate"
    );
    if preempt {
        let best = candidates.iter().map(|&i| lan.effective[i].max(1)).max();
        assert_eq!(
            Some(lan.effective[master].max(1)),
            best,
            "seed {seed}: master {master} is not the highest priority"
        );
    }
    // And it stays so.
    let until = lan.now + 10 * interval;
    lan.run_until(until);
    assert_eq!(
        lan.masters(),
        vec![master],
        "seed {seed}: mastership moved on a healthy network"
    );
}

fn config_slack(lan: &Lan) -> Duration {
    match lan.config.version {
        Version::V2 => Duration::from_secs(1),
        Version::V3 => lan.config.advert_interval,
    }
}

#[test]
fn one_master_after_healing_for_every_seed() {
    for seed in 0..SEEDS {
        simulate(seed);
    }
}

#[test]
fn a_router_that_never_hears_a_master_takes_over_and_stays() {
    // A single router, no peers: Backup for Master_Down_Interval, then Master for good.
    let mut m = Machine::new(Config {
        version: Version::V3,
        priority: 100,
        advert_interval: Duration::from_millis(100),
        adverts_per_interval: 2,
        preempt: true,
        preempt_delay: Duration::ZERO,
        primary_address: "10.0.0.1".parse().unwrap(),
        handover_forward: Duration::ZERO,
    });
    m.startup(Duration::ZERO);
    let mut now = Duration::ZERO;
    while let Some(t) = m.poll_timeout() {
        if t > Duration::from_secs(5) {
            break;
        }
        now = t;
        m.handle_timeout(now);
    }
    assert_eq!(m.state(), State::Master);
    assert!(now > Duration::from_millis(4900));
}
