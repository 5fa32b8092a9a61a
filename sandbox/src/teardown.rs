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
    unmount_under(Path::new(&n.state_dir));
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
    unmount_under(&root_of(name));
    let _ = std::fs::remove_dir_all(root_of(name));
}

/// Unmounts every mount at or below `dir` (a node's state tmpfs), deepest
/// first: `remove_dir_all` cannot remove a mount point.
fn unmount_under(dir: &Path) {
    let mut points = mounts_under(
        &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
        dir,
    );
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = super::sys::run("umount", &[&p]);
    }
}

/// The mount points at or below `dir` in `mountinfo` text (the fifth field,
/// with the kernel's octal escapes of space, tab, newline and backslash undone).
fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| {
            p.replace("\\040", " ")
                .replace("\\011", "\t")
                .replace("\\012", "\n")
                .replace("\\134", "\\")
        })
        .filter(|p| Path::new(p).starts_with(dir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_under_a_directory_are_found_and_only_those() {
        let info = "\
22 1 0:21 / / rw - ext4 /dev/root rw
90 22 0:50 / /run/privnet-sandbox/s1/n1/state rw - tmpfs tmpfs rw,size=256k
91 22 0:51 / /run/privnet-sandbox/s10/n1/state rw - tmpfs tmpfs rw
92 22 0:52 / /run/privnet-sandbox/s1/a\\040b rw - tmpfs tmpfs rw
";
        let found = mounts_under(info, Path::new("/run/privnet-sandbox/s1"));
        assert_eq!(
            found,
            vec![
                "/run/privnet-sandbox/s1/n1/state".to_string(),
                "/run/privnet-sandbox/s1/a b".to_string()
            ],
            "another sandbox whose name extends this one's is not touched"
        );
    }
}
