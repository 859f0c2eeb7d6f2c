//! The RFC 5798 state machine, sans IO: it is fed events with the current time and answers with
//! actions (send an advert, bind or release the VIP, announce it). It owns no socket and no timer;
//! the IO shell asks [`Machine::poll_timeout`] when to call [`Machine::handle_timeout`].
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
pub struct Config {
    pub version: Version,
    /// Base priority 1..255 (the effective priority may differ, see [`Machine::set_priority`]).
    pub priority: u8,
    /// Our advertisement interval (what our adverts carry).
    pub advert_interval: Duration,
    /// Adverts a master sends per interval, 1..=[`MAX_ADVERTS_PER_INTERVAL`] (other values are
    /// clamped into that range): the first, then copies [`Machine::copy_gap`] apart.
    pub adverts_per_interval: u8,
    pub preempt: bool,
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
pub enum State {
    Initialize,
    Backup,
    Master,
    Fault,
    /// A master that resigned (graceful stop) and still holds the VIP until a new master speaks.
    Resigning,
}

impl State {
    /// The state as logged and reported (`MASTER`, `BACKUP`, `FAULT`, `INIT`).
    pub fn name(self) -> &'static str {
        match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master | State::Resigning => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

/// What the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority now.
    SendAdvert { priority: u8 },
    /// Add the virtual addresses to the interface.
    BindVip,
    /// Remove the virtual addresses from the interface.
    ReleaseVip,
    /// Start announcing the addresses (gratuitous ARP / unsolicited NA bursts and refreshes).
    Announce,
    /// Announce the addresses again now and once more after this delay: another router also
    /// claimed them, and its own burst may still be on its way after our first one.
    Reannounce { again_after: Duration },
    /// Packets of TCP connections this node does not know, sent to a VIP it holds, go to this
    /// router (the master before us, which may still serve connections it accepted); `None`:
    /// nowhere. Set while Backup (inert until the VIP is ours) so that it is in place before a
    /// takeover; cleared when the master before us is dead, or the handover window ends.
    Forward { to: Option<IpAddr> },
    /// The master heard is not a known peer (see [`Machine::set_known_peers`]): its connections
    /// are not forwarded. Once per such master, for the shell to say so.
    ForwardRefused { to: IpAddr },
    /// The state changed.
    StateChanged {
        from: State,
        to: State,
        reason: &'static str,
    },
    /// Shutdown is complete; the shell may exit.
    Stopped,
}

/// An advert that passed the receive checks of the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    pub from: IpAddr,
    pub priority: u8,
    pub interval: Duration,
}

#[derive(Clone, Debug)]
pub struct Machine {
    config: Config,
    state: State,
    /// Effective priority (base ± tracking), 1..255.
    priority: u8,
    /// The master's advertisement interval (learned from its adverts in v3).
    master_adver_interval: Duration,
    /// Master_Down_Timer in Backup, Adver_Timer in Master, the give-up deadline in Resigning.
    timer: Option<Time>,
    /// Before this time a Backup does not preempt (keepalived's preempt_delay).
    preempt_after: Time,
    /// Whether the fault condition holds.
    faulted: bool,
    /// Why, while `faulted` (reported when the fault is found before startup).
    fault_reason: &'static str,
    /// Shutdown was asked for.
    stopping: bool,
    /// Master: redundant copies still to send in this interval, and when the interval began.
    copies_left: u8,
    interval_began: Time,
    /// Backup: the master we hear (the forwarding target if we take over while it lives).
    heard: Option<Heard>,
    /// Where [`Action::Forward`] last pointed.
    forwarding_to: Option<IpAddr>,
    /// Master: when forwarding to the previous master ends.
    forward_until: Option<Time>,
    /// Stopped with the VIP left bound for a successor instance.
    handed_over: bool,
    /// The only addresses forwarding may point at (the VirtualIP's other nodes, configured
    /// peers); `None`: any router heard. An advert's source is not proof of who sent it.
    known_peers: Option<std::collections::BTreeSet<IpAddr>>,
    /// The last master [`Action::ForwardRefused`] was for.
    refused: Option<IpAddr>,
}

impl Machine {
    pub fn new(config: Config) -> Self {
        Machine {
            priority: config.priority,
            master_adver_interval: config.advert_interval,
            config,
            state: State::Initialize,
            timer: None,
            preempt_after: Duration::ZERO,
            faulted: false,
            fault_reason: "",
            stopping: false,
            copies_left: 0,
            interval_began: Duration::ZERO,
            heard: None,
            forwarding_to: None,
            forward_until: None,
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
            self.forward_until = None;
            self.forward(None, &mut actions);
        }
        actions
    }

    fn may_forward_to(&self, to: IpAddr) -> bool {
        self.known_peers.as_ref().is_none_or(|p| p.contains(&to))
    }

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
        self.timer = Some(if self.copies_left > 0 {
            now + self.copy_gap()
        } else {
            now + self.config.advert_interval
        });
    }

    /// When [`Machine::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Time> {
        match (self.timer, self.forward_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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
        self.forward_until = None;
        self.timer = Some(now + self.master_down_interval());
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
                self.forward_until = (!self.config.handover_forward.is_zero())
                    .then(|| now + self.config.handover_forward);
            }
            None => self.forward(None, actions),
        }
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
                self.timer = Some(now + 4 * self.master_adver_interval + Duration::from_millis(10));
                self.transition(
                    State::Resigning,
                    "shutdown: waiting for the new master",
                    &mut actions,
                );
            }
            State::Resigning => {}
            _ => self.finish_stop("shutdown", &mut actions),
        }
        actions
    }

    /// The end of every stop: no timer, Initialize, and nothing forwarded (the old master's
    /// connections are gone by now, or the agent's drain keeps its own sockets reachable).
    fn finish_stop(&mut self, reason: &'static str, actions: &mut Vec<Action>) {
        self.timer = None;
        self.transition(State::Initialize, reason, actions);
        self.forward_until = None;
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

    /// A timer deadline passed.
    pub fn handle_timeout(&mut self, now: Time) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.forward_until.is_some_and(|t| t <= now) {
            self.forward_until = None;
            self.forward(None, &mut actions);
        }
        match self.timer {
            Some(deadline) if deadline <= now => {}
            _ => return actions,
        }
        match self.state {
            State::Backup => {
                self.become_master(now, "no advert within Master_Down_Interval", &mut actions)
            }
            State::Master => {
                actions.push(Action::SendAdvert {
                    priority: self.priority,
                });
                if self.copies_left > 0 {
                    self.copies_left -= 1;
                    self.timer = Some(if self.copies_left > 0 {
                        now + self.copy_gap()
                    } else {
                        self.interval_began + self.config.advert_interval
                    });
                } else {
                    self.interval_started(now);
                }
            }
            State::Resigning => {
                actions.push(Action::ReleaseVip);
                self.finish_stop("shutdown: no new master heard", &mut actions);
            }
            State::Initialize | State::Fault => self.timer = None,
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
                    self.timer = Some(now + self.skew_time());
                } else if !self.config.preempt
                    || advert.priority >= self.priority
                    || now < self.preempt_after
                {
                    if self.config.version == Version::V3 {
                        self.master_adver_interval = advert.interval;
                    }
                    self.timer = Some(now + self.master_down_interval());
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
                    self.finish_stop("shutdown: new master took over", &mut actions);
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

    /// The fault condition (interface down, tracked failure with weight 0) started or ended.
    pub fn set_fault(&mut self, now: Time, faulted: bool, reason: &'static str) -> Vec<Action> {
        let mut actions = Vec::new();
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
                self.timer = None;
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
mod tests {
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
}
