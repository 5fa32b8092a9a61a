//! The CNI verbs as RPC: dispatch, and Release, Check and GC (Attach has its
//! own module). Errors become `Response::Error` with their whole chain.

use std::collections::BTreeSet;

use privnet_core::rpc::{Attachment, AttachmentKey, Dns, ErrorKind, Request, Response};

use super::plan::zone_endpoint;
use super::{Agent, Phase};
use crate::datapath::NodeDatapath;
use crate::local_network::LocalNetwork;
use crate::rpc_server::{Early, RpcHandler};
use crate::source::Source;
use crate::store::AttachmentRecord;

impl<S: Source, D: NodeDatapath> Agent<S, D> {
    /// Releases an attachment (idempotent); returns how many were freed.
    pub async fn release(&self, key: &AttachmentKey) -> usize {
        let mut st = self.state.lock().await;
        let Some(record) = st.book.release(key) else {
            return 0;
        };
        self.gone_ports
            .write()
            .expect("gone ports lock")
            .remove(&record.host_ifname);
        if let Err(e) = st.store.remove(key) {
            tracing::warn!(error = %crate::error_chain(&e), "failed to remove an attachment record");
        }
        if let Err(e) = self
            .source
            .release_address(
                &record.network_id,
                record.address.addr(),
                &self.claim_owner(key),
            )
            .await
        {
            tracing::warn!(error = %crate::error_chain(&e), "failed to release an address claim");
        }
        if let Some(local) = st.networks.get(&record.network_id) {
            local
                .zone
                .write()
                .expect("zone lock")
                .remove(&zone_endpoint(&record).name);
        }
        self.metrics
            .attachments
            .set(st.book.records().count() as i64);
        drop(st);
        self.wake.notify_one();
        1
    }

    async fn check(&self, key: &AttachmentKey) -> Response {
        let st = self.state.lock().await;
        if let Some(r) = st.book.get(key)
            && self
                .gone_ports
                .read()
                .expect("gone ports lock")
                .contains(&r.host_ifname)
        {
            return err(
                ErrorKind::Internal,
                format!(
                    "container {} ({}): its host interface {} is gone; its port was retired",
                    key.container_id, key.ifname, r.host_ifname
                ),
            );
        }
        match st.book.get(key).and_then(|r| {
            st.networks
                .get(&r.network_id)
                .map(|l| attachment_of(r, l, &self.cfg.domain))
        }) {
            Some(a) => Response::Attached(Box::new(a)),
            None => err(
                ErrorKind::NotFound,
                format!(
                    "container {} ({}) is not attached",
                    key.container_id, key.ifname
                ),
            ),
        }
    }

    /// Releases every attachment (of one network, if given) not in `valid`.
    pub async fn gc(&self, network_id: Option<&str>, valid: Vec<AttachmentKey>) -> usize {
        let valid: BTreeSet<AttachmentKey> = valid.into_iter().collect();
        let mut st = self.state.lock().await;
        let freed = st.book.gc(network_id, &valid);
        for r in &freed {
            self.gone_ports
                .write()
                .expect("gone ports lock")
                .remove(&r.host_ifname);
            if let Err(e) = st.store.remove(&r.key) {
                tracing::warn!(error = %crate::error_chain(&e), "failed to remove an attachment record");
            }
            if let Err(e) = self
                .source
                .release_address(&r.network_id, r.address.addr(), &self.claim_owner(&r.key))
                .await
            {
                tracing::warn!(error = %crate::error_chain(&e), "failed to release an address claim");
            }
            if let Some(local) = st.networks.get(&r.network_id) {
                local
                    .zone
                    .write()
                    .expect("zone lock")
                    .remove(&zone_endpoint(r).name);
            }
        }
        drop(st);
        self.wake.notify_one();
        freed.len()
    }

    /// Attach's answer; with `answerEarly`, `Wire` goes out on `early`
    /// first and the final answer is `PortReady`.
    async fn attach_response(
        &self,
        req: privnet_core::rpc::AttachRequest,
        early: Early,
    ) -> Response {
        let early = early.filter(|_| req.answer_early).map(|tx| {
            let (att_tx, att_rx) = tokio::sync::oneshot::channel();
            (att_tx, att_rx, tx)
        });
        let Some((att_tx, att_rx, tx)) = early else {
            return match self.attach(req).await {
                Ok(attachment) => Response::Attached(Box::new(attachment)),
                Err(e) => err(e.kind(), crate::error_chain(&e)),
            };
        };
        let forward = async move {
            if let Ok(a) = att_rx.await {
                let _ = tx.send(Response::Wire(Box::new(a)));
            }
        };
        let (result, ()) = tokio::join!(self.attach_answering_early(req, Some(att_tx)), forward);
        match result {
            Ok(_) => Response::PortReady,
            Err(e) => err(e.kind(), crate::error_chain(&e)),
        }
    }
}

impl<S: Source, D: NodeDatapath> RpcHandler for Agent<S, D> {
    async fn handle(&self, req: Request, early: Early) -> Response {
        let started = std::time::Instant::now();
        let response = match req {
            Request::Status => match self.phase() {
                Phase::WaitingForMesh => err(
                    ErrorKind::NotReady,
                    "the agent is waiting for its mesh address",
                ),
                _ => Response::Ready,
            },
            Request::Attach(a) => self.attach_response(a, early).await,
            Request::Release(k) => Response::Released {
                freed: self.release(&k).await,
            },
            Request::Check(k) => self.check(&k).await,
            Request::Gc { network_id, valid } => Response::Released {
                freed: self.gc(network_id.as_deref(), valid).await,
            },
            Request::Expected => Response::Expected(Box::new(self.expected().await)),
        };
        self.metrics
            .rpc_seconds
            .observe(started.elapsed().as_secs_f64());
        response
    }
}

fn err(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::Error {
        kind,
        message: message.into(),
    }
}

/// What the plugin is told about an attachment.
pub(super) fn attachment_of(
    r: &AttachmentRecord,
    local: &LocalNetwork,
    domain: &str,
) -> Attachment {
    let zone = format!("{}.{domain}", r.network_id);
    Attachment {
        key: r.key.clone(),
        network_id: r.network_id.clone(),
        address: r.address,
        gateway: local.spec.gateway.addr(),
        mac: r.mac.clone(),
        mtu: local.spec.mtu,
        network_netns: format!("/run/netns/{}", local.spec.netns),
        bridge: local.spec.bridge.clone(),
        host_ifname: r.host_ifname.clone(),
        hostname: format!(
            "{}.{}.{}.{zone}",
            r.container_number, r.process_type, r.application_id
        ),
        dns: Dns {
            nameservers: vec![local.spec.gateway.addr().to_string()],
            search: vec![zone],
        },
    }
}
