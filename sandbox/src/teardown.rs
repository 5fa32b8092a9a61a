//! Tearing a sandbox down, whole or one node at a time. Works from the state
//! file and, failing that, from the name prefix and the pid files, so it is
//! safe to run twice or after a crash.

use std::path::Path;

use super::ops::cluster_dir;
use super::state::{NodeState, SandboxState, root_of};
use super::sys::{ip, netns_with_prefix};
use super::topology;

pub(super) fn remove_node(state: &SandboxState, n: &NodeState) {
    topology::stop_pid(n.agent_pid, nix::sys::signal::Signal::SIGTERM);
    stop_wireguard(n);
    for ns in netns_with_prefix(&n.network_netns_prefix) {
        let _ = ip(&["netns", "del", &ns]);
    }
    let _ = ip(&["netns", "del", &n.netns]);
    let dir = cluster_dir(&state.name);
    let _ = std::fs::remove_file(dir.join("nodes").join(format!("{}.json", n.name)));
    let _ = std::fs::remove_dir_all(dir.join("endpoints").join(&n.name));
    // Address claims of the removed node (the controller's GC in Kubernetes).
    let prefix = format!("{}/", n.name);
    for net in std::fs::read_dir(dir.join("claims"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for claim in std::fs::read_dir(net.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if std::fs::read_to_string(claim.path()).is_ok_and(|o| o.starts_with(&prefix)) {
                let _ = std::fs::remove_file(claim.path());
            }
        }
    }
}

fn stop_wireguard(n: &NodeState) {
    let pid_file =
        Path::new(&n.state_dir).join(format!("wireguard-go-{}.pid", n.wireguard_interface));
    if let Some(pid) = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
    {
        topology::stop_pid(pid, nix::sys::signal::Signal::SIGTERM);
    }
    let _ = std::fs::remove_file(format!("/var/run/wireguard/{}.sock", n.wireguard_interface));
}

/// Removes everything sandbox `name` created; safe to run twice or after a
/// crash (works from the state file and, failing that, from the name prefix).
pub fn down(name: &str) {
    let state = SandboxState::load(name).ok();
    if let Some(state) = &state {
        // The Kubernetes path: kubelets and API server first, then the controllers.
        topology::stop_pid(state.api_pid, nix::sys::signal::Signal::SIGTERM);
        for c in &state.controllers {
            topology::stop_pid(c.pid, nix::sys::signal::Signal::SIGTERM);
        }
        for n in &state.nodes {
            topology::stop_pid(n.agent_pid, nix::sys::signal::Signal::SIGTERM);
            stop_wireguard(n);
        }
    }
    // Daemons recorded in pid files even when the state file is gone.
    for entry in std::fs::read_dir(root_of(name))
        .into_iter()
        .flatten()
        .flatten()
    {
        let sd = entry.path().join("state");
        for f in std::fs::read_dir(&sd).into_iter().flatten().flatten() {
            let fname = f.file_name().to_string_lossy().into_owned();
            if fname.starts_with("wireguard-go-")
                && let Some(pid) = std::fs::read_to_string(f.path())
                    .ok()
                    .and_then(|t| t.trim().parse::<u32>().ok())
            {
                topology::stop_pid(pid, nix::sys::signal::Signal::SIGTERM);
                let ifname = fname
                    .trim_start_matches("wireguard-go-")
                    .trim_end_matches(".pid");
                let _ = std::fs::remove_file(format!("/var/run/wireguard/{ifname}.sock"));
            }
        }
    }
    for ns in netns_with_prefix(&format!("{name}-")) {
        let _ = ip(&["netns", "del", &ns]);
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{ns}"));
    }
    for e in std::fs::read_dir("/etc/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        if e.file_name()
            .to_string_lossy()
            .starts_with(&format!("{name}-"))
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let _ = std::fs::remove_dir_all(root_of(name));
}
