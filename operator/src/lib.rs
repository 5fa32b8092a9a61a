//! privnet: per-project private networks for containers.
//!
//! - [`api`]: the CRD types (`Project`, `PrivateNetwork`, `PrivateEndpoint`).
//! - [`core`]: pure, I/O-free logic (naming, allocators, mesh, FDB, zones).
//! - [`agent`]: the node agent (datapath, IPAM server, private DNS).
#![warn(missing_docs)]

pub mod agent;
pub mod api;
pub mod controller;
pub mod core;
pub mod sandbox;
