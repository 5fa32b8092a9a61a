//! The verdicts in memory: a healthy node's readings pass every check
//! (the positive control), then each test breaks one thing and sees the
//! check that watches it fail, and only that one. The guard tables against
//! nft's own form are in [`guard_tests`], the clock in [`clock_tests`].

mod clock_tests;
mod guard_tests;

use std::net::Ipv4Addr;
use std::time::Duration;

use privnet_core::expected::{
    ExpectedFdb, ExpectedMesh, ExpectedName, ExpectedNetwork, ExpectedNodeGuard, ExpectedPeer,
    ExpectedPort, ExpectedState,
};

use super::guard::{self, ExpectedTable};
use super::readings::*;
use super::report::{Report, Status};
use super::verdict::{self, Limits};

const NAME_A: &str = "1.web.app.pn-1.private-network.internal";
const NAME_B: &str = "2.web.app.pn-1.private-network.internal";

fn expected() -> ExpectedState {
    ExpectedState {
        node: "n1".into(),
        domain: "private-network.internal".into(),
        unready: None,
        mesh: Some(ExpectedMesh {
            ifname: "wg0".into(),
            address: "198.19.0.1/16".parse().unwrap(),
            mtu: 1440,
            peers: vec![ExpectedPeer {
                node: "n2".into(),
                public_key: "KEY2".into(),
                vtep: Ipv4Addr::new(198, 19, 0, 2),
                endpoint: "192.168.1.2:4797".parse().unwrap(),
            }],
            keepalive: Some(25),
            guard: Some(ExpectedNodeGuard {
                vxlan_port: 4796,
                vni_first: 1_048_576,
                vni_last: 16_777_215,
                mesh: "198.19.0.0/16".parse().unwrap(),
            }),
        }),
        networks: vec![ExpectedNetwork {
            id: "pn-1".into(),
            netns: "privnet-100".into(),
            vni: 100,
            bridge: "br0".into(),
            vxlan: "vx100".into(),
            gateway: "10.240.0.1/22".parse().unwrap(),
            gateway_mac: "02:70:00:00:00:64".into(),
            mtu: 1390,
            ports: vec![ExpectedPort {
                host_ifname: "pv1a".into(),
                mac: "0a:58:01:02:03:04".into(),
                ip: Ipv4Addr::new(10, 240, 0, 5),
                container_netns: "/run/netns/c1".into(),
                container_ifname: "eth1".into(),
            }],
            fdb: vec![
                ExpectedFdb {
                    mac: "00:00:00:00:00:00".into(),
                    dst: Ipv4Addr::new(198, 19, 0, 2),
                },
                ExpectedFdb {
                    mac: "0a:58:01:02:03:09".into(),
                    dst: Ipv4Addr::new(198, 19, 0, 2),
                },
            ],
            names: vec![
                ExpectedName {
                    name: NAME_A.into(),
                    address: Ipv4Addr::new(10, 240, 0, 5),
                },
                ExpectedName {
                    name: NAME_B.into(),
                    address: Ipv4Addr::new(10, 240, 0, 9),
                },
            ],
        }],
    }
}

/// What nft would show for a table the agent wrote: every word of each
/// rule quoted (the literals the comparison looks for).
fn as_kernel(t: &ExpectedTable) -> TableReading {
    let quote = |rule: &String| {
        rule.split(|c: char| c.is_whitespace() || "{},;/".contains(c))
            .filter(|w| !w.is_empty())
            .map(|w| format!("\"{}\"", w.trim_matches('"')))
            .collect::<Vec<_>>()
            .join(",")
    };
    TableReading {
        name: t.name.clone(),
        chains: t
            .chains
            .iter()
            .map(|(c, rules)| (c.clone(), rules.iter().map(quote).collect()))
            .collect(),
        set_elements: t.set_elements.clone(),
    }
}

fn link(name: &str, mtu: u32) -> LinkReading {
    LinkReading {
        name: name.into(),
        mtu,
        up: true,
        addresses: Vec::new(),
    }
}

/// A node exactly as `expected()` wants it.
fn healthy() -> Readings {
    let exp = expected();
    let mesh = exp.mesh.as_ref().unwrap();
    let net = &exp.networks[0];
    let node_table = guard::node_tables(mesh).first().map(as_kernel);
    let tables = guard::network_tables(net)
        .unwrap()
        .iter()
        .map(as_kernel)
        .collect();
    let mut wg = link("wg0", 1440);
    wg.addresses = vec![mesh.address];
    Readings {
        agent: AgentReading {
            socket: Ok(None),
            readyz: Ok(()),
        },
        mesh: Some(MeshReading {
            link: Ok(Some(wg)),
            peers: Ok(vec![PeerReading {
                public_key: "KEY2".into(),
                allowed_ips: vec!["198.19.0.2/32".into()],
                handshake_age: Some(Duration::from_secs(30)),
            }]),
            node_table: Ok(node_table),
        }),
        networks: vec![NetworkReading {
            id: "pn-1".into(),
            namespace: true,
            links: Ok(vec![
                link("lo", 65536),
                link("br0", 1390),
                link("vx100", 1390),
                link("pv1a", 1390),
            ]),
            fdb: Ok(Some(net.fdb.clone())),
            tables: Ok(tables),
            containers: vec![("pv1a".into(), Ok(Some(link("eth1", 1390))))],
            dns: net
                .names
                .iter()
                .map(|n| DnsAnswer {
                    name: n.name.clone(),
                    answer: Ok(vec![n.address]),
                })
                .collect(),
        }],
        clock: ClockReading::NoApi,
        expected: Some(exp),
    }
}

fn report(r: &Readings) -> Report {
    Report::new("n1".into(), verdict::all(r, Limits::default()), 1)
}

/// Asserts that exactly `name` fails, with a problem containing `words`.
fn only_fails(r: &Readings, name: &str, words: &str) {
    let rep = report(r);
    for c in &rep.checks {
        if c.name == name {
            assert_eq!(
                c.status,
                Status::Fail,
                "{name} should fail:\n{}",
                rep.text()
            );
            assert!(
                c.problems.iter().any(|p| p.contains(words)),
                "{name}: no problem mentions {words:?}:\n{}",
                rep.text()
            );
        } else {
            assert_ne!(
                c.status,
                Status::Fail,
                "only {name} should fail:\n{}",
                rep.text()
            );
        }
    }
    assert_eq!(rep.exit_code(), 1);
}

#[test]
fn a_healthy_node_passes_every_check() {
    let rep = report(&healthy());
    assert_eq!(rep.status, Status::Ok, "{}", rep.text());
    assert_eq!(rep.exit_code(), 0);
    let names: Vec<&str> = rep.checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "agent",
            "wireguard",
            "guard",
            "fdb",
            "zone",
            "mtu",
            "dns",
            "clock"
        ]
    );
    for c in &rep.checks {
        let want = if c.name == "clock" {
            Status::Skip
        } else {
            Status::Ok
        };
        assert_eq!(c.status, want, "{}", rep.text());
    }
    let json = serde_json::to_value(&rep).unwrap();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["checks"][0]["name"], "agent");
}

#[test]
fn agent_check_fails_without_socket_readiness_or_readyz() {
    let mut r = healthy();
    r.agent.socket = Err("connection refused".into());
    r.expected = None;
    let rep = report(&r);
    assert_eq!(rep.check("agent").unwrap().status, Status::Fail);
    assert_eq!(
        rep.check("fdb").unwrap().status,
        Status::Skip,
        "nothing to compare with"
    );
    let mut r = healthy();
    r.agent.socket = Ok(Some("degraded: repair keeps failing".into()));
    only_fails(&r, "agent", "not ready: degraded");
    let mut r = healthy();
    r.agent.readyz = Err("HTTP/1.1 503: waiting".into());
    only_fails(&r, "agent", "/readyz");
}

#[test]
fn wireguard_check_fails_on_missing_wrong_or_stale_peers_and_a_down_link() {
    let mut r = healthy();
    r.mesh.as_mut().unwrap().peers = Ok(Vec::new());
    only_fails(&r, "wireguard", "peer n2 (198.19.0.2) is missing");
    let peer = |r: &mut Readings| {
        let Ok(p) = &mut r.mesh.as_mut().unwrap().peers else {
            panic!()
        };
        p[0].clone()
    };
    for (change, words) in [
        (
            (|p: &mut PeerReading| p.allowed_ips = vec!["0.0.0.0/0".into()])
                as fn(&mut PeerReading),
            "should allow only 198.19.0.2/32",
        ),
        (|p| p.handshake_age = None, "never completed a handshake"),
        (
            |p| p.handshake_age = Some(Duration::from_secs(200)),
            "last handshake 200 s ago",
        ),
    ] {
        let mut r = healthy();
        let mut p = peer(&mut r);
        change(&mut p);
        r.mesh.as_mut().unwrap().peers = Ok(vec![p]);
        only_fails(&r, "wireguard", words);
    }
    // Without keepalives an idle peer's old handshake is normal.
    let mut r = healthy();
    let Ok(peers) = &mut r.mesh.as_mut().unwrap().peers else {
        panic!()
    };
    peers[0].handshake_age = Some(Duration::from_secs(200));
    r.expected
        .as_mut()
        .unwrap()
        .mesh
        .as_mut()
        .unwrap()
        .keepalive = None;
    assert_eq!(report(&r).exit_code(), 0);
    let mut r = healthy();
    if let Ok(Some(l)) = &mut r.mesh.as_mut().unwrap().link {
        l.up = false;
    }
    only_fails(&r, "wireguard", "wg0 is down");
    let mut r = healthy();
    r.mesh.as_mut().unwrap().peers = Err("wireguard-go does not answer".into());
    only_fails(&r, "wireguard", "cannot read the peers");
}

#[test]
fn guard_check_fails_on_a_missing_table_or_rule() {
    let mut r = healthy();
    r.mesh.as_mut().unwrap().node_table = Ok(None);
    only_fails(&r, "guard", "table inet privnet-guard is missing");
    let mut r = healthy();
    let Ok(tables) = &mut r.networks[0].tables else {
        panic!()
    };
    tables.retain(|t| t.name != "inet privnet-gw");
    only_fails(&r, "guard", "table inet privnet-gw is missing");
    let mut r = healthy();
    let Ok(tables) = &mut r.networks[0].tables else {
        panic!()
    };
    tables[0]
        .chains
        .iter_mut()
        .find(|(c, _)| c == "from-port")
        .unwrap()
        .1
        .remove(1);
    only_fails(&r, "guard", "chain from-port has 10 rules, should have 11");
}

#[test]
fn fdb_check_fails_on_missing_extra_entries_or_device() {
    let mut r = healthy();
    let Ok(Some(entries)) = &mut r.networks[0].fdb else {
        panic!()
    };
    entries.pop();
    only_fails(
        &r,
        "fdb",
        "FDB entry 0a:58:01:02:03:09 → 198.19.0.2 is missing",
    );
    let mut r = healthy();
    let Ok(Some(entries)) = &mut r.networks[0].fdb else {
        panic!()
    };
    entries.push(ExpectedFdb {
        mac: "0a:58:00:00:00:01".into(),
        dst: Ipv4Addr::new(198, 19, 0, 7),
    });
    only_fails(&r, "fdb", "should not be there");
    let mut r = healthy();
    r.networks[0].fdb = Ok(None);
    only_fails(&r, "fdb", "VXLAN device vx100 is missing");
}

#[test]
fn zone_check_fails_on_a_wrong_or_missing_name() {
    let mut r = healthy();
    r.networks[0].dns[1].answer = Ok(vec![Ipv4Addr::new(10, 240, 0, 99)]);
    only_fails(
        &r,
        "zone",
        "resolves to [10.240.0.99], should be 10.240.0.9",
    );
    let mut r = healthy();
    r.networks[0].dns[0].answer = Ok(Vec::new());
    only_fails(&r, "zone", &format!("{NAME_A} does not resolve"));
}

#[test]
fn dns_check_fails_when_the_responder_is_silent_and_zone_then_skips() {
    let mut r = healthy();
    for a in &mut r.networks[0].dns {
        a.answer = Err("no answer from 10.240.0.1:53 within 1s".into());
    }
    let rep = report(&r);
    assert_eq!(
        rep.check("dns").unwrap().status,
        Status::Fail,
        "{}",
        rep.text()
    );
    assert!(rep.check("dns").unwrap().problems[0].contains("does not answer"));
    assert_eq!(
        rep.check("zone").unwrap().status,
        Status::Skip,
        "{}",
        rep.text()
    );
}

#[test]
fn mtu_check_fails_on_any_link_with_another_mtu() {
    let mut r = healthy();
    let Ok(links) = &mut r.networks[0].links else {
        panic!()
    };
    links[3].mtu = 1280;
    only_fails(&r, "mtu", "pv1a has MTU 1280, should be 1390");
    let mut r = healthy();
    r.networks[0].containers[0].1 = Ok(Some(link("eth1", 1500)));
    only_fails(
        &r,
        "mtu",
        "container end eth1 of port pv1a has MTU 1500, should be 1390",
    );
    // A container gone meanwhile is not an MTU problem.
    let mut r = healthy();
    r.networks[0].containers[0].1 = Ok(None);
    assert_eq!(report(&r).exit_code(), 0);
    let mut r = healthy();
    if let Ok(Some(l)) = &mut r.mesh.as_mut().unwrap().link {
        l.mtu = 1500;
    }
    only_fails(&r, "mtu", "wg0: MTU 1500, should be 1440");
}
