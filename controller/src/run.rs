//! Wiring of the three kube-runtime controllers and the claim sweeper
//! (leader only).

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Config, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use super::context::Context;
use super::{network, nodes, project};
use privnet_api::{PrivateEndpoint, PrivateNetwork, Project};

/// Runs the Project, PrivateNetwork and Node controllers until `shutdown`.
pub async fn run_controllers(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let wc = watcher::Config::default();
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));

    let projects = Controller::new(Api::<Project>::all(client.clone()), wc.clone());
    let project_store = projects.store();
    let namespace_store = projects.store();
    // A project change may create or clear a conflict of another project.
    // A network names its project (no ownerReference: see `orphan`).
    let projects = projects
        .watches(
            Api::<PrivateNetwork>::all(client.clone()),
            wc.clone(),
            |network: PrivateNetwork| Some(ObjectRef::<Project>::new(&network.spec.project)),
        )
        .watches(
            Api::<Project>::all(client.clone()),
            wc.clone(),
            move |changed: Project| {
                project_store
                    .state()
                    .into_iter()
                    .filter(|p| {
                        p.name_any() != changed.name_any()
                            && p.spec
                                .namespaces
                                .iter()
                                .any(|ns| changed.spec.namespaces.contains(ns))
                    })
                    .map(|p| ObjectRef::from_obj(&*p))
                    .collect::<Vec<_>>()
            },
        )
        // A namespace created after its project gets its label then.
        .watches(
            Api::<Namespace>::all(client.clone()),
            wc.clone(),
            move |ns: Namespace| {
                namespace_store
                    .state()
                    .into_iter()
                    .filter(|p| p.spec.namespaces.contains(&ns.name_any()))
                    .map(|p| ObjectRef::from_obj(&*p))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown.clone())
        .run(project::reconcile, project::error_policy, ctx.clone())
        .for_each(|_| async {});

    // Concurrency 1: two networks never pick a VNI from the same listing.
    let networks = Controller::new(Api::<PrivateNetwork>::all(client.clone()), wc.clone())
        .with_config(Config::default().concurrency(1));
    let network_store = networks.store();
    let orphan_store = networks.store();
    let networks = networks
        // A project deleted or restored: its network is marked or adopted.
        .watches(
            Api::<Project>::all(client.clone()),
            wc.clone(),
            move |project: Project| {
                orphan_store
                    .state()
                    .into_iter()
                    .filter(|n| n.spec.project == project.name_any())
                    .map(|n| ObjectRef::from_obj(&*n))
                    .collect::<Vec<_>>()
            },
        )
        .watches(
            Api::<PrivateEndpoint>::all(client.clone()),
            wc.clone(),
            move |ep: PrivateEndpoint| {
                network_store
                    .state()
                    .into_iter()
                    .filter(|n| {
                        n.status.as_ref().and_then(|s| s.id.as_deref())
                            == Some(ep.spec.network_id.as_str())
                    })
                    .map(|n| ObjectRef::from_obj(&*n))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown.clone())
        .run(network::reconcile, network::error_policy, ctx.clone())
        .for_each(|_| async {});

    let mesh = Controller::new(Api::<Node>::all(client.clone()), wc)
        .with_config(Config::default().concurrency(1))
        .graceful_shutdown_on(shutdown.clone())
        .run(nodes::reconcile, nodes::error_policy, ctx.clone())
        .for_each(|_| async {});

    let claims = super::claims::run(
        ctx.clone(),
        ctx.config.claims_sweep_period,
        ctx.config.claims_grace,
        shutdown.clone(),
    );

    tokio::join!(projects, networks, mesh, claims);
}
