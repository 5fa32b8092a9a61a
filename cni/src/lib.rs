//! privnet-cni: CNI types, the agent RPC protocol and the plugin logic.
//! Deliberately free of any Kubernetes dependency.
#![warn(missing_docs)]

pub mod rpc;
