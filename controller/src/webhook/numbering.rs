//! Container numbers claimed through the API: one Lease per
//! (network, application, type, number), created with create-only
//! semantics — `409 AlreadyExists` means another admission took it, so two
//! concurrent pods (on any replica) never share a number. A claim whose
//! number no live pod carries any more, older than a grace period (the pod
//! of a fresh claim may not exist yet), is deleted at its resourceVersion
//! (another CAS) and its number reused: the lowest free one wins.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};

use crate::context::{Error, is_status};
use privnet_api::keys::{
    APPLICATION_LABEL, CLAIM_KIND_LABEL, CONTAINER_NUMBER_ANNOTATION, NETWORK_ID_ANNOTATION,
    NETWORK_LABEL, PROCESS_TYPE_LABEL,
};
use privnet_core::numbering::{NumberKey, lowest_free};

pub use privnet_api::keys::NUMBER_CLAIM_KIND;
/// Claims younger than this are never reclaimed (their pod may not be
/// persisted yet).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(120);
/// Attempts before giving up under extreme contention.
const MAX_ATTEMPTS: usize = 64;

/// One existing claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberClaim {
    /// The number.
    pub number: u32,
    /// Lease name.
    pub name: String,
    /// Its resourceVersion (delete precondition).
    pub resource_version: Option<String>,
    /// When it was taken.
    pub acquired: Option<Timestamp>,
}

/// Name of the Lease claiming `number` for `key`.
pub fn claim_name(key: &NumberKey, number: u32) -> String {
    format!(
        "privnet-num-{}-{}-{}-{number}",
        key.network_id, key.application_id, key.process_type
    )
}

/// Label selector of all claims of `key`.
pub fn claim_selector(key: &NumberKey) -> String {
    format!(
        "{CLAIM_KIND_LABEL}={NUMBER_CLAIM_KIND},{NETWORK_LABEL}={},{APPLICATION_LABEL}={},{PROCESS_TYPE_LABEL}={}",
        key.network_id, key.application_id, key.process_type
    )
}

/// Stale claims (no live pod has the number, older than `grace`) and the
/// lowest number free once they are gone.
pub fn choose(
    claims: &[NumberClaim],
    live: &BTreeSet<u32>,
    now: Timestamp,
    grace: Duration,
) -> (Vec<NumberClaim>, u32) {
    let grace = SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
    let stale: Vec<NumberClaim> = claims
        .iter()
        .filter(|c| !live.contains(&c.number) && c.acquired.is_none_or(|t| t + grace <= now))
        .cloned()
        .collect();
    let held: BTreeSet<u32> = claims
        .iter()
        .filter(|c| !stale.contains(c))
        .map(|c| c.number)
        .chain(live.iter().copied())
        .collect();
    let candidate = lowest_free(&held).expect("u32 space");
    (stale, candidate)
}

/// A number won.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The container number.
    pub number: u32,
    /// The Lease holding it.
    pub claim: String,
    /// Claims lost to concurrent admissions on the way.
    pub conflicts: u32,
}

/// Claims the lowest free number of `key` for `holder`.
pub async fn claim_number(
    leases: &Api<Lease>,
    pods: &Api<Pod>,
    key: &NumberKey,
    holder: &str,
    grace: Duration,
) -> Result<Claimed, Error> {
    let mut conflicts = 0;
    for _ in 0..MAX_ATTEMPTS {
        let claims = list_claims(leases, key).await?;
        let live = live_numbers(pods, key).await?;
        let (stale, candidate) = choose(&claims, &live, Timestamp::now(), grace);
        for c in &stale {
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: c.resource_version.clone(),
                    uid: None,
                }),
                ..Default::default()
            };
            match leases.delete(&c.name, &dp).await {
                Ok(_) => {}
                Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
                Err(e) => return Err(Error::kube(format!("release stale claim {}", c.name))(e)),
            }
        }
        let name = claim_name(key, candidate);
        match leases
            .create(&PostParams::default(), &claim_lease(key, candidate, holder))
            .await
        {
            Ok(_) => {
                return Ok(Claimed {
                    number: candidate,
                    claim: name,
                    conflicts,
                });
            }
            Err(e) if is_status(&e, 409) => conflicts += 1,
            Err(e) => return Err(Error::kube(format!("create claim {name}"))(e)),
        }
    }
    Err(Error::MissingField(
        format!(
            "{}/{}/{}",
            key.network_id, key.application_id, key.process_type
        ),
        "free container number after many conflicts",
    ))
}

/// The number `claim_number` would pick now, with no write at all (for
/// dry-run admissions).
pub async fn preview_number(
    leases: &Api<Lease>,
    pods: &Api<Pod>,
    key: &NumberKey,
    grace: Duration,
) -> Result<u32, Error> {
    let claims = list_claims(leases, key).await?;
    let live = live_numbers(pods, key).await?;
    Ok(choose(&claims, &live, Timestamp::now(), grace).1)
}

fn claim_lease(key: &NumberKey, number: u32, holder: &str) -> Lease {
    let labels = [
        (CLAIM_KIND_LABEL, NUMBER_CLAIM_KIND),
        (NETWORK_LABEL, key.network_id.as_str()),
        (APPLICATION_LABEL, key.application_id.as_str()),
        (PROCESS_TYPE_LABEL, key.process_type.as_str()),
    ];
    Lease {
        metadata: ObjectMeta {
            name: Some(claim_name(key, number)),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            annotations: Some(
                [(CONTAINER_NUMBER_ANNOTATION.to_string(), number.to_string())].into(),
            ),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            acquire_time: Some(MicroTime(Timestamp::now())),
            ..Default::default()
        }),
    }
}

async fn list_claims(leases: &Api<Lease>, key: &NumberKey) -> Result<Vec<NumberClaim>, Error> {
    let list = leases
        .list(&ListParams::default().labels(&claim_selector(key)))
        .await
        .map_err(Error::kube("list number claims"))?;
    Ok(list
        .items
        .iter()
        .filter_map(|l| {
            Some(NumberClaim {
                number: l
                    .annotations()
                    .get(CONTAINER_NUMBER_ANNOTATION)?
                    .parse()
                    .ok()?,
                name: l.name_any(),
                resource_version: l.resource_version(),
                acquired: l.spec.as_ref()?.acquire_time.as_ref().map(|t| t.0),
            })
        })
        .collect())
}

/// Numbers carried by live pods of `key` (any namespace).
async fn live_numbers(pods: &Api<Pod>, key: &NumberKey) -> Result<BTreeSet<u32>, Error> {
    let selector = format!(
        "{APPLICATION_LABEL}={},{PROCESS_TYPE_LABEL}={}",
        key.application_id, key.process_type
    );
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::kube("list pods"))?;
    Ok(list
        .items
        .iter()
        .filter(|p| p.annotations().get(NETWORK_ID_ANNOTATION) == Some(&key.network_id))
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .filter_map(|p| {
            p.annotations()
                .get(CONTAINER_NUMBER_ANNOTATION)?
                .parse()
                .ok()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(n: u32, acquired: i64) -> NumberClaim {
        NumberClaim {
            number: n,
            name: format!("c{n}"),
            resource_version: Some("1".into()),
            acquired: Some(Timestamp::from_second(acquired).unwrap()),
        }
    }

    #[test]
    fn lowest_free_after_stale_claims() {
        let now = Timestamp::from_second(1000).unwrap();
        let grace = Duration::from_secs(120);
        // 1 live, 2 stale (old, no pod), 3 fresh (pod not yet created).
        let claims = [claim(1, 0), claim(2, 0), claim(3, 990)];
        let (stale, n) = choose(&claims, &BTreeSet::from([1]), now, grace);
        assert_eq!(stale, vec![claim(2, 0)]);
        assert_eq!(n, 2);
        let (stale, n) = choose(&claims, &BTreeSet::from([1, 2]), now, grace);
        assert!(stale.is_empty());
        assert_eq!(n, 4);
        assert_eq!(
            claim_name(&NumberKey::new("pn-1", "app", "web"), 4),
            "privnet-num-pn-1-app-web-4"
        );
    }
}
