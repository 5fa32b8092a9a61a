//! The real privnet agent, in process, for the plugin tests: its kernel
//! datapath for everything the plugin touches (the network's namespace,
//! bridge, VXLAN port, guard, DNS responder) and the in-memory fake for the
//! mesh (one node has no peers). Its own namespace is a throwaway one
//! holding a veth in place of WireGuard, so nothing is created in the
//! host's namespace.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use privnet_agent::config::AgentConfig;
use privnet_agent::datapath::drift::{Drift, NetworkRepair};
use privnet_agent::datapath::guard::{GuardedPort, PortTable};
use privnet_agent::datapath::network::NetworkDatapath;
use privnet_agent::datapath::wireguard::{BackendChoice, MeshPeer, PeerStatus};
use privnet_agent::datapath::{
    DatapathError, KernelDatapath, MemoryDatapath, MeshSpec, NetnsFd, NodeDatapath,
};
use privnet_agent::dns::handler::DnsCounters;
use privnet_agent::dns::server::Responder;
use privnet_agent::node::{Agent, Phase};
use privnet_agent::source::{Source, SourceError};
use privnet_agent::store::{AttachmentRecord, DiskStore};
use privnet_core::fdb::FdbEntry;
use privnet_core::rpc::{AttachRequest, AttachmentKey, NetworkSelector, Workload};
use privnet_core::view::{ClusterView, EndpointInfo, NetworkInfo, NodeInfo};
use privnet_core::zone::Zone;

use super::{ip, unique_name};

/// Network id the test agent serves (to pods of namespace `ns`).
const NETWORK_ID: &str = "pn-test";
const NODE: &str = "n1";
const VNI: u32 = 100;
const VTEP: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
const UNDERLAY: &str = "pntwg";
/// Key of the attachment that holds the network up (see [`TestAgent::ensure_network`]).
const ANCHOR: &str = "anchor";

/// Kernel networks, fake mesh.
struct TestDatapath {
    kernel: KernelDatapath,
    mesh: MemoryDatapath,
}

impl NodeDatapath for TestDatapath {
    fn container_alive(&self, netns: &str) -> bool {
        self.kernel.container_alive(netns)
    }
    fn drift_signal(&self) -> Arc<privnet_agent::datapath::events::DriftSignal> {
        // The networks' listeners are the kernel's.
        self.kernel.drift_signal()
    }
    async fn ensure_mesh(&self, mesh: &MeshSpec) -> Result<(), DatapathError> {
        self.mesh.ensure_mesh(mesh).await
    }
    async fn set_peers(&self, peers: &[MeshPeer]) -> Result<(), DatapathError> {
        self.mesh.set_peers(peers).await
    }
    async fn read_peers(&self) -> Result<Vec<PeerStatus>, DatapathError> {
        self.mesh.read_peers().await
    }
    async fn switch_key(
        &self,
        mesh: &MeshSpec,
        key: &privnet_agent::datapath::wireguard::Key,
    ) -> Result<(), DatapathError> {
        self.mesh.switch_key(mesh, key).await
    }
    async fn promote_standby(&self, peer: &MeshPeer, old: &str) -> Result<(), DatapathError> {
        self.mesh.promote_standby(peer, old).await
    }
    async fn poke(&self, vteps: &[Ipv4Addr]) {
        self.mesh.poke(vteps).await
    }
    async fn ensure_network(
        &self,
        spec: &NetworkDatapath,
        ports: &[GuardedPort],
    ) -> Result<(), DatapathError> {
        self.kernel.ensure_network(spec, ports).await
    }
    async fn start_dns(
        &self,
        spec: &NetworkDatapath,
        zone: Arc<RwLock<Zone>>,
        upstream: Option<SocketAddr>,
        counters: Arc<DnsCounters>,
    ) -> Result<Option<Responder>, DatapathError> {
        self.kernel.start_dns(spec, zone, upstream, counters).await
    }
    async fn remove_network(&self, spec: &NetworkDatapath) -> Result<(), DatapathError> {
        self.kernel.remove_network(spec).await
    }
    fn list_networks(&self, prefix: &str) -> Result<Vec<String>, DatapathError> {
        self.kernel.list_networks(prefix)
    }
    fn remove_leftover(&self, netns: &str) -> Result<(), DatapathError> {
        self.kernel.remove_leftover(netns)
    }
    async fn set_ports(
        &self,
        spec: &NetworkDatapath,
        ports: &[GuardedPort],
    ) -> Result<(), DatapathError> {
        self.kernel.set_ports(spec, ports).await
    }
    async fn update_ports(
        &self,
        spec: &NetworkDatapath,
        table: &PortTable,
        ports: &[GuardedPort],
    ) -> Result<PortTable, DatapathError> {
        self.kernel.update_ports(spec, table, ports).await
    }
    async fn purge_retired_ports(
        &self,
        spec: &NetworkDatapath,
        table: &PortTable,
    ) -> Result<(), DatapathError> {
        self.kernel.purge_retired_ports(spec, table).await
    }
    async fn sync_fdb(
        &self,
        spec: &NetworkDatapath,
        entries: &BTreeSet<FdbEntry>,
    ) -> Result<(), DatapathError> {
        self.kernel.sync_fdb(spec, entries).await
    }
    async fn sync_arp_answers(
        &self,
        spec: &NetworkDatapath,
        answers: &BTreeSet<privnet_core::fdb::ArpAnswer>,
    ) -> Result<(), DatapathError> {
        self.kernel.sync_arp_answers(spec, answers).await
    }
    async fn observe_mesh(
        &self,
        mesh: &MeshSpec,
        peers: &[MeshPeer],
    ) -> Result<Vec<Drift>, DatapathError> {
        self.mesh.observe_mesh(mesh, peers).await
    }
    async fn observe_network(
        &self,
        spec: &NetworkDatapath,
        ports: &[GuardedPort],
        fdb: &BTreeSet<FdbEntry>,
    ) -> Result<Vec<Drift>, DatapathError> {
        self.kernel.observe_network(spec, ports, fdb).await
    }
    async fn repair_network(
        &self,
        spec: &NetworkDatapath,
        ports: &[GuardedPort],
        repair: &NetworkRepair,
    ) -> Result<(), DatapathError> {
        self.kernel.repair_network(spec, ports, repair).await
    }
}

/// A single-node cluster: the view is set by the test, claims always win.
struct OneNode;

impl Source for OneNode {
    async fn next_view(&self, _since: u64) -> Result<(u64, ClusterView), SourceError> {
        std::future::pending().await
    }
    async fn publish_node(&self, _node: &NodeInfo) -> Result<(), SourceError> {
        Ok(())
    }
    async fn publish_endpoint(&self, _ep: &EndpointInfo) -> Result<(), SourceError> {
        Ok(())
    }
    async fn claim_address(&self, _n: &str, _ip: Ipv4Addr, _o: &str) -> Result<bool, SourceError> {
        Ok(true)
    }
    async fn release_address(&self, _n: &str, _ip: Ipv4Addr, _o: &str) -> Result<(), SourceError> {
        Ok(())
    }
    async fn withdraw_endpoint(&self, _ep: &EndpointInfo) -> Result<(), SourceError> {
        Ok(())
    }
}

fn view(with_vtep: bool) -> ClusterView {
    ClusterView {
        nodes: vec![NodeInfo {
            name: NODE.into(),
            public_key: "key".into(),
            endpoint: "192.0.2.1:51820".parse().unwrap(),
            vtep: with_vtep.then_some(VTEP),
            next_public_key: None,
            accepted_keys: Vec::new(),
        }],
        networks: vec![NetworkInfo {
            id: NETWORK_ID.into(),
            project: "test".into(),
            vni: VNI,
            subnet: "10.240.0.0/22".parse().unwrap(),
            mtu: Some(1370),
        }],
        namespace_networks: vec![("ns".into(), NETWORK_ID.into())],
        endpoints: vec![],
    }
}

/// The agent, its runtime and its throwaway namespaces; dropping it stops
/// the agent and removes everything it made.
pub struct TestAgent {
    agent: Arc<Agent<OneNode, TestDatapath>>,
    rt: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    agent_ns: String,
    prefix: String,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestAgent {
    /// Starts the agent; ready (mesh address given) or still waiting for it.
    pub fn start(ready: bool) -> TestAgent {
        let dir = tempfile::tempdir().unwrap();
        let name = unique_name("pnt");
        let agent_ns = format!("{name}a");
        ip(&["netns", "add", &agent_ns]).expect("ip netns add (tests need root)");
        // No dummy module everywhere: a veth pair stands in for WireGuard.
        for args in [
            vec![
                "link", "add", UNDERLAY, "type", "veth", "peer", "name", "pntpeer",
            ],
            vec!["addr", "add", "100.64.0.1/16", "dev", UNDERLAY],
            vec!["link", "set", UNDERLAY, "up"],
        ] {
            let mut full = vec!["-n", agent_ns.as_str()];
            full.extend(args);
            if let Err(e) = ip(&full) {
                let _ = ip(&["netns", "del", &agent_ns]);
                panic!("{e}");
            }
        }
        let prefix = format!("{name}n");
        let cfg = AgentConfig {
            node: NODE.into(),
            state_dir: dir.path().join("state"),
            socket: dir.path().join("agent.sock"),
            netns_prefix: prefix.clone(),
            wg_ifname: UNDERLAY.into(),
            wg_port: 51820,
            wg_backend: BackendChoice::Auto,
            keepalive: None,
            endpoint: "192.0.2.1:51820".parse().unwrap(),
            underlay_mtu: 1500,
            mesh_cidr: "100.64.0.0/16".parse().unwrap(),
            vxlan_port: privnet_core::defaults::VXLAN_PORT,
            vni_range: privnet_core::vni::VniRange(VNI..=VNI),
            dns_upstream: None,
            domain: "private-network.internal".into(),
            gro_flush_timeout_ns: 20_000,
            guard_disabled: false,
            removal_hold: Default::default(),
            resync: privnet_agent::node::plan::RESYNC,
            rotate_key_every: None,
            rotate_key_timeout: privnet_core::rotation::DEFAULT_TIMEOUT,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let datapath = TestDatapath {
            kernel: KernelDatapath::new(NetnsFd::named(&agent_ns).unwrap()),
            mesh: MemoryDatapath::default(),
        };
        let socket = cfg.socket.clone();
        let store = DiskStore::open(&cfg.state_dir).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let agent = rt.block_on(async {
            let agent = Agent::start_with(cfg, OneNode, Box::new(store), datapath)
                .await
                .unwrap();
            let listener = privnet_agent::rpc_server::bind(&socket).unwrap();
            tokio::spawn(privnet_agent::rpc_server::serve(
                listener,
                agent.clone(),
                async {
                    let _ = rx.await;
                },
            ));
            tokio::spawn(agent.clone().converge_loop());
            agent
        });
        let test = TestAgent {
            agent,
            rt: Some(rt),
            stop: Some(tx),
            agent_ns,
            prefix,
            socket,
            _dir: dir,
        };
        test.agent.set_view(view(false));
        if ready {
            test.give_mesh_address();
        }
        test
    }

    /// Gives the node its mesh address and waits until the agent is ready.
    pub fn give_mesh_address(&self) {
        self.agent.set_view(view(true));
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.agent.phase() != Phase::Ready {
            assert!(
                Instant::now() < deadline,
                "agent not ready: {:?}",
                self.agent.phase()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The RPC socket.
    pub fn socket(&self) -> PathBuf {
        self.socket.clone()
    }

    /// Name of the network's namespace (exists once something is attached).
    pub fn netns_name(&self) -> String {
        format!("{}{VNI}", self.prefix)
    }

    /// The agent's attachments, except the one holding the network up.
    pub fn reservations(&self) -> Vec<AttachmentRecord> {
        let mut all = self.rt().block_on(self.agent.attachments());
        all.retain(|r| r.key.container_id != ANCHOR);
        all
    }

    /// Brings the network up now and keeps it up (an attachment of no
    /// container stays in the book; otherwise the last DEL removes the network).
    pub fn ensure_network(&self) {
        let req = AttachRequest {
            key: AttachmentKey {
                container_id: ANCHOR.into(),
                ifname: "eth0".into(),
            },
            netns: format!("/run/netns/{}", self.agent_ns),
            network: NetworkSelector {
                network_id: Some(NETWORK_ID.into()),
                ..Default::default()
            },
            workload: Workload {
                application_id: Some("anchor".into()),
                ..Default::default()
            },
            answer_early: false,
        };
        self.rt().block_on(self.agent.attach(req)).unwrap();
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("running")
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        // Release everything and let one pass take the network down (stops
        // the DNS responder, deletes the namespace), then stop the agent.
        let agent = self.agent.clone();
        self.rt().block_on(async {
            agent.gc(None, vec![]).await;
            let _ = agent.converge_at(Instant::now()).await;
        });
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
        let _ = ip(&["netns", "del", &self.netns_name()]);
        let _ = ip(&["netns", "del", &self.agent_ns]);
    }
}
