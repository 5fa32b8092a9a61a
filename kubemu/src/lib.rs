//! kubemu: an emulation of the Kubernetes API server, for privnet's sandbox
//! and tests (no kube-apiserver can be installed where they run).
//!
//! One in-memory store with a global resourceVersion and an event log serves
//! discovery, get/list/watch, create/update/patch (merge, JSON, strategic as
//! merge, server-side apply), status subresources, owner-reference cascade,
//! CRDs (structural schema + CEL) and mutating admission webhooks, over HTTPS
//! (hyper + rustls) or in-process ([`Emulator::handle`]). The real `kubectl`
//! and kube-rs are its conformance checks. Never a dependency of the agent or
//! the controller (`operator/tests/layering.rs`).

pub mod admission;
pub mod api_error;
pub mod discovery;
pub mod emulator;
pub mod handler;
pub mod http;
pub mod meta;
pub mod patch;
pub mod resources;
pub mod schema;
pub mod select;
pub mod store;
pub mod tls;
pub mod watch;

pub use api_error::ApiError;
pub use emulator::{Config, Emulator};
pub use handler::{Reply, Request};
pub use http::serve;
