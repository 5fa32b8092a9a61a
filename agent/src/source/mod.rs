//! Where the agent's inputs come from and where its outputs go.
//!
//! One small trait, two backends: a local directory of manifests (sandbox,
//! tests) and Kubernetes (the operator issue). The agent only sees
//! [`ClusterView`]s.

mod kube;
mod local_dir;

use std::future::Future;

pub use kube::KubeSource;
pub use local_dir::LocalDir;

use privnet_core::rpc::Workload;
use privnet_core::view::{ClusterView, EndpointInfo, NodeInfo};

/// Errors of a source backend.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// An atomic file write failed.
    #[error(transparent)]
    Write(#[from] privnet_sys::file::WriteError),
    /// Reading or writing the backing store failed.
    #[error("failed to access {path}")]
    Io {
        /// File or directory concerned.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A manifest could not be decoded.
    #[error("failed to decode {path}: {message}")]
    Decode {
        /// File concerned.
        path: String,
        /// Decoder message.
        message: String,
    },
}

/// One address claim as a backend holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressClaim {
    /// Network id.
    pub network_id: String,
    /// The claimed address.
    pub ip: std::net::Ipv4Addr,
    /// Its holder (`<node>/<container id>/<ifname>`).
    pub owner: String,
}

/// Inputs and outputs of the agent.
pub trait Source: Send + Sync + 'static {
    /// Returns the view once its revision differs from `since` (immediately
    /// for `since == 0`), waiting for a change otherwise.
    fn next_view(
        &self,
        since: u64,
    ) -> impl Future<Output = Result<(u64, ClusterView), SourceError>> + Send;
    /// Publishes this node's WireGuard public key and endpoint.
    fn publish_node(&self, node: &NodeInfo)
    -> impl Future<Output = Result<(), SourceError>> + Send;
    /// Whether what owns this endpoint in the cluster still exists (on
    /// Kubernetes: its Pod, in the watch cache, without waiting). An
    /// endpoint that vanished from the view is published again only then:
    /// a deleted pod's endpoint goes with it before its CNI DEL arrives.
    fn endpoint_owner_exists(&self, _endpoint: &EndpointInfo) -> bool {
        true
    }
    /// Publishes an endpoint attached on this node.
    fn publish_endpoint(
        &self,
        endpoint: &EndpointInfo,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;
    /// Claims `ip` in `network_id` for `owner` with compare-and-swap
    /// semantics: `Ok(false)` when someone else holds it. Claiming what
    /// `owner` already holds succeeds. This is what makes addresses unique
    /// across nodes without a central allocator on the ADD path.
    fn claim_address(
        &self,
        network_id: &str,
        ip: std::net::Ipv4Addr,
        owner: &str,
    ) -> impl Future<Output = Result<bool, SourceError>> + Send;
    /// Releases a claim held by `owner` (idempotent).
    fn release_address(
        &self,
        network_id: &str,
        ip: std::net::Ipv4Addr,
        owner: &str,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;
    /// The address claims held by attachments of node `node`, as
    /// `(network id, address, owner)`: the agent releases at start those no
    /// attachment of its holds (an ADD cut short by a crash after its
    /// claim). Backends whose claims are swept elsewhere may answer none.
    fn node_claims(
        &self,
        _node: &str,
    ) -> impl Future<Output = Result<Vec<AddressClaim>, SourceError>> + Send {
        std::future::ready(Ok(Vec::new()))
    }
    /// Withdraws an endpoint of this node (idempotent).
    fn withdraw_endpoint(
        &self,
        endpoint: &EndpointInfo,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;
    /// The workload of pod `namespace/name` as the cluster records it (its
    /// labels and the webhook's number). Backends without pods answer `None`.
    fn pod_workload(
        &self,
        _namespace: &str,
        _name: &str,
    ) -> impl Future<Output = Result<Option<Workload>, SourceError>> + Send {
        std::future::ready(Ok(None))
    }
    /// Whether container numbers come only from admission (Kubernetes):
    /// the agent then never picks one itself.
    fn numbers_from_admission(&self) -> bool {
        false
    }
}
