//! What the kubelet role reads from a pod (pure): the Multus networks it
//! asks for, the `CNI_ARGS` a runtime passes, its resolv.conf and its
//! environment, from the pod as admission left it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use serde_json::Value;

/// Multus' pod annotation listing secondary networks.
pub const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";

/// One network of the networks annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRef {
    /// Namespace of its NetworkAttachmentDefinition (the pod's by default).
    pub namespace: String,
    /// Name of the NetworkAttachmentDefinition.
    pub name: String,
    /// Interface inside the pod (Multus numbers them `net1`… when absent).
    pub interface: String,
}

/// The networks a pod asks Multus for, in order: the JSON list form or the
/// comma-separated short form `[namespace/]name[@interface]`.
pub fn networks_of(pod: &Pod) -> Result<Vec<NetworkRef>, String> {
    let ns = pod.namespace().unwrap_or_default();
    let Some(text) = pod
        .annotations()
        .get(NETWORKS_ANNOTATION)
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
    else {
        return Ok(Vec::new());
    };
    let default_if = |i: usize| format!("net{}", i + 1);
    if text.starts_with('[') {
        let list: Vec<Value> = serde_json::from_str(text)
            .map_err(|e| format!("failed to parse {NETWORKS_ANNOTATION}: {e}"))?;
        return Ok(list
            .iter()
            .enumerate()
            .map(|(i, n)| NetworkRef {
                namespace: n["namespace"].as_str().unwrap_or(&ns).to_string(),
                name: n["name"].as_str().unwrap_or_default().to_string(),
                interface: n["interface"]
                    .as_str()
                    .map_or_else(|| default_if(i), str::to_string),
            })
            .collect());
    }
    Ok(text
        .split(',')
        .enumerate()
        .map(|(i, item)| {
            let (path, interface) = match item.trim().split_once('@') {
                Some((p, i)) => (p, i.to_string()),
                None => (item.trim(), default_if(i)),
            };
            let (namespace, name) = path.split_once('/').unwrap_or((&ns, path));
            NetworkRef {
                namespace: namespace.to_string(),
                name: name.to_string(),
                interface,
            }
        })
        .collect())
}

/// The `CNI_ARGS` containerd (through Multus) passes for a pod.
pub fn cni_args(pod: &Pod, infra_container_id: &str) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={infra_container_id};K8S_POD_UID={}",
        pod.namespace().unwrap_or_default(),
        pod.name_any(),
        pod.uid().unwrap_or_default()
    )
}

/// The pod's resolv.conf as the kubelet writes it: `dnsPolicy: None` takes
/// `dnsConfig` alone; `ClusterFirst` (the default) asks `cluster_dns` with
/// the cluster's search path and `ndots:5`, `dnsConfig` adding to it.
pub fn resolv_conf(pod: &Pod, cluster_dns: &str, cluster_domain: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let config = spec.dns_config.unwrap_or_default();
    let ns = pod.namespace().unwrap_or_default();
    let (mut servers, mut searches, mut options) = match spec.dns_policy.as_deref() {
        Some("None") => (Vec::new(), Vec::new(), Vec::new()),
        _ => (
            vec![cluster_dns.to_string()],
            vec![
                format!("{ns}.svc.{cluster_domain}"),
                format!("svc.{cluster_domain}"),
                cluster_domain.to_string(),
            ],
            vec![("ndots".to_string(), Some("5".to_string()))],
        ),
    };
    servers.extend(config.nameservers.unwrap_or_default());
    for s in config.searches.unwrap_or_default() {
        if !searches.contains(&s) {
            searches.push(s);
        }
    }
    for o in config.options.unwrap_or_default() {
        let name = o.name.unwrap_or_default();
        options.retain(|(n, _)| *n != name);
        options.push((name, o.value));
    }
    let mut text = String::new();
    for s in servers {
        text.push_str(&format!("nameserver {s}\n"));
    }
    if !searches.is_empty() {
        text.push_str(&format!("search {}\n", searches.join(" ")));
    }
    if !options.is_empty() {
        let opts: Vec<String> = options
            .into_iter()
            .map(|(n, v)| v.map_or(n.clone(), |v| format!("{n}:{v}")))
            .collect();
        text.push_str(&format!("options {}\n", opts.join(" ")));
    }
    text
}

/// The environment of the pod's first container: literal values only (what
/// the webhook sets; references to Secrets and fields are not resolved).
pub fn env_of(pod: &Pod) -> BTreeMap<String, String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.env.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| Some((e.name, e.value?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn both_forms_of_the_networks_annotation_are_read() {
        let p = pod(
            json!({"metadata": {"name": "a", "namespace": "shop", "annotations": {
            NETWORKS_ANNOTATION: "[{\"name\":\"privnet\",\"interface\":\"eth1\"}]"}}}),
        );
        assert_eq!(
            networks_of(&p).unwrap(),
            vec![NetworkRef {
                namespace: "shop".into(),
                name: "privnet".into(),
                interface: "eth1".into()
            }]
        );
        let p = pod(
            json!({"metadata": {"name": "a", "namespace": "shop", "annotations": {
            NETWORKS_ANNOTATION: "other/macvlan, privnet@eth1"}}}),
        );
        let n = networks_of(&p).unwrap();
        assert_eq!(
            (
                n[0].namespace.as_str(),
                n[0].name.as_str(),
                n[0].interface.as_str()
            ),
            ("other", "macvlan", "net1")
        );
        assert_eq!(
            (n[1].name.as_str(), n[1].interface.as_str()),
            ("privnet", "eth1")
        );
        let p = pod(json!({"metadata": {"name": "a", "namespace": "shop"}}));
        assert!(networks_of(&p).unwrap().is_empty());
        let p = pod(json!({"metadata": {"name": "a", "annotations": {NETWORKS_ANNOTATION: "[x"}}}));
        assert!(networks_of(&p).is_err());
    }

    #[test]
    fn cni_args_are_those_of_containerd() {
        let p = pod(json!({"metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1"}}));
        assert_eq!(
            cni_args(&p, "c0ffee"),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1;K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=u-1"
        );
    }

    #[test]
    fn resolv_conf_follows_the_dns_policy() {
        let p = pod(json!({"metadata": {"name": "a", "namespace": "shop"},
            "spec": {"containers": [], "dnsPolicy": "None", "dnsConfig": {
                "nameservers": ["10.240.0.1"], "searches": ["shop.svc.cluster.local"],
                "options": [{"name": "ndots", "value": "5"}]}}}));
        assert_eq!(
            resolv_conf(&p, "192.168.213.1", "cluster.local"),
            "nameserver 10.240.0.1\nsearch shop.svc.cluster.local\noptions ndots:5\n"
        );
        let p = pod(json!({"metadata": {"name": "a", "namespace": "web"},
            "spec": {"containers": [], "dnsConfig": {"options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}}));
        assert_eq!(
            resolv_conf(&p, "192.168.213.1", "cluster.local"),
            "nameserver 192.168.213.1\nsearch web.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:2 edns0\n"
        );
    }

    #[test]
    fn env_takes_the_first_containers_literal_values() {
        let p = pod(
            json!({"metadata": {"name": "a"}, "spec": {"containers": [{"name": "app",
            "env": [{"name": "SCALINGO_PRIVATE_HOSTNAME", "value": "web-1.app"},
                    {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}]}}),
        );
        let env = env_of(&p);
        assert_eq!(env.len(), 1);
        assert_eq!(env["SCALINGO_PRIVATE_HOSTNAME"], "web-1.app");
    }
}
