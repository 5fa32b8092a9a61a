//! `kill -9` of an agent in the middle of 64 parallel ADDs on its node.
//!
//! 64 plugin ADDs start at once against n1's agent (the files path: a
//! runtime calling the plugin with explicit workloads); once a few have
//! answered, the agent is killed by PID. It is restarted, and the runtime
//! does what a real one does: DEL and namespace removal for every failed
//! ADD, then a retry as a new sandbox (new id, new namespace, same number).
//! Then, on the node and in the cluster state:
//! - addresses are unique across the records and across the containers'
//!   interfaces, and each container has the address its record says;
//! - every veth on the network's bridge and every guard element belongs to
//!   a live attachment, and each live attachment has one;
//! - no container namespace is left but the live ones;
//! - address claims == the live attachments' addresses;
//! - published endpoints and DNS records == the live attachments.
//!
//! The positive control is in the figures: some ADDs succeeded before the
//! kill and some failed (else the kill missed the middle), and every
//! check compares against the live set, which is non-empty.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::common;
use common::Sandbox;
use common::observe::wait_for;
use common::runtime::{Container, Runtime, address_of};
use serde_json::Value;

const SCENARIO: &str = r#"
nodes: 2
projects:
  - {apiVersion: privnet.io/v1alpha1, kind: Project, metadata: {name: burst}, spec: {namespaces: [burst]}}
workloads:
  - {project: burst, application: resident, processes: {web: 1}, nodes: [n1]}
"#;

const PARALLEL: usize = 64;
/// ADDs answered before the kill.
const KILL_AFTER: usize = 6;

#[test]
fn agent_kill_9_during_64_parallel_adds_leaks_nothing() {
    common::require_root!();
    let sb = Sandbox::up_files("k", Some(SCENARIO));
    let status = sb.status();
    let n1 = sb.node("n1");
    let net = sb.network("burst");
    let s = |v: &Value| v.as_str().unwrap().to_string();
    let net_ns = format!("{}{}", s(&n1["networkNetnsPrefix"]), net["vni"]);
    let runtime = Runtime::of_node(&sb, "n1");
    let resident = sb.container("resident-web-1");

    let containers: Vec<Container> = (0..PARALLEL)
        .map(|i| runtime.container(&format!("p{i}"), "burst", "burst", i as u32 + 1))
        .collect();
    let t0 = Instant::now();
    let mut children: Vec<_> = containers
        .iter()
        .map(|c| Some(runtime.spawn("ADD", c)))
        .collect();
    let mut outputs: Vec<Option<Output>> = (0..PARALLEL).map(|_| None).collect();
    let mut reap = |children: &mut Vec<Option<std::process::Child>>, block: bool| {
        for (i, slot) in children.iter_mut().enumerate() {
            let done = match slot.as_mut() {
                Some(_) if block => true,
                Some(child) => child.try_wait().unwrap().is_some(),
                None => false,
            };
            if done {
                outputs[i] = Some(slot.take().unwrap().wait_with_output().unwrap());
            }
        }
        outputs.iter().filter(|o| o.is_some()).count()
    };
    let answered = wait_for(Duration::from_secs(30), || {
        reap(&mut children, false) >= KILL_AFTER
    });
    assert!(answered.is_some(), "no ADD answered");
    let agent_pid = n1["agentPid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 the agent");
    let killed_at = t0.elapsed();
    let done_at_kill = reap(&mut children, false);
    reap(&mut children, true);
    let outputs: Vec<Output> = outputs.into_iter().map(Option::unwrap).collect();
    let ok: Vec<usize> = (0..PARALLEL)
        .filter(|&i| outputs[i].status.success())
        .collect();
    let failed: Vec<usize> = (0..PARALLEL)
        .filter(|&i| !outputs[i].status.success())
        .collect();
    for &i in &failed {
        let reply: Value = serde_json::from_slice(&outputs[i].stdout).unwrap_or_else(|e| {
            panic!(
                "a failed ADD answers spec JSON ({e}): {}",
                String::from_utf8_lossy(&outputs[i].stdout)
            )
        });
        assert_eq!(reply["code"], 11, "agent gone: try again later: {reply}");
    }

    // Restart, then the runtime's cleanup and retries.
    let t1 = Instant::now();
    let started = sb.privnet(&["agent", "n1", "start"]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let restarted_in = t1.elapsed();
    let mut live: BTreeMap<String, (String, String)> = BTreeMap::new(); // id → (netns, ip)
    for &i in &ok {
        let c = &containers[i];
        live.insert(c.id.clone(), (c.netns.clone(), address_of(&outputs[i])));
    }
    for &i in &failed {
        runtime.remove(&containers[i]);
        let retry = runtime.container(&format!("r{i}"), "burst", "burst", i as u32 + 1);
        let out = runtime.call("ADD", &retry);
        assert!(
            out.status.success(),
            "retried ADD of number {}: {}",
            i + 1,
            String::from_utf8_lossy(&out.stdout)
        );
        live.insert(retry.id.clone(), (retry.netns.clone(), address_of(&out)));
    }
    let recovered_in = t1.elapsed();
    // What the restarted agent cleaned itself (the runtime's DELs aside).
    let log = std::fs::read_to_string(s(&n1["agentLog"])).unwrap();
    let released = log
        .matches("releasing an address claim no attachment holds")
        .count();
    println!(
        "FAULT agent-kill-9-during-{PARALLEL}-adds: claims of ADDs cut short released at restart: {released}"
    );
    println!(
        "FAULT agent-kill-9-during-{PARALLEL}-adds: killed at {:.2} s with {done_at_kill} answered; \
         {} succeeded, {} failed with code 11; agent ready {:.2} s after restart; \
         DEL + retried ADDs done {:.2} s after restart",
        killed_at.as_secs_f64(),
        ok.len(),
        failed.len(),
        restarted_in.as_secs_f64(),
        recovered_in.as_secs_f64()
    );
    assert!(!ok.is_empty(), "some ADDs answered before the kill");
    assert!(
        !failed.is_empty(),
        "the kill came after every ADD had answered: not in the middle"
    );
    live.insert(
        s(&resident["containerId"]),
        (s(&resident["netns"]), s(&resident["ip"])),
    );
    let live_ips: BTreeSet<String> = live.values().map(|(_, ip)| ip.clone()).collect();
    assert_eq!(live_ips.len(), live.len(), "an address handed out twice");

    // Records: exactly the live attachments, their addresses unique.
    let attachments = format!("{}/attachments", s(&n1["stateDir"]));
    let mut records: BTreeMap<String, (String, String)> = BTreeMap::new(); // id → (ip, host port)
    for e in std::fs::read_dir(&attachments).unwrap() {
        let path = e.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let r: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not a record ({e})", path.display()));
        let ip = s(&r["address"]).split('/').next().unwrap().to_string();
        records.insert(s(&r["key"]["containerId"]), (ip, s(&r["hostIfname"])));
    }
    assert_eq!(
        records.keys().collect::<BTreeSet<_>>(),
        live.keys().collect::<BTreeSet<_>>(),
        "records == live attachments"
    );
    for (id, (ip, _)) in &records {
        assert_eq!(&live[id].1, ip, "{id}: record and ADD result agree");
    }

    // The kernel: each container has its address, and only it.
    for (id, (netns, ip)) in &live {
        let out = sb.in_netns(netns, &["ip", "-4", "-o", "addr", "show", "dev", "eth1"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let addrs: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3))
            .collect();
        assert_eq!(addrs.len(), 1, "{id}: one address on eth1: {text}");
        assert!(addrs[0].starts_with(&format!("{ip}/")), "{id}: {text}");
    }

    // Bridge ports and guard elements == the live attachments' host ports.
    let ports: BTreeSet<String> = records.values().map(|(_, p)| p.clone()).collect();
    let veths = sb.in_netns(&net_ns, &["ip", "-o", "link", "show", "type", "veth"]);
    let on_bridge: BTreeSet<String> = String::from_utf8_lossy(&veths.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|p| p.split('@').next().unwrap().to_string())
        .collect();
    assert_eq!(on_bridge, ports, "every bridge port is a live attachment's");
    let guarded = || {
        let map = sb.in_netns(
            &net_ns,
            &["nft", "list", "set", "bridge", "privnet-ports", "port-ip"],
        );
        // Elements start with quoted interface names: `"pv…" . 10.…`.
        String::from_utf8_lossy(&map.stdout)
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|w| w.starts_with("pv"))
            .map(str::to_string)
            .collect::<BTreeSet<String>>()
    };
    // Departed ports are purged once the network is quiet (2 s).
    let guard_ok = wait_for(Duration::from_secs(15), || guarded() == ports);
    assert!(
        guard_ok.is_some(),
        "guard elements {:?} != live ports {ports:?}",
        guarded()
    );

    // Container namespaces: the live ones only.
    let prefix = format!("{}-c-", sb.name);
    let namespaces: BTreeSet<String> = std::fs::read_dir("/run/netns")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    let live_ns: BTreeSet<String> = live.values().map(|(ns, _)| ns.clone()).collect();
    assert_eq!(namespaces, live_ns, "no stray container namespace");

    // Claims == live addresses (no claim of an ADD cut short survives).
    let claims_dir = format!("{}/cluster/claims/{}", s(&status["root"]), s(&net["id"]));
    let claims: BTreeSet<String> = std::fs::read_dir(&claims_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(claims, live_ips, "claims == live attachments");

    // Published endpoints and DNS == live attachments.
    let endpoints_dir = format!("{}/cluster/endpoints/n1", s(&status["root"]));
    let published = || -> BTreeSet<String> {
        std::fs::read_dir(&endpoints_dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                name.strip_suffix("-eth1.yaml").map(str::to_string)
            })
            .collect()
    };
    let live_ids: BTreeSet<String> = live.keys().cloned().collect();
    assert!(
        wait_for(Duration::from_secs(15), || published() == live_ids).is_some(),
        "published endpoints {:?} != live",
        published()
            .symmetric_difference(&live_ids)
            .collect::<Vec<_>>()
    );
    let name = format!("web.burst.{}", s(&net["zone"]));
    let burst_ips: BTreeSet<String> = live
        .iter()
        .filter(|(id, _)| **id != s(&resident["containerId"]))
        .map(|(_, (_, ip))| ip.clone())
        .collect();
    let answered = || -> BTreeSet<String> {
        let out = sb.exec("resident-web-1", &["dig", "+tcp", "+short", &name]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    };
    assert!(
        wait_for(Duration::from_secs(10), || answered() == burst_ips).is_some(),
        "DNS {name} answers {:?}, live are {burst_ips:?}",
        answered()
    );
}

/// The same cleanup on the Kubernetes path, where a claim is a Lease: an
/// address-claim Lease of n1 that no attachment holds (what an ADD killed
/// between its claim and its record leaves) is deleted when n1's agent
/// starts (the controllers stopped, so their sweep cannot be the one); the
/// claim of the live pod stays (the control).
#[test]
fn a_restarted_agent_releases_its_unheld_claim_leases() {
    common::require_root!();
    let sb = Sandbox::up_kube("q", Some(SCENARIO));
    let holders = || -> BTreeMap<String, String> {
        let out = sb.kubectl(
            &["get", "leases", "-n", "privnet-system", "-o", "json"],
            None,
        );
        assert!(out.status.success(), "kubectl get leases");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                let s = |p: &str| {
                    l.pointer(p)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                (s("/metadata/name"), s("/spec/holderIdentity"))
            })
            .collect()
    };
    let net = sb.network("burst");
    let network_id = net["id"].as_str().unwrap();
    let live: Vec<(String, String)> = holders()
        .into_iter()
        .filter(|(name, _)| name.starts_with("privnet-ip-"))
        .collect();
    assert_eq!(live.len(), 1, "the resident pod's address claim: {live:?}");

    // The controllers' claim sweep (every 2 s in the sandbox) would collect
    // the stray claim too: with them stopped, only the agent can.
    for replica in ["0", "1"] {
        assert!(
            sb.privnet(&["controller", replica, "kill"])
                .status
                .success()
        );
    }
    assert!(sb.privnet(&["agent", "n1", "kill"]).status.success());
    let stray = format!("privnet-ip-{network_id}-10-240-3-250");
    let lease = format!(
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: {stray}\n  \
         namespace: privnet-system\n  labels: {{privnet.io/claim: address, privnet.io/network: {network_id}}}\n\
         spec: {{holderIdentity: n1/cut-short/eth1}}\n"
    );
    let made = sb.kubectl(&["apply", "-f", "-"], Some(&lease));
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert!(holders().contains_key(&stray), "the stray claim exists");
    let started = sb.privnet(&["agent", "n1", "start"]);
    assert!(started.status.success());
    assert!(
        wait_for(Duration::from_secs(10), || !holders().contains_key(&stray)).is_some(),
        "the unheld claim was not released: {:?}",
        holders()
    );
    let after = holders();
    for (name, holder) in &live {
        assert_eq!(after.get(name), Some(holder), "the live claim stays");
    }
}
