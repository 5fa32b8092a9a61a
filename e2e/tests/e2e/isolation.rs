//! Isolation matrix: two projects on the same nodes, both on 10.240.0.0/22.
//! 100 % of flows inside a project succeed, 0 % across (TCP, UDP, ICMP,
//! broadcast, ARP, the other network's gateway and DNS), each probe with a
//! positive control; a listener on the gateway is reachable only with the
//! guard off or from the gateway's own namespace.

use crate::common;

use common::observe::spawn_until_stderr;
use common::{Sandbox, client, spawn_server};

const SCENARIO: &str = r#"
nodes: 2
projects:
  - {apiVersion: privnet.io/v1alpha1, kind: Project, metadata: {name: alpha}, spec: {namespaces: [alpha]}}
  - {apiVersion: privnet.io/v1alpha1, kind: Project, metadata: {name: beta}, spec: {namespaces: [beta]}}
workloads:
  - {project: alpha, application: a, processes: {web: 2}}
  - {project: beta, application: b, processes: {web: 4}}
"#;

#[test]
fn projects_sharing_a_subnet_are_isolated() {
    common::require_root!();
    let sb = Sandbox::up("i", Some(SCENARIO));
    let cs = sb.containers();
    let of = |p: &str| {
        cs.iter()
            .filter(|c| c["project"] == p)
            .cloned()
            .collect::<Vec<_>>()
    };
    let (alpha, beta) = (of("alpha"), of("beta"));
    let name = |c: &serde_json::Value| c["name"].as_str().unwrap().to_string();
    let ip = |c: &serde_json::Value| c["ip"].as_str().unwrap().to_string();
    let alpha_ips: Vec<String> = alpha.iter().map(ip).collect();
    // Which container gets which address depends on the order the nodes
    // attach in; that both projects hand out the same addresses does not.
    assert!(
        beta.iter().any(|c| alpha_ips.contains(&ip(c))),
        "the subnets really overlap: {alpha_ips:?} vs {:?}",
        beta.iter().map(ip).collect::<Vec<_>>()
    );
    // Beta addresses that do not exist in alpha: only beta could answer.
    let beta_only: Vec<&serde_json::Value> = beta
        .iter()
        .filter(|c| !alpha_ips.contains(&ip(c)))
        .collect();
    assert!(beta_only.len() >= 2);

    let (mut inside_ok, mut inside_total, mut across_ok, mut across_total) = (0, 0, 0, 0);
    // Inside each project: every pair, ICMP + TCP + UDP.
    for group in [&alpha, &beta] {
        for a in group.iter() {
            for b in group.iter().filter(|b| b["name"] != a["name"]) {
                inside_total += 1;
                if sb
                    .exec(&name(a), &["ping", "-c1", "-w4", &ip(b)])
                    .status
                    .success()
                {
                    inside_ok += 1;
                }
            }
        }
        let (a, b) = (&group[0], &group[1]);
        for (proto, port) in [("tcp", 7001u16), ("udp", 7002)] {
            let server = spawn_server(&sb, &name(b), proto, port);
            inside_total += 1;
            if client(&sb, &name(a), proto, &ip(b), port, "in").as_deref() == Some("ack:in") {
                inside_ok += 1;
            }
            let _ = server.wait_with_output();
        }
    }
    // Across: alpha containers towards beta-only addresses.
    for a in &alpha {
        for b in &beta_only {
            across_total += 3;
            if sb
                .exec(&name(a), &["ping", "-c1", "-W1", &ip(b)])
                .status
                .success()
            {
                across_ok += 1;
            }
            if sb
                .exec(&name(a), &["arping", "-c1", "-w1", "-I", "eth1", &ip(b)])
                .status
                .success()
            {
                across_ok += 1;
            }
            let mut server = spawn_server(&sb, &name(b), "tcp", 7003);
            if client(&sb, &name(a), "tcp", &ip(b), 7003, "leak").is_some() {
                across_ok += 1;
            }
            let _ = server.kill();
            let _ = server.wait();
        }
    }
    // Broadcast: beta listens, alpha broadcasts on the same subnet.
    let listener = spawn_server(&sb, &name(&beta[1]), "udp", 7004);
    across_total += 1;
    if client(&sb, &name(&alpha[0]), "bcast", "10.240.3.255", 7004, "leak").is_some() {
        across_ok += 1;
    }
    let out = listener.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "beta received alpha's broadcast"
    );

    // The gateway each container reaches is its own network's (MAC derived from its VNI).
    for (c, project) in [(&alpha[0], "alpha"), (&beta[0], "beta")] {
        sb.exec_ok(&name(c), &["ping", "-c1", "-w4", "10.240.0.1"]);
        let neigh = sb.exec_ok(&name(c), &["ip", "neigh", "show", "10.240.0.1"]);
        let vni = sb.network(project)["vni"].as_u64().unwrap();
        let want = format!(
            "02:70:6e:{:02x}:{:02x}:{:02x}",
            (vni >> 16) & 0xff,
            (vni >> 8) & 0xff,
            vni & 0xff
        );
        assert!(
            neigh.contains(&want),
            "{project} gateway is {neigh}, expected {want}"
        );
    }
    // Positive controls of the ARP and DNS probes: the same probes inside a project answer.
    sb.exec_ok(
        &name(&alpha[0]),
        &["arping", "-c1", "-w1", "-I", "eth1", &ip(&alpha[1])],
    );
    let alpha_zone = sb.network("alpha")["zone"].as_str().unwrap().to_string();
    let own = sb.exec_ok(&name(&alpha[0]), &["host", &format!("a.{alpha_zone}")]);
    assert!(own.contains(&ip(&alpha[1])), "{own}");
    // DNS: beta's names do not resolve from alpha: NXDOMAIN (an answer), not a timeout.
    let beta_zone = sb.network("beta")["zone"].as_str().unwrap().to_string();
    across_total += 1;
    let other = sb.exec(&name(&alpha[0]), &["host", &format!("b.{beta_zone}")]);
    if other.status.success() {
        across_ok += 1;
    }
    let text = String::from_utf8_lossy(&other.stdout);
    assert!(
        text.contains("NXDOMAIN"),
        "beta's name must be NXDOMAIN: {text}"
    );

    // The gateway serves only DNS and ICMP: a listener on the gateway address is
    // unreachable from containers, reachable from the gateway's own namespace.
    let gw_ns = network_netns(&sb, &alpha[0], "alpha");
    let mut listener = gateway_listener(&gw_ns, 7022);
    across_total += 1;
    if client(&sb, &name(&alpha[0]), "tcp", "10.240.0.1", 7022, "gw").is_some() {
        across_ok += 1;
    }
    let local = sb.in_netns(
        &gw_ns,
        &[
            "python3",
            "-c",
            common::PY_CLIENT,
            "tcp",
            "10.240.0.1",
            "7022",
            "local",
            "2",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&local.stdout).trim(),
        "ack:local",
        "positive control: the gateway's listener answers in its own namespace"
    );

    eprintln!("inside: {inside_ok}/{inside_total} ok, across: {across_ok}/{across_total} ok");
    assert_eq!(
        inside_ok, inside_total,
        "every flow inside a project succeeds"
    );
    assert_eq!(across_ok, 0, "no flow crosses projects");

    // Positive control: with the gateway's guard off (its agent stopped, or it
    // would repair it) the container reaches the listener: the guard is what blocks.
    let node = alpha[0]["node"].as_str().unwrap();
    assert!(sb.privnet(&["agent", node, "kill"]).status.success());
    assert!(
        sb.in_netns(&gw_ns, &["nft", "delete", "table", "inet", "privnet-gw"])
            .status
            .success()
    );
    assert_eq!(
        client(&sb, &name(&alpha[0]), "tcp", "10.240.0.1", 7022, "open").as_deref(),
        Some("ack:open"),
        "without the guard the gateway's listener is reachable"
    );
    let _ = listener.kill();
    let _ = listener.wait();
}

/// The namespace of `project`'s network on `c`'s node.
fn network_netns(sb: &Sandbox, c: &serde_json::Value, project: &str) -> String {
    let node = sb.node(c["node"].as_str().unwrap());
    let vni = sb.network(project)["vni"].as_u64().unwrap();
    format!("{}{vni}", node["networkNetnsPrefix"].as_str().unwrap())
}

/// A TCP server on the gateway address inside the network namespace,
/// answering `ack:<data>` to every connection; returned once bound.
fn gateway_listener(netns: &str, port: u16) -> std::process::Child {
    const PY: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.240.0.1", int(sys.argv[1]))); s.listen(8)
print("bound", file=sys.stderr, flush=True)
while True:
    c, _ = s.accept(); c.settimeout(2)
    try:
        c.sendall(b"ack:" + c.recv(1024))
    except Exception:
        pass
    c.close()
"#;
    let mut cmd = std::process::Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        netns,
        "python3",
        "-c",
        PY,
        &port.to_string(),
    ])
    .stdout(std::process::Stdio::null());
    spawn_until_stderr(cmd, "bound", std::time::Duration::from_secs(10))
}
