//! The convergence decisions, pure: cluster view, local state and the clock
//! (`now`, an argument) in; what to do and when to come back out. No I/O,
//! no `Instant::now()`, no timers — the pass in [`super::converge`] carries
//! the plan out and the loop sleeps until the earliest wake-up asked for.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use privnet_core::fdb::{ArpAnswer, FdbEntry, RemoteEndpoint, arp_answers, desired_fdb};
use privnet_core::mac::parse_mac;
use privnet_core::naming::PrivateName;
use privnet_core::rotation;
use privnet_core::rpc::AttachmentKey;
use privnet_core::view::{ClusterView, EndpointInfo, NetworkInfo, NodeInfo};
use privnet_core::zone::ZoneEndpoint;

use crate::datapath::guard::{GuardedPort, PortTable};
use crate::datapath::wireguard::{MeshPeer, PeerStatus};
use crate::store::AttachmentRecord;

/// How long a peer may stay without a handshake before it is re-armed.
pub const REARM_AFTER: Duration = Duration::from_millis(300);
/// How soon to look again while some peer has no handshake.
pub const SILENT_RECHECK: Duration = Duration::from_millis(150);
/// Quiet time after which retired guard ports are purged.
pub const PURGE_AFTER: Duration = Duration::from_secs(2);
/// Retired guard ports purged at once whatever the activity.
pub const PURGE_BATCH: usize = 256;
/// How long a wake-up waits for more changes before converging.
pub const DEBOUNCE: Duration = Duration::from_millis(15);
/// Safety net: converge at least this often even without a change.
pub const RESYNC: Duration = Duration::from_secs(5);
/// Pause after a failed pass before waiting for the next one.
pub const RETRY_AFTER: Duration = Duration::from_millis(200);

/// The other nodes of the mesh: every node but this one that has a VTEP.
pub fn other_nodes<'a>(node: &str, view: &'a ClusterView) -> Vec<&'a NodeInfo> {
    view.nodes
        .iter()
        .filter(|n| n.name != node && n.vtep.is_some())
        .collect()
}

/// Peers of this node: every other node that has a VTEP, on the key that
/// routes to it, plus its announced next key as a standby (no allowed IPs)
/// until `switched` holds it (see [`privnet_core::rotation`]).
pub fn mesh_peers(
    node: &str,
    keepalive: Option<u16>,
    view: &ClusterView,
    switched: &BTreeSet<String>,
) -> Vec<MeshPeer> {
    let mut out = Vec::new();
    for n in other_nodes(node, view) {
        let Some(vtep) = n.vtep else { continue };
        let keys = rotation::peer_keys(n, switched);
        let peer = |public_key: String, standby| MeshPeer {
            public_key,
            endpoint: Some(n.endpoint),
            vtep,
            keepalive,
            standby,
        };
        out.push(peer(keys.routed, false));
        if let Some(next) = keys.standby {
            out.push(peer(next, true));
        }
    }
    out
}

/// Standby keys their node uses already: a completed handshake, or any
/// byte received (wireguard-go counts an initiation once it has
/// authenticated it, a round trip before the handshake completes; only the
/// holder of that key's private half can produce one).
pub fn handshaken_standbys(peers: &[MeshPeer], status: &[PeerStatus]) -> BTreeSet<String> {
    peers
        .iter()
        .filter(|p| p.standby)
        .filter(|p| {
            status.iter().any(|s| {
                s.public_key == p.public_key && (s.last_handshake_age.is_some() || s.rx_bytes > 0)
            })
        })
        .map(|p| p.public_key.clone())
        .collect()
}

/// The standbys the watcher polls, each with the key it replaces: those
/// configured less than [`rotation::STANDBY_FAST_FOR`] ago.
pub fn watched_standbys(
    peers: &[MeshPeer],
    view: &ClusterView,
    since: &BTreeMap<String, Instant>,
    now: Instant,
) -> Vec<(MeshPeer, String)> {
    peers
        .iter()
        .filter(|p| p.standby)
        .filter(|p| {
            since
                .get(&p.public_key)
                .is_some_and(|s| now.duration_since(*s) < rotation::STANDBY_FAST_FOR)
        })
        .filter_map(|p| {
            let node = view
                .nodes
                .iter()
                .find(|n| n.next_public_key.as_deref() == Some(p.public_key.as_str()))?;
            Some((p.clone(), node.public_key.clone()))
        })
        .collect()
}

/// Keeps when each standby key in `peers` was first configured.
pub fn track_standbys(since: &mut BTreeMap<String, Instant>, peers: &[MeshPeer], now: Instant) {
    since.retain(|k, _| peers.iter().any(|p| p.standby && &p.public_key == k));
    for p in peers.iter().filter(|p| p.standby) {
        since.entry(p.public_key.clone()).or_insert(now);
    }
}

/// How soon to poll handshakes again: fast while some standby was
/// configured less than [`rotation::STANDBY_FAST_FOR`] ago (its node may
/// switch any moment, and each poll shortens what it sends into the void).
pub fn standby_poll(standby_since: &BTreeMap<String, Instant>, now: Instant) -> Option<Duration> {
    standby_since
        .values()
        .any(|since| now.duration_since(*since) < rotation::STANDBY_FAST_FOR)
        .then_some(rotation::STANDBY_POLL)
}

/// What to do about peers without a handshake (see [`PeerTimers::plan`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SilentPlan {
    /// Peers to re-arm: set the others only, then all again.
    pub rearm: Vec<MeshPeer>,
    /// VTEPs to poke with a datagram.
    pub poke: Vec<Ipv4Addr>,
    /// Come back after this long.
    pub wake_after: Option<Duration>,
}

/// Since when each peer has been without a handshake.
#[derive(Debug, Default)]
pub struct PeerTimers {
    silent_since: BTreeMap<String, Instant>,
}

impl PeerTimers {
    /// A peer without a handshake: both ends configured each other in the
    /// same instant and each dropped the other's first initiation, and the
    /// tunnel will not initiate again before its 5 s rekey timeout. After
    /// [`REARM_AFTER`] such a peer is re-armed (removed and added back, which
    /// resets its handshake state); every silent peer is poked, and the pass
    /// comes back soon, so the mesh completes in well under a second.
    pub fn plan(&mut self, peers: &[MeshPeer], status: &[PeerStatus], now: Instant) -> SilentPlan {
        let silent: Vec<&MeshPeer> = peers
            .iter()
            // A standby key answers handshakes only once its node switches to it.
            .filter(|p| !p.standby)
            .filter(|p| {
                status
                    .iter()
                    .any(|s| s.public_key == p.public_key && s.last_handshake_age.is_none())
            })
            .collect();
        self.silent_since
            .retain(|key, _| silent.iter().any(|p| &p.public_key == key));
        if silent.is_empty() {
            return SilentPlan::default();
        }
        let mut rearm = Vec::new();
        for p in &silent {
            let since = self.silent_since.entry(p.public_key.clone()).or_insert(now);
            if now.duration_since(*since) >= REARM_AFTER {
                rearm.push((*p).clone());
                *since = now;
            }
        }
        SilentPlan {
            rearm,
            poke: silent.iter().map(|p| p.vtep).collect(),
            wake_after: Some(SILENT_RECHECK),
        }
    }
}

/// What to do with the local networks.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NetworksPlan {
    /// Networks with attachments that are not up yet.
    pub bring_up: Vec<NetworkInfo>,
    /// Ids of networks up here whose last attachment is gone.
    pub remove: Vec<String>,
    /// Namespaces of ours nobody owns (left by a previous run whose last
    /// container went away while the agent was down).
    pub leftovers: Vec<String>,
}

/// Brings up networks that have attachments, removes those that have none.
/// `up` maps the ids of networks up here to their namespace, `present` lists
/// our namespaces in the kernel, `netns_name` names a network's namespace.
pub fn plan_networks(
    wanted: &BTreeSet<String>,
    view: &ClusterView,
    up: &BTreeMap<String, String>,
    present: &[String],
    netns_name: impl Fn(u32) -> String,
) -> NetworksPlan {
    let bring_up: Vec<NetworkInfo> = wanted
        .iter()
        .filter(|id| !up.contains_key(*id))
        .filter_map(|id| view.network(id).cloned())
        .collect();
    let owned: BTreeSet<String> = up
        .values()
        .cloned()
        .chain(
            wanted
                .iter()
                .filter_map(|id| view.network(id))
                .map(|n| netns_name(n.vni)),
        )
        .collect();
    NetworksPlan {
        bring_up,
        remove: up
            .keys()
            .filter(|id| !wanted.contains(*id))
            .cloned()
            .collect(),
        leftovers: present
            .iter()
            .filter(|ns| !owned.contains(*ns))
            .cloned()
            .collect(),
    }
}

/// How to bring a network's port guard to the desired ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortAction {
    /// Nothing applied yet (or drift): rewrite the table whole.
    SetAll,
    /// Apply the difference to the table.
    Update(PortTable),
    /// Already right.
    Keep(PortTable),
}

/// The port guard action for `desired`, given the table applied last.
pub fn port_action(applied: Option<&PortTable>, desired: &[GuardedPort]) -> PortAction {
    match applied {
        None => PortAction::SetAll,
        Some(t) if t.live == desired => PortAction::Keep(t.clone()),
        Some(t) => PortAction::Update(t.clone()),
    }
}

/// When the live ports last changed: `now` if they differ from the last pass.
pub fn ports_changed_at(
    last: Option<&(PortTable, Instant)>,
    live: &[GuardedPort],
    now: Instant,
) -> Instant {
    match last {
        Some((old, at)) if old.live == live => *at,
        _ => now,
    }
}

/// Whether to purge retired ports now, later, or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purge {
    /// Nothing retired.
    Nothing,
    /// Purge in this pass.
    Now,
    /// Come back after this long (the network must be quiet first).
    After(Duration),
}

/// Retired ports go in one batch once the network has been quiet for
/// [`PURGE_AFTER`], or at once when [`PURGE_BATCH`] piled up.
pub fn purge_decision(table: &PortTable, changed_at: Instant, now: Instant) -> Purge {
    if table.retired.is_empty() {
        return Purge::Nothing;
    }
    let quiet = now.duration_since(changed_at);
    if table.retired.len() >= PURGE_BATCH || quiet >= PURGE_AFTER {
        Purge::Now
    } else {
        Purge::After(PURGE_AFTER - quiet)
    }
}

/// What a network's datapath on `node` forwards to other nodes: the FDB
/// (flood entries towards every remote VTEP hosting it, unicast entries for
/// its remote endpoints) and the ARP answers the bridge gives for them.
pub fn network_forwarding(
    node: &str,
    view: &ClusterView,
    network_id: &str,
) -> Result<(BTreeSet<FdbEntry>, BTreeSet<ArpAnswer>), privnet_core::fdb::FdbError> {
    let vteps: BTreeMap<&str, _> = view
        .nodes
        .iter()
        .filter_map(|n| Some((n.name.as_str(), n.vtep?)))
        .collect();
    let mut hosts = BTreeMap::new();
    let mut remote = Vec::new();
    for e in view
        .endpoints
        .iter()
        .filter(|e| e.network_id == network_id && e.node != node)
    {
        let (Some(vtep), Ok(mac)) = (vteps.get(e.node.as_str()), parse_mac(&e.mac)) else {
            continue;
        };
        hosts.insert(e.node.clone(), *vtep);
        remote.push(RemoteEndpoint {
            mac,
            ip: e.ip,
            node: e.node.clone(),
        });
    }
    let fdb = desired_fdb(node, &hosts, &remote)?;
    Ok((fdb, arp_answers(node, &remote)))
}

/// The FDB of [`network_forwarding`].
pub fn network_fdb(
    node: &str,
    view: &ClusterView,
    network_id: &str,
) -> Result<BTreeSet<FdbEntry>, privnet_core::fdb::FdbError> {
    network_forwarding(node, view, network_id).map(|(fdb, _)| fdb)
}

/// The zone of a network: local records plus remote endpoints, by name.
pub fn zone_endpoints(
    node: &str,
    records: &[AttachmentRecord],
    view: &ClusterView,
    network_id: &str,
) -> Vec<ZoneEndpoint> {
    let mut eps: Vec<ZoneEndpoint> = records
        .iter()
        .filter(|r| r.network_id == network_id)
        .map(zone_endpoint)
        .collect();
    eps.extend(
        view.endpoints
            .iter()
            .filter(|e| e.network_id == network_id && e.node != node)
            .map(|e| ZoneEndpoint {
                name: PrivateName {
                    number: e.container_number,
                    process_type: e.process_type.clone(),
                    application_id: e.application_id.clone(),
                    network_id: e.network_id.clone(),
                },
                address: e.ip,
            }),
    );
    eps.sort_by(|a, b| a.name.cmp(&b.name));
    eps.dedup_by(|a, b| a.name == b.name);
    eps
}

/// The zone entry of a record.
pub fn zone_endpoint(r: &AttachmentRecord) -> ZoneEndpoint {
    ZoneEndpoint {
        name: PrivateName {
            number: r.container_number,
            process_type: r.process_type.clone(),
            application_id: r.application_id.clone(),
            network_id: r.network_id.clone(),
        },
        address: r.address.addr(),
    }
}

/// Guard ports of these records, sorted by name.
pub fn ports_of<'a>(records: impl Iterator<Item = &'a AttachmentRecord>) -> Vec<GuardedPort> {
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

/// What to publish and withdraw so the source shows exactly our records.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PublishPlan {
    /// Endpoints new or changed since last published, or wiped from the
    /// source after it had shown them.
    pub publish: Vec<(AttachmentKey, EndpointInfo)>,
    /// Published endpoints the view shows now.
    pub shown: BTreeSet<AttachmentKey>,
    /// Endpoints published (now or by a previous run) but gone.
    pub withdraw: Vec<EndpointInfo>,
}

/// Publication of this node's endpoints.
pub fn plan_publication(
    node: &str,
    records: &[AttachmentRecord],
    view: &ClusterView,
    published: &BTreeMap<AttachmentKey, EndpointInfo>,
    seen: &BTreeSet<AttachmentKey>,
) -> PublishPlan {
    let want: BTreeMap<_, _> = records
        .iter()
        .map(|r| (r.key.clone(), endpoint_info(node, r)))
        .collect();
    let shown: BTreeSet<AttachmentKey> = want
        .iter()
        .filter(|(_, ep)| view.endpoints.contains(ep))
        .map(|(k, _)| k.clone())
        .collect();
    // Seen, then gone: someone deleted it from the source (a wipe, a
    // mistaken command); this node still has the container, so it goes back.
    // Never-seen ones wait: the view may just not have caught up yet.
    let wiped = |k: &AttachmentKey| seen.contains(k) && !shown.contains(k);
    let publish = want
        .iter()
        .filter(|(k, ep)| published.get(*k) != Some(*ep) || wiped(k))
        .map(|(k, ep)| (k.clone(), ep.clone()))
        .collect();
    let mut withdraw: Vec<EndpointInfo> = published
        .iter()
        .filter(|(k, _)| !want.contains_key(*k))
        .map(|(_, e)| e.clone())
        .collect();
    withdraw.extend(
        view.endpoints
            .iter()
            .filter(|e| e.node == node)
            .filter(|e| {
                !want
                    .keys()
                    .any(|k| k.container_id == e.container_id && k.ifname == e.interface)
            })
            .cloned(),
    );
    PublishPlan {
        publish,
        shown,
        withdraw,
    }
}

/// The endpoint a record publishes.
pub fn endpoint_info(node: &str, r: &AttachmentRecord) -> EndpointInfo {
    EndpointInfo {
        network_id: r.network_id.clone(),
        application_id: r.application_id.clone(),
        process_type: r.process_type.clone(),
        container_number: r.container_number,
        ip: r.address.addr(),
        mac: r.mac.clone(),
        node: node.to_string(),
        container_id: r.key.container_id.clone(),
        interface: r.key.ifname.clone(),
    }
}

/// Oldest handshake across peers in seconds; -1 if any peer never had one.
pub fn max_handshake_age(peers: &[PeerStatus]) -> i64 {
    peers
        .iter()
        .map(|p| p.last_handshake_age.map_or(-1, |a| a.as_secs() as i64))
        .fold(0, |acc, a| if a < 0 || acc < 0 { -1 } else { acc.max(a) })
}

/// How long the loop may wait for a change before the next pass: the
/// earliest wake-up a pass asked for, at most [`RESYNC`].
pub fn next_wait(wakes: &[Duration]) -> Duration {
    wakes.iter().copied().fold(RESYNC, Duration::min)
}
