//! `privnet-cni`: reads the config on stdin and the `CNI_*` environment,
//! prints the result (or the spec error JSON) on stdout.

use std::io::{Read, Write};

fn main() {
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        eprintln!("privnet-cni: failed to read stdin: {e}");
    }
    let vars = std::env::vars().collect();
    let outcome = privnet_cni::plugin::run(&vars, &stdin);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(outcome.stdout.as_bytes());
    let _ = out.flush();
    std::process::exit(outcome.exit_code);
}
