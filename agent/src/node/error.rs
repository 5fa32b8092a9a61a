//! Typed errors of the agent's verbs and of a convergence pass. The CNI
//! answer carries the whole chain ([`crate::error_chain`]) and a kind the
//! plugin maps to a spec code.

use std::net::Ipv4Addr;

use privnet_core::rpc::ErrorKind;

use crate::book::BookError;
use crate::datapath::DatapathError;
use crate::local_network::LocalNetworkError;
use crate::source::SourceError;
use crate::store::StoreError;

/// Errors of the Attach verb. Whatever failed, what the verb had done is undone.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// No mesh address yet.
    #[error("failed to attach: the agent is waiting for its mesh address")]
    NotReady,
    /// The explicit network id is not in the view.
    #[error("failed to resolve network {0:?}: unknown (or its status is not complete yet)")]
    UnknownNetwork(String),
    /// The pod namespace belongs to no project with a ready network.
    #[error(
        "failed to resolve a network: namespace {0:?} belongs to no project with a ready network"
    )]
    UnknownNamespace(String),
    /// Neither a network nor a pod namespace was given.
    #[error(
        "failed to resolve a network: none given (set \"network\" in the CNI config or pass K8S_POD_NAMESPACE)"
    )]
    NoNetwork,
    /// The pod named by the runtime could not be read.
    #[error("failed to read pod {pod}")]
    Pod {
        /// `namespace/name`.
        pod: String,
        /// Cause.
        #[source]
        source: SourceError,
    },
    /// The pod has no container number: privnet's webhook did not admit it.
    #[error(
        "failed to attach pod {0}: it has no container number (privnet's admission webhook did not admit it: is the webhook reachable and the namespace held by a project?)"
    )]
    NotAdmitted(String),
    /// The book refused the request (bad input, number clash, exhaustion).
    #[error("failed to allocate an attachment")]
    Book(#[source] BookError),
    /// Another node holds the address.
    #[error("failed to claim {0}: the address is held by another node")]
    Held(Ipv4Addr),
    /// The claim could not be made.
    #[error("failed to claim {ip}")]
    Claim {
        /// Address.
        ip: Ipv4Addr,
        /// Cause.
        #[source]
        source: SourceError,
    },
    /// The record could not be persisted.
    #[error("failed to persist the attachment")]
    Store(#[source] StoreError),
    /// The network could not be brought up on this node.
    #[error("failed to bring network {id} up on this node")]
    Network {
        /// Network id.
        id: String,
        /// Cause.
        #[source]
        source: LocalNetworkError,
    },
    /// The port's guard rules could not be installed (the port would drop
    /// the container's first packets).
    #[error("failed to install the guard of port {port} in network {id}")]
    Guard {
        /// Network id.
        id: String,
        /// The bridge-side port.
        port: String,
        /// Cause.
        #[source]
        source: DatapathError,
    },
}

impl AttachError {
    /// The RPC error kind (the plugin maps it to a CNI code).
    pub fn kind(&self) -> ErrorKind {
        match self {
            AttachError::NotReady => ErrorKind::NotReady,
            AttachError::UnknownNetwork(_)
            | AttachError::UnknownNamespace(_)
            | AttachError::NoNetwork => ErrorKind::UnknownNetwork,
            AttachError::Book(BookError::Ipam(privnet_core::ipam::IpamError::Exhausted {
                ..
            })) => ErrorKind::Exhausted,
            AttachError::Book(BookError::Ipam(_)) => ErrorKind::Internal,
            AttachError::NotAdmitted(_) => ErrorKind::NotAdmitted,
            AttachError::Book(_) => ErrorKind::Invalid,
            AttachError::Pod { .. } => ErrorKind::Internal,
            AttachError::Store(e) if e.is_no_space() => ErrorKind::NoSpace,
            AttachError::Held(_)
            | AttachError::Claim { .. }
            | AttachError::Store(_)
            | AttachError::Network { .. }
            | AttachError::Guard { .. } => ErrorKind::Internal,
        }
    }
}

/// Errors of one convergence pass.
#[derive(Debug, thiserror::Error)]
pub enum ConvergeError {
    /// The mesh address does not fit the mesh prefix.
    #[error("failed to form the mesh address")]
    MeshAddress(#[source] ipnet::PrefixLenError),
    /// WireGuard, the node guard or the peers could not be set.
    #[error("failed to converge the mesh")]
    Mesh(#[source] DatapathError),
    /// A key file of the rotation could not be written or read.
    #[error("failed to rotate the WireGuard key")]
    KeyRotation {
        /// Cause.
        #[source]
        source: crate::datapath::wireguard::WireguardError,
    },
    /// A network could not be brought up.
    #[error("failed to bring network {id} up")]
    NetworkUp {
        /// Network id.
        id: String,
        /// Cause.
        #[source]
        source: LocalNetworkError,
    },
    /// A network could not be removed.
    #[error("failed to remove network {id}")]
    NetworkDown {
        /// Network id.
        id: String,
        /// Cause.
        #[source]
        source: DatapathError,
    },
    /// The port guard of a network could not be applied.
    #[error("failed to apply the guard of {id}")]
    Guard {
        /// Network id.
        id: String,
        /// Cause.
        #[source]
        source: DatapathError,
    },
    /// The desired FDB of a network could not be computed.
    #[error("failed to plan the FDB of {id}")]
    FdbPlan {
        /// Network id.
        id: String,
        /// Cause.
        #[source]
        source: privnet_core::fdb::FdbError,
    },
    /// The FDB of a network could not be synced.
    #[error("failed to sync the FDB of {id}")]
    Fdb {
        /// Network id.
        id: String,
        /// Cause.
        #[source]
        source: DatapathError,
    },
}
