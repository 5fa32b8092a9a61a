//! The scenario's pods through the API.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::kube::client::Cluster;
use crate::kube::objects;
use crate::ops::SandboxError;
use crate::ops::workloads::desired_containers;
use crate::scenario::Scenario;
use crate::state::{SandboxState, root_of};

/// Creates the scenario's missing pods and deletes its extra ones, then
/// waits until the kubelets run exactly those.
pub(super) fn converge_pods(
    state: &mut SandboxState,
    cluster: &Cluster,
    scenario: &Scenario,
    timeout: Duration,
) -> Result<(), SandboxError> {
    let namespace_of = |project: &str| {
        scenario
            .projects
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(project))
            .and_then(|p| p.spec.namespaces.first().cloned())
            .unwrap_or_else(|| project.to_string())
    };
    let desired: Vec<(String, String)> = desired_containers(scenario)
        .iter()
        .map(|c| {
            let name = format!("{}-{}-{}", c.application, c.process_type, c.number);
            let ns = namespace_of(&c.project);
            let pod = objects::pod(&ns, &name, &c.application, &c.process_type, &c.node);
            (
                format!("{ns}/{name}"),
                serde_json::to_string(&pod).expect("json"),
            )
        })
        .collect();
    let wanted: BTreeSet<&str> = desired.iter().map(|(k, _)| k.as_str()).collect();
    let existing = cluster.list(
        &json!({"apiVersion": "v1", "kind": "Pod"}),
        objects::SCENARIO_LABEL,
    )?;
    let key_of = |p: &Value| {
        format!(
            "{}/{}",
            p["metadata"]["namespace"].as_str().unwrap_or_default(),
            p["metadata"]["name"].as_str().unwrap_or_default()
        )
    };
    let have: BTreeSet<String> = existing.iter().map(key_of).collect();
    for pod in &existing {
        if !wanted.contains(key_of(pod).as_str()) {
            cluster.delete(pod)?;
        }
    }
    // Only the missing ones: creating an existing pod still goes through
    // admission (as on a real API server), which would claim a number.
    for (key, text) in &desired {
        if !have.contains(key) {
            cluster.create(&serde_json::from_str(text).expect("json"))?;
        }
    }
    // The kubelets run exactly the wanted scenario pods (plus any others).
    let deadline = Instant::now() + timeout;
    let root = root_of(&state.name);
    loop {
        let running: BTreeSet<String> = crate::kube::records::containers(&root)
            .into_iter()
            .map(|c| format!("{}/{}", c.namespace, c.name))
            .collect();
        let extra = existing.iter().any(|p| {
            let key = key_of(p);
            !wanted.contains(key.as_str()) && running.contains(&key)
        });
        let missing = wanted.iter().find(|k| !running.contains(**k));
        if missing.is_none() && !extra {
            *state = SandboxState::load(&state.name)?;
            return Ok(());
        }
        if Instant::now() > deadline {
            let why = missing.map_or_else(
                || "deleted pods still run".to_string(),
                |m| format!("pod {m} is not running"),
            );
            return Err(SandboxError::Timeout(format!(
                "{why} (see {}/cluster.log)",
                root.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
