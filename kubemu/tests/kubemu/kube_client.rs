//! kube-rs against the emulation over HTTPS: CRUD with 409s, selectors,
//! watch, patches, server-side apply, status, generation, cascades and the
//! CRDs' schema and CEL rules.

use crate::common;

use std::time::Duration;

use common::{Server, apply_crds, namespace};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use privnet_kubemu::Config;
use serde_json::{Value, json};

fn cm(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(
        json!({ "metadata": { "name": name, "labels": labels }, "data": { "k": "v" } }),
    )
    .unwrap()
}

fn api_error(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn projects(client: &kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("privnet.io", "v1alpha1", "Project"),
        "projects",
    );
    Api::all_with(client.clone(), &ar)
}

fn networks(client: &kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("privnet.io", "v1alpha1", "PrivateNetwork"),
        "privatenetworks",
    );
    Api::all_with(client.clone(), &ar)
}

fn dynamic(v: Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn create_get_update_delete_with_conflicts_and_selectors() {
    let server = Server::start(Config::default()).await;
    let client = server.client().await;
    namespace(&client, "shop").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    let pp = PostParams::default();
    let a = cms
        .create(&pp, &cm("a", json!({ "tier": "web" })))
        .await
        .unwrap();
    cms.create(&pp, &cm("b", json!({ "tier": "db" })))
        .await
        .unwrap();
    assert!(a.metadata.uid.is_some() && a.metadata.resource_version.is_some());
    // A taken name: 409 AlreadyExists, as a Status.
    let dup = api_error(cms.create(&pp, &cm("a", json!({}))).await.unwrap_err());
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(dup.message, "configmaps \"a\" already exists");
    // A namespace that does not exist: 404.
    let elsewhere: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    assert_eq!(
        api_error(
            elsewhere
                .create(&pp, &cm("x", json!({})))
                .await
                .unwrap_err()
        )
        .code,
        404
    );
    // Update with the version read succeeds; with a stale one, 409 Conflict.
    let mut fresh = a.clone();
    fresh.data = Some([("k".to_string(), "w".to_string())].into());
    let updated = cms.replace("a", &pp, &fresh).await.unwrap();
    assert_ne!(
        updated.metadata.resource_version,
        a.metadata.resource_version
    );
    let stale = api_error(cms.replace("a", &pp, &fresh).await.unwrap_err());
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    // Label and field selectors.
    let web = cms
        .list(&ListParams::default().labels("tier=web"))
        .await
        .unwrap();
    assert_eq!(web.items.len(), 1);
    assert_eq!(web.items[0].metadata.name.as_deref(), Some("a"));
    let not_web = cms
        .list(&ListParams::default().labels("tier notin (web)"))
        .await
        .unwrap();
    assert_eq!(not_web.items.len(), 1);
    let by_name = cms
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(by_name.items[0].metadata.name.as_deref(), Some("b"));
    assert_eq!(
        cms.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
    // Pods by spec.nodeName across namespaces.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    for (name, node) in [("p1", "n1"), ("p2", "n2")] {
        let pod = serde_json::from_value(json!({ "metadata": { "name": name }, "spec": { "nodeName": node, "containers": [{ "name": "c", "image": "i" }] } })).unwrap();
        pods.create(&pp, &pod).await.unwrap();
    }
    let on_n1 = Api::<Pod>::all(client.clone())
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .unwrap();
    assert_eq!(on_n1.items.len(), 1);
    assert_eq!(on_n1.items[0].metadata.name.as_deref(), Some("p1"));
    // Delete with a wrong uid precondition is refused; then deleted; then 404.
    let wrong = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("nope".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    assert_eq!(
        api_error(cms.delete("a", &wrong).await.unwrap_err()).code,
        409
    );
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    let gone = api_error(cms.get("a").await.unwrap_err());
    assert_eq!(
        (gone.code, gone.reason.as_str(), gone.message.as_str()),
        (404, "NotFound", "configmaps \"a\" not found")
    );
    server.stop().await;
}

#[tokio::test]
async fn watch_streams_changes_resumes_and_bookmarks() {
    let server = Server::start(Config {
        bookmark_interval: Duration::from_millis(100),
        ..Config::default()
    })
    .await;
    let client = server.client().await;
    namespace(&client, "w").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "w");
    let start = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let pp = PostParams::default();
    let wp = WatchParams::default().labels("watched=yes").timeout(10);
    let mut stream = cms.watch(&wp, &start).await.unwrap().boxed();
    cms.create(&pp, &cm("one", json!({ "watched": "yes" })))
        .await
        .unwrap();
    cms.create(&pp, &cm("other", json!({ "watched": "no" })))
        .await
        .unwrap();
    cms.patch(
        "one",
        &PatchParams::default(),
        &Patch::Merge(json!({ "data": { "k": "changed" } })),
    )
    .await
    .unwrap();
    // Leaving the selector is seen as a deletion.
    cms.patch(
        "one",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "labels": { "watched": "no" } } })),
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match stream.next().await.unwrap().unwrap() {
            WatchEvent::Added(o) => seen.push(("ADDED", o.metadata.name.unwrap())),
            WatchEvent::Modified(o) => seen.push(("MODIFIED", o.metadata.name.unwrap())),
            WatchEvent::Deleted(o) => seen.push(("DELETED", o.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        seen,
        [
            ("ADDED", "one".into()),
            ("MODIFIED", "one".into()),
            ("DELETED", "one".into())
        ]
    );
    // Resuming from the start replays the same history.
    let mut replay = cms
        .watch(&WatchParams::default().timeout(10), &start)
        .await
        .unwrap()
        .boxed();
    loop {
        match replay.next().await.unwrap().unwrap() {
            WatchEvent::Added(o) => break assert_eq!(o.metadata.name.as_deref(), Some("one")),
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // Bookmarks when asked.
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut marked = cms
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    match marked.next().await.unwrap().unwrap() {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, rv),
        other => panic!("expected a bookmark, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn patches_apply_status_and_generation_on_a_custom_resource() {
    let server = Server::start(Config::default()).await;
    let client = server.client().await;
    apply_crds(&client).await;
    let api = projects(&client);
    let ssa = PatchParams::apply("test-manager");
    let p = api
        .patch("shop", &ssa, &Patch::Apply(json!({ "apiVersion": "privnet.io/v1alpha1", "kind": "Project", "metadata": { "name": "shop", "labels": { "a": "1", "b": "2" } }, "spec": { "namespaces": ["shop"] } })))
        .await
        .unwrap();
    assert_eq!(p.metadata.generation, Some(1));
    assert_eq!(
        p.data["spec"]["publicWeb"], true,
        "schema defaults are applied"
    );
    // Re-applying without label b removes it (the manager owned it).
    let p = api
        .patch("shop", &ssa, &Patch::Apply(json!({ "apiVersion": "privnet.io/v1alpha1", "kind": "Project", "metadata": { "name": "shop", "labels": { "a": "1" } }, "spec": { "namespaces": ["shop", "shop-jobs"] } })))
        .await
        .unwrap();
    let labels = p.metadata.labels.clone().unwrap();
    assert_eq!(labels.get("a").map(String::as_str), Some("1"));
    assert!(
        !labels.contains_key("b"),
        "a field the manager no longer applies is removed"
    );
    assert_eq!(
        p.metadata.generation,
        Some(2),
        "a spec change bumps the generation"
    );
    // The status subresource writes status only; the main endpoint ignores status.
    let s = api
        .patch_status("shop", &PatchParams::default(), &Patch::Merge(json!({ "status": { "observedGeneration": 7, "vni": 1 }, "spec": { "namespaces": [] } })))
        .await
        .unwrap();
    assert_eq!(s.data["status"]["observedGeneration"], 7);
    assert!(
        s.data["status"]["vni"].is_null(),
        "unknown fields are pruned"
    );
    assert_eq!(s.data["spec"]["namespaces"], json!(["shop", "shop-jobs"]));
    assert_eq!(
        s.metadata.generation,
        Some(2),
        "status changes keep the generation"
    );
    let m = api
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "observedGeneration": 9 } })),
        )
        .await
        .unwrap();
    assert_eq!(m.data["status"]["observedGeneration"], 7);
    // JSON patch, including a failing test operation.
    let j = api
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::<Value>::Json(
                serde_json::from_value(
                    json!([{ "op": "add", "path": "/metadata/labels/c", "value": "3" }]),
                )
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        j.metadata.labels.unwrap().get("c").map(String::as_str),
        Some("3")
    );
    let failed = api
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::<Value>::Json(
                serde_json::from_value(
                    json!([{ "op": "test", "path": "/metadata/labels/c", "value": "4" }]),
                )
                .unwrap(),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(api_error(failed).code, 422);
    server.stop().await;
}

#[tokio::test]
async fn invalid_custom_objects_are_refused_with_the_rule_message() {
    let server = Server::start(Config::default()).await;
    let client = server.client().await;
    apply_crds(&client).await;
    let api = projects(&client);
    let pp = PostParams::default();
    let project = |name: &str, namespaces: Value| {
        dynamic(
            json!({ "apiVersion": "privnet.io/v1alpha1", "kind": "Project", "metadata": { "name": name }, "spec": { "namespaces": namespaces } }),
        )
    };
    // Positive control: a valid project is accepted.
    api.create(&pp, &project("ok", json!(["a", "b"])))
        .await
        .unwrap();
    let repeated = api_error(
        api.create(&pp, &project("dup", json!(["a", "a"])))
            .await
            .unwrap_err(),
    );
    assert_eq!((repeated.code, repeated.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        repeated.message,
        "Project.privnet.io \"dup\" is invalid: spec.namespaces[1]: Duplicate value: \"a\""
    );
    let bad_label = api_error(
        api.create(&pp, &project("bad", json!(["Not_A_Label"])))
            .await
            .unwrap_err(),
    );
    assert!(
        bad_label
            .message
            .contains("every namespace must be a DNS label"),
        "{}",
        bad_label.message
    );
    // Structural: a subnet not matching the pattern, an MTU out of bounds, a wrong type.
    let subnet = api_error(api.create(&pp, &dynamic(json!({ "apiVersion": "privnet.io/v1alpha1", "kind": "Project", "metadata": { "name": "s" }, "spec": { "namespaces": [], "network": { "subnet": "10.0.0.0/31", "mtu": 100 } } }))).await.unwrap_err());
    assert!(
        subnet
            .message
            .contains("spec.network.subnet: Invalid value: \"10.0.0.0/31\""),
        "{}",
        subnet.message
    );
    assert!(subnet.message.contains("spec.network.mtu: Invalid value: 100: spec.network.mtu in body should be greater than or equal to 1280"), "{}", subnet.message);
    let typed = api_error(
        api.create(&pp, &project("t", json!("shop")))
            .await
            .unwrap_err(),
    );
    assert!(
        typed.message.contains("must be of type array"),
        "{}",
        typed.message
    );
    assert!(
        api.get_opt("dup").await.unwrap().is_none(),
        "nothing was stored"
    );
    // A transition rule: the subnet of a network is immutable.
    let nets = networks(&client);
    let net = json!({ "apiVersion": "privnet.io/v1alpha1", "kind": "PrivateNetwork", "metadata": { "name": "pn-shop" }, "spec": { "project": "shop", "subnet": "10.240.0.0/22", "vni": 4096 } });
    let created = match nets.create(&pp, &dynamic(net.clone())).await {
        Ok(c) => c,
        Err(e) => panic!("valid network refused: {e}"),
    };
    assert!(created.metadata.uid.is_some());
    let moved = api_error(
        nets.patch(
            "pn-shop",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "subnet": "10.250.0.0/22" } })),
        )
        .await
        .unwrap_err(),
    );
    assert!(
        moved.message.contains("subnet is immutable"),
        "{}",
        moved.message
    );
    server.stop().await;
}

#[tokio::test]
async fn deleting_an_owner_or_a_namespace_cascades() {
    let server = Server::start(Config::default()).await;
    let client = server.client().await;
    apply_crds(&client).await;
    namespace(&client, "zone").await;
    let owner = projects(&client)
        .create(&PostParams::default(), &dynamic(json!({ "apiVersion": "privnet.io/v1alpha1", "kind": "Project", "metadata": { "name": "own" }, "spec": { "namespaces": [] } })))
        .await
        .unwrap();
    let uid = owner.metadata.uid.clone().unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "zone");
    let owned: ConfigMap = serde_json::from_value(json!({ "metadata": { "name": "owned", "ownerReferences": [{ "apiVersion": "privnet.io/v1alpha1", "kind": "Project", "name": "own", "uid": uid }] } })).unwrap();
    cms.create(&PostParams::default(), &owned).await.unwrap();
    cms.create(&PostParams::default(), &cm("free", json!({})))
        .await
        .unwrap();
    projects(&client)
        .delete("own", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        cms.get_opt("owned").await.unwrap().is_none(),
        "the dependent goes with its owner"
    );
    assert!(
        cms.get_opt("free").await.unwrap().is_some(),
        "an object without owner stays"
    );
    // A finalizer holds the object (marked deleting) until it is removed.
    let held: ConfigMap = serde_json::from_value(
        json!({ "metadata": { "name": "held", "finalizers": ["privnet.io/test"] } }),
    )
    .unwrap();
    cms.create(&PostParams::default(), &held).await.unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let marked = cms.get("held").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
    )
    .await
    .unwrap();
    assert!(
        cms.get_opt("held").await.unwrap().is_none(),
        "gone with its last finalizer"
    );
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    nss.delete("zone", &DeleteParams::default()).await.unwrap();
    assert!(
        cms.get_opt("free").await.unwrap().is_none(),
        "a namespace takes its objects"
    );
    // Deleting a CRD stops serving its kind.
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
    crds.delete("projects.privnet.io", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        api_error(
            projects(&client)
                .list(&ListParams::default())
                .await
                .unwrap_err()
        )
        .code,
        404
    );
    server.stop().await;
}

#[tokio::test]
async fn kube_runtime_watchers_list_then_watch_and_stream_lists() {
    use kube::runtime::watcher;
    let server = Server::start(Config::default()).await;
    let client = server.client().await;
    namespace(&client, "rt").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "rt");
    cms.create(&PostParams::default(), &cm("before", json!({})))
        .await
        .unwrap();
    for config in [
        watcher::Config::default(),
        watcher::Config::default().streaming_lists(),
    ] {
        let mut events = watcher(cms.clone(), config).boxed();
        let mut initial = Vec::new();
        loop {
            match events.next().await.unwrap().unwrap() {
                watcher::Event::Init => {}
                watcher::Event::InitApply(o) => initial.push(o.metadata.name.unwrap()),
                watcher::Event::InitDone => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(initial.contains(&"before".to_string()), "{initial:?}");
        let name = format!("after-{}", initial.len());
        cms.create(&PostParams::default(), &cm(&name, json!({})))
            .await
            .unwrap();
        match events.next().await.unwrap().unwrap() {
            watcher::Event::Apply(o) => assert_eq!(o.metadata.name, Some(name)),
            other => panic!("unexpected {other:?}"),
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn namespaces_keep_their_name_label_and_no_op_applies_keep_the_version() {
    use k8s_openapi::api::core::v1::Namespace;
    let server = Server::start(Config::default()).await;
    let client = server.client().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    let pp = PatchParams::apply("test").force();
    let body = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "shop" } });
    let first = nss.patch("shop", &pp, &Patch::Apply(&body)).await.unwrap();
    let label = |n: &Namespace| n.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        label(&first)
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some("shop"),
        "set on create"
    );
    // The same apply again changes nothing: same version, label kept.
    let again = nss.patch("shop", &pp, &Patch::Apply(&body)).await.unwrap();
    assert_eq!(
        again.metadata.resource_version,
        first.metadata.resource_version
    );
    // A write that drops every label keeps that one (positive control: the other goes).
    let labelled = json!({ "apiVersion": "v1", "kind": "Namespace",
        "metadata": { "name": "shop", "labels": { "team": "a" } } });
    let with = nss
        .patch("shop", &pp, &Patch::Apply(&labelled))
        .await
        .unwrap();
    assert_ne!(
        with.metadata.resource_version,
        first.metadata.resource_version
    );
    assert_eq!(label(&with).get("team").map(String::as_str), Some("a"));
    let without = nss.patch("shop", &pp, &Patch::Apply(&body)).await.unwrap();
    assert_eq!(label(&without).get("team"), None);
    assert_eq!(
        label(&without)
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some("shop")
    );
}
