//! privnet-cni: CNI types, the agent RPC protocol and the plugin logic.
//! Deliberately free of any Kubernetes dependency.
#![warn(missing_docs)]

pub mod agent_client;
pub mod env;
pub mod error;
pub mod install;
pub mod link;
pub mod log;
pub mod netns;
pub mod plugin;
pub mod port;
pub mod spec;
pub mod verbs;
