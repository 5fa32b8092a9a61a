//! RPC `expected`: the node as the agent wants it, for `privnet doctor`.

use std::time::Instant;

use privnet_core::rpc::{Request, Response};

use super::*;
use crate::rpc_server::RpcHandler;

async fn expected(h: &Harness) -> privnet_core::expected::ExpectedState {
    match h.agent.handle(Request::Expected, None).await {
        Response::Expected(e) => *e,
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn expected_state_follows_the_view_and_the_book() {
    // Before the mesh: not ready, nothing to compare yet.
    let h = Harness::start().await;
    let e = expected(&h).await;
    assert_eq!(e.unready.as_deref(), Some("waiting for the mesh address"));
    assert!(e.mesh.is_none() && e.networks.is_empty());

    let h = Harness::ready().await;
    let mut v = view();
    v.endpoints.push(remote_endpoint("r1", 7));
    h.agent.set_view(v);
    let local = h.attach("c1").await;
    h.agent.converge_at(Instant::now()).await.unwrap();
    let e = expected(&h).await;
    assert_eq!((e.node.as_str(), e.unready.as_deref()), (NODE, None));
    let mesh = e.mesh.expect("the mesh is up");
    assert_eq!(mesh.address.to_string(), "100.64.0.1/16");
    assert_eq!(mesh.peers.len(), 1);
    assert_eq!(
        (mesh.peers[0].node.as_str(), mesh.peers[0].vtep),
        ("n2", Ipv4Addr::new(100, 64, 0, 2))
    );
    assert!(mesh.guard.is_some());
    let net = &e.networks[0];
    assert_eq!((net.id.as_str(), net.vni), (NET, VNI));
    assert_eq!(net.ports.len(), 1);
    assert_eq!(net.ports[0].host_ifname, local.host_ifname);
    assert_eq!(
        (
            net.ports[0].container_netns.as_str(),
            net.ports[0].container_ifname.as_str()
        ),
        ("/run/netns/c-c1", "eth1")
    );
    let fdb: Vec<(&str, Ipv4Addr)> = net.fdb.iter().map(|f| (f.mac.as_str(), f.dst)).collect();
    let n2 = Ipv4Addr::new(100, 64, 0, 2);
    assert_eq!(fdb, [("00:00:00:00:00:00", n2), ("0a:58:0a:f0:01:07", n2)]);
    let names: Vec<&str> = net.names.iter().map(|n| n.name.as_str()).collect();
    assert!(names.contains(&local.hostname.as_str()), "{names:?}");
    assert!(
        names.contains(&"7.web.app.pn-a.private-network.internal"),
        "{names:?}"
    );
}
