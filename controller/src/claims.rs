//! Collection of claims whose holder is gone. The webhook claims container
//! numbers and the agents claim addresses as Leases; both are released on
//! the happy path, but a pod deleted while its node was down, an agent that
//! died mid-DEL or a node removed for good leave claims behind that would
//! hold numbers and addresses forever. The leader sweeps them: a pure
//! decision over what is alive, then one precondition-guarded delete each.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};

use crate::context::{Context, Error, is_status};
use privnet_api::PrivateEndpoint;
use privnet_api::keys::{
    ADDRESS_CLAIM_KIND, APPLICATION_LABEL, CLAIM_KIND_LABEL, CONTAINER_NUMBER_ANNOTATION,
    NETWORK_ID_ANNOTATION, NETWORK_LABEL, NUMBER_CLAIM_KIND, PROCESS_TYPE_LABEL,
    parse_address_claim_owner,
};
use privnet_core::zone::WEB_PROCESS_TYPE;

/// `(network id, application, process type, number)`.
pub type NumberOf = (String, String, String, u32);
/// `(node, container id, interface)`.
pub type AttachmentOf = (String, String, String);

/// What a claim holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// A container number.
    Number(NumberOf),
    /// An address, for one attachment.
    Address(AttachmentOf),
}

/// One claim Lease, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Lease name.
    pub name: String,
    /// Delete precondition.
    pub resource_version: Option<String>,
    /// When it was taken.
    pub acquired: Option<Timestamp>,
    /// What it holds.
    pub held: Held,
}

/// Reads a claim Lease (`None` for Leases that are not claims).
pub fn read_claim(lease: &Lease) -> Option<Claim> {
    let labels = lease.labels();
    let spec = lease.spec.as_ref();
    let held = match labels.get(CLAIM_KIND_LABEL)?.as_str() {
        NUMBER_CLAIM_KIND => Held::Number((
            labels.get(NETWORK_LABEL)?.clone(),
            labels.get(APPLICATION_LABEL)?.clone(),
            labels.get(PROCESS_TYPE_LABEL)?.clone(),
            lease
                .annotations()
                .get(CONTAINER_NUMBER_ANNOTATION)?
                .parse()
                .ok()?,
        )),
        ADDRESS_CLAIM_KIND => {
            let holder = spec?.holder_identity.as_deref()?;
            let (node, container, ifname) = parse_address_claim_owner(holder)?;
            Held::Address((node.into(), container.into(), ifname.into()))
        }
        _ => return None,
    };
    Some(Claim {
        name: lease.name_any(),
        resource_version: lease.resource_version(),
        acquired: spec.and_then(|s| s.acquire_time.as_ref()).map(|t| t.0),
        held,
    })
}

/// What still holds claims.
#[derive(Debug, Clone, Default)]
pub struct Alive {
    /// Numbers carried by existing pods (terminating ones included).
    pub numbers: BTreeSet<NumberOf>,
    /// Attachments published as PrivateEndpoints.
    pub attachments: BTreeSet<AttachmentOf>,
    /// Nodes that exist.
    pub nodes: BTreeSet<String>,
}

/// The claims to delete: older than `grace` (a fresh claim's pod or
/// endpoint may not be written yet) and held by nothing alive. An address
/// claim of a node that no longer exists goes even if an endpoint of that
/// node lingers: the node cannot use it any more.
pub fn collectable<'a>(
    claims: &'a [Claim],
    alive: &Alive,
    now: Timestamp,
    grace: Duration,
) -> Vec<&'a Claim> {
    let grace = SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
    claims
        .iter()
        .filter(|c| c.acquired.is_none_or(|t| t + grace <= now))
        .filter(|c| match &c.held {
            Held::Number(n) => !alive.numbers.contains(n),
            Held::Address(a) => !alive.nodes.contains(&a.0) || !alive.attachments.contains(a),
        })
        .collect()
}

fn pod_number(pod: &Pod) -> Option<NumberOf> {
    let a = pod.annotations();
    let l = pod.labels();
    Some((
        a.get(NETWORK_ID_ANNOTATION)?.clone(),
        l.get(APPLICATION_LABEL)?.clone(),
        l.get(PROCESS_TYPE_LABEL)
            .cloned()
            .unwrap_or_else(|| WEB_PROCESS_TYPE.to_string()),
        a.get(CONTAINER_NUMBER_ANNOTATION)?.parse().ok()?,
    ))
}

/// One sweep: lists claims and what is alive, deletes the collectable
/// claims at their read version. Returns how many went.
pub async fn sweep(ctx: &Context, grace: Duration) -> Result<usize, Error> {
    let client = ctx.client.clone();
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ctx.config.namespace);
    let claims: Vec<Claim> = leases
        .list(&ListParams::default().labels(CLAIM_KIND_LABEL))
        .await
        .map_err(Error::kube("list claims"))?
        .items
        .iter()
        .filter_map(read_claim)
        .collect();
    if claims.is_empty() {
        return Ok(0);
    }
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default().labels(APPLICATION_LABEL))
        .await
        .map_err(Error::kube("list pods"))?;
    let endpoints = Api::<PrivateEndpoint>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(Error::kube("list private endpoints"))?;
    let nodes = Api::<Node>::all(client)
        .list(&ListParams::default())
        .await
        .map_err(Error::kube("list nodes"))?;
    let alive = Alive {
        numbers: pods.items.iter().filter_map(pod_number).collect(),
        attachments: endpoints
            .items
            .iter()
            .map(|e| {
                (
                    e.spec.node.clone(),
                    e.spec.container_id.clone(),
                    e.spec.interface.clone(),
                )
            })
            .collect(),
        nodes: nodes.items.iter().map(|n| n.name_any()).collect(),
    };
    let mut collected = 0;
    for claim in collectable(&claims, &alive, Timestamp::now(), grace) {
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: claim.resource_version.clone(),
                uid: None,
            }),
            ..Default::default()
        };
        match leases.delete(&claim.name, &dp).await {
            Ok(_) => {
                collected += 1;
                tracing::info!(claim = %claim.name, held = ?claim.held, "collected a claim whose holder is gone");
            }
            // Gone already, or renewed/re-taken since the listing: leave it.
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
            Err(e) => return Err(Error::kube(format!("delete claim {}", claim.name))(e)),
        }
    }
    ctx.metrics.claims_collected.inc_by(collected as u64);
    Ok(collected)
}

/// Sweeps every `period` until `shutdown`.
pub async fn run(
    ctx: std::sync::Arc<Context>,
    period: Duration,
    grace: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        if let Err(e) = sweep(&ctx, grace).await {
            tracing::warn!(error = %e, "claim sweep failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = &mut shutdown => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn claim(name: &str, acquired: i64, held: Held) -> Claim {
        Claim {
            name: name.into(),
            resource_version: Some("1".into()),
            acquired: Some(at(acquired)),
            held,
        }
    }

    fn num(n: u32) -> NumberOf {
        ("pn-1".into(), "app".into(), "web".into(), n)
    }

    fn att(node: &str, c: &str) -> AttachmentOf {
        (node.into(), c.into(), "eth1".into())
    }

    #[test]
    fn only_old_claims_of_gone_holders_are_collected() {
        let claims = [
            claim("n1", 0, Held::Number(num(1))),
            claim("n2", 0, Held::Number(num(2))),
            claim("n3-fresh", 950, Held::Number(num(3))),
            claim("a-live", 0, Held::Address(att("node-a", "c1"))),
            claim("a-deleted", 0, Held::Address(att("node-a", "c2"))),
            claim("a-lost-node", 0, Held::Address(att("node-b", "c3"))),
        ];
        let alive = Alive {
            numbers: [num(1)].into(),
            attachments: [att("node-a", "c1"), att("node-b", "c3")].into(),
            nodes: ["node-a".to_string()].into(),
        };
        let names: Vec<&str> = collectable(&claims, &alive, at(1000), Duration::from_secs(120))
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["n2", "a-deleted", "a-lost-node"]);
        // Control: with every holder alive nothing goes.
        let all = Alive {
            numbers: [num(1), num(2), num(3)].into(),
            attachments: [
                att("node-a", "c1"),
                att("node-a", "c2"),
                att("node-b", "c3"),
            ]
            .into(),
            nodes: ["node-a".to_string(), "node-b".to_string()].into(),
        };
        assert!(collectable(&claims, &all, at(1000), Duration::from_secs(120)).is_empty());
    }

    #[test]
    fn claim_leases_are_read_back() {
        let lease: Lease = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "privnet-ip-pn-1-10-240-0-7", "resourceVersion": "7",
                "labels": { CLAIM_KIND_LABEL: ADDRESS_CLAIM_KIND, NETWORK_LABEL: "pn-1" } },
            "spec": { "holderIdentity": "node-a/ctr-1/eth1", "acquireTime": "2026-01-01T00:00:00.000000Z" }
        }))
        .unwrap();
        let c = read_claim(&lease).unwrap();
        assert_eq!(c.held, Held::Address(att("node-a", "ctr-1")));
        assert_eq!(c.resource_version.as_deref(), Some("7"));
        let other: Lease = serde_json::from_value(
            serde_json::json!({ "metadata": { "name": "privnet-controller" } }),
        )
        .unwrap();
        assert_eq!(read_claim(&other), None, "the leader Lease is no claim");
    }
}
