//! The chart and the code cannot drift: every container of the rendered
//! chart (files written by `scripts/helm-check` with the Helm SDK: default
//! values, non-default values, chained attachment) that runs `privnet` is
//! run here with exactly its arguments and environment — the downward API
//! filled in and `$(VAR)` expanded as the kubelet does — plus
//! `--check-config`. An unknown flag or an invalid value fails the test.
//! Positive controls: a wrong argument and an unexpanded variable are
//! refused by the same binary.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

const PRIVNET: &str = "/usr/local/bin/privnet";

fn rendered(case: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/helm")
        .join(format!("rendered-{case}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): run scripts/helm-check first (it renders the chart with the Helm SDK)",
            path.display()
        )
    });
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// One container that runs privnet, as the chart gives it.
#[derive(Debug, Clone)]
struct Run {
    name: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
}

/// What the downward API would give (a fixed, plausible pod).
fn field_ref(path: &str) -> String {
    match path {
        "spec.nodeName" => "node-1".into(),
        "status.hostIP" => "192.0.2.10".into(),
        "metadata.name" => "privnet-controller-7d9f-abcde".into(),
        "metadata.namespace" => "privnet-system".into(),
        other => panic!("the chart uses fieldRef {other}: teach this test its value"),
    }
}

/// `$(VAR)` replaced by the container's variable, as the kubelet does (an
/// unknown variable stays as written; `$$` is a literal `$`).
fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(close) = tail.strip_prefix("$(").and_then(|t| t.find(')')) {
            let name = &tail[2..2 + close];
            match env.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&tail[..3 + close]),
            }
            rest = &tail[3 + close..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// Every container of every workload that runs the privnet binary.
fn privnet_runs(docs: &[Value]) -> Vec<Run> {
    let mut runs = Vec::new();
    for doc in docs {
        let pod = &doc["spec"]["template"]["spec"];
        if pod.is_null() {
            continue;
        }
        for list in ["initContainers", "containers"] {
            for c in pod[list].as_array().into_iter().flatten() {
                if strings(&c["command"]) != [PRIVNET] {
                    continue;
                }
                let mut env = BTreeMap::new();
                for e in c["env"].as_array().into_iter().flatten() {
                    let name = e["name"].as_str().unwrap().to_string();
                    let value = match (&e["value"], &e["valueFrom"]["fieldRef"]["fieldPath"]) {
                        (Value::String(v), _) => v.clone(),
                        (_, Value::String(path)) => field_ref(path),
                        _ => panic!("env {name}: only values and fieldRefs are modelled: {e}"),
                    };
                    env.insert(name, value);
                }
                let args = strings(&c["args"])
                    .iter()
                    .map(|a| expand(a, &env))
                    .collect();
                runs.push(Run {
                    name: format!(
                        "{}/{}",
                        doc["metadata"]["name"].as_str().unwrap(),
                        c["name"].as_str().unwrap()
                    ),
                    args,
                    env,
                });
            }
        }
    }
    runs
}

/// Runs the built binary as the container would, plus `--check-config`.
fn check(run: &Run) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_privnet"))
        .args(&run.args)
        .arg("--check-config")
        .env_clear()
        .envs(&run.env)
        .output()
        .expect("the privnet binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Checks every privnet container of `case`; returns their effective configurations.
fn all_valid(case: &str) -> BTreeMap<String, Value> {
    let runs = privnet_runs(&rendered(case));
    let mut configs = BTreeMap::new();
    for run in &runs {
        let (code, stdout, stderr) = check(run);
        assert_eq!(
            code, 0,
            "{case}: {} refused its chart arguments {:?}: {stderr}",
            run.name, run.args
        );
        let doc: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        assert_eq!(doc["valid"], true);
        configs.insert(run.name.clone(), doc["config"].clone());
    }
    configs
}

#[test]
fn default_values_run_as_rendered() {
    let c = all_valid("default");
    assert_eq!(
        c.keys().collect::<Vec<_>>(),
        [
            "privnet-agent/agent",
            "privnet-agent/install-cni",
            "privnet-controller/controller"
        ]
    );
    assert_eq!(
        c["privnet-controller/controller"]["attachment"]["mode"],
        "multus"
    );
    assert_eq!(
        c["privnet-controller/controller"]["identity"],
        "privnet-controller-7d9f-abcde"
    );
    assert_eq!(c["privnet-agent/agent"]["endpoint"], "192.0.2.10:4797");
    assert_eq!(c["privnet-agent/agent"]["node"], "node-1");
    assert_eq!(c["privnet-agent/install-cni"]["mode"], "multus");
    assert_eq!(c["privnet-agent/install-cni"]["once"], true);
}

#[test]
fn non_default_values_run_as_rendered() {
    let c = all_valid("custom");
    assert_eq!(c["privnet-controller/controller"]["envPrefix"], "ACME");
    assert_eq!(
        c["privnet-controller/controller"]["vniRange"],
        "2000000-2999999"
    );
    assert_eq!(c["privnet-agent/agent"]["wgPort"], 51999);
    assert_eq!(c["privnet-agent/agent"]["underlayMtu"], 9000);
    assert_eq!(
        c["privnet-agent/install-cni"]["confName"],
        "05-privnet.conflist"
    );
    assert_eq!(c["privnet-agent/install-cni"]["networkName"], "private");
}

#[test]
fn chained_attachment_runs_as_rendered() {
    let c = all_valid("chained");
    assert_eq!(
        c.keys().collect::<Vec<_>>(),
        [
            "privnet-agent/agent",
            "privnet-agent/cni-chain",
            "privnet-controller/controller"
        ],
        "a watching sidecar, no init container"
    );
    assert_eq!(
        c["privnet-controller/controller"]["attachment"]["mode"],
        "chained"
    );
    let chain = &c["privnet-agent/cni-chain"];
    assert_eq!(chain["mode"], "chained");
    assert_eq!(chain["once"], false);
    assert_eq!(chain["pollIntervalMs"], 250);
    assert_eq!(chain["entry"]["interfaceName"], "net9");
    assert_eq!(chain["entry"]["logLevel"], "debug");
}

#[test]
fn a_wrong_argument_is_refused() {
    let runs = privnet_runs(&rendered("default"));
    assert_eq!(runs.len(), 3);
    for run in &runs {
        // Positive control of the drift check: an unknown flag…
        let mut bad = run.clone();
        bad.args.push("--no-such-flag=1".into());
        let (code, _, stderr) = check(&bad);
        assert_eq!(code, 1, "{}: {stderr}", run.name);
        assert!(stderr.contains("--no-such-flag"), "{stderr}");
    }
    // …an invalid value…
    let controller = runs
        .iter()
        .find(|r| r.name.ends_with("/controller"))
        .unwrap();
    let mut bad = controller.clone();
    for a in &mut bad.args {
        if a.starts_with("--attach-mode=") {
            *a = "--attach-mode=bridge".into();
        }
    }
    let (code, _, stderr) = check(&bad);
    assert_eq!(code, 1, "{stderr}");
    // …and a variable the kubelet could not expand.
    let agent = runs.iter().find(|r| r.name.ends_with("/agent")).unwrap();
    let mut bad = agent.clone();
    bad.env.remove("HOST_IP");
    bad.args = strings(&serde_json::json!(agent.args))
        .into_iter()
        .map(|a| {
            if a.starts_with("--endpoint=") {
                "--endpoint=$(HOST_IP):4797".into()
            } else {
                a
            }
        })
        .collect();
    let (code, _, stderr) = check(&bad);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("$(HOST_IP)"), "{stderr}");
}

#[test]
fn expansion_follows_the_kubelet() {
    let env = BTreeMap::from([("A".to_string(), "x".to_string())]);
    assert_eq!(expand("$(A):1", &env), "x:1");
    assert_eq!(expand("$(B)-$$(A)-$", &env), "$(B)-$(A)-$");
}
