//! The cni crate's integration tests, one binary: each file below was its own
//! test binary, and every one linked and monomorphised the whole stack again.

mod chained;
mod common;
mod install_chained;
mod plugin_kernel;
mod port_wait;
mod stress;
