//! The agent's desired view of its node, for `privnet doctor` (RPC
//! `expected`): built purely from the cluster view, the local networks and
//! the book, exactly as the convergence and the repairs derive it (mesh
//! peers, FDB, zone names, live guarded ports).

use ipnet::Ipv4Net;
use privnet_core::expected::{
    ExpectedFdb, ExpectedMesh, ExpectedName, ExpectedNetwork, ExpectedNodeGuard, ExpectedPeer,
    ExpectedPort, ExpectedState,
};
use privnet_core::mac::format_mac;
use privnet_core::view::ClusterView;

use super::{Agent, Phase, plan};
use crate::config::AgentConfig;
use crate::datapath::NodeDatapath;
use crate::datapath::guard::GuardedPort;
use crate::datapath::network::NetworkDatapath;
use crate::source::Source;
use crate::store::AttachmentRecord;

/// What `/readyz` says about a phase (`None`: ready).
pub fn unready_reason(phase: &Phase) -> Option<String> {
    match phase {
        Phase::Ready => None,
        Phase::WaitingForMesh => Some("waiting for the mesh address".into()),
        Phase::Degraded(e) => Some(format!("degraded: {e}")),
    }
}

/// One local network as the doctor needs it.
pub struct LocalInput<'a> {
    /// Network id.
    pub id: &'a str,
    /// Its datapath spec.
    pub spec: &'a NetworkDatapath,
    /// Its live guarded ports.
    pub ports: Vec<GuardedPort>,
}

/// The node's expected state, pure: `cfg` gives the node, domain and
/// keepalive, `mesh` is the mesh spec once the node has a VTEP, `records` the book.
pub fn expected_state(
    cfg: &AgentConfig,
    unready: Option<String>,
    mesh: Option<&crate::datapath::MeshSpec>,
    view: &ClusterView,
    locals: &[LocalInput<'_>],
    records: &[AttachmentRecord],
) -> ExpectedState {
    let (node, domain) = (cfg.node.as_str(), cfg.domain.as_str());
    let mesh = mesh.map(|m| ExpectedMesh {
        ifname: m.wireguard.ifname.clone(),
        address: m.wireguard.address,
        mtu: m.wireguard.mtu,
        peers: view
            .nodes
            .iter()
            .filter(|n| n.name != node)
            .filter_map(|n| {
                Some(ExpectedPeer {
                    node: n.name.clone(),
                    public_key: n.public_key.clone(),
                    vtep: n.vtep?,
                    endpoint: n.endpoint,
                })
            })
            .collect(),
        keepalive: cfg.keepalive,
        guard: (!m.guard_disabled).then(|| ExpectedNodeGuard {
            vxlan_port: m.guard.vxlan_port,
            vni_first: *m.guard.vnis.start(),
            vni_last: *m.guard.vnis.end(),
            mesh: m.guard.mesh,
        }),
    });
    let networks = locals
        .iter()
        .map(|l| {
            let fdb = plan::network_fdb(node, view, l.id).unwrap_or_default();
            ExpectedNetwork {
                id: l.id.to_string(),
                netns: l.spec.netns.clone(),
                vni: l.spec.vni,
                bridge: l.spec.bridge.clone(),
                vxlan: l.spec.vxlan.clone(),
                gateway: l.spec.gateway,
                gateway_mac: format_mac(&l.spec.gateway_mac),
                mtu: l.spec.mtu,
                ports: l
                    .ports
                    .iter()
                    .map(|p| {
                        let r = records.iter().find(|r| r.host_ifname == p.host_ifname);
                        ExpectedPort {
                            host_ifname: p.host_ifname.clone(),
                            mac: format_mac(&p.mac),
                            ip: p.ip,
                            container_netns: r.map(|r| r.netns.clone()).unwrap_or_default(),
                            container_ifname: r.map(|r| r.key.ifname.clone()).unwrap_or_default(),
                        }
                    })
                    .collect(),
                fdb: fdb
                    .iter()
                    .map(|e| ExpectedFdb {
                        mac: format_mac(&e.mac),
                        dst: e.dst,
                    })
                    .collect(),
                names: plan::zone_endpoints(node, records, view, l.id)
                    .into_iter()
                    .map(|e| ExpectedName {
                        name: e.name.fqdn(domain),
                        address: e.address,
                    })
                    .collect(),
            }
        })
        .collect();
    ExpectedState {
        node: node.to_string(),
        domain: domain.to_string(),
        unready,
        mesh,
        networks,
    }
}

impl<S: Source, D: NodeDatapath> Agent<S, D> {
    /// The node's expected state now (read-only).
    pub async fn expected(&self) -> ExpectedState {
        let view = self.current_view();
        let mesh = view
            .node(&self.cfg.node)
            .and_then(|me| me.vtep)
            .and_then(|vtep| Ipv4Net::new(vtep, self.cfg.mesh_cidr.prefix_len()).ok())
            .map(|address| self.mesh_spec(address));
        let st = self.state.lock().await;
        let records: Vec<AttachmentRecord> = st.book.records().cloned().collect();
        let locals: Vec<LocalInput<'_>> = st
            .networks
            .iter()
            .map(|(id, l)| LocalInput {
                id,
                spec: &l.spec,
                ports: self.live_ports(records.iter().filter(|r| &r.network_id == id)),
            })
            .collect();
        expected_state(
            &self.cfg,
            unready_reason(&self.phase()),
            mesh.as_ref(),
            &view,
            &locals,
            &records,
        )
    }
}
