//! The pure control-plane core: no I/O, everything tested in memory.

pub mod fdb;
pub mod ipam;
pub mod mac;
pub mod mesh;
pub mod mtu;
pub mod naming;
pub mod numbering;
pub mod vni;
pub mod zone;
