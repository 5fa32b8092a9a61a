//! `privnet agent`: the node agent (DaemonSet in Kubernetes; one per node
//! namespace in the sandbox).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::health::{self, HealthSource};
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use ipnet::Ipv4Net;
use privnet_agent::config::AgentConfig;
use privnet_agent::datapath::neighbours;
use privnet_agent::datapath::netns::NetnsFd;
use privnet_agent::datapath::wireguard::{Backend, BackendChoice};
use privnet_agent::node::Agent;
use privnet_agent::node::expected::unready_reason;
use privnet_agent::node::hold::HoldPolicy;
use privnet_agent::source::{KubeSource, LocalDir, Source};
use privnet_agent::store::DiskStore;
use privnet_agent::{dns::forward::Forwarder, rpc_server};
use privnet_core::defaults;
use privnet_core::vni::VniRange;

/// WireGuard backend selection.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum WgBackend {
    /// Kernel module when present, else userspace.
    Auto,
    /// Kernel module only.
    Kernel,
    /// `wireguard-go` only.
    Userspace,
}

/// Arguments of `privnet agent`.
#[derive(Args)]
pub struct AgentArgs {
    /// Node name.
    #[arg(long, env = "PRIVNET_NODE")]
    node: String,
    /// Local manifest directory (sandbox/tests); Kubernetes is used when absent.
    #[arg(long)]
    source_dir: Option<PathBuf>,
    /// State directory (key, attachments).
    #[arg(long, default_value = "/var/lib/privnet")]
    state_dir: PathBuf,
    /// CNI socket.
    #[arg(long, default_value = privnet_core::rpc::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Prefix of the per-network namespaces.
    #[arg(long, default_value = "privnet-")]
    netns_prefix: String,
    /// WireGuard interface.
    #[arg(long, default_value = "privnet-wg")]
    wg_ifname: String,
    /// WireGuard UDP port (default clear of Calico/Kilo/Flannel/Cilium; docs/ARCHITECTURE.md).
    #[arg(long, default_value_t = defaults::WIREGUARD_PORT)]
    wg_port: u16,
    /// WireGuard backend.
    #[arg(long, value_enum, default_value = "auto")]
    wireguard: WgBackend,
    /// Persistent keepalive (seconds, 0 = off).
    #[arg(long, default_value_t = 25)]
    keepalive: u16,
    /// Underlay endpoint advertised to peers (ip:port).
    #[arg(long)]
    endpoint: SocketAddr,
    /// Underlay MTU.
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u32).range(576..=65535))]
    underlay_mtu: u32,
    /// Mesh CIDR (the controller's --mesh-cidr).
    #[arg(long, default_value_t = defaults::MESH_CIDR)]
    mesh_cidr: Ipv4Net,
    /// UDP port of the networks' VXLAN devices (default clear of Calico, Antrea,
    /// OpenShift SDN, Flannel and Cilium; docs/ARCHITECTURE.md).
    #[arg(long, default_value_t = defaults::VXLAN_PORT)]
    vxlan_port: u16,
    /// VNIs the controller assigns, FIRST-LAST (the controller's --vni-range): the node guard
    /// matches exactly these, so other VXLAN traffic on the node is untouched.
    #[arg(long, default_value_t = VniRange::DEFAULT)]
    vni_range: VniRange,
    /// Upstream DNS (default: first nameserver of /etc/resolv.conf).
    #[arg(long)]
    dns_upstream: Option<SocketAddr>,
    /// Do not forward non-private names (answer REFUSED).
    #[arg(long, conflicts_with = "dns_upstream")]
    no_dns_forward: bool,
    /// DNS domain.
    #[arg(long, default_value = privnet_core::naming::DEFAULT_DOMAIN)]
    domain: String,
    /// Health/metrics listen address.
    #[arg(long, default_value = "127.0.0.1:9641")]
    metrics_addr: SocketAddr,
    /// How long GRO on each network's VXLAN device may hold bulk TCP segments to merge them
    /// (µs, 0 = off). Trades that much latency on bulk transfers for far fewer packets up
    /// the bridge, veth and container stack; segments with PSH are never held.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=1000))]
    gro_flush_timeout_us: u32,
    /// Hold a cluster view that takes away more than this share of this node's live
    /// attachments, their networks or its peers (see --hold-removals-above).
    #[arg(long, default_value_t = 0.5, value_parser = share)]
    hold_removals_share: f64,
    /// Removals of a kind up to this many are never held.
    #[arg(long, default_value_t = 3)]
    hold_removals_above: usize,
    /// Seconds a held view must stay the same before it applies (or create
    /// `<state-dir>/confirm-removals` to apply it now).
    #[arg(long, default_value_t = 300)]
    hold_removals_grace_secs: u64,
    /// How often the agent reads its datapath back and repairs what drifted (guard tables,
    /// devices, addresses, FDB, WireGuard daemon and peers, DNS responders), milliseconds.
    #[arg(long, env = "PRIVNET_RESYNC_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    resync_ms: u64,
    /// Rotate the node's WireGuard key when it is this many seconds old (default: only on
    /// request, `touch <state-dir>/rotate-key`). Peers accept the next key before the node
    /// switches to it, so established streams keep flowing (docs/OPERATOR.md).
    #[arg(long = "rotate-key-every", value_parser = clap::value_parser!(u64).range(60..))]
    rotate_key_every_secs: Option<u64>,
    /// Seconds a rotation waits for every peer to accept the next key before it is aborted
    /// (the key then stays as it was).
    #[arg(long = "rotate-key-timeout", default_value_t = privnet_core::rotation::DEFAULT_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    rotate_key_timeout_secs: u64,
    /// Disable the node guard (negative-control tests only; NEVER in production).
    #[arg(long, hide = true)]
    insecure_disable_guard: bool,
    /// Validate the flags and environment, print the effective configuration
    /// as JSON and exit (nothing is created, bound or contacted).
    #[arg(long)]
    check_config: bool,
}

fn share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a share between 0 and 1")),
    }
}

struct Health<S: Source>(Arc<Agent<S>>);

impl<S: Source> HealthSource for Health<S> {
    fn ready(&self) -> Result<(), String> {
        match unready_reason(&self.0.phase()) {
            None => Ok(()),
            Some(why) => Err(why),
        }
    }
    fn metrics(&self) -> String {
        self.0.metrics_text()
    }
}

/// The agent's settings from its flags (reads /etc/resolv.conf when no
/// upstream is given; writes nothing).
fn config_of(args: &AgentArgs) -> Result<AgentConfig> {
    if args.node.is_empty() {
        anyhow::bail!("invalid --node/PRIVNET_NODE: empty");
    }
    privnet_core::naming::validate_domain(&args.domain)
        .with_context(|| format!("invalid --domain {:?}", args.domain))?;
    if args.endpoint.ip().is_unspecified() || args.endpoint.port() == 0 {
        anyhow::bail!(
            "invalid --endpoint {}: peers need a routable address and a port",
            args.endpoint
        );
    }
    let dns_upstream = if args.no_dns_forward {
        None
    } else {
        args.dns_upstream.or_else(|| {
            std::fs::read_to_string("/etc/resolv.conf")
                .ok()
                .and_then(|t| Forwarder::upstream_from_resolv_conf(&t))
        })
    };
    Ok(AgentConfig {
        node: args.node.clone(),
        state_dir: args.state_dir.clone(),
        socket: args.socket.clone(),
        netns_prefix: args.netns_prefix.clone(),
        wg_ifname: args.wg_ifname.clone(),
        wg_port: args.wg_port,
        wg_backend: match args.wireguard {
            WgBackend::Auto => BackendChoice::Auto,
            WgBackend::Kernel => BackendChoice::Only(Backend::Kernel),
            WgBackend::Userspace => BackendChoice::Only(Backend::Userspace),
        },
        keepalive: (args.keepalive > 0).then_some(args.keepalive),
        endpoint: args.endpoint,
        underlay_mtu: args.underlay_mtu,
        mesh_cidr: args.mesh_cidr,
        vxlan_port: args.vxlan_port,
        vni_range: args.vni_range.clone(),
        dns_upstream,
        domain: args.domain.clone(),
        gro_flush_timeout_ns: args.gro_flush_timeout_us * 1000,
        guard_disabled: args.insecure_disable_guard,
        removal_hold: HoldPolicy {
            max_share: args.hold_removals_share,
            min_count: args.hold_removals_above,
            grace: std::time::Duration::from_secs(args.hold_removals_grace_secs),
            ..HoldPolicy::default()
        },
        resync: std::time::Duration::from_millis(args.resync_ms),
        rotate_key_every: args
            .rotate_key_every_secs
            .map(std::time::Duration::from_secs),
        rotate_key_timeout: std::time::Duration::from_secs(args.rotate_key_timeout_secs),
    })
}

/// Prints the effective configuration (`--check-config`).
fn check_config(args: &AgentArgs, cfg: &AgentConfig) -> Result<()> {
    let mut notes = Vec::new();
    super::check::note_missing(&mut notes, "state directory", &cfg.state_dir);
    if let Some(dir) = cfg.socket.parent() {
        super::check::note_missing(&mut notes, "socket directory", dir);
    }
    if cfg.dns_upstream.is_none() && !args.no_dns_forward {
        notes.push(
            "no DNS upstream (none given, none in /etc/resolv.conf): other names get REFUSED"
                .into(),
        );
    }
    if cfg.guard_disabled {
        notes.push("the node guard is DISABLED (tests only)".into());
    }
    let doc = serde_json::json!({
        "node": cfg.node,
        "source": args.source_dir.as_ref().map_or("kubernetes".to_string(), |d| format!("directory {}", d.display())),
        "stateDir": cfg.state_dir, "socket": cfg.socket, "netnsPrefix": cfg.netns_prefix,
        "wgIfname": cfg.wg_ifname, "wgPort": cfg.wg_port,
        "wireguard": format!("{:?}", args.wireguard).to_lowercase(),
        "keepalive": cfg.keepalive, "endpoint": cfg.endpoint.to_string(),
        "underlayMtu": cfg.underlay_mtu, "meshCidr": cfg.mesh_cidr.to_string(),
        "vxlanPort": cfg.vxlan_port, "vniRange": cfg.vni_range.to_string(),
        "dnsUpstream": cfg.dns_upstream.map(|a| a.to_string()), "domain": cfg.domain,
        "metricsAddr": args.metrics_addr.to_string(),
        "groFlushTimeoutUs": args.gro_flush_timeout_us,
        "resyncMs": args.resync_ms,
        "rotateKeyEverySecs": args.rotate_key_every_secs, "rotateKeyTimeoutSecs": args.rotate_key_timeout_secs,
        "holdRemovals": {"share": args.hold_removals_share, "above": args.hold_removals_above, "graceSecs": args.hold_removals_grace_secs},
    });
    super::check::print("agent", doc, notes)
}

/// Runs the agent until SIGTERM/SIGINT; the datapath stays up.
pub fn run(args: AgentArgs) -> Result<()> {
    let cfg = config_of(&args)?;
    if args.check_config {
        return check_config(&args, &cfg);
    }
    privnet_agent::heap::limit_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Blocking threads (an ADD's nft feed) are cheap to start again:
        // idle ones go after 1 s, not tokio's 10 s, so the thread count
        // the soak watches is the agent's own (docs/BENCHMARKS.md).
        .thread_keep_alive(std::time::Duration::from_secs(1))
        .enable_all()
        .build()?;
    let node = args.node.clone();
    let metrics_addr = args.metrics_addr;
    runtime.block_on(async move {
        tokio::spawn(privnet_agent::heap::trim_periodically());
        match args.source_dir {
            Some(dir) => serve(cfg, LocalDir::new(dir, node), metrics_addr).await,
            None => {
                let client = kube::Client::try_default()
                    .await
                    .context("failed to create the Kubernetes client")?;
                let namespace =
                    std::env::var("POD_NAMESPACE").unwrap_or_else(|_| defaults::NAMESPACE.into());
                let source = KubeSource::start(client, &node, &namespace, &cfg.domain);
                serve(cfg, source, metrics_addr).await
            }
        }
    })
}

/// Starts the agent over `source` and serves CNI requests until a signal.
async fn serve<S: Source>(cfg: AgentConfig, source: S, metrics_addr: SocketAddr) -> Result<()> {
    let store = DiskStore::open(&cfg.state_dir).context("failed to open the attachment store")?;
    let socket = cfg.socket.clone();
    let node = cfg.node.clone();
    // A clash with the primary CNI is one clear line and an exit, before anything is created.
    let here = NetnsFd::current().context("failed to open the node's namespace")?;
    neighbours::check(&here, &cfg.node_guard(), cfg.wg_port).await?;
    let agent = Agent::start(cfg, source, Box::new(store))
        .await
        .context("failed to start the agent")?;
    let listener = rpc_server::bind(&socket)?;
    let metrics = tokio::net::TcpListener::bind(metrics_addr)
        .await
        .with_context(|| format!("failed to bind {metrics_addr}"))?;
    tokio::spawn(agent.clone().follow_source());
    tokio::spawn(agent.clone().converge_loop());
    tokio::spawn(agent.clone().watch_standbys());
    tokio::spawn(health::serve(
        metrics,
        Arc::new(Health(agent.clone())),
        std::future::pending(),
    ));
    tracing::info!(%node, key = %agent.public_key(), socket = %socket.display(), "agent started");
    rpc_server::serve(listener, agent, super::shutdown_signal()).await;
    tracing::info!("agent stopping; the datapath stays up");
    Ok(())
}
