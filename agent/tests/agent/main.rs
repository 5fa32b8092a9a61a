//! The agent crate's integration tests, one binary: each file below was its own
//! test binary, and every one linked and monomorphised the whole stack again.

mod datapath_arp_answers;
mod datapath_guard;
mod datapath_guard_rules;
mod datapath_mesh;
mod datapath_nft_elements;
mod datapath_nft_events;
mod datapath_support;
mod kube_source;
