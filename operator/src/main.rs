//! The `privnet` binary: `crds`, `agent`, `sandbox`, `controller`.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod cli;
mod health;

/// privnet: per-project private networks for containers.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write (or check) the generated CRD YAML.
    Crds(cli::crds::CrdsArgs),
    /// Run the node agent.
    Agent(Box<cli::agent::AgentArgs>),
    /// The whole system on one machine (root).
    Sandbox(cli::sandbox::SandboxArgs),
    /// Run the cluster controller and admission webhook.
    Controller(Box<cli::controller::ControllerArgs>),
}

fn main() -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PRIVNET_LOG")
        .unwrap_or_else(|_| "info,hickory_server=warn".into());
    let json = std::env::var("PRIVNET_LOG_FORMAT").is_ok_and(|f| f == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    match Cli::parse().command {
        Command::Crds(args) => cli::crds::run(args),
        Command::Agent(args) => cli::agent::run(*args),
        Command::Sandbox(args) => cli::sandbox::run(args),
        Command::Controller(args) => cli::controller::run(*args),
    }
}
