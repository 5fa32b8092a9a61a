//! `privnet doctor`: what is wrong on this node, in plain words (checks in
//! `privnet_agent::doctor`). Exit code 0 all good, 1 something wrong, 2 the
//! doctor could not run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use privnet_agent::doctor::clock::Api;
use privnet_agent::doctor::report::Report;
use privnet_agent::doctor::verdict::Limits;
use privnet_agent::doctor::{self, Options};

/// Output format.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Output {
    /// One line per check, one per problem.
    Text,
    /// The report as JSON (for scripts).
    Json,
}

/// Arguments of `privnet doctor`.
#[derive(Args)]
pub struct DoctorArgs {
    /// The agent's RPC socket.
    #[arg(long, default_value = privnet_core::rpc::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// The agent's health address (its --metrics-addr), reached from the node's namespace
    /// (the chart sets PRIVNET_HEALTH_ADDR in the agent's container).
    #[arg(long, env = "PRIVNET_HEALTH_ADDR", default_value = "127.0.0.1:9641")]
    health_addr: SocketAddr,
    /// The node's network namespace (`/run/netns/<name>`), when not the doctor's own.
    #[arg(long)]
    node_netns: Option<String>,
    /// Kubeconfig of the API server whose clock to compare (default: as the agent finds it:
    /// KUBECONFIG, ~/.kube/config or in-cluster; skipped when none).
    #[arg(long, conflicts_with = "no_api")]
    kubeconfig: Option<PathBuf>,
    /// Skip the clock check (no Kubernetes API, e.g. a files source).
    #[arg(long)]
    no_api: bool,
    /// Largest clock difference with the API server that is fine (seconds).
    #[arg(long, default_value_t = 5)]
    max_clock_skew_secs: u64,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "text")]
    output: Output,
}

/// Runs the doctor and exits with its code.
pub fn run(args: DoctorArgs) -> ! {
    let api = match (args.no_api, args.kubeconfig) {
        (true, _) => Api::None,
        (false, Some(path)) => Api::Kubeconfig(path),
        (false, None) => Api::Infer,
    };
    let opts = Options {
        socket: args.socket,
        health: args.health_addr,
        node_netns: args.node_netns,
        api,
        limits: Limits {
            max_clock_skew: Duration::from_secs(args.max_clock_skew_secs),
        },
    };
    exit_with(run_all(&[opts]), args.output, false)
}

/// Runs the doctor for each of `opts` (one runtime, one after the other).
pub fn run_all(opts: &[Options]) -> Result<Vec<Report>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("failed to start the runtime: {e}"))?;
    runtime.block_on(async {
        let mut out = Vec::new();
        for o in opts {
            let report = doctor::run(o)
                .await
                .map_err(|e| privnet_agent::error_chain(&e))?;
            out.push(report);
        }
        Ok(out)
    })
}

/// Prints the reports (a JSON array when `many`) and exits: 2 when the doctor
/// could not run, 1 when a check failed, else 0.
pub fn exit_with(result: Result<Vec<Report>, String>, output: Output, many: bool) -> ! {
    let reports = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("privnet doctor: could not run: {e}");
            std::process::exit(2)
        }
    };
    match output {
        Output::Json if many => println!("{}", to_json(serde_json::to_value(&reports))),
        Output::Json => println!("{}", to_json(serde_json::to_value(&reports[0]))),
        Output::Text => reports.iter().for_each(|r| print!("{}", r.text())),
    }
    std::process::exit(reports.iter().map(Report::exit_code).max().unwrap_or(0))
}

fn to_json(value: serde_json::Result<serde_json::Value>) -> String {
    value
        .and_then(|v| serde_json::to_string_pretty(&v))
        .expect("reports serialize")
}
