//! Pure readers of API objects that both the controller and the agent's
//! Kubernetes source need: one copy, next to the keys they read.

use k8s_openapi::api::core::v1::Node;
use kube::{Resource, ResourceExt};
use privnet_core::view::NodeInfo;

use crate::Project;
use crate::keys::{VTEP_ANNOTATION, WG_ENDPOINT_ANNOTATION, WG_PUBLIC_KEY_ANNOTATION};

/// The mesh entry of a Node: `None` until its agent published key and endpoint.
pub fn node_info(node: &Node) -> Option<NodeInfo> {
    let a = node.annotations();
    Some(NodeInfo {
        name: node.name_any(),
        public_key: a.get(WG_PUBLIC_KEY_ANNOTATION)?.clone(),
        endpoint: a.get(WG_ENDPOINT_ANNOTATION)?.parse().ok()?,
        vtep: a.get(VTEP_ANNOTATION).and_then(|v| v.parse().ok()),
    })
}

/// A namespace listed by this project but held by an earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceConflict {
    /// The namespace.
    pub namespace: String,
    /// The project holding it.
    pub holder: String,
}

/// Conflicts of `project` among `all` projects: a namespace belongs to the
/// project that listed it first (creation time, then name); every later one
/// gets a conflict.
pub fn namespace_conflicts(project: &Project, all: &[Project]) -> Vec<NamespaceConflict> {
    let key = |p: &Project| {
        (
            p.meta().creation_timestamp.as_ref().map(|t| t.0),
            p.name_any(),
        )
    };
    let mine = key(project);
    let mut out = Vec::new();
    for ns in &project.spec.namespaces {
        let earlier = all
            .iter()
            .filter(|o| o.name_any() != project.name_any() && o.spec.namespaces.contains(ns))
            .filter(|o| key(o) < mine)
            .min_by_key(|o| key(o));
        if let Some(holder) = earlier {
            out.push(NamespaceConflict {
                namespace: ns.clone(),
                holder: holder.name_any(),
            });
        }
    }
    out
}

/// The namespaces `project` really holds (its list minus conflicts).
pub fn held_namespaces(project: &Project, conflicts: &[NamespaceConflict]) -> Vec<String> {
    project
        .spec
        .namespaces
        .iter()
        .filter(|ns| !conflicts.iter().any(|c| &c.namespace == *ns))
        .cloned()
        .collect()
}
