//! The blast-radius guard: a view that takes most of this node away is held
//! (pure cases), and an agent keeps forwarding through a wiped view until the
//! grace period or a confirmation.

use std::time::{Duration, Instant};

use super::*;
use crate::node::hold::{Gate, HoldPolicy, LiveAttachment, Removal, RemovalGuard};
use crate::node::plan::endpoint_info;

const GRACE: Duration = Duration::from_secs(300);
const WINDOW: Duration = Duration::from_secs(2);

fn policy() -> HoldPolicy {
    HoldPolicy {
        max_share: 0.5,
        min_count: 3,
        grace: GRACE,
        window: WINDOW,
        settle: Duration::ZERO,
    }
}

fn ep(node_name: &str, cid: &str, last: u8) -> EndpointInfo {
    EndpointInfo {
        network_id: NET.into(),
        application_id: "app".into(),
        process_type: "web".into(),
        container_number: u32::from(last),
        ip: Ipv4Addr::new(10, 240, 0, last),
        mac: format!("0a:58:0a:f0:00:{last:02x}"),
        node: node_name.into(),
        container_id: cid.into(),
        interface: "eth1".into(),
    }
}

fn live(n: u8) -> BTreeSet<LiveAttachment> {
    (1..=n)
        .map(|i| LiveAttachment {
            network_id: NET.into(),
            container_id: format!("c{i}"),
            interface: "eth1".into(),
        })
        .collect()
}

/// A view with `local` endpoints of this node, `remote` of n2, `peers` peers.
fn full(local: u8, remote: u8, peers: u8) -> ClusterView {
    let mut v = view();
    v.nodes.truncate(1);
    v.nodes
        .extend((2..2 + peers).map(|i| node(&format!("n{i}"), i, true)));
    v.endpoints
        .extend((1..=local).map(|i| ep(NODE, &format!("c{i}"), i)));
    v.endpoints
        .extend((1..=remote).map(|i| ep("n2", &format!("r{i}"), 100 + i)));
    v
}

fn wiped() -> ClusterView {
    ClusterView {
        nodes: vec![node(NODE, 1, true), node("n2", 2, true)],
        ..ClusterView::default()
    }
}

#[test]
fn a_wiped_view_is_held_then_applies_after_the_grace_period() {
    let (t0, mut g) = (Instant::now(), RemovalGuard::default());
    let before = full(5, 4, 1);
    assert_eq!(
        g.gate(NODE, &before, &live(5), &policy(), false, t0).1,
        Gate::Apply
    );
    let (eff, gate) = g.gate(NODE, &wiped(), &live(5), &policy(), false, t0);
    let removal = Removal {
        attachments: (5, 5),
        networks: (1, 1),
        peers: (0, 1),
    };
    assert_eq!(gate, Gate::Held { since: t0, removal });
    assert_eq!(eff.networks, before.networks, "the network stays");
    assert_eq!(
        eff.endpoints.len(),
        before.endpoints.len(),
        "every endpoint stays"
    );
    let later = t0 + GRACE - Duration::from_secs(1);
    assert!(matches!(
        g.gate(NODE, &wiped(), &live(5), &policy(), false, later).1,
        Gate::Held { since, .. } if since == t0
    ));
    let (eff, gate) = g.gate(NODE, &wiped(), &live(5), &policy(), false, t0 + GRACE);
    assert_eq!(
        gate,
        Gate::Released {
            removal,
            confirmed: false
        }
    );
    assert_eq!(eff, wiped());
    assert!(!g.holding());
}

#[test]
fn an_operator_confirmation_applies_a_hold_at_once() {
    let (t0, mut g) = (Instant::now(), RemovalGuard::default());
    g.gate(NODE, &full(5, 0, 1), &live(5), &policy(), false, t0);
    assert!(matches!(
        g.gate(NODE, &wiped(), &live(5), &policy(), false, t0).1,
        Gate::Held { .. }
    ));
    let (eff, gate) = g.gate(NODE, &wiped(), &live(5), &policy(), true, t0);
    assert!(
        matches!(
            gate,
            Gate::Released {
                confirmed: true,
                ..
            }
        ),
        "{gate:?}"
    );
    assert_eq!(eff, wiped());
}

#[test]
fn a_restored_view_ends_the_hold_and_nothing_is_lost() {
    let (t0, mut g) = (Instant::now(), RemovalGuard::default());
    let before = full(5, 4, 1);
    g.gate(NODE, &before, &live(5), &policy(), false, t0);
    g.gate(NODE, &wiped(), &live(5), &policy(), false, t0);
    let (eff, gate) = g.gate(NODE, &before, &live(5), &policy(), false, t0);
    assert_eq!((eff, gate), (before, Gate::Apply));
    assert!(!g.holding());
}

#[test]
fn a_real_scale_in_and_small_removals_proceed() {
    let (t0, mut g) = (Instant::now(), RemovalGuard::default());
    // 90 % of the network's remote containers go; this node's stay shown.
    g.gate(NODE, &full(2, 20, 1), &live(2), &policy(), false, t0);
    let (eff, gate) = g.gate(NODE, &full(2, 2, 1), &live(2), &policy(), false, t0);
    assert_eq!((eff, gate), (full(2, 2, 1), Gate::Apply));
    // Containers gone from this node (CNI DEL) leave the live set: not held.
    let (_, gate) = g.gate(NODE, &full(0, 2, 1), &live(0), &policy(), false, t0);
    assert_eq!(gate, Gate::Apply);
    // Positive control: the same shape with the containers still live is held.
    let mut g = RemovalGuard::default();
    g.gate(NODE, &full(8, 2, 1), &live(8), &policy(), false, t0);
    let (_, gate) = g.gate(NODE, &full(0, 2, 1), &live(8), &policy(), false, t0);
    assert!(matches!(gate, Gate::Held { .. }), "{gate:?}");
}

#[test]
fn a_few_removals_or_less_than_half_are_never_held() {
    let t0 = Instant::now();
    // 3 of 4 attachments: more than half, but only "a few".
    let mut g = RemovalGuard::default();
    g.gate(NODE, &full(4, 0, 1), &live(4), &policy(), false, t0);
    let (_, gate) = g.gate(NODE, &full(1, 0, 1), &live(4), &policy(), false, t0);
    assert_eq!(gate, Gate::Apply);
    // 4 of 10 peers: more than a few, but not more than half.
    let mut g = RemovalGuard::default();
    g.gate(NODE, &full(1, 0, 10), &live(1), &policy(), false, t0);
    let (_, gate) = g.gate(NODE, &full(1, 0, 6), &live(1), &policy(), false, t0);
    assert_eq!(gate, Gate::Apply);
    // Positive control: 6 of 10 peers gone is held.
    let mut g = RemovalGuard::default();
    g.gate(NODE, &full(1, 0, 10), &live(1), &policy(), false, t0);
    let (eff, gate) = g.gate(NODE, &full(1, 0, 4), &live(1), &policy(), false, t0);
    assert!(matches!(gate, Gate::Held { removal, .. } if removal.peers == (6, 10)));
    assert_eq!(eff.nodes.len(), 11, "every peer stays");
}

#[test]
fn a_wipe_arriving_one_deletion_at_a_time_is_held_whole() {
    let (t0, mut g) = (Instant::now(), RemovalGuard::default());
    let before = full(6, 0, 1);
    g.gate(NODE, &before, &live(6), &policy(), false, t0);
    // Each step takes one more endpoint away, 10 ms apart: small steps,
    // measured together against the view of the window's start.
    let mut gates = Vec::new();
    for gone in 1..=6u8 {
        let mut v = before.clone();
        v.endpoints.drain(..usize::from(gone));
        let now = t0 + Duration::from_millis(10 * u64::from(gone));
        let (eff, gate) = g.gate(NODE, &v, &live(6), &policy(), false, now);
        gates.push(matches!(gate, Gate::Held { .. }));
        if gate != Gate::Apply {
            assert_eq!(eff.endpoints.len(), 6, "held: every endpoint back");
        }
    }
    assert_eq!(gates, [false, false, false, true, true, true]);
    // Control: the same steps a window apart are each small, never held.
    let mut g = RemovalGuard::default();
    g.gate(NODE, &before, &live(6), &policy(), false, t0);
    for gone in 1..=6u8 {
        let mut v = before.clone();
        v.endpoints.drain(..usize::from(gone));
        let now = t0 + WINDOW * u32::from(gone);
        let (_, gate) = g.gate(NODE, &v, &live(6), &policy(), false, now);
        assert_eq!(gate, Gate::Apply, "step {gone}");
    }
}

#[test]
fn an_attachment_the_view_never_showed_is_not_a_removal() {
    let (t0, mut g) = (Instant::now(), RemovalGuard::default());
    g.gate(NODE, &full(0, 0, 1), &live(0), &policy(), false, t0);
    // Eight new local attachments not yet published: nothing to hold.
    let (_, gate) = g.gate(NODE, &full(0, 0, 1), &live(8), &policy(), false, t0);
    assert_eq!(gate, Gate::Apply);
}

/// An agent with five attachments shown by the view and one remote endpoint,
/// converged twice a window apart (the guard's baseline has them all); the
/// time of the second pass and the FDB it left.
async fn five_attached_and_a_remote() -> (
    Harness,
    Instant,
    BTreeMap<String, BTreeSet<privnet_core::fdb::FdbEntry>>,
) {
    let h = Harness::ready().await;
    for i in 1..=5 {
        h.attach(&format!("c{i}")).await;
    }
    let mut v = view();
    v.endpoints.extend(
        h.agent
            .attachments()
            .await
            .iter()
            .map(|r| endpoint_info(NODE, r)),
    );
    v.endpoints.push(ep("n2", "r1", 200));
    h.agent.set_view(v);
    let t0 = Instant::now() + WINDOW;
    h.agent.converge_at(t0 - WINDOW).await.unwrap();
    h.agent.converge_at(t0).await.unwrap();
    let fdb = h.dp.kernel().fdb.clone();
    (h, t0, fdb)
}

#[tokio::test]
async fn an_agent_keeps_forwarding_through_a_wiped_view_until_the_grace_period() {
    let (h, t0, fdb) = five_attached_and_a_remote().await;
    assert!(!fdb.is_empty(), "the remote endpoint is in the FDB");
    assert!(
        h.agent
            .metrics_text()
            .contains("privnet_agent_removals_held 0")
    );

    h.agent.set_view(wiped());
    h.agent.converge_at(t0).await.unwrap();
    assert_eq!(h.dp.kernel().fdb, fdb, "held: the FDB is untouched");
    assert!(
        h.dp.kernel().networks.contains_key(&h.netns()),
        "held: the network stays up"
    );
    assert!(
        h.agent
            .metrics_text()
            .contains("privnet_agent_removals_held 1")
    );
    assert!(
        h.source.state().published.len() == 5,
        "the agent's own endpoints stay published"
    );

    // The grace period elapses with the view still wiped: it applies (the
    // remote endpoint leaves the FDB; the network stays for its containers).
    h.agent.converge_at(t0 + GRACE).await.unwrap();
    assert_ne!(h.dp.kernel().fdb, fdb, "released: the FDB follows the view");
    assert!(
        h.agent
            .metrics_text()
            .contains("privnet_agent_removals_held 0")
    );
}

#[tokio::test]
async fn a_confirmation_file_applies_a_held_view_and_is_removed() {
    let (h, t0, fdb) = five_attached_and_a_remote().await;
    h.agent.set_view(wiped());
    h.agent.converge_at(t0).await.unwrap();
    assert_eq!(h.dp.kernel().fdb, fdb, "held");
    let confirm = h.agent.cfg.confirm_removals_file();
    std::fs::write(&confirm, "").unwrap();
    h.agent.converge_at(t0).await.unwrap();
    assert_ne!(h.dp.kernel().fdb, fdb, "confirmed: applied");
    assert!(!confirm.exists(), "the confirmation is used once");
}

#[test]
fn another_nodes_endpoint_leaves_only_after_the_settle_time() {
    let settle = Duration::from_secs(1);
    let (t0, mut s) = (
        Instant::now(),
        crate::node::hold::SettlingRemovals::default(),
    );
    let full = {
        let mut v = view();
        v.endpoints.push(ep("n2", "r1", 201));
        v.endpoints.push(ep("n2", "r2", 202));
        v.endpoints.push(ep(NODE, "c1", 1));
        v
    };
    assert_eq!(
        s.apply(NODE, full.clone(), settle, t0),
        (full.clone(), None)
    );
    // Everything gone: the other node's two stay for the settle time, ours goes.
    let (v, wake) = s.apply(NODE, view(), settle, t0);
    let names: Vec<_> = v
        .endpoints
        .iter()
        .map(|e| e.container_id.as_str())
        .collect();
    assert_eq!(names, ["r1", "r2"]);
    assert_eq!(wake, Some(settle));
    // r1 comes back (its node published it again); r2 is still settling.
    let mut back = view();
    back.endpoints.push(ep("n2", "r1", 201));
    let half = t0 + settle / 2;
    let (v, wake) = s.apply(NODE, back.clone(), settle, half);
    assert_eq!(v.endpoints.len(), 2);
    assert_eq!(wake, Some(settle / 2));
    // After the settle time r2 is gone for good; r1 stays.
    let (v, wake) = s.apply(NODE, back.clone(), settle, t0 + settle);
    assert_eq!((v, wake), (back.clone(), None));
    let (v, _) = s.apply(NODE, back.clone(), settle, t0 + settle * 2);
    assert_eq!(v, back);
}

#[test]
fn a_settling_endpoint_whose_address_is_taken_again_is_not_put_back() {
    let settle = Duration::from_secs(1);
    let (t0, mut s) = (
        Instant::now(),
        crate::node::hold::SettlingRemovals::default(),
    );
    let mut v = view();
    v.endpoints.push(ep("n2", "old", 201));
    s.apply(NODE, v, settle, t0);
    let mut new = view();
    new.endpoints.push(ep("n2", "new", 201));
    let (got, _) = s.apply(NODE, new.clone(), settle, t0);
    assert_eq!(got, new, "the new holder of the address wins");
}

#[tokio::test]
async fn a_wiped_endpoint_is_published_again_only_while_its_pod_exists() {
    let (h, t0, _) = five_attached_and_a_remote().await;
    let before = h.source.state().publications.len();
    // c1's pod is deleted (its endpoint goes with it, before the CNI DEL);
    // the others are wiped while their pods run.
    h.source.state().owners_gone.insert("c1".into());
    h.agent.set_view(wiped());
    h.agent.converge_at(t0).await.unwrap();
    let again: Vec<String> = h.source.state().publications[before..].to_vec();
    assert_eq!(
        again,
        ["c2", "c3", "c4", "c5"],
        "c1's pod is gone: not again"
    );
}
