//! Waiting on the cluster: projects applied, the mesh, the networks.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::kube::client::Cluster;
use crate::kube::objects;
use crate::ops::{SandboxError, progress};
use crate::readiness::wait_ready;
use crate::scenario::Scenario;
use crate::state::{NetworkState, SandboxState};
use crate::topology;
use privnet_api::readers::node_info;

/// The scenario's namespaces and Projects (server-side apply).
pub(super) fn apply_projects(cluster: &Cluster, scenario: &Scenario) -> Result<(), SandboxError> {
    for p in &scenario.projects {
        for ns in &p.spec.namespaces {
            cluster.apply(&objects::namespace(ns))?;
        }
        let mut obj = serde_json::to_value(p).expect("projects serialize");
        obj["apiVersion"] = json!("privnet.io/v1alpha1");
        obj["kind"] = json!("Project");
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.retain(|k, _| k == "name" || k == "labels" || k == "annotations");
        }
        obj.as_object_mut().expect("object").remove("status");
        cluster.apply(&obj)?;
    }
    Ok(())
}

/// Waits for every agent to publish its key and the controller to give
/// every node its VTEP, then for the WireGuard handshakes.
pub(super) fn wait_for_mesh(
    state: &mut SandboxState,
    cluster: &Cluster,
    timeout: Duration,
) -> Result<(), SandboxError> {
    progress("waiting for the agents' keys and the controller's mesh");
    let deadline = Instant::now() + timeout;
    let like = objects::node("x", "");
    loop {
        let nodes = cluster.list(&like, "")?;
        let infos: Vec<_> = nodes
            .iter()
            .filter_map(|n| serde_json::from_value(n.clone()).ok())
            .filter_map(|n: k8s_openapi::api::core::v1::Node| node_info(&n))
            .collect();
        let complete = state.nodes.iter().all(|n| {
            infos
                .iter()
                .any(|i| i.name == n.name && i.vtep.is_some() && !i.public_key.is_empty())
        });
        if complete {
            for n in &mut state.nodes {
                if let Some(i) = infos.iter().find(|i| i.name == n.name) {
                    n.public_key = i.public_key.clone();
                    n.vtep = i.vtep.map(|v| v.to_string()).unwrap_or_default();
                }
            }
            state.save()?;
            break;
        }
        if let Some(dead) = state.nodes.iter().find(|n| !topology::alive(n.agent_pid)) {
            return Err(SandboxError::Precondition(format!(
                "the agent of {} exited; see {}",
                dead.name, dead.agent_log
            )));
        }
        if Instant::now() > deadline {
            return Err(SandboxError::Timeout(
                "the mesh was not allocated (see the controller logs)".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_ready(state, deadline)
}

/// Waits for every project's network (complete status), its namespaces
/// labelled and its NetworkAttachmentDefinitions: pods created earlier
/// would not reach the webhook or the plugin.
pub(super) fn wait_for_networks(
    state: &mut SandboxState,
    cluster: &Cluster,
    scenario: &Scenario,
    timeout: Duration,
) -> Result<(), SandboxError> {
    let deadline = Instant::now() + timeout;
    let pn_like = json!({"apiVersion": "privnet.io/v1alpha1", "kind": "PrivateNetwork"});
    let nad_like =
        json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition"});
    let ns_like = objects::namespace("x");
    loop {
        let networks = network_states(cluster.list(&pn_like, "")?);
        let nads: BTreeSet<String> = cluster
            .list(&nad_like, "")?
            .iter()
            .filter_map(|n| n["metadata"]["namespace"].as_str().map(str::to_string))
            .collect();
        let labelled: BTreeSet<String> = cluster
            .list(&ns_like, privnet_api::keys::PROJECT_LABEL)?
            .iter()
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        let pending = scenario.projects.iter().find_map(|p| {
            let name = p.metadata.name.clone().unwrap_or_default();
            if !networks.iter().any(|n| n.project == name) {
                return Some(format!("the network of project {name}"));
            }
            p.spec
                .namespaces
                .iter()
                .find(|ns| !nads.contains(*ns) || !labelled.contains(*ns))
                .map(|ns| format!("namespace {ns} of project {name}"))
        });
        if pending.is_none() && wait_webhook(state) {
            state.networks = networks;
            state.save()?;
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(SandboxError::Timeout(format!(
                "the controller did not set up {} (see its logs)",
                pending.unwrap_or_else(|| "its webhook".into())
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether some controller replica's webhook accepts connections.
fn wait_webhook(state: &SandboxState) -> bool {
    state.controllers.iter().any(|c| {
        c.webhook.parse().is_ok_and(|a| {
            std::net::TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok()
        })
    })
}

/// The networks with a complete status, as the state shows them.
fn network_states(items: Vec<Value>) -> Vec<NetworkState> {
    let default_mtu = privnet_core::mtu::private_mtu(1500, privnet_core::mtu::UnderlayFamily::V4)
        .expect("1500 is a valid underlay");
    let mut out: Vec<NetworkState> = items
        .into_iter()
        .filter_map(|v| serde_json::from_value::<privnet_api::PrivateNetwork>(v).ok())
        .filter_map(|n| {
            let st = n.status.clone()?;
            Some(NetworkState {
                project: n.spec.project.clone(),
                id: st.id?,
                vni: st.vni?,
                subnet: n.spec.subnet.clone(),
                gateway: st.gateway?,
                mtu: n.spec.mtu.unwrap_or(default_mtu),
                zone: st.zone?,
            })
        })
        .collect();
    out.sort_by(|a, b| a.project.cmp(&b.project));
    out
}
