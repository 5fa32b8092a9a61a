//! The sandbox state file: what `up` built. It is also the stable JSON of
//! `privnet sandbox status -o json` (see docs/SANDBOX.md); fields are only
//! ever added.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Version of the status schema.
pub const SCHEMA_VERSION: u32 = 1;

/// One simulated node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeState {
    /// Node name (`n1`…).
    pub name: String,
    /// Network namespace of the node.
    pub netns: String,
    /// Underlay address.
    pub underlay_address: String,
    /// WireGuard interface (in the node namespace).
    pub wireguard_interface: String,
    /// WireGuard public key.
    #[serde(default)]
    pub public_key: String,
    /// Mesh (VTEP) address.
    #[serde(default)]
    pub vtep: String,
    /// Agent socket.
    pub agent_socket: String,
    /// Agent pid (0 when stopped).
    pub agent_pid: u32,
    /// Agent state directory.
    pub state_dir: String,
    /// Agent log file.
    pub agent_log: String,
    /// CNI conflist the node's runtime uses.
    pub cni_conflist: String,
    /// Prefix of the node's per-network namespaces.
    pub network_netns_prefix: String,
}

/// One private network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkState {
    /// Project name.
    pub project: String,
    /// Network id `pn-<uuid>`.
    pub id: String,
    /// VNI.
    pub vni: u32,
    /// Subnet.
    pub subnet: String,
    /// Gateway (DNS) address.
    pub gateway: String,
    /// MTU of the private interfaces.
    pub mtu: u32,
    /// DNS zone.
    pub zone: String,
}

/// One container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    /// Sandbox name of the container (`<app>-<type>-<n>`).
    pub name: String,
    /// Node it runs on.
    pub node: String,
    /// Its network namespace.
    pub netns: String,
    /// Runtime container id.
    pub container_id: String,
    /// Project.
    pub project: String,
    /// Application id.
    pub application_id: String,
    /// Process type.
    pub process_type: String,
    /// Container number.
    pub number: u32,
    /// Network id.
    pub network_id: String,
    /// Private interface.
    pub interface: String,
    /// Private IPv4 address (without prefix).
    pub ip: String,
    /// Private MAC.
    pub mac: String,
    /// Private hostname.
    pub hostname: String,
    /// Environment variables of the container.
    pub env: BTreeMap<String, String>,
    /// Started through podman rather than a bare namespace.
    #[serde(default)]
    pub podman: bool,
    /// Namespace of its pod (the Kubernetes path; empty otherwise).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// Where the sandbox's cluster state lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiMode {
    /// Local files: the sandbox plays the controller, agents read a directory.
    #[default]
    Files,
    /// An emulated Kubernetes API: the real controller, agents on their
    /// Kubernetes source, a kubelet role per node invoking the CNI for pods.
    Kube,
}

/// One replica of the real controller (the Kubernetes path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ControllerState {
    /// Its identity in the leader election (`controller-<i>`).
    pub name: String,
    /// Its pid (0 when stopped).
    pub pid: u32,
    /// Where it serves the admission webhook.
    pub webhook: String,
    /// Where it serves health and metrics.
    pub metrics: String,
    /// Its log file.
    pub log: String,
}

/// Which WireGuard implementation the sandbox's agents run. The sandbox pins
/// it (the agent's own default, `auto`, would pick the kernel wherever the
/// module exists), so probes know where to look: the userspace daemon's UAPI
/// socket is in `/var/run/wireguard` (reachable from the host namespace), the
/// kernel interface only from inside the node's namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireguardBackend {
    /// `wireguard-go`, one daemon per node (the default: runs on any machine).
    #[default]
    Userspace,
    /// The kernel module (`ip link add … type wireguard` in the node namespace).
    Kernel,
}

impl WireguardBackend {
    /// The value of the agent's `--wireguard` flag that pins this backend.
    pub fn agent_flag(self) -> &'static str {
        match self {
            Self::Userspace => "userspace",
            Self::Kernel => "kernel",
        }
    }
}

/// Everything a running sandbox is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxState {
    /// Schema version.
    pub schema_version: u32,
    /// Sandbox name (prefix of every object it creates).
    pub name: String,
    /// Root directory of its files.
    pub root: String,
    /// Underlay namespace.
    pub underlay_netns: String,
    /// Underlay subnet.
    pub underlay_subnet: String,
    /// WireGuard backend of every agent (`userspace` in state files written
    /// before the field existed: that was the only one the sandbox ran).
    #[serde(default)]
    pub wireguard_backend: WireguardBackend,
    /// Nodes.
    pub nodes: Vec<NodeState>,
    /// Networks.
    pub networks: Vec<NetworkState>,
    /// Containers.
    pub containers: Vec<ContainerState>,
    /// Where the cluster state lives (`files` in state files written before the field existed).
    #[serde(default)]
    pub api: ApiMode,
    /// Kubeconfig of the emulated API server (the Kubernetes path; empty otherwise).
    #[serde(default)]
    pub kubeconfig: String,
    /// Pid of the cluster daemon: API server, scheduler and kubelets (the Kubernetes path).
    #[serde(default)]
    pub api_pid: u32,
    /// Controller replicas (the Kubernetes path).
    #[serde(default)]
    pub controllers: Vec<ControllerState>,
}

/// Errors reading/writing the state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// An atomic file write failed.
    #[error(transparent)]
    Write(#[from] privnet_sys::file::WriteError),
    /// No sandbox of that name is up.
    #[error("no sandbox {0:?} is up (run `privnet sandbox up` first)")]
    NotUp(String),
    /// I/O.
    #[error("failed to access {path}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Decoding.
    #[error("failed to decode {path}: {message}")]
    Decode {
        /// Path.
        path: String,
        /// Why.
        message: String,
    },
}

/// Root directory of sandbox `name`.
pub fn root_of(name: &str) -> PathBuf {
    PathBuf::from("/run/privnet-sandbox").join(name)
}

impl SandboxState {
    /// Index of the node named `node` in [`Self::nodes`].
    pub fn node_index(&self, node: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == node)
    }

    /// Path of the state file.
    pub fn path(name: &str) -> PathBuf {
        root_of(name).join("state.json")
    }

    /// Loads the state of sandbox `name`.
    pub fn load(name: &str) -> Result<Self, StateError> {
        let path = Self::path(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotUp(name.into()));
            }
            Err(e) => {
                return Err(StateError::Io {
                    path: path.display().to_string(),
                    source: e,
                });
            }
        };
        let mut state: Self = serde_json::from_str(&text).map_err(|e| StateError::Decode {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        if state.api == ApiMode::Kube {
            // On the Kubernetes path the containers are what the kubelets run.
            state.containers = crate::kube::records::containers(&root_of(name));
        }
        Ok(state)
    }

    /// Saves atomically.
    pub fn save(&self) -> Result<(), StateError> {
        let path = Self::path(&self.name);
        write_atomic(
            &path,
            &serde_json::to_string_pretty(self).expect("state serializes"),
        )
    }

    /// The container named `name`.
    pub fn container(&self, name: &str) -> Option<&ContainerState> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&NodeState> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// Writes a file atomically (`privnet_sys::file`).
pub fn write_atomic(path: &Path, text: &str) -> Result<(), StateError> {
    Ok(privnet_sys::file::write_atomic(path, text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(backend: WireguardBackend) -> SandboxState {
        SandboxState {
            schema_version: SCHEMA_VERSION,
            name: "t".into(),
            root: "/run/privnet-sandbox/t".into(),
            underlay_netns: "t-ul".into(),
            underlay_subnet: "192.168.213.0/24".into(),
            wireguard_backend: backend,
            nodes: Vec::new(),
            networks: Vec::new(),
            containers: Vec::new(),
            api: ApiMode::default(),
            kubeconfig: String::new(),
            api_pid: 0,
            controllers: Vec::new(),
        }
    }

    #[test]
    fn the_backend_is_in_the_status_json_and_old_state_files_read_as_userspace() {
        let json = serde_json::to_value(state(WireguardBackend::Kernel)).unwrap();
        assert_eq!(json["wireguardBackend"], "kernel");
        assert_eq!(
            json["underlaySubnet"], "192.168.213.0/24",
            "old fields kept"
        );
        let mut old = json.clone();
        old.as_object_mut().unwrap().remove("wireguardBackend");
        let read: SandboxState = serde_json::from_value(old).unwrap();
        assert_eq!(read.wireguard_backend, WireguardBackend::Userspace);
        // Control: a recorded backend is read back as it was.
        let read: SandboxState = serde_json::from_value(json).unwrap();
        assert_eq!(read.wireguard_backend, WireguardBackend::Kernel);
    }
}
