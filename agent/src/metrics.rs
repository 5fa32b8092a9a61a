//! Prometheus metrics of the agent.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::dns::handler::DnsCounters;

/// Metrics the agent updates as it works (cheap atomics).
#[derive(Debug, Clone)]
pub struct AgentMetrics {
    /// Attachments on this node.
    pub attachments: Gauge,
    /// Private networks present on this node.
    pub networks: Gauge,
    /// Names in the DNS zones the node serves (leaks show here first).
    pub zone_entries: Gauge,
    /// WireGuard peers configured.
    pub peers: Gauge,
    /// Age of the oldest peer handshake, seconds (-1: some peer never shook hands).
    pub max_handshake_age: Gauge,
    /// Errors (convergence, source, RPC).
    pub errors: Counter,
    /// Convergence passes.
    pub converges: Counter,
    /// 1 while a view that would take most of this node away is held.
    pub removals_held: Gauge,
    /// Views held by the blast-radius guard.
    pub removal_holds: Counter,
    /// Counters of the DNS responders (shared with them).
    pub dns: DnsCounters,
    /// RPC latency.
    pub rpc_seconds: Histogram,
    /// Repairs of drifted datapath state, by what was repaired.
    pub repairs: Family<RepairLabels, Counter>,
    /// This node's key rotations.
    pub key_rotations: KeyRotations,
}

/// Counters of this node's key rotations.
#[derive(Clone, Debug, Default)]
pub struct KeyRotations {
    /// Next keys announced.
    pub started: Counter,
    /// Switches to the next key.
    pub switched: Counter,
    /// Rotations aborted (a peer did not accept in time; key unchanged).
    pub aborted: Counter,
}

/// Labels of `privnet_agent_repairs_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepairLabels {
    /// What was repaired (`node_guard`, `vxlan`, `fdb`, …).
    pub what: String,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self {
            attachments: Gauge::default(),
            networks: Gauge::default(),
            zone_entries: Gauge::default(),
            peers: Gauge::default(),
            max_handshake_age: Gauge::default(),
            errors: Counter::default(),
            converges: Counter::default(),
            removals_held: Gauge::default(),
            removal_holds: Counter::default(),
            dns: DnsCounters::default(),
            rpc_seconds: Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.0]),
            repairs: Family::default(),
            key_rotations: KeyRotations::default(),
        }
    }
}

impl AgentMetrics {
    /// Counts one repair of `what`.
    pub fn repaired(&self, what: &str) {
        self.repairs
            .get_or_create(&RepairLabels {
                what: what.to_string(),
            })
            .inc();
    }

    /// Text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut r = Registry::with_prefix("privnet_agent");
        r.register(
            "attachments",
            "Attachments on this node",
            self.attachments.clone(),
        );
        r.register(
            "networks",
            "Private networks present on this node",
            self.networks.clone(),
        );
        r.register(
            "zone_entries",
            "Names in the DNS zones this node serves",
            self.zone_entries.clone(),
        );
        r.register(
            "wireguard_peers",
            "WireGuard peers configured",
            self.peers.clone(),
        );
        r.register(
            "wireguard_max_handshake_age_seconds",
            "Age of the oldest peer handshake (-1 when a peer never completed one)",
            self.max_handshake_age.clone(),
        );
        r.register(
            "errors",
            "Errors while converging or serving",
            self.errors.clone(),
        );
        r.register("converges", "Convergence passes", self.converges.clone());
        r.register(
            "removals_held",
            "1 while a view that would take most of this node away is held",
            self.removals_held.clone(),
        );
        r.register(
            "removal_holds",
            "Views held by the blast-radius guard",
            self.removal_holds.clone(),
        );
        r.register(
            "dns_answered",
            "DNS queries answered from a private zone",
            self.dns.answered.clone(),
        );
        r.register(
            "dns_negative",
            "DNS NXDOMAIN/NODATA answers",
            self.dns.negative.clone(),
        );
        r.register(
            "dns_forwarded",
            "DNS queries forwarded upstream",
            self.dns.forwarded.clone(),
        );
        r.register("dns_failed", "DNS queries failed", self.dns.failed.clone());
        r.register(
            "rpc_seconds",
            "Latency of CNI requests",
            self.rpc_seconds.clone(),
        );
        r.register(
            "repairs",
            "Repairs of datapath state found drifted on read-back, by what was repaired",
            self.repairs.clone(),
        );
        r.register(
            "key_rotations_started",
            "WireGuard key rotations started (next key announced)",
            self.key_rotations.started.clone(),
        );
        r.register(
            "key_rotations_switched",
            "WireGuard key rotations completed (device switched to the next key)",
            self.key_rotations.switched.clone(),
        );
        r.register(
            "key_rotations_aborted",
            "WireGuard key rotations aborted (a peer did not accept in time)",
            self.key_rotations.aborted.clone(),
        );
        let mut out = String::new();
        encode(&mut out, &r).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_contains_the_values() {
        let m = AgentMetrics::default();
        m.attachments.set(3);
        m.errors.inc();
        m.dns.answered.inc();
        m.repaired("node_guard");
        let text = m.encode();
        assert!(
            text.contains("privnet_agent_repairs_total{what=\"node_guard\"} 1"),
            "{text}"
        );
        assert!(!text.contains("what=\"vxlan\""), "{text}");
        assert!(text.contains("privnet_agent_attachments 3"), "{text}");
        assert!(text.contains("privnet_agent_errors_total 1"), "{text}");
        assert!(
            text.contains("privnet_agent_dns_answered_total 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
