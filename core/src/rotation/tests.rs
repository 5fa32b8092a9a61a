use super::*;

fn node(name: &str, key: &str, next: Option<&str>, accepted: &[&str]) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        public_key: key.into(),
        endpoint: "192.0.2.1:4797".parse().unwrap(),
        vtep: Some("198.19.0.1".parse().unwrap()),
        next_public_key: next.map(str::to_string),
        accepted_keys: accepted.iter().map(|k| k.to_string()).collect(),
    }
}

fn input<'a>(
    pending: Option<&'a Pending>,
    peers: &'a [&'a NodeInfo],
    now: Instant,
) -> RotationInput<'a> {
    RotationInput {
        pending,
        requested: false,
        key_age: None,
        every: None,
        last_abort: None,
        peers,
        timeout: DEFAULT_TIMEOUT,
        now,
    }
}

#[test]
fn a_peer_is_routed_on_its_key_with_the_next_one_on_standby_until_it_switches() {
    let a = node("a", "old", Some("new"), &[]);
    let none = BTreeSet::new();
    assert_eq!(
        peer_keys(&a, &none),
        PeerKeys {
            routed: "old".into(),
            standby: Some("new".into())
        }
    );
    let seen = BTreeSet::from(["new".to_string()]);
    assert_eq!(
        peer_keys(&a, &seen),
        PeerKeys {
            routed: "new".into(),
            standby: None
        }
    );
    // Promoted in the view: the new key only, whatever was seen.
    let promoted = node("a", "new", None, &[]);
    assert_eq!(peer_keys(&promoted, &none).routed, "new");
    assert_eq!(peer_keys(&promoted, &none).standby, None);
}

#[test]
fn a_switch_is_remembered_while_announced_and_forgotten_after() {
    let a = node("a", "old", Some("new"), &[]);
    let b = node("b", "k", Some("bnext"), &[]);
    let empty = BTreeSet::new();
    // A handshake on the standby switches it; none on the other does not.
    let s = update_switched(&empty, &[&a, &b], |k| k == "new");
    assert_eq!(s, BTreeSet::from(["new".to_string()]));
    // Remembered even when the handshake is not visible any more (a re-armed peer).
    let s = update_switched(&s, &[&a, &b], |_| false);
    assert_eq!(s, BTreeSet::from(["new".to_string()]));
    // Promoted (or aborted): no longer announced, forgotten.
    let a2 = node("a", "new", None, &[]);
    assert!(update_switched(&s, &[&a2, &b], |_| false).is_empty());
}

#[test]
fn accepted_keys_are_the_configured_next_keys() {
    let a = node("a", "old", Some("new"), &[]);
    let b = node("b", "k", Some("bnext"), &[]);
    let configured = vec![
        PeerKeys {
            routed: "old".into(),
            standby: Some("new".into()),
        },
        PeerKeys {
            routed: "k".into(),
            standby: None,
        },
    ];
    assert_eq!(accepted_keys(&configured, &[&a, &b]), vec!["new"]);
    // Routed to the next key already: still accepted.
    let routed = vec![PeerKeys {
        routed: "new".into(),
        standby: None,
    }];
    assert_eq!(accepted_keys(&routed, &[&a]), vec!["new"]);
    assert!(accepted_keys(&[], &[&a]).is_empty());
}

#[test]
fn the_rotating_node_starts_on_request_or_schedule_only() {
    let now = Instant::now();
    assert_eq!(decide(&input(None, &[], now)), RotationStep::Idle);
    let mut i = input(None, &[], now);
    i.requested = true;
    assert_eq!(decide(&i), RotationStep::Start);
    let mut i = input(None, &[], now);
    i.every = Some(Duration::from_secs(3600));
    i.key_age = Some(Duration::from_secs(3599));
    assert_eq!(decide(&i), RotationStep::Idle);
    i.key_age = Some(Duration::from_secs(3600));
    assert_eq!(decide(&i), RotationStep::Start);
    // Right after an abort the schedule waits a timeout.
    i.last_abort = Some(now);
    assert_eq!(decide(&i), RotationStep::Idle);
    i.now = now + DEFAULT_TIMEOUT;
    assert_eq!(decide(&i), RotationStep::Start);
}

#[test]
fn it_switches_once_every_peer_accepted_and_aborts_after_the_timeout() {
    let t0 = Instant::now();
    let pending = Pending {
        next: "new".into(),
        since: t0,
    };
    let b = node("b", "kb", None, &["new"]);
    let c = node("c", "kc", None, &[]);
    let peers = [&b, &c];
    assert_eq!(
        decide(&input(Some(&pending), &peers, t0 + Duration::from_secs(1))),
        RotationStep::Wait {
            missing: vec!["c".into()],
            recheck: DEFAULT_TIMEOUT - Duration::from_secs(1)
        }
    );
    assert_eq!(
        decide(&input(Some(&pending), &peers, t0 + DEFAULT_TIMEOUT)),
        RotationStep::Abort {
            missing: vec!["c".into()]
        }
    );
    let c = node("c", "kc", None, &["other", "new"]);
    let peers = [&b, &c];
    assert_eq!(
        decide(&input(Some(&pending), &peers, t0)),
        RotationStep::Switch
    );
    // No peer at all: nothing to wait for.
    assert_eq!(
        decide(&input(Some(&pending), &[], t0)),
        RotationStep::Switch
    );
    // A request during a rotation does not start another one.
    let only_b = [&b];
    let mut i = input(Some(&pending), &only_b, t0);
    i.requested = true;
    assert_eq!(decide(&i), RotationStep::Switch);
}

#[test]
fn the_schedule_wakes_when_the_key_is_due() {
    assert_eq!(schedule_wake(None, Some(Duration::from_secs(5))), None);
    assert_eq!(
        schedule_wake(Some(Duration::from_secs(60)), Some(Duration::from_secs(20))),
        Some(Duration::from_secs(40))
    );
    assert_eq!(
        schedule_wake(Some(Duration::from_secs(60)), Some(Duration::from_secs(90))),
        Some(Duration::from_secs(1))
    );
}
