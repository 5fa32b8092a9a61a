//! The sandbox's lifecycle: build it up (nodes, agents, mesh), scale, kill or restart an agent.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::containers::{self};
use crate::readiness::{wait_converged, wait_ready};
use crate::scenario::Scenario;
use crate::state::{
    ApiMode, NodeState, SandboxState, StateError, WireguardBackend, root_of, write_atomic,
};
use crate::sys::{self, netns_with_prefix};
use crate::teardown::down;
use crate::topology::{self, UNDERLAY_SUBNET};

use super::controller_role::{publish_networks, wait_for_mesh};
use super::workloads::{apply, converge_containers};
use super::{Binaries, SandboxError, cluster_dir, cni_log, progress};

/// Builds the sandbox with its agents on WireGuard `backend`; returns its state.
pub fn up(
    name: &str,
    scenario: &Scenario,
    bins: &Binaries,
    backend: WireguardBackend,
    api: ApiMode,
) -> Result<SandboxState, SandboxError> {
    up_staged(name, scenario, bins, backend, api, false)
}

/// Builds the underlay and the nodes but starts no agent: the nodes are
/// bare, as before privnet is installed (e.g. to set up a stand-in for the
/// primary CNI first). [`start_agents`] installs privnet on them.
pub fn up_without_agents(
    name: &str,
    scenario: &Scenario,
    bins: &Binaries,
    backend: WireguardBackend,
    api: ApiMode,
) -> Result<SandboxState, SandboxError> {
    up_staged(name, scenario, bins, backend, api, true)
}

fn up_staged(
    name: &str,
    scenario: &Scenario,
    bins: &Binaries,
    backend: WireguardBackend,
    api: ApiMode,
    hold_agents: bool,
) -> Result<SandboxState, SandboxError> {
    if !sys::is_root() {
        return Err(SandboxError::Precondition(
            "the sandbox needs root (network namespaces): run it with sudo".into(),
        ));
    }
    sys::check_tools(backend).map_err(SandboxError::Precondition)?;
    if SandboxState::path(name).exists() || !netns_with_prefix(&format!("{name}-")).is_empty() {
        return Err(SandboxError::Precondition(format!(
            "sandbox {name:?} already exists: run `privnet sandbox down --name {name}` first"
        )));
    }
    let started = Instant::now();
    let result = build(name, scenario, bins, backend, api, hold_agents);
    match result {
        Ok(state) => {
            progress(&format!(
                "sandbox {name:?} up in {:.1} s",
                started.elapsed().as_secs_f64()
            ));
            Ok(state)
        }
        Err(e) => {
            if std::env::var_os("PRIVNET_SANDBOX_KEEP").is_some() {
                progress(&format!(
                    "up failed ({e}); kept for debugging (PRIVNET_SANDBOX_KEEP)"
                ));
            } else {
                progress(&format!("up failed ({e}); cleaning up"));
                down(name);
            }
            Err(e)
        }
    }
}

fn build(
    name: &str,
    scenario: &Scenario,
    bins: &Binaries,
    backend: WireguardBackend,
    api: ApiMode,
    hold_agents: bool,
) -> Result<SandboxState, SandboxError> {
    let root = root_of(name);
    std::fs::create_dir_all(root.join("cluster")).map_err(|e| StateError::Io {
        path: root.display().to_string(),
        source: e,
    })?;
    write_atomic(
        &root.join("scenario.yaml"),
        &serde_yaml::to_string(scenario).expect("scenario serializes"),
    )?;
    let mut state = SandboxState {
        schema_version: crate::state::SCHEMA_VERSION,
        name: name.to_string(),
        root: root.display().to_string(),
        underlay_netns: format!("{name}-ul"),
        underlay_subnet: UNDERLAY_SUBNET.into(),
        wireguard_backend: backend,
        nodes: Vec::new(),
        networks: Vec::new(),
        containers: Vec::new(),
        api,
        kubeconfig: String::new(),
        api_pid: 0,
        controllers: Vec::new(),
    };
    state.save()?;
    if api == ApiMode::Kube {
        super::kube_path::build(&mut state, scenario, bins, hold_agents)?;
        return Ok(state);
    }
    progress("planning networks (controller role)");
    publish_networks(&mut state, scenario)?;
    progress(&format!(
        "creating the underlay and {} nodes",
        scenario.nodes
    ));
    topology::create_underlay(&state.underlay_netns)?;
    for (i, node) in scenario.node_names().iter().enumerate() {
        add_node(&mut state, scenario, node, i as u32 + 1, bins, !hold_agents)?;
    }
    state.save()?;
    if hold_agents {
        progress("nodes up without agents (start them with `start-agents`)");
        return Ok(state);
    }
    finish(&mut state, scenario, bins)?;
    Ok(state)
}

/// Mesh, containers, convergence: the rest of `up` once the agents run.
fn finish(
    state: &mut SandboxState,
    scenario: &Scenario,
    bins: &Binaries,
) -> Result<(), SandboxError> {
    wait_for_mesh(state, Duration::from_secs(15))?;
    progress("starting containers through privnet-cni");
    converge_containers(state, scenario, bins)?;
    progress("waiting for DNS and FDB convergence");
    wait_converged(state, Duration::from_secs(15))?;
    Ok(())
}

/// Starts the agents of a sandbox built by [`up_without_agents`], then does
/// the rest of `up` (mesh, the scenario's containers, convergence).
pub fn start_agents(name: &str, bins: &Binaries) -> Result<SandboxState, SandboxError> {
    let mut state = SandboxState::load(name)?;
    let root = root_of(name);
    let text = std::fs::read_to_string(root.join("scenario.yaml")).map_err(|e| StateError::Io {
        path: root.display().to_string(),
        source: e,
    })?;
    let scenario = Scenario::parse(&text)?;
    let backend = state.wireguard_backend;
    let api = state.api;
    progress("starting the agents");
    for n in state
        .nodes
        .iter_mut()
        .filter(|n| !topology::alive(n.agent_pid))
    {
        n.agent_pid = start_agent(name, api, n, bins, backend)?;
    }
    state.save()?;
    if api == ApiMode::Kube {
        super::kube_path::finish(&mut state, &scenario)?;
        return Ok(state);
    }
    finish(&mut state, &scenario, bins)?;
    Ok(state)
}

pub(super) fn node_state(state: &SandboxState, node: &str, index: u32) -> NodeState {
    let dir = Path::new(&state.root).join(node);
    NodeState {
        name: node.to_string(),
        netns: format!("{}-{node}", state.name),
        underlay_address: topology::node_address(index),
        wireguard_interface: format!("{}wg{index}", short(&state.name)),
        public_key: String::new(),
        vtep: String::new(),
        agent_socket: dir.join("agent.sock").display().to_string(),
        agent_pid: 0,
        state_dir: dir.join("state").display().to_string(),
        agent_log: dir.join("agent.log").display().to_string(),
        cni_conflist: dir.join("net.d/10-privnet.conflist").display().to_string(),
        network_netns_prefix: format!("{}-{node}-net-", state.name),
    }
}

/// Starts the agent of `node` on the sandbox's source (files or the API).
pub(super) fn start_agent(
    name: &str,
    api: ApiMode,
    node: &NodeState,
    bins: &Binaries,
    backend: WireguardBackend,
) -> Result<u32, SandboxError> {
    let root = root_of(name);
    let kubeconfig = crate::kube::node_kubeconfig(&root);
    let cluster_dir = cluster_dir(name);
    let source = match api {
        ApiMode::Files => topology::AgentSource::Dir(&cluster_dir),
        ApiMode::Kube => topology::AgentSource::Kube {
            kubeconfig: &kubeconfig,
            cluster_dns: std::net::SocketAddr::from((
                crate::kube::UNDERLAY_API_ADDRESS
                    .parse::<std::net::Ipv4Addr>()
                    .expect("address"),
                53,
            )),
        },
    };
    Ok(topology::start_agent(&bins.privnet, node, source, backend)?)
}

/// Interface names are 15 bytes at most: keep the sandbox part short.
pub(super) fn short(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(8)
        .collect()
}

/// Creates node `node` (its directory, conflist, namespace) and, when
/// `with_agent`, starts its agent; its state directory is a tmpfs when the
/// scenario asks for one (`stateTmpfs`).
pub(super) fn add_node(
    state: &mut SandboxState,
    scenario: &Scenario,
    node: &str,
    index: u32,
    bins: &Binaries,
    with_agent: bool,
) -> Result<(), SandboxError> {
    let mut n = node_state(state, node, index);
    std::fs::create_dir_all(&n.state_dir).map_err(|e| StateError::Io {
        path: n.state_dir.clone(),
        source: e,
    })?;
    if let Some(size) = scenario.state_tmpfs.get(node) {
        sys::run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
                &n.state_dir,
            ],
        )?;
    }
    write_atomic(
        Path::new(&n.cni_conflist),
        &serde_json::to_string_pretty(&containers::conflist(&n, &cni_log(&state.name)))
            .expect("json"),
    )?;
    topology::create_node(&state.underlay_netns, &n)?;
    if with_agent {
        n.agent_pid = start_agent(&state.name, state.api, &n, bins, state.wireguard_backend)?;
    }
    state.nodes.push(n);
    Ok(())
}

/// Scales one application's process type.
pub fn scale(
    name: &str,
    app: &str,
    ptype: &str,
    count: u32,
    bins: &Binaries,
) -> Result<SandboxState, SandboxError> {
    let root = root_of(name);
    let text = std::fs::read_to_string(root.join("scenario.yaml")).map_err(|e| StateError::Io {
        path: root.display().to_string(),
        source: e,
    })?;
    let mut scenario = Scenario::parse(&text)?;
    let w = scenario
        .workloads
        .iter_mut()
        .find(|w| w.application == app)
        .ok_or_else(|| {
            SandboxError::Precondition(format!("no application {app:?} in the sandbox"))
        })?;
    w.processes.insert(ptype.to_string(), count);
    scenario.validate()?;
    let mut state = SandboxState::load(name)?;
    if state.api == ApiMode::Kube {
        write_atomic(
            &root.join("scenario.yaml"),
            &serde_yaml::to_string(&scenario).expect("yaml"),
        )?;
        super::kube_path::scale(&mut state, &scenario)?;
        return Ok(state);
    }
    apply(name, &scenario, bins)
}

/// Kills (`SIGKILL`) or restarts the agent of one node, leaving the datapath.
pub fn agent_control(
    name: &str,
    node: &str,
    start: bool,
    bins: &Binaries,
) -> Result<SandboxState, SandboxError> {
    let mut state = SandboxState::load(name)?;
    let idx = state
        .node_index(node)
        .ok_or_else(|| SandboxError::Precondition(format!("no node {node:?}")))?;
    if start {
        if !topology::alive(state.nodes[idx].agent_pid) {
            let pid = start_agent(
                name,
                state.api,
                &state.nodes[idx],
                bins,
                state.wireguard_backend,
            )?;
            state.nodes[idx].agent_pid = pid;
            state.save()?;
            wait_ready(&state, Instant::now() + Duration::from_secs(15))?;
        }
    } else {
        topology::stop_pid(
            state.nodes[idx].agent_pid,
            nix::sys::signal::Signal::SIGKILL,
        );
        state.nodes[idx].agent_pid = 0;
        state.save()?;
    }
    Ok(state)
}
