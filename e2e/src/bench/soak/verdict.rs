//! The soak's figures and its verdict, pure: what one sample holds, and
//! which limits a run broke (resources may grow at most a share between the
//! start and any later sample; every count of things created per container
//! is back to its idle value: nothing leaked).

use std::fmt;

/// What the agent holds at one point of the run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// `idle`, `start`, `middle`, `end`.
    pub label: String,
    /// Cycles done when it was taken.
    pub cycles: usize,
    /// Resident set of the agent, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Open file descriptors of the agent.
    pub fds: u64,
    /// Threads of the agent.
    pub threads: u64,
    /// Child processes of the agent (the WireGuard daemon, DNS helpers).
    pub children: u64,
    /// Elements of the guard's port sets, over the node's networks.
    pub set_elements: u64,
    /// Chains of the guard tables, over the node's networks.
    pub chains: u64,
    /// nft rules in the node's network namespaces.
    pub nft_rules: u64,
    /// Container ports (host veths) on the node's bridges.
    pub ports: u64,
    /// The node's network namespaces.
    pub network_namespaces: u64,
    /// Address claims in the cluster.
    pub claims: u64,
    /// Attachment records in the agent's state directory.
    pub records: u64,
    /// Endpoints the node has published.
    pub endpoints: u64,
    /// Entries of the agent's DNS zones (`privnet_agent_zone_entries`).
    pub zone_entries: u64,
}

/// One figure of a sample, by name.
type Field = (&'static str, fn(&Sample) -> u64);

/// Resources that may grow by at most the limit's share.
pub const RESOURCES: [Field; 3] = [
    ("rss KiB", |s| s.rss_kib),
    ("fds", |s| s.fds),
    ("threads", |s| s.threads),
];

/// Things made per container (or per network on the node): back to their
/// idle value at every sample.
pub const COUNTS: [Field; 11] = [
    ("children", |s| s.children),
    ("set elements", |s| s.set_elements),
    ("chains", |s| s.chains),
    ("nft rules", |s| s.nft_rules),
    ("ports", |s| s.ports),
    ("network netns", |s| s.network_namespaces),
    ("claims", |s| s.claims),
    ("records", |s| s.records),
    ("endpoints", |s| s.endpoints),
    ("zone entries", |s| s.zone_entries),
    ("fds", |s| s.fds),
];

/// Counts the warm-up may raise once (sockets and helpers opened on first
/// use): compared with the
/// start, not with idle — any one more after the start is a leak.
pub const WARM: [&str; 2] = ["fds", "children"];

/// Which kind of limit broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// ADD or DEL calls failed.
    Failure,
    /// Something made per container is not back to idle (or an fd or a
    /// child more than at the start).
    Leak,
    /// A resource grew more than the limit from the start.
    Growth,
}

/// A limit the run broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken(pub Kind, pub String);

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.1)
    }
}

/// Growth of `later` over `start`, as a share (0.05 = 5 %).
pub fn growth(start: u64, later: u64) -> f64 {
    if start == 0 {
        return if later == 0 { 0.0 } else { f64::INFINITY };
    }
    (later as f64 - start as f64) / start as f64
}

/// The limits broken by `samples` (`idle`, then `start`, `middle`, `end`…):
/// a resource grew more than `limit` between the start (the first sample
/// after `idle`, once the allocator and the caches are warm) and a later
/// one, or a count differs from its idle value. `failures` are cycles whose
/// ADD or DEL failed.
pub fn verdict(samples: &[Sample], limit: f64, failures: usize) -> Vec<Broken> {
    let mut broken = Vec::new();
    if failures > 0 {
        broken.push(Broken(
            Kind::Failure,
            format!("{failures} ADD/DEL calls failed"),
        ));
    }
    let (Some(idle), Some(start)) = (samples.first(), samples.get(1)) else {
        broken.push(Broken(Kind::Failure, "fewer than two samples".into()));
        return broken;
    };
    for later in &samples[2..] {
        for (name, get) in RESOURCES {
            let g = growth(get(start), get(later));
            if g > limit {
                broken.push(Broken(
                    Kind::Growth,
                    format!(
                        "{name} grew {:.1} % from start to {} ({} -> {}), limit {:.1} %",
                        g * 100.0,
                        later.label,
                        get(start),
                        get(later),
                        limit * 100.0
                    ),
                ));
            }
        }
    }
    for s in &samples[1..] {
        let base = |name: &str| if WARM.contains(&name) { start } else { idle };
        for (name, get) in COUNTS {
            if s.label == start.label && WARM.contains(&name) {
                continue;
            }
            let (want, have) = (get(base(name)), get(s));
            if have != want {
                broken.push(Broken(
                    Kind::Leak,
                    format!(
                        "{name} at {}: {have}, {} {want} (leaked or lost)",
                        s.label,
                        base(name).label
                    ),
                ));
            }
        }
    }
    broken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(label: &str, rss: u64, records: u64) -> Sample {
        Sample {
            label: label.into(),
            rss_kib: rss,
            fds: 20,
            threads: 8,
            records,
            claims: records,
            ..Sample::default()
        }
    }

    #[test]
    fn a_steady_run_breaks_nothing() {
        let s = [
            sample("idle", 900, 2),
            sample("start", 1000, 2),
            sample("middle", 1030, 2),
            sample("end", 1050, 2),
        ];
        assert_eq!(verdict(&s, 0.05, 0), []);
    }

    #[test]
    fn growth_past_the_limit_and_a_leaked_record_are_reported() {
        let s = [
            sample("idle", 900, 2),
            sample("start", 1000, 2),
            sample("middle", 1000, 2),
            sample("end", 1051, 3),
        ];
        let b = verdict(&s, 0.05, 0);
        let text: Vec<String> = b.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(
            text[0].starts_with("rss KiB grew 5.1 % from start to end"),
            "{text:?}"
        );
        assert_eq!(b[0].0, Kind::Growth);
        assert!(text[1].starts_with("claims at end: 3, idle 2"), "{text:?}");
        assert!(text[2].starts_with("records at end: 3, idle 2"), "{text:?}");
        assert_eq!((b[1].0, b[2].0), (Kind::Leak, Kind::Leak));
    }

    #[test]
    fn an_fd_more_than_at_the_start_is_a_leak_and_failures_count() {
        let mut end = sample("end", 1000, 2);
        end.fds = 21;
        let s = [sample("idle", 900, 2), sample("start", 1000, 2), end];
        let b = verdict(&s, 0.10, 3);
        let text: Vec<String> = b.iter().map(ToString::to_string).collect();
        assert_eq!(text[0], "3 ADD/DEL calls failed");
        assert!(
            text.iter()
                .any(|t| t.starts_with("fds at end: 21, start 20")),
            "{text:?}"
        );
        assert_eq!(growth(0, 0), 0.0);
        assert!(growth(0, 1).is_infinite());
    }
}
