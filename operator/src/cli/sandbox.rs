//! `privnet sandbox`: the one-machine environment.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use privnet_sandbox::ops::{self, Binaries};
use privnet_sandbox::scenario::Scenario;
use privnet_sandbox::state::{ApiMode, SandboxState, WireguardBackend};

/// Arguments of `privnet sandbox`.
#[derive(Args)]
pub struct SandboxArgs {
    /// Sandbox name: prefix of every namespace, link and file it creates.
    #[arg(long, global = true, default_value = "pnsb", env = "PRIVNET_SANDBOX")]
    name: String,
    #[command(subcommand)]
    command: SandboxCommand,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

/// The sandbox's WireGuard backend (the agent's `auto` is not offered: the
/// sandbox's probes must know where the interface is).
#[derive(Clone, Copy, ValueEnum)]
enum SandboxWgBackend {
    /// `wireguard-go`, one daemon per node: runs on any machine.
    Userspace,
    /// The kernel module (needs it on this machine).
    Kernel,
}

impl From<SandboxWgBackend> for WireguardBackend {
    fn from(b: SandboxWgBackend) -> Self {
        match b {
            SandboxWgBackend::Userspace => WireguardBackend::Userspace,
            SandboxWgBackend::Kernel => WireguardBackend::Kernel,
        }
    }
}

/// Where the sandbox's cluster state lives.
#[derive(Clone, Copy, ValueEnum)]
enum SandboxApi {
    /// Local files: the sandbox plays the controller's role.
    Files,
    /// An emulated Kubernetes API: the real controller, agents on their
    /// Kubernetes source, a kubelet role per node; `kubectl` works.
    Kube,
}

impl From<SandboxApi> for ApiMode {
    fn from(a: SandboxApi) -> Self {
        match a {
            SandboxApi::Files => ApiMode::Files,
            SandboxApi::Kube => ApiMode::Kube,
        }
    }
}

#[derive(Subcommand)]
enum SandboxCommand {
    /// Build the sandbox (default scenario: 3 nodes, 2 projects).
    Up {
        /// Number of nodes (overrides the scenario's).
        #[arg(long)]
        nodes: Option<u32>,
        /// Scenario file (YAML).
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Build the nodes bare, without privnet's agents (to set up neighbours such as a
        /// stand-in for the primary CNI first); `start-agents` installs privnet.
        #[arg(long)]
        no_agents: bool,
        /// WireGuard backend of every agent (see docs/SANDBOX.md for why the default is
        /// `userspace`, not the agent's `auto`).
        #[arg(
            long,
            value_enum,
            default_value = "userspace",
            env = "PRIVNET_SANDBOX_WIREGUARD_BACKEND"
        )]
        wireguard_backend: SandboxWgBackend,
        /// Where the cluster state lives: `kube` runs an emulated API server, the real
        /// controller and a kubelet role per node; `files` plays the controller from local
        /// files, for runtimes outside Kubernetes (see docs/SANDBOX.md).
        #[arg(long, value_enum, default_value = "kube", env = "PRIVNET_SANDBOX_API")]
        api: SandboxApi,
    },
    /// Start the agents of a sandbox built with `up --no-agents`, then its containers.
    StartAgents,
    /// Show nodes, networks and containers.
    Status {
        /// Output format.
        #[arg(short, long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Run a command inside a container (its env vars, its resolver).
    Exec {
        /// Container name (see `status`).
        container: String,
        /// Command and arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Set the number of containers of an application's process type.
    Scale {
        /// Application id.
        app: String,
        /// Process type.
        process_type: String,
        /// New count.
        count: u32,
    },
    /// Apply a new scenario to the running sandbox.
    Apply {
        /// Scenario file.
        file: PathBuf,
    },
    /// Kill (-9) or start a node's agent (the datapath stays up).
    Agent {
        /// Node name.
        node: String,
        /// `kill` or `start`.
        action: AgentAction,
    },
    /// Kill (-9) or start a controller replica (the Kubernetes path).
    Controller {
        /// Replica (0, 1).
        replica: usize,
        /// `kill` or `start`.
        action: AgentAction,
    },
    /// Run `privnet doctor` on a node (every node by default; exit 0 ok, 1 something wrong,
    /// 2 could not run).
    Doctor {
        /// Node name (see `status`).
        #[arg(long)]
        node: Option<String>,
        /// Output format (JSON: one report, or an array without --node).
        #[arg(short, long, value_enum, default_value = "text")]
        output: super::doctor::Output,
    },
    /// Rotate a node's WireGuard key (as `touch <state-dir>/rotate-key` on a node does) and
    /// wait until every other node holds only the new key.
    RotateKey {
        /// Node name.
        node: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
    /// Remove everything the sandbox created (safe to run twice).
    Down,
    /// The API server, scheduler and kubelets of the Kubernetes path (started by `up`).
    #[command(hide = true)]
    ClusterDaemon,
}

#[derive(Clone, Copy, ValueEnum)]
enum AgentAction {
    Kill,
    Start,
}

fn load_scenario(path: &PathBuf) -> Result<Scenario> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    Ok(Scenario::parse(&text)?)
}

/// Runs the subcommand.
pub fn run(args: SandboxArgs) -> Result<()> {
    let name = args.name;
    match args.command {
        SandboxCommand::Up {
            nodes,
            scenario,
            no_agents,
            wireguard_backend,
            api,
        } => {
            let backend = wireguard_backend.into();
            let api = api.into();
            let mut s = match scenario {
                Some(p) => load_scenario(&p)?,
                None => Scenario::default_scenario(),
            };
            if let Some(n) = nodes {
                s.nodes = n;
                s.validate()?;
            }
            let bins = Binaries::beside_current_exe()?;
            if no_agents {
                print_text(&ops::up_without_agents(&name, &s, &bins, backend, api)?);
                return Ok(());
            }
            let state = ops::up(&name, &s, &bins, backend, api)?;
            print_text(&state);
            // The exact command lines to paste: this binary's path and the name.
            let me = std::env::current_exe()
                .map_or_else(|_| "privnet".into(), |p| p.display().to_string());
            let cmd = if name == "pnsb" {
                format!("{me} sandbox")
            } else {
                format!("{me} sandbox --name {name}")
            };
            println!("\nTry:");
            // A scenario may start with no containers (scale one up later).
            if let Some(first) = state.containers.first() {
                let app_name = first
                    .hostname
                    .splitn(3, '.')
                    .nth(2)
                    .unwrap_or(&first.hostname);
                println!("  {cmd} exec {} -- host {app_name}", first.name);
                println!("  {cmd} exec {} -- env", first.name);
            }
            if !state.kubeconfig.is_empty() {
                println!(
                    "  KUBECONFIG={} kubectl get pods -A -o wide",
                    state.kubeconfig
                );
            }
            println!("  {cmd} status -o json\n  {cmd} down");
        }
        SandboxCommand::Status { output } => {
            let state = SandboxState::load(&name)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&state)?),
                Output::Text => print_text(&state),
            }
        }
        SandboxCommand::Exec { container, command } => {
            let state = SandboxState::load(&name)?;
            let Some(c) = state.container(&container) else {
                bail!(
                    "no container {container:?} in sandbox {name:?} (see `privnet sandbox status`)"
                );
            };
            let err = std::process::Command::new("ip")
                .args(["netns", "exec", &c.netns])
                .args(&command)
                .envs(&c.env)
                .exec();
            bail!("failed to run {command:?} in {}: {err}", c.name);
        }
        SandboxCommand::Scale {
            app,
            process_type,
            count,
        } => {
            let state = ops::scale(
                &name,
                &app,
                &process_type,
                count,
                &Binaries::beside_current_exe()?,
            )?;
            print_text(&state);
        }
        SandboxCommand::Apply { file } => {
            let state = ops::apply(
                &name,
                &load_scenario(&file)?,
                &Binaries::beside_current_exe()?,
            )?;
            print_text(&state);
        }
        SandboxCommand::Agent { node, action } => {
            ops::agent_control(
                &name,
                &node,
                matches!(action, AgentAction::Start),
                &Binaries::beside_current_exe()?,
            )?;
        }
        SandboxCommand::RotateKey { node, timeout_secs } => {
            let report =
                ops::rotate_key(&name, &node, std::time::Duration::from_secs(timeout_secs))?;
            println!(
                "{}: {} -> {} in {} ms; every peer holds only the new key",
                report.node,
                report.old_key,
                report.new_key,
                report.took.as_millis()
            );
        }
        SandboxCommand::StartAgents => {
            print_text(&ops::start_agents(&name, &Binaries::beside_current_exe()?)?);
        }
        SandboxCommand::Controller { replica, action } => {
            ops::controller_control(
                &name,
                replica,
                matches!(action, AgentAction::Start),
                &Binaries::beside_current_exe()?,
            )?;
        }
        SandboxCommand::ClusterDaemon => {
            privnet_sandbox::kube::daemon::run(&name, Binaries::beside_current_exe()?.cni)?;
        }
        SandboxCommand::Doctor { node, output } => {
            let state = SandboxState::load(&name)?;
            let opts = doctor_options(&state, node.as_deref())?;
            super::doctor::exit_with(super::doctor::run_all(&opts), output, node.is_none());
        }
        SandboxCommand::Down => {
            ops::down(&name);
            eprintln!("==> sandbox {name:?} removed");
        }
    }
    Ok(())
}

/// The doctor's options for one node of the sandbox, or every node: the
/// node's socket and namespace, the agent's default health address in it,
/// the sandbox's API server when it runs one.
fn doctor_options(
    state: &SandboxState,
    node: Option<&str>,
) -> Result<Vec<privnet_agent::doctor::Options>> {
    use privnet_agent::doctor::{Options, clock::Api, verdict::Limits};
    let nodes: Vec<_> = state
        .nodes
        .iter()
        .filter(|n| node.is_none_or(|want| n.name == want))
        .collect();
    if nodes.is_empty() {
        bail!("no node {node:?} in the sandbox (see `privnet sandbox status`)");
    }
    Ok(nodes
        .into_iter()
        .map(|n| Options {
            socket: n.agent_socket.clone().into(),
            health: "127.0.0.1:9641".parse().expect("a valid address"),
            node_netns: Some(n.netns.clone()),
            api: if state.kubeconfig.is_empty() {
                Api::None
            } else {
                Api::Kubeconfig(state.kubeconfig.clone().into())
            },
            limits: Limits::default(),
        })
        .collect())
}

fn print_text(s: &SandboxState) {
    println!("NODES (WireGuard: {})", s.wireguard_backend.agent_flag());
    for n in &s.nodes {
        println!(
            "  {:<4} netns={:<12} underlay={:<16} vtep={:<14} agent_pid={}",
            n.name, n.netns, n.underlay_address, n.vtep, n.agent_pid
        );
    }
    println!("NETWORKS");
    for n in &s.networks {
        println!(
            "  {:<8} {}  vni={} subnet={} mtu={}",
            n.project, n.id, n.vni, n.subnet, n.mtu
        );
    }
    if !s.kubeconfig.is_empty() {
        println!("KUBERNETES  KUBECONFIG={}", s.kubeconfig);
        for c in &s.controllers {
            println!("  {:<13} pid={:<8} webhook={}", c.name, c.pid, c.webhook);
        }
    }
    println!("CONTAINERS");
    for c in &s.containers {
        println!("  {:<22} {:<3} {:<13} {}", c.name, c.node, c.ip, c.hostname);
    }
}
