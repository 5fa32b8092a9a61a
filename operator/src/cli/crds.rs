//! `privnet crds`: generate the CRD YAML from the API types.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

/// Arguments of `privnet crds`.
#[derive(Args)]
pub struct CrdsArgs {
    /// Directory to write the YAML files to (stdout when absent).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only check that the files in `--out` are up to date.
    #[arg(long, requires = "out")]
    check: bool,
}

/// Runs the subcommand.
pub fn run(args: CrdsArgs) -> Result<()> {
    let Some(dir) = args.out else {
        for (_, crd) in privnet_api::all_crds() {
            print!("---\n{}", privnet_api::crd_yaml(&crd));
        }
        return Ok(());
    };
    let mut stale = Vec::new();
    for (file, crd) in privnet_api::all_crds() {
        let path = dir.join(file);
        let want = privnet_api::crd_yaml(&crd);
        if args.check {
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            if have != want {
                stale.push(path.display().to_string());
            }
        } else {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
            std::fs::write(&path, want)
                .with_context(|| format!("failed to write {}", path.display()))?;
        }
    }
    if !stale.is_empty() {
        bail!(
            "stale CRDs (run `privnet crds --out crds`): {}",
            stale.join(", ")
        );
    }
    Ok(())
}
