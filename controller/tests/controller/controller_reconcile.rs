//! Reconcilers against the API mocked at the HTTP layer: each test seeds the
//! fake API, runs `reconcile`, then asserts the requests (method, path,
//! body) and the resulting objects.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use privnet_api::keys::{ORPHANED_SINCE_ANNOTATION, VTEP_ANNOTATION};
use privnet_api::{PrivateNetwork, Project};
use privnet_controller::{Context, ControllerConfig, Metrics, network, nodes, project};
use privnet_testkit::FakeApi;
use serde_json::{Value, json};

const PROJECTS: &str = "/apis/privnet.io/v1alpha1/projects";
const NETWORKS: &str = "/apis/privnet.io/v1alpha1/privatenetworks";
const ENDPOINTS: &str = "/apis/privnet.io/v1alpha1/privateendpoints";
const NODES: &str = "/api/v1/nodes";

fn context(api: &Arc<FakeApi>) -> Arc<Context> {
    Context::new(
        api.client(),
        ControllerConfig {
            vni_range: 4096..=4100,
            mesh_cidr: "100.64.0.0/29".parse().unwrap(),
            ..Default::default()
        },
        Arc::new(Metrics::default()),
    )
}

fn seed_project(api: &FakeApi, name: &str, second: u32, namespaces: &[&str]) -> Value {
    api.seed(
        PROJECTS,
        json!({ "apiVersion": "privnet.io/v1alpha1", "kind": "Project",
                "metadata": { "name": name, "creationTimestamp": format!("2026-01-01T00:00:{second:02}Z") },
                "spec": { "namespaces": namespaces } }),
    )
}

fn seed_namespace(api: &FakeApi, name: &str) {
    api.seed(
        "/api/v1/namespaces",
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } }),
    );
}

async fn reconcile_project(api: &Arc<FakeApi>, ctx: &Arc<Context>, name: &str) {
    let p: Project = Api::all(ctx.client.clone()).get(name).await.unwrap();
    project::reconcile(Arc::new(p), ctx.clone()).await.unwrap();
    let _ = api;
}

async fn reconcile_network(ctx: &Arc<Context>, name: &str) -> PrivateNetwork {
    let api: Api<PrivateNetwork> = Api::all(ctx.client.clone());
    let n = api.get(name).await.unwrap();
    network::reconcile(Arc::new(n), ctx.clone()).await.unwrap();
    api.get(name).await.unwrap()
}

fn condition<'a>(obj: &'a Value, type_: &str) -> &'a Value {
    obj["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no condition {type_} in {obj}"))
}

#[tokio::test]
async fn project_creation_applies_an_owned_network_and_reports_it() {
    let api = FakeApi::new();
    let ctx = context(&api);
    let p = seed_project(&api, "shop", 1, &["shop-prod"]);
    seed_namespace(&api, "shop-prod");
    reconcile_project(&api, &ctx, "shop").await;

    // The network is server-side applied with the stable field manager; no
    // ownerReference (a wiped project must not take it at once: `orphan`).
    let applies = api.requests("PATCH", &format!("{NETWORKS}/shop"));
    assert_eq!(applies.len(), 1, "{:#?}", api.log());
    let apply = &applies[0];
    assert!(
        apply.content_type.starts_with("application/apply-patch"),
        "{}",
        apply.content_type
    );
    assert!(
        apply.query.contains("fieldManager=privnet-controller")
            && apply.query.contains("force=true"),
        "{}",
        apply.query
    );
    assert_eq!(
        apply.body["spec"],
        json!({ "project": "shop", "subnet": "10.240.0.0/22" })
    );
    assert!(
        apply.body["metadata"].get("ownerReferences").is_none(),
        "{}",
        apply.body
    );
    assert!(p["metadata"]["uid"].is_string());

    // Namespace labelled for the webhook, NetworkPolicy applied, event recorded.
    let ns = api.requests("PATCH", "/api/v1/namespaces/shop-prod");
    assert_eq!(
        ns[0].body["metadata"]["labels"]["privnet.io/project"],
        "shop"
    );
    assert_eq!(api.requests("PATCH", "/apis/networking.k8s.io/v1/namespaces/shop-prod/networkpolicies/privnet-private-processes").len(), 1);
    // Multus mode: the namespace gets privnet's NetworkAttachmentDefinition.
    let nad = api.requests(
        "PATCH",
        "/apis/k8s.cni.cncf.io/v1/namespaces/shop-prod/network-attachment-definitions/privnet",
    );
    assert_eq!(nad.len(), 1, "{:#?}", api.log());
    let config: Value =
        serde_json::from_str(nad[0].body["spec"]["config"].as_str().unwrap()).unwrap();
    assert_eq!(config["type"], "privnet-cni");
    let events = api.requests("POST", "/apis/events.k8s.io/v1/namespaces/default/events");
    assert!(
        events.iter().any(|e| e.body["reason"] == "NetworkCreated"),
        "{events:#?}"
    );

    // The project's status: no conflict, not ready until the network has its id.
    let status = api.requests("PATCH", &format!("{PROJECTS}/shop/status"));
    assert_eq!(status.len(), 1);
    let stored = api.get(&format!("{PROJECTS}/shop")).unwrap();
    assert_eq!(condition(&stored, "NamespaceConflict")["status"], "False");
    assert_eq!(condition(&stored, "Ready")["status"], "False");
    assert_eq!(condition(&stored, "Ready")["observedGeneration"], 1);

    // Network reconcile completes the status; the project then becomes Ready.
    let net = reconcile_network(&ctx, "shop").await;
    let s = net.status.clone().unwrap();
    let uid = net.metadata.uid.clone().unwrap();
    assert_eq!(s.id.as_deref(), Some(format!("pn-{uid}").as_str()));
    assert_eq!(s.vni, Some(4096));
    assert_eq!(s.gateway.as_deref(), Some("10.240.0.1"));
    assert_eq!(s.zone, Some(format!("pn-{uid}.private-network.internal")));
    assert!(
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True" && c.observed_generation == Some(1))
    );
    reconcile_project(&api, &ctx, "shop").await;
    let stored = api.get(&format!("{PROJECTS}/shop")).unwrap();
    assert_eq!(stored["status"]["networkId"], json!(format!("pn-{uid}")));
    assert_eq!(condition(&stored, "Ready")["status"], "True");
}

#[tokio::test]
async fn vnis_stay_unique_across_restarts_because_state_comes_from_the_api() {
    let api = FakeApi::new();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        seed_project(&api, name, i as u32, &[name]);
    }
    let first = context(&api);
    reconcile_project(&api, &first, "a").await;
    reconcile_project(&api, &first, "b").await;
    let a = reconcile_network(&first, "a")
        .await
        .status
        .unwrap()
        .vni
        .unwrap();
    let b = reconcile_network(&first, "b")
        .await
        .status
        .unwrap()
        .vni
        .unwrap();
    drop(first);
    // A new controller process: a fresh client, nothing in memory.
    let second = context(&api);
    reconcile_project(&api, &second, "c").await;
    let c = reconcile_network(&second, "c")
        .await
        .status
        .unwrap()
        .vni
        .unwrap();
    assert_eq!((a, b, c), (4096, 4097, 4098));
    assert_eq!(
        reconcile_network(&second, "a").await.status.unwrap().vni,
        Some(a),
        "a keeps its VNI"
    );
    // Every pass listed all networks (the only source of truth).
    assert!(api.requests("GET", NETWORKS).len() >= 4);

    // A duplicate (e.g. restored from a backup) is resolved: the older keeps it.
    api.edit(&format!("{NETWORKS}/c"), |n| {
        n["status"]["vni"] = json!(4096)
    });
    let c = reconcile_network(&second, "c")
        .await
        .status
        .unwrap()
        .vni
        .unwrap();
    assert_eq!(
        c, 4098,
        "the younger duplicate is renumbered to the lowest free VNI"
    );
    let events = api.requests("POST", "/apis/events.k8s.io/v1/namespaces/default/events");
    assert!(
        events.iter().any(|e| e.body["reason"] == "VniReassigned"
            && e.body["note"].as_str().unwrap().contains("renumbered")),
        "{events:#?}"
    );
}

#[tokio::test]
async fn an_orphan_network_is_kept_for_the_grace_then_deleted_and_its_vni_reused() {
    let api = FakeApi::new();
    let ctx = context(&api);
    seed_project(&api, "keep", 1, &["keep"]);
    reconcile_project(&api, &ctx, "keep").await;
    assert_eq!(
        reconcile_network(&ctx, "keep").await.status.unwrap().vni,
        Some(4096)
    );
    seed_project(&api, "gone", 2, &["gone"]);
    reconcile_project(&api, &ctx, "gone").await;
    assert_eq!(
        reconcile_network(&ctx, "gone").await.status.unwrap().vni,
        Some(4097)
    );
    // The project is deleted: the network is marked, not deleted.
    api.remove(&format!("{PROJECTS}/gone"));
    let marked = reconcile_network(&ctx, "gone").await;
    assert!(
        marked
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key(ORPHANED_SINCE_ANNOTATION),
        "marked orphan"
    );
    assert!(
        api.requests("DELETE", &format!("{NETWORKS}/gone"))
            .is_empty()
    );
    assert!(
        api.requests("POST", "/apis/events.k8s.io/v1/namespaces/default/events")
            .iter()
            .any(|e| e.body["reason"] == "ProjectMissing"),
        "a warning says the network will go"
    );
    // Once the grace is over (zero here), the next look deletes it.
    let ctx = Context::new(
        api.client(),
        ControllerConfig {
            orphan_grace: std::time::Duration::ZERO,
            ..ctx.config.clone()
        },
        Arc::new(Metrics::default()),
    );
    let orphan: PrivateNetwork = Api::all(ctx.client.clone()).get("gone").await.unwrap();
    network::reconcile(Arc::new(orphan), ctx.clone())
        .await
        .unwrap();
    let deletes = api.requests("DELETE", &format!("{NETWORKS}/gone"));
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].body["propagationPolicy"], "Background");
    assert!(api.get(&format!("{NETWORKS}/gone")).is_none());
    // The freed VNI is the lowest free one again.
    seed_project(&api, "next", 3, &["next"]);
    reconcile_project(&api, &ctx, "next").await;
    assert_eq!(
        reconcile_network(&ctx, "next").await.status.unwrap().vni,
        Some(4097)
    );
}

#[tokio::test]
async fn a_project_restored_within_the_grace_keeps_its_network_identity() {
    let api = FakeApi::new();
    let ctx = context(&api);
    let saved = seed_project(&api, "shop", 1, &["shop"]);
    reconcile_project(&api, &ctx, "shop").await;
    let before = reconcile_network(&ctx, "shop").await.status.unwrap();
    assert!(before.id.is_some());
    // Wiped (a mistaken `kubectl delete projects --all`) ...
    api.remove(&format!("{PROJECTS}/shop"));
    let marked = reconcile_network(&ctx, "shop").await;
    assert!(
        marked
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key(ORPHANED_SINCE_ANNOTATION)
    );
    // ... and applied back (a new uid, as a restore from a backup gets).
    let mut restored = saved.clone();
    restored["metadata"]
        .as_object_mut()
        .unwrap()
        .retain(|k, _| k == "name" || k == "creationTimestamp");
    api.seed(PROJECTS, restored);
    reconcile_project(&api, &ctx, "shop").await;
    let adopted = reconcile_network(&ctx, "shop").await;
    assert!(
        !adopted
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key(ORPHANED_SINCE_ANNOTATION),
        "the mark is cleared"
    );
    let after = adopted.status.unwrap();
    assert_eq!(
        (after.id, after.vni, after.zone),
        (before.id, before.vni, before.zone),
        "same id, VNI and zone: every name and address stays"
    );
    assert!(
        api.requests("DELETE", &format!("{NETWORKS}/shop"))
            .is_empty()
    );
    assert!(
        api.requests("POST", "/apis/events.k8s.io/v1/namespaces/default/events")
            .iter()
            .any(|e| e.body["reason"] == "Adopted")
    );
}

fn seed_node(api: &FakeApi, name: &str, key_byte: u8) {
    let key = base64_key(key_byte);
    api.seed(
        NODES,
        json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": name, "annotations": {
            "privnet.io/wireguard-public-key": key, "privnet.io/wireguard-endpoint": format!("192.0.2.{key_byte}:51820") } } }),
    );
}

fn base64_key(b: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([b; 32])
}

async fn mesh(ctx: &Arc<Context>) -> Vec<(String, Option<String>)> {
    let api: Api<Node> = Api::all(ctx.client.clone());
    let any = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .next()
        .unwrap();
    nodes::reconcile(Arc::new(any), ctx.clone()).await.unwrap();
    let mut out: Vec<_> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| {
            (
                n.metadata.name.clone().unwrap(),
                n.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(VTEP_ANNOTATION).cloned()),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn nodes_joining_and_leaving_shape_the_mesh() {
    let api = FakeApi::new();
    let ctx = context(&api);
    seed_node(&api, "n1", 1);
    seed_node(&api, "n2", 2);
    api.seed(
        NODES,
        json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "no-agent" } }),
    );
    let m = mesh(&ctx).await;
    assert_eq!(
        m,
        vec![
            ("n1".into(), Some("100.64.0.1".into())),
            ("n2".into(), Some("100.64.0.2".into())),
            ("no-agent".into(), None)
        ]
    );
    let patch = &api.requests("PATCH", &format!("{NODES}/n1"))[0];
    assert_eq!(
        patch.body["metadata"]["annotations"],
        json!({ VTEP_ANNOTATION: "100.64.0.1" })
    );
    assert!(patch.query.contains("fieldManager=privnet-controller"));

    // Idempotent: a second pass writes nothing.
    api.clear_log();
    mesh(&ctx).await;
    assert!(
        api.log().iter().all(|r| r.method != "PATCH"),
        "{:#?}",
        api.log()
    );

    // n1 leaves, n3 joins: n3 gets the freed address, n2 keeps its own.
    api.remove(&format!("{NODES}/n1"));
    seed_node(&api, "n3", 3);
    let m = mesh(&ctx).await;
    assert_eq!(
        m,
        vec![
            ("n2".into(), Some("100.64.0.2".into())),
            ("n3".into(), Some("100.64.0.1".into())),
            ("no-agent".into(), None)
        ]
    );
    // What the agents read from the Node objects.
    let node: Node = Api::all(ctx.client.clone()).get("n3").await.unwrap();
    let info = privnet_api::readers::node_info(&node).unwrap();
    assert_eq!(
        (
            info.public_key,
            info.endpoint.to_string(),
            info.vtep.map(|v| v.to_string())
        ),
        (
            base64_key(3),
            "192.0.2.3:51820".into(),
            Some("100.64.0.1".into())
        )
    );
}

fn seed_endpoint(api: &FakeApi, network_id: &str, n: u32, ip: &str, node: &str) {
    api.seed(
        ENDPOINTS,
        json!({ "apiVersion": "privnet.io/v1alpha1", "kind": "PrivateEndpoint",
                "metadata": { "name": format!("{network_id}-web-{n}"), "namespace": "shop" },
                "spec": { "networkId": network_id, "applicationId": "app", "processType": "web", "containerNumber": n,
                          "hostname": format!("{n}.web.app.{network_id}.private-network.internal"), "ip": ip,
                          "mac": "02:00:00:00:00:01", "node": node, "containerId": format!("c{n}"), "interface": "eth1" } }),
    );
}

#[tokio::test]
async fn endpoints_become_the_zone_configmap_with_serial_bumps() {
    let api = FakeApi::new();
    let ctx = context(&api);
    seed_project(&api, "shop", 1, &["shop"]);
    reconcile_project(&api, &ctx, "shop").await;
    let id = reconcile_network(&ctx, "shop")
        .await
        .status
        .unwrap()
        .id
        .unwrap();
    let cm_path = format!("/api/v1/namespaces/privnet-system/configmaps/privnet-zone-{id}");
    let key = format!("db.{id}.private-network.internal");
    let cm = api
        .get(&cm_path)
        .expect("zone ConfigMap created with the network");
    assert_eq!(cm["metadata"]["annotations"]["privnet.io/zone-serial"], "1");
    assert_eq!(
        cm["metadata"]["ownerReferences"][0]["kind"],
        "PrivateNetwork"
    );

    seed_endpoint(&api, &id, 1, "10.240.0.2", "n1");
    seed_endpoint(&api, &id, 2, "10.240.0.3", "n2");
    seed_endpoint(&api, "pn-other", 1, "10.240.0.9", "n1");
    let net = reconcile_network(&ctx, "shop").await;
    let cm = api.get(&cm_path).unwrap();
    let zone = cm["data"][&key].as_str().unwrap();
    assert!(
        zone.starts_with(&format!("$ORIGIN {id}.private-network.internal.")),
        "{zone}"
    );
    assert!(
        zone.contains("1.web.app") && zone.contains("10.240.0.2") && zone.contains("10.240.0.3"),
        "{zone}"
    );
    assert!(
        !zone.contains("10.240.0.9"),
        "another network's endpoint leaked: {zone}"
    );
    assert!(zone.contains(" 2 "), "serial 2 in the SOA: {zone}");
    assert_eq!(cm["metadata"]["annotations"]["privnet.io/zone-serial"], "2");
    let s = net.status.unwrap();
    assert_eq!(
        (s.endpoints, s.nodes),
        (2, vec!["n1".to_string(), "n2".to_string()])
    );

    // Nothing changed: no write, same serial.
    api.clear_log();
    reconcile_network(&ctx, "shop").await;
    assert!(
        api.requests("PATCH", &cm_path).is_empty(),
        "{:#?}",
        api.log()
    );

    // An endpoint goes: the serial moves on.
    api.remove(&format!(
        "/apis/privnet.io/v1alpha1/namespaces/shop/privateendpoints/{id}-web-2"
    ));
    reconcile_network(&ctx, "shop").await;
    let cm = api.get(&cm_path).unwrap();
    assert_eq!(cm["metadata"]["annotations"]["privnet.io/zone-serial"], "3");
    assert!(!cm["data"][&key].as_str().unwrap().contains("10.240.0.3"));
}

#[tokio::test]
async fn a_namespace_claimed_twice_is_a_condition_on_the_later_project() {
    let api = FakeApi::new();
    let ctx = context(&api);
    seed_project(&api, "first", 1, &["shared", "one"]);
    seed_project(&api, "second", 2, &["shared", "two"]);
    for ns in ["shared", "one", "two"] {
        seed_namespace(&api, ns);
    }
    reconcile_project(&api, &ctx, "first").await;
    reconcile_project(&api, &ctx, "second").await;
    let first = api.get(&format!("{PROJECTS}/first")).unwrap();
    let second = api.get(&format!("{PROJECTS}/second")).unwrap();
    assert_eq!(condition(&first, "NamespaceConflict")["status"], "False");
    let c = condition(&second, "NamespaceConflict");
    assert_eq!(
        (c["status"].as_str(), c["reason"].as_str()),
        (Some("True"), Some("NamespaceClaimed"))
    );
    assert_eq!(
        c["message"],
        "namespace shared already belongs to project first"
    );
    assert_eq!(condition(&second, "Ready")["status"], "False");
    // The later project touches only what it holds.
    let shared_labels = api.requests("PATCH", "/api/v1/namespaces/shared");
    assert!(
        shared_labels
            .iter()
            .all(|r| r.body["metadata"]["labels"]["privnet.io/project"] == "first"),
        "{shared_labels:#?}"
    );
    assert_eq!(api.requests("PATCH", "/api/v1/namespaces/two").len(), 1);
    let events = api.requests("POST", "/apis/events.k8s.io/v1/namespaces/default/events");
    assert!(
        events
            .iter()
            .any(|e| e.body["reason"] == "NamespaceConflict"
                && e.body["type"] == "Warning"
                && e.body["regarding"]["name"] == "second"),
        "{events:#?}"
    );
    // The conflict clears once the first project lets the namespace go.
    api.edit(&format!("{PROJECTS}/first"), |p| {
        p["spec"]["namespaces"] = json!(["one"])
    });
    reconcile_project(&api, &ctx, "second").await;
    let second = api.get(&format!("{PROJECTS}/second")).unwrap();
    assert_eq!(condition(&second, "NamespaceConflict")["status"], "False");
}

#[tokio::test]
async fn a_missing_namespace_and_an_edited_subnet_still_give_a_status() {
    let api = FakeApi::new();
    let ctx = context(&api);
    seed_project(&api, "shop", 1, &["here", "later"]);
    seed_namespace(&api, "here");
    reconcile_project(&api, &ctx, "shop").await;
    let stored = api.get(&format!("{PROJECTS}/shop")).unwrap();
    let found = condition(&stored, "NamespacesFound");
    assert_eq!(
        (found["status"].as_str(), found["reason"].as_str()),
        (Some("False"), Some("NamespaceMissing"))
    );
    assert!(found["message"].as_str().unwrap().contains("later"));
    // Nothing is written into the missing namespace (a real API answers 404);
    // the existing one is labelled and gets its policy.
    let policies =
        "/apis/networking.k8s.io/v1/namespaces/{}/networkpolicies/privnet-private-processes";
    assert!(
        api.requests("PATCH", &policies.replace("{}", "later"))
            .is_empty()
    );
    assert!(api.requests("PATCH", "/api/v1/namespaces/later").is_empty());
    assert_eq!(
        api.requests("PATCH", &policies.replace("{}", "here")).len(),
        1
    );

    // The namespace appears: the next pass takes it in.
    seed_namespace(&api, "later");
    reconcile_project(&api, &ctx, "shop").await;
    let stored = api.get(&format!("{PROJECTS}/shop")).unwrap();
    assert_eq!(condition(&stored, "NamespacesFound")["status"], "True");
    assert_eq!(
        api.requests("PATCH", &policies.replace("{}", "later"))
            .len(),
        1
    );

    // An edited subnet is refused as a condition; the network keeps its own.
    api.edit(&format!("{PROJECTS}/shop"), |p| {
        p["spec"]["network"] = json!({ "subnet": "10.9.0.0/24" })
    });
    reconcile_project(&api, &ctx, "shop").await;
    let stored = api.get(&format!("{PROJECTS}/shop")).unwrap();
    let applied = condition(&stored, "SubnetApplied");
    assert_eq!(
        (applied["status"].as_str(), applied["reason"].as_str()),
        (Some("False"), Some("SubnetImmutable"))
    );
    let net = api.get(&format!("{NETWORKS}/shop")).unwrap();
    assert_eq!(net["spec"]["subnet"], "10.240.0.0/22");
}

#[tokio::test]
async fn claims_of_deleted_pods_and_lost_nodes_are_collected() {
    let api = FakeApi::new();
    let ctx = context(&api);
    let leases = "/apis/coordination.k8s.io/v1/namespaces/privnet-system/leases";
    let old = "2020-01-01T00:00:00.000000Z";
    let number_claim = |n: u32| {
        json!({ "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": { "name": format!("privnet-num-app-{n}"), "namespace": "privnet-system",
                "labels": { "privnet.io/claim": "container-number", "privnet.io/network": "pn-1",
                            "privnet.io/application": "app", "privnet.io/process-type": "web" },
                "annotations": { "privnet.io/container-number": n.to_string() } },
            "spec": { "holderIdentity": "shop/web-x", "acquireTime": old } })
    };
    let address_claim = |ip: &str, holder: &str| {
        json!({ "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": { "name": format!("privnet-ip-pn-1-{ip}"), "namespace": "privnet-system",
                "labels": { "privnet.io/claim": "address", "privnet.io/network": "pn-1" } },
            "spec": { "holderIdentity": holder, "acquireTime": old } })
    };
    api.seed(leases, number_claim(1));
    api.seed(leases, number_claim(2));
    api.seed(leases, address_claim("10-240-0-2", "n1/c1/eth1"));
    api.seed(leases, address_claim("10-240-0-3", "gone-node/c9/eth1"));
    api.seed(
        leases,
        json!({ "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": { "name": "privnet-controller", "namespace": "privnet-system" },
            "spec": { "holderIdentity": "pod-a" } }),
    );
    // Pod with number 1 and the endpoint of c1 on n1 are alive.
    api.seed(
        "/api/v1/namespaces/shop/pods",
        json!({ "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "web-1", "namespace": "shop",
                "labels": { "privnet.io/application": "app", "privnet.io/process-type": "web" },
                "annotations": { "privnet.io/network-id": "pn-1", "privnet.io/container-number": "1" } },
            "spec": { "containers": [{ "name": "c", "image": "i" }] } }),
    );
    seed_node(&api, "n1", 1);
    seed_endpoint(&api, "pn-1", 1, "10.240.0.2", "n1");
    let collected = privnet_controller::claims::sweep(&ctx, std::time::Duration::from_secs(120))
        .await
        .unwrap();
    let left: Vec<String> = api
        .list(leases)
        .iter()
        .map(|l| l["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(collected, 2, "{left:?}");
    assert!(
        left.contains(&"privnet-num-app-1".to_string()),
        "live pod keeps its number"
    );
    assert!(
        left.contains(&"privnet-ip-pn-1-10-240-0-2".to_string()),
        "live endpoint keeps its address"
    );
    assert!(
        left.contains(&"privnet-controller".to_string()),
        "not a claim"
    );
    assert!(!left.contains(&"privnet-num-app-2".to_string()));
    assert!(!left.contains(&"privnet-ip-pn-1-10-240-0-3".to_string()));
}
