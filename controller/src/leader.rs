//! Leader election on a `coordination.k8s.io/v1` Lease: a pure decision
//! (acquire, renew, follow) over the Lease's content and the time, then one
//! compare-and-swap write (create, or replace at the read resourceVersion).
//! Only the leader reconciles; every replica serves the webhook.
//!
//! Timing follows client-go's elector: a leader that has not renewed within
//! the *renew deadline* (shorter than the Lease duration) steps down before
//! anyone else may take the Lease over, every API round trip is bounded by
//! the retry period, and a replica that stops releases the Lease so the next
//! one leads at once instead of after expiry.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

use super::context::{Error, is_status};

/// What a replica does with the Lease at a given time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderDecision {
    /// Take the Lease (absent, released or expired).
    Acquire,
    /// We hold it: refresh `renewTime`.
    Renew,
    /// Someone else holds a live Lease.
    Follow {
        /// The holder.
        holder: String,
        /// When it expires unless renewed.
        expires: Timestamp,
    },
}

/// Decides for replica `me` given the Lease (if any) at `now`.
pub fn decide(me: &str, lease: Option<&LeaseSpec>, now: Timestamp) -> LeaderDecision {
    let Some(spec) = lease else {
        return LeaderDecision::Acquire;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return LeaderDecision::Acquire;
    }
    if holder == me {
        return LeaderDecision::Renew;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    match renewed {
        Some(t) if t + duration > now => LeaderDecision::Follow {
            holder,
            expires: t + duration,
        },
        _ => LeaderDecision::Acquire,
    }
}

/// The Lease content after `decision` (`None` when following).
pub fn next_spec(
    me: &str,
    current: Option<&LeaseSpec>,
    decision: &LeaderDecision,
    now: Timestamp,
    duration: Duration,
) -> Option<LeaseSpec> {
    let base = current.cloned().unwrap_or_default();
    let seconds = i32::try_from(duration.as_secs()).unwrap_or(i32::MAX);
    match decision {
        LeaderDecision::Follow { .. } => None,
        LeaderDecision::Renew => Some(LeaseSpec {
            renew_time: Some(MicroTime(now)),
            lease_duration_seconds: Some(seconds),
            ..base
        }),
        LeaderDecision::Acquire => Some(LeaseSpec {
            holder_identity: Some(me.to_string()),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_duration_seconds: Some(seconds),
            lease_transitions: Some(
                base.lease_transitions.unwrap_or(0) + i32::from(current.is_some()),
            ),
            ..base
        }),
    }
}

/// Durations of the election, derived from the Lease duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderTiming {
    /// How long a Lease lives without renewal.
    pub lease: Duration,
    /// A leader that has not renewed for this long steps down (< `lease`).
    pub renew_deadline: Duration,
    /// Period of the rounds and bound of each round's API calls.
    pub retry: Duration,
}

impl LeaderTiming {
    /// client-go's proportions (15 s / 10 s / 2 s): deadline 2/3, retry 2/15.
    pub fn for_lease(lease: Duration) -> Self {
        LeaderTiming {
            lease,
            renew_deadline: lease * 2 / 3,
            retry: (lease * 2 / 15).max(Duration::from_millis(100)),
        }
    }
}

/// How one round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundOutcome {
    /// The Lease is ours after the round.
    Held,
    /// Someone else holds it (or won the compare-and-swap).
    NotHeld,
    /// The API failed or did not answer within the retry period.
    Failed,
}

/// Whether this replica leads, from the outcomes of its rounds (pure; the
/// clock is an argument).
#[derive(Debug, Clone, Default)]
pub struct Tenure {
    last_renewed: Option<Instant>,
}

impl Tenure {
    /// Records a round that ended at `now`. A failure keeps the last
    /// renewal: leadership survives API hiccups up to the renew deadline.
    pub fn record(&mut self, outcome: RoundOutcome, now: Instant) {
        match outcome {
            RoundOutcome::Held => self.last_renewed = Some(now),
            RoundOutcome::NotHeld => self.last_renewed = None,
            RoundOutcome::Failed => {}
        }
    }

    /// Leader at `now`: renewed within the renew deadline.
    pub fn is_leader(&self, now: Instant, timing: &LeaderTiming) -> bool {
        self.last_renewed
            .is_some_and(|t| now.saturating_duration_since(t) < timing.renew_deadline)
    }
}

/// One replica's elector.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaderElector {
    /// Elector on Lease `name` in `api`'s namespace, as `identity`.
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        LeaderElector {
            api,
            name: name.into(),
            identity: identity.into(),
            duration,
        }
    }

    /// One round at `now`: whether this replica holds the Lease afterwards.
    /// A lost compare-and-swap (409) means someone else won: not leader.
    pub async fn round(&self, now: Timestamp) -> Result<bool, Error> {
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(Error::kube("get the leader lease"))?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let decision = decide(&self.identity, spec, now);
        let Some(next) = next_spec(&self.identity, spec, &decision, now, self.duration) else {
            return Ok(false);
        };
        let result = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(next),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                // Replace at the resourceVersion read: the compare-and-swap.
                lease.spec = Some(next);
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_status(&e, 409) => Ok(false),
            Err(e) => Err(Error::kube("write the leader lease")(e)),
        }
    }

    /// Gives the Lease up if this replica holds it (holder emptied, one
    /// second left), so a successor leads at once. A lost compare-and-swap
    /// means someone else already holds it: nothing to release.
    pub async fn release(&self) -> Result<(), Error> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(Error::kube("get the leader lease"))?
        else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = Some(String::new());
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 409) => Ok(()),
            Err(e) => Err(Error::kube("release the leader lease")(e)),
        }
    }

    /// Runs a round every retry period, each bounded by it, publishing
    /// leadership on `tx` ([`Tenure`] decides). Returns when `stop`
    /// resolves, after releasing the Lease if held.
    pub async fn run(self, tx: watch::Sender<bool>, stop: impl std::future::Future<Output = ()>) {
        let timing = LeaderTiming::for_lease(self.duration);
        let mut tenure = Tenure::default();
        tokio::pin!(stop);
        loop {
            let outcome =
                match tokio::time::timeout(timing.retry, self.round(Timestamp::now())).await {
                    Ok(Ok(true)) => RoundOutcome::Held,
                    Ok(Ok(false)) => RoundOutcome::NotHeld,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "leader election round failed");
                        RoundOutcome::Failed
                    }
                    Err(_) => {
                        tracing::warn!(timeout = ?timing.retry, "leader election round timed out");
                        RoundOutcome::Failed
                    }
                };
            tenure.record(outcome, Instant::now());
            let leader = tenure.is_leader(Instant::now(), &timing);
            if *tx.borrow() != leader {
                tracing::info!(identity = %self.identity, leader, "leadership changed");
            }
            tx.send_replace(leader);
            tokio::select! {
                _ = tokio::time::sleep(timing.retry) => {}
                _ = &mut stop => break,
            }
        }
        tx.send_replace(false);
        match tokio::time::timeout(timing.retry, self.release()).await {
            Ok(Ok(())) => tracing::info!(identity = %self.identity, "leader lease released"),
            Ok(Err(e)) => tracing::warn!(error = %e, "failed to release the leader lease"),
            Err(_) => tracing::warn!("releasing the leader lease timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn acquire_renew_follow_expire() {
        let d = Duration::from_secs(15);
        assert_eq!(decide("a", None, at(100)), LeaderDecision::Acquire);
        let a = next_spec("a", None, &LeaderDecision::Acquire, at(100), d).unwrap();
        assert_eq!(a.holder_identity.as_deref(), Some("a"));
        assert_eq!(a.lease_transitions, Some(0));
        assert_eq!(decide("a", Some(&a), at(105)), LeaderDecision::Renew);
        let renewed = next_spec("a", Some(&a), &LeaderDecision::Renew, at(105), d).unwrap();
        assert_eq!(renewed.acquire_time, a.acquire_time);
        // b follows until 105 + 15.
        assert_eq!(
            decide("b", Some(&renewed), at(119)),
            LeaderDecision::Follow {
                holder: "a".into(),
                expires: at(120)
            }
        );
        assert_eq!(
            decide("b", Some(&renewed), at(120)),
            LeaderDecision::Acquire
        );
        let b = next_spec("b", Some(&renewed), &LeaderDecision::Acquire, at(120), d).unwrap();
        assert_eq!(b.holder_identity.as_deref(), Some("b"));
        assert_eq!(b.lease_transitions, Some(1));
        // A released lease (empty holder) is free at once.
        let released = LeaseSpec {
            holder_identity: Some(String::new()),
            ..b
        };
        assert_eq!(
            decide("a", Some(&released), at(121)),
            LeaderDecision::Acquire
        );
    }

    #[test]
    fn a_leader_steps_down_before_anyone_may_take_over() {
        let timing = LeaderTiming::for_lease(Duration::from_secs(15));
        assert_eq!(timing.renew_deadline, Duration::from_secs(10));
        assert_eq!(timing.retry, Duration::from_secs(2));
        let t0 = Instant::now();
        let mut tenure = Tenure::default();
        assert!(!tenure.is_leader(t0, &timing), "no round yet");
        tenure.record(RoundOutcome::Held, t0);
        assert!(tenure.is_leader(t0, &timing));
        // API failures keep leadership until the renew deadline, which ends
        // before the lease expires (15 s) for the others.
        tenure.record(RoundOutcome::Failed, t0 + Duration::from_secs(4));
        assert!(tenure.is_leader(t0 + Duration::from_secs(9), &timing));
        assert!(!tenure.is_leader(t0 + Duration::from_secs(10), &timing));
        assert!(timing.renew_deadline < timing.lease);
        // A renewal restarts the deadline; losing the CAS ends it at once.
        tenure.record(RoundOutcome::Held, t0 + Duration::from_secs(11));
        assert!(tenure.is_leader(t0 + Duration::from_secs(12), &timing));
        tenure.record(RoundOutcome::NotHeld, t0 + Duration::from_secs(12));
        assert!(!tenure.is_leader(t0 + Duration::from_secs(12), &timing));
    }
}
