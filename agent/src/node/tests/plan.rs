//! The planner alone: plain data in, decisions out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;
use crate::datapath::guard::{GuardedPort, PortTable};
use crate::datapath::wireguard::PeerStatus;
use crate::node::plan::*;

fn port(name: &str) -> GuardedPort {
    GuardedPort {
        host_ifname: name.into(),
        mac: [2, 0, 0, 0, 0, 1],
        ip: Ipv4Addr::new(10, 240, 0, 2),
    }
}

#[test]
fn networks_come_up_go_down_and_leftovers_are_named() {
    let wanted: BTreeSet<String> = ["pn-a".to_string()].into();
    let up: BTreeMap<String, String> = [("pn-old".to_string(), "pnu-7".to_string())].into();
    let present = [
        "pnu-7".to_string(),
        "pnu-100".to_string(),
        "pnu-3".to_string(),
    ];
    let p = plan_networks(&wanted, &view(), &up, &present, |vni| format!("pnu-{vni}"));
    assert_eq!(p.bring_up, [network()]);
    assert_eq!(p.remove, ["pn-old"]);
    // pnu-100 is pn-a's (being brought up), pnu-7 is tracked: only pnu-3 is a leftover.
    assert_eq!(p.leftovers, ["pnu-3"]);
    // A wanted network missing from the view is neither brought up nor removed.
    let p = plan_networks(
        &["pn-x".to_string()].into(),
        &view(),
        &BTreeMap::new(),
        &[],
        |v| v.to_string(),
    );
    assert_eq!(p, NetworksPlan::default());
}

#[test]
fn port_actions_and_purge_timing() {
    let t0 = Instant::now();
    assert_eq!(port_action(None, &[port("pva")]), PortAction::SetAll);
    let table = PortTable {
        live: vec![port("pva")],
        retired: Default::default(),
    };
    assert!(matches!(
        port_action(Some(&table), &[port("pva")]),
        PortAction::Keep(_)
    ));
    assert!(matches!(
        port_action(Some(&table), &[]),
        PortAction::Update(_)
    ));
    // The change time moves only when the live set changes.
    let last = (table.clone(), t0);
    assert_eq!(
        ports_changed_at(Some(&last), &table.live, t0 + PURGE_AFTER),
        t0
    );
    assert_eq!(
        ports_changed_at(Some(&last), &[], t0 + PURGE_AFTER),
        t0 + PURGE_AFTER
    );

    let retired = PortTable {
        live: vec![],
        retired: [("pvb".to_string(), port("pvb"))].into(),
    };
    assert_eq!(
        purge_decision(&table, t0, t0 + PURGE_AFTER * 9),
        Purge::Nothing
    );
    assert_eq!(
        purge_decision(&retired, t0, t0 + Duration::from_millis(500)),
        Purge::After(PURGE_AFTER - Duration::from_millis(500))
    );
    assert_eq!(purge_decision(&retired, t0, t0 + PURGE_AFTER), Purge::Now);
    let many = PortTable {
        live: vec![],
        retired: (0..PURGE_BATCH)
            .map(|i| (format!("pv{i}"), port(&format!("pv{i}"))))
            .collect(),
    };
    assert_eq!(
        purge_decision(&many, t0, t0),
        Purge::Now,
        "a pile-up goes at once"
    );
}

#[test]
fn silent_peer_timers_follow_the_clock() {
    let peers = mesh_peers(NODE, Some(25), &view(), &Default::default());
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].keepalive, Some(25));
    let status = |age: Option<Duration>| {
        vec![PeerStatus {
            public_key: "key-n2".into(),
            endpoint: None,
            allowed_ips: vec![],
            last_handshake_age: age,
            rx_bytes: 0,
            tx_bytes: 0,
        }]
    };
    let mut timers = PeerTimers::default();
    let t0 = Instant::now();
    let p = timers.plan(&peers, &status(None), t0);
    assert!(p.rearm.is_empty());
    assert_eq!(p.poke, [Ipv4Addr::new(100, 64, 0, 2)]);
    assert_eq!(p.wake_after, Some(SILENT_RECHECK));
    let p = timers.plan(&peers, &status(None), t0 + REARM_AFTER);
    assert_eq!(p.rearm, peers);
    // Re-armed at t0 + REARM_AFTER: not again right after.
    let p = timers.plan(
        &peers,
        &status(None),
        t0 + REARM_AFTER + Duration::from_millis(1),
    );
    assert!(p.rearm.is_empty());
    assert_eq!(
        timers.plan(&peers, &status(Some(Duration::ZERO)), t0),
        SilentPlan::default()
    );
    // After a handshake the timer starts over.
    let p = timers.plan(&peers, &status(None), t0 + REARM_AFTER * 10);
    assert!(p.rearm.is_empty());
    assert_eq!(max_handshake_age(&status(Some(Duration::from_secs(3)))), 3);
    assert_eq!(max_handshake_age(&status(None)), -1);
}

#[test]
fn the_loop_waits_for_the_earliest_wake_at_most_resync() {
    assert_eq!(next_wait(&[]), RESYNC);
    assert_eq!(next_wait(&[PURGE_AFTER, SILENT_RECHECK]), SILENT_RECHECK);
    assert_eq!(next_wait(&[RESYNC * 2]), RESYNC);
}

#[test]
fn publication_adds_changes_and_withdraws() {
    let rec = |cid: &str| crate::store::AttachmentRecord {
        key: key(cid),
        network_id: NET.into(),
        address: "10.240.0.2/22".parse().unwrap(),
        mac: "0a:58:0a:f0:00:02".into(),
        application_id: "app".into(),
        process_type: "web".into(),
        container_number: 1,
        netns: "/x".into(),
        host_ifname: "pv0".into(),
    };
    let records = [rec("a"), rec("b")];
    let mut published = BTreeMap::new();
    published.insert(key("a"), endpoint_info(NODE, &records[0]));
    published.insert(key("old"), endpoint_info(NODE, &rec("old")));
    let mut v = view();
    v.endpoints
        .push(endpoint_info(NODE, &rec("stale-from-last-run")));
    v.endpoints.push(EndpointInfo {
        node: "n2".into(),
        ..endpoint_info(NODE, &rec("theirs"))
    });
    let p = plan_publication(NODE, &records, &v, &published, &BTreeSet::new());
    assert_eq!(
        p.publish
            .iter()
            .map(|(k, _)| k.container_id.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
    let gone: Vec<_> = p.withdraw.iter().map(|e| e.container_id.as_str()).collect();
    assert_eq!(gone, ["old", "stale-from-last-run"]);
}

#[test]
fn an_endpoint_wiped_from_the_source_is_published_again_once_seen() {
    let rec = AttachmentRecord {
        key: key("a"),
        network_id: NET.into(),
        address: "10.240.0.5/22".parse().unwrap(),
        mac: "0a:58:0a:f0:00:05".into(),
        application_id: "app".into(),
        process_type: "web".into(),
        container_number: 1,
        netns: "/x".into(),
        host_ifname: "pv0".into(),
    };
    let records = [rec.clone()];
    let ep = endpoint_info(NODE, &rec);
    let published = BTreeMap::from([(key("a"), ep.clone())]);
    // Published, the view has not caught up yet: nothing to do.
    let p = plan_publication(NODE, &records, &view(), &published, &BTreeSet::new());
    assert!(p.publish.is_empty() && p.shown.is_empty(), "{p:?}");
    // The view shows it: remembered as shown, nothing to do.
    let mut v = view();
    v.endpoints.push(ep);
    let p = plan_publication(NODE, &records, &v, &published, &BTreeSet::new());
    assert!(p.publish.is_empty(), "{p:?}");
    assert_eq!(p.shown, BTreeSet::from([key("a")]));
    // Wiped from the source after it was shown: published again.
    let p = plan_publication(NODE, &records, &view(), &published, &p.shown);
    assert_eq!(p.publish.len(), 1, "{p:?}");
    assert!(p.shown.is_empty());
}

#[test]
fn a_standby_is_in_use_from_its_first_authenticated_byte_and_polled_for_a_while() {
    let mut v = view();
    v.nodes[1].next_public_key = Some("next-n2".into());
    let peers = mesh_peers(NODE, Some(25), &v, &Default::default());
    assert_eq!(
        peers
            .iter()
            .map(|p| (p.public_key.as_str(), p.standby, p.keepalive))
            .collect::<Vec<_>>(),
        vec![("key-n2", false, Some(25)), ("next-n2", true, Some(25))]
    );
    let status = |key: &str, age: Option<Duration>, rx: u64| PeerStatus {
        public_key: key.into(),
        endpoint: None,
        allowed_ips: vec![],
        last_handshake_age: age,
        rx_bytes: rx,
        tx_bytes: 0,
    };
    // Only the old key shook hands: nothing switched.
    let old_only = [
        status("key-n2", Some(Duration::from_secs(3)), 900),
        status("next-n2", None, 0),
    ];
    assert!(handshaken_standbys(&peers, &old_only).is_empty());
    // An initiation was authenticated on the standby: switched, before the handshake completes.
    let initiated = [status("next-n2", None, 148)];
    assert_eq!(
        handshaken_standbys(&peers, &initiated),
        BTreeSet::from(["next-n2".to_string()])
    );
    let done = [status("next-n2", Some(Duration::ZERO), 0)];
    assert_eq!(handshaken_standbys(&peers, &done).len(), 1);
    // Polled fast for a while after it appeared, then no more.
    let mut since = BTreeMap::new();
    let t0 = Instant::now();
    track_standbys(&mut since, &peers, t0);
    assert_eq!(
        standby_poll(&since, t0 + Duration::from_secs(1)),
        Some(privnet_core::rotation::STANDBY_POLL)
    );
    assert_eq!(
        standby_poll(&since, t0 + privnet_core::rotation::STANDBY_FAST_FOR),
        None
    );
    track_standbys(&mut since, &peers[..1], t0);
    assert!(since.is_empty(), "gone with its standby");
}
