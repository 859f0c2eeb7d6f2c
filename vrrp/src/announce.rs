//! When a master announces its virtual addresses (gratuitous ARP, unsolicited neighbour
//! advertisements), as keepalived's `garp_master_*` settings: a burst on taking the VIP, another
//! after a delay, periodic refreshes, and bursts again when another router claimed the VIP.
//! Sans IO: it says how many rounds are due; the shell sends them.

use std::time::Duration;

use crate::machine::Time;

/// Gratuitous ARP / NA schedule (keepalived's garp_master_*).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceConfig {
    /// Delay of the second burst after the first.
    pub delay: Duration,
    /// Rounds per burst (a round: one announcement per virtual address).
    pub repeat: u32,
    /// Period of the refreshes while master; zero: none.
    pub refresh_interval: Duration,
    /// Rounds per refresh.
    pub refresh_repeat: u32,
}

impl Default for AnnounceConfig {
    fn default() -> Self {
        AnnounceConfig {
            delay: Duration::from_secs(5),
            repeat: 5,
            refresh_interval: Duration::ZERO,
            refresh_repeat: 1,
        }
    }
}

/// The announcements still to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Announcements {
    config: AnnounceConfig,
    /// Bursts still to send: when, and how many rounds.
    bursts: Vec<(Time, u32)>,
    /// The next refresh.
    refresh_at: Option<Time>,
}

impl Announcements {
    /// Nothing scheduled yet.
    pub(crate) fn new(config: AnnounceConfig) -> Announcements {
        Announcements {
            config,
            bursts: Vec::new(),
            refresh_at: None,
        }
    }

    /// The VIP was just taken (or its link came back): a burst now, another after the delay, and
    /// refreshes from now on. Replaces whatever was scheduled.
    pub(crate) fn start(&mut self, now: Time) {
        self.bursts = vec![(now, self.config.repeat)];
        if !self.config.delay.is_zero() {
            self.bursts
                .push((now + self.config.delay, self.config.repeat));
        }
        self.refresh_at =
            (!self.config.refresh_interval.is_zero()).then(|| now + self.config.refresh_interval);
    }

    /// Another router also claimed the VIP: a burst now and another after `again_after`, beside
    /// what is already scheduled.
    pub(crate) fn again(&mut self, now: Time, again_after: Duration) {
        self.bursts.push((now, self.config.repeat));
        self.bursts.push((now + again_after, self.config.repeat));
    }

    /// The VIP was released: nothing more to announce.
    pub(crate) fn stop(&mut self) {
        self.bursts.clear();
        self.refresh_at = None;
    }

    /// The rounds due at `now` (bursts and refresh), which are then no longer due.
    pub(crate) fn due(&mut self, now: Time) -> u32 {
        let mut due = 0u32;
        self.bursts.retain(|(at, n)| {
            if *at <= now {
                due = due.saturating_add(*n);
                false
            } else {
                true
            }
        });
        if self.refresh_at.is_some_and(|at| at <= now) {
            due = due.saturating_add(self.config.refresh_repeat);
            self.refresh_at = Some(now + self.config.refresh_interval);
        }
        due
    }

    /// When the next burst is due.
    pub(crate) fn next_burst(&self) -> Option<Time> {
        self.bursts.iter().map(|(at, _)| *at).min()
    }

    /// When the next refresh is due.
    pub(crate) fn next_refresh(&self) -> Option<Time> {
        self.refresh_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn config(refresh_interval: Duration) -> AnnounceConfig {
        AnnounceConfig {
            delay: ms(5000),
            repeat: 5,
            refresh_interval,
            refresh_repeat: 2,
        }
    }

    #[test]
    fn a_burst_now_another_after_the_delay_then_refreshes() {
        let mut a = Announcements::new(config(ms(60_000)));
        a.start(ms(1000));
        assert_eq!(a.due(ms(1000)), 5);
        assert_eq!(a.next_burst(), Some(ms(6000)));
        assert_eq!(a.due(ms(5999)), 0);
        assert_eq!(a.due(ms(6000)), 5);
        assert_eq!(a.next_burst(), None);
        assert_eq!(a.next_refresh(), Some(ms(61_000)));
        assert_eq!(a.due(ms(61_000)), 2);
        assert_eq!(a.next_refresh(), Some(ms(121_000)));
        a.stop();
        assert_eq!((a.next_burst(), a.next_refresh()), (None, None));
    }

    #[test]
    fn no_delay_no_second_burst_and_no_refresh_without_an_interval() {
        let mut a = Announcements::new(AnnounceConfig {
            delay: Duration::ZERO,
            ..config(Duration::ZERO)
        });
        a.start(ms(0));
        assert_eq!(a.due(ms(0)), 5);
        assert_eq!((a.next_burst(), a.next_refresh()), (None, None));
    }

    #[test]
    fn announcing_again_adds_to_what_is_scheduled() {
        let mut a = Announcements::new(config(Duration::ZERO));
        a.start(ms(0));
        a.due(ms(0));
        a.again(ms(1000), ms(50));
        a.again(ms(1010), ms(50));
        assert_eq!(a.due(ms(1010)), 10);
        assert_eq!(a.due(ms(1060)), 10);
        assert_eq!(a.next_burst(), Some(ms(5000)), "the delayed burst stays");
    }
}
