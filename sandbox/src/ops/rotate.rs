//! `privnet sandbox rotate-key NODE`: asks a node's agent for a WireGuard key
//! rotation (`<state-dir>/rotate-key`, as an operator would) and waits until
//! it is done: the node's device runs a new key, the cluster shows it as the
//! node's published key, and every other node's device holds that key and no
//! longer the old one.

use std::path::Path;
use std::time::{Duration, Instant};

use privnet_api::readers::node_info;
use privnet_core::view::NodeInfo;

use super::{SandboxError, cluster_dir, progress};
use crate::kube::client::Cluster;
use crate::kube::objects;
use crate::state::{ApiMode, SandboxState};
use crate::sys::wg_show;

/// What a rotation changed and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// The node.
    pub node: String,
    /// Its key before.
    pub old_key: String,
    /// Its key now.
    pub new_key: String,
    /// From the request until every peer held only the new key.
    pub took: Duration,
}

/// Rotates `node`'s key and waits (at most `timeout`) until every peer holds only the new one.
pub fn rotate_key(
    name: &str,
    node: &str,
    timeout: Duration,
) -> Result<RotationReport, SandboxError> {
    let mut state = SandboxState::load(name)?;
    let idx = state
        .node_index(node)
        .ok_or_else(|| SandboxError::Precondition(format!("no node {node:?}")))?;
    let me = state.nodes[idx].clone();
    let backend = state.wireguard_backend;
    let device_key = || -> Result<String, SandboxError> {
        Ok(
            wg_show(backend, &me.netns, &me.wireguard_interface, "public-key")?
                .trim()
                .to_string(),
        )
    };
    let old_key = device_key()?;
    let start = Instant::now();
    progress(&format!("rotating the WireGuard key of {node}"));
    privnet_sys::file::write_atomic(&Path::new(&me.state_dir).join("rotate-key"), "")
        .map_err(|e| SandboxError::Precondition(e.to_string()))?;
    let deadline = start + timeout;
    let cluster = match state.api {
        ApiMode::Kube => Some(Cluster::connect(Path::new(&state.kubeconfig))?),
        ApiMode::Files => None,
    };
    loop {
        let new_key = device_key()?;
        if new_key != old_key
            && published_key(&state, cluster.as_ref(), node)?.as_deref() == Some(new_key.as_str())
            && peers_hold_only(&state, node, &new_key, &old_key)?
        {
            state.nodes[idx].public_key = new_key.clone();
            state.save()?;
            return Ok(RotationReport {
                node: node.to_string(),
                old_key,
                new_key,
                took: start.elapsed(),
            });
        }
        if Instant::now() > deadline {
            return Err(SandboxError::Timeout(format!(
                "the key rotation of {node} did not complete (see {})",
                me.agent_log
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether every other node's device has `new` as a peer and not `old`.
fn peers_hold_only(
    state: &SandboxState,
    node: &str,
    new: &str,
    old: &str,
) -> Result<bool, SandboxError> {
    for n in state.nodes.iter().filter(|n| n.name != node) {
        let peers = wg_show(
            state.wireguard_backend,
            &n.netns,
            &n.wireguard_interface,
            "peers",
        )?;
        let keys: Vec<&str> = peers.lines().map(str::trim).collect();
        if !keys.contains(&new) || keys.contains(&old) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The key the cluster shows for `node` (its Node annotation, or in files
/// mode what its agent published).
fn published_key(
    state: &SandboxState,
    cluster: Option<&Cluster>,
    node: &str,
) -> Result<Option<String>, SandboxError> {
    if let Some(cluster) = cluster {
        let nodes = cluster.list(&objects::node("x", ""), "")?;
        return Ok(nodes
            .into_iter()
            .filter_map(|n| serde_json::from_value(n).ok())
            .filter_map(|n: k8s_openapi::api::core::v1::Node| node_info(&n))
            .find(|i| i.name == node)
            .map(|i| i.public_key));
    }
    let path = cluster_dir(&state.name)
        .join("nodes")
        .join(format!("{node}.json"));
    Ok(std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<NodeInfo>(&t).ok())
        .map(|i| i.public_key))
}
