//! `up`, `scale` and `apply` on the Kubernetes path: the cluster daemon
//! (API server, scheduler, kubelets), what `helm install` would create
//! (namespace, webhook configuration), two replicas of the real controller,
//! one agent per node on its Kubernetes source, then the scenario's
//! namespaces, Projects and pods — all through the API.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use super::lifecycle::{add_node, start_agent};
use super::workloads::desired_containers;
use super::{Binaries, SandboxError, progress};
use crate::kube::client::Cluster;
use crate::kube::objects::{self, SYSTEM_NAMESPACE};
use crate::kube::{self as k, KubeError, UNDERLAY_API_ADDRESS};
use crate::readiness::{wait_converged, wait_ready};
use crate::scenario::Scenario;
use crate::state::{
    ControllerState, NetworkState, SandboxState, StateError, root_of, write_atomic,
};
use crate::topology;
use privnet_api::readers::node_info;

/// Controller replicas the sandbox runs (leader election decides).
pub const CONTROLLER_REPLICAS: usize = 2;
/// The controllers' lease (shorter than the chart's 15 s: failover tests wait for it).
pub const LEASE_SECONDS: u64 = 6;

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

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
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
        add_node(state, node, i as u32 + 1, bins, false)?;
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

fn start_daemon(state: &mut SandboxState, bins: &Binaries) -> Result<(), SandboxError> {
    let root = root_of(&state.name);
    let log_path = root.join("cluster.log");
    let log = std::fs::File::create(&log_path).map_err(io(&log_path))?;
    let err = log.try_clone().map_err(io(&log_path))?;
    let child = Command::new(&bins.privnet)
        .args(["sandbox", "--name", &state.name, "cluster-daemon"])
        .env(
            "PRIVNET_LOG",
            std::env::var("PRIVNET_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(io(&bins.privnet))?;
    state.api_pid = child.id();
    state.kubeconfig = k::kubeconfig(&root).display().to_string();
    state.save()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !k::ready_file(&root).exists() {
        if !topology::alive(state.api_pid) {
            return Err(SandboxError::Precondition(format!(
                "the cluster daemon exited; see {}",
                log_path.display()
            )));
        }
        if Instant::now() > deadline {
            return Err(SandboxError::Timeout("the API server did not start".into()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// What `helm install` creates, then the controllers and the Node objects.
fn install(
    state: &mut SandboxState,
    cluster: &Cluster,
    bins: &Binaries,
) -> Result<(), SandboxError> {
    let root = root_of(&state.name);
    cluster.apply(&objects::namespace(SYSTEM_NAMESPACE))?;
    let ca_path = k::webhook_tls_dir(&root).join("ca.crt");
    let ca = std::fs::read(&ca_path).map_err(io(&ca_path))?;
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca);
    cluster.apply(&objects::webhook_configuration(&bundle))?;
    for n in &state.nodes {
        cluster.apply(&objects::node(&n.name, &n.underlay_address))?;
    }
    state.controllers = (0..CONTROLLER_REPLICAS)
        .map(|i| {
            let dir = root.display().to_string();
            Ok(ControllerState {
                name: format!("controller-{i}"),
                pid: 0,
                webhook: free_loopback_port()?,
                metrics: free_loopback_port()?,
                log: format!("{dir}/controller-{i}.log"),
            })
        })
        .collect::<Result<_, SandboxError>>()?;
    let backends: Vec<String> = state
        .controllers
        .iter()
        .map(|c| c.webhook.clone())
        .collect();
    write_atomic(&k::webhook_backends(&root), &(backends.join("\n") + "\n"))?;
    for i in 0..state.controllers.len() {
        state.controllers[i].pid = start_controller(state, i, bins)?;
    }
    state.save()?;
    Ok(())
}

fn free_loopback_port() -> Result<String, SandboxError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io(Path::new("127.0.0.1:0")))?;
    Ok(l.local_addr()
        .map_err(io(Path::new("127.0.0.1:0")))?
        .to_string())
}

/// Starts controller replica `i` (detached, its own log); returns its pid.
pub fn start_controller(
    state: &SandboxState,
    i: usize,
    bins: &Binaries,
) -> Result<u32, SandboxError> {
    let root = root_of(&state.name);
    let c = &state.controllers[i];
    let tls = k::webhook_tls_dir(&root);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&c.log)
        .map_err(io(Path::new(&c.log)))?;
    let err = log.try_clone().map_err(io(Path::new(&c.log)))?;
    let child = Command::new(&bins.privnet)
        .arg("controller")
        .args(["--namespace", SYSTEM_NAMESPACE, "--identity", &c.name])
        .args(["--lease-seconds", &LEASE_SECONDS.to_string()])
        // Claims of deleted pods go within seconds, not minutes: the
        // sandbox's API stores a pod milliseconds after admission claimed.
        .args(["--claims-sweep-seconds", "2", "--claims-grace-seconds", "5"])
        .args(["--webhook-addr", &c.webhook, "--metrics-addr", &c.metrics])
        .arg("--tls-cert")
        .arg(tls.join("apiserver.crt"))
        .arg("--tls-key")
        .arg(tls.join("apiserver.key"))
        .args(["--cluster-domain", k::CLUSTER_DOMAIN])
        .env("KUBECONFIG", &state.kubeconfig)
        .env(
            "PRIVNET_LOG",
            std::env::var("PRIVNET_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(io(&bins.privnet))?;
    Ok(child.id())
}

/// Kills (`SIGKILL`) or restarts controller replica `replica`.
pub fn controller_control(
    name: &str,
    replica: usize,
    start: bool,
    bins: &Binaries,
) -> Result<SandboxState, SandboxError> {
    let mut state = SandboxState::load(name)?;
    if replica >= state.controllers.len() {
        return Err(SandboxError::Precondition(format!(
            "no controller replica {replica}"
        )));
    }
    if start {
        if !topology::alive(state.controllers[replica].pid) {
            state.controllers[replica].pid = start_controller(&state, replica, bins)?;
        }
    } else {
        topology::stop_pid(
            state.controllers[replica].pid,
            nix::sys::signal::Signal::SIGKILL,
        );
        state.controllers[replica].pid = 0;
    }
    state.save()?;
    Ok(state)
}

fn apply_projects(cluster: &Cluster, scenario: &Scenario) -> Result<(), SandboxError> {
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
fn wait_for_mesh(
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
fn wait_for_networks(
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

/// Creates the scenario's missing pods and deletes its extra ones, then
/// waits until the kubelets run exactly those.
pub(super) fn converge_pods(
    state: &mut SandboxState,
    cluster: &Cluster,
    scenario: &Scenario,
    timeout: Duration,
) -> Result<(), SandboxError> {
    let namespace_of = |project: &str| {
        scenario
            .projects
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(project))
            .and_then(|p| p.spec.namespaces.first().cloned())
            .unwrap_or_else(|| project.to_string())
    };
    let desired: Vec<(String, String)> = desired_containers(scenario)
        .iter()
        .map(|c| {
            let name = format!("{}-{}-{}", c.application, c.process_type, c.number);
            let ns = namespace_of(&c.project);
            let pod = objects::pod(&ns, &name, &c.application, &c.process_type, &c.node);
            (
                format!("{ns}/{name}"),
                serde_json::to_string(&pod).expect("json"),
            )
        })
        .collect();
    let wanted: BTreeSet<&str> = desired.iter().map(|(k, _)| k.as_str()).collect();
    let existing = cluster.list(
        &json!({"apiVersion": "v1", "kind": "Pod"}),
        objects::SCENARIO_LABEL,
    )?;
    let key_of = |p: &Value| {
        format!(
            "{}/{}",
            p["metadata"]["namespace"].as_str().unwrap_or_default(),
            p["metadata"]["name"].as_str().unwrap_or_default()
        )
    };
    let have: BTreeSet<String> = existing.iter().map(key_of).collect();
    for pod in &existing {
        if !wanted.contains(key_of(pod).as_str()) {
            cluster.delete(pod)?;
        }
    }
    // Only the missing ones: creating an existing pod still goes through
    // admission (as on a real API server), which would claim a number.
    for (key, text) in &desired {
        if !have.contains(key) {
            cluster.create(&serde_json::from_str(text).expect("json"))?;
        }
    }
    // The kubelets run exactly the wanted scenario pods (plus any others).
    let deadline = Instant::now() + timeout;
    let root = root_of(&state.name);
    loop {
        let running: BTreeSet<String> = crate::kube::records::containers(&root)
            .into_iter()
            .map(|c| format!("{}/{}", c.namespace, c.name))
            .collect();
        let extra = existing.iter().any(|p| {
            let key = key_of(p);
            !wanted.contains(key.as_str()) && running.contains(&key)
        });
        let missing = wanted.iter().find(|k| !running.contains(**k));
        if missing.is_none() && !extra {
            *state = SandboxState::load(&state.name)?;
            return Ok(());
        }
        if Instant::now() > deadline {
            let why = missing.map_or_else(
                || "deleted pods still run".to_string(),
                |m| format!("pod {m} is not running"),
            );
            return Err(SandboxError::Timeout(format!(
                "{why} (see {}/cluster.log)",
                root.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
            add_node(state, node, i as u32 + 1, bins, true)?;
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
