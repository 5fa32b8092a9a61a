//! `privnet controller`: the cluster operator.
//!
//! Every reconciler is `reconcile(obj, ctx) -> Result<Action>` + `error_policy`,
//! with the decisions in pure functions next to it and the API writes done
//! by server-side apply under the field manager `privnet-controller`. No
//! cluster state is kept in memory: each pass lists what it needs (so a
//! restart, or the other replica taking over, decides the same).
//!
//! - [`project`]: Project → owned PrivateNetwork, namespace conflicts, labels.
//! - [`policy`]: NetworkPolicies of private process types.
//! - [`network`]: PrivateNetwork status (id, VNI, gateway, zone, counts).
//! - [`zone`]: PrivateEndpoints → zone ConfigMap per network.
//! - [`nodes`]: Nodes → mesh VTEPs.
//! - [`webhook`]: mutating admission (container numbers, env vars).
//! - [`leader`]: Lease-based leader election.
//! - [`claims`]: collection of number/address claims whose holder is gone.
#![warn(missing_docs)]

pub mod attachment;
pub mod claims;
pub mod context;
pub mod leader;
pub mod metrics;
pub mod network;
pub mod nodes;
pub mod orphan;
pub mod policy;
pub mod project;
pub mod run;
pub mod webhook;
pub mod zone;

pub use context::{Context, ControllerConfig, Error};
pub use metrics::Metrics;
