//! The patch applied to an admitted pod (pure).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use privnet_api::keys::{
    CONTAINER_NUMBER_ANNOTATION, HOSTNAME_ANNOTATION, NETWORK_ID_ANNOTATION,
    NUMBER_CLAIM_ANNOTATION, PROCESS_TYPE_LABEL,
};
use privnet_core::naming::{NamingError, PrivateName, env_vars};

/// What the webhook decided for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The pod's private name (number, type, app, network).
    pub name: PrivateName,
    /// Name of the Lease holding the number (`None` in a dry run, which
    /// claims nothing: the number is then only a preview).
    pub claim: Option<String>,
}

/// Escapes a JSON-pointer token (RFC 6901).
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// JSON-patch operations: the env vars appended to every container and init
/// container (replacing same-named ones), the annotations added, and the
/// process-type label when the pod has none (it is optional and defaults to
/// `web`; the label makes the default visible to the agent and to selectors).
pub fn pod_patch(
    pod: &Pod,
    assignment: &Assignment,
    env_prefix: &str,
    domain: &str,
) -> Result<Vec<Value>, NamingError> {
    let vars = env_vars(env_prefix, &assignment.name, domain)?;
    let mut ops = Vec::new();
    let spec = pod.spec.clone().unwrap_or_default();
    let lists = [
        ("containers", spec.containers),
        ("initContainers", spec.init_containers.unwrap_or_default()),
    ];
    for (field, containers) in lists {
        for (i, c) in containers.iter().enumerate() {
            let env = c.env.clone().unwrap_or_default();
            let kept: Vec<Value> = env
                .iter()
                .filter(|e| !vars.iter().any(|(k, _)| *k == e.name))
                .map(|e| serde_json::to_value(e).expect("env vars serialize"))
                .collect();
            let mut all = kept;
            all.extend(vars.iter().map(|(k, v)| json!({ "name": k, "value": v })));
            let op = if c.env.is_some() { "replace" } else { "add" };
            ops.push(json!({ "op": op, "path": format!("/spec/{field}/{i}/env"), "value": all }));
        }
    }
    let mut annotations: BTreeMap<&str, String> = BTreeMap::from([
        (
            CONTAINER_NUMBER_ANNOTATION,
            assignment.name.number.to_string(),
        ),
        (NETWORK_ID_ANNOTATION, assignment.name.network_id.clone()),
        (HOSTNAME_ANNOTATION, assignment.name.fqdn(domain)),
    ]);
    if let Some(claim) = &assignment.claim {
        annotations.insert(NUMBER_CLAIM_ANNOTATION, claim.clone());
    }
    let labels = pod.metadata.labels.as_ref();
    if !labels.is_some_and(|l| l.contains_key(PROCESS_TYPE_LABEL)) {
        let value = &assignment.name.process_type;
        ops.push(match labels {
            Some(_) => json!({ "op": "add", "path": format!("/metadata/labels/{}", escape(PROCESS_TYPE_LABEL)), "value": value }),
            None => json!({ "op": "add", "path": "/metadata/labels", "value": { PROCESS_TYPE_LABEL: value } }),
        });
    }
    if pod.metadata.annotations.is_none() {
        ops.push(json!({ "op": "add", "path": "/metadata/annotations", "value": annotations }));
    } else {
        for (k, v) in annotations {
            ops.push(json!({ "op": "add", "path": format!("/metadata/annotations/{}", escape(k)), "value": v }));
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use privnet_core::naming::DEFAULT_DOMAIN;

    fn pod(with_env: bool, with_annotations: bool) -> Pod {
        let env = if with_env {
            json!([{ "name": "A", "value": "1" }, { "name": "SCALINGO_APPLICATION_ID", "value": "stale" }])
        } else {
            Value::Null
        };
        let mut p = json!({ "metadata": { "name": "p" }, "spec": { "containers": [{ "name": "c", "image": "i", "env": env }] } });
        if with_annotations {
            p["metadata"]["annotations"] = json!({ "x": "y" });
        }
        serde_json::from_value(p).unwrap()
    }

    fn apply(pod: &Pod, ops: Vec<Value>) -> Pod {
        let mut doc = serde_json::to_value(pod).unwrap();
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
        json_patch::patch(&mut doc, &patch).unwrap();
        serde_json::from_value(doc).unwrap()
    }

    #[test]
    fn env_and_annotations_are_injected() {
        let a = Assignment {
            name: PrivateName::new(3, "web", "app", "pn-1", DEFAULT_DOMAIN).unwrap(),
            claim: Some("l".into()),
        };
        for (env, ann) in [(false, false), (true, true)] {
            let p = apply(
                &pod(env, ann),
                pod_patch(&pod(env, ann), &a, "SCALINGO", DEFAULT_DOMAIN).unwrap(),
            );
            let vars = p.spec.as_ref().unwrap().containers[0].env.clone().unwrap();
            let get = |n: &str| {
                vars.iter()
                    .find(|e| e.name == n)
                    .and_then(|e| e.value.clone())
            };
            assert_eq!(get("SCALINGO_APPLICATION_ID").as_deref(), Some("app"));
            assert_eq!(get("SCALINGO_PRIVATE_NETWORK_ID").as_deref(), Some("pn-1"));
            assert_eq!(
                get("SCALINGO_PRIVATE_HOSTNAME").as_deref(),
                Some("3.web.app.pn-1.private-network.internal")
            );
            assert_eq!(
                vars.iter()
                    .filter(|e| e.name == "SCALINGO_APPLICATION_ID")
                    .count(),
                1
            );
            assert_eq!(get("A").is_some(), env);
            let ann_map = p.metadata.annotations.unwrap();
            assert_eq!(ann_map[CONTAINER_NUMBER_ANNOTATION], "3");
            assert_eq!(ann_map.contains_key("x"), ann);
        }
    }

    #[test]
    fn a_missing_process_type_becomes_the_web_label_and_dry_runs_name_no_claim() {
        let a = Assignment {
            name: PrivateName::new(1, "web", "app", "pn-1", DEFAULT_DOMAIN).unwrap(),
            claim: None,
        };
        let mut p = pod(false, false);
        p.metadata.labels =
            Some([("privnet.io/application".to_string(), "app".to_string())].into());
        let patched = apply(&p, pod_patch(&p, &a, "SCALINGO", DEFAULT_DOMAIN).unwrap());
        let labels = patched.metadata.labels.unwrap();
        assert_eq!(labels[PROCESS_TYPE_LABEL], "web");
        let ann = patched.metadata.annotations.unwrap();
        assert!(!ann.contains_key(NUMBER_CLAIM_ANNOTATION));
        // Control: a pod that names its type keeps it, untouched.
        let mut worker = p.clone();
        worker
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(PROCESS_TYPE_LABEL.into(), "worker".into());
        let ops = pod_patch(&worker, &a, "SCALINGO", DEFAULT_DOMAIN).unwrap();
        assert!(
            !ops.iter()
                .any(|o| o["path"].as_str().unwrap().starts_with("/metadata/labels"))
        );
    }
}
