//! The node agent: WireGuard mesh, per-network namespaces with bridge and
//! VXLAN, IPAM for the CNI plugin, private DNS and guard rules.

pub mod book;
pub mod config;
mod converge;
pub mod datapath;
pub mod dns;
pub mod http;
pub mod local_network;
pub mod metrics;
pub mod node;
pub mod rpc_server;
pub mod source;
pub mod store;
pub mod view;
