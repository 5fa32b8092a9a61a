//! The convergence loop and pass: reads the clock once per pass, asks the
//! planner ([`super::plan`]) what to do, and carries it out through the
//! datapath and the source. Every step diffs against what is there (adopt,
//! never flush), so a restarted agent changes nothing that is already right.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use tracing::Instrument;

use super::error::ConvergeError;
use super::hold::{Gate, LiveAttachment};
use super::plan::{self, PortAction, Purge};
use super::repair_plan;
use super::{Agent, ConvergeState, Phase, PortGuards};
use crate::datapath::guard::{GuardedPort, PortTable};
use crate::datapath::network::NetworkDatapath;
use crate::datapath::wireguard::WireguardConfig;
use crate::datapath::{DatapathError, MeshSpec, NodeDatapath};
use crate::local_network::{LocalNetwork, family};
use crate::source::Source;
use crate::store::AttachmentRecord;
use privnet_core::mtu::wireguard_mtu;
use privnet_core::rpc::AttachmentKey;
use privnet_core::view::ClusterView;

/// What a pass asks of the loop.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PassOutcome {
    /// Wake-ups the pass asked for (purge due, peers to recheck), from now.
    pub wakes: Vec<Duration>,
}

impl<S: Source, D: NodeDatapath> Agent<S, D> {
    /// Runs convergence passes forever (woken by changes, by the wake-ups a
    /// pass asks for, and every resync at the latest); every resync
    /// (`cfg.resync`), or soon after a kernel event that may be drift
    /// ([`crate::datapath::events`]), the datapath is also read back and
    /// repaired.
    pub async fn converge_loop(self: Arc<Self>) {
        let events = self.datapath.drift_signal();
        let mut last_check = Instant::now();
        let mut next_pass = Instant::now();
        loop {
            if Instant::now() >= next_pass {
                let wait = match self.converge_at(Instant::now()).await {
                    Ok(outcome) => plan::next_wait(&outcome.wakes),
                    Err(_) => {
                        tokio::time::sleep(plan::RETRY_AFTER).await;
                        plan::RESYNC
                    }
                };
                next_pass = Instant::now() + wait.min(self.cfg.resync);
            }
            let now = Instant::now();
            if repair_plan::until_check(last_check, events.peek(), now, self.cfg.resync).is_zero() {
                // Taken first: an event during the check asks for another.
                events.take();
                self.check_at(now).await;
                last_check = Instant::now();
            }
            let now = Instant::now();
            let wait = next_pass
                .saturating_duration_since(now)
                .min(repair_plan::until_check(
                    last_check,
                    events.peek(),
                    now,
                    self.cfg.resync,
                ));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.wake.notified() => {
                    // Coalesce a burst (a runtime starting or stopping many
                    // containers) into one pass: one nft swap, one FDB sync.
                    tokio::time::sleep(plan::DEBOUNCE).await;
                    next_pass = Instant::now();
                }
                // Only the check's time may have come.
                () = events.raised() => {}
            }
        }
    }

    /// One pass at time `now`. A failure is logged with its chain and
    /// degrades the phase (what exists keeps being served).
    pub async fn converge_at(&self, now: Instant) -> Result<PassOutcome, ConvergeError> {
        let pass = self.metrics.converges.get() + 1;
        let span = tracing::debug_span!("converge", pass);
        let result = self.pass(now).instrument(span.clone()).await;
        if let Err(e) = &result {
            let _entered = span.enter();
            tracing::warn!(error = %crate::error_chain(e), "convergence failed");
            self.metrics.errors.inc();
            let mut phase = self.phase.write().expect("phase lock");
            if *phase != Phase::WaitingForMesh {
                *phase = Phase::Degraded(crate::error_chain(e));
            }
        }
        result
    }

    async fn pass(&self, now: Instant) -> Result<PassOutcome, ConvergeError> {
        self.metrics.converges.inc();
        let mut outcome = PassOutcome::default();
        let raw = self.current_view();
        let mut conv = self.conv.lock().await;
        let (view, settle_wake) = self.gate_view(&raw, &mut conv, now).await;
        outcome.wakes.extend(settle_wake);
        self.converge_mesh(&view, &mut conv, now, &mut outcome)
            .await?;
        if !conv.mesh_up {
            // No mesh address yet: nothing below can be set up.
            return Ok(outcome);
        }
        self.converge_networks(&view, now).await?;
        // Snapshot under the state lock, then do the I/O without it. The
        // port guards are taken before the state is let go, so an Attach
        // that comes in now installs its port after this pass's, never
        // under a stale snapshot (no retire-then-re-add flapping).
        let (records, locals, mut guards) = {
            let st = self.state.lock().await;
            let records: Vec<AttachmentRecord> = st.book.records().cloned().collect();
            let locals: Vec<_> = st
                .networks
                .values()
                .map(|l| (l.info.clone(), l.spec.clone(), l.zone.clone()))
                .collect();
            (records, locals, self.guards.lock().await)
        };
        for (info, spec, _) in &locals {
            let id = &info.id;
            let ports = self.live_ports(records.iter().filter(|r| &r.network_id == id));
            if let Some(wake) = self
                .converge_ports(&mut guards, id, spec, &ports, now)
                .await?
            {
                outcome.wakes.push(wake);
            }
        }
        guards.retain(|id, _| locals.iter().any(|(i, _, _)| &i.id == id));
        drop(guards);
        let mut zone_entries = 0;
        for (info, spec, zone) in &locals {
            let id = &info.id;
            let (desired, answers) =
                plan::network_forwarding(&self.cfg.node, &view, id).map_err(|source| {
                    ConvergeError::FdbPlan {
                        id: id.clone(),
                        source,
                    }
                })?;
            let fdb_err = |source| ConvergeError::Fdb {
                id: id.clone(),
                source,
            };
            if conv.applied_fdb.get(id) != Some(&desired) {
                self.datapath
                    .sync_fdb(spec, &desired)
                    .await
                    .map_err(fdb_err)?;
                conv.applied_fdb.insert(id.clone(), desired);
            }
            // After the FDB: an answer only helps once frames to its MAC
            // reach the right node.
            if conv.applied_arp.get(id) != Some(&answers) {
                self.datapath
                    .sync_arp_answers(spec, &answers)
                    .await
                    .map_err(fdb_err)?;
                conv.applied_arp.insert(id.clone(), answers);
            }
            let eps = plan::zone_endpoints(&self.cfg.node, &records, &view, id);
            let mut zone = zone.write().expect("zone lock");
            if let Err(e) = zone.sync(&eps) {
                tracing::warn!(network = %id, error = %e, "zone rejected an endpoint");
            }
            zone_entries += zone.len();
        }
        conv.applied_fdb
            .retain(|id, _| locals.iter().any(|(i, _, _)| &i.id == id));
        conv.applied_arp
            .retain(|id, _| locals.iter().any(|(i, _, _)| &i.id == id));
        // Publication looks at the view as the source shows it (not the
        // held one), so endpoints wiped from the API are published again.
        self.converge_published(&raw, &records, &mut conv).await;
        self.update_metrics(locals.len(), zone_entries, &conv.rotation.standby_since)
            .await;
        Ok(outcome)
    }

    /// The port guard of one network: brought to `ports` (see
    /// [`Self::apply_ports`]); retired ports are purged in one batch (see
    /// [`plan::purge_decision`]). Returns when to come back for a purge.
    async fn converge_ports(
        &self,
        guards: &mut PortGuards,
        id: &str,
        spec: &NetworkDatapath,
        ports: &[GuardedPort],
        now: Instant,
    ) -> Result<Option<Duration>, ConvergeError> {
        let fail = |source| ConvergeError::Guard {
            id: id.to_string(),
            source,
        };
        self.apply_ports(guards, id, spec, ports, now)
            .await
            .map_err(fail)?;
        let (table, changed_at) = guards.get_mut(id).expect("just applied");
        Ok(match plan::purge_decision(table, *changed_at, now) {
            Purge::Nothing => None,
            Purge::Now => {
                self.datapath
                    .purge_retired_ports(spec, table)
                    .await
                    .map_err(fail)?;
                table.retired.clear();
                None
            }
            Purge::After(d) => Some(d),
        })
    }

    /// Makes `ports` the live ports of a network's guard: a full table the
    /// first time (or after drift), an increment otherwise, nothing when it
    /// is already right, so Attach and the pass never redo each other's
    /// work. Records the table and when its live set changed.
    pub(super) async fn apply_ports(
        &self,
        guards: &mut PortGuards,
        id: &str,
        spec: &NetworkDatapath,
        ports: &[GuardedPort],
        now: Instant,
    ) -> Result<(), DatapathError> {
        let whole = || PortTable {
            live: ports.to_vec(),
            retired: Default::default(),
        };
        let last = guards.get(id);
        let table = match plan::port_action(last.map(|(t, _)| t), ports) {
            PortAction::SetAll => {
                self.datapath.set_ports(spec, ports).await?;
                whole()
            }
            PortAction::Keep(table) => table,
            PortAction::Update(table) => {
                match self.datapath.update_ports(spec, &table, ports).await {
                    Ok(after) => after,
                    // The table changed behind our back: rebuild it whole.
                    Err(_) => {
                        self.datapath.set_ports(spec, ports).await?;
                        whole()
                    }
                }
            }
        };
        let changed_at = plan::ports_changed_at(guards.get(id), &table.live, now);
        guards.insert(id.to_string(), (table, changed_at));
        Ok(())
    }

    async fn converge_mesh(
        &self,
        view: &ClusterView,
        conv: &mut ConvergeState,
        now: Instant,
        outcome: &mut PassOutcome,
    ) -> Result<(), ConvergeError> {
        let Some(vtep) = view.node(&self.cfg.node).and_then(|me| me.vtep) else {
            return Ok(());
        };
        let address = Ipv4Net::new(vtep, self.cfg.mesh_cidr.prefix_len())
            .map_err(ConvergeError::MeshAddress)?;
        let mesh = self.mesh_spec(address);
        if !conv.mesh_up {
            self.datapath
                .ensure_mesh(&mesh)
                .await
                .map_err(ConvergeError::Mesh)?;
            conv.mesh_up = true;
        }
        let rotation_wake = self.rotate_own_key(view, conv, &mesh, now).await?;
        outcome.wakes.extend(rotation_wake);
        // The standby watcher may have routed to a peer's next key: take it
        // in before computing the peers, under the lock it switches under.
        let peers_guard = self.peers_lock.lock().await;
        let fast = std::mem::take(&mut self.standby_watch.lock().expect("watch lock").switched);
        conv.rotation.switched.extend(fast);
        let mut peers = self.desired_peers(view, conv);
        self.datapath
            .set_peers(&peers)
            .await
            .map_err(ConvergeError::Mesh)?;
        if let Ok(mut status) = self.datapath.read_peers().await {
            let handshaken = plan::handshaken_standbys(&peers, &status);
            if self.follow_peer_switches(view, conv, &handshaken) {
                // A peer switched to its next key: route to it now (configure, then
                // remove the old key), not at the next pass.
                peers = self.desired_peers(view, conv);
                self.datapath
                    .set_peers(&peers)
                    .await
                    .map_err(ConvergeError::Mesh)?;
                status = self.datapath.read_peers().await.unwrap_or(status);
            }
            plan::track_standbys(&mut conv.rotation.standby_since, &peers, now);
            let polled = plan::standby_poll(&conv.rotation.standby_since, now);
            outcome.wakes.extend(polled);
            self.standby_watch.lock().expect("watch lock").standbys =
                plan::watched_standbys(&peers, view, &conv.rotation.standby_since, now);
            let silent = conv.peer_timers.plan(&peers, &status, now);
            if !silent.rearm.is_empty() {
                let others: Vec<_> = peers
                    .iter()
                    .filter(|p| !silent.rearm.iter().any(|s| s.public_key == p.public_key))
                    .cloned()
                    .collect();
                if self.datapath.set_peers(&others).await.is_ok()
                    && self.datapath.set_peers(&peers).await.is_ok()
                {
                    tracing::debug!(
                        peers = silent.rearm.len(),
                        "re-armed WireGuard peers without a handshake"
                    );
                }
            }
            if !silent.poke.is_empty() {
                self.datapath.poke(&silent.poke).await;
            }
            outcome.wakes.extend(silent.wake_after);
        }
        drop(peers_guard);
        self.note_routed(view, conv);
        if !self.publish_self(view, conv, &peers).await {
            outcome.wakes.push(plan::RETRY_AFTER);
        }
        self.metrics
            .peers
            .set(peers.iter().filter(|p| !p.standby).count() as i64);
        let mut phase = self.phase.write().expect("phase lock");
        if *phase != Phase::Ready {
            tracing::info!(vtep = %vtep, peers = peers.len(), "mesh ready");
            *phase = Phase::Ready;
        }
        Ok(())
    }

    /// The peers this node configures: the view's, with the peers' key
    /// rotations as far as this node has followed them.
    pub(super) fn desired_peers(
        &self,
        view: &ClusterView,
        conv: &ConvergeState,
    ) -> Vec<crate::datapath::wireguard::MeshPeer> {
        plan::mesh_peers(
            &self.cfg.node,
            self.cfg.keepalive,
            view,
            &conv.rotation.switched,
        )
    }

    pub(super) fn mesh_spec(&self, address: Ipv4Net) -> MeshSpec {
        MeshSpec {
            wireguard: WireguardConfig {
                ifname: self.cfg.wg_ifname.clone(),
                listen_port: self.cfg.wg_port,
                address,
                mtu: wireguard_mtu(self.cfg.underlay_mtu, family(&self.cfg)),
                state_dir: self.cfg.state_dir.clone(),
                backend: self.cfg.wg_backend,
            },
            guard: self.cfg.node_guard(),
            guard_disabled: self.cfg.guard_disabled,
        }
    }

    /// Brings up networks that have attachments, removes those that have
    /// none and namespaces of ours nobody owns.
    async fn converge_networks(
        &self,
        view: &ClusterView,
        now: Instant,
    ) -> Result<(), ConvergeError> {
        let mut st = self.state.lock().await;
        let wanted = st.book.networks().into_iter().map(str::to_string).collect();
        let up = st
            .networks
            .iter()
            .map(|(id, l)| (id.clone(), l.spec.netns.clone()))
            .collect();
        let present = self
            .datapath
            .list_networks(&self.cfg.netns_prefix)
            .unwrap_or_default();
        let todo =
            plan::plan_networks(&wanted, view, &up, &present, |vni| self.cfg.netns_name(vni));
        for info in &todo.bring_up {
            self.ensure_local_network(&mut st, info, now)
                .await
                .map_err(|source| ConvergeError::NetworkUp {
                    id: info.id.clone(),
                    source,
                })?;
        }
        for ns in &todo.leftovers {
            tracing::info!(netns = %ns, "removing a leftover network namespace");
            if let Err(e) = self.datapath.remove_leftover(ns) {
                tracing::warn!(error = %crate::error_chain(&e), "failed to remove a leftover namespace");
            }
        }
        for id in todo.remove {
            let local: LocalNetwork = st.networks.remove(&id).expect("planned from this map");
            tracing::info!(network = %id, "last attachment gone: removing the network from this node");
            local
                .down(&self.datapath)
                .await
                .map_err(|source| ConvergeError::NetworkDown { id, source })?;
        }
        Ok(())
    }

    /// The view this pass converges to: the source's, unless it would take
    /// most of this node away (see [`super::hold`]); then the last good one's
    /// items stay until the grace period or an operator's confirmation.
    async fn gate_view(
        &self,
        raw: &ClusterView,
        conv: &mut ConvergeState,
        now: Instant,
    ) -> (ClusterView, Option<Duration>) {
        let live: BTreeSet<LiveAttachment> = {
            let st = self.state.lock().await;
            st.book
                .records()
                .map(|r| LiveAttachment {
                    network_id: r.network_id.clone(),
                    container_id: r.key.container_id.clone(),
                    interface: r.key.ifname.clone(),
                })
                .collect()
        };
        let confirm_file = self.cfg.confirm_removals_file();
        let confirmed = conv.removals.holding() && confirm_file.exists();
        let was_holding = conv.removals.holding();
        let policy = self.cfg.removal_hold;
        let (view, gate) = conv
            .removals
            .gate(&self.cfg.node, raw, &live, &policy, confirmed, now);
        match gate {
            Gate::Apply => {
                if was_holding {
                    tracing::info!(
                        "the held removal was withdrawn: the cluster view is whole again"
                    );
                }
            }
            Gate::Held { removal, .. } => {
                if !was_holding {
                    self.metrics.removal_holds.inc();
                    tracing::warn!(
                        %removal,
                        grace_secs = policy.grace.as_secs(),
                        confirm = %confirm_file.display(),
                        "holding a cluster view that would take most of this node away; forwarding with the last good one"
                    );
                }
            }
            Gate::Released { removal, confirmed } => {
                tracing::warn!(%removal, confirmed, "applying the held removal");
            }
        }
        if confirmed && let Err(e) = std::fs::remove_file(&confirm_file) {
            tracing::warn!(error = %e, "failed to remove the confirmation file");
        }
        self.metrics
            .removals_held
            .set(i64::from(conv.removals.holding()));
        conv.settling
            .apply(&self.cfg.node, view, policy.settle, now)
    }

    async fn converge_published(
        &self,
        view: &ClusterView,
        records: &[AttachmentRecord],
        conv: &mut ConvergeState,
    ) {
        let todo =
            plan::plan_publication(&self.cfg.node, records, view, &conv.published, &conv.shown);
        let wiped = |key: &AttachmentKey| conv.shown.contains(key);
        let mut publish = Vec::with_capacity(todo.publish.len());
        for (key, ep) in todo.publish {
            if wiped(&key) {
                if !self.source.endpoint_owner_exists(&ep) {
                    // Its pod is gone: the CNI DEL is on its way.
                    continue;
                }
                tracing::warn!(container = %key.container_id, "publishing again an endpoint wiped from the source");
            }
            publish.push((key, ep));
        }
        conv.shown = todo.shown;
        for (key, ep) in publish {
            match self.source.publish_endpoint(&ep).await {
                Ok(()) => {
                    conv.published.insert(key, ep);
                }
                Err(e) => {
                    tracing::warn!(error = %crate::error_chain(&e), "failed to publish an endpoint");
                    self.metrics.errors.inc();
                }
            }
        }
        for ep in todo.withdraw {
            if self.source.withdraw_endpoint(&ep).await.is_ok() {
                conv.published.retain(|k, _| {
                    !(k.container_id == ep.container_id && k.ifname == ep.interface)
                });
            }
        }
    }

    async fn update_metrics(
        &self,
        networks: usize,
        zone_entries: usize,
        standbys: &std::collections::BTreeMap<String, Instant>,
    ) {
        self.metrics.networks.set(networks as i64);
        self.metrics.zone_entries.set(zone_entries as i64);
        if let Ok(mut peers) = self.datapath.read_peers().await {
            // A standby key shakes hands only once its node switches to it.
            peers.retain(|p| !standbys.contains_key(&p.public_key));
            self.metrics
                .max_handshake_age
                .set(plan::max_handshake_age(&peers));
        }
    }
}
