//! A network whose Project is gone is kept for a grace period before it is
//! deleted. A wiped or mistyped `kubectl delete projects --all` must not take
//! every network's identity (`pn-<uid>`, VNI, DNS zone) with it: a Project
//! restored within the grace adopts its old network, so names and addresses
//! stay what they were. The decision is pure; the clock is an argument.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

/// Grace before an orphan network is deleted (`--orphan-network-grace-seconds`).
pub const DEFAULT_ORPHAN_GRACE: Duration = Duration::from_secs(300);

/// What to do with a network, from whether its project exists and since
/// when it has been missing (the network's `privnet.io/orphaned-since`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrphanStep {
    /// The project exists and the network carries no mark: nothing to do.
    Keep,
    /// The project came back: clear the mark, the network is its again.
    Adopt,
    /// The project just went missing: mark the network now.
    Mark,
    /// Missing for less than the grace: look again after this long.
    Wait(Duration),
    /// Missing for the whole grace: delete the network (its VNI is freed).
    Delete,
}

/// The step for a network (pure). A mark that does not parse counts as
/// made now: a garbled annotation never deletes a network early.
pub fn orphan_step(
    project_exists: bool,
    orphaned_since: Option<&str>,
    now: Timestamp,
    grace: Duration,
) -> OrphanStep {
    match (project_exists, orphaned_since) {
        (true, None) => OrphanStep::Keep,
        (true, Some(_)) => OrphanStep::Adopt,
        (false, None) => OrphanStep::Mark,
        (false, Some(since)) => {
            let Ok(since) = since.parse::<Timestamp>() else {
                return OrphanStep::Mark;
            };
            // A mark in the future (clock skew between replicas) counts as now.
            let gone = now.duration_since(since);
            let gone = if gone.is_negative() {
                Duration::ZERO
            } else {
                gone.unsigned_abs()
            };
            match grace.checked_sub(gone) {
                Some(left) if !left.is_zero() => OrphanStep::Wait(left),
                _ => OrphanStep::Delete,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_missing_project_is_marked_then_waited_for_then_its_network_deleted() {
        let grace = Duration::from_secs(300);
        let now = at("2026-11-30T10:00:00Z");
        assert_eq!(orphan_step(false, None, now, grace), OrphanStep::Mark);
        assert_eq!(
            orphan_step(false, Some("2026-11-30T09:58:00Z"), now, grace),
            OrphanStep::Wait(Duration::from_secs(180))
        );
        assert_eq!(
            orphan_step(false, Some("2026-11-30T09:55:00Z"), now, grace),
            OrphanStep::Delete
        );
        assert_eq!(
            orphan_step(false, Some("2026-11-30T09:00:00Z"), now, grace),
            OrphanStep::Delete
        );
    }

    #[test]
    fn a_project_that_comes_back_adopts_its_network() {
        let now = at("2026-11-30T10:00:00Z");
        let grace = DEFAULT_ORPHAN_GRACE;
        assert_eq!(
            orphan_step(true, Some("2026-11-30T09:59:00Z"), now, grace),
            OrphanStep::Adopt
        );
        assert_eq!(orphan_step(true, None, now, grace), OrphanStep::Keep);
    }

    #[test]
    fn a_garbled_mark_or_zero_grace() {
        let now = at("2026-11-30T10:00:00Z");
        assert_eq!(
            orphan_step(false, Some("yesterday"), now, DEFAULT_ORPHAN_GRACE),
            OrphanStep::Mark,
            "never deleted on a mark that does not parse"
        );
        assert_eq!(
            orphan_step(false, Some("2026-11-30T10:00:00Z"), now, Duration::ZERO),
            OrphanStep::Delete,
            "a zero grace deletes at the first look after the mark"
        );
    }
}
