//! The built-in kinds privnet touches.

use super::Resource;

fn res(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    status: bool,
    short: &[&str],
) -> Resource {
    Resource {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        status_subresource: status,
        schema: None,
        columns: Vec::new(),
        categories: Vec::new(),
    }
}

fn in_all(mut r: Resource, columns: &[(&str, &str)]) -> Resource {
    r.categories = vec!["all".into()];
    r.columns = columns
        .iter()
        .map(|(n, p)| (n.to_string(), p.to_string()))
        .collect();
    r
}

/// Namespace, Pod, Node, ConfigMap, Secret, Event (core and events.k8s.io),
/// Service, ServiceAccount, Lease, NetworkPolicy,
/// MutatingWebhookConfiguration, NetworkAttachmentDefinition and
/// CustomResourceDefinition.
pub fn builtins() -> Vec<Resource> {
    vec![
        res("", "v1", "Namespace", "namespaces", false, true, &["ns"]),
        in_all(
            res("", "v1", "Pod", "pods", true, true, &["po"]),
            &[
                ("Status", ".status.phase"),
                ("IP", ".status.podIP"),
                ("Node", ".spec.nodeName"),
            ],
        ),
        res("", "v1", "Node", "nodes", false, true, &["no"]),
        res("", "v1", "ConfigMap", "configmaps", true, false, &["cm"]),
        res("", "v1", "Secret", "secrets", true, false, &[]),
        res("", "v1", "Event", "events", true, false, &["ev"]),
        in_all(
            res("", "v1", "Service", "services", true, true, &["svc"]),
            &[("Type", ".spec.type"), ("Cluster-IP", ".spec.clusterIP")],
        ),
        res(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            true,
            false,
            &["sa"],
        ),
        res(
            "events.k8s.io",
            "v1",
            "Event",
            "events",
            true,
            false,
            &["ev"],
        ),
        res(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            true,
            false,
            &[],
        ),
        res(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
            true,
            false,
            &["netpol"],
        ),
        res(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            false,
            false,
            &[],
        ),
        res(
            "k8s.cni.cncf.io",
            "v1",
            "NetworkAttachmentDefinition",
            "network-attachment-definitions",
            true,
            false,
            &["net-attach-def"],
        ),
        res(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            true,
            &["crd", "crds"],
        ),
    ]
}
