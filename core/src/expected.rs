//! What the agent says the node's datapath should be, for `privnet doctor`
//! (RPC `expected`, read-only): the mesh, each local network's devices,
//! guard inputs, FDB and names, all derived from the agent's cluster view and
//! its book. Plain data; the doctor compares it with what it reads itself.

use std::net::{Ipv4Addr, SocketAddr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// The node as the agent wants it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpectedState {
    /// Node name.
    pub node: String,
    /// The private DNS domain.
    pub domain: String,
    /// `None` when ready, else why not (what `/readyz` says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unready: Option<String>,
    /// The mesh (`None` while the node waits for its mesh address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<ExpectedMesh>,
    /// The networks present on the node.
    pub networks: Vec<ExpectedNetwork>,
}

/// The WireGuard interface, its peers and the node guard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpectedMesh {
    /// Interface name.
    pub ifname: String,
    /// Its address (the node's VTEP with the mesh prefix).
    pub address: Ipv4Net,
    /// Its MTU.
    pub mtu: u32,
    /// One per other node with a VTEP.
    pub peers: Vec<ExpectedPeer>,
    /// Persistent keepalive (seconds): with it, every live session is
    /// renewed every 2 minutes; without, an idle peer's handshake ages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<u16>,
    /// What the node guard confines to the tunnel (`None`: guard disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<ExpectedNodeGuard>,
}

/// A peer of the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpectedPeer {
    /// The other node.
    pub node: String,
    /// Its public key (base64).
    pub public_key: String,
    /// Its VTEP (the only allowed IP, `/32`).
    pub vtep: Ipv4Addr,
    /// Its underlay endpoint.
    pub endpoint: SocketAddr,
}

/// Inputs of the node guard (`inet privnet-guard`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpectedNodeGuard {
    /// privnet's VXLAN port.
    pub vxlan_port: u16,
    /// First VNI of privnet's range.
    pub vni_first: u32,
    /// Last VNI of privnet's range.
    pub vni_last: u32,
    /// The mesh CIDR.
    pub mesh: Ipv4Net,
}

/// One private network on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpectedNetwork {
    /// Network id (`pn-<uuid>`).
    pub id: String,
    /// Its namespace on this node.
    pub netns: String,
    /// VNI.
    pub vni: u32,
    /// Bridge (carries the gateway).
    pub bridge: String,
    /// VXLAN device.
    pub vxlan: String,
    /// Gateway address with the subnet prefix.
    pub gateway: Ipv4Net,
    /// Gateway MAC (`aa:bb:…`).
    pub gateway_mac: String,
    /// MTU of every device of the network.
    pub mtu: u32,
    /// Container ports guarded now.
    pub ports: Vec<ExpectedPort>,
    /// The VXLAN device's FDB.
    pub fdb: Vec<ExpectedFdb>,
    /// Every container name of the network and its address (the zone).
    pub names: Vec<ExpectedName>,
}

/// A container port on the bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpectedPort {
    /// Host-side veth name.
    pub host_ifname: String,
    /// The container's MAC.
    pub mac: String,
    /// The container's address.
    pub ip: Ipv4Addr,
    /// The container's namespace (`CNI_NETNS`).
    pub container_netns: String,
    /// The container's interface (`CNI_IFNAME`).
    pub container_ifname: String,
}

/// One FDB entry on the VXLAN device.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpectedFdb {
    /// MAC (`00:00:00:00:00:00` floods).
    pub mac: String,
    /// VTEP.
    pub dst: Ipv4Addr,
}

/// A name of the zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpectedName {
    /// Fully qualified container name.
    pub name: String,
    /// Its address.
    pub address: Ipv4Addr,
}
