//! The convergence pass: brings the kernel and the published objects in
//! line with the cluster view and the attachment book. Every step diffs
//! against what is there (adopt, never flush), so a restarted agent changes
//! nothing that is already right.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;

use super::datapath::fdb as kernel_fdb;
use super::datapath::guard::{self, PortTable};
use super::datapath::network;
use super::datapath::wireguard::{MeshPeer, Wireguard, WireguardConfig};
use super::local_network::{LocalNetwork, family};
use super::node::{Agent, Phase, ports_of, zone_endpoint};
use super::source::Source;
use privnet_core::fdb::{RemoteEndpoint, desired_fdb};
use privnet_core::mac::parse_mac;
use privnet_core::mtu::wireguard_mtu;
use privnet_core::naming::PrivateName;
use privnet_core::view::{ClusterView, EndpointInfo};
use privnet_core::zone::ZoneEndpoint;

/// How long a peer may stay without a handshake before it is re-armed.
const REARM_AFTER: Duration = Duration::from_millis(300);

/// Quiet time after which retired guard ports are purged.
const PURGE_AFTER: Duration = Duration::from_secs(2);
/// Retired guard ports purged at once whatever the activity.
const PURGE_BATCH: usize = 256;

/// How long a wake-up waits for more changes before converging.
const DEBOUNCE: Duration = Duration::from_millis(15);

/// Safety net: converge at least this often even without a change.
const RESYNC: Duration = Duration::from_secs(5);

impl<S: Source> Agent<S> {
    /// Runs convergence passes forever (woken by changes).
    pub async fn converge_loop(self: Arc<Self>) {
        loop {
            if let Err(e) = self.converge().await {
                tracing::warn!(error = %e, "convergence failed");
                self.metrics.errors.inc();
                *self.phase.write().expect("phase lock") = match self.phase() {
                    Phase::WaitingForMesh => Phase::WaitingForMesh,
                    _ => Phase::Degraded(e.clone()),
                };
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if tokio::time::timeout(RESYNC, self.wake.notified())
                .await
                .is_ok()
            {
                // Coalesce a burst (a runtime starting or stopping many
                // containers) into one pass: one nft swap, one FDB sync.
                tokio::time::sleep(DEBOUNCE).await;
            }
        }
    }

    /// One pass.
    pub async fn converge(&self) -> Result<(), String> {
        self.metrics.converges.inc();
        let view = self.current_view();
        let mut conv = self.conv.lock().await;
        self.converge_mesh(&view, &mut conv).await?;
        if conv.wg.is_none() {
            // No mesh address yet: nothing below can be set up.
            return Ok(());
        }
        self.converge_networks(&view).await?;
        // Snapshot under the state lock, then do the I/O without it.
        let (records, locals) = {
            let st = self.state.lock().await;
            let records: Vec<_> = st.book.records().cloned().collect();
            let locals: Vec<_> = st
                .networks
                .values()
                .map(|l| (l.info.clone(), l.spec.clone(), l.zone.clone()))
                .collect();
            (records, locals)
        };
        for (info, spec, zone) in &locals {
            let mine: Vec<_> = records
                .iter()
                .filter(|r| r.network_id == info.id)
                .cloned()
                .collect();
            let ports = ports_of(mine.iter());
            self.converge_ports(&mut conv, &info.id, spec, &ports)
                .await?;
            let desired = self.desired_fdb(&view, &info.id)?;
            if conv.applied_fdb.get(&info.id) != Some(&desired) {
                let (h, ifindex) = network::vxlan_handle(spec)
                    .await
                    .map_err(|e| e.to_string())?;
                let entries = desired
                    .iter()
                    .map(|e| kernel_fdb::FdbEntry {
                        mac: e.mac,
                        dst: e.dst,
                    })
                    .collect();
                kernel_fdb::sync(&h, ifindex, &entries)
                    .await
                    .map_err(|e| format!("failed to sync FDB of {}: {e}", info.id))?;
                conv.applied_fdb.insert(info.id.clone(), desired);
            }
            let mut eps: Vec<ZoneEndpoint> = mine.iter().filter_map(zone_endpoint).collect();
            eps.extend(
                view.endpoints
                    .iter()
                    .filter(|e| e.network_id == info.id && e.node != self.cfg.node)
                    .map(zone_entry),
            );
            eps.sort_by(|a, b| a.name.cmp(&b.name));
            eps.dedup_by(|a, b| a.name == b.name);
            if let Err(e) = zone.write().expect("zone lock").sync(&eps) {
                tracing::warn!(network = %info.id, error = %e, "zone rejected an endpoint");
            }
        }
        conv.port_tables
            .retain(|id, _| locals.iter().any(|(i, _, _)| &i.id == id));
        conv.applied_fdb
            .retain(|id, _| locals.iter().any(|(i, _, _)| &i.id == id));
        self.converge_published(&view, &records, &mut conv).await;
        self.update_metrics(&conv, locals.len()).await;
        Ok(())
    }

    /// The port guard of one network: a full table the first time (or after
    /// drift), increments afterwards; retired ports are purged in one batch
    /// once the network has been quiet for [`PURGE_AFTER`] or when many piled up.
    async fn converge_ports(
        &self,
        conv: &mut super::node::ConvergeState,
        id: &str,
        spec: &network::NetworkDatapath,
        ports: &[super::datapath::GuardedPort],
    ) -> Result<(), String> {
        let fail = |e: network::NetworkError| format!("failed to apply guard of {id}: {e}");
        let now = Instant::now();
        let table = match conv.port_tables.get(id) {
            None => {
                network::set_ports(spec, ports).await.map_err(fail)?;
                PortTable {
                    live: ports.to_vec(),
                    retired: Default::default(),
                }
            }
            Some((table, _)) if table.live == ports => table.clone(),
            Some((table, _)) => match network::update_ports(spec, table, ports).await {
                Ok(after) => after,
                // The table changed behind our back: rebuild it whole.
                Err(_) => {
                    network::set_ports(spec, ports).await.map_err(fail)?;
                    PortTable {
                        live: ports.to_vec(),
                        retired: Default::default(),
                    }
                }
            },
        };
        let changed_at = match conv.port_tables.get(id) {
            Some((old, at)) if old.live == table.live => *at,
            _ => now,
        };
        let mut table = table;
        if !table.retired.is_empty()
            && (table.retired.len() >= PURGE_BATCH || now.duration_since(changed_at) >= PURGE_AFTER)
        {
            network::purge_retired_ports(spec, &table)
                .await
                .map_err(fail)?;
            table.retired.clear();
        }
        if !table.retired.is_empty() {
            // Come back when the purge is due.
            let wake = self.wake_handle();
            tokio::spawn(async move {
                tokio::time::sleep(PURGE_AFTER).await;
                wake.notify_one();
            });
        }
        conv.port_tables.insert(id.to_string(), (table, changed_at));
        Ok(())
    }

    async fn converge_mesh(
        &self,
        view: &ClusterView,
        conv: &mut super::node::ConvergeState,
    ) -> Result<(), String> {
        let Some(me) = view.node(&self.cfg.node) else {
            return Ok(());
        };
        let Some(vtep) = me.vtep else { return Ok(()) };
        let address =
            Ipv4Net::new(vtep, self.cfg.mesh_cidr.prefix_len()).map_err(|e| e.to_string())?;
        let stale = conv.wg.as_ref().is_none_or(|_| !conv.node_guard_applied);
        if stale {
            let wg = Wireguard::ensure(
                &self.agent_ns,
                WireguardConfig {
                    ifname: self.cfg.wg_ifname.clone(),
                    listen_port: self.cfg.wg_port,
                    address,
                    mtu: wireguard_mtu(self.cfg.underlay_mtu, family(&self.cfg)),
                    state_dir: self.cfg.state_dir.clone(),
                    backend: self.cfg.wg_backend,
                },
            )
            .await
            .map_err(|e| format!("failed to set up WireGuard: {e}"))?;
            let rules = guard::agent_ruleset(&self.cfg.node_guard(), self.cfg.guard_disabled)
                .map_err(|e| e.to_string())?;
            guard::apply(&self.agent_ns, &rules)
                .await
                .map_err(|e| format!("failed to apply the node guard: {e}"))?;
            conv.wg = Some(wg);
            conv.node_guard_applied = true;
        }
        let peers: Vec<MeshPeer> = view
            .nodes
            .iter()
            .filter(|n| n.name != self.cfg.node)
            .filter_map(|n| {
                Some(MeshPeer {
                    public_key: n.public_key.clone(),
                    endpoint: Some(n.endpoint),
                    vtep: n.vtep?,
                    keepalive: self.cfg.keepalive,
                })
            })
            .collect();
        let wg = conv.wg.as_ref().expect("set above");
        wg.set_peers(&peers)
            .await
            .map_err(|e| format!("failed to configure WireGuard peers: {e}"))?;
        self.poke_silent_peers(wg, &peers, &mut conv.silent_since)
            .await;
        self.metrics.peers.set(peers.len() as i64);
        let mut phase = self.phase.write().expect("phase lock");
        if *phase != Phase::Ready {
            tracing::info!(vtep = %vtep, peers = peers.len(), "mesh ready");
            *phase = Phase::Ready;
        }
        Ok(())
    }

    /// A peer without a handshake: both ends configured each other in the
    /// same instant and each dropped the other's first initiation, and the
    /// tunnel will not initiate again before its 5 s rekey timeout. After a
    /// grace period such a peer is re-armed (removed and added back, which
    /// resets its handshake state) and poked with a datagram to its VTEP's
    /// discard port, so the mesh completes in well under a second.
    async fn poke_silent_peers(
        &self,
        wg: &Wireguard,
        peers: &[MeshPeer],
        silent_since: &mut BTreeMap<String, Instant>,
    ) {
        let Ok(status) = wg.read_peers().await else {
            return;
        };
        let silent: Vec<&MeshPeer> = peers
            .iter()
            .filter(|p| {
                status
                    .iter()
                    .any(|s| s.public_key == p.public_key && s.last_handshake_age.is_none())
            })
            .collect();
        silent_since.retain(|key, _| silent.iter().any(|p| &p.public_key == key));
        if silent.is_empty() {
            return;
        }
        let now = Instant::now();
        let stale: Vec<&MeshPeer> = silent
            .iter()
            .filter(|p| {
                now.duration_since(*silent_since.entry(p.public_key.clone()).or_insert(now))
                    >= REARM_AFTER
            })
            .copied()
            .collect();
        if !stale.is_empty() {
            let others: Vec<MeshPeer> = peers
                .iter()
                .filter(|p| !stale.iter().any(|s| s.public_key == p.public_key))
                .cloned()
                .collect();
            if wg.set_peers(&others).await.is_ok() && wg.set_peers(peers).await.is_ok() {
                tracing::debug!(
                    peers = stale.len(),
                    "re-armed WireGuard peers without a handshake"
                );
            }
            for p in &stale {
                silent_since.insert(p.public_key.clone(), now);
            }
        }
        if let Ok(sock) = tokio::net::UdpSocket::bind("0.0.0.0:0").await {
            for p in &silent {
                let _ = sock.send_to(b"privnet-handshake", (p.vtep, 9)).await;
            }
        }
        let wake = self.wake_handle();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            wake.notify_one();
        });
    }

    /// Brings up networks that have attachments, removes those that have none.
    async fn converge_networks(&self, view: &ClusterView) -> Result<(), String> {
        let mut st = self.state.lock().await;
        let wanted: BTreeSet<String> = st.book.networks().into_iter().map(str::to_string).collect();
        for id in &wanted {
            if let Some(info) = view.network(id).cloned() {
                self.ensure_local_network(&mut st, &info)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        // Namespaces of ours that no tracked network owns (left by a previous
        // run whose last container went away while the agent was down).
        let tracked: BTreeSet<String> =
            st.networks.values().map(|l| l.spec.netns.clone()).collect();
        for ns in network::list_networks(&self.cfg.netns_prefix).unwrap_or_default() {
            if !tracked.contains(&ns)
                && !wanted.iter().any(|id| {
                    view.network(id)
                        .is_some_and(|n| self.cfg.netns_name(n.vni) == ns)
                })
            {
                tracing::info!(netns = %ns, "removing a leftover network namespace");
                let _ = super::datapath::netns::delete(&ns);
            }
        }
        let doomed: Vec<String> = st
            .networks
            .keys()
            .filter(|id| !wanted.contains(*id))
            .cloned()
            .collect();
        for id in doomed {
            let local: LocalNetwork = st.networks.remove(&id).expect("listed above");
            tracing::info!(network = %id, "last attachment gone: removing the network from this node");
            local
                .down(&self.agent_ns)
                .await
                .map_err(|e| format!("failed to remove network {id}: {e}"))?;
        }
        Ok(())
    }

    fn desired_fdb(
        &self,
        view: &ClusterView,
        network_id: &str,
    ) -> Result<BTreeSet<privnet_core::fdb::FdbEntry>, String> {
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
            .filter(|e| e.network_id == network_id && e.node != self.cfg.node)
        {
            let (Some(vtep), Ok(mac)) = (vteps.get(e.node.as_str()), parse_mac(&e.mac)) else {
                continue;
            };
            hosts.insert(e.node.clone(), *vtep);
            remote.push(RemoteEndpoint {
                mac,
                node: e.node.clone(),
            });
        }
        desired_fdb(&self.cfg.node, &hosts, &remote).map_err(|e| e.to_string())
    }

    async fn converge_published(
        &self,
        view: &ClusterView,
        records: &[super::store::AttachmentRecord],
        conv: &mut super::node::ConvergeState,
    ) {
        let want: BTreeMap<_, _> = records
            .iter()
            .map(|r| (r.key.clone(), endpoint_info(&self.cfg.node, r)))
            .collect();
        for (key, ep) in &want {
            if conv.published.get(key) != Some(ep) {
                match self.source.publish_endpoint(ep).await {
                    Ok(()) => {
                        conv.published.insert(key.clone(), ep.clone());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "failed to publish an endpoint");
                        self.metrics.errors.inc();
                    }
                }
            }
        }
        // Withdraw what is published (now or by a previous run) but gone.
        let mut stale: Vec<EndpointInfo> = conv
            .published
            .iter()
            .filter(|(k, _)| !want.contains_key(*k))
            .map(|(_, e)| e.clone())
            .collect();
        stale.extend(
            view.endpoints
                .iter()
                .filter(|e| e.node == self.cfg.node)
                .filter(|e| {
                    !want
                        .keys()
                        .any(|k| k.container_id == e.container_id && k.ifname == e.interface)
                })
                .cloned(),
        );
        for ep in stale {
            if self.source.withdraw_endpoint(&ep).await.is_ok() {
                conv.published.retain(|k, _| {
                    !(k.container_id == ep.container_id && k.ifname == ep.interface)
                });
            }
        }
    }

    async fn update_metrics(&self, conv: &super::node::ConvergeState, networks: usize) {
        self.metrics.networks.set(networks as i64);
        if let Some(wg) = &conv.wg
            && let Ok(peers) = wg.read_peers().await
        {
            let age = peers
                .iter()
                .map(|p| p.last_handshake_age.map_or(-1, |a| a.as_secs() as i64))
                .fold(0, |acc, a| if a < 0 || acc < 0 { -1 } else { acc.max(a) });
            self.metrics.max_handshake_age.set(age);
        }
    }
}

fn zone_entry(e: &EndpointInfo) -> ZoneEndpoint {
    ZoneEndpoint {
        name: PrivateName {
            number: e.container_number,
            process_type: e.process_type.clone(),
            application_id: e.application_id.clone(),
            network_id: e.network_id.clone(),
        },
        address: e.ip,
    }
}

fn endpoint_info(node: &str, r: &super::store::AttachmentRecord) -> EndpointInfo {
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
