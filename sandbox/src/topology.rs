//! The simulated machines: an underlay namespace with a bridge, one
//! namespace per node plugged into it, one real agent per node.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::state::{NodeState, WireguardBackend};
use super::sys::{CommandError, ip};

/// Underlay subnet of every sandbox (inside its own namespaces only).
pub const UNDERLAY_SUBNET: &str = "192.168.213.0/24";
/// WireGuard port of every node (privnet's default).
pub const WG_PORT: u16 = privnet_core::defaults::WIREGUARD_PORT;

/// Creates the underlay namespace and its bridge (`ip netns add`, `ip link add ul0 type bridge`).
pub fn create_underlay(netns: &str) -> Result<(), CommandError> {
    ip(&["netns", "add", netns])?;
    ip(&["-n", netns, "link", "set", "lo", "up"])?;
    ip(&["-n", netns, "link", "add", "ul0", "type", "bridge"])?;
    ip(&["-n", netns, "link", "set", "ul0", "up"])?;
    Ok(())
}

/// Underlay address of node `index` (1-based).
pub fn node_address(index: u32) -> String {
    format!("192.168.213.{}", 10 + index)
}

/// Creates node namespace `node.netns` with `eth0` on the underlay bridge.
pub fn create_node(underlay: &str, node: &NodeState) -> Result<(), CommandError> {
    let ns = node.netns.as_str();
    let port = format!("u-{}", node.name);
    ip(&["netns", "add", ns])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    ip(&[
        "-n", underlay, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", ns,
    ])?;
    ip(&["-n", underlay, "link", "set", &port, "master", "ul0", "up"])?;
    ip(&[
        "-n",
        ns,
        "addr",
        "add",
        &format!("{}/24", node.underlay_address),
        "dev",
        "eth0",
    ])?;
    ip(&["-n", ns, "link", "set", "eth0", "up"])?;
    Ok(())
}

/// Where an agent reads the cluster from.
#[derive(Debug, Clone, Copy)]
pub enum AgentSource<'a> {
    /// A local directory of manifests (the sandbox plays the controller).
    Dir(&'a Path),
    /// The sandbox's API server: its kubeconfig and the cluster DNS (for
    /// names outside the private zones).
    Kube {
        /// Kubeconfig reaching the API on the underlay.
        kubeconfig: &'a Path,
        /// The cluster DNS service.
        cluster_dns: std::net::SocketAddr,
    },
}

/// Starts the node's agent inside its namespace as a detached process
/// (own process group, output to its log), pinned to the sandbox's WireGuard
/// backend; returns its pid.
pub fn start_agent(
    privnet: &Path,
    node: &NodeState,
    source: AgentSource<'_>,
    backend: WireguardBackend,
) -> Result<u32, CommandError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.agent_log)
        .map_err(|e| CommandError {
            command: format!("open {}", node.agent_log),
            stderr: e.to_string(),
        })?;
    let err_log = log.try_clone().map_err(|e| CommandError {
        command: "dup log".into(),
        stderr: e.to_string(),
    })?;
    let endpoint = format!("{}:{WG_PORT}", node.underlay_address);
    // nsenter enters the network namespace only: `ip netns exec` would also
    // give the agent a private mount namespace, hiding the namespaces it
    // creates (bind mounts under /run/netns) from the runtime and the plugin.
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{}", node.netns))
        .arg("--")
        .arg(privnet)
        .args(["agent", "--node", &node.name])
        .args([
            "--state-dir",
            &node.state_dir,
            "--socket",
            &node.agent_socket,
        ])
        .args([
            "--netns-prefix",
            &node.network_netns_prefix,
            "--wg-ifname",
            &node.wireguard_interface,
        ])
        // privnet's defaults, spelled out: the controller role (mesh, VNIs) uses the same ones.
        .args([
            "--wg-port",
            &WG_PORT.to_string(),
            "--vxlan-port",
            &privnet_core::defaults::VXLAN_PORT.to_string(),
            "--vni-range",
            &privnet_core::vni::VniRange::DEFAULT.to_string(),
            "--mesh-cidr",
            &privnet_core::defaults::MESH_CIDR.to_string(),
        ])
        .args(["--wireguard", backend.agent_flag(), "--endpoint", &endpoint])
        .env("PRIVNET_LOG", child_log_filter())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .process_group(0);
    match source {
        AgentSource::Dir(dir) => {
            cmd.arg("--source-dir").arg(dir).arg("--no-dns-forward");
        }
        AgentSource::Kube {
            kubeconfig,
            cluster_dns,
        } => {
            cmd.arg("--dns-upstream")
                .arg(cluster_dns.to_string())
                .env("KUBECONFIG", kubeconfig)
                .env("POD_NAMESPACE", crate::kube::objects::SYSTEM_NAMESPACE);
        }
    }
    let child = cmd.spawn().map_err(|e| CommandError {
        command: format!("start agent of {}", node.name),
        stderr: e.to_string(),
    })?;
    Ok(child.id())
}

/// Whether process `pid` is alive (and not a zombie of ours).
pub fn alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Sends `signal` to `pid` and waits up to 3 s for it to exit.
pub fn stop_pid(pid: u32, signal: nix::sys::signal::Signal) {
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    if pid == 0 || !alive(pid) {
        return;
    }
    let _ = kill(Pid::from_raw(pid as i32), signal);
    for _ in 0..60 {
        // Reap it if it is our child; ignore errors otherwise.
        let _ = nix::sys::wait::waitpid(
            Pid::from_raw(pid as i32),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
        if !alive(pid) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = kill(Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
}

/// The log filter of the processes the sandbox starts: the caller's
/// `PRIVNET_LOG`, else info without the chatty libraries.
pub fn child_log_filter() -> String {
    std::env::var("PRIVNET_LOG")
        .unwrap_or_else(|_| "info,hickory_server=warn,defguard_wireguard_rs=warn".into())
}
