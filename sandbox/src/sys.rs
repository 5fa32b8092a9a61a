//! Small wrappers over the commands the sandbox drives (`ip`), with errors
//! that say which command failed and why.

use std::process::{Command, Stdio};

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

/// Checks the tools the sandbox needs; the error names the apt command.
pub fn check_tools() -> Result<(), String> {
    let tools = [
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("wireguard-go", "wireguard-go"),
        ("wg", "wireguard-tools"),
    ];
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

/// True when running as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
