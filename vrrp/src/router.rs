//! One virtual router, sans IO: the RFC state machine ([`Machine`]) with what the RFC leaves to
//! the implementation decided beside it: when to announce the VIP ([`crate::announce`]), when
//! to retry binding it, and which fault holds and what the priority is ([`Health`]). The IO shell
//! feeds it what happens (adverts, link states, the data path, a failed bind, stop requests) with
//! the time, does the [`Action`]s it returns, and calls [`Router::handle_timeout`] at
//! [`Router::poll_timeout`].

use std::{collections::BTreeSet, net::IpAddr, time::Duration};

use crate::{
    announce::{AnnounceConfig, Announcements},
    fault::{DataPath, Health, LinkState},
    machine::{self, Config, Machine, Received, State, Time},
};

/// After a failed bind, the router stays in Fault this long, then tries again.
pub const BIND_RETRY: Duration = Duration::from_secs(1);

/// What the shell must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send an advert now.
    SendAdvert {
        /// The priority it carries (0: resigning).
        priority: u8,
    },
    /// Add the virtual addresses to the interface (report a failure with
    /// [`Router::bind_failed`]). With `handover_wait`, the connection handover rules for the
    /// previous master should be in place first: wait for them up to this long.
    BindVip {
        /// How long to wait for the handover rules first, if at all.
        handover_wait: Option<Duration>,
    },
    /// Remove the virtual addresses from the interface.
    ReleaseVip,
    /// Remove the addresses that left the router's set (see [`Router::addresses_changed`]),
    /// those the node still has bound.
    ReleaseLeft,
    /// Send gratuitous ARP / unsolicited NA now.
    Announce {
        /// How many rounds (a round: one announcement per virtual address).
        rounds: u32,
    },
    /// Forward unknown connections to this previous master (`None`: nowhere); see
    /// [`machine::Action::Forward`].
    Forward {
        /// The previous master, or nowhere.
        to: Option<IpAddr>,
    },
    /// A master heard is not a known peer: its connections are not forwarded (say so, once).
    ForwardRefused {
        /// The master whose connections are not forwarded.
        to: IpAddr,
    },
    /// The state changed; `priority` is the effective priority now.
    StateChanged {
        /// The state before.
        from: State,
        /// The state now.
        to: State,
        /// Why (logged and reported).
        reason: &'static str,
        /// The effective priority.
        priority: u8,
    },
    /// The router has stopped; the shell may exit.
    Stopped,
}

/// How to stop (the agent's request, or a signal of the debug command).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stop {
    /// Make-before-break: a master resigns but keeps the VIP until a new master speaks.
    Gracefully,
    /// A master leaves the VIP bound for the next instance of this VirtualIP, which starts as
    /// its successor; others stop gracefully.
    ForSuccessor,
    /// At once, releasing the VIP.
    Now,
}

/// A timer of the router: the machine's, and those of what is decided beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// A timer of the state machine.
    Election(machine::Timer),
    /// The next scheduled burst of announcements.
    Announce,
    /// The next periodic announcement refresh.
    AnnounceRefresh,
    /// Binding failed: leave Fault and try again.
    BindRetry,
    /// Addresses that moved to another router are released now: long enough after they left
    /// for that router to have taken them (see [`Router::addresses_changed`]).
    ReleaseLeft,
}

/// How addresses left the router's set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leaving {
    /// Gone (their Service was deleted): released at once.
    Deleted,
    /// Carried by another router now (a Service moving between groups): a master keeps them
    /// until that router can have taken them over, make-before-break.
    Moved,
}

/// How long a master keeps addresses that moved to another router, in advert intervals: the
/// other router's master-down interval (3 intervals plus skew), twice over: holding an address
/// on two nodes a little longer costs nothing (both serve it), releasing it early an outage.
pub const MOVED_KEPT_INTERVALS: u32 = 6;

/// One virtual router's decisions.
#[derive(Clone, Debug)]
pub struct Router {
    machine: Machine,
    /// Our advertisement interval (the machine's configuration).
    advert_interval: Duration,
    /// The base priority (the machine's configuration).
    priority: u8,
    announcements: Announcements,
    health: Health,
    /// The index of the interface the router runs on.
    link: u32,
    /// When to retry binding after a failure.
    bind_retry: Option<Time>,
    /// The last stop asked for (a repeated request is not acted on twice).
    stop: Option<Stop>,
    /// When to release addresses that moved to another router.
    release_left: Option<Time>,
}

impl Router {
    /// A router running on interface `link`, with what is known of its health at start.
    pub fn new(config: Config, announce: AnnounceConfig, link: u32, health: Health) -> Router {
        Router {
            advert_interval: config.advert_interval,
            priority: config.priority,
            machine: Machine::new(config),
            announcements: Announcements::new(announce),
            health,
            link,
            bind_retry: None,
            stop: None,
            release_left: None,
        }
    }

    /// The state machine (its state, priority, forwarding target).
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// Starts the router; `successor`: as the master its previous instance was, on the VIP it
    /// left bound (see [`Machine::startup_as_successor`]).
    pub fn start(&mut self, now: Time, successor: bool) -> Vec<Action> {
        let mut out = Vec::new();
        // The fault and the priority first: a router that starts faulted goes to Fault at once.
        self.reevaluate(now, &mut out);
        let actions = if successor {
            self.machine.startup_as_successor(now)
        } else {
            self.machine.startup(now)
        };
        self.absorb(now, actions, &mut out);
        out
    }

    /// The addresses connections may be forwarded to (see [`Machine::set_known_peers`]).
    pub fn set_known_peers(&mut self, now: Time, peers: BTreeSet<IpAddr>) -> Vec<Action> {
        let actions = self.machine.set_known_peers(peers);
        self.act(now, actions)
    }

    /// An advert that passed the receive checks.
    pub fn handle_advert(&mut self, now: Time, advert: Received) -> Vec<Action> {
        let actions = self.machine.handle_advert(now, advert);
        self.act(now, actions)
    }

    /// Links changed state (the router's interface, tracked ones, or others).
    pub fn links_changed(
        &mut self,
        now: Time,
        updates: impl IntoIterator<Item = LinkState>,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let mut changed = false;
        for update in updates {
            let (own, any) = self.health.update_link(self.link, update);
            changed |= any;
            if own && update.up && self.machine.holds_vip() {
                // Switches forgot us while the link was down: announce again.
                self.announcements.start(now);
                self.announce_due(now, &mut out);
            }
        }
        if changed {
            self.reevaluate(now, &mut out);
        }
        out
    }

    /// What the node's proxy says about the VIP's listeners changed.
    pub fn data_path_changed(&mut self, now: Time, data_path: DataPath) -> Vec<Action> {
        self.health.data_path = data_path;
        let mut out = Vec::new();
        self.reevaluate(now, &mut out);
        out
    }

    /// [`Action::BindVip`] failed: Fault until the retry, [`BIND_RETRY`] from now.
    pub fn bind_failed(&mut self, now: Time) -> Vec<Action> {
        self.health.bind_failed = true;
        self.bind_retry = Some(now + BIND_RETRY);
        let mut out = Vec::new();
        self.reevaluate(now, &mut out);
        out
    }

    /// The router's set of addresses changed in place (a VRRP group gained or lost members):
    /// `added`: some are new; `left`: some left, and how. A master binds and announces the new
    /// ones at once; what left is released at once, or, when it moved to another router, after
    /// [`MOVED_KEPT_INTERVALS`] (make-before-break).
    pub fn addresses_changed(
        &mut self,
        now: Time,
        added: bool,
        left: Option<Leaving>,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let holds = self.machine.holds_vip();
        if holds && added {
            out.push(Action::BindVip {
                handover_wait: None,
            });
            self.announcements.start(now);
            self.announce_due(now, &mut out);
        }
        match left {
            Some(Leaving::Moved) if holds => {
                let at = now + self.advert_interval * MOVED_KEPT_INTERVALS;
                self.release_left = Some(self.release_left.map_or(at, |t| t.max(at)));
            }
            Some(_) => {
                self.release_left = None;
                out.push(Action::ReleaseLeft);
            }
            None => {}
        }
        out
    }

    /// Stop as asked (a request repeated is not acted on again).
    pub fn stop(&mut self, now: Time, how: Stop) -> Vec<Action> {
        if self.stop == Some(how) {
            return Vec::new();
        }
        self.stop = Some(how);
        let actions = match how {
            Stop::Gracefully => self.machine.shutdown(now),
            Stop::ForSuccessor => self.machine.hand_to_successor(now),
            Stop::Now => self.machine.stop_now(),
        };
        self.act(now, actions)
    }

    /// Whether the router stopped with the VIP left bound for its successor.
    pub fn handed_to_successor(&self) -> bool {
        self.machine.handed_to_successor()
    }

    /// The timer that runs out first, and when.
    pub fn next_timer(&self) -> Option<(Timer, Time)> {
        let election = self
            .machine
            .next_timer()
            .map(|(t, at)| (Timer::Election(t), at));
        [
            election,
            self.announcements
                .next_burst()
                .map(|at| (Timer::Announce, at)),
            self.announcements
                .next_refresh()
                .map(|at| (Timer::AnnounceRefresh, at)),
            self.bind_retry.map(|at| (Timer::BindRetry, at)),
            self.release_left.map(|at| (Timer::ReleaseLeft, at)),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(_, at)| *at)
    }

    /// When [`Router::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.next_timer().map(|(_, at)| at)
    }

    /// Handles every timer whose deadline passed at `now`.
    pub fn handle_timeout(&mut self, now: Time) -> Vec<Action> {
        let actions = self.machine.handle_timeout(now);
        let mut out = self.act(now, actions);
        self.announce_due(now, &mut out);
        if self.bind_retry.is_some_and(|at| at <= now) {
            self.bind_retry = None;
            self.health.bind_failed = false;
            self.reevaluate(now, &mut out);
        }
        if self.release_left.is_some_and(|at| at <= now) {
            self.release_left = None;
            out.push(Action::ReleaseLeft);
        }
        out
    }

    fn act(&mut self, now: Time, actions: Vec<machine::Action>) -> Vec<Action> {
        let mut out = Vec::new();
        self.absorb(now, actions, &mut out);
        out
    }

    /// Tells the machine the effective priority and the fault from what is known now.
    fn reevaluate(&mut self, now: Time, out: &mut Vec<Action>) {
        let assessment = self.health.assess(self.priority);
        if let Some(p) = assessment.priority {
            let actions = self.machine.set_priority(now, p);
            self.absorb(now, actions, out);
        }
        let actions = match assessment.fault {
            Some(fault) if fault.graceful() => self.machine.yield_to_fault(now, fault.reason()),
            Some(fault) => self.machine.set_fault(now, true, fault.reason()),
            None => self.machine.set_fault(now, false, "recovered"),
        };
        self.absorb(now, actions, out);
    }

    /// Turns the machine's actions into the shell's, deciding the announcements.
    fn absorb(&mut self, now: Time, actions: Vec<machine::Action>, out: &mut Vec<Action>) {
        for action in actions {
            match action {
                machine::Action::SendAdvert { priority } => {
                    out.push(Action::SendAdvert { priority });
                }
                machine::Action::BindVip => out.push(Action::BindVip {
                    handover_wait: self.handover_wait(),
                }),
                machine::Action::ReleaseVip => {
                    self.announcements.stop();
                    out.push(Action::ReleaseVip);
                }
                machine::Action::Announce => {
                    self.announcements.start(now);
                    self.announce_due(now, out);
                }
                machine::Action::Reannounce { again_after } => {
                    self.announcements.again(now, again_after);
                    self.announce_due(now, out);
                }
                machine::Action::Forward { to } => out.push(Action::Forward { to }),
                machine::Action::ForwardRefused { to } => out.push(Action::ForwardRefused { to }),
                machine::Action::StateChanged { from, to, reason } => {
                    out.push(Action::StateChanged {
                        from,
                        to,
                        reason,
                        priority: self.machine.effective_priority(),
                    });
                }
                machine::Action::Stopped => out.push(Action::Stopped),
            }
        }
    }

    /// Make before break: with the old master alive, its connections' packets must find the
    /// forwarding rule once clients hear of us. Bounded well within its patience (it resigns
    /// for four of its intervals, and serves on while being preempted); after a real failure
    /// nothing is forwarded, and the takeover does not wait.
    fn handover_wait(&self) -> Option<Duration> {
        let patience = self
            .advert_interval
            .min(self.machine.master_adver_interval());
        self.machine.forwarding_to().map(|_| 2 * patience)
    }

    fn announce_due(&mut self, now: Time, out: &mut Vec<Action>) {
        let rounds = self.announcements.due(now);
        if rounds > 0 {
            out.push(Action::Announce { rounds });
        }
    }
}

#[cfg(test)]
mod tests;
