//! The soak (`privnet_e2e::bench::soak`): ADD/DEL cycles against the real
//! agent of a sandbox node, mixed networks, sequential and parallel
//! blocks; prints the agent's RSS, fds, threads, child processes, nft map
//! elements and chains, ports, claims, records, endpoints and zone entries
//! at idle, start, middle and end, and exits non-zero when a limit broke
//! (growth over `--limit-percent` from the start, or anything per container
//! not back to idle).
//!
//! ```text
//! bench-soak [--cycles 10000] [--parallel 4] [--limit-percent 5] [--projects soak-a,soak-b,soak-c]
//! ```

use anyhow::{Context, Result, bail};
use privnet_e2e::bench::sandbox::privnet_binary;
use privnet_e2e::bench::soak::{self, SoakConfig};

/// ADD/DEL cycles against one agent; exits non-zero when a limit broke.
#[derive(clap::Parser)]
struct Args {
    /// ADD/DEL cycles.
    #[arg(long, default_value_t = 10_000)]
    cycles: usize,
    /// Callers of the parallel blocks.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Growth allowed from the start, in percent.
    #[arg(long, default_value_t = 5.0)]
    limit_percent: f64,
    /// The projects whose networks the cycles use (comma-separated).
    #[arg(long, value_delimiter = ',')]
    projects: Option<Vec<String>>,
}

fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    let cfg = SoakConfig {
        privnet: privnet_binary()?,
        cycles: args.cycles,
        parallel: args.parallel,
        limit: args.limit_percent / 100.0,
        projects: args.projects.unwrap_or_else(SoakConfig::all_projects),
    };
    println!(
        "bench-soak: {} ADD/DEL cycles on n1, networks of {}, blocks of 50 alternating 1 and {} callers",
        cfg.cycles,
        cfg.projects.join(", "),
        cfg.parallel
    );
    let report = soak::run(&cfg).context("failed to run the soak")?;
    println!("\n{}", report.render());
    if !report.broken.is_empty() {
        bail!("{} limit(s) broken", report.broken.len());
    }
    Ok(())
}
