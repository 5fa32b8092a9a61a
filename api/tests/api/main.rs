//! The api crate's integration tests, one binary: each file below was its own
//! test binary, and every one linked and monomorphised the whole stack again.

mod cel_cost;
mod chart_defaults;
mod chart_render;
mod crd_cost;
mod crd_drift;
mod crd_validation;
mod schema_bounds;
