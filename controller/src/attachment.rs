//! How pods reach the plugin on a real cluster. In `multus` mode (the
//! default) the controller keeps a `NetworkAttachmentDefinition` in every
//! namespace a project holds, carrying privnet's CNI configuration, and the
//! webhook lists it in the pod's `k8s.v1.cni.cncf.io/networks` annotation;
//! Multus then calls `privnet-cni` for those pods only. In `chained` mode
//! the node installer chains the plugin into the primary conflist instead
//! and no object or annotation is needed.

use kube::Resource;
use kube::ResourceExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, Preconditions,
};
use serde_json::{Value, json};

use crate::context::{Context, Error, is_status};
use privnet_api::Project;
use privnet_api::keys::{FIELD_MANAGER, PROJECT_LABEL};
use privnet_core::rpc::DEFAULT_SOCKET;

/// How pods are attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachMode {
    /// Through Multus: a NetworkAttachmentDefinition named `network` per
    /// project namespace, the pod's interface named `interface`.
    Multus {
        /// Name of the NetworkAttachmentDefinition (and CNI network).
        network: String,
        /// Interface name inside the pod.
        interface: String,
    },
    /// privnet is chained into the node's primary conflist.
    Chained,
}

impl Default for AttachMode {
    fn default() -> Self {
        AttachMode::Multus {
            network: "privnet".into(),
            interface: "eth1".into(),
        }
    }
}

/// The NetworkAttachmentDefinition kind (`k8s.cni.cncf.io/v1`).
pub fn nad_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition"),
        "network-attachment-definitions",
    )
}

/// The CNI configuration Multus hands the plugin.
pub fn cni_config(network: &str) -> Value {
    json!({ "cniVersion": "1.1.0", "name": network, "type": "privnet-cni", "agentSocket": DEFAULT_SOCKET })
}

/// The NetworkAttachmentDefinition of `project` in `namespace` (applied).
/// Labelled with the project and owned by it (controller reference): the
/// garbage collector deletes it with the project, and the sweep below only
/// ever deletes objects that carry both marks.
pub fn desired_nad(project: &Project, namespace: &str, network: &str) -> Result<Value, Error> {
    let name = project.name_any();
    let owner = project
        .controller_owner_ref(&())
        .ok_or_else(|| Error::MissingField(format!("project {name}"), "uid"))?;
    Ok(json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": { "name": network, "namespace": namespace, "labels": { PROJECT_LABEL: name }, "ownerReferences": [owner] },
        "spec": { "config": cni_config(network).to_string() },
    }))
}

/// Whether `nad` is one this controller made for `project`: labelled with
/// the project and either owned by it or written by privnet's field manager
/// (objects applied before they carried an owner). A user's object that
/// merely shares the name or the label is never touched.
pub fn is_ours(nad: &DynamicObject, project: &Project) -> bool {
    let name = project.name_any();
    let labelled = nad.labels().get(PROJECT_LABEL) == Some(&name);
    let owned = project.uid().is_some_and(|uid| {
        nad.owner_references()
            .iter()
            .any(|o| o.kind == "Project" && o.uid == uid)
    });
    let managed = nad
        .managed_fields()
        .iter()
        .any(|m| m.manager.as_deref() == Some(FIELD_MANAGER));
    labelled && (owned || managed)
}

/// The project's objects among `existing` that must go: every one outside
/// `keep` (the namespaces it holds, with the current network name; nothing
/// in chained mode).
pub fn stale_nads<'a>(
    existing: &'a [DynamicObject],
    project: &Project,
    keep: &[String],
    network: Option<&str>,
) -> Vec<&'a DynamicObject> {
    existing
        .iter()
        .filter(|nad| is_ours(nad, project))
        .filter(|nad| {
            let ns = nad.namespace().unwrap_or_default();
            !(keep.contains(&ns) && network == Some(nad.name_any().as_str()))
        })
        .collect()
}

/// Applies the project's NetworkAttachmentDefinition in each of `present`
/// (Multus mode) and deletes the ones it made in namespaces the project no
/// longer holds (or all of them in chained mode). A cluster without Multus
/// (no such kind) gets a warning, not an error: the rest of the project
/// still converges.
pub async fn apply_project_attachments(
    ctx: &Context,
    project: &Project,
    present: &[String],
) -> Result<(), Error> {
    let network = match &ctx.config.attach {
        AttachMode::Multus { network, .. } => Some(network.as_str()),
        AttachMode::Chained => None,
    };
    if let Some(network) = network {
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        for ns in present {
            let api: Api<DynamicObject> =
                Api::namespaced_with(ctx.client.clone(), ns, &nad_resource());
            let body = desired_nad(project, ns, network)?;
            match api.patch(network, &pp, &Patch::Apply(body)).await {
                Ok(_) => {}
                Err(e) if is_status(&e, 404) => {
                    tracing::warn!(namespace = %ns, "NetworkAttachmentDefinition kind not served: is Multus installed? ({e})");
                    return Ok(());
                }
                Err(e) => {
                    return Err(Error::kube(format!(
                        "apply NetworkAttachmentDefinition in {ns}"
                    ))(e));
                }
            }
        }
    }
    delete_stale(ctx, project, present, network).await
}

/// Deletes the project's NetworkAttachmentDefinitions outside `keep`.
async fn delete_stale(
    ctx: &Context,
    project: &Project,
    keep: &[String],
    network: Option<&str>,
) -> Result<(), Error> {
    let all: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &nad_resource());
    let selector = format!("{PROJECT_LABEL}={}", project.name_any());
    let existing = match all.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list.items,
        // No Multus: nothing of ours can exist.
        Err(e) if is_status(&e, 404) => return Ok(()),
        Err(e) => return Err(Error::kube("list NetworkAttachmentDefinitions")(e)),
    };
    for stale in stale_nads(&existing, project, keep, network) {
        let ns = stale.namespace().unwrap_or_default();
        let name = stale.name_any();
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &ns, &nad_resource());
        // Only the object seen (uid precondition): never a newer one of the same name.
        let dp = DeleteParams {
            preconditions: stale.uid().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {
                tracing::info!(namespace = %ns, %name, project = %project.name_any(), "deleted NetworkAttachmentDefinition")
            }
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
            Err(e) => {
                return Err(Error::kube(format!(
                    "delete NetworkAttachmentDefinition {ns}/{name}"
                ))(e));
            }
        }
    }
    Ok(())
}
