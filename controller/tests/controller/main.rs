//! The controller crate's integration tests, one binary: each file below was its own
//! test binary, and every one linked and monomorphised the whole stack again.

mod controller_attachment;
mod controller_reconcile;
mod controller_webhook;
