//! The controller's role, played from the sandbox's files: networks with a complete status
//! published for the agents, then the mesh (VTEPs) once every agent published its key.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::controller::plan_networks;
use crate::readiness::wait_ready;
use crate::scenario::Scenario;
use crate::state::{NetworkState, SandboxState, write_atomic};
use crate::topology;
use privnet_api::PrivateNetwork;
use privnet_core::mesh::plan_mesh;
use privnet_core::mtu::{UnderlayFamily, private_mtu};
use privnet_core::view::NodeInfo;

use super::{SandboxError, cluster_dir, progress};

/// Projects → networks (ids and VNIs kept across calls), written where the agents read them.
pub(super) fn publish_networks(
    state: &mut SandboxState,
    scenario: &Scenario,
) -> Result<(), SandboxError> {
    let dir = cluster_dir(&state.name);
    let existing: Vec<PrivateNetwork> = std::fs::read_dir(dir.join("networks"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| serde_yaml::from_str(&std::fs::read_to_string(e.path()).ok()?).ok())
                .collect()
        })
        .unwrap_or_default();
    let (projects, networks) = plan_networks(&scenario.projects, &existing, || {
        format!("pn-{}", uuid::Uuid::new_v4())
    })?;
    for p in &projects {
        let name = p.metadata.name.clone().unwrap_or_default();
        write_atomic(
            &dir.join("projects").join(format!("{name}.yaml")),
            &serde_yaml::to_string(p).expect("yaml"),
        )?;
    }
    let default_mtu = private_mtu(1500, UnderlayFamily::V4).expect("1500 is a valid underlay");
    state.networks = networks
        .iter()
        .map(|n| {
            let st = n.status.clone().unwrap_or_default();
            let name = n.metadata.name.clone().unwrap_or_default();
            let _ = write_atomic(
                &dir.join("networks").join(format!("{name}.yaml")),
                &serde_yaml::to_string(n).expect("yaml"),
            );
            NetworkState {
                project: n.spec.project.clone(),
                id: st.id.unwrap_or_default(),
                vni: st.vni.unwrap_or_default(),
                subnet: n.spec.subnet.clone(),
                gateway: st.gateway.unwrap_or_default(),
                mtu: n.spec.mtu.unwrap_or(default_mtu),
                zone: st.zone.unwrap_or_default(),
            }
        })
        .collect();
    // Networks of removed projects go away.
    let keep: BTreeSet<String> = networks
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    for sub in ["networks", "projects"] {
        for e in std::fs::read_dir(dir.join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            let stem = e
                .path()
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !keep.contains(&stem) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// Waits for every node to publish its key, then writes the mesh (VTEPs).
pub(super) fn wait_for_mesh(
    state: &mut SandboxState,
    timeout: Duration,
) -> Result<(), SandboxError> {
    progress("waiting for the agents to publish their keys; allocating the mesh");
    let deadline = Instant::now() + timeout;
    let published = loop {
        let nodes = published_nodes(state);
        if nodes.len() == state.nodes.len() {
            break nodes;
        }
        if let Some(dead) = state.nodes.iter().find(|n| !topology::alive(n.agent_pid)) {
            return Err(SandboxError::Precondition(format!(
                "the agent of {} exited; see {}",
                dead.name, dead.agent_log
            )));
        }
        if Instant::now() > deadline {
            return Err(SandboxError::Timeout(
                "agents did not publish their keys".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    write_mesh(state, &published)?;
    wait_ready(state, deadline)
}

/// What the sandbox's agents have published about themselves (key, endpoint).
pub(super) fn published_nodes(state: &SandboxState) -> Vec<NodeInfo> {
    let dir = cluster_dir(&state.name).join("nodes");
    state
        .nodes
        .iter()
        .filter_map(|n| {
            let text = std::fs::read_to_string(dir.join(format!("{}.json", n.name))).ok()?;
            serde_json::from_str(&text).ok()
        })
        .collect()
}

pub(super) fn write_mesh(
    state: &mut SandboxState,
    published: &[NodeInfo],
) -> Result<(), SandboxError> {
    let path = cluster_dir(&state.name).join("mesh.json");
    let previous: Vec<NodeInfo> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let mesh = plan_mesh(privnet_core::mesh::DEFAULT_MESH_CIDR, published, &previous)
        .map_err(crate::controller::ControllerError::from)?;
    write_atomic(&path, &serde_json::to_string_pretty(&mesh).expect("json"))?;
    for n in &mut state.nodes {
        if let Some(m) = mesh.iter().find(|m| m.name == n.name) {
            n.public_key = m.public_key.clone();
            n.vtep = m.vtep.map(|v| v.to_string()).unwrap_or_default();
        }
    }
    state.save()?;
    Ok(())
}
