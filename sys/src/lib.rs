//! privnet's shared system layer, used by the CNI plugin, the agent and the
//! sandbox: one copy of the namespace thread, the small rtnetlink helpers and
//! the atomic file write. Only std, nix and rtnetlink (no kube, hyper,
//! hickory), so the plugin stays small.
#![warn(missing_docs)]

pub mod file;
pub mod link;
pub mod netns;
