//! The kubemu crate's integration tests, one binary: each file below was its own
//! test binary, and every one linked and monomorphised the whole stack again.

mod admission;
mod common;
mod kube_client;
mod kubectl;
