//! privnet's pure core: every rule that needs no I/O, tested in memory.
//!
//! This crate must never depend on tokio, kube, hyper, hickory or netlink
//! (`docs/ARCHITECTURE.md`, "Dependency rule"; checked by
//! `operator/tests/layering.rs`). The plugin, the agent, the controller and
//! the sandbox all build on it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod defaults;
pub mod expected;
pub mod fdb;
pub mod ipam;
pub mod mac;
pub mod mesh;
pub mod mtu;
pub mod naming;
pub mod numbering;
pub mod rotation;
pub mod rpc;
pub mod view;
pub mod vni;
pub mod zone;
