//! Leader election on a `coordination.k8s.io/v1` Lease: a pure decision
//! (acquire, renew, follow) over the Lease's content and the time, then one
//! compare-and-swap write (create, or replace at the read resourceVersion).
//! Only the leader reconciles; every replica serves the webhook.

use std::time::Duration;

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

    /// Runs rounds every third of the Lease duration, publishing leadership
    /// on `tx`. Leadership is dropped when a renewal has not succeeded
    /// within the Lease duration (API unreachable).
    pub async fn run(self, tx: watch::Sender<bool>) {
        let period = self.duration / 3;
        let mut last_ok: Option<std::time::Instant> = None;
        loop {
            match self.round(Timestamp::now()).await {
                Ok(true) => last_ok = Some(std::time::Instant::now()),
                Ok(false) => last_ok = None,
                Err(e) => tracing::warn!(error = %e, "leader election round failed"),
            }
            let leader = last_ok.is_some_and(|t| t.elapsed() < self.duration);
            if *tx.borrow() != leader {
                tracing::info!(identity = %self.identity, leader, "leadership changed");
            }
            tx.send_replace(leader);
            tokio::time::sleep(period).await;
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
}
