//! Scale up/down: names and FDB follow; 100 scale cycles leak no IP, veth,
//! namespace or claim.

use crate::common;

use common::Sandbox;

const SCENARIO: &str = r#"
nodes: 3
projects:
  - {apiVersion: privnet.io/v1alpha1, kind: Project, metadata: {name: sc}, spec: {namespaces: [sc]}}
workloads:
  - {project: sc, application: app, processes: {web: 3, worker: 1}}
"#;

/// Non-empty lines of a command that must succeed.
fn count_lines(out: std::process::Output) -> usize {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

#[test]
fn names_follow_scaling_and_nothing_leaks() {
    common::require_root!();
    let sb = Sandbox::up("k", Some(SCENARIO));
    let zone = sb.network("sc")["zone"].as_str().unwrap().to_string();
    let observers = ["app-web-1", "app-web-2", "app-web-3"]; // one per node

    // Up: the new container's name resolves everywhere and it is reachable.
    let out = sb.privnet(&["scale", "app", "worker", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = sb.container("app-worker-2");
    let ip = new["ip"].as_str().unwrap().to_string();
    for o in observers {
        assert_eq!(
            common::resolve_a(&sb, o, &format!("2.worker.app.{zone}")).as_deref(),
            Some(ip.as_str()),
            "from {o}"
        );
        // Reachability probes use `-c1 -w4` across the suite: up to four
        // echoes until the first reply, so one probe lost on a loaded
        // machine is not a failure but an unreachable peer still is.
        sb.exec_ok(o, &["ping", "-c1", "-w4", &ip]);
    }
    // Down: the name is gone everywhere.
    let out = sb.privnet(&["scale", "app", "worker", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for o in observers {
        assert_eq!(
            common::resolve_a(&sb, o, &format!("2.worker.app.{zone}")),
            None,
            "stale name seen from {o}"
        );
    }

    // 100 cycles, then compare what exists with the start.
    let status = sb.status();
    let count_state = || {
        let mut veths = 0;
        let mut netns = 0;
        for n in status["nodes"].as_array().unwrap() {
            let prefix = n["networkNetnsPrefix"].as_str().unwrap();
            for ns in std::fs::read_dir("/run/netns").unwrap().flatten() {
                let name = ns.file_name().to_string_lossy().into_owned();
                if name.starts_with(prefix) {
                    veths += count_lines(
                        sb.in_netns(&name, &["ip", "-o", "link", "show", "type", "veth"]),
                    );
                }
            }
        }
        for ns in std::fs::read_dir("/run/netns").unwrap().flatten() {
            if ns
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{}-c-", sb.name))
            {
                netns += 1;
            }
        }
        // Address (and, on the Kubernetes path, number) claims: files, or Leases.
        let claims = if status["api"] == "kube" {
            let out = sb.kubectl(
                &["get", "leases", "-n", "privnet-system", "-o", "name"],
                None,
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("/privnet-ip-") || l.contains("/privnet-num-"))
                .count()
        } else {
            std::fs::read_dir(format!(
                "{}/cluster/claims",
                status["root"].as_str().unwrap()
            ))
            .unwrap()
            .flatten()
            .map(|d| std::fs::read_dir(d.path()).unwrap().count())
            .sum::<usize>()
        };
        let records: usize = status["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                std::fs::read_dir(format!("{}/attachments", n["stateDir"].as_str().unwrap()))
                    .unwrap()
                    .count()
            })
            .sum();
        (veths, netns, claims, records)
    };
    // On the Kubernetes path each container also holds a number claim, and
    // the claim of the worker scaled away above is swept within seconds.
    let claims_per_container = if status["api"] == "kube" { 2 } else { 1 };
    let expected = (4, 4, 4 * claims_per_container, 4);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut start = count_state();
    while start != expected && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
        start = count_state();
    }
    assert_eq!(
        start, expected,
        "one veth, namespace, claim and record per container"
    );
    for i in 0..100 {
        let up = sb.privnet(&["scale", "app", "web", "5"]);
        assert!(
            up.status.success(),
            "cycle {i}: {}",
            String::from_utf8_lossy(&up.stderr)
        );
        let down = sb.privnet(&["scale", "app", "web", "3"]);
        assert!(
            down.status.success(),
            "cycle {i}: {}",
            String::from_utf8_lossy(&down.stderr)
        );
    }
    // Number claims of deleted pods are swept (Kubernetes path: within
    // seconds); everything else is gone when `scale` returns.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut now = count_state();
    while now != start && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
        now = count_state();
    }
    assert_eq!(
        now, start,
        "leak after 100 scale cycles (veths, netns, claims, records)"
    );
    for o in observers {
        assert_eq!(
            common::resolve_a(&sb, o, &format!("5.web.app.{zone}")),
            None
        );
    }

    // A large type: more A records than fit in a 512-byte datagram; the
    // responder truncates and the full set comes over TCP.
    let out = sb.privnet(&["scale", "app", "web", "40"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sb.exec_ok(
        "app-web-1",
        &["host", "-t", "A", &format!("web.app.{zone}")],
    );
    assert_eq!(
        out.lines().filter(|l| l.contains(" has address ")).count(),
        40,
        "{out}"
    );
}
