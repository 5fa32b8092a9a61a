//! The `privnet` binary: `crds`, `agent`, `sandbox`, `controller`.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod cli;

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
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Crds(args) => cli::crds::run(args),
    }
}
