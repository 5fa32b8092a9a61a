//! Drives `privnet sandbox` as a user does (the binary, `status -o json`),
//! with a guard that always runs `down`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::process::{self, ProcessError};

/// Errors of driving the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The `privnet` binary is not where we looked.
    #[error(
        "failed to find the privnet binary at {0} (cargo build --release -p privnet -p privnet-cni, or set PRIVNET_BIN)"
    )]
    NoBinary(String),
    /// A sandbox command failed.
    #[error("failed to run privnet sandbox")]
    Command(#[source] ProcessError),
    /// `status -o json` did not decode.
    #[error("failed to decode `privnet sandbox status -o json`")]
    Status(#[source] serde_json::Error),
    /// Something the bench needs is not in the sandbox.
    #[error("failed to find {0} in the sandbox")]
    Missing(String),
}

/// One node (the fields of `status -o json` the benches use).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// `n1`…
    pub name: String,
    /// Node network namespace.
    pub netns: String,
    /// WireGuard interface in the node namespace.
    pub wireguard_interface: String,
    /// Mesh (VTEP) address.
    pub vtep: String,
    /// Agent socket.
    pub agent_socket: String,
    /// Prefix of the node's per-network namespaces (`<prefix><vni>`).
    #[serde(default)]
    pub network_netns_prefix: String,
    /// The agent's pid (0 when stopped).
    #[serde(default)]
    pub agent_pid: u32,
    /// The agent's state directory.
    #[serde(default)]
    pub state_dir: String,
}

/// One private network.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    /// Project name.
    pub project: String,
    /// `pn-<uuid>`.
    pub id: String,
    /// VNI.
    pub vni: u32,
    /// Subnet (CIDR).
    pub subnet: String,
    /// Gateway = DNS server.
    pub gateway: String,
    /// MTU of the private interfaces.
    pub mtu: u32,
    /// DNS zone (without trailing dot).
    pub zone: String,
}

/// One container.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// `<app>-<type>-<n>`.
    pub name: String,
    /// Node it runs on.
    pub node: String,
    /// Its network namespace.
    pub netns: String,
    /// Private address.
    pub ip: String,
    /// Private hostname.
    pub hostname: String,
    /// Application id.
    pub application_id: String,
    /// Process type.
    pub process_type: String,
    /// Container number.
    pub number: u32,
    /// Network id.
    pub network_id: String,
}

/// `privnet sandbox status -o json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    /// The sandbox's root directory (its cluster files are under `cluster/`).
    #[serde(default)]
    pub root: String,
    /// Nodes.
    pub nodes: Vec<Node>,
    /// Networks.
    pub networks: Vec<Network>,
    /// Containers.
    pub containers: Vec<Container>,
}

impl Status {
    /// The network a container is on.
    pub fn network_of(&self, c: &Container) -> Result<&Network, SandboxError> {
        self.networks
            .iter()
            .find(|n| n.id == c.network_id)
            .ok_or_else(|| SandboxError::Missing(format!("network {}", c.network_id)))
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Result<&Node, SandboxError> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| SandboxError::Missing(format!("node {name}")))
    }

    /// The first container matching `pred`.
    pub fn container(
        &self,
        what: &str,
        pred: impl Fn(&Container) -> bool,
    ) -> Result<&Container, SandboxError> {
        self.containers
            .iter()
            .find(|c| pred(c))
            .ok_or_else(|| SandboxError::Missing(what.to_string()))
    }
}

/// The `privnet` binary: `$PRIVNET_BIN`, else next to this executable
/// (benches are built into the same target dir).
pub fn privnet_binary() -> Result<PathBuf, SandboxError> {
    let path = match std::env::var_os("PRIVNET_BIN") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()
            .map_err(|_| SandboxError::NoBinary("<current exe>".into()))?
            .with_file_name("privnet"),
    };
    if path.is_file() && path.with_file_name("privnet-cni").is_file() {
        Ok(path)
    } else {
        Err(SandboxError::NoBinary(path.display().to_string()))
    }
}

/// A running sandbox; `down` on drop.
#[derive(Debug)]
pub struct Sandbox {
    /// Sandbox name (prefix of all its objects).
    pub name: String,
    binary: PathBuf,
    /// How long `up` took (wall clock of the command).
    pub up_time: Duration,
}

impl Sandbox {
    /// `privnet sandbox up --name <unique> [--scenario FILE]`.
    pub fn up(prefix: &str, scenario: Option<&Path>) -> Result<Sandbox, SandboxError> {
        Self::up_with(prefix, scenario, &[])
    }

    /// `privnet sandbox up --api files`: for a bench that calls the plugin
    /// itself, without pods (on the Kubernetes path the agent attaches only
    /// what the webhook admitted).
    pub fn up_files(prefix: &str, scenario: Option<&Path>) -> Result<Sandbox, SandboxError> {
        Self::up_files_using(privnet_binary()?, prefix, scenario)
    }

    /// [`Self::up_files`] with the `privnet` binary given (a test finds it
    /// in the target directory, not next to itself).
    pub fn up_files_using(
        binary: PathBuf,
        prefix: &str,
        scenario: Option<&Path>,
    ) -> Result<Sandbox, SandboxError> {
        Self::up_with_binary(binary, prefix, scenario, &["--api", "files"])
    }

    fn up_with(
        prefix: &str,
        scenario: Option<&Path>,
        extra: &[&str],
    ) -> Result<Sandbox, SandboxError> {
        Self::up_with_binary(privnet_binary()?, prefix, scenario, extra)
    }

    fn up_with_binary(
        binary: PathBuf,
        prefix: &str,
        scenario: Option<&Path>,
        extra: &[&str],
    ) -> Result<Sandbox, SandboxError> {
        // Short: node interface names derive from it (15-byte limit).
        let name = process::unique_name(prefix);
        let mut cmd = Command::new(&binary);
        cmd.args(["sandbox", "up", "--name", &name]).args(extra);
        if let Some(s) = scenario {
            cmd.arg("--scenario").arg(s);
        }
        let started = Instant::now();
        // The guard exists before the command runs: a failed `up` is cleaned too.
        let mut sandbox = Sandbox {
            name,
            binary,
            up_time: Duration::ZERO,
        };
        process::output(&mut cmd).map_err(SandboxError::Command)?;
        sandbox.up_time = started.elapsed();
        Ok(sandbox)
    }

    /// `privnet sandbox status -o json`.
    pub fn status(&self) -> Result<Status, SandboxError> {
        let out = process::output(self.command().args(["status", "-o", "json"]))
            .map_err(SandboxError::Command)?;
        serde_json::from_str(&out).map_err(SandboxError::Status)
    }

    /// `privnet sandbox scale APP TYPE COUNT` as a command (not started).
    pub fn scale_command(&self, app: &str, process_type: &str, count: u32) -> Command {
        let mut cmd = self.command();
        cmd.args(["scale", app, process_type, &count.to_string()]);
        cmd
    }

    /// A `privnet sandbox --name <name>` command.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args(["sandbox", "--name", &self.name]);
        cmd
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = process::raw_output(self.command().arg("down"));
    }
}
