//! The pod's Multus networks annotation (pure): privnet's network added to
//! whatever the pod already asks for, in the form the pod already uses
//! (JSON list or the comma-separated short form), never twice.

use serde_json::{Value, json};

/// Multus' pod annotation listing secondary networks.
pub const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";

/// The annotation's new value, or `None` when `existing` already lists
/// `network` (or cannot be parsed: the pod's own choice is left alone and
/// Multus reports it).
pub fn with_privnet(existing: Option<&str>, network: &str, interface: &str) -> Option<String> {
    let ours = json!({ "name": network, "interface": interface });
    let Some(text) = existing.map(str::trim).filter(|t| !t.is_empty()) else {
        return Some(Value::Array(vec![ours]).to_string());
    };
    if text.starts_with('[') {
        let mut list: Vec<Value> = serde_json::from_str(text).ok()?;
        if list.iter().any(|n| n["name"] == network) {
            return None;
        }
        list.push(ours);
        return Some(Value::Array(list).to_string());
    }
    // Short form: `[namespace/]name[@interface]`, comma-separated.
    let listed = text.split(',').any(|item| {
        let name = item.trim().split('@').next().unwrap_or_default();
        name.rsplit('/').next() == Some(network)
    });
    (!listed).then(|| format!("{text},{network}@{interface}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privnet_is_added_once_in_the_pods_own_form() {
        assert_eq!(
            with_privnet(None, "privnet", "eth1").unwrap(),
            r#"[{"interface":"eth1","name":"privnet"}]"#
        );
        let json = with_privnet(Some(r#"[{"name":"storage"}]"#), "privnet", "eth1").unwrap();
        let list: Vec<Value> = serde_json::from_str(&json).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["name"], "storage");
        assert_eq!(with_privnet(Some(&json), "privnet", "eth1"), None);
        assert_eq!(
            with_privnet(Some("storage@net2"), "privnet", "eth1").unwrap(),
            "storage@net2,privnet@eth1"
        );
        assert_eq!(
            with_privnet(Some("other-ns/privnet@eth9"), "privnet", "eth1"),
            None
        );
        assert_eq!(with_privnet(Some("[not json"), "privnet", "eth1"), None);
    }
}
