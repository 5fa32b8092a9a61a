//! The agent of one node: owns the attachment book, the local networks and
//! the WireGuard interface; answers the CNI plugin; converges the kernel
//! towards what the cluster view and the book ask for.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use privnet_core::rpc::{
    AttachRequest, Attachment, AttachmentKey, Dns, ErrorKind, NetworkSelector, Request, Response,
};

use super::book::{AttachmentBook, BookError};
use super::config::AgentConfig;
use super::datapath::GuardedPort;
use super::datapath::netns::NetnsFd;
use super::datapath::wireguard::{Wireguard, load_or_create_key};
use super::dns::handler::DnsCounters;
use super::local_network::LocalNetwork;
use super::metrics::AgentMetrics;
use super::rpc_server::RpcHandler;
use super::source::Source;
use super::store::{AttachmentRecord, AttachmentStore};
use privnet_core::mac::parse_mac;
use privnet_core::naming::PrivateName;
use privnet_core::view::{ClusterView, EndpointInfo, NetworkInfo, NodeInfo};
use privnet_core::zone::ZoneEndpoint;

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
pub(super) struct State {
    pub book: AttachmentBook,
    pub store: Box<dyn AttachmentStore + Send>,
    pub networks: BTreeMap<String, LocalNetwork>,
}

/// Bookkeeping of the convergence loop (its own lock, so CNI requests never
/// wait for kernel/nft/API I/O of a convergence pass).
#[derive(Default)]
pub(super) struct ConvergeState {
    pub wg: Option<Wireguard>,
    /// Per network: the guard's port table and when its live set last changed.
    pub port_tables: BTreeMap<String, (super::datapath::guard::PortTable, std::time::Instant)>,
    pub applied_fdb: BTreeMap<String, BTreeSet<privnet_core::fdb::FdbEntry>>,
    pub published: BTreeMap<AttachmentKey, EndpointInfo>,
    pub node_guard_applied: bool,
    /// Peers without a handshake, since when (see the convergence pass).
    pub silent_since: BTreeMap<String, std::time::Instant>,
}

/// The agent.
pub struct Agent<S: Source> {
    pub(super) cfg: AgentConfig,
    pub(super) source: S,
    pub(super) agent_ns: NetnsFd,
    pub(super) public_key: String,
    pub(super) state: tokio::sync::Mutex<State>,
    pub(super) conv: tokio::sync::Mutex<ConvergeState>,
    pub(super) view: RwLock<Arc<ClusterView>>,
    pub(super) phase: RwLock<Phase>,
    pub(super) wake: Arc<tokio::sync::Notify>,
    pub(super) dns_counters: Arc<DnsCounters>,
    pub(super) metrics: AgentMetrics,
}

impl<S: Source> Agent<S> {
    /// Loads the key and the persisted attachments and publishes this node.
    /// Nothing in the kernel is flushed: the first convergence adopts it.
    pub async fn start(
        cfg: AgentConfig,
        source: S,
        store: Box<dyn AttachmentStore + Send>,
    ) -> Result<Arc<Self>, AgentError> {
        let agent_ns = NetnsFd::current()?;
        std::fs::create_dir_all(&cfg.state_dir).map_err(|e| super::store::StoreError::Io {
            path: cfg.state_dir.display().to_string(),
            source: e,
        })?;
        let public_key = load_or_create_key(&cfg.state_dir)?.public_key().to_string();
        let mut store = store;
        // A record whose container namespace is gone (node reboot, container
        // removed while the agent was down) is released now: no leak.
        let mut records = store.load()?;
        records.retain(|r| {
            let alive = std::path::Path::new(&r.netns).exists();
            if !alive {
                tracing::info!(container = %r.key.container_id, "releasing the attachment of a vanished container");
                let _ = store.remove(&r.key);
            }
            alive
        });
        let (book, rejected) = AttachmentBook::restore(records);
        for r in rejected {
            tracing::warn!(container = %r.key.container_id, address = %r.address, "dropping a conflicting attachment record");
        }
        source
            .publish_node(&NodeInfo {
                name: cfg.node.clone(),
                public_key: public_key.clone(),
                endpoint: cfg.endpoint,
                vtep: None,
            })
            .await?;
        let metrics = AgentMetrics::default();
        Ok(Arc::new(Self {
            cfg,
            source,
            agent_ns,
            public_key,
            state: tokio::sync::Mutex::new(State {
                book,
                store,
                networks: BTreeMap::new(),
            }),
            conv: tokio::sync::Mutex::new(ConvergeState::default()),
            view: RwLock::new(Arc::new(ClusterView::default())),
            phase: RwLock::new(Phase::WaitingForMesh),
            wake: Arc::new(tokio::sync::Notify::new()),
            dns_counters: Arc::new(metrics.dns.clone()),
            metrics,
        }))
    }

    pub(super) fn wake_handle(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    /// The node's WireGuard public key.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// Current readiness.
    pub fn phase(&self) -> Phase {
        self.phase.read().expect("phase lock").clone()
    }

    pub(super) fn current_view(&self) -> Arc<ClusterView> {
        self.view.read().expect("view lock").clone()
    }

    /// Follows the source forever, waking the convergence on every change.
    pub async fn follow_source(self: Arc<Self>) {
        let mut rev = 0;
        loop {
            match self.source.next_view(rev).await {
                Ok((r, view)) => {
                    rev = r;
                    *self.view.write().expect("view lock") = Arc::new(view);
                    self.wake.notify_one();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "failed to read the cluster view");
                    self.metrics.errors.inc();
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
    }

    fn resolve<'v>(
        &self,
        view: &'v ClusterView,
        sel: &NetworkSelector,
    ) -> Result<&'v NetworkInfo, String> {
        if let Some(id) = &sel.network_id {
            return view.network(id).ok_or_else(|| {
                format!("network {id:?} is unknown (or its status is not complete yet)")
            });
        }
        if let Some(ns) = &sel.pod_namespace {
            return view.network_of_namespace(ns).ok_or_else(|| {
                format!("namespace {ns:?} belongs to no project with a ready network")
            });
        }
        Err("no network given: set \"network\" in the CNI config or pass K8S_POD_NAMESPACE".into())
    }

    async fn attach(&self, req: AttachRequest) -> Response {
        if self.phase() == Phase::WaitingForMesh {
            return err(
                ErrorKind::NotReady,
                "the agent is waiting for its mesh address",
            );
        }
        let view = self.current_view();
        let network = match self.resolve(&view, &req.network) {
            Ok(n) => n.clone(),
            Err(m) => return err(ErrorKind::UnknownNetwork, m),
        };
        let app = req.workload.application_id.as_deref();
        let ptype = req
            .workload
            .process_type
            .as_deref()
            .unwrap_or(super::book::DEFAULT_PROCESS_TYPE);
        let numbers: BTreeSet<u32> = view
            .endpoints
            .iter()
            .filter(|e| {
                e.network_id == network.id
                    && Some(e.application_id.as_str()) == app
                    && e.process_type == ptype
            })
            // Local numbers (this request's included) come from the book itself.
            .filter(|e| e.node != self.cfg.node)
            .map(|e| e.container_number)
            .collect();
        let mut fenced: BTreeSet<std::net::Ipv4Addr> = view
            .endpoints
            .iter()
            .filter(|e| e.network_id == network.id && e.node != self.cfg.node)
            .map(|e| e.ip)
            .collect();
        let mut st = self.state.lock().await;
        let existed = st.book.get(&req.key).is_some();
        let owner = self.claim_owner(&req.key);
        let record = loop {
            let record = match st.book.attach(&req, &network, &numbers, &fenced) {
                Ok(r) => r,
                Err(e) => return book_error(e),
            };
            // Cluster-wide uniqueness: claim the address (compare-and-swap);
            // on a lost race fence it off and take the next one.
            match self
                .source
                .claim_address(&network.id, record.address.addr(), &owner)
                .await
            {
                Ok(true) => break record,
                Ok(false) if !existed && fenced.len() < 4096 => {
                    st.book.release(&record.key);
                    fenced.insert(record.address.addr());
                }
                Ok(false) => {
                    return err(
                        ErrorKind::Internal,
                        format!("address {} is held by another node", record.address.addr()),
                    );
                }
                Err(e) => {
                    if !existed {
                        st.book.release(&record.key);
                    }
                    return err(
                        ErrorKind::Internal,
                        format!("failed to claim {}: {e}", record.address.addr()),
                    );
                }
            }
        };
        if !existed && let Err(e) = st.store.put(&record) {
            st.book.release(&record.key);
            let _ = self
                .source
                .release_address(&network.id, record.address.addr(), &owner)
                .await;
            return err(ErrorKind::Internal, e.to_string());
        }
        if let Err(e) = self.ensure_local_network(&mut st, &network).await {
            st.book.release(&record.key);
            let _ = st.store.remove(&record.key);
            let _ = self
                .source
                .release_address(&network.id, record.address.addr(), &owner)
                .await;
            self.metrics.errors.inc();
            return err(ErrorKind::Internal, super::error_chain(&e));
        }
        let local = &st.networks[&network.id];
        if let Some(ep) = zone_endpoint(&record) {
            let _ = local.zone.write().expect("zone lock").upsert(&ep);
        }
        let attachment = attachment_of(&record, local, &self.cfg.domain);
        self.metrics
            .attachments
            .set(st.book.records().count() as i64);
        drop(st);
        self.wake.notify_one();
        Response::Attached(Box::new(attachment))
    }

    /// Brings `network` up on this node if it is not yet.
    pub(super) async fn ensure_local_network(
        &self,
        st: &mut State,
        network: &NetworkInfo,
    ) -> Result<(), super::local_network::LocalNetworkError> {
        if st.networks.contains_key(&network.id) {
            return Ok(());
        }
        let vtep = self
            .current_view()
            .node(&self.cfg.node)
            .and_then(|n| n.vtep)
            .ok_or_else(|| super::local_network::LocalNetworkError::Dns {
                id: network.id.clone(),
                message: "no mesh address yet".into(),
            })?;
        let ports = ports_of(st.book.records().filter(|r| r.network_id == network.id));
        let local = LocalNetwork::up(
            &self.cfg,
            &self.agent_ns,
            network,
            vtep,
            &ports,
            self.dns_counters.clone(),
        )
        .await?;
        st.networks.insert(network.id.clone(), local);
        Ok(())
    }

    fn claim_owner(&self, key: &AttachmentKey) -> String {
        privnet_api::keys::address_claim_owner(&self.cfg.node, &key.container_id, &key.ifname)
    }

    async fn release(&self, key: &AttachmentKey) -> Response {
        let mut st = self.state.lock().await;
        let Some(record) = st.book.release(key) else {
            return Response::Released { freed: 0 };
        };
        if let Err(e) = st.store.remove(key) {
            tracing::warn!(error = %e, "failed to remove an attachment record");
        }
        if let Err(e) = self
            .source
            .release_address(
                &record.network_id,
                record.address.addr(),
                &self.claim_owner(key),
            )
            .await
        {
            tracing::warn!(error = %e, "failed to release an address claim");
        }
        if let (Some(local), Some(ep)) =
            (st.networks.get(&record.network_id), zone_endpoint(&record))
        {
            local.zone.write().expect("zone lock").remove(&ep.name);
        }
        self.metrics
            .attachments
            .set(st.book.records().count() as i64);
        drop(st);
        self.wake.notify_one();
        Response::Released { freed: 1 }
    }

    async fn check(&self, key: &AttachmentKey) -> Response {
        let st = self.state.lock().await;
        match st.book.get(key).and_then(|r| {
            st.networks
                .get(&r.network_id)
                .map(|l| attachment_of(r, l, &self.cfg.domain))
        }) {
            Some(a) => Response::Attached(Box::new(a)),
            None => err(
                ErrorKind::NotFound,
                format!(
                    "container {} ({}) is not attached",
                    key.container_id, key.ifname
                ),
            ),
        }
    }

    async fn gc(&self, network_id: Option<&str>, valid: Vec<AttachmentKey>) -> Response {
        let valid: BTreeSet<AttachmentKey> = valid.into_iter().collect();
        let mut st = self.state.lock().await;
        let freed = st.book.gc(network_id, &valid);
        for r in &freed {
            let _ = st.store.remove(&r.key);
            let _ = self
                .source
                .release_address(&r.network_id, r.address.addr(), &self.claim_owner(&r.key))
                .await;
            if let (Some(local), Some(ep)) = (st.networks.get(&r.network_id), zone_endpoint(r)) {
                local.zone.write().expect("zone lock").remove(&ep.name);
            }
        }
        drop(st);
        self.wake.notify_one();
        Response::Released { freed: freed.len() }
    }
}

impl<S: Source> RpcHandler for Agent<S> {
    async fn handle(&self, req: Request) -> Response {
        let started = std::time::Instant::now();
        let response = match req {
            Request::Status => match self.phase() {
                Phase::WaitingForMesh => err(
                    ErrorKind::NotReady,
                    "the agent is waiting for its mesh address",
                ),
                _ => Response::Ready,
            },
            Request::Attach(a) => self.attach(a).await,
            Request::Release(k) => self.release(&k).await,
            Request::Check(k) => self.check(&k).await,
            Request::Gc { network_id, valid } => self.gc(network_id.as_deref(), valid).await,
        };
        self.metrics
            .rpc_seconds
            .observe(started.elapsed().as_secs_f64());
        response
    }
}

pub(super) fn err(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::Error {
        kind,
        message: message.into(),
    }
}

fn book_error(e: BookError) -> Response {
    let kind = match &e {
        BookError::Ipam(privnet_core::ipam::IpamError::Exhausted { .. }) => ErrorKind::Exhausted,
        BookError::Ipam(_) => ErrorKind::Internal,
        _ => ErrorKind::Invalid,
    };
    err(kind, e.to_string())
}

/// Guard ports of these records.
pub(super) fn ports_of<'a>(
    records: impl Iterator<Item = &'a AttachmentRecord>,
) -> Vec<GuardedPort> {
    let mut ports: Vec<GuardedPort> = records
        .filter_map(|r| {
            Some(GuardedPort {
                host_ifname: r.host_ifname.clone(),
                mac: parse_mac(&r.mac).ok()?,
                ip: r.address.addr(),
            })
        })
        .collect();
    ports.sort_by(|a, b| a.host_ifname.cmp(&b.host_ifname));
    ports
}

/// The zone entry of a record.
pub(super) fn zone_endpoint(r: &AttachmentRecord) -> Option<ZoneEndpoint> {
    Some(ZoneEndpoint {
        name: PrivateName {
            number: r.container_number,
            process_type: r.process_type.clone(),
            application_id: r.application_id.clone(),
            network_id: r.network_id.clone(),
        },
        address: r.address.addr(),
    })
}

fn attachment_of(r: &AttachmentRecord, local: &LocalNetwork, domain: &str) -> Attachment {
    let zone = format!("{}.{domain}", r.network_id);
    Attachment {
        key: r.key.clone(),
        network_id: r.network_id.clone(),
        address: r.address,
        gateway: local.spec.gateway.addr(),
        mac: r.mac.clone(),
        mtu: local.spec.mtu,
        network_netns: format!("/run/netns/{}", local.spec.netns),
        bridge: local.spec.bridge.clone(),
        host_ifname: r.host_ifname.clone(),
        hostname: format!(
            "{}.{}.{}.{zone}",
            r.container_number, r.process_type, r.application_id
        ),
        dns: Dns {
            nameservers: vec![local.spec.gateway.addr().to_string()],
            search: vec![zone],
        },
    }
}

impl<S: Source> Agent<S> {
    /// Prometheus exposition.
    pub fn metrics_text(&self) -> String {
        self.metrics.encode()
    }
}
