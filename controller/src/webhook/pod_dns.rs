//! The pod's resolver (pure). Kubernetes ignores DNS servers in a CNI
//! result, so the webhook points the pod at its network's gateway, where the
//! agent's responder answers the private zone and forwards every other name
//! to the cluster DNS. The cluster's search domains and `ndots` are kept, so
//! `kubernetes.default` and `<app>.<pn>.private-network.internal` both resolve.

use serde_json::{Value, json};

/// JSON-patch operations setting `dnsPolicy: None` and a `dnsConfig` whose
/// nameserver is `gateway`, or nothing when the pod chose its own resolver
/// (`dnsPolicy` `Default` or `None`) or uses the host's network.
pub fn dns_ops(spec: &Value, gateway: &str, namespace: &str, cluster_domain: &str) -> Vec<Value> {
    let policy = spec["dnsPolicy"].as_str().unwrap_or("ClusterFirst");
    if policy != "ClusterFirst" || spec["hostNetwork"] == true {
        return Vec::new();
    }
    // ClusterFirst pods may add to the cluster's settings through dnsConfig:
    // keep their extra searches and options after ours.
    let mut searches = vec![
        json!(format!("{namespace}.svc.{cluster_domain}")),
        json!(format!("svc.{cluster_domain}")),
        json!(cluster_domain),
    ];
    let own = &spec["dnsConfig"];
    if let Some(extra) = own["searches"].as_array() {
        searches.extend(
            extra
                .iter()
                .filter(|s| !searches.contains(s))
                .cloned()
                .collect::<Vec<_>>(),
        );
    }
    let mut options = vec![json!({ "name": "ndots", "value": "5" })];
    if let Some(extra) = own["options"].as_array() {
        options.retain(|o| !extra.iter().any(|e| e["name"] == o["name"]));
        options.extend(extra.iter().cloned());
    }
    let mut nameservers = vec![json!(gateway)];
    if let Some(extra) = own["nameservers"].as_array() {
        nameservers.extend(extra.iter().cloned());
    }
    vec![
        json!({ "op": "add", "path": "/spec/dnsPolicy", "value": "None" }),
        json!({ "op": "add", "path": "/spec/dnsConfig", "value": {
            "nameservers": nameservers, "searches": searches, "options": options } }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_first_pods_ask_the_gateway_with_the_cluster_search_path() {
        let ops = dns_ops(&json!({}), "10.240.0.1", "shop", "cluster.local");
        assert_eq!(ops[0]["value"], "None");
        let config = &ops[1]["value"];
        assert_eq!(config["nameservers"], json!(["10.240.0.1"]));
        assert_eq!(
            config["searches"],
            json!([
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ])
        );
        assert_eq!(
            config["options"],
            json!([{ "name": "ndots", "value": "5" }])
        );
        // The pod's own additions are kept; its ndots wins.
        let spec = json!({ "dnsConfig": { "searches": ["corp.example"], "options": [{ "name": "ndots", "value": "2" }] } });
        let config = &dns_ops(&spec, "10.240.0.1", "shop", "cluster.local")[1]["value"];
        assert_eq!(config["searches"][3], "corp.example");
        assert_eq!(
            config["options"],
            json!([{ "name": "ndots", "value": "2" }])
        );
        // Pods that chose their resolver, or the host's network, are left alone.
        for spec in [
            json!({ "dnsPolicy": "Default" }),
            json!({ "dnsPolicy": "None" }),
            json!({ "hostNetwork": true }),
        ] {
            assert!(dns_ops(&spec, "10.240.0.1", "shop", "cluster.local").is_empty());
        }
    }
}
