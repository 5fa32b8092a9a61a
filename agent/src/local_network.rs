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
        vxlan_port: 4789,
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
