//! The node agent: WireGuard mesh, per-network namespaces with bridge and
//! VXLAN, IPAM for the CNI plugin, private DNS and guard rules.

pub mod datapath;
pub mod dns;
pub mod rpc_server;
pub mod source;
pub mod view;
