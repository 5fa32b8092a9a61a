//! The cluster daemon, what `helm install` creates, the controller replicas.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::kube::client::Cluster;
use crate::kube::objects::{self, SYSTEM_NAMESPACE};
use crate::kube::{self as k};
use crate::ops::{Binaries, SandboxError};
use crate::state::{ControllerState, SandboxState, root_of, write_atomic};
use crate::topology;

use super::io;

/// Controller replicas the sandbox runs (leader election decides).
pub const CONTROLLER_REPLICAS: usize = 2;
/// The controllers' lease (shorter than the chart's 15 s: failover tests wait for it).
pub const LEASE_SECONDS: u64 = 6;

/// Starts the cluster daemon and waits for its API.
pub(super) fn start_daemon(state: &mut SandboxState, bins: &Binaries) -> Result<(), SandboxError> {
    if Command::new("openssl").arg("version").output().is_err() {
        return Err(SandboxError::Precondition(
            "the Kubernetes path needs the openssl CLI (certificates): apt-get install openssl"
                .into(),
        ));
    }
    let root = root_of(&state.name);
    let log_path = root.join("cluster.log");
    let log = std::fs::File::create(&log_path).map_err(io(&log_path))?;
    let err = log.try_clone().map_err(io(&log_path))?;
    let child = Command::new(&bins.privnet)
        .args(["sandbox", "--name", &state.name, "cluster-daemon"])
        .env("PRIVNET_LOG", topology::child_log_filter())
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
pub(super) fn install(
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
    let ip = sandbox_loopback(&state.name);
    state.controllers = (0..CONTROLLER_REPLICAS)
        .map(|i| {
            let dir = root.display().to_string();
            let port = |base: u16| format!("{ip}:{}", base + i as u16);
            ControllerState {
                name: format!("controller-{i}"),
                pid: 0,
                webhook: port(WEBHOOK_PORT_BASE),
                metrics: port(METRICS_PORT_BASE),
                log: format!("{dir}/controller-{i}.log"),
            }
        })
        .collect();
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

/// Ports of controller replica 0 on the sandbox's loopback address (below
/// the ephemeral range).
const WEBHOOK_PORT_BASE: u16 = 19443;
const METRICS_PORT_BASE: u16 = 19643;

/// A loopback address of this sandbox's own (all of 127/8 is local), from a
/// hash of its unique name: fixed ports there cannot meet another sandbox's,
/// as ports picked by binding :0 and releasing could (two sandboxes up at
/// once once sent one's webhook calls to the other's metrics port).
fn sandbox_loopback(name: &str) -> std::net::Ipv4Addr {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let byte = |shift: u32| ((h >> shift) % 254 + 1) as u8;
    std::net::Ipv4Addr::new(127, 10 + (h % 200) as u8, byte(8), byte(16))
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
        .env("PRIVNET_LOG", topology::child_log_filter())
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
