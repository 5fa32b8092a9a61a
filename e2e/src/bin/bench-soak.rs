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

fn main() -> Result<()> {
    let mut cfg = SoakConfig {
        privnet: privnet_binary()?,
        cycles: 10_000,
        parallel: 4,
        limit: 0.05,
        projects: SoakConfig::all_projects(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--cycles" => cfg.cycles = value.parse()?,
            "--parallel" => cfg.parallel = value.parse()?,
            "--limit-percent" => cfg.limit = value.parse::<f64>()? / 100.0,
            "--projects" => cfg.projects = value.split(',').map(String::from).collect(),
            other => bail!("unknown flag {other}"),
        }
    }
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
