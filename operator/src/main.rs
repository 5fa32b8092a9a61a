//! The `privnet` binary: `crds`, `agent`, `sandbox`, `controller`, `cni-install`, `doctor`.

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
    /// Install the CNI plugin on the node (Multus conflist or chained).
    CniInstall(cli::cni_install::CniInstallArgs),
    /// Say what is wrong on this node (exit 0 ok, 1 something wrong, 2 could not run).
    Doctor(cli::doctor::DoctorArgs),
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
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        // `--check-config` answers 0 or 1, a usage error included.
        if e.use_stderr() && std::env::args().any(|a| a == "--check-config") {
            let _ = e.print();
            std::process::exit(1);
        }
        e.exit()
    });
    match cli.command {
        Command::Crds(args) => cli::crds::run(args),
        Command::Agent(args) => cli::agent::run(*args),
        Command::Sandbox(args) => cli::sandbox::run(args),
        Command::Controller(args) => cli::controller::run(*args),
        Command::CniInstall(args) => cli::cni_install::run(args),
        Command::Doctor(args) => cli::doctor::run(args),
    }
}
