//! The node agent: WireGuard mesh, per-network namespaces with bridge and
//! VXLAN, IPAM for the CNI plugin, private DNS and guard rules.

pub mod datapath;
pub mod book;
pub mod dns;
pub mod http;
pub mod rpc_server;
pub mod source;
pub mod store;
pub mod view;
