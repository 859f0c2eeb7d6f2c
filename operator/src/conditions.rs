//! Status conditions in the Kubernetes shape (`metav1.Condition`), so that kstatus, Argo CD and
//! Flux read them: `lastTransitionTime` moves only when `status` changes. Pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

pub(crate) const READY: &str = "Ready";
pub(crate) const DEGRADED: &str = "Degraded";
pub(crate) const CONFLICT: &str = "Conflict";
/// A BGPPeer's: at least one node's session with it is up.
pub(crate) const ESTABLISHED: &str = "Established";

/// A condition's desired value, before times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Want {
    pub(crate) type_: &'static str,
    pub(crate) status: bool,
    pub(crate) reason: String,
    pub(crate) message: String,
}

impl Want {
    pub(crate) fn new(
        type_: &'static str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> Want {
        Want {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Seconds precision, as the API serializes times: a time read back compares equal.
pub(crate) fn truncate(now: Timestamp) -> Timestamp {
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

fn status_str(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// The condition for `want`, keeping the previous transition time when the status is unchanged.
pub(crate) fn build(
    want: &Want,
    generation: Option<i64>,
    now: Timestamp,
    previous: &[Condition],
) -> Condition {
    let status = status_str(want.status);
    let since = previous
        .iter()
        .find(|c| c.type_ == want.type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(truncate(now)));
    Condition {
        type_: want.type_.to_string(),
        status: status.to_string(),
        reason: want.reason.clone(),
        message: want.message.clone(),
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// The condition of `type_` in `list`.
pub(crate) fn find<'a>(list: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    list.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_with_status() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:01:00.5Z".parse().unwrap();
        let first = build(&Want::new(READY, false, "NoMaster", "x"), Some(1), t0, &[]);
        let same = build(
            &Want::new(READY, false, "Other", "y"),
            Some(2),
            t1,
            std::slice::from_ref(&first),
        );
        assert_eq!(same.last_transition_time, first.last_transition_time);
        assert_eq!(same.observed_generation, Some(2));
        let flipped = build(
            &Want::new(READY, true, "Serving", "z"),
            Some(2),
            t1,
            &[first],
        );
        assert_eq!(flipped.last_transition_time.0.as_second(), t1.as_second());
        assert_eq!(flipped.status, "True");
    }
}
