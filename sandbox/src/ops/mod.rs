//! The sandbox operations: up, down, scale, apply, agent restart, split by
//! concern: `lifecycle` (up, scale, agent control), `controller_role`
//! (networks and mesh from local files), `workloads` (containers).

mod controller_role;
mod kube_path;
mod lifecycle;
mod rotate;
mod workloads;

pub use kube_path::{CONTROLLER_REPLICAS, LEASE_SECONDS, controller_control};
pub use lifecycle::{agent_control, scale, start_agents, up, up_without_agents};
pub use rotate::{RotationReport, rotate_key};
pub use workloads::{apply, converge_containers, desired_containers};

use std::path::PathBuf;

use super::state::{StateError, root_of};
use super::sys;
pub use super::teardown::down;

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
    Scenario(#[from] crate::scenario::ScenarioError),
    /// Controller role.
    #[error(transparent)]
    Controller(#[from] crate::controller::ControllerError),
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
