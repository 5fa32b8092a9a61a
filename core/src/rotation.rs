//! WireGuard key rotation without loss, pure: which keys each node
//! configures for its peers while one of them rotates, and the rotating
//! node's state machine (the clock an argument).
//!
//! The protocol (one WireGuard device per node, where an allowed IP belongs
//! to exactly one peer key):
//!
//! 1. node A writes a next key and announces it (`next_public_key`), its
//!    device unchanged;
//! 2. every peer B configures A's next key as a *standby* peer: same
//!    endpoint, **no** allowed IPs, so it can answer a handshake but routes
//!    nothing, and acknowledges it (`accepted_keys`);
//! 3. once every peer has acknowledged, A switches its device to the next
//!    key (its sending sessions expire; it keeps receiving on the old ones
//!    and starts new handshakes with the new key) and publishes it as its
//!    key; past the timeout A aborts instead (drops the next key: nothing
//!    changed);
//! 4. each B moves A's allowed IPs to the new key and removes the old one as
//!    soon as it sees a handshake on the standby peer (the agent polls fast
//!    while a standby is pending) or the promoted key in the view.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::view::NodeInfo;

/// How long a rotating node waits for every peer's acknowledgement.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a node with a standby peer polls its handshakes while the
/// peer's switch may come any moment (each poll is one UAPI read).
pub const STANDBY_POLL: Duration = Duration::from_millis(5);
/// How often the agent's standby watcher reads the peers while a standby is
/// pending (one UAPI read; only during a rotation).
pub const WATCH_POLL: Duration = Duration::from_millis(2);
/// How often it looks whether there is a standby to watch.
pub const WATCH_IDLE: Duration = Duration::from_millis(20);
/// How long after acknowledging a node polls that fast (afterwards the
/// promoted key in the view still completes the switch).
pub const STANDBY_FAST_FOR: Duration = Duration::from_secs(30);

/// The keys this node configures for one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerKeys {
    /// The key that carries the peer's allowed IPs.
    pub routed: String,
    /// An announced next key, configured without allowed IPs.
    pub standby: Option<String>,
}

/// The keys to configure for peer `node`: its next key is routed once
/// `switched` holds it (a handshake was seen on it), a standby before.
pub fn peer_keys(node: &NodeInfo, switched: &BTreeSet<String>) -> PeerKeys {
    match &node.next_public_key {
        Some(next) if *next == node.public_key => PeerKeys {
            routed: next.clone(),
            standby: None,
        },
        Some(next) if switched.contains(next) => PeerKeys {
            routed: next.clone(),
            standby: None,
        },
        Some(next) => PeerKeys {
            routed: node.public_key.clone(),
            standby: Some(next.clone()),
        },
        None => PeerKeys {
            routed: node.public_key.clone(),
            standby: None,
        },
    }
}

/// Next keys of `peers` this node routes to already: those it switched to
/// before (still announced), plus standbys that now have a handshake
/// (`handshaken`). A key no longer announced (promoted or aborted) leaves.
pub fn update_switched(
    switched: &BTreeSet<String>,
    peers: &[&NodeInfo],
    handshaken: impl Fn(&str) -> bool,
) -> BTreeSet<String> {
    peers
        .iter()
        .filter_map(|n| n.next_public_key.as_deref())
        .filter(|next| switched.contains(*next) || handshaken(next))
        .map(str::to_string)
        .collect()
}

/// What this node publishes as accepted: the next keys of its peers it has
/// configured (standby or routed), sorted.
pub fn accepted_keys(configured: &[PeerKeys], peers: &[&NodeInfo]) -> Vec<String> {
    let mut out: Vec<String> = peers
        .iter()
        .filter_map(|n| n.next_public_key.clone())
        .filter(|next| {
            configured
                .iter()
                .any(|k| k.routed == *next || k.standby.as_deref() == Some(next.as_str()))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A rotation of this node's key under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The announced next public key.
    pub next: String,
    /// When it was announced (or found on disk after a restart).
    pub since: Instant,
}

/// The rotating node's inputs for one decision.
#[derive(Debug, Clone)]
pub struct RotationInput<'a> {
    /// The rotation under way, if any.
    pub pending: Option<&'a Pending>,
    /// An operator asked for a rotation (trigger file).
    pub requested: bool,
    /// Age of the current key, when known (for the schedule).
    pub key_age: Option<Duration>,
    /// Rotate when the key is this old (`--rotate-key-every`).
    pub every: Option<Duration>,
    /// When the last rotation was aborted (the schedule waits a timeout).
    pub last_abort: Option<Instant>,
    /// The peers (every other node of the mesh) as the view shows them.
    pub peers: &'a [&'a NodeInfo],
    /// How long to wait for acknowledgements.
    pub timeout: Duration,
    /// Now.
    pub now: Instant,
}

/// What the rotating node does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationStep {
    /// Nothing to do.
    Idle,
    /// Generate a next key and announce it.
    Start,
    /// Every peer accepted the next key: switch the device, publish it.
    Switch,
    /// Not every peer accepted in time: drop the next key.
    Abort {
        /// Peers that did not acknowledge.
        missing: Vec<String>,
    },
    /// Still waiting for these peers; decide again within the duration.
    Wait {
        /// Peers that did not acknowledge yet.
        missing: Vec<String>,
        /// Come back at the latest after this long.
        recheck: Duration,
    },
}

/// The rotating node's decision.
pub fn decide(input: &RotationInput<'_>) -> RotationStep {
    let Some(pending) = input.pending else {
        let scheduled = match (input.every, input.key_age) {
            (Some(every), Some(age)) => {
                age >= every
                    && input
                        .last_abort
                        .is_none_or(|at| input.now.duration_since(at) >= input.timeout)
            }
            _ => false,
        };
        return if input.requested || scheduled {
            RotationStep::Start
        } else {
            RotationStep::Idle
        };
    };
    let missing: Vec<String> = input
        .peers
        .iter()
        .filter(|n| !n.accepted_keys.contains(&pending.next))
        .map(|n| n.name.clone())
        .collect();
    if missing.is_empty() {
        return RotationStep::Switch;
    }
    let waited = input.now.duration_since(pending.since);
    if waited >= input.timeout {
        RotationStep::Abort { missing }
    } else {
        RotationStep::Wait {
            missing,
            recheck: input.timeout - waited,
        }
    }
}

/// When the rotation timer wants the next decision at the latest: the time
/// left to wait for acknowledgements, or the time until the schedule is due.
pub fn schedule_wake(every: Option<Duration>, key_age: Option<Duration>) -> Option<Duration> {
    let (every, age) = (every?, key_age?);
    Some(every.saturating_sub(age).max(Duration::from_secs(1)))
}

#[cfg(test)]
mod tests;
