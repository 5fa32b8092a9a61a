//! Concurrency and leak tests of the real binary against the real agent
//! (needs root).

use crate::common;

use std::collections::HashSet;

use common::{Agent, TestNetns, links, run_plugin, snapshot};

#[test]
fn concurrent_adds_get_distinct_addresses_and_dels_leave_nothing() {
    common::require_root!();
    const N: usize = 64;
    let agent = Agent::start();
    agent.agent.ensure_network();
    let net = agent.agent.netns_name();
    let net_before = snapshot(&net);
    let namespaces: Vec<TestNetns> = (0..N).map(|_| TestNetns::new("pns")).collect();
    let conf = agent.conf("1.0.0");
    let results: Vec<serde_json::Value> = std::thread::scope(|s| {
        let handles: Vec<_> = namespaces
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let conf = &conf;
                s.spawn(move || {
                    run_plugin("ADD", conf, &format!("ctr{i}"), Some(&ns.path()), "eth1").ok()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let addresses: HashSet<_> = results
        .iter()
        .map(|r| r["ips"][0]["address"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(addresses.len(), N, "duplicate addresses");
    assert_eq!(agent.agent.reservations().len(), N);
    let ports = links(&net)
        .into_iter()
        .filter(|l| l.1.as_deref() == Some("br0") && l.0.starts_with("pv"))
        .count();
    assert_eq!(ports, N);
    for ns in &namespaces {
        assert!(links(&ns.name).iter().any(|l| l.0 == "eth1" && l.4));
    }
    std::thread::scope(|s| {
        for (i, ns) in namespaces.iter().enumerate() {
            let conf = &conf;
            s.spawn(move || {
                run_plugin("DEL", conf, &format!("ctr{i}"), Some(&ns.path()), "eth1").ok()
            });
        }
    });
    assert!(agent.agent.reservations().is_empty());
    assert_eq!(snapshot(&net), net_before);
    for ns in &namespaces {
        assert!(links(&ns.name).iter().all(|l| l.0 == "lo"));
    }
}

#[test]
fn many_add_del_cycles_leak_nothing() {
    common::require_root!();
    const CYCLES: usize = 200;
    let agent = Agent::start();
    agent.agent.ensure_network();
    let net = agent.agent.netns_name();
    let ns = TestNetns::new("pns");
    let before = (snapshot(&ns.name), snapshot(&net));
    let conf = agent.conf("1.1.0");
    for i in 0..CYCLES {
        let id = format!("cycle{i}");
        run_plugin("ADD", &conf, &id, Some(&ns.path()), "eth1").ok();
        run_plugin("DEL", &conf, &id, Some(&ns.path()), "eth1").ok();
    }
    assert_eq!((snapshot(&ns.name), snapshot(&net)), before);
    assert!(agent.agent.reservations().is_empty());
}
