//! Mutating admission on pod creation: the webhooks of every
//! MutatingWebhookConfiguration (in name order) whose rules, namespace
//! selector and object selector match are called over TLS with their
//! `caBundle`; a refusal or (with `failurePolicy: Fail`) a failed call
//! refuses the pod, a returned JSONPatch is applied. A dry-run request is
//! refused by webhooks with side effects, as the API server does.

mod client;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::resources::Resource;
use crate::select::LabelSelector;
use crate::store::Key;
use crate::{ApiError, Emulator, meta};

pub use client::{CallError, Target};

fn listed(v: &Value, want: &str) -> bool {
    v.as_array()
        .is_some_and(|a| a.iter().any(|x| x == want || x == "*"))
}

/// Whether a webhook's rules cover creating `res`.
fn rules_match(webhook: &Value, res: &Resource) -> bool {
    webhook["rules"].as_array().into_iter().flatten().any(|r| {
        listed(&r["operations"], "CREATE")
            && listed(&r["apiGroups"], &res.group)
            && listed(&r["apiVersions"], &res.version)
            && listed(&r["resources"], &res.plural)
    })
}

fn review(res: &Resource, obj: &Value, dry: bool, uid: &str) -> Value {
    let gvk = json!({ "group": res.group, "version": res.version, "kind": res.kind });
    let gvr = json!({ "group": res.group, "version": res.version, "resource": res.plural });
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid, "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": meta::name(obj), "namespace": meta::namespace(obj), "operation": "CREATE",
            "userInfo": { "username": "kubemu-admin", "groups": ["system:masters", "system:authenticated"] },
            "object": obj, "oldObject": null, "dryRun": dry,
            "options": { "apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions" },
        }
    })
}

/// Runs the mutating webhooks that apply to creating `obj`.
pub async fn mutate(
    em: &Arc<Emulator>,
    res: &Resource,
    mut obj: Value,
    dry: bool,
) -> Result<Value, ApiError> {
    let (mut configs, _) = em.store.list(
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        None,
    );
    configs.sort_by(|a, b| meta::name(a).cmp(meta::name(b)));
    let ns_labels = em
        .store
        .get(&Key {
            group: String::new(),
            plural: "namespaces".into(),
            namespace: String::new(),
            name: meta::namespace(&obj).into(),
        })
        .map(|n| n["metadata"]["labels"].clone())
        .unwrap_or(Value::Null);
    for webhook in configs
        .iter()
        .flat_map(|c| c["webhooks"].as_array().cloned().unwrap_or_default())
    {
        let name = webhook["name"].as_str().unwrap_or("").to_string();
        if !rules_match(&webhook, res)
            || !LabelSelector::from_object(&webhook["namespaceSelector"]).matches_labels(&ns_labels)
            || !LabelSelector::from_object(&webhook["objectSelector"]).matches(&obj)
        {
            continue;
        }
        if dry
            && !matches!(
                webhook["sideEffects"].as_str(),
                Some("None" | "NoneOnDryRun")
            )
        {
            return Err(ApiError::bad_request(format!(
                "admission webhook {name:?} does not support dry run"
            )));
        }
        let timeout = Duration::from_secs(webhook["timeoutSeconds"].as_u64().unwrap_or(10));
        let uid = em.store.uid();
        let answer = match client::call(
            &em.config,
            &webhook["clientConfig"],
            &review(res, &obj, dry, &uid),
            timeout,
        )
        .await
        {
            Ok(a) => a,
            Err(e) if webhook["failurePolicy"] == "Ignore" => {
                tracing::warn!(webhook = %name, error = %e, "webhook failed; ignored by its failure policy");
                continue;
            }
            Err(e) => {
                return Err(ApiError::internal(format!(
                    "failed calling webhook {name:?}: {e}"
                )));
            }
        };
        let response = &answer["response"];
        if response["allowed"] != true {
            let status = &response["status"];
            let code = status["code"].as_u64().filter(|c| *c >= 400).unwrap_or(400) as u16;
            let message = match status["message"].as_str() {
                Some(m) if !m.is_empty() => {
                    format!("admission webhook {name:?} denied the request: {m}")
                }
                _ => format!("admission webhook {name:?} denied the request without explanation"),
            };
            return Err(ApiError::new(code, "Forbidden", message).with_reason_of(status));
        }
        if let Some(bytes) = patch_bytes(&response["patch"], &name)? {
            let patch: json_patch::Patch = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::internal(format!(
                    "webhook {name:?} returned an invalid JSON patch: {e}"
                ))
            })?;
            json_patch::patch(&mut obj, &patch).map_err(|e| {
                ApiError::internal(format!(
                    "webhook {name:?} returned a patch that does not apply: {e}"
                ))
            })?;
        }
    }
    Ok(obj)
}

/// The patch of a webhook's response. The API server decodes it as Go's
/// `[]byte`: a base64 string, or (what kube-rs sends) an array of bytes.
fn patch_bytes(patch: &Value, name: &str) -> Result<Option<Vec<u8>>, ApiError> {
    if let Some(p) = patch.as_str() {
        return base64::engine::general_purpose::STANDARD
            .decode(p)
            .map(Some)
            .map_err(|e| {
                ApiError::internal(format!(
                    "webhook {name:?} returned a patch that is not base64: {e}"
                ))
            });
    }
    let Some(items) = patch.as_array() else {
        return Ok(None);
    };
    items
        .iter()
        .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
        .collect::<Option<Vec<u8>>>()
        .map(Some)
        .ok_or_else(|| {
            ApiError::internal(format!(
                "webhook {name:?} returned a patch that is neither base64 nor bytes"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_is_base64_or_an_array_of_bytes() {
        let b64 = json!(base64::engine::general_purpose::STANDARD.encode(b"[]"));
        assert_eq!(patch_bytes(&b64, "w").unwrap(), Some(b"[]".to_vec()));
        assert_eq!(
            patch_bytes(&json!([91, 93]), "w").unwrap(),
            Some(b"[]".to_vec())
        );
        assert_eq!(patch_bytes(&Value::Null, "w").unwrap(), None);
        assert!(patch_bytes(&json!([256]), "w").is_err());
        assert!(patch_bytes(&json!("%%"), "w").is_err());
    }
}
