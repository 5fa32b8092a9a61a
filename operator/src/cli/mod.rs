//! Subcommand front-ends (argument parsing and wiring only).

pub mod agent;
pub mod controller;
pub mod crds;
pub mod sandbox;
