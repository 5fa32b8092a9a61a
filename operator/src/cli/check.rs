//! `--check-config`: every subcommand the chart runs parses its flags and
//! environment exactly as in production, validates them, prints the
//! effective configuration as JSON and exits (0 valid, 1 invalid) before
//! anything is opened, bound, written or contacted. Paths that only exist
//! on a node (certificates, host directories) are reported, not required.

use std::path::Path;

use anyhow::Result;
use serde_json::{Value, json};

/// A note about `path` when it does not exist here.
pub fn note_missing(notes: &mut Vec<String>, what: &str, path: &Path) {
    if !path.exists() {
        notes.push(format!(
            "{what} {} does not exist here (needed when running)",
            path.display()
        ));
    }
}

/// Prints the effective configuration of `command` (stdout, one JSON document).
pub fn print(command: &str, config: Value, notes: Vec<String>) -> Result<()> {
    let doc = json!({ "command": command, "valid": true, "config": config, "notes": notes });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
