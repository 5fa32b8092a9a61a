//! The kernel implementation of [`NodeDatapath`]: today's datapath modules
//! (namespaces, bridge/VXLAN, FDB, nft guard, WireGuard) behind the seam.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};

use privnet_core::fdb::{ArpAnswer, FdbEntry};
use privnet_core::zone::Zone;

use super::drift::{Drift, NetworkRepair};
use super::events::{self, DriftSignal, WatchScope};
use super::guard::{self, GuardedPort, PortTable};
use super::netns::{self, NetnsFd};
use super::network::{self, NetworkDatapath, NetworkError};
use super::nft_events;
use super::observe;
use super::seam::{DatapathError, MeshSpec, NodeDatapath, Step};
use super::wireguard::{Backend, Key, MeshPeer, PeerStatus, Wireguard, WireguardError};
use super::{arp_answers, fdb};
use crate::dns::forward::Forwarder;
use crate::dns::handler::DnsCounters;
use crate::dns::server::Responder;

/// UDP sockets per responder (one receive loop per core of a small node).
const DNS_SOCKETS: usize = 2;

/// A kernel-event listener task and the nsfs inode of the namespace it listens in.
type Listener = (Option<u64>, tokio::task::JoinHandle<()>);

/// The kernel datapath of one node, rooted in the agent's namespace (which
/// holds the WireGuard interface and where VXLAN devices are created).
pub struct KernelDatapath {
    agent_ns: NetnsFd,
    wireguard: Mutex<Option<Wireguard>>,
    /// The kernel-event listener of each namespace the agent owns (its
    /// own under `""`, networks under their name), with the nsfs inode it
    /// listens in.
    listeners: Mutex<BTreeMap<String, Listener>>,
    /// Raised by the listeners.
    signal: Arc<DriftSignal>,
}

impl Drop for KernelDatapath {
    fn drop(&mut self) {
        for (_, (_, task)) in std::mem::take(&mut *self.listeners.lock().expect("listeners lock")) {
            task.abort();
        }
    }
}

impl KernelDatapath {
    /// A datapath whose agent namespace is `agent_ns`.
    pub fn new(agent_ns: NetnsFd) -> Self {
        Self {
            agent_ns,
            wireguard: Mutex::new(None),
            listeners: Mutex::default(),
            signal: Arc::default(),
        }
    }

    /// Listens to the kernel events of `ns` under `key`, unless a listener
    /// runs in that very namespace already (a namespace recreated under
    /// the same name gets a new one).
    fn listen(&self, key: &str, ns: NetnsFd, scope: WatchScope) {
        let inode = ns.inode();
        let mut listeners = self.listeners.lock().expect("listeners lock");
        if let Some((running_in, task)) = listeners.get(key)
            && *running_in == inode
            && !task.is_finished()
        {
            return;
        }
        // Links, addresses and neighbours; and nftables, for the guard.
        let (signal, nft_ns, nft_signal) = (self.signal.clone(), ns.clone(), self.signal.clone());
        let task = tokio::spawn(async move {
            tokio::join!(
                events::listen(ns, scope, signal),
                nft_events::listen(nft_ns, nft_signal)
            );
        });
        if let Some((_, old)) = listeners.insert(key.to_string(), (inode, task)) {
            old.abort();
        }
    }

    fn listen_network(&self, spec: &NetworkDatapath) {
        if let Ok(ns) = NetnsFd::named(&spec.netns) {
            let scope = WatchScope::Network {
                bridge: spec.bridge.clone(),
                vxlan: spec.vxlan.clone(),
            };
            self.listen(&spec.netns, ns, scope);
        }
    }

    /// Stops listening in a namespace that goes (its socket would keep it alive).
    fn stop_listening(&self, key: &str) {
        if let Some((_, task)) = self.listeners.lock().expect("listeners lock").remove(key) {
            task.abort();
        }
    }

    /// The datapath of the calling thread's namespace.
    pub fn current() -> Result<Self, netns::NetnsError> {
        Ok(Self::new(NetnsFd::current()?))
    }

    fn wg(&self, step: Step) -> Result<Wireguard, DatapathError> {
        self.wireguard
            .lock()
            .expect("wireguard lock")
            .clone()
            .ok_or(DatapathError::MeshDown(step))
    }
}

fn net_err(step: Step, spec: &NetworkDatapath) -> impl FnOnce(NetworkError) -> DatapathError {
    let netns = spec.netns.clone();
    move |e| DatapathError::Network {
        step,
        netns,
        source: Box::new(e),
    }
}

fn wg_err(step: Step) -> impl FnOnce(WireguardError) -> DatapathError {
    move |e| DatapathError::Wireguard {
        step,
        source: Box::new(e),
    }
}

impl NodeDatapath for KernelDatapath {
    fn container_alive(&self, netns: &str) -> bool {
        std::path::Path::new(netns).exists()
    }

    async fn ensure_mesh(&self, mesh: &MeshSpec) -> Result<(), DatapathError> {
        let wg = Wireguard::ensure(&self.agent_ns, mesh.wireguard.clone())
            .await
            .map_err(wg_err(Step::EnsureMesh))?;
        let rules = guard::agent_ruleset(&mesh.guard, mesh.guard_disabled)
            .map_err(|e| DatapathError::NodeGuard(Box::new(e)))?;
        guard::apply(&self.agent_ns, &rules)
            .await
            .map_err(|e| DatapathError::NodeGuard(Box::new(e)))?;
        *self.wireguard.lock().expect("wireguard lock") = Some(wg);
        let scope = WatchScope::Mesh {
            wg_ifname: mesh.wireguard.ifname.clone(),
        };
        self.listen("", self.agent_ns.clone(), scope);
        Ok(())
    }

    fn drift_signal(&self) -> Arc<DriftSignal> {
        self.signal.clone()
    }

    async fn set_peers(&self, peers: &[MeshPeer]) -> Result<(), DatapathError> {
        let wg = self.wg(Step::SetPeers)?;
        wg.set_peers(peers)
            .await
            .map(drop)
            .map_err(wg_err(Step::SetPeers))
    }

    async fn read_peers(&self) -> Result<Vec<PeerStatus>, DatapathError> {
        let wg = self.wg(Step::ReadPeers)?;
        wg.read_peers().await.map_err(wg_err(Step::ReadPeers))
    }

    async fn switch_key(&self, mesh: &MeshSpec, key: &Key) -> Result<(), DatapathError> {
        let mut wg = self.wg(Step::SwitchKey)?;
        if wg.backend() == Backend::Kernel {
            // The kernel library has no key-only call: converge the interface again from the
            // key file, which holds the new key already (a re-handshake with every peer).
            wg = Wireguard::ensure(&self.agent_ns, mesh.wireguard.clone())
                .await
                .map_err(wg_err(Step::SwitchKey))?;
        } else {
            wg.switch_key(key).await.map_err(wg_err(Step::SwitchKey))?;
        }
        *self.wireguard.lock().expect("wireguard lock") = Some(wg);
        Ok(())
    }

    async fn promote_standby(&self, peer: &MeshPeer, old: &str) -> Result<(), DatapathError> {
        let wg = self.wg(Step::PromoteStandby)?;
        wg.promote_standby(peer, old)
            .await
            .map_err(wg_err(Step::PromoteStandby))
    }

    async fn poke(&self, vteps: &[Ipv4Addr]) {
        if let Ok(sock) = tokio::net::UdpSocket::bind("0.0.0.0:0").await {
            for vtep in vteps {
                let _ = sock.send_to(b"privnet-handshake", (*vtep, 9)).await;
            }
        }
    }

    async fn ensure_network(
        &self,
        spec: &NetworkDatapath,
        ports: &[GuardedPort],
    ) -> Result<(), DatapathError> {
        network::ensure(&self.agent_ns, spec, ports)
            .await
            .map_err(net_err(Step::EnsureNetwork, spec))?;
        self.listen_network(spec);
        Ok(())
    }

    /// Binds UDP and TCP port 53 on the gateway address inside the network's
    /// namespace (on a dedicated thread), then serves them from this runtime.
    async fn start_dns(
        &self,
        spec: &NetworkDatapath,
        zone: Arc<RwLock<Zone>>,
        upstream: Option<SocketAddr>,
        counters: Arc<DnsCounters>,
    ) -> Result<Option<Responder>, DatapathError> {
        let netns_err = |source| DatapathError::Netns {
            step: Step::StartDns,
            netns: spec.netns.clone(),
            source: Box::new(source),
        };
        let dns_err = |source: Box<dyn std::error::Error + Send + Sync>| DatapathError::Dns {
            netns: spec.netns.clone(),
            source,
        };
        let ns = NetnsFd::named(&spec.netns).map_err(netns_err)?;
        let addr = SocketAddr::new(spec.gateway.addr().into(), 53);
        let sockets = netns::run_in_async(&ns, move || {
            let udp = crate::dns::server::bind_udp_reuseport(addr, DNS_SOCKETS)?;
            let tcp = std::net::TcpListener::bind(addr)?;
            Ok::<_, std::io::Error>((udp, tcp))
        })
        .await
        .map_err(netns_err)?
        .map_err(|e| dns_err(Box::new(e)))?;
        let forwarder = upstream.map(Forwarder::new);
        Responder::start(sockets.0, sockets.1, zone, forwarder, counters)
            .map(Some)
            .map_err(|e| dns_err(Box::new(e)))
    }

    async fn remove_network(&self, spec: &NetworkDatapath) -> Result<(), DatapathError> {
        self.stop_listening(&spec.netns);
        network::remove(&self.agent_ns, spec)
            .await
            .map_err(net_err(Step::RemoveNetwork, spec))
    }

    fn list_networks(&self, prefix: &str) -> Result<Vec<String>, DatapathError> {
        network::list_networks(prefix).map_err(|e| DatapathError::Network {
            step: Step::ListNetworks,
            netns: format!("{prefix}*"),
            source: Box::new(e),
        })
    }

    fn remove_leftover(&self, name: &str) -> Result<(), DatapathError> {
        self.stop_listening(name);
        netns::delete(name).map_err(|source| DatapathError::Netns {
            step: Step::RemoveLeftover,
            netns: name.to_string(),
            source: Box::new(source),
        })
    }

    async fn set_ports(
        &self,
        spec: &NetworkDatapath,
        ports: &[GuardedPort],
    ) -> Result<(), DatapathError> {
        network::set_ports(spec, ports)
            .await
            .map_err(net_err(Step::SetPorts, spec))
    }

    async fn update_ports(
        &self,
        spec: &NetworkDatapath,
        table: &PortTable,
        ports: &[GuardedPort],
    ) -> Result<PortTable, DatapathError> {
        network::update_ports(spec, table, ports)
            .await
            .map_err(net_err(Step::UpdatePorts, spec))
    }

    async fn purge_retired_ports(
        &self,
        spec: &NetworkDatapath,
        table: &PortTable,
    ) -> Result<(), DatapathError> {
        network::purge_retired_ports(spec, table)
            .await
            .map_err(net_err(Step::PurgePorts, spec))
    }

    async fn sync_fdb(
        &self,
        spec: &NetworkDatapath,
        entries: &BTreeSet<FdbEntry>,
    ) -> Result<(), DatapathError> {
        let (h, ifindex) = network::vxlan_handle(spec)
            .await
            .map_err(net_err(Step::SyncFdb, spec))?;
        fdb::sync(&h, ifindex, entries)
            .await
            .map(drop)
            .map_err(|source| DatapathError::Fdb {
                netns: spec.netns.clone(),
                source: Box::new(source),
            })
    }

    async fn sync_arp_answers(
        &self,
        spec: &NetworkDatapath,
        answers: &BTreeSet<ArpAnswer>,
    ) -> Result<(), DatapathError> {
        let (h, bridge, vxlan) = network::bridge_and_vxlan(spec)
            .await
            .map_err(net_err(Step::SyncArpAnswers, spec))?;
        arp_answers::sync(&h, bridge, vxlan, answers)
            .await
            .map(drop)
            .map_err(|source| DatapathError::Fdb {
                netns: spec.netns.clone(),
                source: Box::new(source),
            })
    }

    async fn observe_mesh(
        &self,
        mesh: &MeshSpec,
        peers: &[MeshPeer],
    ) -> Result<Vec<Drift>, DatapathError> {
        let Ok(wg) = self.wg(Step::ObserveMesh) else {
            return Ok(Vec::new());
        };
        let mut out = wg.observe(peers).await.map_err(wg_err(Step::ObserveMesh))?;
        if !mesh.guard_disabled {
            let node_guard = observe::node_guard(&self.agent_ns, &mesh.guard)
                .await
                .map_err(|e| DatapathError::NodeGuard(Box::new(e)))?;
            out.extend(node_guard);
        }
        Ok(out)
    }

    async fn observe_network(
        &self,
        spec: &NetworkDatapath,
        ports: &[GuardedPort],
        fdb: &BTreeSet<FdbEntry>,
    ) -> Result<Vec<Drift>, DatapathError> {
        observe::network(&self.agent_ns, spec, ports, fdb)
            .await
            .map_err(net_err(Step::ObserveNetwork, spec))
    }

    async fn repair_network(
        &self,
        spec: &NetworkDatapath,
        ports: &[GuardedPort],
        repair: &NetworkRepair,
    ) -> Result<(), DatapathError> {
        let fail = net_err(Step::RepairNetwork, spec);
        let result = async {
            if repair.devices {
                network::ensure_devices(&self.agent_ns, spec).await?;
            }
            if repair.guard {
                network::set_ports(spec, ports).await?;
            } else if repair.guard_rules {
                network::repair_guard_rules(spec, ports).await?;
            }
            if !repair.ports.is_empty() {
                network::reattach_ports(spec, &repair.ports).await?;
            }
            Ok(())
        };
        result.await.map_err(fail)?;
        if repair.devices {
            // The namespace may be a new one.
            self.listen_network(spec);
        }
        Ok(())
    }
}
