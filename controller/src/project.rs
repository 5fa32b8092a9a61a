//! `Project` → its owned `PrivateNetwork`, namespace membership (labels the
//! webhook selects on), conflicts reported as conditions, and the
//! NetworkPolicies of private process types.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::context::{Context, Error, is_status};
use super::{attachment, policy};
use privnet_api::keys::{FIELD_MANAGER, PROJECT_LABEL};
use privnet_api::readers::{NamespaceConflict, held_namespaces, namespace_conflicts};
use privnet_api::{DEFAULT_SUBNET, PrivateNetwork, Project, ProjectStatus, set_condition};

/// What keeps a project from being applied exactly as written (reported as
/// conditions; the project still gets a status and works where it can).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectGaps {
    /// Listed (and held) namespaces that do not exist (yet).
    pub missing_namespaces: Vec<String>,
    /// `(current, requested)` when the subnet was edited: a network's subnet
    /// is immutable, so the network keeps `current`.
    pub refused_subnet: Option<(String, String)>,
}

/// The subnet the project asks for.
pub fn requested_subnet(project: &Project) -> String {
    project
        .spec
        .network
        .as_ref()
        .and_then(|n| n.subnet.clone())
        .unwrap_or_else(|| DEFAULT_SUBNET.to_string())
}

/// The network of a project, as applied: same name as the project, found by
/// `spec.project`. No ownerReference: the garbage collector would take the
/// network (and its identity: id, VNI, zone) with a deleted Project at once;
/// the network controller deletes an orphan only after a grace period, so a
/// Project restored in time keeps its network ([`crate::orphan`]). `subnet`
/// is the one to apply (the existing network's, which is immutable).
pub fn desired_network(project: &Project, subnet: &str) -> serde_json::Value {
    let name = project.name_any();
    let net = project.spec.network.clone().unwrap_or_default();
    let mut spec = json!({ "project": name, "subnet": subnet });
    if let Some(mtu) = net.mtu {
        spec["mtu"] = json!(mtu);
    }
    json!({
        "apiVersion": "privnet.io/v1alpha1",
        "kind": "PrivateNetwork",
        "metadata": { "name": name, "labels": { PROJECT_LABEL: name } },
        "spec": spec,
    })
}

/// The project's status from its conflicts, its gaps and its network's id.
pub fn desired_status(
    project: &Project,
    conflicts: &[NamespaceConflict],
    gaps: &ProjectGaps,
    network: Option<&PrivateNetwork>,
    now: Time,
) -> ProjectStatus {
    let mut status = project.status.clone().unwrap_or_default();
    let generation = project.meta().generation;
    status.observed_generation = generation;
    status.network_name = Some(project.name_any());
    status.network_id = network.and_then(|n| n.status.as_ref()?.id.clone());
    let conflict_message = conflicts
        .iter()
        .map(|c| {
            format!(
                "namespace {} already belongs to project {}",
                c.namespace, c.holder
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    if conflicts.is_empty() {
        set_condition(
            &mut status.conditions,
            "NamespaceConflict",
            false,
            "NoConflict",
            "every listed namespace belongs to this project",
            generation,
            now.clone(),
        );
    } else {
        set_condition(
            &mut status.conditions,
            "NamespaceConflict",
            true,
            "NamespaceClaimed",
            &conflict_message,
            generation,
            now.clone(),
        );
    }
    let (found, reason, message) = if gaps.missing_namespaces.is_empty() {
        (true, "AllFound", "every held namespace exists".to_string())
    } else {
        let list = gaps.missing_namespaces.join(", ");
        (
            false,
            "NamespaceMissing",
            format!("namespace {list} does not exist yet: its pods join once it is created"),
        )
    };
    set_condition(
        &mut status.conditions,
        "NamespacesFound",
        found,
        reason,
        &message,
        generation,
        now.clone(),
    );
    let (applied, reason, message) = match &gaps.refused_subnet {
        None => (
            true,
            "Applied",
            "the network uses the requested subnet".to_string(),
        ),
        Some((current, requested)) => (
            false,
            "SubnetImmutable",
            format!(
                "subnet {requested} not applied: the network keeps {current} (a network's subnet is immutable; create a new project to renumber)"
            ),
        ),
    };
    set_condition(
        &mut status.conditions,
        "SubnetApplied",
        applied,
        reason,
        &message,
        generation,
        now.clone(),
    );
    let (ready, reason, message) = match (&status.network_id, conflicts.is_empty()) {
        (None, _) => (
            false,
            "NetworkPending",
            "waiting for the private network to be allocated".to_string(),
        ),
        (Some(_), false) => (false, "NamespaceConflict", conflict_message),
        (Some(id), true) => (
            true,
            "NetworkReady",
            format!("private network {id} is ready"),
        ),
    };
    set_condition(
        &mut status.conditions,
        "Ready",
        ready,
        reason,
        &message,
        generation,
        now,
    );
    status
}

/// Reconciles one project; publishes a Warning event on failure.
pub async fn reconcile(project: Arc<Project>, ctx: Arc<Context>) -> Result<Action, Error> {
    let result = apply(&project, &ctx).await;
    ctx.metrics.reconciled("project", result.is_ok());
    if let Err(e) = &result {
        publish(
            &ctx,
            &*project,
            EventType::Warning,
            "ReconcileFailed",
            &format!("{e}"),
        )
        .await;
    }
    result
}

async fn apply(project: &Project, ctx: &Context) -> Result<Action, Error> {
    if project.meta().deletion_timestamp.is_some() {
        // Owned objects (policies, attachments) are garbage-collected; the
        // network outlives the project for the orphan grace.
        return Ok(Action::await_change());
    }
    let name = project.name_any();
    let projects: Api<Project> = Api::all(ctx.client.clone());
    let networks: Api<PrivateNetwork> = Api::all(ctx.client.clone());
    let pp = PatchParams::apply(FIELD_MANAGER).force();

    let all = projects
        .list(&ListParams::default())
        .await
        .map_err(Error::kube("list projects"))?
        .items;
    let conflicts = namespace_conflicts(project, &all);
    let existing = networks
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get network {name}")))?;
    let existed = existing.is_some();
    let requested = requested_subnet(project);
    let mut gaps = ProjectGaps::default();
    let subnet = match existing {
        Some(n) if n.spec.subnet != requested => {
            gaps.refused_subnet = Some((n.spec.subnet.clone(), requested.clone()));
            n.spec.subnet
        }
        _ => requested,
    };
    let network = networks
        .patch(&name, &pp, &Patch::Apply(desired_network(project, &subnet)))
        .await
        .map_err(Error::kube(format!("apply network {name}")))?;
    if !existed {
        publish(
            ctx,
            project,
            EventType::Normal,
            "NetworkCreated",
            &format!("created private network {name}"),
        )
        .await;
    }
    let held = held_namespaces(project, &conflicts);
    let (present, missing) = split_existing(ctx, &held).await?;
    gaps.missing_namespaces = missing;
    label_namespaces(ctx, &name, &present).await?;
    policy::apply_project_policies(ctx, project, &present).await?;
    attachment::apply_project_attachments(ctx, project, &present).await?;

    let status = desired_status(
        project,
        &conflicts,
        &gaps,
        Some(&network),
        Time(Timestamp::now()),
    );
    let had_conflict = project.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "NamespaceConflict" && c.status == "True")
    });
    if !conflicts.is_empty() && !had_conflict {
        let message = status
            .conditions
            .iter()
            .find(|c| c.type_ == "NamespaceConflict")
            .map(|c| c.message.clone())
            .unwrap_or_default();
        publish(
            ctx,
            project,
            EventType::Warning,
            "NamespaceConflict",
            &message,
        )
        .await;
    }
    if project.status.as_ref() != Some(&status) {
        let body =
            json!({ "apiVersion": "privnet.io/v1alpha1", "kind": "Project", "status": status });
        projects
            .patch_status(&name, &pp, &Patch::Apply(body))
            .await
            .map_err(Error::kube(format!("update status of project {name}")))?;
    }
    // The network's id arrives asynchronously; look again soon until then.
    Ok(if status.network_id.is_none() {
        Action::requeue(Duration::from_secs(2))
    } else {
        Action::requeue(Duration::from_secs(600))
    })
}

/// Held namespaces split into those that exist and those that do not (the
/// controller watches namespaces, so a created one triggers a new pass).
async fn split_existing(
    ctx: &Context,
    held: &[String],
) -> Result<(Vec<String>, Vec<String>), Error> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let (mut present, mut missing) = (Vec::new(), Vec::new());
    for ns in held {
        match api
            .get_opt(ns)
            .await
            .map_err(Error::kube(format!("get namespace {ns}")))?
        {
            Some(_) => present.push(ns.clone()),
            None => missing.push(ns.clone()),
        }
    }
    Ok((present, missing))
}

/// Labels held namespaces `privnet.io/project=<name>`: the webhook's
/// namespaceSelector, so pods elsewhere never reach it.
async fn label_namespaces(ctx: &Context, project: &str, held: &[String]) -> Result<(), Error> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    for ns in held {
        let body = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns, "labels": { PROJECT_LABEL: project } } });
        match api.patch(ns, &pp, &Patch::Apply(body)).await {
            Ok(_) => {}
            // Not created yet (applying would need `create`): labelled once it
            // appears (the controller watches namespaces).
            Err(e) if is_status(&e, 403) || is_status(&e, 404) => {
                tracing::info!(namespace = %ns, project, "namespace not labelled yet: {e}");
            }
            Err(e) => return Err(Error::kube(format!("label namespace {ns}"))(e)),
        }
    }
    Ok(())
}

/// Requeue with a short backoff after an error.
pub fn error_policy(_project: Arc<Project>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "project reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// Publishes an event about `obj` (failures are logged, never fatal).
pub(crate) async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "failed to publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use privnet_api::ProjectSpec;

    fn project(name: &str, created: i64, namespaces: &[&str]) -> Project {
        let mut p = Project::new(
            name,
            ProjectSpec {
                namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
                public_web: true,
                network: None,
            },
        );
        p.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
        p.metadata.uid = Some(format!("uid-{name}"));
        p
    }

    #[test]
    fn later_project_gets_the_conflict() {
        let a = project("a", 10, &["shop", "blog"]);
        let b = project("b", 20, &["shop", "api"]);
        let all = [a.clone(), b.clone()];
        assert!(namespace_conflicts(&a, &all).is_empty());
        let c = namespace_conflicts(&b, &all);
        assert_eq!(
            c,
            vec![NamespaceConflict {
                namespace: "shop".into(),
                holder: "a".into()
            }]
        );
        assert_eq!(held_namespaces(&b, &c), vec!["api".to_string()]);
        let status = desired_status(
            &b,
            &c,
            &ProjectGaps::default(),
            None,
            Time(Timestamp::from_second(30).unwrap()),
        );
        let cond = status
            .conditions
            .iter()
            .find(|c| c.type_ == "NamespaceConflict")
            .unwrap();
        assert_eq!(cond.status, "True");
        assert!(
            cond.message
                .contains("namespace shop already belongs to project a"),
            "{}",
            cond.message
        );
        assert_eq!(
            status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .unwrap()
                .status,
            "False"
        );
    }

    #[test]
    fn network_names_its_project_and_is_not_owned_by_it() {
        let a = project("a", 1, &["x"]);
        let net = desired_network(&a, &requested_subnet(&a));
        assert_eq!(net["spec"]["project"], "a");
        assert_eq!(net["metadata"]["labels"][PROJECT_LABEL], "a");
        assert!(
            net["metadata"].get("ownerReferences").is_none(),
            "an owner would let the garbage collector take the network with a wiped project"
        );
        assert_eq!(net["spec"]["subnet"], DEFAULT_SUBNET);
    }

    #[test]
    fn gaps_are_conditions_not_a_missing_status() {
        let p = project("a", 1, &["shop", "later"]);
        let gaps = ProjectGaps {
            missing_namespaces: vec!["later".into()],
            refused_subnet: Some(("10.240.0.0/22".into(), "10.9.0.0/24".into())),
        };
        let at = Time(Timestamp::from_second(30).unwrap());
        let status = desired_status(&p, &[], &gaps, None, at.clone());
        let cond = |s: &ProjectStatus, t: &str| {
            let c = s.conditions.iter().find(|c| c.type_ == t).unwrap();
            (c.status.clone(), c.reason.clone(), c.message.clone())
        };
        let (found, reason, message) = cond(&status, "NamespacesFound");
        assert_eq!(
            (found.as_str(), reason.as_str()),
            ("False", "NamespaceMissing")
        );
        assert!(message.contains("later"), "{message}");
        let (applied, reason, message) = cond(&status, "SubnetApplied");
        assert_eq!(
            (applied.as_str(), reason.as_str()),
            ("False", "SubnetImmutable")
        );
        assert!(message.contains("keeps 10.240.0.0/22"), "{message}");
        // Control: without gaps both conditions are True.
        let clean = desired_status(&p, &[], &ProjectGaps::default(), None, at);
        assert_eq!(cond(&clean, "NamespacesFound").0, "True");
        assert_eq!(cond(&clean, "SubnetApplied").0, "True");
    }
}
