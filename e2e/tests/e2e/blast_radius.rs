//! The blast-radius guard on the Kubernetes path: every PrivateEndpoint wiped
//! from the API at once → the nodes publish their endpoints again while the
//! agents keep the others' for the settle time (and hold the removal when it
//! takes most of a node away), so cross-node traffic and names keep working;
//! restoring
//! the saved objects changes nothing; a real scale-in of 90 % of a network
//! still proceeds at once (the containers really left their node).

use crate::common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::Sandbox;
use common::observe::{self, PingStream};
use serde_json::Value;

const SCENARIO: &str = r#"
nodes: 2
projects:
  - {apiVersion: privnet.io/v1alpha1, kind: Project, metadata: {name: br}, spec: {namespaces: [br]}}
workloads:
  - {project: br, application: front, processes: {web: 4}, nodes: [n1]}
  - {project: br, application: back, processes: {web: 10}, nodes: [n2]}
"#;

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn endpoints(sb: &Sandbox) -> Vec<Value> {
    let out = ok(sb.kubectl(&["get", "privateendpoints", "-A", "-o", "json"], None));
    let v: Value = serde_json::from_str(&out).unwrap();
    v["items"].as_array().cloned().unwrap_or_default()
}

fn wait_for(what: &str, timeout: Duration, f: impl FnMut() -> bool) {
    assert!(
        observe::wait_for(timeout, f).is_some(),
        "timed out waiting for {what}"
    );
}

fn agent_logs(sb: &Sandbox) -> String {
    sb.status()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| std::fs::read_to_string(n["agentLog"].as_str().unwrap()).unwrap_or_default())
        .collect()
}

#[test]
fn a_wiped_endpoint_store_is_held_and_refilled_and_a_real_scale_in_proceeds() {
    common::require_root!();
    let sb = Sandbox::up_kube("br", Some(SCENARIO));
    let pair = |c: &str| {
        let v = sb.container(c);
        (
            v["hostname"].as_str().unwrap().to_string(),
            v["ip"].as_str().unwrap().to_string(),
        )
    };
    let (front_name, front_ip) = pair("front-web-1");
    let (back_name, back_ip) = pair("back-web-1");
    // Positive controls: reachable and named both ways.
    sb.exec_ok("front-web-1", &["ping", "-c1", "-w4", &back_ip]);
    assert_eq!(
        common::resolve_a(&sb, "front-web-1", &back_name),
        Some(back_ip.clone())
    );
    assert_eq!(
        common::resolve_a(&sb, "back-web-1", &front_name),
        Some(front_ip.clone())
    );
    let saved = endpoints(&sb);
    assert_eq!(saved.len(), 14, "one endpoint per container");
    assert!(!agent_logs(&sb).contains("holding a cluster view"));

    let mut ping = PingStream::start(&sb, "front-web-1", &back_ip, 20);
    ok(sb.kubectl(
        &["delete", "privateendpoints", "--all", "-A", "--wait=false"],
        None,
    ));
    // The wipe reached the agents: they publish their endpoints again.
    wait_for(
        "the agents to see the wipe",
        Duration::from_secs(10),
        || agent_logs(&sb).contains("publishing again an endpoint wiped"),
    );
    // Names keep resolving both ways while the store refills.
    let (mut lookups, mut failed) = (0, 0);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        for (from, name, ip) in [
            ("front-web-1", &back_name, &back_ip),
            ("back-web-1", &front_name, &front_ip),
        ] {
            lookups += 1;
            if common::resolve_a(&sb, from, name).as_ref() != Some(ip) {
                failed += 1;
            }
        }
    }
    // The nodes publish their endpoints again.
    let refill = Instant::now();
    wait_for(
        "the endpoints to be published again",
        Duration::from_secs(15),
        || endpoints(&sb).len() == saved.len(),
    );
    let refilled_after = refill.elapsed() + Duration::from_secs(2);
    // Restoring the saved objects is accepted and changes nothing.
    let list = serde_json::json!({
        "apiVersion": "v1", "kind": "List",
        "items": saved.iter().map(|e| {
            let mut e = e.clone();
            let m = e["metadata"].as_object_mut().unwrap();
            for k in ["resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"] {
                m.remove(k);
            }
            e
        }).collect::<Vec<_>>(),
    });
    ok(sb.kubectl(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--validate=false",
            "-f",
            "-",
        ],
        Some(&list.to_string()),
    ));
    assert_eq!(endpoints(&sb).len(), saved.len());
    let (sent, received) = ping.stop();
    println!(
        "BLAST wipe of {} endpoints: {failed}/{lookups} lookups failed, {} of {sent} pings lost, store refilled within {:.1} s, held by an agent: {}",
        saved.len(),
        sent - received,
        refilled_after.as_secs_f64(),
        agent_logs(&sb).contains("holding a cluster view")
    );
    // Traffic and names keep working: no outage longer than a few pings
    // (20 ms apart) on a machine whose 2 cores run the rest of the suite.
    assert!(sent >= 50, "the ping stream ran ({sent} sent)");
    assert!(
        (sent - received) * 20 <= sent,
        "{} of {sent} pings lost through the wipe",
        sent - received
    );
    assert!(
        failed * 10 <= lookups,
        "{failed} of {lookups} lookups failed through the wipe"
    );

    // A real scale-in of 90 %: the names go at once, not after the grace.
    let zone = sb.network("br")["zone"].as_str().unwrap().to_string();
    let name = |n: u32| format!("{n}.web.back.{zone}");
    assert!(
        common::resolve_a(&sb, "front-web-1", &name(10)).is_some(),
        "control"
    );
    let t = Instant::now();
    ok(sb.privnet(&["scale", "back", "web", "1"]));
    wait_for("the removed names to go", Duration::from_secs(10), || {
        (2..=10).all(|n| common::resolve_a(&sb, "front-web-1", &name(n)).is_none())
    });
    println!(
        "BLAST scale-in 10 -> 1 applied in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(
        common::resolve_a(&sb, "front-web-1", &name(1)),
        Some(back_ip)
    );
}

fn network_object(sb: &Sandbox) -> Value {
    let out = ok(sb.kubectl(&["get", "privatenetworks", "br", "-o", "json"], None));
    serde_json::from_str(&out).unwrap()
}

fn orphan_mark(net: &Value) -> Option<String> {
    net["metadata"]["annotations"]["privnet.io/orphaned-since"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn a_wiped_project_keeps_its_network_and_a_restored_one_adopts_it() {
    common::require_root!();
    let sb = Sandbox::up_kube("bp", Some(SCENARIO));
    let back = sb.container("back-web-1");
    let (back_name, back_ip) = (
        back["hostname"].as_str().unwrap().to_string(),
        back["ip"].as_str().unwrap().to_string(),
    );
    sb.exec_ok("front-web-1", &["ping", "-c1", "-w4", &back_ip]);
    assert_eq!(
        common::resolve_a(&sb, "front-web-1", &back_name),
        Some(back_ip.clone()),
        "control: the name resolves before the wipe"
    );
    let before = network_object(&sb);
    let id = before["status"]["id"].as_str().unwrap().to_string();
    assert_eq!(orphan_mark(&before), None);
    let project = ok(sb.kubectl(&["get", "projects", "br", "-o", "json"], None));
    let mut project: Value = serde_json::from_str(&project).unwrap();
    let m = project["metadata"].as_object_mut().unwrap();
    m.retain(|k, _| k == "name" || k == "labels" || k == "annotations");
    project.as_object_mut().unwrap().remove("status");

    let mut ping = PingStream::start(&sb, "front-web-1", &back_ip, 20);
    ok(sb.kubectl(&["delete", "projects", "--all", "--wait=false"], None));
    // The controller saw the project go: the network is marked, not deleted.
    wait_for(
        "the network to be marked orphan",
        Duration::from_secs(15),
        || orphan_mark(&network_object(&sb)).is_some(),
    );
    let (mut lookups, mut failed) = (0, 0);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        lookups += 1;
        if common::resolve_a(&sb, "front-web-1", &back_name).as_ref() != Some(&back_ip) {
            failed += 1;
        }
    }
    assert_eq!(network_object(&sb)["status"]["id"], id.as_str());

    // Restored from the saved object: adopted, same identity.
    ok(sb.kubectl(
        &["apply", "--validate=false", "-f", "-"],
        Some(&project.to_string()),
    ));
    wait_for("the network to be adopted", Duration::from_secs(15), || {
        orphan_mark(&network_object(&sb)).is_none()
    });
    let after = network_object(&sb);
    assert_eq!(after["status"]["id"], id.as_str(), "same network id");
    assert_eq!(after["status"]["vni"], before["status"]["vni"], "same VNI");
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    // The project works again: a new container gets a name in the same zone.
    ok(sb.privnet(&["scale", "back", "web", "11"]));
    let zone = after["status"]["zone"].as_str().unwrap().to_string();
    let new_name = format!("11.web.back.{zone}");
    wait_for("the new container's name", Duration::from_secs(30), || {
        common::resolve_a(&sb, "front-web-1", &new_name).is_some()
    });
    let (sent, received) = ping.stop();
    println!(
        "BLAST project wipe: network {id} kept and adopted, {failed}/{lookups} lookups failed, {} of {sent} pings lost",
        sent - received
    );
    assert!(sent >= 50, "the ping stream ran ({sent} sent)");
    assert!(
        (sent - received) * 20 <= sent,
        "{} of {sent} pings lost through the project wipe",
        sent - received
    );
    assert_eq!(failed, 0, "{failed} of {lookups} lookups failed");
}
