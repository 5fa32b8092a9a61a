//! The real `privnet-cni` binary against the real agent (kernel datapath,
//! in process), in fresh network namespaces (needs root, as CI runs).

use crate::common;

use common::{Agent, TestNetns, VERSIONS, addrs_of, ip, links, run_plugin, snapshot, with_prev};
use serde_json::Value;

/// The network's bridge.
const BRIDGE: &str = "br0";

/// Container ports on the network's bridge (the VXLAN port is always there).
fn container_ports(netns: &str) -> Vec<(String, Option<String>, u64, String, bool)> {
    links(netns)
        .into_iter()
        .filter(|l| l.1.is_some() && l.0.starts_with("pv"))
        .collect()
}

#[test]
fn add_check_del_del_for_every_version() {
    common::require_root!();
    for version in VERSIONS {
        let agent = Agent::start();
        agent.agent.ensure_network();
        let ns = TestNetns::new("pnc");
        let conf = agent.conf(version);
        let before = snapshot(&ns.name);
        let result = run_plugin("ADD", &conf, "ctr1", Some(&ns.path()), "eth1").ok();

        assert_eq!(result["cniVersion"], version);
        let iface = result["interfaces"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(iface["name"], "eth1");
        assert_eq!(iface["sandbox"], ns.path());
        assert_eq!(
            iface.get("mtu").is_some(),
            version == "1.1.0",
            "mtu only in 1.1.0: {iface}"
        );
        let ip0 = &result["ips"][0];
        assert_eq!(ip0.get("version").is_some(), version == "0.4.0", "{ip0}");
        assert_eq!(ip0["interface"], 0);
        assert!(
            result["routes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["dst"] != "0.0.0.0/0")
        );

        let reservation = agent.agent.reservations().pop().expect("one reservation");
        assert_eq!(ip0["address"], reservation.address.to_string());
        assert_eq!(
            addrs_of(&ns.name, "eth1"),
            [reservation.address.to_string()]
        );
        let eth1 = links(&ns.name).into_iter().find(|l| l.0 == "eth1").unwrap();
        assert_eq!(
            (eth1.2, eth1.3.as_str(), eth1.4),
            (1370, reservation.mac.as_str(), true)
        );
        let host = links(&agent.agent.netns_name())
            .into_iter()
            .find(|l| l.0 == reservation.host_ifname)
            .unwrap();
        assert_eq!(
            (host.1.as_deref(), host.2, host.4),
            (Some(BRIDGE), 1370, true)
        );
        let routes = ip(&["-n", &ns.name, "route", "show"]).unwrap();
        assert!(!routes.contains("default"), "{routes}");
        assert!(routes.contains("10.240.0.0/22 dev eth1"), "{routes}");

        run_plugin(
            "CHECK",
            &with_prev(&conf, &result),
            "ctr1",
            Some(&ns.path()),
            "eth1",
        )
        .ok();
        // CHECK sees a changed MTU.
        ip(&["-n", &ns.name, "link", "set", "eth1", "mtu", "1300"]).unwrap();
        let bad = run_plugin(
            "CHECK",
            &with_prev(&conf, &result),
            "ctr1",
            Some(&ns.path()),
            "eth1",
        );
        assert_eq!(bad.error_code(), 103, "{:?}", bad.stdout);
        assert_eq!(bad.stdout["cniVersion"], version);

        run_plugin(
            "DEL",
            &with_prev(&conf, &result),
            "ctr1",
            Some(&ns.path()),
            "eth1",
        )
        .ok();
        run_plugin("DEL", &conf, "ctr1", Some(&ns.path()), "eth1").ok();
        assert_eq!(snapshot(&ns.name), before);
        assert!(agent.agent.reservations().is_empty());
        let ports = container_ports(&agent.agent.netns_name());
        assert!(ports.is_empty(), "{ports:?}");
        // CHECK after DEL: not attached.
        assert_eq!(
            run_plugin(
                "CHECK",
                &with_prev(&conf, &result),
                "ctr1",
                Some(&ns.path()),
                "eth1"
            )
            .error_code(),
            103
        );
    }
}

#[test]
fn del_without_add_and_with_missing_netns_succeeds() {
    common::require_root!();
    let agent = Agent::start();
    agent.agent.ensure_network();
    let ns = TestNetns::new("pnc");
    for version in VERSIONS {
        let conf = agent.conf(version);
        run_plugin("DEL", &conf, "never-added", Some(&ns.path()), "eth1").ok();
        run_plugin(
            "DEL",
            &conf,
            "never-added",
            Some("/run/netns/does-not-exist"),
            "eth1",
        )
        .ok();
        run_plugin("DEL", &conf, "never-added", None, "eth1").ok();
    }
    // DEL after the container namespace is gone still frees the reservation.
    let conf = agent.conf("1.0.0");
    let gone = TestNetns::new("pnc");
    run_plugin("ADD", &conf, "ctr-gone", Some(&gone.path()), "eth1").ok();
    let path = gone.path();
    drop(gone);
    run_plugin("DEL", &conf, "ctr-gone", Some(&path), "eth1").ok();
    assert!(agent.agent.reservations().is_empty());
    assert!(container_ports(&agent.agent.netns_name()).is_empty());
}

#[test]
fn add_with_existing_ifname_is_101_and_changes_nothing() {
    common::require_root!();
    let agent = Agent::start();
    agent.agent.ensure_network();
    let ns = TestNetns::new("pnc");
    ip(&[
        "-n", &ns.name, "link", "add", "name", "eth1", "type", "veth", "peer", "name", "other",
    ])
    .unwrap();
    for version in VERSIONS {
        let before = (snapshot(&ns.name), snapshot(&agent.agent.netns_name()));
        let run = run_plugin(
            "ADD",
            &agent.conf(version),
            "ctr1",
            Some(&ns.path()),
            "eth1",
        );
        assert_eq!(run.error_code(), 101, "{:?}", run.stdout);
        assert_eq!(run.stdout["cniVersion"], version);
        assert!(run.stdout["msg"].as_str().unwrap().contains("eth1"));
        assert_eq!(
            (snapshot(&ns.name), snapshot(&agent.agent.netns_name())),
            before
        );
        assert!(agent.agent.reservations().is_empty());
    }
}

#[test]
fn failed_add_rolls_back_everything() {
    common::require_root!();
    let agent = Agent::start();
    agent.agent.ensure_network();
    let ns = TestNetns::new("pnc");
    let net = agent.agent.netns_name();
    let conf = agent.conf("1.1.0");

    // The bridge the agent names is gone (renamed behind its back).
    ip(&["-n", &net, "link", "set", BRIDGE, "name", "br0-moved"]).unwrap();
    let before = (snapshot(&ns.name), snapshot(&net));
    let run = run_plugin("ADD", &conf, "ctr1", Some(&ns.path()), "eth1");
    assert_eq!(run.error_code(), 999, "{:?}", run.stdout);
    assert!(
        run.stdout["msg"].as_str().unwrap().contains(BRIDGE),
        "{:?}",
        run.stdout
    );
    assert_eq!((snapshot(&ns.name), snapshot(&net)), before);
    assert!(agent.agent.reservations().is_empty());
    ip(&["-n", &net, "link", "set", "br0-moved", "name", BRIDGE]).unwrap();

    // The host end name is taken: 101, and the foreign link is left alone.
    let host_end = privnet_agent::book::host_ifname(&privnet_core::rpc::AttachmentKey {
        container_id: "ctr1".into(),
        ifname: "eth1".into(),
    });
    ip(&[
        "-n", &net, "link", "add", "name", &host_end, "type", "veth", "peer", "name", "foreign",
    ])
    .unwrap();
    let before = (snapshot(&ns.name), snapshot(&net));
    let run = run_plugin("ADD", &conf, "ctr1", Some(&ns.path()), "eth1");
    assert_eq!(run.error_code(), 101, "{:?}", run.stdout);
    assert_eq!((snapshot(&ns.name), snapshot(&net)), before);
    assert!(agent.agent.reservations().is_empty());

    // Positive control: with the name free again the same ADD succeeds.
    ip(&["-n", &net, "link", "del", &host_end]).unwrap();
    run_plugin("ADD", &conf, "ctr1", Some(&ns.path()), "eth1").ok();
    assert_eq!(agent.agent.reservations().len(), 1);
}

#[test]
fn agent_errors_map_to_codes() {
    common::require_root!();
    let agent = Agent::start_waiting();
    let ns = TestNetns::new("pnc");
    let mut conf = agent.conf("1.0.0");
    conf["agentTimeoutMs"] = Value::from(2000);
    // Not ready before the node has its mesh address.
    assert_eq!(
        run_plugin("ADD", &conf, "c", Some(&ns.path()), "eth1").error_code(),
        11
    );
    let mut status_conf = conf.clone();
    status_conf["cniVersion"] = Value::from("1.1.0");
    assert_eq!(
        run_plugin("STATUS", &status_conf, "", None, "").error_code(),
        50
    );
    agent.agent.give_mesh_address();
    assert_eq!(run_plugin("STATUS", &status_conf, "", None, "").code, 0);

    let mut unknown = conf.clone();
    unknown["network"] = Value::from("pn-unknown");
    assert_eq!(
        run_plugin("ADD", &unknown, "c", Some(&ns.path()), "eth1").error_code(),
        7
    );

    conf["agentSocket"] = Value::from("/run/privnet-test-nothing-here.sock");
    status_conf["agentSocket"] = conf["agentSocket"].clone();
    assert_eq!(
        run_plugin("ADD", &conf, "c", Some(&ns.path()), "eth1").error_code(),
        11
    );
    assert_eq!(
        run_plugin("DEL", &conf, "c", Some(&ns.path()), "eth1").error_code(),
        11
    );
    assert_eq!(
        run_plugin("STATUS", &status_conf, "", None, "").error_code(),
        50
    );
    assert!(links(&ns.name).iter().all(|l| l.0 == "lo"));
    assert!(agent.agent.reservations().is_empty());
}

#[test]
fn gc_releases_what_is_not_valid() {
    common::require_root!();
    let agent = Agent::start();
    let ns1 = TestNetns::new("pnc");
    let ns2 = TestNetns::new("pnc");
    let conf = agent.conf("1.1.0");
    run_plugin("ADD", &conf, "keep", Some(&ns1.path()), "eth1").ok();
    run_plugin("ADD", &conf, "drop", Some(&ns2.path()), "eth1").ok();
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] =
        serde_json::json!([{"containerID": "keep", "ifname": "eth1"}]);
    run_plugin("GC", &gc, "", None, "").ok();
    let left: Vec<_> = agent
        .agent
        .reservations()
        .into_iter()
        .map(|r| r.key.container_id)
        .collect();
    assert_eq!(left, ["keep"]);
    let mut old = gc.clone();
    old["cniVersion"] = Value::from("1.0.0");
    assert_eq!(run_plugin("GC", &old, "", None, "").error_code(), 1);
}
