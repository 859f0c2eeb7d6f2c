//! The state machine's named timers (as quinn-proto's `Timer`): each purpose has its own
//! deadline, so that what fires is said by its name rather than read from the state.

use super::Time;

/// A timer of the state machine. Each is armed in one state only (see the variants), so at most
/// one of the first three runs at a time; [`Timer::HandoverEnd`] runs beside them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Backup: the RFC's Master_Down_Timer (no advert within Master_Down_Interval, or the skew
    /// time after the master resigned): take over.
    MasterDown,
    /// Master: the RFC's Adver_Timer: the next advert, or the next redundant copy of one.
    Advert,
    /// Resigning: no new master was heard in time; release the VIP anyway.
    ResignGiveUp,
    /// Master: the end of the window in which the previous master's connections are forwarded.
    HandoverEnd,
}

impl Timer {
    /// Every timer, in the order [`Machine::next_timer`](super::Machine::next_timer) prefers on
    /// equal deadlines.
    pub const VALUES: [Timer; 4] = [
        Timer::HandoverEnd,
        Timer::MasterDown,
        Timer::Advert,
        Timer::ResignGiveUp,
    ];

    fn index(self) -> usize {
        match self {
            Timer::MasterDown => 0,
            Timer::Advert => 1,
            Timer::ResignGiveUp => 2,
            Timer::HandoverEnd => 3,
        }
    }
}

/// The deadline of each [`Timer`], if armed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TimerTable {
    deadlines: [Option<Time>; 4],
}

impl TimerTable {
    /// Arms `timer` for `at` (re-arms it if it ran).
    pub(crate) fn set(&mut self, timer: Timer, at: Time) {
        self.deadlines[timer.index()] = Some(at);
    }

    /// Disarms `timer`.
    pub(crate) fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.index()] = None;
    }

    /// Disarms every timer.
    pub(crate) fn stop_all(&mut self) {
        self.deadlines = [None; 4];
    }

    /// The deadline of `timer`, if armed.
    pub(crate) fn get(&self, timer: Timer) -> Option<Time> {
        self.deadlines[timer.index()]
    }

    /// Whether `timer` is armed and its deadline has passed at `now`.
    pub(crate) fn is_expired(&self, timer: Timer, now: Time) -> bool {
        self.get(timer).is_some_and(|at| at <= now)
    }

    /// The timer that runs out first, and when.
    pub(crate) fn next(&self) -> Option<(Timer, Time)> {
        Timer::VALUES
            .into_iter()
            .filter_map(|t| Some((t, self.get(t)?)))
            .min_by_key(|(_, at)| *at)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_earliest_armed_timer_is_next() {
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Advert, Duration::from_millis(30));
        t.set(Timer::HandoverEnd, Duration::from_millis(20));
        assert_eq!(
            t.next(),
            Some((Timer::HandoverEnd, Duration::from_millis(20)))
        );
        assert!(t.is_expired(Timer::HandoverEnd, Duration::from_millis(20)));
        assert!(!t.is_expired(Timer::Advert, Duration::from_millis(20)));
        t.stop(Timer::HandoverEnd);
        assert_eq!(t.next(), Some((Timer::Advert, Duration::from_millis(30))));
        t.stop_all();
        assert_eq!(t.next(), None);
    }
}
