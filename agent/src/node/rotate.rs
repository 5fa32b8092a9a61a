//! Key rotation, the I/O side: this node's own rotation (next key file,
//! announcement, switch, abort) as [`privnet_core::rotation::decide`]
//! decides it, the peers' next keys it accepts and switches to, and the
//! publication of its Node entry. See `privnet_core::rotation` for the
//! protocol and docs/ARCHITECTURE.md for why it is lossless.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use privnet_core::rotation::{self, Pending, RotationInput, RotationStep};
use privnet_core::view::{ClusterView, NodeInfo};

use super::error::ConvergeError;
use super::plan;
use super::{Agent, ConvergeState};
use crate::datapath::wireguard::{
    self as wg, Key, MeshPeer, create_next_key, discard_next_key, promote_next_key,
};
use crate::datapath::{MeshSpec, NodeDatapath};
use crate::source::Source;

/// Rotation bookkeeping of the convergence loop.
#[derive(Debug, Default)]
pub(crate) struct RotationState {
    /// This node's rotation under way.
    pub pending: Option<Pending>,
    /// When this node's last rotation was aborted.
    pub last_abort: Option<Instant>,
    /// Peers' announced next keys this node routes to already.
    pub switched: BTreeSet<String>,
    /// When each standby key (a peer's next key) was first configured.
    pub standby_since: BTreeMap<String, Instant>,
    /// What this node last published about itself.
    pub published: Option<NodeInfo>,
    /// The key each peer is routed to, as last set (to log a peer's switch once).
    pub routed: BTreeMap<String, String>,
    /// A promoted key the device has not switched to yet (retried every pass).
    pub switch_due: Option<Key>,
}

/// What the standby watcher polls for, shared by the pass (which sets it)
/// and the watcher (which switches). See [`Agent::watch_standbys`].
#[derive(Debug, Default)]
pub(crate) struct StandbyWatch {
    /// Standby keys to look at, each with the key it replaces.
    pub standbys: Vec<(MeshPeer, String)>,
    /// Next keys the watcher routed to since the pass last looked.
    pub switched: BTreeSet<String>,
}

impl<S: Source, D: NodeDatapath> Agent<S, D> {
    /// Watches the standby keys (peers' announced next keys) while there are
    /// any, every [`rotation::WATCH_POLL`], and routes to one the moment it is
    /// in use, without waiting for a convergence pass: what its node sends on
    /// the new key is dropped until then. Runs forever.
    pub async fn watch_standbys(self: std::sync::Arc<Self>) {
        loop {
            let busy = !self
                .standby_watch
                .lock()
                .expect("watch lock")
                .standbys
                .is_empty();
            if busy {
                self.watch_tick().await;
                tokio::time::sleep(rotation::WATCH_POLL).await;
            } else {
                tokio::time::sleep(rotation::WATCH_IDLE).await;
            }
        }
    }

    /// One look at the standbys: routes to those in use. Returns how many.
    pub(crate) async fn watch_tick(&self) -> usize {
        let standbys = self
            .standby_watch
            .lock()
            .expect("watch lock")
            .standbys
            .clone();
        if standbys.is_empty() {
            return 0;
        }
        let Ok(status) = self.datapath.read_peers().await else {
            return 0;
        };
        let peers: Vec<MeshPeer> = standbys.iter().map(|(p, _)| p.clone()).collect();
        let used = plan::handshaken_standbys(&peers, &status);
        let mut done = 0;
        for (peer, old) in standbys
            .iter()
            .filter(|(p, _)| used.contains(&p.public_key))
        {
            // Serialised with the pass's set of the peers, which would undo it otherwise.
            let _peers = self.peers_lock.lock().await;
            let still = self
                .standby_watch
                .lock()
                .expect("watch lock")
                .standbys
                .iter()
                .any(|(p, _)| p.public_key == peer.public_key);
            if !still {
                continue;
            }
            match self.datapath.promote_standby(peer, old).await {
                Ok(()) => {
                    let mut watch = self.standby_watch.lock().expect("watch lock");
                    watch
                        .standbys
                        .retain(|(p, _)| p.public_key != peer.public_key);
                    watch.switched.insert(peer.public_key.clone());
                    tracing::info!(key = %peer.public_key, "a peer's next key is in use: routing to it");
                    done += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %crate::error_chain(&e), "failed to route to a peer's next key");
                }
            }
        }
        if done > 0 {
            self.wake.notify_one();
        }
        done
    }

    /// This node's own rotation: one decision, then its I/O. Returns when
    /// to decide again at the latest.
    pub(super) async fn rotate_own_key(
        &self,
        view: &ClusterView,
        conv: &mut ConvergeState,
        mesh: &MeshSpec,
        now: Instant,
    ) -> Result<Option<Duration>, ConvergeError> {
        let dir = &self.cfg.state_dir;
        if let Some(key) = conv.rotation.switch_due.clone() {
            self.datapath
                .switch_key(mesh, &key)
                .await
                .map_err(ConvergeError::Mesh)?;
            conv.rotation.switch_due = None;
            tracing::info!(key = %key.public_key(), "WireGuard key switched (retried)");
        }
        let request = wg::rotate_request_file(dir);
        let requested = request.exists();
        let key_age = wg::key_age(dir, SystemTime::now());
        let peers = plan::other_nodes(&self.cfg.node, view);
        let step = rotation::decide(&RotationInput {
            pending: conv.rotation.pending.as_ref(),
            requested,
            key_age,
            every: self.cfg.rotate_key_every,
            last_abort: conv.rotation.last_abort,
            peers: &peers,
            timeout: self.cfg.rotate_key_timeout,
            now,
        });
        if requested && (conv.rotation.pending.is_some() || step == RotationStep::Start) {
            // Asked for while one starts or is under way: that one answers it.
            if let Err(e) = std::fs::remove_file(&request) {
                tracing::warn!(error = %e, "failed to remove the rotation request");
            }
        }
        let key_err = |source| ConvergeError::KeyRotation { source };
        Ok(match step {
            RotationStep::Idle => rotation::schedule_wake(self.cfg.rotate_key_every, key_age),
            RotationStep::Start => {
                let next = create_next_key(dir).map_err(key_err)?;
                let next = next.public_key().to_string();
                tracing::info!(next = %next, peers = peers.len(), "rotating the WireGuard key: next key announced");
                self.metrics.key_rotations.started.inc();
                conv.rotation.pending = Some(Pending { next, since: now });
                Some(self.cfg.rotate_key_timeout)
            }
            RotationStep::Wait { recheck, .. } => Some(recheck),
            RotationStep::Abort { missing } => {
                discard_next_key(dir).map_err(key_err)?;
                tracing::warn!(
                    missing = %missing.join(","),
                    timeout_secs = self.cfg.rotate_key_timeout.as_secs(),
                    "WireGuard key rotation aborted: not every peer accepted the next key in time; the key is unchanged"
                );
                self.metrics.key_rotations.aborted.inc();
                conv.rotation.pending = None;
                conv.rotation.last_abort = Some(now);
                None
            }
            RotationStep::Switch => {
                // The file first: a crash from here on restarts on the new key.
                let key = promote_next_key(dir).map_err(key_err)?;
                let public = key.public_key().to_string();
                *self.public_key.write().expect("key lock") = public.clone();
                conv.rotation.pending = None;
                conv.rotation.switch_due = Some(key.clone());
                self.datapath
                    .switch_key(mesh, &key)
                    .await
                    .map_err(ConvergeError::Mesh)?;
                conv.rotation.switch_due = None;
                tracing::info!(key = %public, "WireGuard key switched; peers follow on its first handshake");
                self.metrics.key_rotations.switched.inc();
                None
            }
        })
    }

    /// Peers' next keys: those with a handshake now are switched to (their
    /// node switched). Returns whether the switched set changed (the peers
    /// must be set again).
    pub(super) fn follow_peer_switches(
        &self,
        view: &ClusterView,
        conv: &mut ConvergeState,
        handshaken: &BTreeSet<String>,
    ) -> bool {
        let others = plan::other_nodes(&self.cfg.node, view);
        let switched =
            rotation::update_switched(&conv.rotation.switched, &others, |k| handshaken.contains(k));
        for key in switched.difference(&conv.rotation.switched) {
            tracing::info!(key = %key, "a handshake on a peer's next key: it switched");
        }
        let changed = switched != conv.rotation.switched;
        conv.rotation.switched = switched;
        changed
    }

    /// Logs each peer whose routed key changed since the last call.
    pub(super) fn note_routed(&self, view: &ClusterView, conv: &mut ConvergeState) {
        let routed: BTreeMap<String, String> = plan::other_nodes(&self.cfg.node, view)
            .into_iter()
            .map(|n| {
                let keys = rotation::peer_keys(n, &conv.rotation.switched);
                (n.name.clone(), keys.routed)
            })
            .collect();
        for (node, key) in &routed {
            if conv.rotation.routed.get(node).is_some_and(|old| old != key) {
                tracing::info!(peer = %node, key = %key, "routing to the peer's new key");
            }
        }
        conv.rotation.routed = routed;
    }

    /// Publishes this node's entry (key, endpoint, next key, accepted keys)
    /// when it differs from what was last published; false when that failed.
    pub(super) async fn publish_self(
        &self,
        view: &ClusterView,
        conv: &mut ConvergeState,
        peers: &[MeshPeer],
    ) -> bool {
        let others = plan::other_nodes(&self.cfg.node, view);
        let configured: Vec<rotation::PeerKeys> = peers
            .iter()
            .map(|p| rotation::PeerKeys {
                routed: p.public_key.clone(),
                standby: None,
            })
            .collect();
        let me = NodeInfo {
            name: self.cfg.node.clone(),
            public_key: self.public_key(),
            endpoint: self.cfg.endpoint,
            vtep: None,
            next_public_key: conv.rotation.pending.as_ref().map(|p| p.next.clone()),
            accepted_keys: rotation::accepted_keys(&configured, &others),
        };
        if conv.rotation.published.as_ref() == Some(&me) {
            return true;
        }
        match self.source.publish_node(&me).await {
            Ok(()) => {
                conv.rotation.published = Some(me);
                true
            }
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "failed to publish this node");
                self.metrics.errors.inc();
                false
            }
        }
    }
}
