//! `privnet doctor`: says in plain words what is wrong on a node.
//!
//! The agent says what the node should be (RPC `expected`, read-only:
//! [`crate::node::expected`]); the doctor reads the node itself (the kernel,
//! wireguard-go, nft, the DNS responders, the API server's clock) and the
//! pure verdicts ([`verdict`], [`guard`]) compare the two. It changes
//! nothing, and works from the agent's namespace or from outside it
//! (`node_netns`), so it runs on a node (`kubectl exec` into the agent) and
//! against the sandbox alike.
//!
//! - [`gather`], [`clock`]: the reads (I/O).
//! - [`readings`]: what was read, as plain data.
//! - [`verdict`], [`guard`]: one check each, pure.
//! - [`report`]: the checks, the exit code, text and JSON.

pub mod clock;
pub mod gather;
pub mod guard;
pub mod readings;
pub mod report;
#[cfg(test)]
mod tests;
pub mod verdict;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use readings::Readings;
use report::Report;

use crate::datapath::netns::{NetnsError, NetnsFd};

/// Errors that keep the doctor from running at all (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    /// The node's namespace could not be opened.
    #[error("failed to open the node's network namespace {name}")]
    NodeNamespace {
        /// `current` or the name given.
        name: String,
        /// Cause.
        #[source]
        source: NetnsError,
    },
}

/// What to examine.
#[derive(Clone, Debug)]
pub struct Options {
    /// The agent's RPC socket.
    pub socket: PathBuf,
    /// The agent's health address (`/readyz`), in the node's namespace.
    pub health: SocketAddr,
    /// The node's namespace by name (`None`: the doctor's own).
    pub node_netns: Option<String>,
    /// The API server, for the clock.
    pub api: clock::Api,
    /// Thresholds.
    pub limits: verdict::Limits,
}

/// Reads everything and judges it.
pub async fn run(opts: &Options) -> Result<Report, DoctorError> {
    let started = Instant::now();
    let ns_err = |source| DoctorError::NodeNamespace {
        name: opts.node_netns.clone().unwrap_or_else(|| "current".into()),
        source,
    };
    let node_ns = match &opts.node_netns {
        Some(name) => NetnsFd::named(name).map_err(ns_err)?,
        None => NetnsFd::current().map_err(ns_err)?,
    };
    let (agent, expected) = gather::agent(&opts.socket, &node_ns, opts.health).await;
    let mut readings = Readings {
        agent,
        clock: clock::read(&opts.api).await,
        ..Default::default()
    };
    if let Some(exp) = &expected {
        if let Some(m) = &exp.mesh {
            readings.mesh = Some(gather::mesh(&node_ns, m).await);
        }
        for net in &exp.networks {
            readings
                .networks
                .push(gather::network(net, &exp.domain).await);
        }
    }
    readings.expected = expected;
    let checks = verdict::all(&readings, opts.limits);
    let node = readings
        .expected
        .as_ref()
        .map(|e| e.node.clone())
        .unwrap_or_default();
    let elapsed = started.elapsed().as_millis() as u64;
    Ok(Report::new(node, checks, elapsed))
}
