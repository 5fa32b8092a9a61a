//! Nodes → the WireGuard mesh. Agents publish their public key and endpoint
//! as Node annotations; this allocates each published node a VTEP
//! (annotation `privnet.io/vtep`), keeping the ones already given. Agents
//! read the mesh straight from the Node objects, so a removed Node is gone
//! from the mesh, and its VTEP is free again.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::context::{Context, Error};
use privnet_api::keys::{FIELD_MANAGER, VTEP_ANNOTATION};
use privnet_api::readers::node_info;
use privnet_core::mesh::plan_mesh;
use privnet_core::view::NodeInfo;

/// VTEP of every published node: kept when already set (the oldest node
/// wins a duplicate), else the lowest free address of `cidr`.
pub fn plan_vteps(nodes: &[Node], cidr: ipnet::Ipv4Net) -> Result<Vec<NodeInfo>, Error> {
    let mut sorted: Vec<&Node> = nodes.iter().collect();
    sorted.sort_by_key(|n| {
        (
            n.meta().creation_timestamp.as_ref().map(|t| t.0),
            n.name_any(),
        )
    });
    let published: Vec<NodeInfo> = sorted.iter().filter_map(|n| node_info(n)).collect();
    let mut seen: BTreeSet<Ipv4Addr> = BTreeSet::new();
    let previous: Vec<NodeInfo> = published
        .iter()
        .filter(|n| {
            n.vtep.is_some_and(|v| {
                cidr.contains(&v) && v != cidr.network() && v != cidr.broadcast() && seen.insert(v)
            })
        })
        .cloned()
        .collect();
    let published: Vec<NodeInfo> = published
        .into_iter()
        .map(|n| NodeInfo { vtep: None, ..n })
        .collect();
    plan_mesh(cidr, &published, &previous).map_err(Error::Mesh)
}

/// Reconciles the whole mesh (any Node change triggers it).
pub async fn reconcile(_node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, Error> {
    let result = apply(&ctx).await;
    ctx.metrics.reconciled("node", result.is_ok());
    result
}

async fn apply(ctx: &Context) -> Result<Action, Error> {
    let api: Api<Node> = Api::all(ctx.client.clone());
    let nodes = api
        .list(&ListParams::default())
        .await
        .map_err(Error::kube("list nodes"))?
        .items;
    let plan = plan_vteps(&nodes, ctx.config.mesh_cidr)?;
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    for entry in &plan {
        let current = nodes
            .iter()
            .find(|n| n.name_any() == entry.name)
            .and_then(node_info)
            .and_then(|n| n.vtep);
        let Some(vtep) = entry.vtep else { continue };
        if current == Some(vtep) {
            continue;
        }
        let body = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": entry.name, "annotations": { VTEP_ANNOTATION: vtep.to_string() } } });
        api.patch(&entry.name, &pp, &Patch::Apply(body))
            .await
            .map_err(Error::kube(format!("set the VTEP of node {}", entry.name)))?;
        tracing::info!(node = %entry.name, %vtep, "VTEP allocated");
    }
    ctx.metrics.set_mesh_nodes(plan.len());
    Ok(Action::requeue(Duration::from_secs(600)))
}

/// Requeue with a short backoff after an error.
pub fn error_policy(_node: Arc<Node>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "mesh reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use privnet_api::keys::{WG_ENDPOINT_ANNOTATION, WG_PUBLIC_KEY_ANNOTATION};

    fn node(name: &str, vtep: Option<&str>) -> Node {
        let mut annotations = std::collections::BTreeMap::from([
            (
                WG_PUBLIC_KEY_ANNOTATION.to_string(),
                format!("{:A<43}=", name),
            ),
            (
                WG_ENDPOINT_ANNOTATION.to_string(),
                "192.0.2.1:51820".to_string(),
            ),
        ]);
        if let Some(v) = vtep {
            annotations.insert(VTEP_ANNOTATION.into(), v.into());
        }
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: Some(annotations),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn vteps_are_kept_deduplicated_and_lowest_free() {
        let cidr = "100.64.0.0/24".parse().unwrap();
        let plan = plan_vteps(
            &[
                node("a", Some("100.64.0.5")),
                node("b", Some("100.64.0.5")),
                node("c", None),
                Node::default(),
            ],
            cidr,
        )
        .unwrap();
        let vtep = |n: &str| {
            plan.iter()
                .find(|i| i.name == n)
                .unwrap()
                .vtep
                .unwrap()
                .to_string()
        };
        assert_eq!(vtep("a"), "100.64.0.5");
        assert_eq!(vtep("b"), "100.64.0.1");
        assert_eq!(vtep("c"), "100.64.0.2");
        assert_eq!(plan.len(), 3);
    }
}
