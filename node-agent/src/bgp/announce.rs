//! Which of the node's VIP addresses to announce by BGP, and when to stop (pure, sans-IO).
//!
//! An address is announced while the node is eligible for it (its listeners serve with a healthy
//! backend, a ready local endpoint where the Service asks for one). One that is no longer
//! eligible is withdrawn at once: the node cannot serve it. One that goes away on purpose (the
//! agent stopping, the VirtualIP deleted or moved off the node) is drained first: announced
//! with the GRACEFUL_SHUTDOWN community (RFC 8326), so that the routers move new flows to the
//! other nodes while this one still answers, and withdrawn when its [`Timer::Drain`] fires. A
//! rolling restart then fails no request.
//!
//! Driven like quinn-proto's connection: [`Announcer::update`] and [`Announcer::stop`] take
//! events, [`Announcer::poll_timeout`] names the next timer, [`Announcer::handle_timeout`] fires
//! it, and [`Announcer::routes`] is what FRR should announce now.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Duration, Instant},
};

/// How long a route is announced with GRACEFUL_SHUTDOWN before it is withdrawn, when the
/// configuration does not say: long enough for the routers to prefer the other nodes' paths
/// (one UPDATE, a best-path run) with a margin for a busy control plane.
pub(crate) const DEFAULT_DRAIN: Duration = Duration::from_secs(3);

/// The announcer's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// A draining address is withdrawn.
    Drain(IpAddr),
}

/// One route to announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Announced {
    /// The address, announced as a /32 or /128.
    pub address: IpAddr,
    /// Announced with GRACEFUL_SHUTDOWN: the node is about to withdraw it.
    pub draining: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RouteState {
    Announced,
    Draining { until: Instant },
}

/// The announcement state of one node's addresses.
#[derive(Debug)]
pub(crate) struct Announcer {
    drain: Duration,
    routes: BTreeMap<IpAddr, RouteState>,
    stopping: bool,
}

impl Announcer {
    /// An announcer that drains for `drain` before a planned withdrawal.
    pub(crate) fn new(drain: Duration) -> Announcer {
        Announcer {
            drain,
            routes: BTreeMap::new(),
            stopping: false,
        }
    }

    /// The node's addresses now: `eligible` are those it should announce, `ineligible` those it
    /// serves but cannot (withdrawn at once); an announced address in neither was removed from
    /// the node on purpose and drains. Once stopping, nothing new is announced.
    pub(crate) fn update(
        &mut self,
        eligible: &BTreeSet<IpAddr>,
        ineligible: &BTreeSet<IpAddr>,
        now: Instant,
    ) {
        for address in ineligible {
            self.routes.remove(address);
        }
        if !self.stopping {
            for address in eligible {
                // A draining address that is wanted again is announced plainly again.
                self.routes.insert(*address, RouteState::Announced);
            }
        }
        let until = now + self.drain;
        for (address, state) in &mut self.routes {
            if !eligible.contains(address) && *state == RouteState::Announced {
                *state = RouteState::Draining { until };
            }
        }
    }

    /// The agent is stopping: every address drains, then is withdrawn.
    pub(crate) fn stop(&mut self, now: Instant) {
        self.stopping = true;
        let until = now + self.drain;
        for state in self.routes.values_mut() {
            if *state == RouteState::Announced {
                *state = RouteState::Draining { until };
            }
        }
    }

    /// The next timer to fire, and when.
    pub(crate) fn poll_timeout(&self) -> Option<(Timer, Instant)> {
        self.routes
            .iter()
            .filter_map(|(address, state)| match state {
                RouteState::Draining { until } => Some((Timer::Drain(*address), *until)),
                RouteState::Announced => None,
            })
            .min_by_key(|(_, until)| *until)
    }

    /// Fires every timer due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.routes.retain(|_, state| match state {
            RouteState::Draining { until } => *until > now,
            RouteState::Announced => true,
        });
    }

    /// What FRR should announce now, sorted by address.
    pub(crate) fn routes(&self) -> Vec<Announced> {
        self.routes
            .iter()
            .map(|(address, state)| Announced {
                address: *address,
                draining: matches!(state, RouteState::Draining { .. }),
            })
            .collect()
    }

    /// Stopping, and every route withdrawn: the agent may close its listeners and exit.
    pub(crate) fn finished(&self) -> bool {
        self.stopping && self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> BTreeSet<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn shown(a: &Announcer) -> Vec<(String, bool)> {
        a.routes()
            .iter()
            .map(|r| (r.address.to_string(), r.draining))
            .collect()
    }

    #[test]
    fn eligible_addresses_are_announced_and_ineligible_ones_withdrawn_at_once() {
        let t0 = Instant::now();
        let mut a = Announcer::new(Duration::from_secs(3));
        a.update(&ips(&["192.0.2.1", "2001:db8::1"]), &ips(&[]), t0);
        assert_eq!(
            shown(&a),
            [("192.0.2.1".into(), false), ("2001:db8::1".into(), false)]
        );
        assert_eq!(a.poll_timeout(), None, "nothing to wait for");
        // No healthy backend for 192.0.2.1: gone now, no drain (the node cannot serve it).
        a.update(&ips(&["2001:db8::1"]), &ips(&["192.0.2.1"]), t0);
        assert_eq!(shown(&a), [("2001:db8::1".into(), false)]);
        assert_eq!(a.poll_timeout(), None);
        // Healthy again.
        a.update(&ips(&["192.0.2.1", "2001:db8::1"]), &ips(&[]), t0);
        assert_eq!(a.routes().len(), 2);
        assert!(!a.finished());
    }

    #[test]
    fn a_removed_address_drains_with_graceful_shutdown_then_is_withdrawn() {
        let t0 = Instant::now();
        let drain = Duration::from_secs(3);
        let mut a = Announcer::new(drain);
        a.update(&ips(&["192.0.2.1", "192.0.2.2"]), &ips(&[]), t0);
        let t1 = t0 + Duration::from_secs(10);
        a.update(&ips(&["192.0.2.2"]), &ips(&[]), t1);
        assert_eq!(
            shown(&a),
            [("192.0.2.1".into(), true), ("192.0.2.2".into(), false)]
        );
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(a.poll_timeout(), Some((Timer::Drain(ip), t1 + drain)));
        // Not before its time.
        a.handle_timeout(t1 + drain - Duration::from_millis(1));
        assert_eq!(a.routes().len(), 2);
        // A later update does not restart the drain.
        a.update(&ips(&["192.0.2.2"]), &ips(&[]), t1 + Duration::from_secs(1));
        assert_eq!(a.poll_timeout(), Some((Timer::Drain(ip), t1 + drain)));
        a.handle_timeout(t1 + drain);
        assert_eq!(shown(&a), [("192.0.2.2".into(), false)]);
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn a_draining_address_wanted_again_is_announced_plainly() {
        let t0 = Instant::now();
        let mut a = Announcer::new(Duration::from_secs(3));
        a.update(&ips(&["192.0.2.1"]), &ips(&[]), t0);
        a.update(&ips(&[]), &ips(&[]), t0);
        assert_eq!(shown(&a), [("192.0.2.1".into(), true)]);
        a.update(&ips(&["192.0.2.1"]), &ips(&[]), t0 + Duration::from_secs(1));
        assert_eq!(shown(&a), [("192.0.2.1".into(), false)]);
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn stopping_drains_everything_and_announces_nothing_new() {
        let t0 = Instant::now();
        let drain = Duration::from_secs(2);
        let mut a = Announcer::new(drain);
        a.update(&ips(&["192.0.2.1", "192.0.2.2"]), &ips(&[]), t0);
        a.stop(t0);
        assert_eq!(
            shown(&a),
            [("192.0.2.1".into(), true), ("192.0.2.2".into(), true)]
        );
        assert!(!a.finished(), "still draining");
        // A configuration arriving while stopping adds nothing and keeps the drain.
        a.update(&ips(&["192.0.2.1", "192.0.2.3"]), &ips(&[]), t0);
        assert_eq!(
            shown(&a),
            [("192.0.2.1".into(), true), ("192.0.2.2".into(), true)]
        );
        // A backend failing during the drain withdraws at once.
        a.update(&ips(&["192.0.2.1"]), &ips(&["192.0.2.2"]), t0);
        assert_eq!(shown(&a), [("192.0.2.1".into(), true)]);
        a.handle_timeout(t0 + drain);
        assert!(a.routes().is_empty());
        assert!(a.finished());
    }

    #[test]
    fn the_earliest_drain_fires_first() {
        let t0 = Instant::now();
        let drain = Duration::from_secs(3);
        let mut a = Announcer::new(drain);
        a.update(&ips(&["192.0.2.1", "192.0.2.2"]), &ips(&[]), t0);
        a.update(&ips(&["192.0.2.1"]), &ips(&[]), t0);
        let t1 = t0 + Duration::from_secs(1);
        a.update(&ips(&[]), &ips(&[]), t1);
        let (timer, at) = a.poll_timeout().unwrap();
        assert_eq!(timer, Timer::Drain("192.0.2.2".parse().unwrap()));
        assert_eq!(at, t0 + drain);
        a.handle_timeout(at);
        assert_eq!(
            a.poll_timeout(),
            Some((Timer::Drain("192.0.2.1".parse().unwrap()), t1 + drain))
        );
    }
}
