//! Isolation matrix: two projects on the same nodes, both on 10.240.0.0/22.
//! 100 % of flows inside a project succeed, 0 % across (TCP, UDP, ICMP,
//! broadcast, ARP, the other network's gateway and DNS).

use crate::common;

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
    assert_eq!(alpha[0]["ip"], beta[0]["ip"], "the subnets really overlap");
    let name = |c: &serde_json::Value| c["name"].as_str().unwrap().to_string();
    let ip = |c: &serde_json::Value| c["ip"].as_str().unwrap().to_string();
    let alpha_ips: Vec<String> = alpha.iter().map(ip).collect();
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
    // DNS: beta's names do not resolve from alpha; the gateway only serves DNS and ICMP.
    let beta_zone = sb.network("beta")["zone"].as_str().unwrap().to_string();
    across_total += 1;
    if sb
        .exec(&name(&alpha[0]), &["host", &format!("b.{beta_zone}")])
        .status
        .success()
    {
        across_ok += 1;
    }
    across_total += 1;
    if client(&sb, &name(&alpha[0]), "tcp", "10.240.0.1", 22, "gw").is_some() {
        across_ok += 1;
    }

    eprintln!("inside: {inside_ok}/{inside_total} ok, across: {across_ok}/{across_total} ok");
    assert_eq!(
        inside_ok, inside_total,
        "every flow inside a project succeeds"
    );
    assert_eq!(across_ok, 0, "no flow crosses projects");
}
