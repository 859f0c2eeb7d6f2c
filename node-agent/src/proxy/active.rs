//! Active health state of a backend: `unhealthyThreshold` consecutive failed probes take it out,
//! `healthyThreshold` consecutive successes bring it back (HAProxy's fall / rise). A backend
//! starts healthy so that traffic flows before the first probe returns.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub healthy: u32,
    pub unhealthy: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ActiveState {
    pub healthy: bool,
    streak: u32,
}

impl Default for ActiveState {
    fn default() -> Self {
        ActiveState {
            healthy: true,
            streak: 0,
        }
    }
}

impl ActiveState {
    /// A state that starts healthy or not (pools' backends start healthy; a tracked probe
    /// starts failing, until it first passes).
    pub(crate) fn starting(healthy: bool) -> Self {
        ActiveState { healthy, streak: 0 }
    }

    /// Records one probe result; returns `Some(new_health)` when the health changed.
    pub(crate) fn record(&mut self, t: &Thresholds, ok: bool) -> Option<bool> {
        if ok == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if ok { t.healthy } else { t.unhealthy };
        if self.streak >= needed.max(1) {
            self.healthy = ok;
            self.streak = 0;
            Some(ok)
        } else {
            None
        }
    }
}

/// Whether an HTTP status matches one of the ranges (`200-399`, `204`).
pub(crate) fn status_expected(status: u16, ranges: &[(u16, u16)]) -> bool {
    ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rise_and_fall() {
        let t = Thresholds {
            healthy: 2,
            unhealthy: 3,
        };
        let mut s = ActiveState::default();
        assert_eq!(s.record(&t, false), None);
        assert_eq!(s.record(&t, false), None);
        assert_eq!(
            s.record(&t, true),
            None,
            "a success resets the failure streak"
        );
        assert_eq!(s.record(&t, false), None);
        assert_eq!(s.record(&t, false), None);
        assert_eq!(s.record(&t, false), Some(false));
        assert!(!s.healthy);
        assert_eq!(s.record(&t, true), None);
        assert_eq!(s.record(&t, true), Some(true));
        assert!(s.healthy);
    }

    #[test]
    fn status_ranges() {
        assert!(status_expected(200, &[(200, 399)]));
        assert!(status_expected(399, &[(200, 399)]));
        assert!(!status_expected(404, &[(200, 399)]));
        assert!(status_expected(404, &[(200, 299), (404, 404)]));
    }
}
