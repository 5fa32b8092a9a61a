//! Multus mode's NetworkAttachmentDefinitions over their whole life, against
//! the fake API: applied in every namespace a project holds, deleted when a
//! namespace leaves the project, when the project goes (owner reference) and
//! when the controller runs in chained mode; a user's object of the same
//! name or label is never touched.

use std::sync::Arc;

use kube::api::{Api, DeleteParams};
use privnet_api::Project;
use privnet_controller::attachment::AttachMode;
use privnet_controller::{Context, ControllerConfig, Metrics, project};
use privnet_testkit::FakeApi;
use serde_json::{Value, json};

const PROJECTS: &str = "/apis/privnet.io/v1alpha1/projects";
const NADS: &str = "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions";

fn nad_path(ns: &str, name: &str) -> String {
    format!("/apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions/{name}")
}

fn context(api: &Arc<FakeApi>, attach: AttachMode) -> Arc<Context> {
    Context::new(
        api.client(),
        ControllerConfig {
            attach,
            ..Default::default()
        },
        Arc::new(Metrics::default()),
    )
}

fn seed_project(api: &FakeApi, name: &str, namespaces: &[&str]) -> Value {
    for ns in namespaces {
        api.seed(
            "/api/v1/namespaces",
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns } }),
        );
    }
    api.seed(
        PROJECTS,
        json!({ "apiVersion": "privnet.io/v1alpha1", "kind": "Project",
                "metadata": { "name": name }, "spec": { "namespaces": namespaces } }),
    )
}

async fn reconcile(ctx: &Arc<Context>, name: &str) {
    let p: Project = Api::all(ctx.client.clone()).get(name).await.unwrap();
    project::reconcile(Arc::new(p), ctx.clone()).await.unwrap();
}

/// A NetworkAttachmentDefinition somebody else made.
fn seed_foreign(api: &FakeApi, ns: &str, name: &str, labels: Value) {
    api.seed(
        &format!("/apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions"),
        json!({ "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                "metadata": { "name": name, "namespace": ns, "labels": labels },
                "spec": { "config": "{\"cniVersion\":\"1.0.0\",\"type\":\"macvlan\"}" } }),
    );
}

fn names(api: &FakeApi) -> Vec<String> {
    let mut v: Vec<String> = api
        .list(NADS)
        .iter()
        .map(|n| {
            format!(
                "{}/{}",
                n["metadata"]["namespace"].as_str().unwrap(),
                n["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_namespace_leaving_the_project_loses_only_privnets_object() {
    let api = FakeApi::new();
    let ctx = context(&api, AttachMode::default());
    let p = seed_project(&api, "shop", &["shop-a", "shop-b"]);
    reconcile(&ctx, "shop").await;
    assert_eq!(names(&api), ["shop-a/privnet", "shop-b/privnet"]);
    let ours = api.get(&nad_path("shop-a", "privnet")).unwrap();
    assert_eq!(ours["metadata"]["labels"]["privnet.io/project"], "shop");
    assert_eq!(
        ours["metadata"]["ownerReferences"][0]["uid"],
        p["metadata"]["uid"]
    );
    // Not privnet's: another network in a held namespace, and an object
    // wearing the project's label but neither owned nor written by privnet.
    seed_foreign(&api, "shop-a", "macvlan", json!({}));
    seed_foreign(
        &api,
        "elsewhere",
        "privnet",
        json!({ "privnet.io/project": "shop" }),
    );

    api.edit(&format!("{PROJECTS}/shop"), |p| {
        p["spec"]["namespaces"] = json!(["shop-a"])
    });
    let b_uid = api.get(&nad_path("shop-b", "privnet")).unwrap()["metadata"]["uid"].clone();
    api.clear_log();
    reconcile(&ctx, "shop").await;
    let deletes: Vec<_> = api
        .log()
        .into_iter()
        .filter(|r| r.method == "DELETE" && r.path.contains("network-attachment-definitions"))
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:#?}");
    assert_eq!(deletes[0].path, nad_path("shop-b", "privnet"));
    // The uid precondition: never a newer object of the same name.
    assert_eq!(deletes[0].body["preconditions"]["uid"], b_uid);
    // Positive control: the held namespace keeps its object; foreign ones stay.
    assert_eq!(
        names(&api),
        ["elsewhere/privnet", "shop-a/macvlan", "shop-a/privnet"]
    );

    // A second pass deletes nothing more (idempotent).
    api.clear_log();
    reconcile(&ctx, "shop").await;
    assert!(
        !api.log().iter().any(|r| r.method == "DELETE"),
        "{:#?}",
        api.log()
    );
}

#[tokio::test]
async fn a_deleted_project_takes_its_objects_with_it() {
    let api = FakeApi::new();
    let ctx = context(&api, AttachMode::default());
    seed_project(&api, "gone", &["g1"]);
    seed_project(&api, "stays", &["s1"]);
    reconcile(&ctx, "gone").await;
    reconcile(&ctx, "stays").await;
    assert_eq!(names(&api), ["g1/privnet", "s1/privnet"]);
    // The API server's garbage collector follows the owner reference.
    Api::<Project>::all(ctx.client.clone())
        .delete("gone", &DeleteParams::background())
        .await
        .unwrap();
    assert_eq!(names(&api), ["s1/privnet"], "the other project's stays");
}

#[tokio::test]
async fn chained_mode_keeps_no_attachment_objects() {
    let api = FakeApi::new();
    seed_project(&api, "shop", &["shop-a"]);
    reconcile(&context(&api, AttachMode::default()), "shop").await;
    assert_eq!(names(&api), ["shop-a/privnet"]);
    seed_foreign(&api, "shop-a", "macvlan", json!({}));
    // The cluster switches to chained mode: nothing of privnet's is left,
    // and nothing is applied.
    api.clear_log();
    reconcile(&context(&api, AttachMode::Chained), "shop").await;
    assert_eq!(names(&api), ["shop-a/macvlan"]);
    assert!(
        !api.log()
            .iter()
            .any(|r| r.method == "PATCH" && r.path.contains("network-attachment-definitions")),
        "{:#?}",
        api.log()
    );
}
