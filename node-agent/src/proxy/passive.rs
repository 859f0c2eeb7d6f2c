//! nginx's passive health check (`max_fails`, `fail_timeout`), exactly, with an injected clock.
//!
//! From `ngx_http_upstream_round_robin.c`: a failure increments `fails` and sets `accessed` and
//! `checked` to now. A peer with `fails >= max_fails` is skipped while `now - checked <=
//! fail_timeout`. When it is chosen again after that, `checked = now` (so one request probes it).
//! A success clears `fails` only if `accessed < checked`, i.e. if the peer was probed after its
//! last failure. `max_fails = 0` disables the accounting.

use std::time::Duration;

/// Time since an arbitrary epoch.
pub(crate) type Time = Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PassivePolicy {
    pub max_fails: u32,
    pub fail_timeout: Duration,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PassiveState {
    pub fails: u32,
    accessed: Time,
    checked: Time,
}

impl PassiveState {
    /// Whether the peer may be chosen now.
    pub(crate) fn available(&self, policy: &PassivePolicy, now: Time) -> bool {
        !(policy.max_fails > 0
            && self.fails >= policy.max_fails
            && now.saturating_sub(self.checked) <= policy.fail_timeout)
    }

    /// The peer was chosen (a probe after the timeout re-arms `checked`).
    pub(crate) fn chosen(&mut self, policy: &PassivePolicy, now: Time) {
        if now.saturating_sub(self.checked) > policy.fail_timeout {
            self.checked = now;
        }
    }

    /// A failed attempt; returns true when this failure made the peer unavailable.
    pub(crate) fn failed(&mut self, policy: &PassivePolicy, now: Time) -> bool {
        if policy.max_fails == 0 {
            return false;
        }
        self.fails += 1;
        self.accessed = now;
        self.checked = now;
        self.fails == policy.max_fails
    }

    /// A successful attempt.
    pub(crate) fn succeeded(&mut self) {
        if self.accessed < self.checked {
            self.fails = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn nginx_semantics_with_max_fails_2_fail_timeout_15s() {
        let p = PassivePolicy {
            max_fails: 2,
            fail_timeout: s(15),
        };
        let mut st = PassiveState::default();
        assert!(st.available(&p, s(100)));
        st.chosen(&p, s(100));
        assert!(!st.failed(&p, s(100)));
        assert!(st.available(&p, s(101)), "one failure of two");
        st.chosen(&p, s(101));
        assert!(st.failed(&p, s(101)), "second failure disables");
        assert!(!st.available(&p, s(101)));
        assert!(!st.available(&p, s(116)), "still within fail_timeout (<=)");
        assert!(
            st.available(&p, s(117)),
            "after fail_timeout one request may probe"
        );
        st.chosen(&p, s(117));
        assert!(
            !st.available(&p, s(118)),
            "the probe re-armed checked: others wait"
        );
        st.succeeded();
        assert_eq!(
            st.fails, 0,
            "a successful probe after the failure clears the count"
        );
        assert!(st.available(&p, s(118)));
    }

    #[test]
    fn a_success_before_the_probe_does_not_clear_failures() {
        // A request that started before the failure and succeeds afterwards: accessed == checked.
        let p = PassivePolicy {
            max_fails: 3,
            fail_timeout: s(10),
        };
        let mut st = PassiveState::default();
        st.chosen(&p, s(50));
        st.failed(&p, s(50));
        st.succeeded();
        assert_eq!(st.fails, 1);
    }

    #[test]
    fn max_fails_zero_disables_accounting() {
        let p = PassivePolicy {
            max_fails: 0,
            fail_timeout: s(10),
        };
        let mut st = PassiveState::default();
        for t in 0..100 {
            assert!(!st.failed(&p, s(t)));
            assert!(st.available(&p, s(t)));
        }
    }
}
