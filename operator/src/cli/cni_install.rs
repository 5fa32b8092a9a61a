//! `privnet cni-install`: the node installer the agent DaemonSet runs
//! (an init container in Multus mode, a sidecar in chained mode); the work
//! is `privnet_cni::install`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::json;

use super::check;
use privnet_cni::install::conflist::Entry;
use privnet_cni::install::{Change, Install, Mode};

/// How pods reach the plugin.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AttachMode {
    /// privnet's own conflist in Multus's directory.
    Multus,
    /// privnet chained into the node's primary conflist.
    Chained,
}

/// Arguments of `privnet cni-install`.
#[derive(Args)]
pub struct CniInstallArgs {
    /// Multus (write privnet's conflist) or chained (edit the primary conflist).
    #[arg(long, value_enum, default_value = "multus")]
    mode: AttachMode,
    /// CNI configuration directory as mounted (Multus's in multus mode, the
    /// primary CNI's in chained mode).
    #[arg(long, default_value = "/host/cni-conf")]
    conf_dir: PathBuf,
    /// CNI binary directory as mounted.
    #[arg(long, default_value = "/host/cni-bin")]
    bin_dir: PathBuf,
    /// The plugin binary to install.
    #[arg(long, default_value = "/usr/local/bin/privnet-cni")]
    plugin: PathBuf,
    /// File name of privnet's conflist (multus mode).
    #[arg(long, default_value = "privnet.conflist")]
    conf_name: String,
    /// CNI network name of privnet's conflist (multus mode).
    #[arg(long, default_value = "privnet")]
    network_name: String,
    /// privnet's interface in pods (chained mode: the primary owns CNI_IFNAME).
    #[arg(long, default_value = "eth1")]
    pod_interface: String,
    /// The agent's socket as seen from the node.
    #[arg(long, default_value = privnet_core::rpc::DEFAULT_SOCKET)]
    agent_socket: String,
    /// The plugin's log level.
    #[arg(long, default_value = "info", value_parser = ["error", "warn", "info", "debug"])]
    log_level: String,
    /// How often the configuration is checked and repaired (chained mode), ms.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    poll_interval_ms: u64,
    /// Install once and exit (no watch, nothing removed on exit).
    #[arg(long)]
    once: bool,
    /// Validate the flags, print the effective configuration as JSON, exit.
    #[arg(long)]
    pub check_config: bool,
}

/// The installer the flags describe (validated, nothing touched).
fn install_of(args: &CniInstallArgs) -> Result<Install> {
    privnet_cni::env::validate_ifname(&args.pod_interface)
        .map_err(|e| anyhow::anyhow!("invalid --pod-interface: {e}"))?;
    if args.conf_name.contains('/') || !args.conf_name.ends_with(".conflist") {
        bail!(
            "invalid --conf-name {:?}: a file name ending in .conflist",
            args.conf_name
        );
    }
    if args.network_name.is_empty() {
        bail!("invalid --network-name: empty");
    }
    if !args.agent_socket.starts_with('/') {
        bail!(
            "invalid --agent-socket {:?}: an absolute path",
            args.agent_socket
        );
    }
    Ok(Install {
        mode: match args.mode {
            AttachMode::Multus => Mode::Multus {
                file: args.conf_name.clone(),
                network: args.network_name.clone(),
            },
            AttachMode::Chained => Mode::Chained,
        },
        conf_dir: args.conf_dir.clone(),
        bin_dir: args.bin_dir.clone(),
        plugin: args.plugin.clone(),
        entry: Entry {
            agent_socket: args.agent_socket.clone(),
            interface_name: args.pod_interface.clone(),
            log_level: args.log_level.clone(),
        },
    })
}

/// What chaining would do to this node's primary configuration (read only).
fn primary_note(install: &Install) -> String {
    let files = match privnet_cni::install::config_files(&install.conf_dir) {
        Ok(files) => files,
        Err(e) => return privnet_agent::error_chain(&e),
    };
    let Some(primary) = files.first() else {
        return format!("no CNI configuration in {} yet", install.conf_dir.display());
    };
    let name = primary.display().to_string();
    match std::fs::read_to_string(primary)
        .map_err(|e| e.to_string())
        .and_then(|t| {
            privnet_cni::install::conflist::insert(&t, &install.entry, &name)
                .map_err(|e| privnet_agent::error_chain(&e))
        }) {
        Ok(Some(_)) => format!("primary configuration {name}: privnet's entry would be added"),
        Ok(None) => format!("primary configuration {name}: privnet's entry is in place"),
        Err(e) => format!("primary configuration {name} cannot be chained: {e}"),
    }
}

/// Installs, then (chained, not `--once`) keeps privnet chained until
/// SIGTERM/SIGINT and takes the entry out.
pub fn run(args: CniInstallArgs) -> Result<()> {
    let install = install_of(&args)?;
    if args.check_config {
        let mut notes = Vec::new();
        check::note_missing(&mut notes, "CNI configuration directory", &args.conf_dir);
        check::note_missing(&mut notes, "CNI binary directory", &args.bin_dir);
        check::note_missing(&mut notes, "plugin", &args.plugin);
        if matches!(install.mode, Mode::Chained) && args.conf_dir.is_dir() {
            notes.push(primary_note(&install));
        }
        let config = json!({
            "mode": format!("{:?}", args.mode).to_lowercase(),
            "confDir": args.conf_dir, "binDir": args.bin_dir, "plugin": args.plugin,
            "confName": args.conf_name, "networkName": args.network_name,
            "entry": install.entry.to_value(), "pollIntervalMs": args.poll_interval_ms,
            "once": args.once,
        });
        return check::print("cni-install", config, notes);
    }
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let poll = Duration::from_millis(args.poll_interval_ms);
    let once = args.once;
    let worker = std::thread::spawn(move || {
        install.run(once, poll, &stopped, |r| match r {
            Ok(Change::Plugin(p)) => tracing::info!(path = %p.display(), "installed the plugin"),
            Ok(Change::Written(p)) => tracing::info!(path = %p.display(), "wrote privnet's conflist"),
            Ok(Change::Chained(p)) => tracing::info!(path = %p.display(), "chained privnet into the primary conflist"),
            Ok(Change::Unchained(p)) => tracing::info!(path = %p.display(), "took privnet out of the conflist"),
            Err(e) => tracing::warn!(error = %privnet_agent::error_chain(&e), "installer pass failed; retrying"),
        })
    });
    if !once {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(super::shutdown_signal());
        let _ = stop.send(());
    }
    worker
        .join()
        .map_err(|_| anyhow::anyhow!("the installer thread panicked"))?
        .context("failed to install the CNI plugin")
}
