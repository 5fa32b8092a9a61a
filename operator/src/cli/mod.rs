//! Subcommand front-ends (argument parsing and wiring only).

pub mod agent;
pub mod crds;
pub mod sandbox;
