//! In-memory fake of [`NodeDatapath`]: keeps what a kernel would hold
//! (networks, port guards, FDBs, peers), records every call, and can be told
//! to fail any [`Step`]. The agent's unit tests run against it, without root.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use privnet_core::fdb::{ArpAnswer, FdbEntry};
use privnet_core::zone::Zone;

use super::drift::{Drift, NetworkRepair, What};
use super::events::DriftSignal;
use super::guard::{self, GuardedPort, PortTable};
use super::network::NetworkDatapath;
use super::seam::{DatapathError, MeshSpec, NodeDatapath, Step};
use super::wireguard::{Key, MeshPeer, PeerStatus};
use crate::dns::handler::DnsCounters;
use crate::dns::server::Responder;

/// One call made to the fake, with what it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// `ensure_mesh` (interface name).
    EnsureMesh(String),
    /// `set_peers` (public keys).
    SetPeers(Vec<String>),
    /// `read_peers`.
    ReadPeers,
    /// `switch_key` (the new public key).
    SwitchKey(String),
    /// `promote_standby` (next key, old key).
    PromoteStandby(String, String),
    /// `poke` (VTEPs).
    Poke(Vec<Ipv4Addr>),
    /// `ensure_network` (namespace, port names).
    EnsureNetwork(String, Vec<String>),
    /// `start_dns` (namespace).
    StartDns(String),
    /// `remove_network` (namespace).
    RemoveNetwork(String),
    /// `list_networks` (prefix).
    ListNetworks(String),
    /// `remove_leftover` (namespace).
    RemoveLeftover(String),
    /// `set_ports` (namespace, port names).
    SetPorts(String, Vec<String>),
    /// `update_ports` (namespace, port names).
    UpdatePorts(String, Vec<String>),
    /// `purge_retired_ports` (namespace, retired names).
    PurgePorts(String, Vec<String>),
    /// `sync_fdb` (namespace, entries).
    SyncFdb(String, BTreeSet<FdbEntry>),
    /// `sync_arp_answers` (namespace, answers).
    SyncArpAnswers(String, BTreeSet<ArpAnswer>),
    /// `observe_mesh`.
    ObserveMesh,
    /// `observe_network` (namespace).
    ObserveNetwork(String),
    /// `repair_network` (namespace, what).
    RepairNetwork(String, NetworkRepair),
}

/// What the fake "kernel" holds.
#[derive(Debug, Default, Clone)]
pub struct FakeKernel {
    /// The mesh is up.
    pub mesh_up: bool,
    /// Configured peers.
    pub peers: Vec<MeshPeer>,
    /// The public key of the private key last switched to (`None`: the one from the start).
    pub switched_key: Option<String>,
    /// Handshake age per peer key (absent: never had one).
    pub handshakes: BTreeMap<String, Duration>,
    /// Network namespaces present (by name) with their live guard ports.
    pub networks: BTreeMap<String, Vec<GuardedPort>>,
    /// FDB per namespace.
    pub fdb: BTreeMap<String, BTreeSet<FdbEntry>>,
    /// ARP answers per namespace.
    pub arp_answers: BTreeMap<String, BTreeSet<ArpAnswer>>,
    /// Container namespaces that exist (paths).
    pub containers: BTreeSet<String>,
    /// Drifts of the mesh a test injected (daemon, link, node guard; peers
    /// and FDB drift are read from the state above).
    pub mesh_drift: Vec<Drift>,
    /// Drifts of a network a test injected, by namespace.
    pub network_drift: BTreeMap<String, Vec<Drift>>,
}

#[derive(Debug, Default)]
struct Inner {
    kernel: FakeKernel,
    calls: Vec<Call>,
    failing: BTreeSet<Step>,
    /// Raised by a test (standing for the kernel's listeners).
    signal: Arc<DriftSignal>,
}

/// The fake datapath. Cloning shares the state (a test keeps one handle,
/// the agent owns the other).
#[derive(Debug, Default, Clone)]
pub struct MemoryDatapath(Arc<Mutex<Inner>>);

fn names(ports: &[GuardedPort]) -> Vec<String> {
    ports.iter().map(|p| p.host_ifname.clone()).collect()
}

impl MemoryDatapath {
    /// Makes every later call of `step` fail until [`Self::heal`].
    pub fn fail(&self, step: Step) {
        self.lock().failing.insert(step);
    }

    /// Stops failing `step`.
    pub fn heal(&self, step: Step) {
        self.lock().failing.remove(&step);
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// A copy of the fake kernel's state.
    pub fn kernel(&self) -> FakeKernel {
        self.lock().kernel.clone()
    }

    /// Changes the fake kernel's state (seeding leftovers, handshakes …).
    pub fn with_kernel<R>(&self, f: impl FnOnce(&mut FakeKernel) -> R) -> R {
        f(&mut self.lock().kernel)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().expect("fake datapath lock")
    }

    /// Records `call`; fails if `step` is failing.
    fn enter(
        &self,
        step: Step,
        call: Call,
    ) -> Result<std::sync::MutexGuard<'_, Inner>, DatapathError> {
        let mut inner = self.lock();
        inner.calls.push(call);
        if inner.failing.contains(&step) {
            return Err(DatapathError::Injected(step));
        }
        Ok(inner)
    }
}

impl NodeDatapath for MemoryDatapath {
    fn container_alive(&self, netns: &str) -> bool {
        self.lock().kernel.containers.contains(netns)
    }

    fn drift_signal(&self) -> Arc<DriftSignal> {
        self.lock().signal.clone()
    }

    async fn ensure_mesh(&self, mesh: &MeshSpec) -> Result<(), DatapathError> {
        let mut inner = self.enter(
            Step::EnsureMesh,
            Call::EnsureMesh(mesh.wireguard.ifname.clone()),
        )?;
        inner.kernel.mesh_up = true;
        // Bringing the mesh up again fixes the daemon, the link and the guard.
        inner.kernel.mesh_drift.retain(|d| d.what == What::Peers);
        Ok(())
    }

    async fn set_peers(&self, peers: &[MeshPeer]) -> Result<(), DatapathError> {
        let keys = peers.iter().map(|p| p.public_key.clone()).collect();
        let mut inner = self.enter(Step::SetPeers, Call::SetPeers(keys))?;
        if !inner.kernel.mesh_up {
            return Err(DatapathError::MeshDown(Step::SetPeers));
        }
        inner.kernel.peers = peers.to_vec();
        Ok(())
    }

    async fn switch_key(&self, _mesh: &MeshSpec, key: &Key) -> Result<(), DatapathError> {
        let public = key.public_key().to_string();
        let mut inner = self.enter(Step::SwitchKey, Call::SwitchKey(public.clone()))?;
        if !inner.kernel.mesh_up {
            return Err(DatapathError::MeshDown(Step::SwitchKey));
        }
        inner.kernel.switched_key = Some(public);
        Ok(())
    }

    async fn promote_standby(&self, peer: &MeshPeer, old: &str) -> Result<(), DatapathError> {
        let call = Call::PromoteStandby(peer.public_key.clone(), old.to_string());
        let mut inner = self.enter(Step::PromoteStandby, call)?;
        let peers = &mut inner.kernel.peers;
        peers.retain(|p| p.public_key != old);
        match peers.iter_mut().find(|p| p.public_key == peer.public_key) {
            Some(p) => p.standby = false,
            None => peers.push(MeshPeer {
                standby: false,
                ..peer.clone()
            }),
        }
        Ok(())
    }

    async fn read_peers(&self) -> Result<Vec<PeerStatus>, DatapathError> {
        let inner = self.enter(Step::ReadPeers, Call::ReadPeers)?;
        Ok(inner
            .kernel
            .peers
            .iter()
            .map(|p| PeerStatus {
                public_key: p.public_key.clone(),
                endpoint: p.endpoint,
                allowed_ips: if p.standby {
                    Vec::new()
                } else {
                    vec![format!("{}/32", p.vtep)]
                },
                last_handshake_age: inner.kernel.handshakes.get(&p.public_key).copied(),
                rx_bytes: 0,
                tx_bytes: 0,
            })
            .collect())
    }

    async fn poke(&self, vteps: &[Ipv4Addr]) {
        self.lock().calls.push(Call::Poke(vteps.to_vec()));
    }

    async fn ensure_network(
        &self,
        spec: &NetworkDatapath,
        ports: &[GuardedPort],
    ) -> Result<(), DatapathError> {
        let call = Call::EnsureNetwork(spec.netns.clone(), names(ports));
        let mut inner = self.enter(Step::EnsureNetwork, call)?;
        inner
            .kernel
            .networks
            .insert(spec.netns.clone(), ports.to_vec());
        inner.kernel.fdb.entry(spec.netns.clone()).or_default();
        Ok(())
    }

    async fn start_dns(
        &self,
        spec: &NetworkDatapath,
        _zone: Arc<RwLock<Zone>>,
        _upstream: Option<SocketAddr>,
        _counters: Arc<DnsCounters>,
    ) -> Result<Option<Responder>, DatapathError> {
        drop(self.enter(Step::StartDns, Call::StartDns(spec.netns.clone()))?);
        Ok(None)
    }

    async fn remove_network(&self, spec: &NetworkDatapath) -> Result<(), DatapathError> {
        let mut inner = self.enter(Step::RemoveNetwork, Call::RemoveNetwork(spec.netns.clone()))?;
        inner.kernel.networks.remove(&spec.netns);
        inner.kernel.fdb.remove(&spec.netns);
        Ok(())
    }

    fn list_networks(&self, prefix: &str) -> Result<Vec<String>, DatapathError> {
        let inner = self.enter(Step::ListNetworks, Call::ListNetworks(prefix.into()))?;
        Ok(inner
            .kernel
            .networks
            .keys()
            .filter(|n| n.starts_with(prefix))
            .cloned()
            .collect())
    }

    fn remove_leftover(&self, netns: &str) -> Result<(), DatapathError> {
        let mut inner = self.enter(Step::RemoveLeftover, Call::RemoveLeftover(netns.into()))?;
        inner.kernel.networks.remove(netns);
        inner.kernel.fdb.remove(netns);
        Ok(())
    }

    async fn set_ports(
        &self,
        spec: &NetworkDatapath,
        ports: &[GuardedPort],
    ) -> Result<(), DatapathError> {
        let call = Call::SetPorts(spec.netns.clone(), names(ports));
        let mut inner = self.enter(Step::SetPorts, call)?;
        present(&mut inner, spec, Step::SetPorts)?.clone_from(&ports.to_vec());
        Ok(())
    }

    async fn update_ports(
        &self,
        spec: &NetworkDatapath,
        table: &PortTable,
        ports: &[GuardedPort],
    ) -> Result<PortTable, DatapathError> {
        let call = Call::UpdatePorts(spec.netns.clone(), names(ports));
        let mut inner = self.enter(Step::UpdatePorts, call)?;
        let live = present(&mut inner, spec, Step::UpdatePorts)?;
        // The same pure update the kernel applies, so retirements match.
        let (_, after) = guard::ports_update(table, ports).map_err(|e| DatapathError::Network {
            step: Step::UpdatePorts,
            netns: spec.netns.clone(),
            source: Box::new(e.into()),
        })?;
        *live = ports.to_vec();
        Ok(after)
    }

    async fn purge_retired_ports(
        &self,
        spec: &NetworkDatapath,
        table: &PortTable,
    ) -> Result<(), DatapathError> {
        let call = Call::PurgePorts(spec.netns.clone(), table.retired.keys().cloned().collect());
        let mut inner = self.enter(Step::PurgePorts, call)?;
        // Their set elements go: a purged port no longer forwards, live or not.
        present(&mut inner, spec, Step::PurgePorts)?
            .retain(|p| table.retired.get(&p.host_ifname) != Some(p));
        Ok(())
    }

    async fn sync_fdb(
        &self,
        spec: &NetworkDatapath,
        entries: &BTreeSet<FdbEntry>,
    ) -> Result<(), DatapathError> {
        let call = Call::SyncFdb(spec.netns.clone(), entries.clone());
        let mut inner = self.enter(Step::SyncFdb, call)?;
        present(&mut inner, spec, Step::SyncFdb)?;
        inner.kernel.fdb.insert(spec.netns.clone(), entries.clone());
        Ok(())
    }

    async fn sync_arp_answers(
        &self,
        spec: &NetworkDatapath,
        answers: &BTreeSet<ArpAnswer>,
    ) -> Result<(), DatapathError> {
        let call = Call::SyncArpAnswers(spec.netns.clone(), answers.clone());
        let mut inner = self.enter(Step::SyncArpAnswers, call)?;
        present(&mut inner, spec, Step::SyncArpAnswers)?;
        inner
            .kernel
            .arp_answers
            .insert(spec.netns.clone(), answers.clone());
        Ok(())
    }

    async fn observe_mesh(
        &self,
        _mesh: &MeshSpec,
        peers: &[MeshPeer],
    ) -> Result<Vec<Drift>, DatapathError> {
        let inner = self.enter(Step::ObserveMesh, Call::ObserveMesh)?;
        if !inner.kernel.mesh_up {
            return Ok(Vec::new());
        }
        let mut out = inner.kernel.mesh_drift.clone();
        if inner.kernel.peers != peers {
            out.push(Drift::new(What::Peers, "wg", "peers differ"));
        }
        Ok(out)
    }

    async fn observe_network(
        &self,
        spec: &NetworkDatapath,
        ports: &[GuardedPort],
        fdb: &BTreeSet<FdbEntry>,
    ) -> Result<Vec<Drift>, DatapathError> {
        let call = Call::ObserveNetwork(spec.netns.clone());
        let inner = self.enter(Step::ObserveNetwork, call)?;
        if !inner.kernel.networks.contains_key(&spec.netns) {
            return Ok(vec![Drift::new(What::Namespace, &spec.netns, "missing")]);
        }
        let mut out = inner
            .kernel
            .network_drift
            .get(&spec.netns)
            .cloned()
            .unwrap_or_default();
        // A gone port is only seen while it is still asked about.
        out.retain(|d| {
            d.what != What::PortGone || ports.iter().any(|p| p.host_ifname == d.subject)
        });
        if inner.kernel.fdb.get(&spec.netns) != Some(fdb) {
            out.push(Drift::new(What::Fdb, &spec.vxlan, "entries differ"));
        }
        Ok(out)
    }

    async fn repair_network(
        &self,
        spec: &NetworkDatapath,
        ports: &[GuardedPort],
        repair: &NetworkRepair,
    ) -> Result<(), DatapathError> {
        let call = Call::RepairNetwork(spec.netns.clone(), repair.clone());
        let mut inner = self.enter(Step::RepairNetwork, call)?;
        let kernel = &mut inner.kernel;
        if repair.devices {
            let drifts = kernel.network_drift.get(&spec.netns);
            let recreated = !kernel.networks.contains_key(&spec.netns)
                || drifts.is_some_and(|d| d.iter().any(|d| d.what == What::Vxlan));
            kernel.networks.entry(spec.netns.clone()).or_default();
            if recreated {
                // A new VXLAN device starts with an empty FDB.
                kernel.fdb.insert(spec.netns.clone(), BTreeSet::new());
            }
        }
        if repair.guard {
            kernel.networks.insert(spec.netns.clone(), ports.to_vec());
        }
        if let Some(drifts) = kernel.network_drift.get_mut(&spec.netns) {
            drifts.retain(|d| !fixed_by(d, repair));
        }
        Ok(())
    }
}

/// Whether `drift` is one `repair` fixes.
fn fixed_by(drift: &Drift, repair: &NetworkRepair) -> bool {
    match drift.what {
        What::NetworkGuard => repair.guard,
        What::GuardRules => repair.guard_rules || repair.guard,
        What::Port => repair.ports.contains(&drift.subject),
        What::Namespace | What::Bridge | What::Gateway | What::Vxlan | What::Forwarding => {
            repair.devices
        }
        _ => false,
    }
}

/// The live ports of a network that must exist (as the kernel would fail
/// on a missing namespace).
fn present<'a>(
    inner: &'a mut Inner,
    spec: &NetworkDatapath,
    step: Step,
) -> Result<&'a mut Vec<GuardedPort>, DatapathError> {
    inner
        .kernel
        .networks
        .get_mut(&spec.netns)
        .ok_or_else(|| DatapathError::Network {
            step,
            netns: spec.netns.clone(),
            source: Box::new(super::network::NetworkError::Missing(spec.netns.clone())),
        })
}
