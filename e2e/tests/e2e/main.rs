//! The e2e crate's integration tests, one binary: each file below was its own
//! test binary, and every one linked and monomorphised the whole stack again.

mod blast_radius;
mod bulk_receive;
mod common;
mod connectivity;
mod dns_spread;
mod doctor;
mod faults;
mod first_packet;
mod isolation;
mod key_rotation;
mod kube_path;
mod neighbour;
mod node_loss;
mod patterns;
mod podman;
mod restart;
mod scale;
mod security;
mod soak;
mod static_plugin;
mod teardown_check;
