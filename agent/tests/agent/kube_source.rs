//! The agent's Kubernetes source against the mocked API: the view built
//! from the watched objects, node annotations, PrivateEndpoints owned by
//! their Pod, and address claims as a create-only compare-and-swap.

use std::time::Duration;

use privnet_agent::source::{KubeSource, Source};
use privnet_core::view::{EndpointInfo, NodeInfo};
use privnet_testkit::FakeApi;
use serde_json::json;

const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

fn seed(api: &FakeApi) {
    api.seed("/api/v1/nodes", json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "n1", "annotations": {
        "privnet.io/wireguard-public-key": KEY, "privnet.io/wireguard-endpoint": "192.0.2.1:51820", "privnet.io/vtep": "100.64.0.1" } } }));
    api.seed("/apis/privnet.io/v1alpha1/privatenetworks", json!({ "apiVersion": "privnet.io/v1alpha1", "kind": "PrivateNetwork",
        "metadata": { "name": "shop" }, "spec": { "project": "shop", "subnet": "10.240.0.0/22" }, "status": { "id": "pn-1", "vni": 4096 } }));
    api.seed("/apis/privnet.io/v1alpha1/projects", json!({ "apiVersion": "privnet.io/v1alpha1", "kind": "Project",
        "metadata": { "name": "shop" }, "spec": { "namespaces": ["shop"] }, "status": { "networkId": "pn-1" } }));
    api.seed("/api/v1/namespaces/shop/pods", json!({ "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "web-abc", "namespace": "shop", "uid": "pod-uid-1",
                      "labels": { "privnet.io/application": "app", "privnet.io/process-type": "web" },
                      "annotations": { "privnet.io/network-id": "pn-1", "privnet.io/container-number": "1" } },
        "spec": { "nodeName": "n1", "containers": [{ "name": "c", "image": "i" }] } }));
}

fn endpoint() -> EndpointInfo {
    EndpointInfo {
        network_id: "pn-1".into(),
        application_id: "app".into(),
        process_type: "web".into(),
        container_number: 1,
        ip: "10.240.0.2".parse().unwrap(),
        mac: "02:00:00:00:00:02".into(),
        node: "n1".into(),
        container_id: "cid".into(),
        interface: "eth1".into(),
    }
}

#[tokio::test]
async fn kube_source_reads_and_writes_through_the_api() {
    let api = FakeApi::new();
    seed(&api);
    let source = KubeSource::start(
        api.client(),
        "n1",
        "privnet-system",
        "private-network.internal",
    );
    let (rev, view) = tokio::time::timeout(Duration::from_secs(10), source.next_view(0))
        .await
        .expect("view within 10 s")
        .unwrap();
    assert_ne!(rev, 0);
    assert_eq!(view.nodes.len(), 1);
    assert_eq!(view.nodes[0].vtep, Some("100.64.0.1".parse().unwrap()));
    assert_eq!(view.network_of_namespace("shop").map(|n| n.vni), Some(4096));

    source
        .publish_node(&NodeInfo {
            name: "n1".into(),
            public_key: KEY.into(),
            endpoint: "192.0.2.1:51999".parse().unwrap(),
            vtep: None,
            next_public_key: None,
            accepted_keys: Vec::new(),
        })
        .await
        .unwrap();
    let patch = &api.requests("PATCH", "/api/v1/nodes/n1")[0];
    assert!(
        patch.query.contains("fieldManager=privnet-agent"),
        "{}",
        patch.query
    );
    assert_eq!(
        patch.body["metadata"]["annotations"]["privnet.io/wireguard-endpoint"],
        "192.0.2.1:51999"
    );
    assert!(
        patch.body["metadata"]["annotations"]
            .get("privnet.io/vtep")
            .is_none(),
        "the agent never writes the VTEP"
    );

    source.publish_endpoint(&endpoint()).await.unwrap();
    let ep = api
        .get("/apis/privnet.io/v1alpha1/namespaces/shop/privateendpoints/web-abc-eth1")
        .expect("endpoint created in the pod's namespace");
    assert_eq!(ep["metadata"]["ownerReferences"][0]["uid"], "pod-uid-1");
    assert_eq!(ep["metadata"]["ownerReferences"][0]["kind"], "Pod");
    assert_eq!(
        ep["spec"]["hostname"],
        "1.web.app.pn-1.private-network.internal"
    );

    let ip = "10.240.0.2".parse().unwrap();
    assert!(
        source
            .claim_address("pn-1", ip, "n1/cid/eth1")
            .await
            .unwrap()
    );
    assert!(
        source
            .claim_address("pn-1", ip, "n1/cid/eth1")
            .await
            .unwrap(),
        "claiming one's own address again succeeds"
    );
    assert!(
        !source
            .claim_address("pn-1", ip, "n2/other/eth1")
            .await
            .unwrap(),
        "409: taken by another owner"
    );
    source
        .release_address("pn-1", ip, "n2/other/eth1")
        .await
        .unwrap();
    assert!(api.get("/apis/coordination.k8s.io/v1/namespaces/privnet-system/leases/privnet-ip-pn-1-10-240-0-2").is_some(), "a non-owner cannot release");
    source
        .release_address("pn-1", ip, "n1/cid/eth1")
        .await
        .unwrap();
    assert!(
        source
            .claim_address("pn-1", ip, "n2/other/eth1")
            .await
            .unwrap(),
        "free again after release"
    );
}
