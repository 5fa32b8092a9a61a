//! Key rotation in memory: this node rotating (announce, switch, abort,
//! restart mid-rotation) and this node following a peer's rotation.

use std::time::{Duration, Instant};

use privnet_core::rotation::{DEFAULT_TIMEOUT, STANDBY_POLL};

use super::*;
use crate::datapath::memory::Call;
use crate::datapath::wireguard::{load_next_key, load_or_create_key, rotate_request_file};

fn last_published(h: &Harness) -> NodeInfo {
    h.source.state().nodes.last().cloned().expect("published")
}

fn switches(h: &Harness) -> Vec<String> {
    h.dp.calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::SwitchKey(k) => Some(k),
            _ => None,
        })
        .collect()
}

fn keys(h: &Harness) -> Vec<(String, bool)> {
    h.dp.kernel()
        .peers
        .iter()
        .map(|p| (p.public_key.clone(), p.standby))
        .collect()
}

#[tokio::test]
async fn a_requested_rotation_announces_waits_for_every_peer_then_switches() {
    let h = Harness::ready().await;
    let dir = h._dir.path();
    let old = h.agent.public_key();
    std::fs::write(rotate_request_file(dir), "").unwrap();
    let t0 = Instant::now();
    h.agent.converge_at(t0).await.unwrap();
    let next = load_next_key(dir).unwrap().expect("next key written");
    let next = next.public_key().to_string();
    let announced = last_published(&h);
    assert_eq!(announced.public_key, old, "still the old key");
    assert_eq!(announced.next_public_key.as_deref(), Some(next.as_str()));
    assert!(
        !rotate_request_file(dir).exists(),
        "the request is consumed"
    );
    assert!(
        switches(&h).is_empty(),
        "no switch before the peer accepted"
    );
    // The peer accepted: the device switches, the key is published.
    let mut v = view();
    v.nodes[1].accepted_keys = vec![next.clone()];
    h.agent.set_view(v);
    h.agent
        .converge_at(t0 + Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(switches(&h), vec![next.clone()]);
    assert_eq!(
        load_or_create_key(dir).unwrap().public_key().to_string(),
        next
    );
    assert_eq!(load_next_key(dir).unwrap(), None);
    let promoted = last_published(&h);
    assert_eq!(
        (promoted.public_key.as_str(), promoted.next_public_key),
        (next.as_str(), None)
    );
    assert_eq!(h.agent.public_key(), next);
    // Nothing more happens on the next pass.
    h.dp.clear_calls();
    h.agent
        .converge_at(t0 + Duration::from_millis(200))
        .await
        .unwrap();
    assert!(switches(&h).is_empty());
}

#[tokio::test]
async fn a_rotation_no_peer_accepts_is_aborted_at_the_timeout_and_changes_nothing() {
    let h = Harness::ready().await;
    let dir = h._dir.path();
    let old_key = load_or_create_key(dir).unwrap();
    std::fs::write(rotate_request_file(dir), "").unwrap();
    let t0 = Instant::now();
    h.agent.converge_at(t0).await.unwrap();
    assert!(load_next_key(dir).unwrap().is_some());
    h.agent
        .converge_at(t0 + DEFAULT_TIMEOUT - Duration::from_millis(1))
        .await
        .unwrap();
    assert!(load_next_key(dir).unwrap().is_some(), "still waiting");
    h.agent.converge_at(t0 + DEFAULT_TIMEOUT).await.unwrap();
    assert_eq!(load_next_key(dir).unwrap(), None, "next key dropped");
    assert_eq!(load_or_create_key(dir).unwrap(), old_key);
    assert!(switches(&h).is_empty());
    let after = last_published(&h);
    assert_eq!(after.next_public_key, None, "announcement withdrawn");
    assert_eq!(after.public_key, old_key.public_key().to_string());
}

#[tokio::test]
async fn a_restart_mid_rotation_resumes_it() {
    let dir = tempfile::tempdir().unwrap();
    let old = load_or_create_key(dir.path()).unwrap();
    let next = crate::datapath::wireguard::create_next_key(dir.path()).unwrap();
    let h = Harness::start_on(SharedStore::default(), MemoryDatapath::default(), dir).await;
    let first = h.source.state().nodes[0].clone();
    assert_eq!(first.public_key, old.public_key().to_string());
    assert_eq!(
        first.next_public_key,
        Some(next.public_key().to_string()),
        "announced again at start"
    );
}

/// The view with n2 announcing its next key.
fn view_with_next_key() -> ClusterView {
    let mut v = view();
    v.nodes[1].next_public_key = Some("next-n2".into());
    v
}

#[tokio::test]
async fn a_peers_next_key_is_a_standby_until_its_handshake_then_the_only_key() {
    let h = Harness::ready().await;
    h.agent.set_view(view_with_next_key());
    let t0 = Instant::now();
    let outcome = h.agent.converge_at(t0).await.unwrap();
    assert_eq!(
        keys(&h),
        vec![("key-n2".into(), false), ("next-n2".into(), true)]
    );
    assert_eq!(last_published(&h).accepted_keys, vec!["next-n2"]);
    assert!(
        outcome.wakes.contains(&STANDBY_POLL),
        "polls fast: {:?}",
        outcome.wakes
    );
    // No handshake on the standby yet: nothing moves, however often polled.
    h.agent
        .converge_at(t0 + Duration::from_millis(5))
        .await
        .unwrap();
    assert_eq!(keys(&h).len(), 2);
    // n2 switched: its first handshake on the standby moves the routes in the same pass.
    h.dp.with_kernel(|k| {
        k.handshakes
            .insert("next-n2".into(), Duration::from_millis(1));
    });
    let outcome = h
        .agent
        .converge_at(t0 + Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(keys(&h), vec![("next-n2".into(), false)]);
    assert!(!outcome.wakes.contains(&STANDBY_POLL), "no standby left");
    // Kept while still announced, even without a visible handshake.
    h.dp.with_kernel(|k| k.handshakes.remove("next-n2"));
    h.agent
        .converge_at(t0 + Duration::from_millis(20))
        .await
        .unwrap();
    assert_eq!(keys(&h), vec![("next-n2".into(), false)]);
    // Promoted in the view: the same peer, nothing left to accept.
    let mut v = view();
    v.nodes[1].public_key = "next-n2".into();
    h.agent.set_view(v);
    h.agent
        .converge_at(t0 + Duration::from_millis(30))
        .await
        .unwrap();
    assert_eq!(keys(&h), vec![("next-n2".into(), false)]);
    assert!(last_published(&h).accepted_keys.is_empty());
}

#[tokio::test]
async fn an_aborted_peer_rotation_removes_the_standby() {
    let h = Harness::ready().await;
    h.agent.set_view(view_with_next_key());
    let t0 = Instant::now();
    h.agent.converge_at(t0).await.unwrap();
    assert_eq!(keys(&h).len(), 2);
    h.agent.set_view(view());
    h.agent
        .converge_at(t0 + Duration::from_millis(5))
        .await
        .unwrap();
    assert_eq!(keys(&h), vec![("key-n2".into(), false)]);
    assert!(last_published(&h).accepted_keys.is_empty());
}

#[tokio::test]
async fn the_standby_watcher_routes_to_a_next_key_in_use_between_passes() {
    let h = Harness::ready().await;
    h.agent.set_view(view_with_next_key());
    let t0 = Instant::now();
    h.agent.converge_at(t0).await.unwrap();
    // Not in use yet: the watcher leaves it.
    assert_eq!(h.agent.watch_tick().await, 0);
    assert_eq!(keys(&h).len(), 2);
    h.dp.with_kernel(|k| {
        k.handshakes
            .insert("next-n2".into(), Duration::from_millis(1));
    });
    assert_eq!(h.agent.watch_tick().await, 1);
    assert_eq!(keys(&h), vec![("next-n2".into(), false)]);
    assert!(
        h.dp.calls()
            .contains(&Call::PromoteStandby("next-n2".into(), "key-n2".into()))
    );
    // The next pass keeps it (it takes the watcher's switch in), and the
    // watcher has nothing left to do.
    h.dp.with_kernel(|k| k.handshakes.remove("next-n2"));
    h.agent
        .converge_at(t0 + Duration::from_millis(5))
        .await
        .unwrap();
    assert_eq!(keys(&h), vec![("next-n2".into(), false)]);
    assert_eq!(h.agent.watch_tick().await, 0);
    // A repair does not undo it either.
    h.agent.check_at(t0 + Duration::from_millis(6)).await;
    assert_eq!(keys(&h), vec![("next-n2".into(), false)]);
}
