//! What the agent asks of the kernel, as one small trait: the seam between
//! the agent's decisions and the datapath. [`super::kernel::KernelDatapath`]
//! is the real one; [`super::memory::MemoryDatapath`] is the in-memory fake
//! the agent is unit-tested against (as `DiskStore`/`MemoryStore` are for
//! attachment records).
//!
//! Every method is idempotent and adopts what exists (restart safety).

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};

use privnet_core::fdb::{ArpAnswer, FdbEntry};
use privnet_core::zone::Zone;

use super::drift::{Drift, NetworkRepair};
use super::events::DriftSignal;
use super::guard::{GuardError, GuardedPort, PortTable};
use super::netns::NetnsError;
use super::network::{NetworkDatapath, NetworkError};
use super::wireguard::{Key, MeshPeer, PeerStatus, WireguardConfig, WireguardError};
use crate::dns::handler::DnsCounters;
use crate::dns::server::Responder;

/// The node's mesh: its WireGuard interface and the node guard.
#[derive(Clone, Debug)]
pub struct MeshSpec {
    /// The WireGuard interface.
    pub wireguard: WireguardConfig,
    /// What the node guard confines to the WireGuard interface (privnet's
    /// VXLAN port, VNIs and VTEPs).
    pub guard: super::guard::NodeGuard,
    /// Node guard off (negative-control tests only).
    pub guard_disabled: bool,
}

/// A step of the datapath (for errors and the fake's fault injection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// [`NodeDatapath::ensure_mesh`].
    EnsureMesh,
    /// [`NodeDatapath::set_peers`].
    SetPeers,
    /// [`NodeDatapath::read_peers`].
    ReadPeers,
    /// [`NodeDatapath::switch_key`].
    SwitchKey,
    /// [`NodeDatapath::promote_standby`].
    PromoteStandby,
    /// [`NodeDatapath::ensure_network`].
    EnsureNetwork,
    /// [`NodeDatapath::start_dns`].
    StartDns,
    /// [`NodeDatapath::remove_network`].
    RemoveNetwork,
    /// [`NodeDatapath::list_networks`].
    ListNetworks,
    /// [`NodeDatapath::remove_leftover`].
    RemoveLeftover,
    /// [`NodeDatapath::set_ports`].
    SetPorts,
    /// [`NodeDatapath::update_ports`].
    UpdatePorts,
    /// [`NodeDatapath::purge_retired_ports`].
    PurgePorts,
    /// [`NodeDatapath::sync_fdb`].
    SyncFdb,
    /// [`NodeDatapath::sync_arp_answers`].
    SyncArpAnswers,
    /// [`NodeDatapath::observe_mesh`].
    ObserveMesh,
    /// [`NodeDatapath::observe_network`].
    ObserveNetwork,
    /// [`NodeDatapath::repair_network`].
    RepairNetwork,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::EnsureMesh => "bring up the mesh",
            Step::SetPeers => "set peers",
            Step::ReadPeers => "read peers",
            Step::SwitchKey => "switch the private key",
            Step::PromoteStandby => "route to a peer's next key",
            Step::EnsureNetwork => "bring up the network",
            Step::StartDns => "start DNS",
            Step::RemoveNetwork => "remove the network",
            Step::ListNetworks => "list networks",
            Step::RemoveLeftover => "remove a leftover network",
            Step::SetPorts => "set the port guard",
            Step::UpdatePorts => "update the port guard",
            Step::PurgePorts => "purge retired ports",
            Step::SyncFdb => "sync the FDB",
            Step::SyncArpAnswers => "sync the ARP answers",
            Step::ObserveMesh => "read back the mesh",
            Step::ObserveNetwork => "read back the network",
            Step::RepairNetwork => "repair the network",
        })
    }
}

/// Errors of the datapath seam.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// WireGuard could not be set up or configured.
    #[error("failed to {step} on the WireGuard interface")]
    Wireguard {
        /// Step.
        step: Step,
        /// Cause.
        #[source]
        source: Box<WireguardError>,
    },
    /// The node guard could not be applied.
    #[error("failed to apply the node guard")]
    NodeGuard(#[source] Box<GuardError>),
    /// A network's namespace, devices or guard could not be converged.
    #[error("failed to {step} in network namespace {netns}")]
    Network {
        /// Step.
        step: Step,
        /// Namespace concerned.
        netns: String,
        /// Cause.
        #[source]
        source: Box<NetworkError>,
    },
    /// A namespace operation failed.
    #[error("failed to {step} in network namespace {netns}")]
    Netns {
        /// Step.
        step: Step,
        /// Namespace concerned.
        netns: String,
        /// Cause.
        #[source]
        source: Box<NetnsError>,
    },
    /// The FDB could not be synced.
    #[error("failed to sync the FDB in network namespace {netns}")]
    Fdb {
        /// Namespace concerned.
        netns: String,
        /// Cause.
        #[source]
        source: Box<super::fdb::FdbError>,
    },
    /// The DNS responder could not be started.
    #[error("failed to start the DNS responder in network namespace {netns}")]
    Dns {
        /// Namespace concerned.
        netns: String,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A mesh operation before the mesh is up.
    #[error("failed to {0}: the mesh is not up yet")]
    MeshDown(Step),
    /// The fake was told to fail this step.
    #[error("failed to {0}: injected failure")]
    Injected(Step),
}

/// What the agent asks of the kernel.
pub trait NodeDatapath: Send + Sync + 'static {
    /// Whether a container's namespace (a path) still exists; records of
    /// vanished containers are released at start.
    fn container_alive(&self, netns: &str) -> bool;

    /// Raised when the kernel reports something that may be drift (see
    /// [`super::events`]); the agent's loop brings its read-back forward.
    fn drift_signal(&self) -> Arc<DriftSignal>;

    /// Brings up the WireGuard interface with its address and applies the
    /// node guard (`ip link add wg0 type wireguard`, `nft -f`).
    fn ensure_mesh(
        &self,
        mesh: &MeshSpec,
    ) -> impl Future<Output = Result<(), DatapathError>> + Send;
    /// Makes `peers` the interface's peers (`wg set`, diffed).
    fn set_peers(
        &self,
        peers: &[MeshPeer],
    ) -> impl Future<Output = Result<(), DatapathError>> + Send;
    /// Reads the peers back (`wg show`).
    fn read_peers(&self) -> impl Future<Output = Result<Vec<PeerStatus>, DatapathError>> + Send;
    /// Switches the interface to `key` (already written to the key file) without touching
    /// its peers or their sessions (`wg set <if> private-key …`).
    fn switch_key(
        &self,
        mesh: &MeshSpec,
        key: &Key,
    ) -> impl Future<Output = Result<(), DatapathError>> + Send;
    /// Routes to a peer's next key (`peer`, a standby until now) and removes its old key,
    /// leaving every other peer as it is.
    fn promote_standby(
        &self,
        peer: &MeshPeer,
        old: &str,
    ) -> impl Future<Output = Result<(), DatapathError>> + Send;
    /// Sends one datagram to each VTEP's discard port (starts a handshake).
    fn poke(&self, vteps: &[Ipv4Addr]) -> impl Future<Output = ()> + Send;

    /// Converges a network's namespace, bridge, VXLAN port and gateway, with
    /// the guard for `ports` (`ip netns add`, `ip link add … type vxlan`, `nft -f`).
    fn ensure_network(
        &self,
        spec: &NetworkDatapath,
        ports: &[GuardedPort],
    ) -> impl Future<Output = Result<(), DatapathError>> + Send;
    /// Starts the network's DNS responder on `<gateway>:53` inside its
    /// namespace (`None`: nothing to serve, as in the fake).
    fn start_dns(
        &self,
        spec: &NetworkDatapath,
        zone: Arc<RwLock<Zone>>,
        upstream: Option<SocketAddr>,
        counters: Arc<DnsCounters>,
    ) -> impl Future<Output = Result<Option<Responder>, DatapathError>> + Send;
    /// Removes a network from the node (`ip netns del`).
    fn remove_network(
        &self,
        spec: &NetworkDatapath,
    ) -> impl Future<Output = Result<(), DatapathError>> + Send;
    /// Network namespaces with this prefix that exist (what to adopt or clean).
    fn list_networks(&self, prefix: &str) -> Result<Vec<String>, DatapathError>;
    /// Deletes a leftover network namespace by name.
    fn remove_leftover(&self, netns: &str) -> Result<(), DatapathError>;

    /// Rewrites the network's port guard whole (atomic table swap).
    fn set_ports(
        &self,
        spec: &NetworkDatapath,
        ports: &[GuardedPort],
    ) -> impl Future<Output = Result<(), DatapathError>> + Send;
    /// Makes `ports` live incrementally; returns the table afterwards.
    fn update_ports(
        &self,
        spec: &NetworkDatapath,
        table: &PortTable,
        ports: &[GuardedPort],
    ) -> impl Future<Output = Result<PortTable, DatapathError>> + Send;
    /// Deletes the table's retired ports in one transaction.
    fn purge_retired_ports(
        &self,
        spec: &NetworkDatapath,
        table: &PortTable,
    ) -> impl Future<Output = Result<(), DatapathError>> + Send;
    /// Makes `entries` the VXLAN device's FDB (`bridge fdb`, diffed).
    fn sync_fdb(
        &self,
        spec: &NetworkDatapath,
        entries: &BTreeSet<FdbEntry>,
    ) -> impl Future<Output = Result<(), DatapathError>> + Send;
    /// Makes `answers` the ARP answers the bridge gives for remote
    /// endpoints (neighbour and bridge FDB entries, diffed).
    fn sync_arp_answers(
        &self,
        spec: &NetworkDatapath,
        answers: &BTreeSet<ArpAnswer>,
    ) -> impl Future<Output = Result<(), DatapathError>> + Send;

    /// Reads the mesh back: the WireGuard daemon and link, the node guard,
    /// and the peers against `peers` (`wg show`, `ip addr`, `nft list`).
    /// Empty when the mesh is not up yet (convergence brings it up).
    fn observe_mesh(
        &self,
        mesh: &MeshSpec,
        peers: &[MeshPeer],
    ) -> impl Future<Output = Result<Vec<Drift>, DatapathError>> + Send;
    /// Reads a network back: namespace, bridge, gateway, VXLAN, forwarding,
    /// guard tables, the FDB against `fdb`, and the container `ports`.
    fn observe_network(
        &self,
        spec: &NetworkDatapath,
        ports: &[GuardedPort],
        fdb: &BTreeSet<FdbEntry>,
    ) -> impl Future<Output = Result<Vec<Drift>, DatapathError>> + Send;
    /// Redoes what `repair` names in a network, leaving the rest alone.
    fn repair_network(
        &self,
        spec: &NetworkDatapath,
        ports: &[GuardedPort],
        repair: &NetworkRepair,
    ) -> impl Future<Output = Result<(), DatapathError>> + Send;
}
