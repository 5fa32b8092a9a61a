//! The Attach verb. Its side effects (book entry, cluster-wide address
//! claim, the port's guard rules, persisted record) are recorded as they
//! happen; if a later step fails, exactly those are undone, newest first.
//!
//! ADD answers only once the port forwards: the guard drops frames of a
//! `pv*` port it does not know (fail closed), so the port's two set
//! elements are installed here, one nfnetlink batch, before the plugin
//! creates the veth (nft matches interface names, not indexes). Left
//! to the convergence pass, the container's first ARP would be dropped and
//! its first packet would wait for the kernel's ~1 s ARP retry.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Instant;

use privnet_core::rpc::{AttachRequest, Attachment, AttachmentKey, ErrorKind, NetworkSelector};
use privnet_core::view::{ClusterView, NetworkInfo};
use tracing::Instrument;

use super::error::AttachError;
use super::plan::{ports_of, zone_endpoint};
use super::rpc::attachment_of;
use super::{Agent, Phase, State};
use crate::datapath::NodeDatapath;
use crate::datapath::guard::{GuardedPort, PortTable};
use crate::local_network::{LocalNetwork, LocalNetworkError};
use crate::source::Source;

/// Addresses fenced off after lost claims before giving up.
const MAX_FENCED: usize = 4096;

/// A side effect of an attach in progress, and how to undo it.
#[derive(Debug)]
enum Done {
    /// The book holds the attachment.
    Booked(AttachmentKey),
    /// The address is claimed cluster-wide.
    Claimed {
        network: String,
        ip: Ipv4Addr,
        owner: String,
    },
    /// The port's guard rules are installed in the network's namespace.
    Guarded { network: String, port: GuardedPort },
    /// The record is persisted.
    Stored(AttachmentKey),
}

/// What an attach did so far (see [`Agent::undo`]).
#[derive(Debug, Default)]
struct Steps(Vec<Done>);

/// Resolves the network a request selects.
pub(super) fn resolve<'v>(
    view: &'v ClusterView,
    sel: &NetworkSelector,
) -> Result<&'v NetworkInfo, AttachError> {
    if let Some(id) = &sel.network_id {
        return view
            .network(id)
            .ok_or_else(|| AttachError::UnknownNetwork(id.clone()));
    }
    if let Some(ns) = &sel.pod_namespace {
        return view
            .network_of_namespace(ns)
            .ok_or_else(|| AttachError::UnknownNamespace(ns.clone()));
    }
    Err(AttachError::NoNetwork)
}

impl<S: Source, D: NodeDatapath> Agent<S, D> {
    /// Attaches a container: allocates, claims, persists, brings the network
    /// up here if needed. Idempotent for a key already attached.
    pub async fn attach(&self, req: AttachRequest) -> Result<Attachment, AttachError> {
        self.attach_answering_early(req, None).await
    }

    /// [`Self::attach`], sending the attachment on `early` as soon as the
    /// address is taken and the network is up, before the port's guard is
    /// installed and the record persisted: the plugin creates the veth
    /// while the guard's nft transaction runs (the port drops every frame
    /// until then: fail closed). The result still tells whether it all
    /// worked; on a failure after the early answer everything is undone.
    pub async fn attach_answering_early(
        &self,
        req: AttachRequest,
        early: Option<tokio::sync::oneshot::Sender<Attachment>>,
    ) -> Result<Attachment, AttachError> {
        let span = tracing::info_span!("attach", container = %req.key.container_id, ifname = %req.key.ifname);
        async {
            let result = self.try_attach(&req, early).await;
            match &result {
                // A failure of the node (not of the request) counts as an error.
                Err(e) if matches!(e.kind(), ErrorKind::Internal | ErrorKind::NoSpace) => {
                    self.metrics.errors.inc();
                    tracing::warn!(error = %crate::error_chain(e), "attach failed");
                }
                Err(e) => tracing::debug!(error = %crate::error_chain(e), "attach refused"),
                Ok(_) => {}
            }
            result
        }
        .instrument(span)
        .await
    }

    async fn try_attach(
        &self,
        req: &AttachRequest,
        mut early: Option<tokio::sync::oneshot::Sender<Attachment>>,
    ) -> Result<Attachment, AttachError> {
        // Whether the pod is privnet's at all comes first: a chained plugin
        // passes other pods through even while the mesh is not up yet.
        let req = &self.complete_workload(req).await?;
        if self.phase() == Phase::WaitingForMesh {
            return Err(AttachError::NotReady);
        }
        let view = self.current_view();
        let network = resolve(&view, &req.network)?.clone();
        let (numbers, mut fenced) = self.in_use_elsewhere(&view, &network, req);
        // The verb's I/O shell reads the clock once (guard bookkeeping).
        let now = Instant::now();
        let mut st = self.state.lock().await;
        let mut steps = Steps::default();
        let result = async {
            let existed = st.book.get(&req.key).is_some();
            let owner = self.claim_owner(&req.key);
            let record = loop {
                let record = st
                    .book
                    .attach(req, &network, &numbers, &fenced)
                    .map_err(AttachError::Book)?;
                if !existed {
                    steps.0.push(Done::Booked(record.key.clone()));
                }
                // Cluster-wide uniqueness: claim the address (compare-and-swap);
                // on a lost race fence it off and take the next one.
                let ip = record.address.addr();
                match self.source.claim_address(&network.id, ip, &owner).await {
                    Ok(true) => {
                        if !existed {
                            steps.0.push(Done::Claimed {
                                network: network.id.clone(),
                                ip,
                                owner: owner.clone(),
                            });
                        }
                        break record;
                    }
                    Ok(false) if !existed && fenced.len() < MAX_FENCED => {
                        st.book.release(&record.key);
                        steps.0.pop();
                        fenced.insert(ip);
                    }
                    Ok(false) => return Err(AttachError::Held(ip)),
                    Err(source) => return Err(AttachError::Claim { ip, source }),
                }
            };
            self.ensure_local_network(&mut st, &network, now)
                .await
                .map_err(|source| AttachError::Network {
                    id: network.id.clone(),
                    source,
                })?;
            if let Some(early) = early.take() {
                // A plugin that went away reads nothing: carry on, it will DEL.
                let _ = early.send(attachment_of(
                    &record,
                    &st.networks[&network.id],
                    &self.cfg.domain,
                ));
            }
            let port = self.guard_port(&mut st, &network.id, &record, now).await?;
            if !existed {
                steps.0.push(Done::Guarded {
                    network: network.id.clone(),
                    port,
                });
                // Persisted last: a record on disk is an attachment that works.
                st.store.put(&record).map_err(AttachError::Store)?;
                steps.0.push(Done::Stored(record.key.clone()));
            }
            Ok(record)
        }
        .await;
        match result {
            Ok(record) => {
                let local = &st.networks[&network.id];
                let _ = local
                    .zone
                    .write()
                    .expect("zone lock")
                    .upsert(&zone_endpoint(&record));
                let attachment = attachment_of(&record, local, &self.cfg.domain);
                self.metrics
                    .attachments
                    .set(st.book.records().count() as i64);
                drop(st);
                self.wake.notify_one();
                Ok(attachment)
            }
            Err(e) => {
                self.undo(&mut st, steps).await;
                Err(e)
            }
        }
    }

    /// The request with its workload filled from the pod the runtime names
    /// (`K8S_POD_NAMESPACE`/`K8S_POD_NAME`): application and type from its
    /// labels, the number the admission webhook gave it. What the request
    /// states itself wins. Where numbers come from admission (Kubernetes),
    /// a pod without one was not admitted by privnet and is refused: the
    /// agent never invents a number there.
    async fn complete_workload(&self, req: &AttachRequest) -> Result<AttachRequest, AttachError> {
        let mut req = req.clone();
        let sel = &req.network;
        let pod = sel.pod_namespace.clone().zip(sel.pod_name.clone());
        if let Some((ns, name)) = &pod {
            let w = &mut req.workload;
            if w.application_id.is_none() || w.container_number.is_none() {
                let from_pod = self
                    .source
                    .pod_workload(ns, name)
                    .await
                    .map_err(|source| AttachError::Pod {
                        pod: format!("{ns}/{name}"),
                        source,
                    })?
                    .unwrap_or_default();
                w.application_id = w.application_id.take().or(from_pod.application_id);
                w.process_type = w.process_type.take().or(from_pod.process_type);
                w.container_number = w.container_number.or(from_pod.container_number);
            }
        }
        if self.source.numbers_from_admission() && req.workload.container_number.is_none() {
            let pod = pod.map_or_else(|| "(unnamed)".to_string(), |(ns, n)| format!("{ns}/{n}"));
            return Err(AttachError::NotAdmitted(pod));
        }
        Ok(req)
    }

    /// Container numbers of the request's (app, type) and addresses of the
    /// network used on other nodes (local ones come from the book itself).
    fn in_use_elsewhere(
        &self,
        view: &ClusterView,
        network: &NetworkInfo,
        req: &AttachRequest,
    ) -> (BTreeSet<u32>, BTreeSet<Ipv4Addr>) {
        let app = req.workload.application_id.as_deref();
        let ptype = req
            .workload
            .process_type
            .as_deref()
            .unwrap_or(crate::book::DEFAULT_PROCESS_TYPE);
        let remote = view
            .endpoints
            .iter()
            .filter(|e| e.network_id == network.id && e.node != self.cfg.node);
        let numbers = remote
            .clone()
            .filter(|e| Some(e.application_id.as_str()) == app && e.process_type == ptype)
            .map(|e| e.container_number)
            .collect();
        (numbers, remote.map(|e| e.ip).collect())
    }

    /// Undoes an attach's side effects, newest first. Failures are logged:
    /// the book is the authority and is always rolled back.
    async fn undo(&self, st: &mut State, steps: Steps) {
        for done in steps.0.into_iter().rev() {
            match done {
                Done::Stored(key) => {
                    if let Err(e) = st.store.remove(&key) {
                        tracing::warn!(error = %crate::error_chain(&e), "rollback: failed to remove a record");
                    }
                }
                Done::Claimed { network, ip, owner } => {
                    if let Err(e) = self.source.release_address(&network, ip, &owner).await {
                        tracing::warn!(error = %crate::error_chain(&e), "rollback: failed to release a claim");
                    }
                }
                Done::Guarded { network, port } => self.unguard_port(st, &network, &port).await,
                Done::Booked(key) => {
                    st.book.release(&key);
                }
            }
        }
    }

    /// Installs the guard of `record`'s port (with the rest of the network's
    /// ports as the book has them: the same set the pass computes, so the
    /// pass finds nothing to do). Returns the port.
    async fn guard_port(
        &self,
        st: &mut State,
        network: &str,
        record: &crate::store::AttachmentRecord,
        now: Instant,
    ) -> Result<GuardedPort, AttachError> {
        let ports = ports_of(st.book.records().filter(|r| r.network_id == network));
        let fail = |source| AttachError::Guard {
            id: network.to_string(),
            port: record.host_ifname.clone(),
            source,
        };
        let port = ports
            .iter()
            .find(|p| p.host_ifname == record.host_ifname)
            .cloned()
            .ok_or_else(|| {
                fail(crate::datapath::DatapathError::Network {
                    step: crate::datapath::Step::UpdatePorts,
                    netns: st.networks[network].spec.netns.clone(),
                    source: Box::new(
                        crate::datapath::guard::GuardError::InvalidIfname(
                            record.host_ifname.clone(),
                        )
                        .into(),
                    ),
                })
            })?;
        let spec = &st.networks[network].spec;
        let mut guards = self.guards.lock().await;
        self.apply_ports(&mut guards, network, spec, &ports, now)
            .await
            .map_err(fail)?;
        Ok(port)
    }

    /// Undoes [`Self::guard_port`]: deletes the port's element and chain at
    /// once (not a retirement: the book no longer has the port, and its
    /// name must not stay open). A failure leaves it retired, for the pass
    /// to purge.
    async fn unguard_port(&self, st: &mut State, network: &str, port: &GuardedPort) {
        let Some(local) = st.networks.get(network) else {
            return;
        };
        let mut guards = self.guards.lock().await;
        let Some((table, _)) = guards.get_mut(network) else {
            return;
        };
        table.live.retain(|p| p != port);
        let gone = PortTable {
            live: Vec::new(),
            retired: [(port.host_ifname.clone(), port.clone())].into(),
        };
        match self.datapath.purge_retired_ports(&local.spec, &gone).await {
            Ok(()) => {
                table.retired.remove(&port.host_ifname);
            }
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "rollback: failed to remove a port's guard");
                table.retired.insert(port.host_ifname.clone(), port.clone());
            }
        }
    }

    /// Brings `network` up on this node if it is not yet, its guard with
    /// the ports the book has for it (recorded as applied at `now`).
    pub(super) async fn ensure_local_network(
        &self,
        st: &mut State,
        network: &NetworkInfo,
        now: Instant,
    ) -> Result<(), LocalNetworkError> {
        if st.networks.contains_key(&network.id) {
            return Ok(());
        }
        let vtep = self
            .current_view()
            .node(&self.cfg.node)
            .and_then(|n| n.vtep)
            .ok_or_else(|| LocalNetworkError::NoVtep(network.id.clone()))?;
        let ports = ports_of(st.book.records().filter(|r| r.network_id == network.id));
        let local = LocalNetwork::up(
            &self.cfg,
            &self.datapath,
            network,
            vtep,
            &ports,
            self.dns_counters.clone(),
        )
        .await?;
        st.networks.insert(network.id.clone(), local);
        let table = PortTable {
            live: ports,
            retired: Default::default(),
        };
        self.guards
            .lock()
            .await
            .insert(network.id.clone(), (table, now));
        Ok(())
    }
}
