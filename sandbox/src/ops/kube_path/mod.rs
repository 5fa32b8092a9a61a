//! `up`, `scale` and `apply` on the Kubernetes path: the cluster daemon
//! (API server, scheduler, kubelets), what `helm install` would create
//! (namespace, webhook configuration), two replicas of the real controller,
//! one agent per node on its Kubernetes source, then the scenario's
//! namespaces, Projects and pods — all through the API. `install` starts
//! the daemon and the controllers, `waits` waits on the cluster, `pods`
//! converges the scenario's pods.

mod install;
mod pods;
mod waits;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::kube::client::Cluster;
use crate::kube::objects;
use crate::kube::{KubeError, UNDERLAY_API_ADDRESS};
use crate::ops::lifecycle::{add_node, start_agent};
use crate::ops::{Binaries, SandboxError, progress};
use crate::readiness::wait_converged;
use crate::scenario::Scenario;
use crate::state::{SandboxState, StateError, root_of};
use crate::topology;

pub use install::{CONTROLLER_REPLICAS, LEASE_SECONDS, controller_control};
use install::{install, start_daemon};
use pods::converge_pods;
use waits::{apply_projects, wait_for_mesh, wait_for_networks};

impl From<KubeError> for SandboxError {
    fn from(e: KubeError) -> Self {
        SandboxError::Precondition(error_chain(&e))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |source| {
        SandboxError::State(StateError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

/// Builds the sandbox on the Kubernetes path (nodes bare when `hold_agents`).
pub(super) fn build(
    state: &mut SandboxState,
    scenario: &Scenario,
    bins: &Binaries,
    hold_agents: bool,
) -> Result<(), SandboxError> {
    progress(&format!(
        "creating the underlay and {} nodes",
        scenario.nodes
    ));
    topology::create_underlay(&state.underlay_netns)?;
    crate::sys::ip(&[
        "-n",
        &state.underlay_netns,
        "addr",
        "add",
        &format!("{UNDERLAY_API_ADDRESS}/24"),
        "dev",
        "ul0",
    ])?;
    for (i, node) in scenario.node_names().iter().enumerate() {
        add_node(state, scenario, node, i as u32 + 1, bins, false)?;
    }
    state.save()?;
    progress("starting the API server, the scheduler and the kubelets");
    start_daemon(state, bins)?;
    let cluster = Cluster::connect(Path::new(&state.kubeconfig))?;
    progress("installing privnet (webhook configuration, controllers)");
    install(state, &cluster, bins)?;
    if hold_agents {
        progress("nodes up without agents (start them with `start-agents`)");
        return Ok(());
    }
    for i in 0..state.nodes.len() {
        let n = state.nodes[i].clone();
        state.nodes[i].agent_pid =
            start_agent(&state.name, state.api, &n, bins, state.wireguard_backend)?;
    }
    state.save()?;
    finish(state, scenario)
}

/// Projects, mesh, pods, convergence: the rest of `up` once the agents run.
pub(super) fn finish(state: &mut SandboxState, scenario: &Scenario) -> Result<(), SandboxError> {
    let cluster = Cluster::connect(Path::new(&state.kubeconfig))?;
    progress("creating the scenario's namespaces and projects");
    apply_projects(&cluster, scenario)?;
    wait_for_mesh(state, &cluster, Duration::from_secs(15))?;
    wait_for_networks(state, &cluster, scenario, Duration::from_secs(15))?;
    progress("creating the scenario's pods");
    converge_pods(state, &cluster, scenario, Duration::from_secs(30))?;
    progress("waiting for DNS and FDB convergence");
    wait_converged(state, Duration::from_secs(15))?;
    Ok(())
}

/// `apply` on the Kubernetes path: nodes removed (their pods deleted
/// through the API and detached by their kubelet, then the Node object and
/// the node itself) and added (node, agent, Node object), then projects and
/// pods through the API.
pub(super) fn apply(
    state: &mut SandboxState,
    scenario: &Scenario,
    bins: &Binaries,
) -> Result<(), SandboxError> {
    let cluster = Cluster::connect(Path::new(&state.kubeconfig))?;
    let wanted: BTreeSet<String> = scenario.node_names().into_iter().collect();
    let gone: Vec<_> = state
        .nodes
        .iter()
        .filter(|n| !wanted.contains(&n.name))
        .cloned()
        .collect();
    let root = root_of(&state.name);
    for n in &gone {
        for pod in cluster.list(&json!({"apiVersion": "v1", "kind": "Pod"}), "")? {
            if pod["spec"]["nodeName"] == n.name.as_str() {
                cluster.delete(&pod)?;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while crate::kube::records::containers(&root)
            .iter()
            .any(|c| c.node == n.name)
        {
            if Instant::now() > deadline {
                return Err(SandboxError::Timeout(format!(
                    "the kubelet of {} did not stop its pods",
                    n.name
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        cluster.delete(&objects::node(&n.name, ""))?;
        crate::teardown::remove_node(state, n);
        state.nodes.retain(|x| x.name != n.name);
        state.save()?;
    }
    let mut added = false;
    for (i, node) in scenario.node_names().iter().enumerate() {
        if state.node(node).is_none() {
            add_node(state, scenario, node, i as u32 + 1, bins, true)?;
            let n = state.node(node).expect("just added").clone();
            cluster.apply(&objects::node(&n.name, &n.underlay_address))?;
            added = true;
        }
    }
    state.save()?;
    apply_projects(&cluster, scenario)?;
    if added {
        wait_for_mesh(state, &cluster, Duration::from_secs(15))?;
    }
    wait_for_networks(state, &cluster, scenario, Duration::from_secs(15))?;
    converge_pods(state, &cluster, scenario, Duration::from_secs(30))?;
    wait_converged(state, Duration::from_secs(15))?;
    Ok(())
}

/// `scale` on the Kubernetes path: the scenario's pods through the API.
pub(super) fn scale(state: &mut SandboxState, scenario: &Scenario) -> Result<(), SandboxError> {
    let cluster = Cluster::connect(Path::new(&state.kubeconfig))?;
    converge_pods(state, &cluster, scenario, Duration::from_secs(30))?;
    wait_converged(state, Duration::from_secs(15))?;
    Ok(())
}
