//! The port's guard is installed by Attach, before it answers (a container
//! can talk at once), undone with the attach, and left alone by the pass.

use std::time::Instant;

use privnet_core::rpc::ErrorKind;

use super::*;
use crate::datapath::Step;
use crate::datapath::memory::Call;
use crate::node::AttachError;

/// The guarded port names of the network, as the fake kernel has them.
fn guarded(h: &Harness) -> Vec<String> {
    h.dp.kernel()
        .networks
        .get(&h.netns())
        .map(|ports| ports.iter().map(|p| p.host_ifname.clone()).collect())
        .unwrap_or_default()
}

/// Port names in the guard's order.
fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    v.sort();
    v
}

/// Port guard calls made since the last `clear_calls`.
fn guard_calls(h: &Harness) -> Vec<Call> {
    h.dp.calls()
        .into_iter()
        .filter(|c| {
            matches!(
                c,
                Call::SetPorts(..) | Call::UpdatePorts(..) | Call::PurgePorts(..)
            )
        })
        .collect()
}

#[tokio::test]
async fn attach_answers_with_the_port_already_guarded() {
    let h = Harness::ready().await;
    // The first attach brings the network up with its port in the guard.
    let a = h.attach("c1").await;
    assert_eq!(guarded(&h), sorted(&[&a.host_ifname]), "no pass needed");
    // A later one adds its port incrementally, before answering.
    h.dp.clear_calls();
    let b = h.attach("c2").await;
    let both = sorted(&[&a.host_ifname, &b.host_ifname]);
    assert_eq!(guarded(&h), both);
    assert_eq!(
        guard_calls(&h),
        [Call::UpdatePorts(h.netns(), both.clone())],
        "one incremental transaction, no table swap"
    );
    // The pass finds the guard right: no double work, and again no flap.
    for _ in 0..2 {
        h.dp.clear_calls();
        h.agent.converge_at(Instant::now()).await.unwrap();
        assert_eq!(guard_calls(&h), [], "the pass redoes nothing");
        assert_eq!(guarded(&h), both);
    }
    // Re-ADD of an attached key changes nothing either.
    h.dp.clear_calls();
    assert_eq!(h.attach("c2").await, b);
    assert_eq!(guard_calls(&h), []);
}

#[tokio::test]
async fn a_failed_guard_is_rolled_back() {
    let h = Harness::ready().await;
    let a = h.attach("c1").await;
    // The increment fails and so does the whole-table fallback.
    h.dp.fail(Step::UpdatePorts);
    h.dp.fail(Step::SetPorts);
    let e = h.agent.attach(request("c2", None)).await.unwrap_err();
    assert!(matches!(e, AttachError::Guard { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::Internal);
    assert!(crate::error_chain(&e).contains("injected failure"));
    let records = h.agent.attachments().await;
    assert_eq!(records.len(), 1, "c2 is not booked");
    assert_eq!(h.store.keys(), ["c1"]);
    assert_eq!(h.source.state().claims.len(), 1, "c2's claim released");
    assert_eq!(guarded(&h), sorted(&[&a.host_ifname]));
    // Healed, the same request works and is guarded at once.
    h.dp.heal(Step::UpdatePorts);
    h.dp.heal(Step::SetPorts);
    let b = h.attach("c2").await;
    assert_eq!(guarded(&h), sorted(&[&a.host_ifname, &b.host_ifname]));
}

#[tokio::test]
async fn a_failure_after_the_guard_removes_the_port() {
    let h = Harness::ready().await;
    let a = h.attach("c1").await;
    // Positive control: c2's port would be guarded...
    let probe = h.attach("c2").await;
    assert!(guarded(&h).contains(&probe.host_ifname));
    assert_eq!(h.agent.release(&key("c2")).await, 1);
    h.agent.converge_at(Instant::now()).await.unwrap();
    // ...but persisting (the step after the guard) fails: the port is
    // deleted at once, not merely retired.
    h.dp.clear_calls();
    *h.store.fail_put.lock().unwrap() = true;
    let e = h.agent.attach(request("c2", None)).await.unwrap_err();
    assert!(matches!(e, AttachError::Store(_)), "{e}");
    assert_eq!(guarded(&h), sorted(&[&a.host_ifname]));
    assert!(
        guard_calls(&h).contains(&Call::PurgePorts(
            h.netns(),
            vec![probe.host_ifname.clone()]
        )),
        "{:?}",
        guard_calls(&h)
    );
    assert_eq!(h.store.keys(), ["c1"]);
    // The pass agrees with what the undo left: nothing to do.
    h.dp.clear_calls();
    h.agent.converge_at(Instant::now()).await.unwrap();
    assert_eq!(guard_calls(&h), []);
    assert_eq!(guarded(&h), [a.host_ifname]);
}

#[tokio::test]
async fn a_failure_after_bringing_the_network_up_leaves_no_port_open() {
    let h = Harness::ready().await;
    *h.store.fail_put.lock().unwrap() = true;
    let e = h.agent.attach(request("c1", None)).await.unwrap_err();
    assert!(matches!(e, AttachError::Store(_)), "{e}");
    // The network came up with c1's port in its guard; the undo took it out.
    assert!(h.dp.kernel().networks.contains_key(&h.netns()));
    assert_eq!(guarded(&h), Vec::<String>::new());
    // Nothing attached: the pass takes the network down.
    h.agent.converge_at(Instant::now()).await.unwrap();
    assert!(h.dp.kernel().networks.is_empty());
}
