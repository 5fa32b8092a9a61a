//! The blast-radius guard, pure: never tear a node down because the control
//! plane said so once. A cluster view that would take away most of what this
//! node still uses — its own live attachments' endpoints or networks, or its
//! peers — is held: the pass keeps the last good view's items (additions
//! still apply) until the new view has stayed that way for a grace period or
//! an operator confirms. Removals that come from this node (CNI DEL, a
//! vanished container) are never held: they leave the attachment book, so
//! they are not "live" here. The clock is an argument.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use privnet_core::view::{ClusterView, EndpointInfo};

/// When a removal is big enough to hold, and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HoldPolicy {
    /// Share of a kind (0..=1) a view may take away without being held.
    pub max_share: f64,
    /// Removals of a kind up to this count are never held ("a few").
    pub min_count: usize,
    /// How long a held view must stay the same before it applies.
    pub grace: Duration,
    /// Removals are measured against the view of at least this long ago: a
    /// wipe reaches the agent as a stream of deletions, and each step alone
    /// would look small.
    pub window: Duration,
    /// Endpoints of other nodes leave the view only after being gone this
    /// long: a wipe is refilled by their nodes within it (no blip), a real
    /// scale-in applies after it.
    pub settle: Duration,
}

impl Default for HoldPolicy {
    fn default() -> Self {
        Self {
            max_share: 0.5,
            min_count: 3,
            grace: Duration::from_secs(300),
            window: Duration::from_secs(2),
            settle: Duration::from_secs(1),
        }
    }
}

/// What a view would take away from this node, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removal {
    /// This node's live attachments whose endpoint or network vanished.
    pub attachments: (usize, usize),
    /// Networks with live attachments here that vanished.
    pub networks: (usize, usize),
    /// Peers (other nodes) that vanished.
    pub peers: (usize, usize),
}

impl Removal {
    /// Whether any kind loses more than the policy allows.
    pub fn too_big(&self, p: &HoldPolicy) -> bool {
        [self.attachments, self.networks, self.peers]
            .iter()
            .any(|&(gone, of)| gone > p.min_count && gone as f64 > p.max_share * of as f64)
    }
}

impl std::fmt::Display for Removal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (a, at) = self.attachments;
        let (n, nt) = self.networks;
        let (p, pt) = self.peers;
        write!(
            f,
            "{a}/{at} live attachments, {n}/{nt} networks, {p}/{pt} peers"
        )
    }
}

/// A live attachment of this node, as the guard sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LiveAttachment {
    /// Network id.
    pub network_id: String,
    /// Runtime container id.
    pub container_id: String,
    /// Interface in the container.
    pub interface: String,
}

/// What the guard decided for one view.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    /// The view applies as it is.
    Apply,
    /// The view is held (the effective view keeps the last good items).
    Held {
        /// Since when this removal has been held.
        since: Instant,
        /// What it would take away.
        removal: Removal,
    },
    /// A held removal applies now (grace elapsed or confirmed).
    Released {
        /// What it takes away.
        removal: Removal,
        /// Whether an operator confirmed it (else the grace elapsed).
        confirmed: bool,
    },
}

/// The guard's memory: the last view that applied and the hold in progress.
#[derive(Debug, Default)]
pub struct RemovalGuard {
    /// The view removals are measured against, and since when it is that.
    last_good: Option<(ClusterView, Instant)>,
    held_since: Option<Instant>,
}

impl RemovalGuard {
    /// Whether a removal is being held.
    pub fn holding(&self) -> bool {
        self.held_since.is_some()
    }

    /// Decides for `incoming` at `now`; returns the view the pass must use
    /// and the decision. `confirmed`: an operator asked to apply a hold.
    pub fn gate(
        &mut self,
        node: &str,
        incoming: &ClusterView,
        live: &BTreeSet<LiveAttachment>,
        policy: &HoldPolicy,
        confirmed: bool,
        now: Instant,
    ) -> (ClusterView, Gate) {
        let Some((last, at)) = &self.last_good else {
            self.last_good = Some((incoming.clone(), now));
            return (incoming.clone(), Gate::Apply);
        };
        let removal = removal(node, last, incoming, live);
        if !removal.too_big(policy) {
            self.held_since = None;
            if now.saturating_duration_since(*at) >= policy.window {
                self.last_good = Some((incoming.clone(), now));
            }
            return (incoming.clone(), Gate::Apply);
        }
        let since = *self.held_since.get_or_insert(now);
        if confirmed || now.saturating_duration_since(since) >= policy.grace {
            self.held_since = None;
            self.last_good = Some((incoming.clone(), now));
            return (incoming.clone(), Gate::Released { removal, confirmed });
        }
        (keep_removed(last, incoming), Gate::Held { since, removal })
    }
}

/// What `incoming` takes away from this node compared with `last`.
pub fn removal(
    node: &str,
    last: &ClusterView,
    incoming: &ClusterView,
    live: &BTreeSet<LiveAttachment>,
) -> Removal {
    let ids =
        |v: &ClusterView| -> BTreeSet<String> { v.networks.iter().map(|n| n.id.clone()).collect() };
    let (last_ids, new_ids) = (ids(last), ids(incoming));
    let used: BTreeSet<&String> = live
        .iter()
        .map(|a| &a.network_id)
        .filter(|id| last_ids.contains(*id))
        .collect();
    let networks_gone = used.iter().filter(|id| !new_ids.contains(**id)).count();
    let shown = |v: &ClusterView, a: &LiveAttachment| {
        v.endpoints.iter().any(|e| {
            e.node == node && e.container_id == a.container_id && e.interface == a.interface
        })
    };
    // Only attachments the last view showed: a new one not yet published is
    // not a removal.
    let known: Vec<&LiveAttachment> = live.iter().filter(|a| shown(last, a)).collect();
    let attachments_gone = known
        .iter()
        .filter(|a| !shown(incoming, a) || !new_ids.contains(&a.network_id))
        .count();
    let peers = |v: &ClusterView| -> BTreeSet<String> {
        v.nodes
            .iter()
            .filter(|n| n.name != node)
            .map(|n| n.name.clone())
            .collect()
    };
    let (last_peers, new_peers) = (peers(last), peers(incoming));
    Removal {
        attachments: (attachments_gone, known.len()),
        networks: (networks_gone, used.len()),
        peers: (last_peers.difference(&new_peers).count(), last_peers.len()),
    }
}

/// `incoming` plus everything of `last` it lacks: additions and changes
/// apply, removals wait.
pub fn keep_removed(last: &ClusterView, incoming: &ClusterView) -> ClusterView {
    let mut v = incoming.clone();
    for n in &last.nodes {
        if !v.nodes.iter().any(|m| m.name == n.name) {
            v.nodes.push(n.clone());
        }
    }
    for n in &last.networks {
        if !v.networks.iter().any(|m| m.id == n.id) {
            v.networks.push(n.clone());
        }
    }
    for ns in &last.namespace_networks {
        if !v.namespace_networks.iter().any(|m| m.0 == ns.0) {
            v.namespace_networks.push(ns.clone());
        }
    }
    for e in &last.endpoints {
        let same = |m: &&privnet_core::view::EndpointInfo| {
            m.node == e.node && m.container_id == e.container_id && m.interface == e.interface
        };
        if !v.endpoints.iter().any(|m| same(&m)) {
            v.endpoints.push(e.clone());
        }
    }
    v
}

/// Endpoints of other nodes that left the view, kept until gone for
/// [`HoldPolicy::settle`].
#[derive(Debug, Default)]
pub struct SettlingRemovals {
    prev: Vec<EndpointInfo>,
    gone_since: BTreeMap<(String, String, String), (EndpointInfo, Instant)>,
}

impl SettlingRemovals {
    /// `view` with the other nodes' endpoints gone for less than `settle`
    /// put back (unless their address is taken again), and when to look
    /// again for the next one to go.
    pub fn apply(
        &mut self,
        node: &str,
        mut view: ClusterView,
        settle: Duration,
        now: Instant,
    ) -> (ClusterView, Option<Duration>) {
        let key = |e: &EndpointInfo| (e.node.clone(), e.container_id.clone(), e.interface.clone());
        let present: BTreeSet<_> = view.endpoints.iter().map(key).collect();
        self.gone_since.retain(|k, _| !present.contains(k));
        for e in self.prev.iter().filter(|e| e.node != node) {
            if !present.contains(&key(e)) {
                self.gone_since
                    .entry(key(e))
                    .or_insert_with(|| (e.clone(), now));
            }
        }
        self.gone_since
            .retain(|_, (_, t)| now.saturating_duration_since(*t) < settle);
        for (e, _) in self.gone_since.values() {
            let taken = view
                .endpoints
                .iter()
                .any(|x| x.network_id == e.network_id && x.ip == e.ip);
            if !taken {
                view.endpoints.push(e.clone());
            }
        }
        let wake = self
            .gone_since
            .values()
            .map(|(_, t)| settle.saturating_sub(now.saturating_duration_since(*t)))
            .min();
        self.prev = view.endpoints.clone();
        (view, wake)
    }
}
