//! The periodic read-back and repair: every resync the agent reads the
//! mesh and each network back through the datapath, asks
//! [`super::repair_plan`] what to redo, and redoes only that (a repair of
//! one thing never rewrites what is healthy). Each drift is logged once
//! with what was wrong, counted in `privnet_agent_repairs_total{what}`, and
//! one that survives [`repair_plan::FAILING_AFTER`] checks makes the agent
//! unready until it is repaired.

use std::collections::BTreeSet;
use std::time::Instant;

use ipnet::Ipv4Net;

use super::plan;
use super::repair_plan::{self, RepairTracker};
use super::{Agent, ConvergeState};
use crate::datapath::drift::{Drift, What};
use crate::datapath::guard::{GuardedPort, PortTable};
use crate::datapath::network::NetworkDatapath;
use crate::datapath::{DatapathError, NodeDatapath};
use crate::source::Source;
use privnet_core::fdb::FdbEntry;
use privnet_core::view::ClusterView;

/// Scope of the mesh in the tracker (networks use their namespace name).
const MESH: &str = "mesh";

impl<S: Source, D: NodeDatapath> Agent<S, D> {
    /// Reads the datapath back and repairs what drifted. Runs under the
    /// convergence lock, so it never races a pass.
    pub async fn check_at(&self, now: Instant) {
        let mut conv = self.conv.lock().await;
        if !conv.mesh_up {
            return;
        }
        let view = self.current_view();
        self.check_mesh(&view, &mut conv).await;
        let locals: Vec<_> = {
            let st = self.state.lock().await;
            st.networks
                .iter()
                .map(|(id, l)| {
                    let running = l.responder.as_ref().is_none_or(|r| r.is_running());
                    (id.clone(), l.spec.clone(), running)
                })
                .collect()
        };
        for (id, spec, dns_running) in &locals {
            self.check_network(&view, &mut conv, id, spec, *dns_running, now)
                .await;
        }
        conv.repairs
            .retain_scopes(|s| s == MESH || locals.iter().any(|(_, spec, _)| spec.netns == s));
        *self.repair_failing.write().expect("repair lock") = conv.repairs.failing();
    }

    async fn check_mesh(&self, view: &ClusterView, conv: &mut ConvergeState) {
        let Some(vtep) = view.node(&self.cfg.node).and_then(|me| me.vtep) else {
            return;
        };
        let Ok(address) = Ipv4Net::new(vtep, self.cfg.mesh_cidr.prefix_len()) else {
            return;
        };
        let mesh = self.mesh_spec(address);
        // Under the lock the standby watcher switches under, with its
        // switches taken in: a repair must not undo one.
        let _peers_guard = self.peers_lock.lock().await;
        let fast = std::mem::take(&mut self.standby_watch.lock().expect("watch lock").switched);
        conv.rotation.switched.extend(fast);
        let peers = self.desired_peers(view, conv);
        let (mut found, mut left, mut error) = (Vec::new(), Vec::new(), None);
        for _ in 0..repair_plan::ROUNDS {
            left = match self.datapath.observe_mesh(&mesh, &peers).await {
                Ok(d) => d,
                Err(e) => return self.read_back_failed(&e),
            };
            if left.is_empty() {
                break;
            }
            repair_plan::merge(&mut found, &left);
            let todo = repair_plan::mesh_repair(&left);
            let mut result = Ok(());
            if todo.mesh {
                result = self.datapath.ensure_mesh(&mesh).await;
            }
            if todo.peers && result.is_ok() {
                result = self.datapath.set_peers(&peers).await;
            }
            if let Err(e) = result {
                error = Some(crate::error_chain(&e));
                break;
            }
        }
        self.report(&mut conv.repairs, MESH, &found, &left, error);
    }

    async fn check_network(
        &self,
        view: &ClusterView,
        conv: &mut ConvergeState,
        id: &str,
        spec: &NetworkDatapath,
        mut dns_running: bool,
        now: Instant,
    ) {
        let Ok(fdb) = plan::network_fdb(&self.cfg.node, view, id) else {
            return;
        };
        let (mut found, mut left, mut error) = (Vec::new(), Vec::new(), None);
        for _ in 0..repair_plan::ROUNDS {
            let ports = self.ports(id).await;
            left = match self.datapath.observe_network(spec, &ports, &fdb).await {
                Ok(d) => d,
                Err(e) => return self.read_back_failed(&e),
            };
            if !dns_running {
                left.push(Drift::new(What::Dns, &spec.netns, "responder stopped"));
            }
            if left.is_empty() {
                break;
            }
            repair_plan::merge(&mut found, &left);
            let todo = repair_plan::network_repair(&left);
            let result = self.repair_network(id, spec, &todo, &fdb, now).await;
            match result {
                Ok(()) => {
                    if todo.fdb {
                        conv.applied_fdb.insert(id.to_string(), fdb.clone());
                    }
                    // A rebuilt bridge or VXLAN device lost its ARP
                    // answers: the next pass reads them back and resyncs.
                    conv.applied_arp.remove(id);
                    dns_running |= todo.dns;
                }
                Err(e) => {
                    error = Some(crate::error_chain(&e));
                    break;
                }
            }
        }
        self.report(&mut conv.repairs, &spec.netns, &found, &left, error);
    }

    /// The live ports of a network, from the book.
    async fn ports(&self, id: &str) -> Vec<GuardedPort> {
        let st = self.state.lock().await;
        self.live_ports(st.book.records().filter(|r| r.network_id == id))
    }

    async fn repair_network(
        &self,
        id: &str,
        spec: &NetworkDatapath,
        todo: &repair_plan::Repair,
        fdb: &BTreeSet<FdbEntry>,
        now: Instant,
    ) -> Result<(), DatapathError> {
        if !todo.retire.is_empty() {
            // Retired like a departed port: out of the live set in one
            // increment, purged with the next batch.
            self.gone_ports
                .write()
                .expect("gone ports lock")
                .extend(todo.retire.iter().cloned());
            let (ports, mut guards) = {
                let st = self.state.lock().await;
                let ports = self.live_ports(st.book.records().filter(|r| r.network_id == id));
                (ports, self.guards.lock().await)
            };
            self.apply_ports(&mut guards, id, spec, &ports, now).await?;
        }
        if !todo.network.is_empty() {
            // The ports as the book has them now, with the port guards held
            // (state, then guards), so an Attach cannot slip a port in that
            // a whole-guard rewrite would miss.
            let (ports, mut guards) = {
                let st = self.state.lock().await;
                let ports = self.live_ports(st.book.records().filter(|r| r.network_id == id));
                (ports, self.guards.lock().await)
            };
            self.datapath
                .repair_network(spec, &ports, &todo.network)
                .await?;
            if todo.network.guard {
                let table = PortTable {
                    live: ports,
                    retired: Default::default(),
                };
                guards.insert(id.to_string(), (table, now));
            }
        }
        if todo.fdb {
            self.datapath.sync_fdb(spec, fdb).await?;
        }
        if todo.dns {
            self.restart_dns(id, spec).await?;
        }
        Ok(())
    }

    /// Stops the network's responder (if any) and starts a new one on the
    /// same zone.
    async fn restart_dns(&self, id: &str, spec: &NetworkDatapath) -> Result<(), DatapathError> {
        let mut st = self.state.lock().await;
        let Some(local) = st.networks.get_mut(id) else {
            return Ok(());
        };
        if let Some(old) = local.responder.take() {
            old.stop().await;
        }
        local.responder = self
            .datapath
            .start_dns(
                spec,
                local.zone.clone(),
                self.cfg.dns_upstream,
                self.dns_counters.clone(),
            )
            .await?;
        Ok(())
    }

    fn read_back_failed(&self, e: &DatapathError) {
        tracing::warn!(error = %crate::error_chain(e), "failed to read the datapath back");
        self.metrics.errors.inc();
    }

    /// Logs new drifts and first failures once, counts repairs.
    fn report(
        &self,
        tracker: &mut RepairTracker,
        scope: &str,
        found: &[Drift],
        left: &[Drift],
        error: Option<String>,
    ) {
        let r = tracker.record(scope, found, left);
        for d in &r.new {
            tracing::warn!(%scope, what = d.what.label(), subject = %d.subject, wrong = %d.detail, "datapath drifted: repairing");
        }
        for d in &r.repaired {
            self.metrics.repaired(d.what.label());
        }
        for d in &r.first_failure {
            let error = error.as_deref().unwrap_or("still there after the repair");
            tracing::warn!(%scope, what = d.what.label(), subject = %d.subject, %error, "failed to repair the datapath");
            self.metrics.errors.inc();
        }
    }
}
