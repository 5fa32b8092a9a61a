//! Containers: the desired set from the scenario, converged by invoking the CNI plugin as a
//! runtime does; `apply` re-plans networks and containers from a changed scenario.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::containers::{self, ContainerSpec};
use crate::readiness::wait_converged;
use crate::scenario::Scenario;
use crate::state::{NodeState, SandboxState, root_of, write_atomic};
use crate::teardown::remove_node;
use crate::topology;

use super::controller_role::{publish_networks, published_nodes, wait_for_mesh, write_mesh};
use super::lifecycle::add_node;
use super::{Binaries, SandboxError, cni_log};

/// The containers a scenario asks for, placed round-robin.
pub fn desired_containers(scenario: &Scenario) -> Vec<ContainerSpec> {
    let all = scenario.node_names();
    let mut out = Vec::new();
    let mut slot = 0usize;
    for w in &scenario.workloads {
        let nodes = if w.nodes.is_empty() { &all } else { &w.nodes };
        for (ptype, count) in &w.processes {
            for number in 1..=*count {
                out.push(ContainerSpec {
                    project: w.project.clone(),
                    application: w.application.clone(),
                    process_type: ptype.clone(),
                    number,
                    node: nodes[slot % nodes.len()].clone(),
                });
                slot += 1;
            }
        }
    }
    out
}

/// Starts missing containers and stops extra ones.
pub fn converge_containers(
    state: &mut SandboxState,
    scenario: &Scenario,
    bins: &Binaries,
) -> Result<(), SandboxError> {
    let desired = desired_containers(scenario);
    let key = |app: &str, t: &str, n: u32| format!("{app}-{t}-{n}");
    let wanted: BTreeSet<String> = desired
        .iter()
        .map(|c| key(&c.application, &c.process_type, c.number))
        .collect();
    let log = cni_log(&state.name);
    let doomed: Vec<_> = state
        .containers
        .iter()
        .filter(|c| !wanted.contains(&c.name))
        .cloned()
        .collect();
    for c in doomed {
        containers::stop(&bins.cni, state.node(&c.node), &c, &log)?;
        state.containers.retain(|x| x.name != c.name);
        state.save()?;
    }
    let have: BTreeSet<String> = state.containers.iter().map(|c| c.name.clone()).collect();
    for spec in desired
        .iter()
        .filter(|c| !have.contains(&key(&c.application, &c.process_type, c.number)))
    {
        let node = state
            .node(&spec.node)
            .cloned()
            .ok_or_else(|| SandboxError::Precondition(format!("no node {}", spec.node)))?;
        let network = state
            .networks
            .iter()
            .find(|n| n.project == spec.project)
            .cloned()
            .ok_or_else(|| {
                SandboxError::Precondition(format!("no network for project {}", spec.project))
            })?;
        let c = containers::start(&state.name, &bins.cni, &node, &network, spec, &log)?;
        state.containers.push(c);
        state.save()?;
    }
    Ok(())
}

/// Applies a new scenario to a running sandbox.
pub fn apply(
    name: &str,
    scenario: &Scenario,
    bins: &Binaries,
) -> Result<SandboxState, SandboxError> {
    let mut state = SandboxState::load(name)?;
    if state.api == crate::state::ApiMode::Kube {
        write_atomic(
            &root_of(name).join("scenario.yaml"),
            &serde_yaml::to_string(scenario).expect("yaml"),
        )?;
        super::kube_path::apply(&mut state, scenario, bins)?;
        return Ok(state);
    }
    write_atomic(
        &root_of(name).join("scenario.yaml"),
        &serde_yaml::to_string(scenario).expect("yaml"),
    )?;
    let wanted: BTreeSet<String> = scenario.node_names().into_iter().collect();
    // Containers on removed nodes, then the nodes themselves.
    let gone: Vec<NodeState> = state
        .nodes
        .iter()
        .filter(|n| !wanted.contains(&n.name))
        .cloned()
        .collect();
    for n in &gone {
        let on_node: Vec<_> = state
            .containers
            .iter()
            .filter(|c| c.node == n.name)
            .cloned()
            .collect();
        for c in on_node {
            let alive = topology::alive(n.agent_pid);
            let _ = containers::stop(&bins.cni, alive.then_some(n), &c, &cni_log(name));
            state.containers.retain(|x| x.name != c.name);
        }
        remove_node(&state, n);
        state.nodes.retain(|x| x.name != n.name);
    }
    let mut added = false;
    for (i, node) in scenario.node_names().iter().enumerate() {
        if state.node(node).is_none() {
            add_node(&mut state, scenario, node, i as u32 + 1, bins, true)?;
            added = true;
        }
    }
    publish_networks(&mut state, scenario)?;
    if added {
        wait_for_mesh(&mut state, Duration::from_secs(15))?;
    } else if !gone.is_empty() {
        let published = published_nodes(&state);
        write_mesh(&mut state, &published)?;
    }
    state.save()?;
    converge_containers(&mut state, scenario, bins)?;
    wait_converged(&state, Duration::from_secs(15))?;
    Ok(state)
}
