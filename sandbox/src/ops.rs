//! The sandbox operations: up, down, scale, apply, agent restart.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::containers::{self, ContainerSpec};
use super::controller::plan_networks;
use super::readiness::{wait_converged, wait_ready};
use super::scenario::Scenario;
use super::state::{
    NetworkState, NodeState, SandboxState, StateError, WireguardBackend, root_of, write_atomic,
};
use super::sys::{self, netns_with_prefix};
pub use super::teardown::down;
use super::teardown::remove_node;
use super::topology::{self, UNDERLAY_SUBNET};
use privnet_api::PrivateNetwork;
use privnet_core::mesh::plan_mesh;
use privnet_core::mtu::{UnderlayFamily, private_mtu};
use privnet_core::view::NodeInfo;

/// Errors of sandbox operations.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Preconditions.
    #[error("{0}")]
    Precondition(String),
    /// A command failed.
    #[error(transparent)]
    Command(#[from] sys::CommandError),
    /// State file.
    #[error(transparent)]
    State(#[from] StateError),
    /// Scenario.
    #[error(transparent)]
    Scenario(#[from] super::scenario::ScenarioError),
    /// Controller role.
    #[error(transparent)]
    Controller(#[from] super::controller::ControllerError),
    /// Timed out waiting.
    #[error("timed out: {0}")]
    Timeout(String),
}

/// Where the binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `privnet`.
    pub privnet: PathBuf,
    /// `privnet-cni`.
    pub cni: PathBuf,
}

impl Binaries {
    /// Next to the running executable.
    pub fn beside_current_exe() -> Result<Self, SandboxError> {
        let exe = std::env::current_exe()
            .map_err(|e| SandboxError::Precondition(format!("cannot locate privnet: {e}")))?;
        let dir = exe
            .parent()
            .expect("an executable has a directory")
            .to_path_buf();
        let cni = dir.join("privnet-cni");
        if !cni.is_file() {
            return Err(SandboxError::Precondition(format!(
                "privnet-cni not found at {} (build it: cargo build -p privnet-cni)",
                cni.display()
            )));
        }
        Ok(Self { privnet: exe, cni })
    }
}

fn progress(msg: &str) {
    eprintln!("==> {msg}");
}

pub(super) fn cluster_dir(name: &str) -> PathBuf {
    root_of(name).join("cluster")
}

fn cni_log(name: &str) -> String {
    root_of(name).join("cni.log").display().to_string()
}

/// Builds the sandbox with its agents on WireGuard `backend`; returns its state.
pub fn up(
    name: &str,
    scenario: &Scenario,
    bins: &Binaries,
    backend: WireguardBackend,
) -> Result<SandboxState, SandboxError> {
    up_staged(name, scenario, bins, backend, false)
}

/// Builds the underlay and the nodes but starts no agent: the nodes are
/// bare, as before privnet is installed (e.g. to set up a stand-in for the
/// primary CNI first). [`start_agents`] installs privnet on them.
pub fn up_without_agents(
    name: &str,
    scenario: &Scenario,
    bins: &Binaries,
    backend: WireguardBackend,
) -> Result<SandboxState, SandboxError> {
    up_staged(name, scenario, bins, backend, true)
}

fn up_staged(
    name: &str,
    scenario: &Scenario,
    bins: &Binaries,
    backend: WireguardBackend,
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
    let result = build(name, scenario, bins, backend, hold_agents);
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
        schema_version: super::state::SCHEMA_VERSION,
        name: name.to_string(),
        root: root.display().to_string(),
        underlay_netns: format!("{name}-ul"),
        underlay_subnet: UNDERLAY_SUBNET.into(),
        wireguard_backend: backend,
        nodes: Vec::new(),
        networks: Vec::new(),
        containers: Vec::new(),
    };
    state.save()?;
    progress("planning networks (controller role)");
    publish_networks(&mut state, scenario)?;
    progress(&format!(
        "creating the underlay and {} nodes",
        scenario.nodes
    ));
    topology::create_underlay(&state.underlay_netns)?;
    for (i, node) in scenario.node_names().iter().enumerate() {
        add_node(&mut state, node, i as u32 + 1, bins, !hold_agents)?;
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
    progress("starting the agents");
    for n in state
        .nodes
        .iter_mut()
        .filter(|n| !topology::alive(n.agent_pid))
    {
        n.agent_pid = topology::start_agent(&bins.privnet, n, &cluster_dir(name), backend)?;
    }
    state.save()?;
    finish(&mut state, &scenario, bins)?;
    Ok(state)
}

fn node_state(state: &SandboxState, node: &str, index: u32) -> NodeState {
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

/// Interface names are 15 bytes at most: keep the sandbox part short.
fn short(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(8)
        .collect()
}

fn add_node(
    state: &mut SandboxState,
    node: &str,
    index: u32,
    bins: &Binaries,
    start_agent: bool,
) -> Result<(), SandboxError> {
    let mut n = node_state(state, node, index);
    let dir = Path::new(&n.state_dir)
        .parent()
        .expect("node dir")
        .to_path_buf();
    std::fs::create_dir_all(&dir).map_err(|e| StateError::Io {
        path: dir.display().to_string(),
        source: e,
    })?;
    write_atomic(
        Path::new(&n.cni_conflist),
        &serde_json::to_string_pretty(&containers::conflist(&n, &cni_log(&state.name)))
            .expect("json"),
    )?;
    topology::create_node(&state.underlay_netns, &n)?;
    if start_agent {
        n.agent_pid = topology::start_agent(
            &bins.privnet,
            &n,
            &cluster_dir(&state.name),
            state.wireguard_backend,
        )?;
    }
    state.nodes.push(n);
    Ok(())
}

/// Projects → networks (ids and VNIs kept across calls), written where the agents read them.
fn publish_networks(state: &mut SandboxState, scenario: &Scenario) -> Result<(), SandboxError> {
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
fn wait_for_mesh(state: &mut SandboxState, timeout: Duration) -> Result<(), SandboxError> {
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
fn published_nodes(state: &SandboxState) -> Vec<NodeInfo> {
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

fn write_mesh(state: &mut SandboxState, published: &[NodeInfo]) -> Result<(), SandboxError> {
    let path = cluster_dir(&state.name).join("mesh.json");
    let previous: Vec<NodeInfo> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let mesh = plan_mesh(privnet_core::mesh::DEFAULT_MESH_CIDR, published, &previous)
        .map_err(super::controller::ControllerError::from)?;
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
            add_node(&mut state, node, i as u32 + 1, bins, true)?;
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
        .nodes
        .iter()
        .position(|n| n.name == node)
        .ok_or_else(|| SandboxError::Precondition(format!("no node {node:?}")))?;
    if start {
        if !topology::alive(state.nodes[idx].agent_pid) {
            let pid = topology::start_agent(
                &bins.privnet,
                &state.nodes[idx],
                &cluster_dir(name),
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
