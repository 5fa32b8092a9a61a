//! Benchmark toolkit: drive a sandbox through the `privnet` binary, run
//! helper processes inside namespaces, and turn tool output into figures.
//!
//! Pure parsers and statistics (`stats`, `iperf`, `dnsperf`, `zonefile`,
//! `dnswire`) are separate from the process-driving parts (`process`,
//! `sandbox`) so they are unit tested without root.

pub mod dnsperf;
pub mod dnswire;
pub mod iperf;
pub mod plugin;
pub mod process;
pub mod sandbox;
pub mod snmp;
pub mod soak;
pub mod stats;
pub mod zonefile;
