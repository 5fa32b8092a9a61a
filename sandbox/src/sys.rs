//! Small wrappers over the commands the sandbox drives (`ip`), with errors
//! that say which command failed and why.

use std::process::{Command, Stdio};

use super::state::WireguardBackend;

/// A failed command.
#[derive(Debug, thiserror::Error)]
#[error("failed to run `{command}`: {stderr}")]
pub struct CommandError {
    /// The command line.
    pub command: String,
    /// What it printed on stderr (or why it could not start).
    pub stderr: String,
}

/// Runs `program args…`, returning stdout.
pub fn run(program: &str, args: &[&str]) -> Result<String, CommandError> {
    let line = || format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CommandError {
            command: line(),
            stderr: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(CommandError {
            command: line(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip args…`.
pub fn ip(args: &[&str]) -> Result<String, CommandError> {
    run("ip", args)
}

/// Named network namespaces starting with `prefix`.
pub fn netns_with_prefix(prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Checks the tools the sandbox needs for `backend` (`wireguard-go` only for
/// the userspace one; the kernel one needs the module); the error names the
/// apt command or the flag to use instead.
pub fn check_tools(backend: WireguardBackend) -> Result<(), String> {
    let mut tools = vec![
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("wg", "wireguard-tools"),
    ];
    match backend {
        WireguardBackend::Userspace => tools.push(("wireguard-go", "wireguard-go")),
        WireguardBackend::Kernel => {
            // Loaded on demand by the first `ip link add … type wireguard`
            // where modprobe works; present in /sys/module once loaded.
            let _ = run("modprobe", &["-q", "wireguard"]);
            if !std::path::Path::new("/sys/module/wireguard").exists() {
                return Err(
                    "kernel WireGuard is not available on this machine (no wireguard \
                     module): use `--wireguard-backend userspace`"
                        .into(),
                );
            }
        }
    }
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(t, _)| {
            !std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(t).is_file()))
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "missing tools: run `apt-get install -y {}`",
            missing.join(" ")
        ))
    }
}

/// `wg show <ifname> <what>` for a node, where its backend can be seen: the
/// userspace daemon answers on its UAPI socket in `/var/run/wireguard` (the
/// host namespace's view), the kernel interface only from inside the node's
/// namespace (`nsenter --net`, so the mount namespace stays the host's).
pub fn wg_show(
    backend: WireguardBackend,
    node_netns: &str,
    ifname: &str,
    what: &str,
) -> Result<String, CommandError> {
    match backend {
        WireguardBackend::Userspace => run("wg", &["show", ifname, what]),
        WireguardBackend::Kernel => run(
            "nsenter",
            &[
                &format!("--net=/run/netns/{node_netns}"),
                "--",
                "wg",
                "show",
                ifname,
                what,
            ],
        ),
    }
}

/// True when running as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
