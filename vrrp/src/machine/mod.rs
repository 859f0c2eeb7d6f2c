//! The RFC 5798 state machine, sans IO: it is fed events with the current time and answers with
//! actions (send an advert, bind or release the VIP, announce it). It owns no socket and no clock:
//! its deadlines are named [`Timer`]s, and the caller asks [`Machine::poll_timeout`] when to call
//! [`Machine::handle_timeout`].
//!
//! Beyond the RFC:
//! - a Fault state (interface down, or a tracked condition with weight 0): no adverts, no VIP;
//! - graceful resignation with make-before-break: a master that stops sends priority 0 (so a
//!   backup takes over after its skew time, not after Master_Down_Interval) but keeps the VIP,
//!   and answering, until it hears the new master's advert, so no new connection is lost;
//! - keepalived's `preempt_delay`: after start or recovery, wait before preempting.
//! - connection handover: a node that takes the VIP from a master that is still alive (it
//!   resigned, or we preempted it) has packets of TCP connections it does not know forwarded to
//!   that master for [`Config::handover_forward`], so connections whose handshake raced the
//!   gratuitous ARP finish where they began (the shell's `net::handover` does the forwarding).
//! - redundant adverts: a master may send [`Config::adverts_per_interval`] adverts per interval,
//!   the copies shortly after the first, each still carrying the configured interval, so that
//!   lost adverts do not make a backup declare the master down (peers' Master_Down_Interval is
//!   unchanged).

use std::{net::IpAddr, time::Duration};

use crate::packet::Version;

mod timer;

pub use timer::Timer;
use timer::TimerTable;

/// Time since an arbitrary epoch, supplied by the caller (the shell's monotonic clock, or a
/// simulation's virtual clock).
pub type Time = Duration;

/// Priority of the address owner: becomes master at once.
pub const PRIORITY_OWNER: u8 = 255;
/// Priority that announces resignation.
pub const PRIORITY_RESIGN: u8 = 0;
/// Most adverts a master sends per interval.
pub const MAX_ADVERTS_PER_INTERVAL: u8 = 4;

/// Gap between an advert and its redundant copies (shorter when interval / n is). Close copies
/// keep failover as fast as with one advert: spread evenly over the interval, they would restart
/// a backup's timer later in the interval and make the outage after a real failure longer by up
/// to half an interval; 20 ms apart they still meet independent losses (a burst longer than
/// that takes them all, as it would take a single advert).
pub const REDUNDANT_ADVERT_GAP: Duration = Duration::from_millis(20);

#[derive(Clone, Debug, PartialEq, Eq)]
/// A router's settings.
pub struct Config {
    /// VRRPv2 (RFC 3768) or VRRPv3 (RFC 5798).
    pub version: Version,
    /// Base priority 1..255 (the effective priority may differ, see [`Machine::set_priority`]).
    pub priority: u8,
    /// Our advertisement interval (what our adverts carry).
    pub advert_interval: Duration,
    /// Adverts a master sends per interval, 1..=[`MAX_ADVERTS_PER_INTERVAL`] (other values are
    /// clamped into that range): the first, then copies [`Machine::copy_gap`] apart.
    pub adverts_per_interval: u8,
    /// Whether a higher-priority backup takes over from a lower-priority master.
    pub preempt: bool,
    /// After start or recovery, how long a backup waits before it preempts (keepalived's
    /// `preempt_delay`).
    pub preempt_delay: Duration,
    /// Our primary address on the interface: the source of our adverts and the tie-breaker
    /// between equal priorities.
    pub primary_address: IpAddr,
    /// After taking over from a live master, how long connections we do not know are forwarded
    /// to it (zero: never).
    pub handover_forward: Duration,
}

/// A Backup's view of the current master, from its last advert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Heard {
    from: IpAddr,
    at: Time,
    resigned: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
/// A state of the machine.
pub enum State {
    /// Not started, or stopped.
    Initialize,
    /// Listening for a master.
    Backup,
    /// Holding the VIP and advertising.
    Master,
    /// Not eligible: see [`Machine::set_fault`].
    Fault,
    /// A master that resigned (graceful stop) and still holds the VIP until a new master speaks.
    Resigning,
}

impl State {
    /// What the router is to the outside in this state.
    pub fn role(self) -> Role {
        match self {
            State::Initialize => Role::Initialize,
            State::Backup => Role::Backup,
            State::Master | State::Resigning => Role::Master,
            State::Fault => Role::Fault,
        }
    }

    /// The state as logged and reported (`MASTER`, `BACKUP`, `FAULT`, `INIT`).
    pub fn name(self) -> &'static str {
        self.role().name()
    }
}

/// A router's state as the outside sees it (logs, metrics, status): a resigning master is still
/// master, as it still holds and serves the VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Not started, or stopped.
    Initialize,
    /// Listening for a master.
    Backup,
    /// Holding the VIP (or handing it over).
    Master,
    /// Not eligible.
    Fault,
}

impl Role {
    /// Every role, in the order of the metrics' series.
    pub const ALL: [Role; 4] = [Role::Initialize, Role::Backup, Role::Master, Role::Fault];

    /// The name in logs (`state=MASTER`) and metric labels: `INIT`, `BACKUP`, `MASTER`, `FAULT`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Initialize => "INIT",
            Role::Backup => "BACKUP",
            Role::Master => "MASTER",
            Role::Fault => "FAULT",
        }
    }
}

/// What the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send an advert now.
    SendAdvert {
        /// The priority it carries (0: resigning).
        priority: u8,
    },
    /// Add the virtual addresses to the interface.
    BindVip,
    /// Remove the virtual addresses from the interface.
    ReleaseVip,
    /// Start announcing the addresses (gratuitous ARP / unsolicited NA bursts and refreshes).
    Announce,
    /// Announce the addresses again now and once more after a delay: another router also
    /// claimed them, and its own burst may still be on its way after our first one.
    Reannounce {
        /// The delay of the second burst.
        again_after: Duration,
    },
    /// Packets of TCP connections this node does not know, sent to a VIP it holds, go to this
    /// router (the master before us, which may still serve connections it accepted); `None`:
    /// nowhere. Set while Backup (inert until the VIP is ours) so that it is in place before a
    /// takeover; cleared when the master before us is dead, or the handover window ends.
    Forward {
        /// The previous master, or nowhere.
        to: Option<IpAddr>,
    },
    /// The master heard is not a known peer (see [`Machine::set_known_peers`]): its connections
    /// are not forwarded. Once per such master, for the shell to say so.
    ForwardRefused {
        /// The master whose connections are not forwarded.
        to: IpAddr,
    },
    /// The state changed.
    StateChanged {
        /// The state before.
        from: State,
        /// The state now.
        to: State,
        /// Why (logged and reported).
        reason: &'static str,
    },
    /// Shutdown is complete; the shell may exit.
    Stopped,
}

/// An advert that passed the receive checks of the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Its source address.
    pub from: IpAddr,
    /// Its priority (0: the master resigns).
    pub priority: u8,
    /// The advertisement interval it carries.
    pub interval: Duration,
}

#[derive(Clone, Debug)]
/// One router's RFC 5798 state machine.
pub struct Machine {
    config: Config,
    state: State,
    /// Effective priority (base ± tracking), 1..255.
    priority: u8,
    /// The master's advertisement interval (learned from its adverts in v3).
    master_adver_interval: Duration,
    /// Master_Down_Timer in Backup, Adver_Timer in Master, the give-up deadline in Resigning,
    /// and the end of connection handover.
    timers: TimerTable,
    /// Before this time a Backup does not preempt (keepalived's preempt_delay).
    preempt_after: Time,
    /// Whether the fault condition holds.
    faulted: bool,
    /// Why, while `faulted` (reported when the fault is found before startup).
    fault_reason: &'static str,
    /// Shutdown was asked for.
    stopping: bool,
    /// Resigning because of a fault that yields gracefully (see [`Machine::yield_to_fault`]),
    /// not because of a shutdown: the end is Fault (or Backup), not Initialize.
    yielding: bool,
    /// Master: redundant copies still to send in this interval, and when the interval began.
    copies_left: u8,
    interval_began: Time,
    /// Backup: the master we hear (the forwarding target if we take over while it lives).
    heard: Option<Heard>,
    /// Where [`Action::Forward`] last pointed.
    forwarding_to: Option<IpAddr>,
    /// Stopped with the VIP left bound for a successor instance.
    handed_over: bool,
    /// The only addresses forwarding may point at (the VirtualIP's other nodes, configured
    /// peers); `None`: any router heard. An advert's source is not proof of who sent it.
    known_peers: Option<std::collections::BTreeSet<IpAddr>>,
    /// The last master [`Action::ForwardRefused`] was for.
    refused: Option<IpAddr>,
}

impl Machine {
    /// A machine in Initialize; see [`Machine::startup`].
    pub fn new(config: Config) -> Self {
        Machine {
            priority: config.priority,
            master_adver_interval: config.advert_interval,
            config,
            state: State::Initialize,
            timers: TimerTable::default(),
            preempt_after: Duration::ZERO,
            faulted: false,
            fault_reason: "",
            stopping: false,
            yielding: false,
            copies_left: 0,
            interval_began: Duration::ZERO,
            heard: None,
            forwarding_to: None,
            handed_over: false,
            known_peers: None,
            refused: None,
        }
    }

    /// Restricts connection handover to these peers (see [`Machine::forwarding_to`]): a spoofed
    /// advert can then never point this node's forwarding at an arbitrary address. Forwarding
    /// that points elsewhere now stops.
    pub fn set_known_peers(&mut self, peers: std::collections::BTreeSet<IpAddr>) -> Vec<Action> {
        let mut actions = Vec::new();
        self.known_peers = Some(peers);
        if let Some(to) = self.forwarding_to
            && !self.may_forward_to(to)
        {
            self.timers.stop(Timer::HandoverEnd);
            self.forward(None, &mut actions);
        }
        actions
    }

    fn may_forward_to(&self, to: IpAddr) -> bool {
        self.known_peers.as_ref().is_none_or(|p| p.contains(&to))
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The priority this node advertises now.
    pub fn effective_priority(&self) -> u8 {
        self.priority
    }

    /// The live previous master that unknown connections are forwarded to, if any.
    pub fn forwarding_to(&self) -> Option<IpAddr> {
        self.forwarding_to
    }

    /// Whether the VIP is (or must be) bound on this node.
    pub fn holds_vip(&self) -> bool {
        matches!(self.state, State::Master | State::Resigning)
    }

    /// Shutdown was asked for (the instance is resigning or stopped).
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// The master's advertisement interval (ours until a v3 master's adverts say otherwise).
    pub fn master_adver_interval(&self) -> Duration {
        self.master_adver_interval
    }

    /// Skew_Time: lower priorities wait longer, so the best backup takes over first.
    pub fn skew_time(&self) -> Duration {
        let base = match self.config.version {
            // RFC 3768: (256 - Priority) / 256 seconds, whatever the interval.
            Version::V2 => Duration::from_secs(1),
            Version::V3 => self.master_adver_interval,
        };
        base * (256 - u32::from(self.priority)) / 256
    }

    /// Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        3 * self.master_adver_interval + self.skew_time()
    }

    fn adverts_per_interval(&self) -> u8 {
        self.config
            .adverts_per_interval
            .clamp(1, MAX_ADVERTS_PER_INTERVAL)
    }

    /// Time between an advert and its redundant copies: [`REDUNDANT_ADVERT_GAP`], or
    /// interval / n when that is shorter.
    pub fn copy_gap(&self) -> Duration {
        (self.config.advert_interval / u32::from(self.adverts_per_interval()))
            .min(REDUNDANT_ADVERT_GAP)
    }

    /// A master just sent an advert that starts an interval: its copies follow, then the next.
    fn interval_started(&mut self, now: Time) {
        self.interval_began = now;
        self.copies_left = self.adverts_per_interval() - 1;
        let next = if self.copies_left > 0 {
            now + self.copy_gap()
        } else {
            now + self.config.advert_interval
        };
        self.timers.set(Timer::Advert, next);
    }

    /// When [`Machine::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.next_timer().map(|(_, at)| at)
    }

    /// The timer that runs out first, and when.
    pub fn next_timer(&self) -> Option<(Timer, Time)> {
        self.timers.next()
    }

    /// Points forwarding at `to`, if it does not already (never, with handover forwarding off,
    /// and never at an address that is not a known peer).
    fn forward(&mut self, to: Option<IpAddr>, actions: &mut Vec<Action>) {
        if self.config.handover_forward.is_zero() {
            return;
        }
        if let Some(t) = to
            && !self.may_forward_to(t)
            && self.refused != Some(t)
        {
            self.refused = Some(t);
            actions.push(Action::ForwardRefused { to: t });
        }
        let to = to.filter(|t| self.may_forward_to(*t));
        if self.forwarding_to != to {
            self.forwarding_to = to;
            actions.push(Action::Forward { to });
        }
    }

    fn transition(&mut self, to: State, reason: &'static str, actions: &mut Vec<Action>) {
        let from = self.state;
        if from != to {
            self.state = to;
            actions.push(Action::StateChanged { from, to, reason });
        }
    }

    fn become_backup(&mut self, now: Time, reason: &'static str, actions: &mut Vec<Action>) {
        if self.holds_vip() {
            actions.push(Action::ReleaseVip);
        }
        self.timers.stop(Timer::Advert);
        self.timers.stop(Timer::HandoverEnd);
        self.timers
            .set(Timer::MasterDown, now + self.master_down_interval());
        self.transition(State::Backup, reason, actions);
    }

    fn become_master(&mut self, now: Time, reason: &'static str, actions: &mut Vec<Action>) {
        // The master we heard lives if it resigned or spoke within the last three intervals
        // (a dead one went silent for Master_Down_Interval, more than that). Forwarding to a
        // dead master would turn the new master's resets into the clients' timeouts.
        let live = self
            .heard
            .take()
            .filter(|h| h.resigned || now.saturating_sub(h.at) < 3 * self.master_adver_interval);
        match live {
            Some(h) => {
                self.forward(Some(h.from), actions);
                if self.config.handover_forward.is_zero() {
                    self.timers.stop(Timer::HandoverEnd);
                } else {
                    let end = now + self.config.handover_forward;
                    self.timers.set(Timer::HandoverEnd, end);
                }
            }
            None => self.forward(None, actions),
        }
        self.timers.stop(Timer::MasterDown);
        // Make before break: the addresses are bound before we tell anyone we own them.
        actions.push(Action::BindVip);
        actions.push(Action::SendAdvert {
            priority: self.priority,
        });
        actions.push(Action::Announce);
        self.interval_started(now);
        self.transition(State::Master, reason, actions);
    }

    /// Start the instance (Initialize → Backup, or Master for the address owner).
    pub fn startup(&mut self, now: Time) -> Vec<Action> {
        self.start(now, false)
    }

    /// Start as the master that the previous instance of this router was, on the VIP it left
    /// bound ([`Machine::hand_to_successor`]): another VRID or other settings, same addresses.
    /// Peers hear our adverts before their own Master_Down_Interval runs out, so nothing moves.
    pub fn startup_as_successor(&mut self, now: Time) -> Vec<Action> {
        self.start(now, true)
    }

    fn start(&mut self, now: Time, successor: bool) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.state != State::Initialize || self.stopping {
            return actions;
        }
        self.master_adver_interval = self.config.advert_interval;
        self.preempt_after = now + self.config.preempt_delay;
        if self.faulted {
            if successor {
                // The VIP the previous instance left is ours to remove.
                actions.push(Action::ReleaseVip);
            }
            self.transition(State::Fault, self.fault_reason, &mut actions);
        } else if self.priority == PRIORITY_OWNER {
            self.become_master(now, "address owner", &mut actions);
        } else if successor {
            self.become_master(now, "kept the VIP of the previous instance", &mut actions);
        } else {
            self.become_backup(now, "startup", &mut actions);
        }
        actions
    }

    /// Graceful stop. A master resigns with make-before-break; others stop at once.
    pub fn shutdown(&mut self, now: Time) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.stopping {
            return actions;
        }
        self.stopping = true;
        match self.state {
            State::Master => {
                actions.push(Action::SendAdvert {
                    priority: PRIORITY_RESIGN,
                });
                // The backups' Master_Down_Interval bounds the wait even if our priority 0 is lost.
                let give_up = now + 4 * self.master_adver_interval + Duration::from_millis(10);
                self.timers.stop(Timer::Advert);
                self.timers.set(Timer::ResignGiveUp, give_up);
                self.transition(
                    State::Resigning,
                    "shutdown: waiting for the new master",
                    &mut actions,
                );
            }
            // Yielding to a fault already: the same wait now ends the instance.
            State::Resigning => self.yielding = false,
            _ => self.finish_stop("shutdown", &mut actions),
        }
        actions
    }

    /// The end of every stop: no timer, Initialize, and nothing forwarded (the old master's
    /// connections are gone by now, or the agent's drain keeps its own sockets reachable).
    fn finish_stop(&mut self, reason: &'static str, actions: &mut Vec<Action>) {
        self.timers.stop_all();
        self.transition(State::Initialize, reason, actions);
        self.heard = None;
        self.forward(None, actions);
        actions.push(Action::Stopped);
    }

    /// Stop at once, leaving the VIP bound for a new instance of this router that starts with
    /// [`Machine::startup_as_successor`] (the VirtualIP moved to another VRID, or other VRRP
    /// settings changed): no resignation, so no peer takes over in between. Only a master hands
    /// over this way; in any other state this is a graceful [`Machine::shutdown`].
    pub fn hand_to_successor(&mut self, now: Time) -> Vec<Action> {
        if self.state != State::Master || self.stopping {
            return self.shutdown(now);
        }
        let mut actions = Vec::new();
        self.stopping = true;
        self.handed_over = true;
        self.finish_stop("handed the VIP to a new instance", &mut actions);
        actions
    }

    /// Whether this instance stopped with the VIP still bound for its successor.
    pub fn handed_to_successor(&self) -> bool {
        self.handed_over
    }

    /// Stop now, without waiting for a new master (a second signal, or the grace period ran out).
    pub fn stop_now(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.holds_vip() {
            if self.state == State::Master {
                actions.push(Action::SendAdvert {
                    priority: PRIORITY_RESIGN,
                });
            }
            actions.push(Action::ReleaseVip);
        }
        self.stopping = true;
        self.finish_stop("stopped", &mut actions);
        actions
    }

    /// Handles every timer whose deadline passed at `now` (none: nothing happens).
    pub fn handle_timeout(&mut self, now: Time) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.timers.is_expired(Timer::HandoverEnd, now) {
            self.timers.stop(Timer::HandoverEnd);
            self.forward(None, &mut actions);
        }
        // Each of these runs in its own state only (see `Timer`): one at most has expired.
        if self.timers.is_expired(Timer::MasterDown, now) {
            self.become_master(now, "no advert within Master_Down_Interval", &mut actions);
        } else if self.timers.is_expired(Timer::Advert, now) {
            actions.push(Action::SendAdvert {
                priority: self.priority,
            });
            if self.copies_left > 0 {
                self.copies_left -= 1;
                let next = if self.copies_left > 0 {
                    now + self.copy_gap()
                } else {
                    self.interval_began + self.config.advert_interval
                };
                self.timers.set(Timer::Advert, next);
            } else {
                self.interval_started(now);
            }
        } else if self.timers.is_expired(Timer::ResignGiveUp, now) {
            actions.push(Action::ReleaseVip);
            if self.yielding {
                self.finish_yield(now, "no new master heard", &mut actions);
            } else {
                self.finish_stop("shutdown: no new master heard", &mut actions);
            }
        }
        actions
    }

    /// An advert for our VRID that passed the shell's checks.
    pub fn handle_advert(&mut self, now: Time, advert: Received) -> Vec<Action> {
        let mut actions = Vec::new();
        match self.state {
            State::Backup => {
                self.heard = Some(Heard {
                    from: advert.from,
                    at: now,
                    resigned: advert.priority == PRIORITY_RESIGN,
                });
                self.forward(Some(advert.from), &mut actions);
                if advert.priority == PRIORITY_RESIGN {
                    self.timers.set(Timer::MasterDown, now + self.skew_time());
                } else if !self.config.preempt
                    || advert.priority >= self.priority
                    || now < self.preempt_after
                {
                    if self.config.version == Version::V3 {
                        self.master_adver_interval = advert.interval;
                    }
                    self.timers
                        .set(Timer::MasterDown, now + self.master_down_interval());
                }
                // Otherwise a lower-priority master: let Master_Down_Timer run out and preempt it.
            }
            State::Master => {
                if advert.priority == PRIORITY_RESIGN {
                    actions.push(Action::SendAdvert {
                        priority: self.priority,
                    });
                    self.interval_started(now);
                } else if advert.priority > self.priority
                    || (advert.priority == self.priority
                        && advert.from > self.config.primary_address)
                {
                    if self.config.version == Version::V3 {
                        self.master_adver_interval = advert.interval;
                    }
                    // One last advert before yielding: after a partition heals the winner may
                    // never have heard us, yet neighbours may have our MAC for the VIP. Hearing
                    // a lower-priority master makes it announce again (keepalived too:
                    // garp_lower_prio_repeat).
                    actions.push(Action::SendAdvert {
                        priority: self.priority,
                    });
                    self.become_backup(now, "higher-priority master", &mut actions);
                } else {
                    // A lower-priority router also became master (close priorities at short
                    // intervals fire within a millisecond) and announced the VIP: neighbours may
                    // now send to it. Advertise at once so it backs off, and announce again
                    // (keepalived does the same by default: lower_prio_no_advert off).
                    actions.push(Action::SendAdvert {
                        priority: self.priority,
                    });
                    // It sends its advert before its announcement burst: answer now, and again
                    // once it has surely yielded (keepalived: garp_lower_prio_delay).
                    actions.push(Action::Reannounce {
                        again_after: self.config.advert_interval.max(Duration::from_millis(50)),
                    });
                    self.interval_started(now);
                }
            }
            State::Resigning => {
                if advert.priority != PRIORITY_RESIGN {
                    actions.push(Action::ReleaseVip);
                    if self.yielding {
                        self.finish_yield(now, "new master took over", &mut actions);
                    } else {
                        self.finish_stop("shutdown: new master took over", &mut actions);
                    }
                }
            }
            State::Initialize | State::Fault => {}
        }
        actions
    }

    /// The effective priority changed (tracking). A master tells the others at once.
    pub fn set_priority(&mut self, now: Time, priority: u8) -> Vec<Action> {
        let mut actions = Vec::new();
        let priority = priority.max(1);
        if priority == self.priority {
            return actions;
        }
        self.priority = priority;
        if self.state == State::Master {
            actions.push(Action::SendAdvert { priority });
            self.interval_started(now);
        }
        actions
    }

    /// A fault that yields gracefully started: like [`Machine::set_fault`], except that a
    /// master resigns with make-before-break (priority 0, the VIP kept until a new master speaks
    /// or the backups' patience runs out) before it goes to Fault. For a condition under which
    /// the master can still serve for a moment, such as a Service's last local endpoint
    /// terminating: its successor is serving before it lets go.
    pub fn yield_to_fault(&mut self, now: Time, reason: &'static str) -> Vec<Action> {
        if self.state != State::Master || self.stopping || self.faulted {
            return self.set_fault(now, true, reason);
        }
        let mut actions = Vec::new();
        self.faulted = true;
        self.fault_reason = reason;
        self.yielding = true;
        actions.push(Action::SendAdvert {
            priority: PRIORITY_RESIGN,
        });
        let give_up = now + 4 * self.master_adver_interval + Duration::from_millis(10);
        self.timers.stop(Timer::Advert);
        self.timers.set(Timer::ResignGiveUp, give_up);
        self.transition(State::Resigning, reason, &mut actions);
        actions
    }

    /// The end of a graceful yield: Fault if the fault still holds, else Backup.
    fn finish_yield(&mut self, now: Time, why: &'static str, actions: &mut Vec<Action>) {
        self.yielding = false;
        self.timers.stop(Timer::ResignGiveUp);
        if self.faulted {
            self.transition(State::Fault, why, actions);
        } else {
            self.master_adver_interval = self.config.advert_interval;
            self.preempt_after = now + self.config.preempt_delay;
            self.become_backup(now, why, actions);
        }
    }

    /// The fault condition (interface down, tracked failure with weight 0) started or ended.
    pub fn set_fault(&mut self, now: Time, faulted: bool, reason: &'static str) -> Vec<Action> {
        let mut actions = Vec::new();
        if faulted && self.yielding && self.state == State::Resigning {
            // A hard fault while yielding gracefully: let go at once.
            self.faulted = true;
            self.fault_reason = reason;
            self.yielding = false;
            self.timers.stop(Timer::ResignGiveUp);
            actions.push(Action::ReleaseVip);
            self.transition(State::Fault, reason, &mut actions);
            return actions;
        }
        if faulted == self.faulted {
            return actions;
        }
        self.faulted = faulted;
        self.fault_reason = reason;
        if self.stopping {
            return actions;
        }
        match (faulted, self.state) {
            (true, State::Master | State::Backup) => {
                if self.state == State::Master {
                    // Tell the backups to take over now rather than after Master_Down_Interval.
                    actions.push(Action::SendAdvert {
                        priority: PRIORITY_RESIGN,
                    });
                    actions.push(Action::ReleaseVip);
                }
                self.timers.stop(Timer::MasterDown);
                self.timers.stop(Timer::Advert);
                self.transition(State::Fault, reason, &mut actions);
            }
            (false, State::Fault) => {
                self.master_adver_interval = self.config.advert_interval;
                self.preempt_after = now + self.config.preempt_delay;
                self.become_backup(now, reason, &mut actions);
            }
            _ => {}
        }
        actions
    }
}

#[cfg(test)]
mod tests;
