//! Agent settings (filled from the command line by `privnet agent`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;
use privnet_core::vni::VniRange;

use super::datapath::guard::NodeGuard;
use super::datapath::wireguard::BackendChoice;

/// Everything the agent needs to know about its node.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Node name (unique in the cluster).
    pub node: String,
    /// State directory (WireGuard key, attachments), e.g. `/var/lib/privnet`.
    pub state_dir: PathBuf,
    /// CNI socket, e.g. `/run/privnet/agent.sock`.
    pub socket: PathBuf,
    /// Prefix of the per-network namespace names (`<prefix><vni>`); distinct
    /// per simulated node since namespace names are global.
    pub netns_prefix: String,
    /// WireGuard interface name (distinct per simulated node: wireguard-go's
    /// UAPI sockets are global).
    pub wg_ifname: String,
    /// WireGuard listen port.
    pub wg_port: u16,
    /// WireGuard backend choice.
    pub wg_backend: BackendChoice,
    /// Persistent keepalive towards peers, seconds.
    pub keepalive: Option<u16>,
    /// Underlay endpoint advertised to the other nodes.
    pub endpoint: SocketAddr,
    /// MTU of the underlay.
    pub underlay_mtu: u32,
    /// Mesh CIDR (prefix of the WireGuard address).
    pub mesh_cidr: Ipv4Net,
    /// UDP port of the networks' VXLAN devices.
    pub vxlan_port: u16,
    /// VNIs the controller assigns (the node guard matches exactly these).
    pub vni_range: VniRange,
    /// Upstream resolver for non-private names.
    pub dns_upstream: Option<SocketAddr>,
    /// DNS domain of the private zones.
    pub domain: String,
    /// GRO flush timeout of each network's VXLAN device, ns (see
    /// [`crate::datapath::network::tune_receive`]).
    pub gro_flush_timeout_ns: u32,
    /// Disable the node guard (negative-control tests only).
    pub guard_disabled: bool,
    /// When a view that takes most of this node away is held (see
    /// [`crate::node::hold`]).
    pub removal_hold: crate::node::hold::HoldPolicy,
    /// How often the datapath is read back and repaired (and the longest
    /// wait between convergence passes).
    pub resync: Duration,
    /// Rotate the WireGuard key when it is this old (`None`: only on request,
    /// `touch <state-dir>/rotate-key`).
    pub rotate_key_every: Option<Duration>,
    /// How long a rotation waits for every peer to accept the next key
    /// before it is aborted (nothing changed).
    pub rotate_key_timeout: Duration,
}

impl AgentConfig {
    /// The file an operator creates to apply a held removal at once
    /// (`privnet agent confirm-removals`); the agent deletes it when it does.
    pub fn confirm_removals_file(&self) -> PathBuf {
        self.state_dir.join("confirm-removals")
    }

    /// Namespace name of the network with this VNI on this node.
    pub fn netns_name(&self, vni: u32) -> String {
        format!("{}{vni}", self.netns_prefix)
    }

    /// What the node guard matches: privnet's VXLAN port, VNIs and VTEPs.
    pub fn node_guard(&self) -> NodeGuard {
        NodeGuard {
            wg_ifname: self.wg_ifname.clone(),
            vxlan_port: self.vxlan_port,
            vnis: self.vni_range.0.clone(),
            mesh: self.mesh_cidr,
        }
    }
}
