//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it:
//! the holder renews `renewTime` every few seconds; a candidate takes the Lease over when the
//! record has not changed for `leaseDurationSeconds` *by its own clock* (so clock skew between
//! replicas does not matter); writes carry the `resourceVersion`, so two candidates cannot both
//! win. [`Elector`] is the pure decision; [`run`] the IO loop around it.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

/// What a candidate reads from the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    holder: Option<String>,
    /// `renewTime` as written (compared for change only).
    renew_time: Option<String>,
    duration_secs: i64,
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// Create the Lease (none exists) with us as holder.
    Create,
    /// Write us as holder (ours already: renew; free or expired: take over).
    Claim { takeover: bool },
    /// Someone else holds it.
    Follow { holder: String },
}

/// The pure state machine of one candidate. Time is a monotonic duration since any origin.
#[derive(Clone, Debug)]
struct Elector {
    identity: String,
    lease_duration: Duration,
    seen: Option<(Record, Duration)>,
    last_renewal: Option<Duration>,
}

impl Elector {
    fn new(identity: impl Into<String>, lease_duration: Duration) -> Elector {
        Elector {
            identity: identity.into(),
            lease_duration,
            seen: None,
            last_renewal: None,
        }
    }

    /// Decides on a freshly read Lease (`None`: there is none).
    fn observe(&mut self, record: Option<&Record>, now: Duration) -> Step {
        let Some(record) = record else {
            self.seen = None;
            return Step::Create;
        };
        // When did the record last change, by our clock?
        let since = match &self.seen {
            Some((old, at)) if old == record => *at,
            _ => now,
        };
        self.seen = Some((record.clone(), since));
        match record.holder.as_deref().filter(|h| !h.is_empty()) {
            None => Step::Claim { takeover: true },
            Some(h) if h == self.identity => Step::Claim { takeover: false },
            Some(h) => {
                let duration =
                    Duration::from_secs(u64::try_from(record.duration_secs.max(1)).unwrap_or(1));
                if now.saturating_sub(since) >= duration {
                    Step::Claim { takeover: true }
                } else {
                    Step::Follow {
                        holder: h.to_string(),
                    }
                }
            }
        }
    }

    /// A claim or create succeeded at `now`.
    fn renewed(&mut self, now: Duration) {
        self.last_renewal = Some(now);
    }

    /// Whether we lead at `now`: our last successful renewal is younger than two thirds of the
    /// lease duration (client-go's renew deadline), leaving a margin before others may take over.
    fn leading(&self, now: Duration) -> bool {
        self.last_renewal
            .is_some_and(|t| now.saturating_sub(t) < self.lease_duration * 2 / 3)
    }

    /// We lost a write race or someone else holds the Lease.
    fn lost(&mut self) {
        self.last_renewal = None;
    }
}

fn record_of(lease: &Lease) -> Record {
    let spec = lease.spec.clone().unwrap_or_default();
    Record {
        holder: spec.holder_identity,
        renew_time: spec.renew_time.map(|t| t.0.to_string()),
        duration_secs: i64::from(spec.lease_duration_seconds.unwrap_or(15)),
    }
}

/// Settings of the election.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) lease_name: String,
    pub(crate) identity: String,
    pub(crate) lease_duration: Duration,
}

/// Runs the election until `stop` fires; publishes whether we lead on `leading`. On stop, a
/// leader releases the Lease so that another replica takes over at once.
pub(crate) async fn run(
    api: Api<Lease>,
    settings: Settings,
    leading: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let origin = Instant::now();
    let mut elector = Elector::new(settings.identity.clone(), settings.lease_duration);
    let retry = (settings.lease_duration / 5).max(Duration::from_millis(100));
    let duration_secs = i32::try_from(settings.lease_duration.as_secs().max(1)).unwrap_or(15);
    loop {
        let now = origin.elapsed();
        let current = api.get_opt(&settings.lease_name).await;
        match current {
            Err(e) => warn!(error = %e, "cannot read the leader Lease"),
            Ok(current) => {
                let step = elector.observe(current.as_ref().map(record_of).as_ref(), now);
                let stamp = MicroTime(Timestamp::now());
                let result = match (&step, current) {
                    (Step::Create, _) => {
                        let lease = Lease {
                            metadata: ObjectMeta {
                                name: Some(settings.lease_name.clone()),
                                ..Default::default()
                            },
                            spec: Some(LeaseSpec {
                                holder_identity: Some(settings.identity.clone()),
                                lease_duration_seconds: Some(duration_secs),
                                acquire_time: Some(stamp.clone()),
                                renew_time: Some(stamp),
                                lease_transitions: Some(0),
                                ..Default::default()
                            }),
                        };
                        Some(api.create(&PostParams::default(), &lease).await.map(|_| ()))
                    }
                    (Step::Claim { takeover }, Some(mut lease)) => {
                        let spec = lease.spec.get_or_insert_with(Default::default);
                        if *takeover {
                            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                            spec.acquire_time = Some(stamp.clone());
                        }
                        spec.holder_identity = Some(settings.identity.clone());
                        spec.lease_duration_seconds = Some(duration_secs);
                        spec.renew_time = Some(stamp);
                        // replace carries the resourceVersion: a concurrent writer gets 409.
                        Some(
                            api.replace(&settings.lease_name, &PostParams::default(), &lease)
                                .await
                                .map(|_| ()),
                        )
                    }
                    _ => None,
                };
                match result {
                    Some(Ok(())) => {
                        if matches!(step, Step::Create | Step::Claim { takeover: true }) {
                            info!(identity = %settings.identity, lease = %settings.lease_name, "acquired leadership");
                        }
                        elector.renewed(now);
                    }
                    Some(Err(e)) => {
                        warn!(error = %e, "cannot write the leader Lease");
                        if matches!(&e, kube::Error::Api(s) if s.code == 409) {
                            elector.lost();
                        }
                    }
                    None => elector.lost(),
                }
            }
        }
        let lead = elector.leading(origin.elapsed());
        leading.send_if_modified(|l| std::mem::replace(l, lead) != lead);
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = stop.changed() => break,
        }
    }
    if *leading.borrow() {
        release(&api, &settings).await;
        leading.send_replace(false);
    }
}

/// Gives the Lease up: no holder, so that a candidate takes it on its next try.
async fn release(api: &Api<Lease>, settings: &Settings) {
    let Ok(Some(mut lease)) = api.get_opt(&settings.lease_name).await else {
        return;
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(settings.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    match api
        .replace(&settings.lease_name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => info!(identity = %settings.identity, "released leadership"),
        Err(e) => warn!(error = %e, "cannot release the leader Lease"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(holder: Option<&str>, renew: &str) -> Record {
        Record {
            holder: holder.map(str::to_string),
            renew_time: Some(renew.into()),
            duration_secs: 10,
        }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn create_claim_follow_and_take_over_by_own_clock() {
        let mut a = Elector::new("a", S(10));
        assert_eq!(a.observe(None, S(0)), Step::Create);
        a.renewed(S(0));
        assert!(
            a.leading(S(6)) && !a.leading(S(7)),
            "renew deadline: 2/3 of the lease"
        );
        assert_eq!(
            a.observe(Some(&rec(Some("a"), "t0")), S(1)),
            Step::Claim { takeover: false }
        );

        let mut b = Elector::new("b", S(10));
        assert_eq!(
            b.observe(Some(&rec(Some("a"), "t0")), S(100)),
            Step::Follow { holder: "a".into() }
        );
        // a keeps renewing: the record changes, b keeps following.
        assert_eq!(
            b.observe(Some(&rec(Some("a"), "t1")), S(109)),
            Step::Follow { holder: "a".into() }
        );
        assert_eq!(
            b.observe(Some(&rec(Some("a"), "t1")), S(118)),
            Step::Follow { holder: "a".into() }
        );
        // a stopped renewing 10s ago by b's clock (whatever the timestamps say): take over.
        assert_eq!(
            b.observe(Some(&rec(Some("a"), "t1")), S(119)),
            Step::Claim { takeover: true }
        );
        // A released Lease is free at once.
        let mut c = Elector::new("c", S(10));
        assert_eq!(
            c.observe(Some(&rec(None, "t2")), S(0)),
            Step::Claim { takeover: true }
        );
        assert!(!c.leading(S(0)), "not before the write succeeds");
        c.renewed(S(0));
        c.lost();
        assert!(!c.leading(S(0)));
    }
}
