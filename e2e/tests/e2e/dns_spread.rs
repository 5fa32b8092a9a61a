//! DNS answers that spread load: an application name with four `web`
//! containers (on two nodes), looked up 200 times with `dig` from a
//! container of the same network, puts each container first about a
//! quarter of the time (the responder's cyclic order), and every answer
//! still holds all four.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use common::Sandbox;

const SCENARIO: &str = r#"
nodes: 2
projects:
  - {apiVersion: privnet.io/v1alpha1, kind: Project, metadata: {name: ds}, spec: {namespaces: [ds]}}
workloads:
  - {project: ds, application: front, processes: {web: 4}, nodes: [n1, n2]}
  - {project: ds, application: client, processes: {web: 1}, nodes: [n1]}
"#;

#[test]
fn each_of_four_web_containers_comes_first_in_turn() {
    common::require_root!();
    let sb = Sandbox::up("ds", Some(SCENARIO));
    let network = sb.network("ds");
    let (gateway, zone) = (
        network["gateway"].as_str().unwrap().to_string(),
        network["zone"].as_str().unwrap().to_string(),
    );
    let webs: BTreeSet<String> = (1..=4)
        .map(|n| {
            sb.container(&format!("front-web-{n}"))["ip"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(webs.len(), 4);
    let name = format!("front.{zone}");
    let server = format!("@{gateway}");
    // One dig, 200 lookups (dig runs one query per name it is given).
    let mut cmd = vec!["dig", server.as_str(), "+short", "+tries=1", "+time=2"];
    cmd.extend(std::iter::repeat_n(name.as_str(), 200));
    let out = sb.exec_ok("client-web-1", &cmd);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 800, "200 answers of 4 addresses:\n{out}");
    let mut firsts = BTreeMap::<&str, usize>::new();
    for answer in lines.chunks(4) {
        let got: BTreeSet<String> = answer.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, webs, "every answer holds the four containers");
        *firsts.entry(answer[0]).or_default() += 1;
    }
    eprintln!("first places over 200 lookups: {firsts:?}");
    assert_eq!(firsts.len(), 4, "{firsts:?}");
    for (ip, n) in &firsts {
        assert!((40..=60).contains(n), "{ip} first {n} times of 200");
    }
}
