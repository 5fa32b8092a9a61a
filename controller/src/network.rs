//! `PrivateNetwork` status: id `pn-<uid>`, a VNI unique in the cluster
//! (rebuilt from the list of all networks on every pass, never from
//! memory), gateway, zone, endpoint count, nodes, conditions; its zone
//! ConfigMap; orphans (their project gone) are deleted after a grace
//! ([`super::orphan`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::context::{Context, Error, is_status};
use super::orphan::{OrphanStep, orphan_step};
use super::project::publish;
use super::zone;
use privnet_api::keys::{FIELD_MANAGER, ORPHANED_SINCE_ANNOTATION};
use privnet_api::{PrivateEndpoint, PrivateNetwork, PrivateNetworkStatus, Project, set_condition};
use privnet_core::naming::network_id_from_uid;
use privnet_core::vni::VniAllocator;

/// The VNI of `network` given every network of the cluster: it keeps its
/// own unless an older network holds the same one; otherwise the lowest
/// free VNI of `range`.
pub fn allocate_vni(
    network: &PrivateNetwork,
    all: &[PrivateNetwork],
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, Error> {
    let id = network_id(network)?;
    let mut sorted: Vec<&PrivateNetwork> = all.iter().collect();
    sorted.sort_by_key(|n| {
        (
            n.meta().creation_timestamp.as_ref().map(|t| t.0),
            n.name_any(),
        )
    });
    let mut seen = BTreeSet::new();
    let mut existing = Vec::new();
    for n in sorted {
        let (Some(other_id), Some(vni)) = (
            n.meta().uid.as_deref().map(network_id_from_uid),
            n.status.as_ref().and_then(|s| s.vni),
        ) else {
            continue;
        };
        // An older holder wins a duplicate; the later network is renumbered.
        if seen.insert(vni) {
            existing.push((other_id, vni));
        }
    }
    let mut vnis = VniAllocator::new(range, existing).map_err(Error::Vni)?;
    vnis.assign(&id).map_err(Error::Vni)
}

/// `pn-<uid>`.
pub fn network_id(network: &PrivateNetwork) -> Result<String, Error> {
    let uid = network
        .meta()
        .uid
        .as_deref()
        .ok_or_else(|| Error::MissingField(format!("network {}", network.name_any()), "uid"))?;
    Ok(network_id_from_uid(uid))
}

/// The complete status of `network`.
pub fn desired_status(
    network: &PrivateNetwork,
    vni: u32,
    endpoints: &[PrivateEndpoint],
    domain: &str,
    now: Time,
) -> Result<PrivateNetworkStatus, Error> {
    let id = network_id(network)?;
    let generation = network.meta().generation;
    let mut status = network.status.clone().unwrap_or_default();
    let subnet: Option<ipnet::Ipv4Net> = network.spec.subnet.parse().ok();
    status.set_identity(&id, vni, &network.spec, domain);
    let mine: Vec<&PrivateEndpoint> = endpoints
        .iter()
        .filter(|e| e.spec.network_id == id)
        .collect();
    status.endpoints = mine.len() as u32;
    status.nodes = mine
        .iter()
        .map(|e| e.spec.node.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    status.observed_generation = generation;
    set_condition(
        &mut status.conditions,
        "VniAllocated",
        true,
        "Allocated",
        &format!("VNI {vni}"),
        generation,
        now.clone(),
    );
    match subnet {
        Some(_) => set_condition(
            &mut status.conditions,
            "Ready",
            true,
            "Allocated",
            &format!("network {id} is ready"),
            generation,
            now,
        ),
        None => set_condition(
            &mut status.conditions,
            "Ready",
            false,
            "InvalidSubnet",
            &format!("subnet {:?} does not parse", network.spec.subnet),
            generation,
            now,
        ),
    }
    Ok(status)
}

/// Reconciles one network; publishes a Warning event on failure.
pub async fn reconcile(network: Arc<PrivateNetwork>, ctx: Arc<Context>) -> Result<Action, Error> {
    let result = apply(&network, &ctx).await;
    ctx.metrics.reconciled("network", result.is_ok());
    if let Err(e) = &result {
        publish(
            &ctx,
            &*network,
            EventType::Warning,
            "ReconcileFailed",
            &format!("{e}"),
        )
        .await;
    }
    result
}

async fn apply(network: &PrivateNetwork, ctx: &Context) -> Result<Action, Error> {
    if network.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = network.name_any();
    let networks: Api<PrivateNetwork> = Api::all(ctx.client.clone());
    let projects: Api<Project> = Api::all(ctx.client.clone());
    let project_exists = projects
        .get_opt(&network.spec.project)
        .await
        .map_err(Error::kube("get project"))?
        .is_some();
    let since = network.annotations().get(ORPHANED_SINCE_ANNOTATION);
    let now = Timestamp::now();
    match orphan_step(
        project_exists,
        since.map(String::as_str),
        now,
        ctx.config.orphan_grace,
    ) {
        OrphanStep::Keep => {}
        OrphanStep::Adopt => {
            mark_orphaned(&networks, &name, None).await?;
            let note = format!("project {} is back: network kept", network.spec.project);
            publish(ctx, network, EventType::Normal, "Adopted", &note).await;
        }
        OrphanStep::Mark => {
            mark_orphaned(&networks, &name, Some(now.to_string())).await?;
            let grace = ctx.config.orphan_grace.as_secs();
            let note = format!(
                "project {} not found: network kept {grace} s for it to come back, then deleted",
                network.spec.project
            );
            publish(ctx, network, EventType::Warning, "ProjectMissing", &note).await;
            return Ok(Action::requeue(ctx.config.orphan_grace));
        }
        OrphanStep::Wait(left) => return Ok(Action::requeue(left)),
        OrphanStep::Delete => {
            // The VNI is freed with it.
            match networks.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(e) if is_status(&e, 404) => return Ok(Action::await_change()),
                Err(e) => return Err(Error::kube(format!("delete orphan network {name}"))(e)),
            }
            let note = format!("project {} no longer exists", network.spec.project);
            publish(ctx, network, EventType::Normal, "Deleted", &note).await;
            return Ok(Action::await_change());
        }
    }
    let all = networks
        .list(&ListParams::default())
        .await
        .map_err(Error::kube("list networks"))?
        .items;
    let vni = allocate_vni(network, &all, ctx.config.vni_range.clone())?;
    let endpoints: Api<PrivateEndpoint> = Api::all(ctx.client.clone());
    let endpoints = endpoints
        .list(&ListParams::default())
        .await
        .map_err(Error::kube("list endpoints"))?
        .items;
    let status = desired_status(
        network,
        vni,
        &endpoints,
        &ctx.config.domain,
        Time(Timestamp::now()),
    )?;
    zone::apply_zone(ctx, network, &status, &endpoints).await?;
    let previous_vni = network.status.as_ref().and_then(|s| s.vni);
    if network.status.as_ref() != Some(&status) {
        let body = json!({ "apiVersion": "privnet.io/v1alpha1", "kind": "PrivateNetwork", "status": status });
        networks
            .patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .map_err(Error::kube(format!("update status of network {name}")))?;
    }
    if previous_vni != Some(vni) {
        let (reason, note) = match previous_vni {
            None => ("VniAllocated", format!("allocated VNI {vni}")),
            Some(old) => (
                "VniReassigned",
                format!("VNI {old} is held by an older network: renumbered to {vni}"),
            ),
        };
        publish(ctx, network, EventType::Normal, reason, &note).await;
    }
    Ok(Action::requeue(Duration::from_secs(600)))
}

/// Sets (or, with `None`, clears) the network's orphan mark.
async fn mark_orphaned(
    networks: &Api<PrivateNetwork>,
    name: &str,
    since: Option<String>,
) -> Result<(), Error> {
    let body = json!({ "metadata": { "annotations": { ORPHANED_SINCE_ANNOTATION: since } } });
    networks
        .patch(name, &PatchParams::default(), &Patch::Merge(body))
        .await
        .map_err(Error::kube(format!("mark orphan network {name}")))?;
    Ok(())
}

/// Requeue with a short backoff after an error.
pub fn error_policy(_network: Arc<PrivateNetwork>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "network reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use privnet_api::PrivateNetworkSpec;

    fn net(name: &str, created: i64, vni: Option<u32>) -> PrivateNetwork {
        let mut n = PrivateNetwork::new(
            name,
            PrivateNetworkSpec {
                project: name.into(),
                subnet: "10.240.0.0/22".into(),
                mtu: None,
            },
        );
        n.metadata.uid = Some(format!("uid-{name}"));
        n.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
        n.status = vni.map(|v| PrivateNetworkStatus {
            vni: Some(v),
            ..Default::default()
        });
        n
    }

    #[test]
    fn vni_is_kept_then_lowest_free_then_older_wins_duplicates() {
        let a = net("a", 1, Some(4096));
        let b = net("b", 2, None);
        assert_eq!(
            allocate_vni(&a, &[a.clone(), b.clone()], 4096..=5000).unwrap(),
            4096
        );
        assert_eq!(
            allocate_vni(&b, &[a.clone(), b.clone()], 4096..=5000).unwrap(),
            4097
        );
        let c = net("c", 3, Some(4096));
        assert_eq!(
            allocate_vni(&c, &[a.clone(), c.clone()], 4096..=5000).unwrap(),
            4097,
            "the younger duplicate moves"
        );
        assert_eq!(
            allocate_vni(&a, &[a.clone(), c.clone()], 4096..=5000).unwrap(),
            4096
        );
    }

    #[test]
    fn status_is_complete() {
        let n = net("a", 1, None);
        let s = desired_status(
            &n,
            4100,
            &[],
            "private-network.internal",
            Time(Timestamp::from_second(5).unwrap()),
        )
        .unwrap();
        assert_eq!(s.id.as_deref(), Some("pn-uid-a"));
        assert_eq!(s.gateway.as_deref(), Some("10.240.0.1"));
        assert_eq!(s.zone.as_deref(), Some("pn-uid-a.private-network.internal"));
        assert_eq!(
            s.conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .unwrap()
                .status,
            "True"
        );
    }
}
