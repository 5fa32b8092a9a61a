//! One private network present on this node: its datapath, its zone and
//! its DNS responder.

use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

use ipnet::Ipv4Net;

use super::config::AgentConfig;
use super::datapath::guard::GuardedPort;
use super::datapath::network::{NetworkDatapath, vxlan_name};
use super::datapath::{DatapathError, NodeDatapath};
use super::dns::handler::DnsCounters;
use super::dns::server::Responder;
use privnet_core::ipam::gateway_of;
use privnet_core::mac::gateway_mac;
use privnet_core::mtu::{UnderlayFamily, private_mtu};
use privnet_core::view::NetworkInfo;
use privnet_core::zone::{Zone, ZoneConfig};

/// Errors bringing a network up on this node.
#[derive(Debug, thiserror::Error)]
pub enum LocalNetworkError {
    /// This node has no mesh address yet (the VXLAN device needs it).
    #[error("failed to bring network {0} up: no mesh address yet")]
    NoVtep(String),
    /// The datapath could not be converged.
    #[error("failed to set up the datapath of network {id}")]
    Datapath {
        /// Network id.
        id: String,
        /// Cause.
        #[source]
        source: DatapathError,
    },
    /// The DNS responder could not be started in the network namespace.
    #[error("failed to start the DNS responder of network {id}")]
    Dns {
        /// Network id.
        id: String,
        /// Cause.
        #[source]
        source: DatapathError,
    },
    /// The zone could not be created.
    #[error("failed to create the zone of network {id}: {message}")]
    Zone {
        /// Network id.
        id: String,
        /// Why.
        message: String,
    },
    /// The network's VNI is outside the range this agent guards.
    #[error(
        "failed to set up network {id}: its VNI {vni} is outside this agent's --vni-range {range}, \
         so the node guard would not cover its VXLAN traffic; give the agents the controller's \
         --vni-range (chart value vxlan.vniRange)"
    )]
    VniOutOfRange {
        /// Network id.
        id: String,
        /// Its VNI.
        vni: u32,
        /// The agent's range.
        range: privnet_core::vni::VniRange,
    },
    /// The MTU is too small.
    #[error(transparent)]
    Mtu(#[from] privnet_core::mtu::MtuError),
}

/// A network present on this node.
pub struct LocalNetwork {
    /// What the cluster says about it.
    pub info: NetworkInfo,
    /// Its datapath.
    pub spec: NetworkDatapath,
    /// Its zone (shared with the responder).
    pub zone: Arc<RwLock<Zone>>,
    /// Its responder (stopped when the network leaves the node).
    pub responder: Option<Responder>,
}

/// The datapath spec of `info` on this node.
pub fn datapath_spec(
    cfg: &AgentConfig,
    info: &NetworkInfo,
    vtep: Ipv4Addr,
) -> Result<NetworkDatapath, LocalNetworkError> {
    if !cfg.vni_range.contains(info.vni) {
        return Err(LocalNetworkError::VniOutOfRange {
            id: info.id.clone(),
            vni: info.vni,
            range: cfg.vni_range.clone(),
        });
    }
    let mtu = match info.mtu {
        Some(m) => m,
        None => private_mtu(cfg.underlay_mtu, family(cfg))?,
    };
    Ok(NetworkDatapath {
        netns: cfg.netns_name(info.vni),
        vni: info.vni,
        bridge: "br0".into(),
        vxlan: vxlan_name(info.vni),
        gateway: Ipv4Net::new(gateway_of(info.subnet), info.subnet.prefix_len())
            .expect("prefix of a valid net"),
        gateway_mac: gateway_mac(info.vni),
        mtu,
        vtep,
        vxlan_port: cfg.vxlan_port,
        underlay_dev: cfg.wg_ifname.clone(),
        gro_flush_timeout_ns: cfg.gro_flush_timeout_ns,
    })
}

/// Underlay family of this node.
pub fn family(cfg: &AgentConfig) -> UnderlayFamily {
    if cfg.endpoint.is_ipv4() {
        UnderlayFamily::V4
    } else {
        UnderlayFamily::V6
    }
}

impl LocalNetwork {
    /// Converges the datapath (adopting what exists) and starts the responder.
    pub async fn up<D: NodeDatapath>(
        cfg: &AgentConfig,
        datapath: &D,
        info: &NetworkInfo,
        vtep: Ipv4Addr,
        ports: &[GuardedPort],
        counters: Arc<DnsCounters>,
    ) -> Result<Self, LocalNetworkError> {
        let spec = datapath_spec(cfg, info, vtep)?;
        datapath
            .ensure_network(&spec, ports)
            .await
            .map_err(|source| LocalNetworkError::Datapath {
                id: info.id.clone(),
                source,
            })?;
        let zone_config = ZoneConfig {
            domain: cfg.domain.clone(),
            ..ZoneConfig::default()
        };
        let zone =
            Zone::new(&info.id, info.subnet, zone_config).map_err(|e| LocalNetworkError::Zone {
                id: info.id.clone(),
                message: e.to_string(),
            })?;
        let zone = Arc::new(RwLock::new(zone));
        let responder = datapath
            .start_dns(&spec, zone.clone(), cfg.dns_upstream, counters)
            .await
            .map_err(|source| LocalNetworkError::Dns {
                id: info.id.clone(),
                source,
            })?;
        Ok(Self {
            info: info.clone(),
            spec,
            zone,
            responder,
        })
    }

    /// Stops the responder and removes the datapath.
    pub async fn down<D: NodeDatapath>(mut self, datapath: &D) -> Result<(), DatapathError> {
        if let Some(r) = self.responder.take() {
            r.stop().await;
        }
        datapath.remove_network(&self.spec).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::wireguard::BackendChoice;
    use privnet_core::defaults;
    use privnet_core::vni::VniRange;

    fn cfg() -> AgentConfig {
        AgentConfig {
            node: "n1".into(),
            state_dir: "/nonexistent".into(),
            socket: "/nonexistent/agent.sock".into(),
            netns_prefix: "privnet-".into(),
            wg_ifname: "privnet-wg".into(),
            wg_port: defaults::WIREGUARD_PORT,
            wg_backend: BackendChoice::Auto,
            keepalive: None,
            endpoint: "192.0.2.1:4797".parse().unwrap(),
            underlay_mtu: 1500,
            mesh_cidr: defaults::MESH_CIDR,
            vxlan_port: 4800,
            vni_range: VniRange::DEFAULT,
            dns_upstream: None,
            domain: "private-network.internal".into(),
            gro_flush_timeout_ns: 0,
            guard_disabled: false,
            removal_hold: Default::default(),
            resync: crate::node::plan::RESYNC,
            rotate_key_every: None,
            rotate_key_timeout: privnet_core::rotation::DEFAULT_TIMEOUT,
        }
    }

    fn net(vni: u32) -> NetworkInfo {
        NetworkInfo {
            id: "pn-a".into(),
            project: "a".into(),
            vni,
            subnet: "10.240.0.0/22".parse().unwrap(),
            mtu: None,
        }
    }

    #[test]
    fn the_datapath_uses_the_configured_port_and_only_guarded_vnis() {
        let vtep = "198.19.0.1".parse().unwrap();
        let spec = datapath_spec(&cfg(), &net(1 << 20), vtep).unwrap();
        assert_eq!(spec.vxlan_port, 4800);
        // Calico's VNI is outside the guarded range: refused, naming the flag.
        let err = datapath_spec(&cfg(), &net(4096), vtep).unwrap_err();
        assert!(matches!(
            err,
            LocalNetworkError::VniOutOfRange { vni: 4096, .. }
        ));
        assert!(
            err.to_string().contains("--vni-range 1048576-16777215"),
            "{err}"
        );
    }
}
