//! Convergence passes against the fake datapath, with the clock passed in.

use std::time::{Duration, Instant};

use super::*;
use crate::datapath::Step;
use crate::datapath::memory::Call;
use crate::node::Phase;
use crate::node::plan::{PURGE_AFTER, REARM_AFTER, SILENT_RECHECK};
use privnet_core::mac::format_mac;

fn without_reads(calls: Vec<Call>) -> Vec<Call> {
    calls
        .into_iter()
        .filter(|c| {
            !matches!(
                c,
                Call::ReadPeers | Call::SetPeers(_) | Call::ListNetworks(_) | Call::Poke(_)
            )
        })
        .collect()
}

#[tokio::test]
async fn no_mesh_address_means_nothing_is_set_up() {
    let h = Harness::start().await;
    let mut v = view();
    v.nodes[0].vtep = None;
    h.agent.set_view(v);
    h.agent.converge_at(Instant::now()).await.unwrap();
    assert!(h.dp.calls().is_empty(), "{:?}", h.dp.calls());
    assert_eq!(h.agent.phase(), Phase::WaitingForMesh);
    h.agent.set_view(view());
    h.agent.converge_at(Instant::now()).await.unwrap();
    assert_eq!(h.agent.phase(), Phase::Ready);
    assert_eq!(h.dp.kernel().peers.len(), 1, "one peer: n2");
}

#[tokio::test]
async fn a_pass_syncs_fdb_and_a_second_pass_changes_nothing() {
    let h = Harness::ready().await;
    let mut v = view();
    v.endpoints.push(remote_endpoint("r1", 7));
    h.agent.set_view(v);
    h.attach("c1").await;
    h.agent.converge_at(Instant::now()).await.unwrap();
    let fdb = &h.dp.kernel().fdb[&h.netns()];
    let n2 = Ipv4Addr::new(100, 64, 0, 2);
    assert!(fdb.iter().any(|e| e.is_flood() && e.dst == n2), "{fdb:?}");
    assert!(fdb.iter().any(|e| !e.is_flood() && e.dst == n2), "{fdb:?}");
    assert_eq!(h.dp.kernel().networks[&h.netns()].len(), 1);
    // The bridge answers ARP for the remote endpoint, and only for it.
    let answers: Vec<_> = h.dp.kernel().arp_answers[&h.netns()]
        .iter()
        .map(|a| (a.ip, format_mac(&a.mac)))
        .collect();
    assert_eq!(
        answers,
        [(
            Ipv4Addr::new(10, 240, 1, 7),
            "0a:58:0a:f0:01:07".to_string()
        )]
    );

    h.dp.clear_calls();
    h.agent.converge_at(Instant::now()).await.unwrap();
    assert_eq!(
        without_reads(h.dp.calls()),
        [],
        "a converged node is left alone"
    );

    // The endpoint gone: its answer goes with its FDB entry.
    h.agent.set_view(view());
    h.agent.converge_at(Instant::now()).await.unwrap();
    assert!(h.dp.kernel().arp_answers[&h.netns()].is_empty());
}

#[tokio::test]
async fn retired_ports_are_purged_once_the_network_is_quiet() {
    let h = Harness::ready().await;
    let t0 = Instant::now();
    h.attach("c1").await;
    h.attach("c2").await;
    h.agent.converge_at(t0).await.unwrap();
    h.agent.release(&key("c1")).await;
    h.dp.clear_calls();
    let out = h.agent.converge_at(t0).await.unwrap();
    assert!(
        matches!(h.dp.calls().iter().find(|c| matches!(c, Call::UpdatePorts(..))), Some(Call::UpdatePorts(_, p)) if p.len() == 1)
    );
    assert!(
        !h.dp
            .calls()
            .iter()
            .any(|c| matches!(c, Call::PurgePorts(..))),
        "not yet: the network just changed"
    );
    assert!(out.wakes.contains(&PURGE_AFTER), "{:?}", out.wakes);

    let almost = t0 + PURGE_AFTER - Duration::from_millis(500);
    let out = h.agent.converge_at(almost).await.unwrap();
    assert!(
        out.wakes.contains(&Duration::from_millis(500)),
        "{:?}",
        out.wakes
    );
    h.dp.clear_calls();
    let out = h.agent.converge_at(t0 + PURGE_AFTER).await.unwrap();
    assert_eq!(
        h.dp.calls()
            .iter()
            .filter(|c| matches!(c, Call::PurgePorts(..)))
            .count(),
        1
    );
    assert!(out.wakes.is_empty(), "{:?}", out.wakes);
}

#[tokio::test]
async fn a_failed_increment_rebuilds_the_guard_whole() {
    let h = Harness::ready().await;
    h.attach("c1").await;
    h.agent.converge_at(Instant::now()).await.unwrap();
    // The increment (made by Attach, before it answers) fails.
    h.dp.fail(Step::UpdatePorts);
    h.dp.clear_calls();
    h.attach("c2").await;
    h.agent.converge_at(Instant::now()).await.unwrap();
    assert!(
        h.dp.calls()
            .iter()
            .any(|c| matches!(c, Call::SetPorts(_, p) if p.len() == 2))
    );
    assert_eq!(h.dp.kernel().networks[&h.netns()].len(), 2);
}

#[tokio::test]
async fn a_failed_pass_degrades_with_its_cause_and_recovers() {
    let h = Harness::ready().await;
    h.attach("c1").await;
    h.dp.fail(Step::SyncFdb);
    let e = h.agent.converge_at(Instant::now()).await.unwrap_err();
    let Phase::Degraded(why) = h.agent.phase() else {
        panic!("not degraded")
    };
    assert_eq!(why, crate::error_chain(&e));
    assert!(
        why.contains("failed to sync the FDB of pn-a") && why.ends_with("injected failure"),
        "{why}"
    );
    h.dp.heal(Step::SyncFdb);
    h.agent.converge_at(Instant::now()).await.unwrap();
    assert_eq!(h.agent.phase(), Phase::Ready);
}

#[tokio::test]
async fn silent_peers_are_poked_then_rearmed() {
    let h = Harness::start().await;
    h.agent.set_view(view());
    let t0 = Instant::now();
    let out = h.agent.converge_at(t0).await.unwrap();
    // n2 never shook hands: poked, and the pass comes back soon.
    let n2 = Ipv4Addr::new(100, 64, 0, 2);
    assert!(h.dp.calls().contains(&Call::Poke(vec![n2])));
    assert_eq!(out.wakes, [SILENT_RECHECK]);
    let rearms = |calls: Vec<Call>| {
        calls
            .iter()
            .filter(|c| **c == Call::SetPeers(vec![]))
            .count()
    };
    assert_eq!(rearms(h.dp.calls()), 0, "too early to re-arm");

    h.dp.clear_calls();
    h.agent.converge_at(t0 + REARM_AFTER).await.unwrap();
    assert_eq!(
        rearms(h.dp.calls()),
        1,
        "re-armed: removed, then added back"
    );
    assert_eq!(h.dp.kernel().peers.len(), 1);

    h.dp.with_kernel(|k| k.handshakes.insert("key-n2".into(), Duration::from_secs(1)));
    h.dp.clear_calls();
    let out = h.agent.converge_at(t0 + REARM_AFTER * 2).await.unwrap();
    assert!(!h.dp.calls().iter().any(|c| matches!(c, Call::Poke(_))));
    assert!(out.wakes.is_empty(), "{:?}", out.wakes);
}
