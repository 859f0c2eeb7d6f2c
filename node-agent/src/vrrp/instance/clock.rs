//! The instance's one clock. The core takes time as a `Duration` since an epoch; tokio sleeps
//! until an `Instant`: both come from here, so the router and the shell never disagree.

use buoy_vrrp::machine::Time;
use tokio::time::Instant;

/// The instance's one clock: tokio's monotonic clock, as time since the instance started (what
/// the core takes), and back to instants (what tokio sleeps until).
pub(super) struct Clock {
    epoch: Instant,
}

impl Clock {
    pub(super) fn start() -> Clock {
        Clock {
            epoch: Instant::now(),
        }
    }

    pub(super) fn now(&self) -> Time {
        self.epoch.elapsed()
    }

    pub(super) fn instant(&self, t: Time) -> Instant {
        self.epoch + t
    }
}
