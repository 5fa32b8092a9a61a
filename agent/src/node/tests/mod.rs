//! `Agent` in memory: the fake datapath, an in-memory source and store, the
//! clock passed in. No root, no kernel.

mod attach;
mod converge;
mod expected;
mod guard;
mod hold;
mod plan;
mod repair;
mod restart;
mod rotation;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use privnet_core::rpc::{AttachRequest, AttachmentKey, NetworkSelector, Workload};
use privnet_core::view::{ClusterView, EndpointInfo, NetworkInfo, NodeInfo};

use super::Agent;
use crate::config::AgentConfig;
use crate::datapath::MemoryDatapath;
use crate::datapath::wireguard::BackendChoice;
use crate::source::{AddressClaim, Source, SourceError};
use crate::store::{AttachmentRecord, AttachmentStore, MemoryStore, StoreError};

pub const NODE: &str = "n1";
pub const NET: &str = "pn-a";
pub const VNI: u32 = 100;

/// What the fake source was asked, and what it is told to refuse.
#[derive(Debug, Default)]
pub struct SourceState {
    /// Claims: (network, ip) → owner.
    pub claims: BTreeMap<(String, Ipv4Addr), String>,
    /// Addresses another node holds (claims lose).
    pub held_elsewhere: BTreeSet<Ipv4Addr>,
    /// Claims fail with an I/O error.
    pub claims_fail: bool,
    /// Published endpoints by (container, ifname).
    pub published: BTreeMap<(String, String), EndpointInfo>,
    /// Withdrawn endpoints, in order.
    pub withdrawn: Vec<EndpointInfo>,
    /// Pods by `namespace/name` and what they carry (Kubernetes source).
    pub pods: BTreeMap<String, Workload>,
    /// Numbers come only from admission (as on Kubernetes).
    pub admission_numbers: bool,
    /// Publications, in order (container ids).
    pub publications: Vec<String>,
    /// Containers whose owner (pod) is gone from the cluster.
    pub owners_gone: BTreeSet<String>,
    /// This node's entries as published, in order.
    pub nodes: Vec<NodeInfo>,
}

/// An in-memory source; clones share state.
#[derive(Clone, Debug, Default)]
pub struct FakeSource(pub Arc<Mutex<SourceState>>);

impl FakeSource {
    pub fn state(&self) -> std::sync::MutexGuard<'_, SourceState> {
        self.0.lock().unwrap()
    }
}

fn io_error() -> SourceError {
    SourceError::Io {
        path: "claims".into(),
        source: std::io::Error::other("disk on fire"),
    }
}

impl Source for FakeSource {
    async fn next_view(&self, _since: u64) -> Result<(u64, ClusterView), SourceError> {
        std::future::pending().await
    }
    async fn publish_node(&self, node: &NodeInfo) -> Result<(), SourceError> {
        self.state().nodes.push(node.clone());
        Ok(())
    }
    fn endpoint_owner_exists(&self, ep: &EndpointInfo) -> bool {
        !self.state().owners_gone.contains(&ep.container_id)
    }
    async fn publish_endpoint(&self, ep: &EndpointInfo) -> Result<(), SourceError> {
        let mut st = self.state();
        st.published
            .insert((ep.container_id.clone(), ep.interface.clone()), ep.clone());
        st.publications.push(ep.container_id.clone());
        Ok(())
    }
    async fn claim_address(
        &self,
        network: &str,
        ip: Ipv4Addr,
        owner: &str,
    ) -> Result<bool, SourceError> {
        let mut st = self.state();
        if st.claims_fail {
            return Err(io_error());
        }
        if st.held_elsewhere.contains(&ip) {
            return Ok(false);
        }
        let held = st
            .claims
            .entry((network.to_string(), ip))
            .or_insert_with(|| owner.to_string());
        Ok(held == owner)
    }
    async fn release_address(
        &self,
        network: &str,
        ip: Ipv4Addr,
        owner: &str,
    ) -> Result<(), SourceError> {
        let mut st = self.state();
        if st
            .claims
            .get(&(network.to_string(), ip))
            .map(String::as_str)
            == Some(owner)
        {
            st.claims.remove(&(network.to_string(), ip));
        }
        Ok(())
    }
    async fn node_claims(&self, node: &str) -> Result<Vec<AddressClaim>, SourceError> {
        let prefix = format!("{node}/");
        Ok(self
            .state()
            .claims
            .iter()
            .filter(|(_, owner)| owner.starts_with(&prefix))
            .map(|((network_id, ip), owner)| AddressClaim {
                network_id: network_id.clone(),
                ip: *ip,
                owner: owner.clone(),
            })
            .collect())
    }
    async fn withdraw_endpoint(&self, ep: &EndpointInfo) -> Result<(), SourceError> {
        let mut st = self.state();
        st.published
            .remove(&(ep.container_id.clone(), ep.interface.clone()));
        st.withdrawn.push(ep.clone());
        Ok(())
    }
    async fn pod_workload(&self, ns: &str, name: &str) -> Result<Option<Workload>, SourceError> {
        Ok(self.state().pods.get(&format!("{ns}/{name}")).cloned())
    }
    fn numbers_from_admission(&self) -> bool {
        self.state().admission_numbers
    }
}

/// A store whose writes can be made to fail; clones share the records.
#[derive(Clone, Debug, Default)]
pub struct SharedStore {
    pub inner: Arc<Mutex<MemoryStore>>,
    pub fail_put: Arc<Mutex<bool>>,
    /// Writes fail as on a full file system (`ENOSPC`).
    pub full: Arc<Mutex<bool>>,
}

impl AttachmentStore for SharedStore {
    fn load(&self) -> Result<Vec<AttachmentRecord>, StoreError> {
        self.inner.lock().unwrap().load()
    }
    fn put(&mut self, record: &AttachmentRecord) -> Result<(), StoreError> {
        if *self.fail_put.lock().unwrap() {
            return Err(StoreError::Io {
                path: "/state/x".into(),
                source: std::io::Error::other("read-only file system"),
            });
        }
        if *self.full.lock().unwrap() {
            return Err(StoreError::Io {
                path: "/state/x".into(),
                source: std::io::Error::from_raw_os_error(nix::libc::ENOSPC),
            });
        }
        self.inner.lock().unwrap().put(record)
    }
    fn remove(&mut self, key: &AttachmentKey) -> Result<(), StoreError> {
        self.inner.lock().unwrap().remove(key)
    }
}

impl SharedStore {
    pub fn keys(&self) -> Vec<String> {
        self.inner
            .lock()
            .unwrap()
            .records
            .keys()
            .map(|k| k.container_id.clone())
            .collect()
    }
}

pub fn config(state: &std::path::Path) -> AgentConfig {
    AgentConfig {
        node: NODE.into(),
        state_dir: state.to_path_buf(),
        socket: state.join("agent.sock"),
        netns_prefix: "pnu-".into(),
        wg_ifname: "pnuwg".into(),
        wg_port: 51820,
        wg_backend: BackendChoice::Auto,
        keepalive: None,
        endpoint: "192.0.2.1:51820".parse().unwrap(),
        underlay_mtu: 1500,
        mesh_cidr: "100.64.0.0/16".parse().unwrap(),
        vxlan_port: privnet_core::defaults::VXLAN_PORT,
        vni_range: privnet_core::vni::VniRange(1..=privnet_core::vni::MAX_VNI),
        dns_upstream: None,
        domain: "private-network.internal".into(),
        gro_flush_timeout_ns: 20_000,
        guard_disabled: false,
        // Other nodes' endpoints leave at once (the settle delay has its own tests).
        removal_hold: crate::node::hold::HoldPolicy {
            settle: std::time::Duration::ZERO,
            ..Default::default()
        },
        resync: crate::node::plan::RESYNC,
        rotate_key_every: None,
        rotate_key_timeout: privnet_core::rotation::DEFAULT_TIMEOUT,
    }
}

pub fn node(name: &str, last: u8, vtep: bool) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        public_key: format!("key-{name}"),
        endpoint: SocketAddr::from(([192, 0, 2, last], 51820)),
        vtep: vtep.then(|| Ipv4Addr::new(100, 64, 0, last)),
        next_public_key: None,
        accepted_keys: Vec::new(),
    }
}

pub fn network() -> NetworkInfo {
    NetworkInfo {
        id: NET.into(),
        project: "proj".into(),
        vni: VNI,
        subnet: "10.240.0.0/22".parse().unwrap(),
        mtu: None,
    }
}

/// An endpoint of the network on n2 (`10.240.1.<last>`).
pub fn remote_endpoint(cid: &str, last: u8) -> EndpointInfo {
    EndpointInfo {
        network_id: NET.into(),
        application_id: "app".into(),
        process_type: "web".into(),
        container_number: u32::from(last),
        ip: Ipv4Addr::new(10, 240, 1, last),
        mac: format!("0a:58:0a:f0:01:{last:02x}"),
        node: "n2".into(),
        container_id: cid.into(),
        interface: "eth1".into(),
    }
}

/// This node with a VTEP, one peer, one network held by namespace `ns`.
pub fn view() -> ClusterView {
    ClusterView {
        nodes: vec![node(NODE, 1, true), node("n2", 2, true)],
        networks: vec![network()],
        namespace_networks: vec![("ns".into(), NET.into())],
        endpoints: vec![],
    }
}

pub fn request(cid: &str, number: Option<u32>) -> AttachRequest {
    AttachRequest {
        key: key(cid),
        netns: format!("/run/netns/c-{cid}"),
        network: NetworkSelector {
            network_id: Some(NET.into()),
            pod_namespace: None,
            pod_name: None,
        },
        workload: Workload {
            application_id: Some("app".into()),
            process_type: Some("web".into()),
            container_number: number,
        },
        answer_early: false,
    }
}

pub fn key(cid: &str) -> AttachmentKey {
    AttachmentKey {
        container_id: cid.into(),
        ifname: "eth1".into(),
    }
}

/// An agent on fakes, with handles on each fake.
pub struct Harness {
    pub agent: Arc<Agent<FakeSource, MemoryDatapath>>,
    pub source: FakeSource,
    pub store: SharedStore,
    pub dp: MemoryDatapath,
    pub _dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_on(
            SharedStore::default(),
            MemoryDatapath::default(),
            tempfile::tempdir().unwrap(),
        )
        .await
    }

    pub async fn start_on(
        store: SharedStore,
        dp: MemoryDatapath,
        dir: tempfile::TempDir,
    ) -> Harness {
        Self::start_with_source(FakeSource::default(), store, dp, dir).await
    }

    /// [`Self::start_on`] with the cluster's state (claims, endpoints) kept.
    pub async fn start_with_source(
        source: FakeSource,
        store: SharedStore,
        dp: MemoryDatapath,
        dir: tempfile::TempDir,
    ) -> Harness {
        let agent = Agent::start_with(
            config(dir.path()),
            source.clone(),
            Box::new(store.clone()),
            dp.clone(),
        )
        .await
        .unwrap();
        Harness {
            agent,
            source,
            store,
            dp,
            _dir: dir,
        }
    }

    /// Started, given [`view`] and converged once: ready to attach (the
    /// peer has shaken hands, so no re-check wake-ups).
    pub async fn ready() -> Harness {
        let h = Self::start().await;
        h.dp.with_kernel(|k| {
            k.handshakes
                .insert("key-n2".into(), std::time::Duration::from_secs(1))
        });
        h.agent.set_view(view());
        h.agent
            .converge_at(std::time::Instant::now())
            .await
            .unwrap();
        h
    }

    /// Attaches `cid` with a live container namespace.
    pub async fn attach(&self, cid: &str) -> privnet_core::rpc::Attachment {
        let req = request(cid, None);
        self.dp
            .with_kernel(|k| k.containers.insert(req.netns.clone()));
        self.agent.attach(req).await.unwrap()
    }

    pub fn netns(&self) -> String {
        format!("pnu-{VNI}")
    }
}
