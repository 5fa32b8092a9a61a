//! The Kubernetes path (`sandbox up --api kube`), driven with the real
//! `kubectl`: the emulated API server, two replicas of the real controller
//! (leader election, admission webhook), agents on their Kubernetes source
//! and the sandbox's kubelets invoking the plugin as containerd + Multus do.
//! Every negative check has its positive control in the same test.

use crate::common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::Sandbox;
use serde_json::Value;

const SCENARIO: &str = r#"
nodes: 2
projects:
  - {apiVersion: privnet.io/v1alpha1, kind: Project, metadata: {name: shop}, spec: {namespaces: [shop]}}
workloads:
  - {project: shop, application: shop-api, processes: {web: 1}, nodes: [n1]}
"#;

/// The controllers' lease in the sandbox (`ops::LEASE_SECONDS`).
const LEASE: Duration = Duration::from_secs(6);

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "command failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `f` every 50 ms until it answers or `timeout` passes.
fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pod_yaml(ns: &str, name: &str, app: Option<&str>, node: &str) -> String {
    let labels = app.map_or_else(String::new, |a| {
        format!("labels: {{privnet.io/application: {a}, privnet.io/process-type: web}}")
    });
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, {labels}}}\nspec: {{nodeName: {node}, containers: [{{name: app, image: sandbox}}]}}\n"
    )
}

/// The container of pod `name` once its kubelet runs it.
fn running(sb: &Sandbox, name: &str) -> Value {
    wait_for(
        &format!("pod {name} to run"),
        Duration::from_secs(20),
        || sb.containers().into_iter().find(|c| c["name"] == name),
    )
}

fn resolve(sb: &Sandbox, from: &str, name: &str) -> Option<String> {
    let out = sb.exec(from, &["host", "-t", "A", name]);
    let t = String::from_utf8_lossy(&out.stdout).into_owned();
    t.lines()
        .find_map(|l| l.split(" has address ").nth(1).map(str::to_string))
}

/// Leases of the controller's namespace: (name, holder).
fn leases(sb: &Sandbox) -> Vec<(String, String)> {
    let out = ok(sb.kubectl(
        &["get", "leases", "-n", "privnet-system", "-o", "json"],
        None,
    ));
    let v: Value = serde_json::from_str(&out).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                l["spec"]["holderIdentity"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn kubectl_pod_is_attached_named_has_its_variables_and_is_collected() {
    common::require_root!();
    let sb = Sandbox::up_kube("kp", Some(SCENARIO));
    ok(sb.kubectl(
        &["apply", "-f", "-"],
        Some(&pod_yaml("shop", "extra", Some("shop-api"), "n2")),
    ));
    let c = running(&sb, "extra");
    let ip = c["ip"].as_str().unwrap().to_string();
    assert!(!ip.is_empty(), "the pod has a private address: {c}");
    // kubectl sees it Running with that address.
    let pod: Value = serde_json::from_str(&ok(
        sb.kubectl(&["get", "pod", "-n", "shop", "extra", "-o", "json"], None)
    ))
    .unwrap();
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(pod["status"]["podIP"], ip.as_str());
    // Attached: pingable from the scenario's pod on the other node.
    ok(sb.exec("shop-api-web-1", &["ping", "-c", "1", "-W", "2", &ip]));
    // Named: its hostname resolves from the other node.
    let hostname = c["hostname"].as_str().unwrap().to_string();
    let got = wait_for("the new name to resolve", Duration::from_secs(5), || {
        resolve(&sb, "shop-api-web-1", &hostname)
    });
    assert_eq!(got, ip);
    // Its variables, from the admitted spec.
    let env = ok(sb.exec("extra", &["env"]));
    assert!(env.contains("SCALINGO_APPLICATION_ID=shop-api"), "{env}");
    assert!(
        env.contains(&format!("SCALINGO_PRIVATE_HOSTNAME={hostname}")),
        "{env}"
    );
    // It resolves a private name and a cluster name (the responder forwards
    // to the cluster DNS stand-in), and not a cluster name that does not exist.
    let web1 = sb.container("shop-api-web-1");
    assert_eq!(
        resolve(&sb, "extra", web1["hostname"].as_str().unwrap()).as_deref(),
        web1["ip"].as_str()
    );
    assert_eq!(
        resolve(&sb, "extra", "kubernetes.default.svc.cluster.local").as_deref(),
        Some("10.96.0.1")
    );
    assert_eq!(
        resolve(&sb, "extra", "kubernetes.default").as_deref(),
        Some("10.96.0.1"),
        "the cluster's search path is kept"
    );
    assert_eq!(
        resolve(&sb, "extra", "nothing.default.svc.cluster.local"),
        None
    );
    // Its claims exist while it runs…
    let holder = "shop/extra";
    let ip_claim = format!("-{}", ip.replace('.', "-"));
    let claims = leases(&sb);
    assert!(
        claims.iter().any(|(_, h)| h == holder),
        "a number claim held by the pod: {claims:?}"
    );
    assert!(
        claims
            .iter()
            .any(|(n, _)| n.starts_with("privnet-ip-") && n.ends_with(&ip_claim)),
        "an address claim: {claims:?}"
    );
    // …and go with it, as do its container and its name.
    ok(sb.kubectl(&["delete", "pod", "-n", "shop", "extra"], None));
    wait_for("the container to go", Duration::from_secs(10), || {
        (!sb.containers().iter().any(|c| c["name"] == "extra")).then_some(())
    });
    assert!(
        !std::path::Path::new(&format!("/run/netns/{}", c["netns"].as_str().unwrap())).exists(),
        "its namespace is removed"
    );
    wait_for("the name to go", Duration::from_secs(10), || {
        resolve(&sb, "shop-api-web-1", &hostname)
            .is_none()
            .then_some(())
    });
    wait_for(
        "the claims to be collected",
        Duration::from_secs(20),
        || {
            let claims = leases(&sb);
            let left = claims.iter().any(|(n, h)| {
                h == holder || (n.starts_with("privnet-ip-") && n.ends_with(&ip_claim))
            });
            (!left).then_some(())
        },
    );
    // Positive control: the scenario pod's claims are still there.
    assert!(leases(&sb).iter().any(|(_, h)| h == "shop/shop-api-web-1"));
}

#[test]
fn invalid_project_is_refused_and_server_dry_run_claims_nothing() {
    common::require_root!();
    let sb = Sandbox::up_kube("kv", Some(SCENARIO));
    let project = |name: &str, subnet: &str| {
        format!(
            "apiVersion: privnet.io/v1alpha1\nkind: Project\nmetadata: {{name: {name}}}\nspec: {{namespaces: [{name}], network: {{subnet: {subnet}}}}}\n"
        )
    };
    let out = sb.kubectl(&["apply", "-f", "-"], Some(&project("bad", "300.1.2.0/24")));
    assert!(!out.status.success(), "an invalid Project is refused");
    assert!(
        text(&out).contains("subnet octets must be 0-255"),
        "with the CEL rule's message: {}",
        text(&out)
    );
    let out = sb.kubectl(&["get", "project", "bad"], None);
    assert!(!out.status.success(), "nothing was stored");
    // Positive control: the same Project with a valid subnet is accepted.
    ok(sb.kubectl(
        &["apply", "-f", "-"],
        Some(&project("good", "10.250.0.0/24")),
    ));
    ok(sb.kubectl(&["get", "project", "good"], None));

    // A server-side dry run goes through the webhook (the answer carries
    // the number) but creates and claims nothing.
    let before = leases(&sb);
    let yaml = pod_yaml("shop", "dry", Some("shop-api"), "n2");
    let out = ok(sb.kubectl(
        &["apply", "--dry-run=server", "-o", "json", "-f", "-"],
        Some(&yaml),
    ));
    let previewed: Value = serde_json::from_str(&out).unwrap();
    assert!(
        previewed["metadata"]["annotations"]["privnet.io/container-number"].is_string(),
        "the dry run was admitted by the webhook: {out}"
    );
    let out = sb.kubectl(&["get", "pod", "-n", "shop", "dry"], None);
    assert!(!out.status.success(), "the dry run created nothing");
    assert_eq!(leases(&sb), before, "the dry run claimed nothing");
    assert!(!sb.containers().iter().any(|c| c["name"] == "dry"));
    // Positive control: the same apply for real creates, claims and runs.
    ok(sb.kubectl(&["apply", "-f", "-"], Some(&yaml)));
    running(&sb, "dry");
    assert!(leases(&sb).iter().any(|(_, h)| h == "shop/dry"));
}

#[test]
fn webhook_down_refuses_project_pods_only_and_leaves_nothing_half_attached() {
    common::require_root!();
    let sb = Sandbox::up_kube("kw", Some(SCENARIO));
    // Positive control first: with the webhook up a project pod is admitted.
    ok(sb.kubectl(
        &["apply", "-f", "-"],
        Some(&pod_yaml("shop", "before", Some("shop-api"), "n2")),
    ));
    assert!(!running(&sb, "before")["ip"].as_str().unwrap().is_empty());
    for replica in ["0", "1"] {
        ok(sb.privnet(&["controller", replica, "kill"]));
    }
    // Outside project namespaces: admitted (the webhook's selectors skip it).
    ok(sb.kubectl(
        &["apply", "-f", "-"],
        Some(&pod_yaml("default", "outside", Some("shop-api"), "n2")),
    ));
    let outside = running(&sb, "outside");
    assert_eq!(outside["ip"], "", "no private network outside projects");
    // A project pod: refused by failurePolicy Fail, and nothing of it exists.
    let out = sb.kubectl(
        &["apply", "-f", "-"],
        Some(&pod_yaml("shop", "refused", Some("shop-api"), "n2")),
    );
    assert!(!out.status.success(), "a project pod is refused");
    assert!(
        text(&out).contains("failed calling webhook"),
        "{}",
        text(&out)
    );
    assert!(
        !sb.kubectl(&["get", "pod", "-n", "shop", "refused"], None)
            .status
            .success()
    );
    assert!(!sb.containers().iter().any(|c| c["name"] == "refused"));
    let netns = std::fs::read_dir("/run/netns")
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains("-c-shop-refused"));
    assert!(!netns, "no half-attached container");
    // The webhook back: the same pod is admitted and attached.
    ok(sb.privnet(&["controller", "0", "start"]));
    let yaml = pod_yaml("shop", "refused", Some("shop-api"), "n2");
    wait_for(
        "the webhook to admit again",
        Duration::from_secs(15),
        || {
            sb.kubectl(&["apply", "-f", "-"], Some(&yaml))
                .status
                .success()
                .then_some(())
        },
    );
    assert!(!running(&sb, "refused")["ip"].as_str().unwrap().is_empty());
}

#[test]
fn killed_leader_is_replaced_within_the_lease_and_numbers_stay_unique() {
    common::require_root!();
    let sb = Sandbox::up_kube("kl", Some(SCENARIO));
    let holder = |sb: &Sandbox| {
        leases(sb)
            .into_iter()
            .find(|(n, _)| n == "privnet-controller")
            .map(|(_, h)| h)
            .unwrap_or_default()
    };
    let leader = holder(&sb);
    let status = sb.status();
    let replicas = status["controllers"].as_array().unwrap();
    let me = replicas
        .iter()
        .find(|c| c["name"] == leader.as_str())
        .unwrap_or_else(|| panic!("the leader {leader:?} is one of {replicas:?}"));
    let pid = me["pid"].as_u64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed = Instant::now();
    let next = wait_for("another leader", LEASE * 3, || {
        let h = holder(&sb);
        (!h.is_empty() && h != leader).then_some(h)
    });
    let took = killed.elapsed();
    eprintln!("leader {leader} killed; {next} leads after {took:?}");
    // The killed leader renewed at most one retry period (lease × 2/15) before.
    assert!(
        took <= LEASE + LEASE * 2 / 15 + Duration::from_millis(500),
        "the other replica leads within the lease duration ({took:?})"
    );
    // Pods admitted across the failover get distinct numbers.
    ok(sb.privnet(&["scale", "shop-api", "web", "4"]));
    let out = ok(sb.kubectl(&["get", "pods", "-n", "shop", "-o", "json"], None));
    let pods: Value = serde_json::from_str(&out).unwrap();
    let mut numbers: Vec<String> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["metadata"]["annotations"]["privnet.io/container-number"]
                .as_str()
                .expect("every pod has its number")
                .to_string()
        })
        .collect();
    assert_eq!(numbers.len(), 4);
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers.len(), 4, "no number handed out twice: {numbers:?}");
}
