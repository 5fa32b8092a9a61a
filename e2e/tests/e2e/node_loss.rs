//! A node's agent stopped for good: the others keep working; once the node
//! is removed from the scenario it disappears from every peer list and FDB.

use crate::common;

use common::Sandbox;

const SCENARIO: &str = r#"
nodes: 3
projects:
  - {apiVersion: privnet.io/v1alpha1, kind: Project, metadata: {name: nl}, spec: {namespaces: [nl]}}
workloads:
  - {project: nl, application: app, processes: {web: 3}}
"#;

#[test]
fn losing_a_node_keeps_the_rest_working() {
    common::require_root!();
    let sb = Sandbox::up("n", Some(SCENARIO));
    let status = sb.status();
    let n3 = sb.node("n3");
    let on = |node: &str| {
        sb.containers()
            .into_iter()
            .find(|c| c["node"] == node)
            .unwrap()
    };
    let (c1, c2) = (on("n1"), on("n2"));
    let zone = sb.network("nl")["zone"].as_str().unwrap().to_string();

    let out = sb.privnet(&["agent", "n3", "kill"]);
    assert!(out.status.success());
    let c1n = c1["name"].as_str().unwrap();
    sb.exec_ok(c1n, &["ping", "-c1", "-w4", c2["ip"].as_str().unwrap()]);
    let out = sb.exec_ok(c1n, &["host", &format!("web.app.{zone}")]);
    assert!(out.contains(c2["ip"].as_str().unwrap()), "{out}");

    // Remove n3 from the scenario.
    let two = SCENARIO.replace("nodes: 3", "nodes: 2");
    let path = std::env::temp_dir().join(format!("{}-two.yaml", sb.name));
    std::fs::write(&path, two).unwrap();
    let out = sb.privnet(&["apply", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&path);

    // Wait for the peers to drop n3 (a convergence pass), then check.
    let n3_key = n3["publicKey"].as_str().unwrap().to_string();
    let n3_vtep = n3["vtep"].as_str().unwrap().to_string();
    for node in ["n1", "n2"] {
        let mut peers = String::new();
        for _ in 0..50 {
            let shown = sb.wg_show(node, &["peers"]);
            assert!(
                shown.status.success(),
                "wg show on {node}: {}",
                String::from_utf8_lossy(&shown.stderr)
            );
            peers = String::from_utf8_lossy(&shown.stdout).into_owned();
            if !peers.contains(&n3_key) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(
            !peers.contains(&n3_key),
            "{node} still peers with n3: {peers}"
        );
        assert_eq!(peers.lines().count(), 1, "{node} peers: {peers}");
    }
    let vni = sb.network("nl")["vni"].as_u64().unwrap();
    let fdb = sb.in_netns(
        &format!("{}-n1-net-{vni}", sb.name),
        &["bridge", "fdb", "show"],
    );
    assert!(
        fdb.status.success(),
        "bridge fdb show: {}",
        String::from_utf8_lossy(&fdb.stderr)
    );
    let fdb = String::from_utf8_lossy(&fdb.stdout);
    assert!(!fdb.contains(&n3_vtep), "FDB still points at n3: {fdb}");
    // Positive control: the same read shows the node that is still there.
    let n2_vtep = common::node_in(&status, "n2")["vtep"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(fdb.contains(&n2_vtep), "FDB lost n2 too: {fdb}");
    // Every container (re-placed off n3) is reachable and named.
    let cs = sb.containers();
    assert_eq!(cs.len(), 3);
    assert!(cs.iter().all(|c| c["node"] != "n3"));
    for c in &cs {
        sb.exec_ok(c1n, &["ping", "-c1", "-w4", c["ip"].as_str().unwrap()]);
    }
}
