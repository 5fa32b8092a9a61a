//! The sandbox's Kubernetes path: the emulated API server (kubemu), the
//! objects a `helm install` and the scenario put in it, the cluster daemon
//! (API server on loopback and on the underlay, the webhook Service, a
//! cluster DNS stand-in, a scheduler and one kubelet role per node) and the
//! client `up` and `scale` drive it with.

pub mod client;
pub mod cluster_dns;
pub mod daemon;
pub mod kubelet;
pub mod objects;
pub mod pod;
pub mod records;

use std::path::{Path, PathBuf};

/// The API server's and the cluster DNS stand-in's address on the underlay
/// (on the underlay bridge, in the underlay namespace).
pub const UNDERLAY_API_ADDRESS: &str = "192.168.213.1";
/// The API server's port on the underlay.
pub const UNDERLAY_API_PORT: u16 = 6443;
/// The cluster's DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// Errors of the Kubernetes path.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// Certificates or kubeconfig.
    #[error("failed to make the API server's certificates")]
    Tls(#[from] privnet_kubemu::tls::TlsError),
    /// A socket could not be bound.
    #[error("failed to bind {what}")]
    Bind {
        /// Which socket.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Entering the underlay namespace failed.
    #[error("failed to open a socket in the underlay namespace")]
    Netns(#[from] privnet_sys::netns::NetnsError),
    /// The kubeconfig could not be read or the client made.
    #[error("failed to make a client of the sandbox's API server: {0}")]
    Client(String),
    /// An API call failed.
    #[error("failed to {what}")]
    Api {
        /// What.
        what: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// The state file.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// A runtime could not be built.
    #[error("failed to start an async runtime")]
    Runtime(#[source] std::io::Error),
}

/// The API server's files (certificates, kubeconfigs) of sandbox `root`.
pub fn api_dir(root: &Path) -> PathBuf {
    root.join("api")
}

/// The kubeconfig for the user, the controllers and the kubelets (loopback).
pub fn kubeconfig(root: &Path) -> PathBuf {
    api_dir(root).join("kubeconfig")
}

/// The kubeconfig for the agents (the API on the underlay).
pub fn node_kubeconfig(root: &Path) -> PathBuf {
    api_dir(root).join("node-kubeconfig")
}

/// Written last by the daemon: the API is serving.
pub fn ready_file(root: &Path) -> PathBuf {
    api_dir(root).join("ready")
}

/// Where the webhook Service forwards to: one `ip:port` per line.
pub fn webhook_backends(root: &Path) -> PathBuf {
    api_dir(root).join("webhook-backends")
}

/// The webhook's certificates (`ca.crt`, `apiserver.crt`, `apiserver.key`).
pub fn webhook_tls_dir(root: &Path) -> PathBuf {
    api_dir(root).join("webhook")
}
