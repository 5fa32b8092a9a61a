//! Subcommand front-ends (argument parsing and wiring only).

pub mod crds;
