//! Test infrastructure shared by the agent's and the controller's tests.
//! Never a dependency of production code (checked by `operator/tests/layering.rs`).
#![warn(missing_docs)]

pub mod fake_api;
pub mod root;

pub use fake_api::FakeApi;
