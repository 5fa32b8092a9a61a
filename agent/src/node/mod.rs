//! The agent of one node: owns the attachment book, the local networks and
//! the mesh; answers the CNI plugin; converges the kernel towards what the
//! cluster view and the book ask for.
//!
//! - [`attach`]: the Attach verb, with a step list that undoes what it did.
//! - [`rpc`]: the other CNI verbs and the RPC dispatch.
//! - [`converge`]: the convergence loop and pass (the I/O).
//! - [`plan`]: the convergence decisions, pure, the clock an argument.
//! - [`hold`]: the blast-radius guard, pure: big removals wait.
//! - [`repair`], [`repair_plan`]: the periodic read-back and repair of the datapath, and its
//!   pure decisions.
//! - [`expected`]: the desired view of the node, for `privnet doctor`.
//! - [`error`]: typed errors of the verbs and of a pass.

mod attach;
mod converge;
pub mod error;
pub mod expected;
pub mod hold;
pub mod plan;
mod repair;
pub mod repair_plan;
mod rotate;
mod rpc;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use privnet_core::rpc::AttachmentKey;
use privnet_core::view::{ClusterView, EndpointInfo, NodeInfo};

use super::book::AttachmentBook;
use super::config::AgentConfig;
use super::datapath::guard::PortTable;
use super::datapath::wireguard::{load_next_key, load_or_create_key};
use super::datapath::{KernelDatapath, NodeDatapath};
use super::dns::handler::DnsCounters;
use super::local_network::LocalNetwork;
use super::metrics::AgentMetrics;
use super::source::Source;
use super::store::{AttachmentRecord, AttachmentStore};

pub use error::{AttachError, ConvergeError};

/// Errors starting the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Namespace handling failed.
    #[error("failed to open the agent's network namespace")]
    Netns(#[from] super::datapath::netns::NetnsError),
    /// The WireGuard key could not be loaded or created.
    #[error("failed to load the WireGuard key")]
    Key(#[from] super::datapath::wireguard::WireguardError),
    /// The attachment state could not be read.
    #[error("failed to load the attachment state")]
    Store(#[from] super::store::StoreError),
    /// Publishing to the source failed.
    #[error("failed to publish this node")]
    Source(#[from] super::source::SourceError),
}

/// Readiness of the agent (what `/readyz` and CNI STATUS report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the controller to give this node a mesh address.
    WaitingForMesh,
    /// WireGuard is up with its mesh address: attachments are served.
    Ready,
    /// The last convergence failed (still serving what exists).
    Degraded(String),
}

/// Mutable state, serialised by one async mutex (concurrent ADDs are safe).
pub(crate) struct State {
    pub book: AttachmentBook,
    pub store: Box<dyn AttachmentStore + Send>,
    pub networks: BTreeMap<String, LocalNetwork>,
}

/// Bookkeeping of the convergence loop (its own lock, so CNI requests never
/// wait for kernel/nft/API I/O of a convergence pass).
#[derive(Default)]
pub(crate) struct ConvergeState {
    /// WireGuard and the node guard are up.
    pub mesh_up: bool,
    pub applied_fdb: BTreeMap<String, BTreeSet<privnet_core::fdb::FdbEntry>>,
    /// ARP answers applied per network.
    pub applied_arp: BTreeMap<String, BTreeSet<privnet_core::fdb::ArpAnswer>>,
    pub published: BTreeMap<AttachmentKey, EndpointInfo>,
    /// Published endpoints the source's view has shown.
    pub shown: BTreeSet<AttachmentKey>,
    /// Peers without a handshake, since when.
    pub peer_timers: plan::PeerTimers,
    /// The blast-radius guard's last good view and hold.
    pub removals: hold::RemovalGuard,
    /// Other nodes' endpoints that just left the view.
    pub settling: hold::SettlingRemovals,
    /// Drifts the last read-back left unrepaired.
    pub repairs: repair_plan::RepairTracker,
    /// Key rotations: this node's, and its peers' as far as it followed them.
    pub rotation: rotate::RotationState,
}

/// Per network: the port guard as applied and when its live set last
/// changed. Its own lock, shared by Attach (which installs a port's rules
/// before answering) and the convergence pass (which keeps the whole set
/// right and purges retired ports). Lock order: `state`, then `guards`.
pub(crate) type PortGuards = BTreeMap<String, (PortTable, Instant)>;

/// The agent, over a source of cluster views and a datapath (the kernel's
/// unless a test gives it the in-memory fake).
pub struct Agent<S: Source, D: NodeDatapath = KernelDatapath> {
    pub(crate) cfg: AgentConfig,
    pub(crate) source: S,
    pub(crate) datapath: D,
    /// The current public key (changes when a rotation switches).
    pub(crate) public_key: RwLock<String>,
    pub(crate) state: tokio::sync::Mutex<State>,
    pub(crate) conv: tokio::sync::Mutex<ConvergeState>,
    pub(crate) guards: tokio::sync::Mutex<PortGuards>,
    pub(crate) view: RwLock<Arc<ClusterView>>,
    pub(crate) phase: RwLock<Phase>,
    /// A repair that keeps failing (the agent is unready meanwhile).
    pub(crate) repair_failing: RwLock<Option<String>>,
    /// Host veths found gone: their ports are retired from the guard and
    /// CHECK reports them, until the attachment is released.
    pub(crate) gone_ports: RwLock<BTreeSet<String>>,
    pub(crate) wake: Arc<tokio::sync::Notify>,
    /// The standbys the watcher polls and what it switched (see [`rotate`]).
    pub(crate) standby_watch: std::sync::Mutex<rotate::StandbyWatch>,
    /// Serialises setting the peers (the pass, the repair) and a standby's promotion (the watcher).
    pub(crate) peers_lock: tokio::sync::Mutex<()>,
    pub(crate) dns_counters: Arc<DnsCounters>,
    pub(crate) metrics: AgentMetrics,
}

impl<S: Source> Agent<S, KernelDatapath> {
    /// Starts the agent on the kernel datapath of the calling thread's
    /// namespace (see [`Agent::start_with`]).
    pub async fn start(
        cfg: AgentConfig,
        source: S,
        store: Box<dyn AttachmentStore + Send>,
    ) -> Result<Arc<Self>, AgentError> {
        Self::start_with(cfg, source, store, KernelDatapath::current()?).await
    }
}

impl<S: Source, D: NodeDatapath> Agent<S, D> {
    /// Loads the key and the persisted attachments and publishes this node.
    /// Nothing in the kernel is flushed: the first convergence adopts it.
    pub async fn start_with(
        cfg: AgentConfig,
        source: S,
        store: Box<dyn AttachmentStore + Send>,
        datapath: D,
    ) -> Result<Arc<Self>, AgentError> {
        std::fs::create_dir_all(&cfg.state_dir).map_err(|e| super::store::StoreError::Io {
            path: cfg.state_dir.display().to_string(),
            source: e,
        })?;
        let public_key = load_or_create_key(&cfg.state_dir)?.public_key().to_string();
        // A rotation under way when the agent stopped resumes (its timeout anew).
        let pending = load_next_key(&cfg.state_dir)?.map(|k| privnet_core::rotation::Pending {
            next: k.public_key().to_string(),
            since: Instant::now(),
        });
        let mut store = store;
        // A record whose container namespace is gone (node reboot, container
        // removed while the agent was down) is released now: no leak.
        let mut records = store.load()?;
        records.retain(|r| {
            let alive = datapath.container_alive(&r.netns);
            if !alive {
                tracing::info!(container = %r.key.container_id, "releasing the attachment of a vanished container");
                if let Err(e) = store.remove(&r.key) {
                    tracing::warn!(error = %super::error_chain(&e), "failed to remove an attachment record");
                }
            }
            alive
        });
        let (book, rejected) = AttachmentBook::restore(records);
        for r in rejected {
            tracing::warn!(container = %r.key.container_id, address = %r.address, "dropping a conflicting attachment record");
        }
        release_unheld_claims(&cfg.node, &source, &book, store.as_ref()).await;
        let me = NodeInfo {
            name: cfg.node.clone(),
            public_key: public_key.clone(),
            endpoint: cfg.endpoint,
            vtep: None,
            next_public_key: pending.as_ref().map(|p| p.next.clone()),
            accepted_keys: Vec::new(),
        };
        source.publish_node(&me).await?;
        let conv = ConvergeState {
            rotation: rotate::RotationState {
                pending,
                published: Some(me),
                ..Default::default()
            },
            ..Default::default()
        };
        let metrics = AgentMetrics::default();
        Ok(Arc::new(Self {
            cfg,
            source,
            datapath,
            public_key: RwLock::new(public_key),
            state: tokio::sync::Mutex::new(State {
                book,
                store,
                networks: BTreeMap::new(),
            }),
            conv: tokio::sync::Mutex::new(conv),
            guards: tokio::sync::Mutex::new(PortGuards::new()),
            view: RwLock::new(Arc::new(ClusterView::default())),
            phase: RwLock::new(Phase::WaitingForMesh),
            repair_failing: RwLock::new(None),
            gone_ports: RwLock::new(BTreeSet::new()),
            wake: Arc::new(tokio::sync::Notify::new()),
            standby_watch: Default::default(),
            peers_lock: tokio::sync::Mutex::new(()),
            dns_counters: Arc::new(metrics.dns.clone()),
            metrics,
        }))
    }

    /// The node's WireGuard public key (the current one).
    pub fn public_key(&self) -> String {
        self.public_key.read().expect("key lock").clone()
    }

    /// Current readiness: degraded while a repair keeps failing.
    pub fn phase(&self) -> Phase {
        let phase = self.phase.read().expect("phase lock").clone();
        match (phase, &*self.repair_failing.read().expect("repair lock")) {
            (Phase::Ready, Some(failing)) => Phase::Degraded(failing.clone()),
            (phase, _) => phase,
        }
    }

    /// The datapath the agent drives.
    pub fn datapath(&self) -> &D {
        &self.datapath
    }

    /// The attachments of this node, by key.
    pub async fn attachments(&self) -> Vec<AttachmentRecord> {
        self.state.lock().await.book.records().cloned().collect()
    }

    /// The guarded ports of `records`, less those whose host veth is gone.
    pub(crate) fn live_ports<'a>(
        &self,
        records: impl Iterator<Item = &'a AttachmentRecord>,
    ) -> Vec<super::datapath::guard::GuardedPort> {
        let gone = self.gone_ports.read().expect("gone ports lock");
        let mut ports = plan::ports_of(records);
        ports.retain(|p| !gone.contains(&p.host_ifname));
        ports
    }

    pub(crate) fn current_view(&self) -> Arc<ClusterView> {
        self.view.read().expect("view lock").clone()
    }

    /// Replaces the cluster view and wakes the convergence.
    pub fn set_view(&self, view: ClusterView) {
        *self.view.write().expect("view lock") = Arc::new(view);
        self.wake.notify_one();
    }

    /// Follows the source forever, waking the convergence on every change.
    pub async fn follow_source(self: Arc<Self>) {
        let mut rev = 0;
        loop {
            match self.source.next_view(rev).await {
                Ok((r, view)) => {
                    rev = r;
                    self.set_view(view);
                }
                Err(e) => {
                    tracing::warn!(error = %super::error_chain(&e), "failed to read the cluster view");
                    self.metrics.errors.inc();
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
    }

    fn claim_owner(&self, key: &AttachmentKey) -> String {
        privnet_api::keys::address_claim_owner(&self.cfg.node, &key.container_id, &key.ifname)
    }

    /// Prometheus exposition.
    pub fn metrics_text(&self) -> String {
        self.metrics.encode()
    }
}

/// Releases the address claims of this node that no attachment holds: an
/// ADD cut short (agent killed) after its claim and before its record, or a
/// record released at start because its container is gone. Run at start,
/// before any verb is served, so no ADD is in flight. Claims of records set
/// aside as corrupted stay: their containers may still use the address.
async fn release_unheld_claims<S: Source>(
    node: &str,
    source: &S,
    book: &AttachmentBook,
    store: &(dyn AttachmentStore + Send),
) {
    let owner = |k: &AttachmentKey| {
        privnet_api::keys::address_claim_owner(node, &k.container_id, &k.ifname)
    };
    let held: BTreeSet<String> = book
        .records()
        .map(|r| owner(&r.key))
        .chain(store.quarantined().iter().map(owner))
        .collect();
    let claims = match source.node_claims(node).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %super::error_chain(&e), "failed to list this node's address claims");
            return;
        }
    };
    for c in claims.into_iter().filter(|c| !held.contains(&c.owner)) {
        tracing::info!(network = %c.network_id, address = %c.ip, owner = %c.owner, "releasing an address claim no attachment holds");
        if let Err(e) = source.release_address(&c.network_id, c.ip, &c.owner).await {
            tracing::warn!(error = %super::error_chain(&e), "failed to release an address claim");
        }
    }
}
