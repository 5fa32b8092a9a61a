//! A container can talk when ADD returns: its very first ping, one echo
//! with one second to answer (`ping -c1 -W1`), sent the moment the plugin
//! exits, is answered by the gateway on its node and by a peer on another
//! node. A dropped first ARP would cost the kernel's ~1 s retry and fail it.
//!
//! Negative control: the same test sees a lost first ARP. Right after ADD it
//! deletes its own port's element from the guard's `port-mac` set (the port
//! then falls to the fail-closed drop, as before the port's elements were
//! installed): the first ping fails. Restoring the element makes the port
//! talk again, so the failure was the missing rule and nothing else.

use crate::common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Sandbox, bin};
use privnet_agent::book::host_ifname;
use privnet_core::rpc::AttachmentKey;
use serde_json::{Value, json};

const SCENARIO: &str = r#"
nodes: 2
projects:
  - {apiVersion: privnet.io/v1alpha1, kind: Project, metadata: {name: fp}, spec: {namespaces: [fp]}}
workloads:
  - {project: fp, application: resident, processes: {web: 1}, nodes: [n1]}
  - {project: fp, application: peer, processes: {web: 1}, nodes: [n2]}
"#;

/// A container network namespace of the test, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Netns {
        let made = Command::new("ip").args(["netns", "add", &name]).status();
        assert!(made.unwrap().success(), "ip netns add {name}");
        Netns(name)
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The plugin against n1's agent, for one container.
struct Plugin {
    config: Value,
    container_id: String,
    netns: String,
    number: u32,
}

impl Plugin {
    fn run(&self, command: &str) -> Output {
        let cni_args = format!(
            "IgnoreUnknown=1;PRIVNET_APPLICATION_ID=first;PRIVNET_PROCESS_TYPE=web;PRIVNET_CONTAINER_NUMBER={}",
            self.number
        );
        let mut child = Command::new(bin("privnet-cni"))
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &self.container_id)
            .env("CNI_NETNS", &self.netns)
            .env("CNI_IFNAME", "eth1")
            .env("CNI_ARGS", cni_args)
            .env("CNI_PATH", "/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the plugin starts");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(self.config.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{command} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The bridge-side port the agent names for this container.
    fn port(&self) -> String {
        host_ifname(&AttachmentKey {
            container_id: self.container_id.clone(),
            ifname: "eth1".into(),
        })
    }
}

/// One echo, one second to answer: whether it was answered, and how long it took.
fn first_ping(sb: &Sandbox, netns: &str, target: &str) -> (bool, Duration) {
    let start = Instant::now();
    let out = sb.in_netns(netns, &["ping", "-n", "-c1", "-W1", target]);
    (out.status.success(), start.elapsed())
}

fn nft(sb: &Sandbox, netns: &str, rule: &str) {
    let out = sb.in_netns(netns, &["nft", rule]);
    assert!(
        out.status.success(),
        "nft {rule:?} in {netns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A port's element of the guard's `port-mac` set, as nft lists it
/// (`"pv…" . 0a:58:…`).
fn port_element(sb: &Sandbox, netns: &str, port: &str) -> String {
    let out = sb.in_netns(
        netns,
        &["nft", "list", "set", "bridge", "privnet-ports", "port-mac"],
    );
    assert!(out.status.success(), "nft list set in {netns}");
    let quoted = format!("\"{port}\"");
    String::from_utf8_lossy(&out.stdout)
        .split(['{', '}', ',', '\n'])
        .map(str::trim)
        .find(|e| e.starts_with(&quoted))
        .unwrap_or_else(|| panic!("{port} is not in the port-mac set"))
        .to_string()
}

#[test]
fn the_first_ping_after_add_is_answered() {
    common::require_root!();
    let sb = Sandbox::up("fp", Some(SCENARIO));
    let n1 = sb.node("n1");
    let network = sb.network("fp");
    let gateway = network["gateway"].as_str().unwrap().to_string();
    let vni = network["vni"].as_u64().unwrap();
    let network_netns = format!("{}-n1-net-{vni}", sb.name);
    let peer = sb.container("peer-web-1");
    assert_eq!(peer["node"], "n2", "the peer must be on the other node");
    let peer_ip = peer["ip"].as_str().unwrap().to_string();
    let config = json!({
        "cniVersion": "1.1.0", "name": "privnet", "type": "privnet-cni",
        "agentSocket": n1["agentSocket"], "network": network["id"],
    });
    let plugin = |n: u32, ns: &Netns| Plugin {
        config: config.clone(),
        container_id: format!("{}-first{n}", sb.name),
        netns: ns.path(),
        number: n,
    };

    // A fresh container's first packet, to the gateway and to a peer on n2.
    for (n, target) in [(1, &gateway), (2, &peer_ip)] {
        let ns = Netns::new(format!("{}-c-first{n}", sb.name));
        let p = plugin(n, &ns);
        p.run("ADD");
        let (answered, took) = first_ping(&sb, &ns.0, target);
        eprintln!("first ping after ADD to {target}: answered={answered} in {took:?}");
        assert!(
            answered,
            "the first ping to {target} right after ADD was not answered within 1 s"
        );
        p.run("DEL");
    }

    // Negative control: the port's rule withheld right after ADD.
    let ns = Netns::new(format!("{}-c-first3", sb.name));
    let p = plugin(3, &ns);
    p.run("ADD");
    let port = p.port();
    let element = port_element(&sb, &network_netns, &port);
    nft(
        &sb,
        &network_netns,
        &format!("delete element bridge privnet-ports port-mac {{ {element} }}"),
    );
    let (answered, took) = first_ping(&sb, &ns.0, &gateway);
    eprintln!("control, port rule withheld: answered={answered} in {took:?}");
    // Put the element back before asserting, so the agent's table is whole.
    nft(
        &sb,
        &network_netns,
        &format!("add element bridge privnet-ports port-mac {{ {element} }}"),
    );
    assert!(
        !answered,
        "the ping was answered without the port's rule: the test cannot see a lost first ARP"
    );
    // With the rule back the same container talks: the rule was the cause.
    let out = sb.in_netns(&ns.0, &["ping", "-n", "-c1", "-w4", &gateway]);
    assert!(
        out.status.success(),
        "the port does not talk after its rule came back: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    p.run("DEL");
}
