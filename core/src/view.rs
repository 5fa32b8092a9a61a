//! What the agent knows of the cluster: plain data, produced by a
//! source (the agent's `Source`) and consumed by the pure planner.

use std::net::{Ipv4Addr, SocketAddr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// One node of the WireGuard mesh, as published by its agent and completed
/// by the controller (VTEP address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// WireGuard public key (base64).
    pub public_key: String,
    /// Underlay endpoint of its WireGuard interface.
    pub endpoint: SocketAddr,
    /// Mesh (VTEP) address, allocated by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep: Option<Ipv4Addr>,
    /// The key it is rotating to, announced before it is used
    /// (see [`crate::rotation`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_public_key: Option<String>,
    /// Other nodes' announced next keys it has configured (its acknowledgement).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted_keys: Vec<String>,
}

/// A private network ready to be used (its status is complete).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInfo {
    /// Network id `pn-<uuid>`.
    pub id: String,
    /// Owning project name.
    pub project: String,
    /// VXLAN network identifier.
    pub vni: u32,
    /// Subnet.
    pub subnet: Ipv4Net,
    /// MTU override, if any.
    pub mtu: Option<u32>,
}

/// An attached container anywhere in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointInfo {
    /// Network id.
    pub network_id: String,
    /// Application id.
    pub application_id: String,
    /// Process type.
    pub process_type: String,
    /// Container number.
    pub container_number: u32,
    /// Private address.
    pub ip: Ipv4Addr,
    /// MAC of the private interface.
    pub mac: String,
    /// Node hosting it.
    pub node: String,
    /// Runtime container id.
    pub container_id: String,
    /// Interface name in the container.
    pub interface: String,
}

/// Everything the agent consumes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// Mesh members.
    pub nodes: Vec<NodeInfo>,
    /// Networks with a complete status.
    pub networks: Vec<NetworkInfo>,
    /// Project namespaces → network id (pod-namespace resolution).
    pub namespace_networks: Vec<(String, String)>,
    /// All endpoints of all nodes.
    pub endpoints: Vec<EndpointInfo>,
}

impl ClusterView {
    /// The network with this id.
    pub fn network(&self, id: &str) -> Option<&NetworkInfo> {
        self.networks.iter().find(|n| n.id == id)
    }

    /// The network of the project owning `namespace`.
    pub fn network_of_namespace(&self, namespace: &str) -> Option<&NetworkInfo> {
        let (_, id) = self
            .namespace_networks
            .iter()
            .find(|(ns, _)| ns == namespace)?;
        self.network(id)
    }

    /// This node's mesh entry.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.name == name)
    }
}
