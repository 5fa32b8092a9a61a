//! Sandbox scenarios: the same `Project` kind as the CRD plus a workload
//! list. Pure parsing and validation.
//!
//! ```yaml
//! nodes: 3
//! projects:
//!   - apiVersion: privnet.io/v1alpha1
//!     kind: Project
//!     metadata: {name: shop}
//!     spec: {namespaces: [shop]}
//! workloads:
//!   - project: shop
//!     application: shop-api
//!     processes: {web: 2, worker: 1}
//!     nodes: [n1, n2]        # optional placement, round-robin otherwise
//! stateTmpfs: {n1: 256k}     # optional: that node's agent state dir on a tmpfs this small
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use privnet_api::{Project, ProjectSpec};
use privnet_core::naming::{NamePart, validate_label};

/// Errors of a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// YAML is malformed.
    #[error("failed to parse the scenario: {0}")]
    Parse(String),
    /// A field is invalid.
    #[error("invalid scenario: {0}")]
    Invalid(String),
}

/// One application's containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    /// Project name.
    pub project: String,
    /// Application id (DNS label).
    pub application: String,
    /// Process type → container count.
    pub processes: BTreeMap<String, u32>,
    /// Node placement (round-robin over these; all nodes when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

/// A sandbox scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    /// Number of nodes (`n1`…`nN`).
    pub nodes: u32,
    /// Projects (CRD kind).
    pub projects: Vec<Project>,
    /// Workloads.
    #[serde(default)]
    pub workloads: Vec<Workload>,
    /// Nodes whose agent state directory is a tmpfs of the given size
    /// (`mount -t tmpfs -o size=<size>`, e.g. `256k`): fault injection
    /// fills it to test a full disk. Unmounted by `down`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub state_tmpfs: BTreeMap<String, String>,
}

impl Scenario {
    /// Parses and validates YAML.
    pub fn parse(text: &str) -> Result<Self, ScenarioError> {
        let s: Scenario =
            serde_yaml::from_str(text).map_err(|e| ScenarioError::Parse(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    /// Node names.
    pub fn node_names(&self) -> Vec<String> {
        (1..=self.nodes).map(|i| format!("n{i}")).collect()
    }

    /// Checks names, references and namespace ownership.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |m: String| Err(ScenarioError::Invalid(m));
        if !(1..=16).contains(&self.nodes) {
            return bad(format!("nodes must be 1..=16, got {}", self.nodes));
        }
        let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
        for p in &self.projects {
            let name = p.metadata.name.as_deref().unwrap_or_default();
            validate_label(NamePart::ApplicationId, name)
                .map_err(|e| ScenarioError::Invalid(format!("project name: {e}")))?;
            for ns in &p.spec.namespaces {
                if let Some(other) = owner.insert(ns, name) {
                    return bad(format!(
                        "namespace {ns:?} is claimed by projects {other:?} and {name:?}"
                    ));
                }
            }
        }
        let nodes = self.node_names();
        for w in &self.workloads {
            if !self
                .projects
                .iter()
                .any(|p| p.metadata.name.as_deref() == Some(&w.project))
            {
                return bad(format!(
                    "workload {:?} names unknown project {:?}",
                    w.application, w.project
                ));
            }
            validate_label(NamePart::ApplicationId, &w.application)
                .map_err(|e| ScenarioError::Invalid(e.to_string()))?;
            for t in w.processes.keys() {
                validate_label(NamePart::ProcessType, t)
                    .map_err(|e| ScenarioError::Invalid(e.to_string()))?;
            }
            if let Some(n) = w.nodes.iter().find(|n| !nodes.contains(n)) {
                return bad(format!(
                    "workload {:?} is placed on unknown node {n:?}",
                    w.application
                ));
            }
        }
        for (node, size) in &self.state_tmpfs {
            if !nodes.contains(node) {
                return bad(format!("stateTmpfs names unknown node {node:?}"));
            }
            let digits = size.trim_end_matches(['k', 'm', 'g']);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return bad(format!(
                    "stateTmpfs size {size:?} of {node}: a number of bytes, optionally suffixed k, m or g"
                ));
            }
        }
        let mut apps = BTreeMap::new();
        for w in &self.workloads {
            if apps.insert((&w.project, &w.application), ()).is_some() {
                return bad(format!(
                    "application {:?} appears twice in project {:?}",
                    w.application, w.project
                ));
            }
        }
        Ok(())
    }

    /// The built-in default: 3 nodes, 2 projects; in each an app with web ×2
    /// and worker ×1 plus a second app, spread across nodes.
    pub fn default_scenario() -> Self {
        let project = |name: &str| {
            let mut p = Project::new(
                name,
                ProjectSpec {
                    namespaces: vec![name.to_string()],
                    public_web: true,
                    network: None,
                },
            );
            p.metadata.name = Some(name.to_string());
            p
        };
        let wl = |project: &str, app: &str, procs: &[(&str, u32)]| Workload {
            project: project.into(),
            application: app.into(),
            processes: procs.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            nodes: vec![],
        };
        Scenario {
            nodes: 3,
            projects: vec![project("shop"), project("blog")],
            workloads: vec![
                wl("shop", "shop-api", &[("web", 2), ("worker", 1)]),
                wl("shop", "shop-db", &[("db", 1)]),
                wl("blog", "blog-web", &[("web", 2), ("worker", 1)]),
                wl("blog", "blog-cache", &[("cache", 1)]),
            ],
            state_tmpfs: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_scenario_is_valid_and_roundtrips() {
        let s = Scenario::default_scenario();
        s.validate().unwrap();
        let again = Scenario::parse(&serde_yaml::to_string(&s).unwrap()).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn conflicts_and_typos_are_clear_errors() {
        let mut s = Scenario::default_scenario();
        s.projects[1].spec.namespaces = vec!["shop".into()];
        let e = s.validate().unwrap_err().to_string();
        assert!(
            e.contains("namespace \"shop\" is claimed by projects"),
            "{e}"
        );
        let mut s = Scenario::default_scenario();
        s.workloads[0].nodes = vec!["n9".into()];
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("unknown node \"n9\"")
        );
        let e = Scenario::parse("nodes: 2\nprojects: []\nworkload: []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn a_state_tmpfs_names_a_node_and_a_size() {
        let ok = Scenario::parse("nodes: 2\nprojects: []\nstateTmpfs: {n1: 256k}\n").unwrap();
        assert_eq!(ok.state_tmpfs["n1"], "256k");
        for (text, why) in [
            ("{n3: 256k}", "unknown node \"n3\""),
            ("{n1: lots}", "a number of bytes"),
            ("{n1: k}", "a number of bytes"),
        ] {
            let e = Scenario::parse(&format!("nodes: 2\nprojects: []\nstateTmpfs: {text}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
