//! The operator crate's integration tests, one binary: each file below was its own
//! test binary, and every one linked and monomorphised the whole stack again.

mod chart_check_config;
mod layering;
