//! Prometheus metrics of the controller and webhook.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of the reconcile counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    controller: String,
    result: String,
}

/// Metrics updated as the controller works (cheap atomics).
#[derive(Debug, Default)]
pub struct Metrics {
    reconciles: Family<ReconcileLabels, Counter>,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
    /// Nodes in the mesh (with a VTEP).
    pub mesh_nodes: Gauge,
    /// Admissions that assigned a container number.
    pub admissions: Counter,
    /// Admissions refused or failed.
    pub admission_errors: Counter,
    /// Number claims lost to a concurrent admission (CAS conflicts).
    pub claim_conflicts: Counter,
    /// Number and address claims collected after their holder was gone.
    pub claims_collected: Counter,
}

impl Metrics {
    /// Counts one reconcile of `controller`.
    pub fn reconciled(&self, controller: &str, ok: bool) {
        let labels = ReconcileLabels {
            controller: controller.into(),
            result: if ok { "success" } else { "error" }.into(),
        };
        self.reconciles.get_or_create(&labels).inc();
    }

    /// Records the mesh size.
    pub fn set_mesh_nodes(&self, n: usize) {
        self.mesh_nodes.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Count of reconciles of `controller` with `ok` outcome (tests, status).
    pub fn reconcile_count(&self, controller: &str, ok: bool) -> u64 {
        let labels = ReconcileLabels {
            controller: controller.into(),
            result: if ok { "success" } else { "error" }.into(),
        };
        self.reconciles.get_or_create(&labels).get()
    }

    /// Text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut r = Registry::with_prefix("privnet_controller");
        r.register(
            "reconciles",
            "Reconcile passes by controller and result",
            self.reconciles.clone(),
        );
        r.register(
            "leader",
            "1 while this replica is the leader",
            self.leader.clone(),
        );
        r.register(
            "mesh_nodes",
            "Nodes in the WireGuard mesh",
            self.mesh_nodes.clone(),
        );
        r.register(
            "admissions",
            "Pods given a container number",
            self.admissions.clone(),
        );
        r.register(
            "admission_errors",
            "Admissions refused or failed",
            self.admission_errors.clone(),
        );
        r.register(
            "claim_conflicts",
            "Container-number claims lost to a concurrent admission",
            self.claim_conflicts.clone(),
        );
        r.register(
            "claims_collected",
            "Number and address claims collected after their holder was gone",
            self.claims_collected.clone(),
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
    fn exposition_names_the_counters() {
        let m = Metrics::default();
        m.reconciled("network", true);
        m.reconciled("network", true);
        assert_eq!(m.reconcile_count("network", true), 2);
        let text = m.encode();
        assert!(
            text.contains(
                "privnet_controller_reconciles_total{controller=\"network\",result=\"success\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("privnet_controller_leader 0"), "{text}");
    }
}
