//! The node agent.

pub mod datapath;
