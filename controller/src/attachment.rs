//! How pods reach the plugin on a real cluster. In `multus` mode (the
//! default) the controller keeps a `NetworkAttachmentDefinition` in every
//! namespace a project holds, carrying privnet's CNI configuration, and the
//! webhook lists it in the pod's `k8s.v1.cni.cncf.io/networks` annotation;
//! Multus then calls `privnet-cni` for those pods only. In `chained` mode
//! the node installer chains the plugin into the primary conflist instead
//! and no object or annotation is needed.

use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
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
pub fn desired_nad(project: &Project, namespace: &str, network: &str) -> Value {
    json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": { "name": network, "namespace": namespace, "labels": { PROJECT_LABEL: project.name_any() } },
        "spec": { "config": cni_config(network).to_string() },
    })
}

/// Applies the project's NetworkAttachmentDefinition in each of `present`
/// (Multus mode). A cluster without Multus (no such kind) gets a warning,
/// not an error: the rest of the project still converges.
pub async fn apply_project_attachments(
    ctx: &Context,
    project: &Project,
    present: &[String],
) -> Result<(), Error> {
    let AttachMode::Multus { network, .. } = &ctx.config.attach else {
        return Ok(());
    };
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    for ns in present {
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &nad_resource());
        let body = desired_nad(project, ns, network);
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
    Ok(())
}
