//! The dependency rule of docs/ARCHITECTURE.md, checked on the resolved
//! graph (`cargo metadata`), so a wrong-way dependency fails the suite:
//!
//! - `privnet-core` ← `privnet-api` ← {`privnet-agent`, `privnet-controller`};
//!   the sandbox may use them; nothing but the binary uses the sandbox;
//! - the agent and the controller never depend on each other;
//! - `privnet-core` pulls no tokio, kube, hyper, hickory or netlink, and the
//!   CNI plugin no kube, hyper or hickory, nor any other privnet crate than
//!   core and sys; `privnet-sys` (namespace thread, link helpers, atomic
//!   writes) depends on no other privnet crate and pulls no kube, hyper or hickory;
//! - test infrastructure (`privnet-testkit`) is never a normal dependency;
//! - the API emulation (`privnet-kubemu`) never reaches the agent's or the
//!   controller's dependency closure (the sandbox may use it).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// Normal (non-dev, non-build) dependency edges by package name.
fn normal_graph() -> BTreeMap<String, BTreeSet<String>> {
    let host = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("run rustc -vV");
    let host = String::from_utf8_lossy(&host.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc -vV names the host");
    // Only the host platform: every package resolved is then already built.
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let name_of: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let mut graph = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let from = name_of[node["id"].as_str().unwrap()].to_string();
        let deps: BTreeSet<String> = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| name_of[d["pkg"].as_str().unwrap()].to_string())
            .collect();
        graph.entry(from).or_insert_with(BTreeSet::new).extend(deps);
    }
    graph
}

fn closure(graph: &BTreeMap<String, BTreeSet<String>>, root: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![root.to_string()];
    while let Some(p) = todo.pop() {
        for d in graph.get(&p).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

fn privnet_deps(graph: &BTreeMap<String, BTreeSet<String>>, krate: &str) -> BTreeSet<String> {
    graph[krate]
        .iter()
        .filter(|d| d.starts_with("privnet"))
        .cloned()
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn forbidden_in(closure: &BTreeSet<String>, prefixes: &[&str]) -> Vec<String> {
    closure
        .iter()
        .filter(|d| prefixes.iter().any(|p| d.starts_with(p)))
        .cloned()
        .collect()
}

#[test]
fn workspace_crates_depend_only_downwards() {
    let g = normal_graph();
    assert_eq!(privnet_deps(&g, "privnet-core"), set(&[]));
    assert_eq!(privnet_deps(&g, "privnet-sys"), set(&[]));
    assert_eq!(privnet_deps(&g, "privnet-api"), set(&["privnet-core"]));
    assert_eq!(
        privnet_deps(&g, "privnet-cni"),
        set(&["privnet-core", "privnet-sys"])
    );
    assert_eq!(
        privnet_deps(&g, "privnet-agent"),
        set(&["privnet-core", "privnet-api", "privnet-sys"])
    );
    assert_eq!(
        privnet_deps(&g, "privnet-controller"),
        set(&["privnet-core", "privnet-api"])
    );
    for (krate, deps) in &g {
        if krate != "privnet" {
            assert!(
                !deps.contains("privnet-sandbox"),
                "{krate} depends on the sandbox"
            );
        }
        assert!(
            !deps.contains("privnet-testkit"),
            "{krate} has test infrastructure as a normal dependency"
        );
    }
    // A positive control: the rule sees edges that do exist.
    assert!(g["privnet"].contains("privnet-sandbox"));
}

#[test]
fn the_api_emulation_stays_out_of_production_crates() {
    let g = normal_graph();
    for krate in [
        "privnet-core",
        "privnet-api",
        "privnet-agent",
        "privnet-controller",
        "privnet-cni",
    ] {
        let deps = closure(&g, krate);
        assert!(
            !deps.contains("privnet-kubemu"),
            "{krate} links the API emulation"
        );
    }
    // Positive control: the emulation is a workspace crate the walk knows,
    // and the same walk finds what the emulation itself pulls.
    assert!(g.contains_key("privnet-kubemu"));
    assert!(closure(&g, "privnet-kubemu").contains("hyper"));
}

#[test]
fn core_and_plugin_stay_free_of_runtime_stacks() {
    let g = normal_graph();
    let core = closure(&g, "privnet-core");
    let bad = forbidden_in(
        &core,
        &[
            "tokio",
            "kube",
            "k8s-openapi",
            "hyper",
            "hickory",
            "rtnetlink",
            "netlink",
        ],
    );
    assert!(bad.is_empty(), "privnet-core pulls {bad:?}");
    for small in ["privnet-cni", "privnet-sys"] {
        let bad = forbidden_in(
            &closure(&g, small),
            &["kube", "k8s-openapi", "hyper", "hickory"],
        );
        assert!(bad.is_empty(), "{small} pulls {bad:?}");
    }
    // Positive control: the same walk finds kube under the agent.
    assert!(!forbidden_in(&closure(&g, "privnet-agent"), &["kube"]).is_empty());
}
