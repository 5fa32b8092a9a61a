//! `privnet sandbox`: the whole system on one machine. Nodes are network
//! namespaces on an underlay bridge, each with a real agent; the sandbox
//! plays the controller's role from local manifests and starts containers
//! by invoking the CNI plugin as a runtime does.
#![warn(missing_docs)]

pub mod containers;
pub mod controller;
pub mod dns_probe;
pub mod kube;
pub mod ops;
pub mod readiness;
pub mod scenario;
pub mod state;
pub mod sys;
pub mod teardown;
pub mod topology;
