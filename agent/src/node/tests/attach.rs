//! Attach and detach, and the rollback of every step that can fail.

use std::time::Instant;

use privnet_core::rpc::{ErrorKind, NetworkSelector};
use privnet_core::view::EndpointInfo;

use super::*;
use crate::datapath::Step;
use crate::datapath::memory::Call;
use crate::node::{AttachError, Phase};

/// Nothing of `cid` is left anywhere: book, store, claims, kernel ports.
async fn nothing_left_of(h: &Harness, cid: &str) {
    assert!(
        h.agent
            .attachments()
            .await
            .iter()
            .all(|r| r.key.container_id != cid)
    );
    assert!(!h.store.keys().contains(&cid.to_string()));
    assert!(
        h.source.state().claims.values().all(|o| !o.contains(cid)),
        "{:?}",
        h.source.state().claims
    );
}

#[tokio::test]
async fn attach_then_detach_brings_the_network_up_and_down() {
    let h = Harness::ready().await;
    assert_eq!(h.agent.phase(), Phase::Ready);
    let a = h.attach("c1").await;
    assert_eq!(a.address.to_string(), "10.240.0.2/22");
    assert_eq!(a.gateway.to_string(), "10.240.0.1");
    assert_eq!(a.mtu, 1390);
    assert_eq!(a.network_netns, format!("/run/netns/{}", h.netns()));
    assert_eq!(a.bridge, "br0");
    assert_eq!(a.hostname, "1.web.app.pn-a.private-network.internal");
    assert_eq!(h.store.keys(), ["c1"]);
    assert_eq!(h.source.state().claims.len(), 1);
    assert!(h.dp.kernel().networks.contains_key(&h.netns()));
    // Idempotent: the same key gets the same answer.
    assert_eq!(h.attach("c1").await, a);

    h.agent.converge_at(Instant::now()).await.unwrap();
    assert_eq!(h.dp.kernel().networks[&h.netns()].len(), 1, "port guarded");
    assert!(
        h.source
            .state()
            .published
            .contains_key(&("c1".into(), "eth1".into()))
    );

    assert_eq!(h.agent.release(&key("c1")).await, 1);
    assert_eq!(
        h.agent.release(&key("c1")).await,
        0,
        "release is idempotent"
    );
    nothing_left_of(&h, "c1").await;
    h.agent.converge_at(Instant::now()).await.unwrap();
    assert!(
        h.dp.kernel().networks.is_empty(),
        "last attachment gone: network removed"
    );
    assert!(h.dp.calls().contains(&Call::RemoveNetwork(h.netns())));
    assert!(h.source.state().published.is_empty(), "endpoint withdrawn");
}

#[tokio::test]
async fn attach_waits_for_the_mesh_and_resolves_networks() {
    let h = Harness::start().await;
    let e = h.agent.attach(request("c1", None)).await.unwrap_err();
    assert!(matches!(e, AttachError::NotReady), "{e}");
    assert_eq!(e.kind(), ErrorKind::NotReady);
    h.agent.set_view(view());
    h.agent.converge_at(Instant::now()).await.unwrap();

    let with = |sel: NetworkSelector| {
        let mut r = request("c1", None);
        r.network = sel;
        r
    };
    let unknown = with(NetworkSelector {
        network_id: Some("pn-nope".into()),
        ..Default::default()
    });
    let e = h.agent.attach(unknown).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownNetwork, "{e}");
    let e = h
        .agent
        .attach(with(NetworkSelector::default()))
        .await
        .unwrap_err();
    assert!(matches!(e, AttachError::NoNetwork), "{e}");
    let by_namespace = with(NetworkSelector {
        pod_namespace: Some("ns".into()),
        ..Default::default()
    });
    assert_eq!(h.agent.attach(by_namespace).await.unwrap().network_id, NET);
}

#[tokio::test]
async fn a_failed_claim_is_rolled_back() {
    let h = Harness::ready().await;
    h.source.state().claims_fail = true;
    let e = h.agent.attach(request("c1", None)).await.unwrap_err();
    assert!(matches!(e, AttachError::Claim { .. }), "{e}");
    assert!(
        crate::error_chain(&e).ends_with("disk on fire"),
        "{}",
        crate::error_chain(&e)
    );
    nothing_left_of(&h, "c1").await;
    h.source.state().claims_fail = false;
    h.attach("c1").await;
    assert_eq!(h.source.state().claims.len(), 1);
}

#[tokio::test]
async fn a_lost_claim_fences_the_address_and_takes_the_next() {
    let h = Harness::ready().await;
    h.source
        .state()
        .held_elsewhere
        .insert("10.240.0.2".parse().unwrap());
    assert_eq!(h.attach("c1").await.address.to_string(), "10.240.0.3/22");
    let claims: Vec<_> = h
        .source
        .state()
        .claims
        .keys()
        .map(|(_, ip)| ip.to_string())
        .collect();
    assert_eq!(claims, ["10.240.0.3"]);
}

#[tokio::test]
async fn a_failed_store_write_is_rolled_back() {
    let h = Harness::ready().await;
    *h.store.fail_put.lock().unwrap() = true;
    let e = h.agent.attach(request("c1", None)).await.unwrap_err();
    assert!(matches!(e, AttachError::Store(_)), "{e}");
    nothing_left_of(&h, "c1").await;
    assert!(h.source.state().claims.is_empty(), "claim released");
    *h.store.fail_put.lock().unwrap() = false;
    h.attach("c1").await;
}

#[tokio::test]
async fn a_full_state_directory_is_a_transient_error_and_rolled_back() {
    let h = Harness::ready().await;
    *h.store.full.lock().unwrap() = true;
    let e = h.agent.attach(request("c1", None)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoSpace, "{e}");
    nothing_left_of(&h, "c1").await;
    assert!(h.source.state().claims.is_empty(), "claim released");
    // Room again: the same ADD works.
    *h.store.full.lock().unwrap() = false;
    h.attach("c1").await;
}

#[tokio::test]
async fn a_failed_network_or_dns_is_rolled_back() {
    for step in [Step::EnsureNetwork, Step::StartDns] {
        let h = Harness::ready().await;
        h.dp.fail(step);
        let e = h.agent.attach(request("c1", None)).await.unwrap_err();
        assert!(matches!(e, AttachError::Network { .. }), "{e}");
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert!(
            crate::error_chain(&e).contains("injected failure"),
            "{}",
            crate::error_chain(&e)
        );
        nothing_left_of(&h, "c1").await;
        // A namespace made before DNS failed is a leftover: the next pass
        // removes it.
        h.agent.converge_at(Instant::now()).await.unwrap();
        assert!(h.dp.kernel().networks.is_empty(), "{step:?}");
        h.dp.heal(step);
        h.attach("c1").await;
        assert!(h.dp.kernel().networks.contains_key(&h.netns()));
    }
}

#[tokio::test]
async fn a_failed_retry_keeps_an_existing_attachment() {
    let h = Harness::ready().await;
    let a = h.attach("c1").await;
    h.source.state().claims_fail = true;
    assert!(h.agent.attach(request("c1", None)).await.is_err());
    assert_eq!(h.store.keys(), ["c1"], "the earlier attach is not undone");
    h.source.state().claims_fail = false;
    assert_eq!(h.attach("c1").await, a);
}

#[tokio::test]
async fn container_numbers_are_lowest_free_and_clashes_refused() {
    let h = Harness::ready().await;
    // Number 1 is used on another node: the lowest free one is 2.
    let mut v = view();
    v.endpoints.push(EndpointInfo {
        network_id: NET.into(),
        application_id: "app".into(),
        process_type: "web".into(),
        container_number: 1,
        ip: "10.240.0.9".parse().unwrap(),
        mac: "0a:58:0a:f0:00:09".into(),
        node: "n2".into(),
        container_id: "remote".into(),
        interface: "eth1".into(),
    });
    h.agent.set_view(v);
    let a = h.attach("c1").await;
    assert!(a.hostname.starts_with("2.web.app."), "{}", a.hostname);
    assert_ne!(
        a.address.addr().to_string(),
        "10.240.0.9",
        "remote address fenced"
    );
    // An explicit number clashing on this node is refused, nothing changes.
    let e = h.agent.attach(request("c2", Some(2))).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    nothing_left_of(&h, "c2").await;
    // An explicit number used only remotely is trusted (remote views lag).
    let b = h.agent.attach(request("c3", Some(1))).await.unwrap();
    assert!(b.hostname.starts_with("1.web.app."), "{}", b.hostname);
}

/// A request as a runtime sends it on Kubernetes: the pod's name, no workload.
fn pod_request(cid: &str, pod: &str) -> privnet_core::rpc::AttachRequest {
    let mut req = request(cid, None);
    req.network = NetworkSelector {
        network_id: None,
        pod_namespace: Some("ns".into()),
        pod_name: Some(pod.into()),
    };
    req.workload = Workload::default();
    req
}

#[tokio::test]
async fn on_kubernetes_the_workload_and_number_come_from_the_pod() {
    let h = Harness::ready().await;
    {
        let mut st = h.source.state();
        st.admission_numbers = true;
        st.pods.insert(
            "ns/web-7".into(),
            Workload {
                application_id: Some("shop".into()),
                process_type: Some("worker".into()),
                container_number: Some(7),
            },
        );
        st.pods.insert(
            "ns/unadmitted".into(),
            Workload {
                application_id: Some("shop".into()),
                process_type: Some("web".into()),
                container_number: None,
            },
        );
    }
    let a = h.agent.attach(pod_request("c7", "web-7")).await.unwrap();
    assert_eq!(a.hostname, "7.worker.shop.pn-a.private-network.internal");
    // A pod the webhook did not number is refused, nothing is left, and the
    // agent did not invent a number for it.
    let e = h
        .agent
        .attach(pod_request("cx", "unadmitted"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, AttachError::NotAdmitted(ref p) if p == "ns/unadmitted"),
        "{e}"
    );
    // Its own kind: a chained plugin passes such pods through untouched.
    assert_eq!(e.kind(), ErrorKind::NotAdmitted);
    nothing_left_of(&h, "cx").await;
    // Control: outside Kubernetes the same request gets the lowest free number.
    h.source.state().admission_numbers = false;
    let b = h
        .agent
        .attach(pod_request("cy", "unadmitted"))
        .await
        .unwrap();
    assert_eq!(b.hostname, "1.web.shop.pn-a.private-network.internal");
}

#[tokio::test]
async fn a_pod_privnet_did_not_admit_is_told_so_even_before_the_mesh_is_up() {
    // A chained plugin sees every pod of the node; it passes those privnet
    // did not admit through, so their answer must not wait for the mesh.
    let h = Harness::start().await;
    let mut v = view();
    v.nodes[0].vtep = None;
    h.agent.set_view(v);
    h.agent.converge_at(Instant::now()).await.unwrap();
    assert_eq!(h.agent.phase(), Phase::WaitingForMesh);
    {
        let mut st = h.source.state();
        st.admission_numbers = true;
        st.pods.insert(
            "ns/admitted".into(),
            Workload {
                application_id: Some("shop".into()),
                process_type: Some("web".into()),
                container_number: Some(1),
            },
        );
    }
    let e = h
        .agent
        .attach(pod_request("c-other", "nginx"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotAdmitted, "{e}");
    // Control: privnet's own pod waits for the mesh (the kubelet retries).
    let e = h
        .agent
        .attach(pod_request("c-ours", "admitted"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotReady, "{e}");
}

#[tokio::test]
async fn an_early_answer_is_the_attachment_and_a_guard_failure_after_it_is_undone() {
    let h = Harness::ready().await;
    h.attach("c1").await;
    // The plugin wires from the early answer; the final one confirms it.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let done = h
        .agent
        .attach_answering_early(request("c2", None), Some(tx))
        .await
        .unwrap();
    assert_eq!(rx.await.expect("answered early"), done);
    assert!(
        h.dp.calls()
            .iter()
            .any(|c| matches!(c, Call::UpdatePorts(_, ports) if ports.contains(&done.host_ifname))),
        "the port is guarded when the final answer comes"
    );
    // The guard fails after the early answer: the final answer is the
    // error and the agent has undone everything (book, claim, record).
    h.dp.fail(Step::UpdatePorts);
    h.dp.fail(Step::SetPorts);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let e = h
        .agent
        .attach_answering_early(request("c3", None), Some(tx))
        .await
        .unwrap_err();
    assert!(matches!(e, AttachError::Guard { .. }), "{e}");
    assert!(rx.await.is_ok(), "it had answered early");
    nothing_left_of(&h, "c3").await;
    // Control: the same attach works once the guard does.
    h.dp.heal(Step::UpdatePorts);
    h.dp.heal(Step::SetPorts);
    h.attach("c3").await;
}
