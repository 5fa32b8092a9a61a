//! One admission: find the pod's project and network, claim a number,
//! answer with the patch. Pods outside projects pass unchanged; a pod of a
//! project whose network is not ready is refused with a clear message (its
//! controller retries).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};

use super::mutate::{Assignment, escape, pod_patch};
use super::networks::{NETWORKS_ANNOTATION, with_privnet};
use super::numbering::{claim_number, preview_number};
use super::pod_dns::dns_ops;
use crate::attachment::AttachMode;
use crate::context::{ControllerConfig, Error};
use crate::metrics::Metrics;
use privnet_api::keys::{APPLICATION_LABEL, PROCESS_TYPE_LABEL};
use privnet_api::readers::namespace_conflicts;
use privnet_api::{PrivateNetwork, Project};
use privnet_core::naming::PrivateName;
use privnet_core::numbering::NumberKey;
use privnet_core::zone::WEB_PROCESS_TYPE;

/// What the webhook needs.
#[derive(Clone)]
pub struct Admitter {
    /// API client.
    pub client: Client,
    /// Settings (namespace of claims, domain, env prefix).
    pub config: ControllerConfig,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Claims younger than this are never reclaimed.
    pub grace: Duration,
}

/// Answers one AdmissionReview.
pub async fn admit(
    admitter: &Admitter,
    review: AdmissionReview<Pod>,
) -> AdmissionReview<DynamicObject> {
    let req: AdmissionRequest<Pod> = match review.try_into() {
        Ok(r) => r,
        Err(e) => return AdmissionResponse::invalid(e.to_string()).into_review(),
    };
    let response = AdmissionResponse::from(&req);
    match decide(admitter, &req).await {
        Ok(None) => response.into_review(),
        Ok(Some(ops)) => {
            admitter.metrics.admissions.inc();
            let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))
                .expect("patch operations are well-formed");
            match response.with_patch(patch) {
                Ok(r) => r.into_review(),
                Err(e) => AdmissionResponse::from(&req)
                    .deny(format!("privnet: failed to encode the patch: {e}"))
                    .into_review(),
            }
        }
        Err(why) => {
            admitter.metrics.admission_errors.inc();
            tracing::warn!(namespace = ?req.namespace, name = %req.name, "admission refused: {why}");
            response.deny(format!("privnet: {why}")).into_review()
        }
    }
}

/// `Ok(None)`: not ours, admit unchanged.
async fn decide(
    admitter: &Admitter,
    req: &AdmissionRequest<Pod>,
) -> Result<Option<Vec<serde_json::Value>>, String> {
    if req.operation != Operation::Create {
        return Ok(None);
    }
    let Some(pod) = req.object.as_ref() else {
        return Ok(None);
    };
    let labels = pod.labels();
    let Some(app) = labels.get(APPLICATION_LABEL) else {
        return Ok(None);
    };
    // The process type is optional: `web` unless the pod says otherwise.
    let process_type = labels
        .get(PROCESS_TYPE_LABEL)
        .map_or(WEB_PROCESS_TYPE, String::as_str);
    let Some(namespace) = req.namespace.clone() else {
        return Ok(None);
    };
    let client = admitter.client.clone();
    let projects = Api::<Project>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::kube("list projects")(e).to_string())?
        .items;
    let Some(project) = projects.iter().find(|p| {
        p.spec.namespaces.contains(&namespace)
            && !namespace_conflicts(p, &projects)
                .iter()
                .any(|c| c.namespace == namespace)
    }) else {
        return Ok(None);
    };
    let network = Api::<PrivateNetwork>::all(client.clone())
        .get_opt(&project.name_any())
        .await
        .map_err(|e| Error::kube("get the project's network")(e).to_string())?;
    let status = network.and_then(|n| n.status);
    let gateway = status.as_ref().and_then(|s| s.gateway.clone());
    let Some(network_id) = status.and_then(|s| s.id) else {
        return Err(format!(
            "the private network of project {} is not ready yet; retry shortly",
            project.name_any()
        ));
    };
    let domain = &admitter.config.domain;
    // Validates the labels before claiming anything.
    PrivateName::new(1, process_type, app, &network_id, domain).map_err(|e| e.to_string())?;
    let key = NumberKey::new(&network_id, app, process_type);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &admitter.config.namespace);
    let pods: Api<Pod> = Api::all(client);
    let pod_name = if req.name.is_empty() {
        format!(
            "{}*",
            pod.metadata.generate_name.clone().unwrap_or_default()
        )
    } else {
        req.name.clone()
    };
    // `sideEffects: NoneOnDryRun`: a dry run previews the number and claims nothing.
    let (number, claim) = if req.dry_run {
        let number = preview_number(&leases, &pods, &key, admitter.grace)
            .await
            .map_err(|e| e.to_string())?;
        (number, None)
    } else {
        let claimed = claim_number(
            &leases,
            &pods,
            &key,
            &format!("{namespace}/{pod_name}"),
            admitter.grace,
        )
        .await
        .map_err(|e| e.to_string())?;
        for _ in 0..claimed.conflicts {
            admitter.metrics.claim_conflicts.inc();
        }
        (claimed.number, Some(claimed.claim))
    };
    let name = PrivateName::new(number, process_type, app, &network_id, domain)
        .map_err(|e| e.to_string())?;
    let assignment = Assignment { name, claim };
    let mut ops = pod_patch(pod, &assignment, &admitter.config.env_prefix, domain)
        .map_err(|e| e.to_string())?;
    if let Some(gateway) = gateway {
        let spec = serde_json::to_value(&pod.spec).unwrap_or_default();
        ops.extend(dns_ops(
            &spec,
            &gateway,
            &namespace,
            &admitter.config.cluster_domain,
        ));
    }
    if let AttachMode::Multus { network, interface } = &admitter.config.attach {
        let existing = pod
            .annotations()
            .get(NETWORKS_ANNOTATION)
            .map(String::as_str);
        if let Some(value) = with_privnet(existing, network, interface) {
            // pod_patch has made sure the annotations map exists.
            let path = format!("/metadata/annotations/{}", escape(NETWORKS_ANNOTATION));
            ops.push(serde_json::json!({ "op": "add", "path": path, "value": value }));
        }
    }
    Ok(Some(ops))
}
