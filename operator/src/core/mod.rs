//! The pure control-plane core: no I/O, everything tested in memory.

pub mod naming;
pub mod numbering;
