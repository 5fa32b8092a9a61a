//! A restarted agent adopts what it finds: records of live containers, the
//! kernel's namespaces, published endpoints; it releases the rest.

use std::time::Instant;

use super::*;
use crate::datapath::memory::Call;
use crate::node::plan::endpoint_info;

#[tokio::test]
async fn a_restart_adopts_live_attachments_and_cleans_the_rest() {
    let first = Harness::ready().await;
    first.attach("live").await;
    first.attach("gone").await;
    first.agent.converge_at(Instant::now()).await.unwrap();
    let records = first.agent.attachments().await;
    let published: Vec<EndpointInfo> = records.iter().map(|r| endpoint_info(NODE, r)).collect();
    let (store, dp) = (first.store.clone(), first.dp.clone());
    let dir = first._dir;
    drop(first.agent);

    // While the agent was down: one container went away; a namespace of
    // ours nobody owns is left over; another agent's namespace is there.
    dp.with_kernel(|k| {
        k.containers.remove("/run/netns/c-gone");
        k.networks.insert("pnu-999".into(), vec![]);
        k.networks.insert("other-5".into(), vec![]);
    });
    dp.clear_calls();
    let h = Harness::start_on(store, dp, dir).await;
    assert_eq!(
        h.store.keys(),
        ["live"],
        "the vanished container's record is released"
    );
    let mut v = view();
    v.endpoints = published;
    h.agent.set_view(v);
    h.agent.converge_at(Instant::now()).await.unwrap();

    let calls = h.dp.calls();
    let live_port = records
        .iter()
        .find(|r| r.key.container_id == "live")
        .unwrap()
        .host_ifname
        .clone();
    assert!(
        calls.contains(&Call::EnsureNetwork(h.netns(), vec![live_port])),
        "{calls:?}"
    );
    assert!(calls.contains(&Call::RemoveLeftover("pnu-999".into())));
    assert!(
        !calls
            .iter()
            .any(|c| matches!(c, Call::RemoveLeftover(n) if n == "other-5"))
    );
    assert!(
        !calls.iter().any(|c| matches!(c, Call::RemoveNetwork(_))),
        "never flushes"
    );
    {
        let src = h.source.state();
        assert!(src.withdrawn.iter().any(|e| e.container_id == "gone"));
        assert!(!src.withdrawn.iter().any(|e| e.container_id == "live"));
    }
    // Its address is free again: the next container gets it.
    let next = h.attach("new").await;
    assert_eq!(
        next.address,
        records
            .iter()
            .find(|r| r.key.container_id == "gone")
            .unwrap()
            .address
    );
}

#[tokio::test]
async fn a_restart_releases_this_nodes_claims_no_attachment_holds() {
    let first = Harness::ready().await;
    first.attach("live").await;
    let ip = |s: &str| s.parse::<std::net::Ipv4Addr>().unwrap();
    {
        let mut st = first.source.state();
        // An ADD cut short by a kill: claimed, never recorded.
        st.claims
            .insert((NET.into(), ip("10.240.0.9")), format!("{NODE}/cut/eth1"));
        // Another node's claim is not this node's to judge.
        st.claims
            .insert((NET.into(), ip("10.240.0.10")), "n2/theirs/eth1".into());
    }
    let (source, store, dp) = (first.source.clone(), first.store.clone(), first.dp.clone());
    let dir = first._dir;
    drop(first.agent);
    let h = Harness::start_with_source(source, store, dp, dir).await;
    let owners: BTreeSet<String> = h.source.state().claims.values().cloned().collect();
    assert_eq!(
        owners,
        [format!("{NODE}/live/eth1"), "n2/theirs/eth1".to_string()].into(),
        "the cut-short claim is released, the live one and n2's kept"
    );
}
