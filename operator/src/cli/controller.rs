//! `privnet controller`: the cluster operator (Deployment, 2 replicas).
//! Every replica serves the webhook and health endpoints; only the holder
//! of the Lease reconciles. Losing the Lease ends the process (the Pod
//! restarts as a follower): no two replicas ever reconcile at once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::health::{self, HealthSource};
use anyhow::{Context as _, Result};
use clap::Args;
use ipnet::Ipv4Net;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use privnet_controller::attachment::AttachMode;
use privnet_controller::leader::LeaderElector;
use privnet_controller::run::run_controllers;
use privnet_controller::webhook::{Admitter, serve_tls, tls_config_from_pem};
use privnet_controller::{Context, ControllerConfig, Metrics};
use privnet_core::defaults;
use privnet_core::vni::VniRange;

/// Arguments of `privnet controller`.
#[derive(Args)]
pub struct ControllerArgs {
    /// Namespace of the controller (zone ConfigMaps, Leases).
    #[arg(long, env = "POD_NAMESPACE", default_value = defaults::NAMESPACE)]
    namespace: String,
    /// Identity in the leader election (the Pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Name of the leader Lease.
    #[arg(long, default_value = "privnet-controller")]
    lease_name: String,
    /// Lease duration, seconds.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    lease_seconds: u64,
    /// DNS domain of the private zones.
    #[arg(long, default_value = privnet_core::naming::DEFAULT_DOMAIN)]
    domain: String,
    /// Mesh (VTEP) CIDR (default clear of CGNAT, OVN/Kube-OVN join networks and common
    /// pod/service ranges; docs/ARCHITECTURE.md).
    #[arg(long, default_value_t = defaults::MESH_CIDR)]
    mesh_cidr: Ipv4Net,
    /// VNIs assigned to private networks, FIRST-LAST (the agents' --vni-range; default clear
    /// of Flannel's 1 and Calico's 4096/4097).
    #[arg(long, default_value_t = VniRange::DEFAULT)]
    vni_range: VniRange,
    /// Prefix of the three environment variables.
    #[arg(long, default_value = privnet_core::naming::DEFAULT_ENV_PREFIX)]
    env_prefix: String,
    /// Webhook listen address.
    #[arg(long, default_value = "0.0.0.0:8443")]
    webhook_addr: SocketAddr,
    /// Webhook certificate (PEM, from the mounted Secret).
    #[arg(long, default_value = "/etc/privnet/tls/tls.crt")]
    tls_cert: PathBuf,
    /// Webhook key (PEM).
    #[arg(long, default_value = "/etc/privnet/tls/tls.key")]
    tls_key: PathBuf,
    /// Serve the webhook over plain HTTP (development only).
    #[arg(long)]
    webhook_insecure: bool,
    /// How pods reach the plugin: `multus` (a NetworkAttachmentDefinition per
    /// project namespace + the pod's networks annotation) or `chained`
    /// (privnet chained into the node's primary conflist).
    #[arg(long, default_value = "multus", value_parser = ["multus", "chained"])]
    attach_mode: String,
    /// Multus network (NetworkAttachmentDefinition) name.
    #[arg(long, default_value = "privnet")]
    multus_network: String,
    /// Name of the private interface inside pods (Multus mode).
    #[arg(long, default_value = "eth1")]
    pod_interface: String,
    /// The cluster's DNS domain (kept in pods' search path).
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Health/metrics listen address.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Validate the flags and environment, print the effective configuration
    /// as JSON and exit (nothing is bound or contacted).
    #[arg(long)]
    check_config: bool,
    /// How often claims of gone pods and nodes are swept, seconds.
    #[arg(long, default_value_t = 60, hide = true)]
    claims_sweep_seconds: u64,
    /// Number claims younger than this are never collected, seconds (a pod is
    /// stored only after admission claimed its number).
    #[arg(long, default_value_t = privnet_controller::webhook::numbering::DEFAULT_GRACE.as_secs(), hide = true)]
    claims_grace_seconds: u64,
    /// How long a PrivateNetwork outlives its deleted Project, seconds: a
    /// Project restored in time keeps its network's id, VNI and names.
    #[arg(long, default_value_t = privnet_controller::orphan::DEFAULT_ORPHAN_GRACE.as_secs())]
    orphan_network_grace_seconds: u64,
}

struct Health(Arc<Metrics>);

impl HealthSource for Health {
    fn ready(&self) -> Result<(), String> {
        // Every replica serves the webhook, leader or not.
        Ok(())
    }
    fn metrics(&self) -> String {
        self.0.encode()
    }
}

/// The controller's settings from its flags, validated (pure).
fn config_of(args: &ControllerArgs) -> Result<ControllerConfig> {
    privnet_core::naming::validate_env_prefix(&args.env_prefix)?;
    privnet_core::naming::validate_domain(&args.domain)
        .with_context(|| format!("invalid --domain {:?}", args.domain))?;
    privnet_core::naming::validate_domain(&args.cluster_domain)
        .with_context(|| format!("invalid --cluster-domain {:?}", args.cluster_domain))?;
    if args.pod_interface.is_empty()
        || args.pod_interface.len() > 15
        || args.pod_interface.contains(['/', ' '])
    {
        anyhow::bail!(
            "invalid --pod-interface {:?}: an interface name (1-15 characters, no '/' or space)",
            args.pod_interface
        );
    }
    if args.multus_network.is_empty() {
        anyhow::bail!("invalid --multus-network: empty");
    }
    Ok(ControllerConfig {
        namespace: args.namespace.clone(),
        domain: args.domain.clone(),
        mesh_cidr: args.mesh_cidr,
        env_prefix: args.env_prefix.clone(),
        vni_range: args.vni_range.0.clone(),
        attach: match args.attach_mode.as_str() {
            "chained" => AttachMode::Chained,
            _ => AttachMode::Multus {
                network: args.multus_network.clone(),
                interface: args.pod_interface.clone(),
            },
        },
        cluster_domain: args.cluster_domain.clone(),
        claims_sweep_period: Duration::from_secs(args.claims_sweep_seconds),
        claims_grace: Duration::from_secs(args.claims_grace_seconds),
        orphan_grace: Duration::from_secs(args.orphan_network_grace_seconds),
    })
}

/// Prints the effective configuration (`--check-config`).
fn check_config(args: &ControllerArgs, config: &ControllerConfig) -> Result<()> {
    let mut notes = Vec::new();
    if args.identity.is_none() {
        notes.push("no --identity/POD_NAME: the process id names this replica".to_string());
    }
    if args.webhook_insecure {
        notes.push("--webhook-insecure: the webhook serves plain HTTP (development only)".into());
    } else {
        super::check::note_missing(&mut notes, "webhook certificate", &args.tls_cert);
        super::check::note_missing(&mut notes, "webhook key", &args.tls_key);
    }
    let attach = match &config.attach {
        AttachMode::Chained => serde_json::json!({ "mode": "chained" }),
        AttachMode::Multus { network, interface } => {
            serde_json::json!({ "mode": "multus", "network": network, "podInterface": interface })
        }
    };
    let doc = serde_json::json!({
        "namespace": config.namespace, "identity": args.identity, "leaseName": args.lease_name,
        "leaseSeconds": args.lease_seconds, "domain": config.domain,
        "meshCidr": config.mesh_cidr.to_string(), "vniRange": args.vni_range.to_string(),
        "envPrefix": config.env_prefix, "webhookAddr": args.webhook_addr.to_string(),
        "webhookInsecure": args.webhook_insecure, "tlsCert": args.tls_cert, "tlsKey": args.tls_key,
        "attachment": attach, "clusterDomain": config.cluster_domain,
        "metricsAddr": args.metrics_addr.to_string(),
    });
    super::check::print("controller", doc, notes)
}

/// Runs until SIGTERM/SIGINT, or until leadership is lost.
pub fn run(args: ControllerArgs) -> Result<()> {
    let config = config_of(&args)?;
    if args.check_config {
        return check_config(&args, &config);
    }
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("privnet-controller-{}", std::process::id()));
    let tls = if args.webhook_insecure {
        None
    } else {
        Some(tls_config_from_pem(&args.tls_cert, &args.tls_key)?)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let client = kube::Client::try_default().await.context("failed to create the Kubernetes client")?;
        let metrics = Arc::new(Metrics::default());
        let ctx = Context::new(client.clone(), config.clone(), metrics.clone());

        let metrics_listener = tokio::net::TcpListener::bind(args.metrics_addr).await.with_context(|| format!("failed to bind {}", args.metrics_addr))?;
        tokio::spawn(health::serve(metrics_listener, Arc::new(Health(metrics.clone())), std::future::pending()));
        let webhook_listener = tokio::net::TcpListener::bind(args.webhook_addr).await.with_context(|| format!("failed to bind {}", args.webhook_addr))?;
        let admitter = Arc::new(Admitter { client: client.clone(), config, metrics: metrics.clone(), grace: Duration::from_secs(args.claims_grace_seconds) });
        let tls = tls.map(|(config, cert)| {
            // A rotated Secret reaches the mounted files; serve it without a restart.
            tokio::spawn(cert.watch(Duration::from_secs(10)));
            config
        });
        tokio::spawn(serve_tls(webhook_listener, tls, admitter, std::future::pending()));

        let elector = LeaderElector::new(Api::<Lease>::namespaced(client, &args.namespace), &args.lease_name, &identity, Duration::from_secs(args.lease_seconds));
        let (tx, mut leader) = tokio::sync::watch::channel(false);
        let (resign, resigned) = tokio::sync::oneshot::channel::<()>();
        let election = tokio::spawn(elector.run(tx, async {
            let _ = resigned.await;
        }));
        tracing::info!(%identity, webhook = %args.webhook_addr, "controller started; waiting for leadership");
        tokio::select! {
            _ = leader.wait_for(|l| *l) => {},
            _ = super::shutdown_signal() => return Ok(()),
        }
        metrics.leader.set(1);
        tracing::info!(%identity, "leader: reconciling");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let controllers = tokio::spawn(run_controllers(ctx, async {
            let _ = stopped.await;
        }));
        let outcome = tokio::select! {
            _ = leader.wait_for(|l| !*l) => Err(anyhow::anyhow!("lost the leader lease; exiting so that only one replica reconciles")),
            _ = super::shutdown_signal() => Ok(()),
        };
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), controllers).await;
        // Release the Lease so the next replica leads at once, not after expiry.
        let _ = resign.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), election).await;
        outcome
    })
}
