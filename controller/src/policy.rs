//! Private process types: a NetworkPolicy per project namespace denying
//! ingress on the cluster network from outside the project to every pod
//! whose process type is private (all but `web`, or `web` too when the
//! project sets `publicWeb: false`). The private interface is not concerned:
//! it only ever reaches the project's own network.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::context::{Context, Error, is_status};
use privnet_api::Project;
use privnet_api::keys::{
    APPLICATION_LABEL, FIELD_MANAGER, PRIVATE_POLICY_NAME, PROCESS_TYPE_LABEL, PROJECT_LABEL,
};

/// The process type that is public unless the project says otherwise.
pub const WEB_PROCESS_TYPE: &str = "web";

/// The policy applied in `namespace` for `project` holding `held` namespaces.
pub fn desired_policy(project: &Project, namespace: &str, held: &[String]) -> Result<Value, Error> {
    let name = project.name_any();
    let owner = project
        .controller_owner_ref(&())
        .ok_or_else(|| Error::MissingField(format!("project {name}"), "uid"))?;
    let private_types = if project.spec.public_web {
        json!({ "key": PROCESS_TYPE_LABEL, "operator": "NotIn", "values": [WEB_PROCESS_TYPE] })
    } else {
        json!({ "key": PROCESS_TYPE_LABEL, "operator": "Exists" })
    };
    let mut held = held.to_vec();
    held.sort();
    Ok(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": { "name": PRIVATE_POLICY_NAME, "namespace": namespace, "labels": { PROJECT_LABEL: name }, "ownerReferences": [owner] },
        "spec": {
            "podSelector": { "matchExpressions": [
                { "key": APPLICATION_LABEL, "operator": "Exists" },
                private_types,
            ]},
            "policyTypes": ["Ingress"],
            "ingress": [{ "from": [{ "namespaceSelector": { "matchExpressions": [
                { "key": "kubernetes.io/metadata.name", "operator": "In", "values": held },
            ]}}]}],
        },
    }))
}

/// Applies the policy in every held namespace and deletes the project's
/// policies left in namespaces it no longer holds.
pub async fn apply_project_policies(
    ctx: &Context,
    project: &Project,
    held: &[String],
) -> Result<(), Error> {
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    for ns in held {
        let api: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), ns);
        api.patch(
            PRIVATE_POLICY_NAME,
            &pp,
            &Patch::Apply(desired_policy(project, ns, held)?),
        )
        .await
        .map_err(Error::kube(format!("apply network policy in {ns}")))?;
    }
    let all: Api<NetworkPolicy> = Api::all(ctx.client.clone());
    let selector = format!("{PROJECT_LABEL}={}", project.name_any());
    let existing = all
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::kube("list network policies"))?;
    for stale in existing.items.iter().filter(|p| {
        !held
            .iter()
            .any(|ns| Some(ns) == p.meta().namespace.as_ref())
    }) {
        let ns = stale.namespace().unwrap_or_default();
        let api: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &ns);
        match api
            .delete(&stale.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(Error::kube(format!("delete network policy in {ns}"))(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use privnet_api::ProjectSpec;

    fn project(public_web: bool) -> Project {
        let mut p = Project::new(
            "p",
            ProjectSpec {
                namespaces: vec!["a".into(), "b".into()],
                public_web,
                network: None,
            },
        );
        p.metadata.uid = Some("u".into());
        p
    }

    #[test]
    fn web_is_private_only_when_asked() {
        let held = vec!["b".to_string(), "a".to_string()];
        let public = desired_policy(&project(true), "a", &held).unwrap();
        let sel = &public["spec"]["podSelector"]["matchExpressions"][1];
        assert_eq!(sel["operator"], "NotIn");
        assert_eq!(sel["values"], json!(["web"]));
        let private = desired_policy(&project(false), "a", &held).unwrap();
        assert_eq!(
            private["spec"]["podSelector"]["matchExpressions"][1]["operator"],
            "Exists"
        );
        let from = &public["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchExpressions"]
            [0]["values"];
        assert_eq!(from, &json!(["a", "b"]));
        // Parses as a real NetworkPolicy.
        let _: NetworkPolicy = serde_json::from_value(public).unwrap();
    }
}
