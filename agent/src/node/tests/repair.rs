//! The read-back and repair against the fake datapath: each drift gets its
//! repair and nothing else; metrics and readiness follow.

use std::time::Instant;

use super::*;
use crate::datapath::Step;
use crate::datapath::drift::{Drift, NetworkRepair, What};
use crate::datapath::memory::Call;
use crate::node::Phase;
use crate::node::repair_plan::{self, RepairTracker};
use crate::rpc_server::RpcHandler;

/// Ready, one container attached, a remote one on n2 (so the FDB has
/// entries), converged: a healthy node.
async fn healthy() -> Harness {
    let h = Harness::ready().await;
    let mut v = view();
    v.endpoints.push(remote_endpoint("r1", 7));
    h.agent.set_view(v);
    h.attach("c1").await;
    h.agent.converge_at(Instant::now()).await.unwrap();
    h.dp.clear_calls();
    h
}

/// The calls that change something (reads left out).
fn writes(calls: Vec<Call>) -> Vec<Call> {
    calls
        .into_iter()
        .filter(|c| {
            !matches!(
                c,
                Call::ReadPeers | Call::ObserveMesh | Call::ObserveNetwork(_)
            )
        })
        .collect()
}

fn repairs(h: &Harness, what: &str) -> bool {
    h.agent
        .metrics_text()
        .contains(&format!("privnet_agent_repairs_total{{what=\"{what}\"}} 1"))
}

#[tokio::test]
async fn a_healthy_node_is_read_back_and_left_alone() {
    let h = healthy().await;
    h.agent.check_at(Instant::now()).await;
    let calls = h.dp.calls();
    assert!(calls.contains(&Call::ObserveMesh), "{calls:?}");
    assert!(
        calls.contains(&Call::ObserveNetwork(h.netns())),
        "{calls:?}"
    );
    assert_eq!(writes(calls), [], "nothing drifted, nothing written");
    assert!(!h.agent.metrics_text().contains("repairs_total{"));
}

#[tokio::test]
async fn a_flushed_node_guard_is_reapplied_and_counted() {
    let h = healthy().await;
    h.dp.with_kernel(|k| {
        k.mesh_drift.push(Drift::new(
            What::NodeGuard,
            "inet privnet-guard",
            "table missing",
        ))
    });
    h.agent.check_at(Instant::now()).await;
    assert_eq!(
        writes(h.dp.calls()),
        [Call::EnsureMesh("pnuwg".into())],
        "only the mesh is redone: peers and networks are healthy"
    );
    assert!(h.dp.kernel().mesh_drift.is_empty());
    assert!(repairs(&h, "node_guard"), "{}", h.agent.metrics_text());
    assert_eq!(h.agent.phase(), Phase::Ready);
}

#[tokio::test]
async fn a_dead_daemon_is_restarted_and_gets_its_peers_back() {
    let h = healthy().await;
    h.dp.with_kernel(|k| {
        k.mesh_drift.push(Drift::new(
            What::WireguardDaemon,
            "pnuwg",
            "does not answer",
        ));
        // It took its peers with it.
        k.peers.clear();
    });
    h.agent.check_at(Instant::now()).await;
    let calls = writes(h.dp.calls());
    assert_eq!(calls[0], Call::EnsureMesh("pnuwg".into()), "{calls:?}");
    assert_eq!(calls[1], Call::SetPeers(vec!["key-n2".into()]), "{calls:?}");
    assert_eq!(h.dp.kernel().peers.len(), 1);
    assert!(repairs(&h, "wireguard_daemon"));
}

#[tokio::test]
async fn a_deleted_vxlan_device_is_recreated_with_its_fdb_and_the_guard_untouched() {
    let h = healthy().await;
    let before = h.dp.kernel().fdb[&h.netns()].clone();
    assert!(!before.is_empty(), "the peer's flood entry");
    h.dp.with_kernel(|k| {
        k.network_drift
            .insert(h.netns(), vec![Drift::new(What::Vxlan, "vx100", "missing")]);
    });
    h.agent.check_at(Instant::now()).await;
    let calls = writes(h.dp.calls());
    let devices_only = NetworkRepair {
        devices: true,
        ..NetworkRepair::default()
    };
    assert_eq!(
        calls,
        [
            Call::RepairNetwork(h.netns(), devices_only),
            Call::SyncFdb(h.netns(), before.clone()),
        ],
        "no guard rewrite, no DNS restart"
    );
    assert_eq!(h.dp.kernel().fdb[&h.netns()], before);
    assert!(repairs(&h, "vxlan"));
}

#[tokio::test]
async fn deleted_fdb_entries_are_synced_back_alone() {
    let h = healthy().await;
    let before = h.dp.kernel().fdb[&h.netns()].clone();
    assert_eq!(before.len(), 2, "flood and unicast entries towards n2");
    h.dp.with_kernel(|k| k.fdb.insert(h.netns(), Default::default()));
    h.agent.check_at(Instant::now()).await;
    assert_eq!(
        writes(h.dp.calls()),
        [Call::SyncFdb(h.netns(), before.clone())]
    );
    assert_eq!(h.dp.kernel().fdb[&h.netns()], before);
    assert!(repairs(&h, "fdb"));
}

#[tokio::test]
async fn a_flushed_network_guard_is_rewritten_with_the_live_ports() {
    let h = healthy().await;
    h.dp.with_kernel(|k| {
        k.networks.insert(h.netns(), vec![]);
        k.network_drift.insert(
            h.netns(),
            vec![Drift::new(
                What::NetworkGuard,
                "bridge privnet-ports",
                "table missing",
            )],
        );
    });
    h.agent.check_at(Instant::now()).await;
    let guard_only = NetworkRepair {
        guard: true,
        ..NetworkRepair::default()
    };
    assert_eq!(
        writes(h.dp.calls()),
        [Call::RepairNetwork(h.netns(), guard_only)]
    );
    assert_eq!(h.dp.kernel().networks[&h.netns()].len(), 1, "c1's port");
    // The pass after it agrees: nothing to redo.
    h.dp.clear_calls();
    h.agent.converge_at(Instant::now()).await.unwrap();
    assert!(
        !h.dp
            .calls()
            .iter()
            .any(|c| matches!(c, Call::SetPorts(..) | Call::UpdatePorts(..))),
        "{:?}",
        h.dp.calls()
    );
}

#[tokio::test]
async fn a_repair_that_keeps_failing_makes_the_agent_unready_until_it_holds() {
    let h = healthy().await;
    h.dp.with_kernel(|k| {
        k.network_drift.insert(
            h.netns(),
            vec![Drift::new(What::Gateway, "br0", "addresses []")],
        );
    });
    h.dp.fail(Step::RepairNetwork);
    h.agent.check_at(Instant::now()).await;
    assert_eq!(
        h.agent.phase(),
        Phase::Ready,
        "one failed check is not yet a pattern"
    );
    h.agent.check_at(Instant::now()).await;
    let Phase::Degraded(why) = h.agent.phase() else {
        panic!("still ready while the gateway stays broken")
    };
    assert!(why.contains("gateway br0: addresses []"), "{why}");
    assert!(!repairs(&h, "gateway"));

    h.dp.heal(Step::RepairNetwork);
    h.agent.check_at(Instant::now()).await;
    assert_eq!(h.agent.phase(), Phase::Ready);
    assert!(repairs(&h, "gateway"));
}

#[tokio::test]
async fn a_gone_host_veth_retires_the_port_and_check_reports_it() {
    let h = healthy().await;
    h.attach("c2").await;
    h.agent.converge_at(Instant::now()).await.unwrap();
    let c1_port = h.agent.attachments().await[0].host_ifname.clone();
    assert_eq!(h.dp.kernel().networks[&h.netns()].len(), 2);
    h.dp.with_kernel(|k| {
        k.network_drift.insert(
            h.netns(),
            vec![Drift::new(What::PortGone, &c1_port, "host veth gone")],
        );
    });
    h.dp.clear_calls();
    h.agent.check_at(Instant::now()).await;
    let live: Vec<String> = h.dp.kernel().networks[&h.netns()]
        .iter()
        .map(|p| p.host_ifname.clone())
        .collect();
    assert!(!live.contains(&c1_port), "retired: {live:?}");
    assert_eq!(live.len(), 1, "c2's port untouched: {live:?}");
    assert!(repairs(&h, "port_gone"));
    assert_eq!(h.agent.phase(), Phase::Ready);
    let checked = h
        .agent
        .handle(privnet_core::rpc::Request::Check(key("c1")), None)
        .await;
    assert!(
        matches!(&checked, privnet_core::rpc::Response::Error { message, .. } if message.contains("is gone")),
        "{checked:?}"
    );
    // Control: c2 is still fine, and a pass does not bring c1's port back.
    let checked = h
        .agent
        .handle(privnet_core::rpc::Request::Check(key("c2")), None)
        .await;
    assert!(
        matches!(checked, privnet_core::rpc::Response::Attached(_)),
        "{checked:?}"
    );
    h.agent.converge_at(Instant::now()).await.unwrap();
    assert_eq!(h.dp.kernel().networks[&h.netns()].len(), 1);
    // The runtime's DEL releases it; the name is forgotten.
    assert_eq!(h.agent.release(&key("c1")).await, 1);
    assert!(h.agent.gone_ports.read().unwrap().is_empty());
}

#[test]
fn each_drift_maps_to_its_repair_only() {
    let d = |what| Drift::new(what, "x", "");
    let r = repair_plan::network_repair(&[d(What::Fdb)]);
    assert!(r.fdb && r.network.is_empty() && !r.dns);
    let r = repair_plan::network_repair(&[d(What::Gateway)]);
    assert!(r.network.devices && !r.network.guard && !r.fdb);
    let r = repair_plan::network_repair(&[d(What::Namespace)]);
    assert!(r.network.devices && r.network.guard && r.fdb && r.dns);
    let r = repair_plan::network_repair(&[d(What::Port), d(What::Port)]);
    assert_eq!(r.network.ports, ["x"], "one re-attach per port");
    let m = repair_plan::mesh_repair(&[d(What::Peers)]);
    assert!(
        m.peers && !m.mesh,
        "peers alone: the daemon is left running"
    );
    let m = repair_plan::mesh_repair(&[d(What::WireguardDaemon)]);
    assert!(m.peers && m.mesh);
    assert_eq!(repair_plan::network_repair(&[]), Default::default());
}

#[test]
fn the_tracker_logs_once_counts_repairs_and_reports_what_keeps_failing() {
    let mut t = RepairTracker::default();
    let fdb = Drift::new(What::Fdb, "vx1", "1 missing");
    let gw = Drift::new(What::Gateway, "br0", "addresses []");
    let r = t.record("ns", &[fdb.clone(), gw.clone()], std::slice::from_ref(&gw));
    assert_eq!(r.new, [fdb.clone(), gw.clone()]);
    assert_eq!(r.repaired, std::slice::from_ref(&fdb));
    assert_eq!(r.first_failure, std::slice::from_ref(&gw));
    assert_eq!(t.failing(), None);
    // Same gateway problem, another detail: not new, not a first failure.
    let gw2 = Drift::new(What::Gateway, "br0", "addresses [10.0.0.9/8]");
    let r = t.record("ns", std::slice::from_ref(&gw2), std::slice::from_ref(&gw2));
    assert!(r.new.is_empty() && r.first_failure.is_empty() && r.repaired.is_empty());
    assert!(t.failing().unwrap().contains("2 checks"));
    let r = t.record("ns", std::slice::from_ref(&gw2), &[]);
    assert_eq!(r.repaired, [gw2]);
    assert_eq!(t.failing(), None);
    // A scope that went away is forgotten.
    t.record("gone", std::slice::from_ref(&gw), std::slice::from_ref(&gw));
    t.record("gone", std::slice::from_ref(&gw), std::slice::from_ref(&gw));
    assert!(t.failing().is_some());
    t.retain_scopes(|s| s != "gone");
    assert_eq!(t.failing(), None);
}

#[test]
fn a_kernel_event_brings_the_check_forward_debounced_and_spaced() {
    use std::time::Duration;
    let ms = Duration::from_millis;
    let (t0, every) = (Instant::now(), Duration::from_secs(5));
    // No event: the resync.
    assert_eq!(
        repair_plan::until_check(t0, None, t0 + ms(1000), every),
        ms(4000)
    );
    // An event 2 s after the last check: due after the debounce.
    let at = t0 + ms(2000);
    assert_eq!(repair_plan::until_check(t0, Some(at), at, every), ms(100));
    assert!(repair_plan::until_check(t0, Some(at), at + ms(150), every).is_zero());
    // Just after a check, an event (the repair's own) waits for the gap.
    let at = t0 + ms(10);
    assert_eq!(repair_plan::until_check(t0, Some(at), at, every), ms(990));
    // Never later than the resync.
    let at = t0 + ms(4950);
    assert_eq!(repair_plan::until_check(t0, Some(at), at, every), ms(50));
}

#[tokio::test]
async fn a_deleted_guard_rule_and_set_element_are_put_back_alone() {
    let h = healthy().await;
    let port = h.dp.kernel().networks[&h.netns()][0].host_ifname.clone();
    h.dp.with_kernel(|k| {
        k.network_drift.insert(
            h.netns(),
            vec![
                Drift::new(
                    What::GuardRules,
                    "bridge privnet-ports chain from-port",
                    "10 rules, want 11",
                ),
                Drift::new(
                    What::GuardRules,
                    format!("bridge privnet-ports set port-ip element {port} . 10.240.0.9"),
                    "element missing",
                ),
            ],
        );
    });
    h.agent.check_at(Instant::now()).await;
    let rules_only = NetworkRepair {
        guard_rules: true,
        ..NetworkRepair::default()
    };
    assert_eq!(
        writes(h.dp.calls()),
        [Call::RepairNetwork(h.netns(), rules_only)],
        "no table rewrite, no devices, no FDB, no port table change"
    );
    assert!(h.dp.kernel().network_drift[&h.netns()].is_empty());
    let metrics = h.agent.metrics_text();
    assert!(
        metrics.contains("privnet_agent_repairs_total{what=\"guard_rules\"} 2"),
        "the chain and the element: {metrics}"
    );
    assert!(!metrics.contains("network_guard"));
    assert_eq!(h.agent.phase(), Phase::Ready);
}
