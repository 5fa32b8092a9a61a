//! Subcommand front-ends (argument parsing and wiring only).

pub mod agent;
pub mod check;
pub mod cni_install;
pub mod controller;
pub mod crds;
pub mod doctor;
pub mod sandbox;

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("signal handlers can be installed");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
