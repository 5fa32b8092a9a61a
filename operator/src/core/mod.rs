//! The pure control-plane core: no I/O, everything tested in memory.

pub mod mac;
pub mod mtu;
pub mod naming;
pub mod numbering;
pub mod vni;
