//! Pure readers of API objects that both the controller and the agent's
//! Kubernetes source need: one copy, next to the keys they read.

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{Resource, ResourceExt};
use privnet_core::rpc::Workload;
use privnet_core::view::{EndpointInfo, NetworkInfo, NodeInfo};
use privnet_core::zone::WEB_PROCESS_TYPE;

use crate::keys::{
    APPLICATION_LABEL, CONTAINER_NUMBER_ANNOTATION, PROCESS_TYPE_LABEL, VTEP_ANNOTATION,
    WG_ACCEPTED_KEYS_ANNOTATION, WG_ENDPOINT_ANNOTATION, WG_NEXT_PUBLIC_KEY_ANNOTATION,
    WG_PUBLIC_KEY_ANNOTATION,
};
use crate::{PrivateEndpointSpec, PrivateNetwork, Project};

/// The mesh entry of a Node: `None` until its agent published key and endpoint.
pub fn node_info(node: &Node) -> Option<NodeInfo> {
    let a = node.annotations();
    Some(NodeInfo {
        name: node.name_any(),
        public_key: a.get(WG_PUBLIC_KEY_ANNOTATION)?.clone(),
        endpoint: a.get(WG_ENDPOINT_ANNOTATION)?.parse().ok()?,
        vtep: a.get(VTEP_ANNOTATION).and_then(|v| v.parse().ok()),
        next_public_key: a
            .get(WG_NEXT_PUBLIC_KEY_ANNOTATION)
            .filter(|k| !k.is_empty())
            .cloned(),
        accepted_keys: a
            .get(WG_ACCEPTED_KEYS_ANNOTATION)
            .map(|v| parse_key_list(v))
            .unwrap_or_default(),
    })
}

/// The annotations an agent publishes for its node (key, endpoint, and
/// while rotations are under way its next key and accepted keys); an
/// annotation left out is removed by the server-side apply.
pub fn node_annotations(node: &NodeInfo) -> std::collections::BTreeMap<&'static str, String> {
    let mut out = std::collections::BTreeMap::from([
        (WG_PUBLIC_KEY_ANNOTATION, node.public_key.clone()),
        (WG_ENDPOINT_ANNOTATION, node.endpoint.to_string()),
    ]);
    if let Some(next) = &node.next_public_key {
        out.insert(WG_NEXT_PUBLIC_KEY_ANNOTATION, next.clone());
    }
    if !node.accepted_keys.is_empty() {
        out.insert(WG_ACCEPTED_KEYS_ANNOTATION, node.accepted_keys.join(","));
    }
    out
}

/// A comma-separated list of keys (base64 has no commas), blanks dropped.
fn parse_key_list(v: &str) -> Vec<String> {
    let mut keys: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The spec of the `PrivateEndpoint` object describing `ep`.
pub fn endpoint_spec(ep: &EndpointInfo) -> PrivateEndpointSpec {
    PrivateEndpointSpec {
        network_id: ep.network_id.clone(),
        application_id: ep.application_id.clone(),
        process_type: ep.process_type.clone(),
        container_number: ep.container_number,
        hostname: format!(
            "{}.{}.{}.{}.{}",
            ep.container_number,
            ep.process_type,
            ep.application_id,
            ep.network_id,
            privnet_core::naming::DEFAULT_DOMAIN
        ),
        ip: ep.ip.to_string(),
        mac: ep.mac.clone(),
        node: ep.node.clone(),
        container_id: ep.container_id.clone(),
        interface: ep.interface.clone(),
    }
}

/// The endpoint a `PrivateEndpoint` describes (`None` when its IP does not parse).
pub fn endpoint_info(spec: &PrivateEndpointSpec) -> Option<EndpointInfo> {
    Some(EndpointInfo {
        network_id: spec.network_id.clone(),
        application_id: spec.application_id.clone(),
        process_type: spec.process_type.clone(),
        container_number: spec.container_number,
        ip: spec.ip.parse().ok()?,
        mac: spec.mac.clone(),
        node: spec.node.clone(),
        container_id: spec.container_id.clone(),
        interface: spec.interface.clone(),
    })
}

/// A network is usable once the controller completed its status.
pub fn network_info(pn: &PrivateNetwork) -> Option<NetworkInfo> {
    let status = pn.status.as_ref()?;
    Some(NetworkInfo {
        id: status.id.clone()?,
        project: pn.spec.project.clone(),
        vni: status.vni?,
        subnet: pn.spec.subnet.parse().ok()?,
        mtu: pn.spec.mtu,
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

/// What a pod says about its workload: application and process type from
/// its labels (type `web` when unlabelled), the container number the
/// admission webhook annotated. `None` for pods without an application.
pub fn workload_of(pod: &Pod) -> Option<Workload> {
    let labels = pod.labels();
    Some(Workload {
        application_id: Some(labels.get(APPLICATION_LABEL)?.clone()),
        process_type: Some(
            labels
                .get(PROCESS_TYPE_LABEL)
                .cloned()
                .unwrap_or_else(|| WEB_PROCESS_TYPE.to_string()),
        ),
        container_number: pod
            .annotations()
            .get(CONTAINER_NUMBER_ANNOTATION)
            .and_then(|n| n.parse().ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_round_trips_through_its_annotations() {
        let info = NodeInfo {
            name: "n1".into(),
            public_key: "old=".into(),
            endpoint: "192.0.2.1:4797".parse().unwrap(),
            vtep: None,
            next_public_key: Some("new=".into()),
            accepted_keys: vec!["a=".into(), "b=".into()],
        };
        let annotations: std::collections::BTreeMap<String, String> = node_annotations(&info)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "n1", "annotations": annotations }
        }))
        .unwrap();
        assert_eq!(node_info(&node), Some(info.clone()));
        // Control: without a rotation, the two annotations are left out.
        let idle = NodeInfo {
            next_public_key: None,
            accepted_keys: Vec::new(),
            ..info
        };
        assert_eq!(node_annotations(&idle).len(), 2);
        assert_eq!(parse_key_list(" b=,a=,,a="), vec!["a=", "b="]);
    }

    fn pod(labels: serde_json::Value, annotations: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p", "labels": labels, "annotations": annotations }
        }))
        .unwrap()
    }

    #[test]
    fn a_pod_tells_its_workload() {
        let w = workload_of(&pod(
            serde_json::json!({ APPLICATION_LABEL: "api", PROCESS_TYPE_LABEL: "worker" }),
            serde_json::json!({ CONTAINER_NUMBER_ANNOTATION: "3" }),
        ))
        .unwrap();
        assert_eq!(
            (
                w.application_id.as_deref(),
                w.process_type.as_deref(),
                w.container_number
            ),
            (Some("api"), Some("worker"), Some(3))
        );
        let w = workload_of(&pod(
            serde_json::json!({ APPLICATION_LABEL: "api" }),
            serde_json::json!({}),
        ))
        .unwrap();
        assert_eq!(
            (w.process_type.as_deref(), w.container_number),
            (Some("web"), None)
        );
        assert_eq!(
            workload_of(&pod(serde_json::json!({}), serde_json::json!({}))),
            None
        );
    }
}
