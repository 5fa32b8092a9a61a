//! End-to-end helpers (sandbox driver) and the benchmark toolkit used by the
//! `bench-*` binaries.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod bench;
