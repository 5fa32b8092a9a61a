//! The agent's state directory full: n1's is a 256 KiB tmpfs (the
//! scenario's `stateTmpfs`), filled to the last block. An ADD then fails
//! with a spec error (code 11, try again later, saying what is full) and
//! leaves nothing half-configured: no veth, no address claim, no record
//! (nor temp file), no guard element or chain, no book entry. The runtime's
//! DEL after the failed ADD succeeds. Once the filler is removed the same
//! ADD succeeds and the container talks to its gateway: the positive
//! control, which also shows each probe sees the thing when it is there.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use crate::common;
use common::Sandbox;
use common::runtime::{Runtime, address_of};
use serde_json::Value;

const SCENARIO: &str = r#"
nodes: 2
projects:
  - {apiVersion: privnet.io/v1alpha1, kind: Project, metadata: {name: full}, spec: {namespaces: [full]}}
workloads:
  - {project: full, application: resident, processes: {web: 1}, nodes: [n1]}
stateTmpfs: {n1: 256k}
"#;

/// What an ADD leaves on the node, to compare before and after.
#[derive(Debug, PartialEq, Eq)]
struct Traces {
    /// Files under the agent's `attachments/` (records and temp files).
    records: Vec<String>,
    /// Address claims of the network (files mode: `cluster/claims/<net>/`).
    claims: Vec<String>,
    /// veths in the network's namespace (the bridge ports).
    ports: Vec<String>,
    /// The port guard: its chains and its port sets.
    guard_chains: Vec<String>,
    guard_sets: String,
    /// The agent's book (`privnet_agent_attachments`).
    booked: String,
}

struct Node {
    state_dir: String,
    node_ns: String,
    net_ns: String,
    claims_dir: String,
    gateway: String,
}

fn node(sb: &Sandbox) -> Node {
    let status = sb.status();
    let n = sb.node("n1");
    let net = sb.network("full");
    let s = |v: &Value| v.as_str().unwrap().to_string();
    Node {
        state_dir: s(&n["stateDir"]),
        node_ns: s(&n["netns"]),
        net_ns: format!("{}{}", s(&n["networkNetnsPrefix"]), net["vni"]),
        claims_dir: format!("{}/cluster/claims/{}", s(&status["root"]), s(&net["id"])),
        gateway: s(&net["gateway"]),
    }
}

fn listing(dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn traces(sb: &Sandbox, n: &Node) -> Traces {
    let run = |ns: &str, cmd: &[&str]| {
        let out = sb.in_netns(ns, cmd);
        assert!(out.status.success(), "{cmd:?} in {ns}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ports = run(&n.net_ns, &["ip", "-o", "link", "show", "type", "veth"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|p| p.split('@').next().unwrap().to_string())
        .collect();
    let guard_chains = run(
        &n.net_ns,
        &["nft", "list", "table", "bridge", "privnet-ports"],
    )
    .lines()
    .filter(|l| l.trim_start().starts_with("chain "))
    .map(|l| l.trim().to_string())
    .collect();
    let guard_sets = ["port-mac", "port-ip"]
        .map(|set| {
            run(
                &n.net_ns,
                &["nft", "list", "set", "bridge", "privnet-ports", set],
            )
        })
        .join("");
    let metrics = run(
        &n.node_ns,
        &[
            "python3",
            "-c",
            "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9641/metrics').read().decode())",
        ],
    );
    let booked = metrics
        .lines()
        .find(|l| l.starts_with("privnet_agent_attachments "))
        .expect("the attachments gauge")
        .to_string();
    Traces {
        records: listing(&format!("{}/attachments", n.state_dir)),
        claims: listing(&n.claims_dir),
        ports,
        guard_chains,
        guard_sets,
        booked,
    }
}

/// Fills the file system of `dir` with `dir/filler` until it is full.
fn fill(dir: &str) -> String {
    let path = format!("{dir}/filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = [0u8; 4096];
    loop {
        match f.write_all(&block) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => return path,
            Err(e) => panic!("filling {path}: {e}"),
        }
    }
}

fn is_tmpfs(dir: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            f.get(4) == Some(&dir)
                && l.split(" - ")
                    .nth(1)
                    .is_some_and(|t| t.starts_with("tmpfs"))
        })
}

#[test]
fn a_full_state_directory_fails_add_cleanly_and_adds_work_once_there_is_room() {
    common::require_root!();
    let sb = Sandbox::up_files("d", Some(SCENARIO));
    let n = node(&sb);
    assert!(is_tmpfs(&n.state_dir), "{} is a tmpfs", n.state_dir);
    let runtime = Runtime::of_node(&sb, "n1");
    let before = traces(&sb, &n);

    let filler = fill(&n.state_dir);
    let c = runtime.container("full", "full", "newcomer", 1);
    let t0 = Instant::now();
    let out = runtime.call("ADD", &c);
    let refused_in = t0.elapsed();
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the failed ADD answers spec JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    println!(
        "FAULT state-dir-full: ADD refused in {:.0} ms: {reply}",
        refused_in.as_secs_f64() * 1e3
    );
    assert!(!out.status.success(), "ADD must fail on a full state dir");
    assert_eq!(reply["code"], 11, "try again later: {reply}");
    let text = reply.to_string();
    assert!(
        text.contains("No space left on device") && text.contains("try again later"),
        "the message says what is full: {reply}"
    );
    assert_eq!(traces(&sb, &n), before, "nothing half-configured");
    let eth1 = sb.in_netns(&c.netns, &["ip", "link", "show", "eth1"]);
    assert!(!eth1.status.success(), "no interface in the container");
    // The runtime cleans up after a failed ADD: DEL works and changes nothing.
    let del = runtime.call("DEL", &c);
    assert!(del.status.success(), "DEL after the failed ADD");
    assert_eq!(traces(&sb, &n), before, "DEL of nothing changes nothing");

    // Positive control: room again, the same ADD succeeds and works.
    std::fs::remove_file(&filler).unwrap();
    let out = runtime.call("ADD", &c);
    assert!(
        out.status.success(),
        "ADD once there is room: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let ip = address_of(&out);
    let ping = sb.in_netns(&c.netns, &["ping", "-c1", "-w4", &n.gateway]);
    assert!(ping.status.success(), "{ip} reaches its gateway");
    let after = traces(&sb, &n);
    assert_eq!(after.records.len(), before.records.len() + 1, "{after:?}");
    assert!(
        after.records.iter().any(|r| r.starts_with(&c.id)),
        "its record: {after:?}"
    );
    assert!(after.claims.contains(&ip), "its claim: {after:?}");
    assert_eq!(after.ports.len(), before.ports.len() + 1, "its port");
    assert_eq!(
        after.guard_chains, before.guard_chains,
        "chains are per network"
    );
    assert_ne!(after.guard_sets, before.guard_sets, "its guard elements");
    assert_ne!(after.booked, before.booked, "in the book");
    assert!(
        Path::new(&n.state_dir).join("attachments").is_dir(),
        "the state dir is intact"
    );
    runtime.remove(&c);
}
