//! The WireGuard full mesh between nodes.
//!
//! Each node has a VTEP address in the mesh CIDR (the underlay of VXLAN);
//! every other node is a WireGuard peer whose allowed-ips is only its VTEP
//! /32, so nothing but mesh traffic is accepted from it.
//!
//! Default mesh CIDR: [`crate::defaults::MESH_CIDR`] (why: see there).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};

use base64::Engine as _;
use ipnet::Ipv4Net;
use thiserror::Error;

use crate::view::NodeInfo;

/// Default mesh (VTEP) CIDR.
pub const DEFAULT_MESH_CIDR: Ipv4Net = crate::defaults::MESH_CIDR;

/// Errors of mesh computation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MeshError {
    /// Two nodes share a name.
    #[error("failed to build mesh: node name {0} appears twice")]
    DuplicateName(String),
    /// Two nodes share a public key.
    #[error("failed to add node {node} to the mesh: public key {key} is already used by {other}")]
    DuplicateKey {
        /// The node being added.
        node: String,
        /// The key.
        key: String,
        /// The node already holding it.
        other: String,
    },
    /// Two nodes share a VTEP address.
    #[error("failed to add node {node} to the mesh: VTEP {vtep} is already used by {other}")]
    DuplicateVtep {
        /// The node being added.
        node: String,
        /// The address.
        vtep: Ipv4Addr,
        /// The node already holding it.
        other: String,
    },
    /// A public key is not base64 of 32 bytes.
    #[error("failed to add node {node} to the mesh: public key {key:?} is not base64 of 32 bytes")]
    InvalidKey {
        /// The node.
        node: String,
        /// The rejected key.
        key: String,
    },
    /// A VTEP is outside the mesh CIDR or is its network/broadcast address.
    #[error("failed to add node {node} to the mesh: VTEP {vtep} is not a host address of {cidr}")]
    VtepOutOfRange {
        /// The node.
        node: String,
        /// The rejected address.
        vtep: Ipv4Addr,
        /// The mesh CIDR.
        cidr: Ipv4Net,
    },
    /// The node asking for its config is not in the mesh.
    #[error("failed to compute mesh config of {0}: node is not in the mesh")]
    SelfMissing(String),
    /// Every VTEP address is taken.
    #[error("failed to allocate a VTEP for {node}: all {capacity} addresses of {cidr} are in use")]
    Exhausted {
        /// The node asking.
        node: String,
        /// The mesh CIDR.
        cidr: Ipv4Net,
        /// Number of host addresses.
        capacity: u32,
    },
    /// The mesh CIDR is too small to hold two nodes.
    #[error("failed to use mesh CIDR {0}: the prefix must be /30 or shorter")]
    InvalidCidr(Ipv4Net),
}

/// A node as published by its agent, with its allocated VTEP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshNode {
    /// Kubernetes node name.
    pub name: String,
    /// WireGuard public key, base64.
    pub public_key: String,
    /// WireGuard endpoint (underlay address and port).
    pub endpoint: SocketAddr,
    /// The node's address inside the mesh.
    pub vtep: Ipv4Addr,
}

/// One WireGuard peer, as `wg set … peer` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgPeer {
    /// Public key, base64.
    pub public_key: String,
    /// Underlay endpoint.
    pub endpoint: SocketAddr,
    /// Always exactly the peer's VTEP /32.
    pub allowed_ips: Vec<Ipv4Net>,
    /// Keepalive interval in seconds, if any.
    pub persistent_keepalive: Option<u16>,
}

/// One node's WireGuard configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeMesh {
    /// Address of the WireGuard interface: VTEP with the mesh prefix.
    pub address: Ipv4Net,
    /// Every other node, sorted by node name.
    pub peers: Vec<WgPeer>,
}

/// What to change on an interface to go from current to desired peers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerDiff {
    /// Peers not configured yet.
    pub add: Vec<WgPeer>,
    /// Peers whose endpoint, allowed-ips or keepalive changed.
    pub update: Vec<WgPeer>,
    /// Public keys of peers to remove.
    pub remove: Vec<String>,
}

impl PeerDiff {
    /// Whether nothing needs to change.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.update.is_empty() && self.remove.is_empty()
    }
}

/// Peer changes, keyed by public key; allowed-ips compared as sets, a
/// keepalive of 0 is no keepalive (as WireGuard reads it).
pub fn diff_peers(current: &[WgPeer], desired: &[WgPeer]) -> PeerDiff {
    let normalized = |p: &WgPeer| {
        let mut p = p.clone();
        p.allowed_ips.sort();
        p.allowed_ips.dedup();
        p.persistent_keepalive = p.persistent_keepalive.filter(|k| *k != 0);
        p
    };
    let current: HashMap<&str, WgPeer> = current
        .iter()
        .map(|p| (p.public_key.as_str(), normalized(p)))
        .collect();
    let mut diff = PeerDiff::default();
    let mut wanted = std::collections::HashSet::new();
    for peer in desired {
        wanted.insert(peer.public_key.as_str());
        match current.get(peer.public_key.as_str()) {
            None => diff.add.push(peer.clone()),
            Some(have) if *have != normalized(peer) => diff.update.push(peer.clone()),
            Some(_) => {}
        }
    }
    diff.remove = current
        .keys()
        .filter(|k| !wanted.contains(*k))
        .map(|k| k.to_string())
        .collect();
    diff.remove.sort();
    diff
}

/// The whole mesh, updated incrementally: `upsert`/`remove` are O(log n),
/// a node's config is O(n).
#[derive(Debug, Clone)]
pub struct Mesh {
    cidr: Ipv4Net,
    nodes: BTreeMap<String, MeshNode>,
    by_key: HashMap<String, String>,
    by_vtep: HashMap<Ipv4Addr, String>,
}

impl Mesh {
    /// An empty mesh over `cidr`.
    pub fn new(cidr: Ipv4Net) -> Result<Self, MeshError> {
        let cidr = cidr.trunc();
        if cidr.prefix_len() > 30 {
            return Err(MeshError::InvalidCidr(cidr));
        }
        Ok(Mesh {
            cidr,
            nodes: BTreeMap::new(),
            by_key: HashMap::new(),
            by_vtep: HashMap::new(),
        })
    }

    /// A mesh of `nodes`; duplicate names are an error.
    pub fn from_nodes(cidr: Ipv4Net, nodes: &[MeshNode]) -> Result<Self, MeshError> {
        let mut mesh = Mesh::new(cidr)?;
        for node in nodes {
            if mesh.nodes.contains_key(&node.name) {
                return Err(MeshError::DuplicateName(node.name.clone()));
            }
            mesh.upsert(node.clone())?;
        }
        Ok(mesh)
    }

    /// The mesh CIDR.
    pub fn cidr(&self) -> Ipv4Net {
        self.cidr
    }

    /// Adds or replaces a node (by name). Rejects keys/VTEPs held by another node.
    pub fn upsert(&mut self, node: MeshNode) -> Result<(), MeshError> {
        let key_ok = base64::engine::general_purpose::STANDARD
            .decode(&node.public_key)
            .is_ok_and(|k| k.len() == 32);
        if !key_ok {
            return Err(MeshError::InvalidKey {
                node: node.name,
                key: node.public_key,
            });
        }
        if !self.is_host(node.vtep) {
            return Err(MeshError::VtepOutOfRange {
                node: node.name,
                vtep: node.vtep,
                cidr: self.cidr,
            });
        }
        if let Some(other) = self
            .by_key
            .get(&node.public_key)
            .filter(|o| **o != node.name)
        {
            return Err(MeshError::DuplicateKey {
                node: node.name.clone(),
                key: node.public_key.clone(),
                other: other.clone(),
            });
        }
        if let Some(other) = self.by_vtep.get(&node.vtep).filter(|o| **o != node.name) {
            return Err(MeshError::DuplicateVtep {
                node: node.name.clone(),
                vtep: node.vtep,
                other: other.clone(),
            });
        }
        self.remove(&node.name);
        self.by_key
            .insert(node.public_key.clone(), node.name.clone());
        self.by_vtep.insert(node.vtep, node.name.clone());
        self.nodes.insert(node.name.clone(), node);
        Ok(())
    }

    /// Removes a node; returns it if present.
    pub fn remove(&mut self, name: &str) -> Option<MeshNode> {
        let old = self.nodes.remove(name)?;
        self.by_key.remove(&old.public_key);
        self.by_vtep.remove(&old.vtep);
        Some(old)
    }

    /// A node by name.
    pub fn get(&self, name: &str) -> Option<&MeshNode> {
        self.nodes.get(name)
    }

    /// Nodes sorted by name.
    pub fn nodes(&self) -> impl Iterator<Item = &MeshNode> {
        self.nodes.values()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the mesh has no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The peer entry other nodes configure for `name`.
    pub fn peer(&self, name: &str, keepalive: Option<u16>) -> Option<WgPeer> {
        self.nodes.get(name).map(|n| to_peer(n, keepalive))
    }

    /// The WireGuard config of node `self_name`: its address and all other nodes as peers.
    pub fn node_config(
        &self,
        self_name: &str,
        keepalive: Option<u16>,
    ) -> Result<NodeMesh, MeshError> {
        let me = self
            .nodes
            .get(self_name)
            .ok_or_else(|| MeshError::SelfMissing(self_name.to_owned()))?;
        let address = Ipv4Net::new(me.vtep, self.cidr.prefix_len()).expect("prefix checked");
        let peers = self
            .nodes
            .values()
            .filter(|n| n.name != self_name)
            .map(|n| to_peer(n, keepalive))
            .collect();
        Ok(NodeMesh { address, peers })
    }

    /// Lowest free VTEP for a new node; a node already present keeps its own.
    pub fn allocate_vtep(&self, name: &str) -> Result<Ipv4Addr, MeshError> {
        if let Some(node) = self.nodes.get(name) {
            return Ok(node.vtep);
        }
        let first = u32::from(self.cidr.network()) + 1;
        let last = u32::from(self.cidr.broadcast()) - 1;
        (first..=last)
            .map(Ipv4Addr::from)
            .find(|a| !self.by_vtep.contains_key(a))
            .ok_or_else(|| MeshError::Exhausted {
                node: name.to_owned(),
                cidr: self.cidr,
                capacity: last - first + 1,
            })
    }

    fn is_host(&self, addr: Ipv4Addr) -> bool {
        self.cidr.contains(&addr) && addr != self.cidr.network() && addr != self.cidr.broadcast()
    }
}

fn to_peer(node: &MeshNode, keepalive: Option<u16>) -> WgPeer {
    WgPeer {
        public_key: node.public_key.clone(),
        endpoint: node.endpoint,
        allowed_ips: vec![Ipv4Net::from(node.vtep)],
        persistent_keepalive: keepalive,
    }
}

/// One-shot form of [`Mesh::node_config`] over a node list.
pub fn node_config(
    nodes: &[MeshNode],
    self_name: &str,
    mesh_cidr: Ipv4Net,
    keepalive: Option<u16>,
) -> Result<NodeMesh, MeshError> {
    Mesh::from_nodes(mesh_cidr, nodes)?.node_config(self_name, keepalive)
}

/// The mesh of the published nodes: each keeps its VTEP from `previous`,
/// new ones get the lowest free address of `cidr`.
pub fn plan_mesh(
    cidr: ipnet::Ipv4Net,
    published: &[NodeInfo],
    previous: &[NodeInfo],
) -> Result<Vec<NodeInfo>, MeshError> {
    let mut mesh = Mesh::new(cidr)?;
    let names: BTreeSet<&str> = published.iter().map(|n| n.name.as_str()).collect();
    for p in previous.iter().filter(|p| names.contains(p.name.as_str())) {
        let Some(vtep) = p.vtep else { continue };
        let now = published
            .iter()
            .find(|n| n.name == p.name)
            .expect("filtered on names");
        mesh.upsert(MeshNode {
            name: p.name.clone(),
            public_key: now.public_key.clone(),
            endpoint: now.endpoint,
            vtep,
        })?;
    }
    for n in published {
        let vtep = mesh.allocate_vtep(&n.name)?;
        mesh.upsert(MeshNode {
            name: n.name.clone(),
            public_key: n.public_key.clone(),
            endpoint: n.endpoint,
            vtep,
        })?;
    }
    Ok(mesh
        .nodes()
        .map(|n| {
            // What the agent announces about a rotation rides along.
            let published = published.iter().find(|p| p.name == n.name);
            NodeInfo {
                name: n.name.clone(),
                public_key: n.public_key.clone(),
                endpoint: n.endpoint,
                vtep: Some(n.vtep),
                next_public_key: published.and_then(|p| p.next_public_key.clone()),
                accepted_keys: published
                    .map(|p| p.accepted_keys.clone())
                    .unwrap_or_default(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests;
