//! The repair decisions, pure: what drifted → what to redo (and only that,
//! so a repair never flushes what is healthy), which drifts are new (logged
//! once), which were repaired (counted) and which keep failing (readiness).
//! The I/O that reads back and repairs is [`super::repair`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::datapath::drift::{Drift, NetworkRepair, What};

/// Read back → repair rounds per check: a repair can reveal the next
/// drift (a recreated VXLAN device has an empty FDB; a recreated bridge has
/// no ports), which is repaired in the same check.
pub const ROUNDS: usize = 3;

/// A drift still there after this many consecutive checks turns the agent
/// unready.
pub const FAILING_AFTER: u32 = 2;

/// What to redo on the mesh.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeshRepair {
    /// Bring the mesh up again: restart the daemon (same key), fix the link,
    /// re-apply the node guard ([`crate::datapath::NodeDatapath::ensure_mesh`],
    /// which adopts what answers).
    pub mesh: bool,
    /// Set the peers again.
    pub peers: bool,
}

/// The mesh's repair for `drifts`.
pub fn mesh_repair(drifts: &[Drift]) -> MeshRepair {
    let mut r = MeshRepair::default();
    for d in drifts {
        match d.what {
            // A restarted daemon starts without peers.
            What::WireguardDaemon => {
                r.mesh = true;
                r.peers = true;
            }
            What::WireguardLink | What::NodeGuard => r.mesh = true,
            What::Peers => r.peers = true,
            _ => {}
        }
    }
    r
}

/// What to redo in one network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Repair {
    /// In the namespace (devices, guard, ports).
    pub network: NetworkRepair,
    /// Sync the FDB.
    pub fdb: bool,
    /// Restart the DNS responder.
    pub dns: bool,
    /// Container ports whose host veth is gone: retire them (guard and
    /// CHECK); their records stay until the runtime's DEL.
    pub retire: Vec<String>,
}

/// A network's repair for `drifts`.
pub fn network_repair(drifts: &[Drift]) -> Repair {
    let mut r = Repair::default();
    for d in drifts {
        match d.what {
            // Everything lived in the namespace, the responder's sockets too.
            What::Namespace => {
                r.network.devices = true;
                r.network.guard = true;
                r.fdb = true;
                r.dns = true;
            }
            // A new VXLAN device starts with an empty FDB.
            What::Vxlan => {
                r.network.devices = true;
                r.fdb = true;
            }
            What::Bridge | What::Gateway | What::Forwarding => r.network.devices = true,
            What::NetworkGuard => r.network.guard = true,
            // Only the drifted chains and elements: flows keep running.
            What::GuardRules => r.network.guard_rules = true,
            What::Port => {
                if !r.network.ports.contains(&d.subject) {
                    r.network.ports.push(d.subject.clone());
                }
            }
            What::PortGone => {
                if !r.retire.contains(&d.subject) {
                    r.retire.push(d.subject.clone());
                }
            }
            What::Fdb => r.fdb = true,
            What::Dns => r.dns = true,
            What::WireguardDaemon | What::WireguardLink | What::Peers | What::NodeGuard => {}
        }
    }
    r
}

/// Adds the drifts of `more` not yet in `all` (one round's findings).
pub fn merge(all: &mut Vec<Drift>, more: &[Drift]) {
    for d in more {
        if !all.iter().any(|a| a.same(d)) {
            all.push(d.clone());
        }
    }
}

/// Quiet time after a kernel event before the check it brings forward: a
/// burst (a dying daemon takes its devices with it) makes one check.
pub const EVENT_DEBOUNCE: Duration = Duration::from_millis(100);

/// Least time between two checks when events bring them forward: the
/// agent's own repairs raise events too, and a check costs a few netlink
/// dumps and an `nft` per network.
pub const EVENT_MIN_GAP: Duration = Duration::from_secs(1);

/// How long until the next check is due (zero: now): every `every` since
/// the `last`, or sooner after a kernel `event` (the first one since the
/// last check), [`EVENT_DEBOUNCE`] after it and [`EVENT_MIN_GAP`] after
/// the last check at the earliest.
pub fn until_check(
    last: Instant,
    event: Option<Instant>,
    now: Instant,
    every: Duration,
) -> Duration {
    let periodic = every.saturating_sub(now.saturating_duration_since(last));
    match event {
        None => periodic,
        Some(at) => {
            let due = (at + EVENT_DEBOUNCE).max(last + EVENT_MIN_GAP);
            periodic.min(due.saturating_duration_since(now))
        }
    }
}

/// What one check of one scope (the mesh, a network) amounts to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Drifts not seen at the previous check: log them (once).
    pub new: Vec<Drift>,
    /// Drifts gone after the repair: count them.
    pub repaired: Vec<Drift>,
    /// Drifts still there after the repair for the first time: log the failure (once).
    pub first_failure: Vec<Drift>,
}

/// Drifts still there after a check, with how many consecutive checks
/// they survived, per scope.
#[derive(Debug, Default)]
pub struct RepairTracker {
    open: BTreeMap<String, Vec<(Drift, u32)>>,
}

impl RepairTracker {
    /// Records a check of `scope`: `found` is everything read back during
    /// its rounds, `left` what the last read-back still showed.
    pub fn record(&mut self, scope: &str, found: &[Drift], left: &[Drift]) -> CheckReport {
        let before = self.open.remove(scope).unwrap_or_default();
        let was_open = |d: &Drift| before.iter().find(|(o, _)| o.same(d)).map(|(_, n)| *n);
        let mut report = CheckReport {
            new: found
                .iter()
                .filter(|d| was_open(d).is_none())
                .cloned()
                .collect(),
            repaired: found
                .iter()
                .filter(|d| !left.iter().any(|l| l.same(d)))
                .cloned()
                .collect(),
            first_failure: Vec::new(),
        };
        let mut still = Vec::new();
        for d in left {
            let n = was_open(d).unwrap_or(0) + 1;
            if n == 1 {
                report.first_failure.push(d.clone());
            }
            still.push((d.clone(), n));
        }
        if !still.is_empty() {
            self.open.insert(scope.to_string(), still);
        }
        report
    }

    /// Forgets a scope that is gone (a network removed from the node).
    pub fn retain_scopes(&mut self, keep: impl Fn(&str) -> bool) {
        self.open.retain(|s, _| keep(s));
    }

    /// The first drift that survived [`FAILING_AFTER`] checks, as the
    /// readiness message; `None` when every repair holds.
    pub fn failing(&self) -> Option<String> {
        self.open
            .iter()
            .flat_map(|(scope, ds)| ds.iter().map(move |(d, n)| (scope, d, *n)))
            .find(|(_, _, n)| *n >= FAILING_AFTER)
            .map(|(scope, d, n)| format!("repair keeps failing ({n} checks) in {scope}: {d}"))
    }
}
