//! The objects the sandbox puts in its API server (pure): what `helm
//! install` would (the controller's namespace, the webhook configuration
//! rendered from the chart's default values), the nodes the kubelets
//! register, and the scenario's namespaces, projects and pods.

use serde_json::{Value, json};

use privnet_api::keys::{APPLICATION_LABEL, PROCESS_TYPE_LABEL};

/// Namespace of the controller (the chart's release namespace).
pub const SYSTEM_NAMESPACE: &str = "privnet-system";
/// The webhook's Service (`<release>-webhook` with release `privnet`).
pub const WEBHOOK_SERVICE: &str = "privnet-webhook";
/// Annotation marking the pods the sandbox made from its scenario.
pub const SCENARIO_LABEL: &str = "sandbox.privnet.io/scenario";

/// The webhook Service's host name, as the API server resolves it.
pub fn webhook_host() -> String {
    format!("{WEBHOOK_SERVICE}.{SYSTEM_NAMESPACE}.svc")
}

/// The chart's MutatingWebhookConfiguration (charts/privnet/templates/
/// webhook.yaml with the default values: failurePolicy Fail, 10 s).
pub fn webhook_configuration(ca_bundle_b64: &str) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": { "name": "privnet" },
        "webhooks": [{
            "name": "pods.privnet.io",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "NoneOnDryRun",
            "failurePolicy": "Fail",
            "timeoutSeconds": 10,
            "reinvocationPolicy": "Never",
            "clientConfig": {
                "service": { "name": WEBHOOK_SERVICE, "namespace": SYSTEM_NAMESPACE, "path": "/mutate", "port": 443 },
                "caBundle": ca_bundle_b64,
            },
            "rules": [{ "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"], "scope": "Namespaced" }],
            "namespaceSelector": { "matchExpressions": [
                { "key": "privnet.io/project", "operator": "Exists" },
                { "key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [SYSTEM_NAMESPACE, "kube-system"] },
            ]},
            "objectSelector": { "matchExpressions": [
                { "key": APPLICATION_LABEL, "operator": "Exists" },
            ]},
        }],
    })
}

/// A namespace.
pub fn namespace(name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } })
}

/// The Node a kubelet registers: its underlay address as InternalIP.
pub fn node(name: &str, address: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name, "labels": { "kubernetes.io/hostname": name, "kubernetes.io/os": "linux" } },
        "status": { "addresses": [{ "type": "InternalIP", "address": address }, { "type": "Hostname", "address": name }] },
    })
}

/// A scenario pod: `<app>-<type>-<k>` in the project's namespace, labelled
/// with its application and process type, placed on `node` (empty: left to
/// the scheduler).
pub fn pod(
    namespace: &str,
    name: &str,
    application: &str,
    process_type: &str,
    node: &str,
) -> Value {
    let mut spec = json!({ "containers": [{ "name": "app", "image": "sandbox" }] });
    if !node.is_empty() {
        spec["nodeName"] = json!(node);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": { APPLICATION_LABEL: application, PROCESS_TYPE_LABEL: process_type, SCENARIO_LABEL: "true" },
        },
        "spec": spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_configuration_is_the_charts() {
        let chart = include_str!("../../../charts/privnet/templates/webhook.yaml");
        let w = &webhook_configuration("Q0E=")["webhooks"][0];
        // The values that matter, as the chart spells them.
        for needle in [
            "name: pods.privnet.io",
            "sideEffects: NoneOnDryRun",
            "path: /mutate",
            "{key: privnet.io/project, operator: Exists}",
            "{key: privnet.io/application, operator: Exists}",
        ] {
            assert!(chart.contains(needle), "the chart lost {needle:?}");
        }
        assert_eq!(w["name"], "pods.privnet.io");
        assert_eq!(w["sideEffects"], "NoneOnDryRun");
        assert_eq!(w["clientConfig"]["service"]["path"], "/mutate");
        assert_eq!(w["clientConfig"]["caBundle"], "Q0E=");
        let values = include_str!("../../../charts/privnet/values.yaml");
        assert!(values.contains("failurePolicy: Fail") && values.contains("timeoutSeconds: 10"));
        assert_eq!(w["failurePolicy"], "Fail");
        assert_eq!(w["timeoutSeconds"], 10);
    }

    #[test]
    fn scenario_pods_carry_their_workload() {
        let p = pod("shop", "shop-api-web-1", "shop-api", "web", "n1");
        assert_eq!(p["metadata"]["labels"][APPLICATION_LABEL], "shop-api");
        assert_eq!(p["metadata"]["labels"][PROCESS_TYPE_LABEL], "web");
        assert_eq!(p["spec"]["nodeName"], "n1");
        assert!(
            pod("shop", "x", "a", "web", "")["spec"]
                .get("nodeName")
                .is_none()
        );
    }
}
