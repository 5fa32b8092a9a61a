//! Small rtnetlink helpers shared by the datapath modules: look a link up, read what
//! `ensure` compares, fix one property at a time.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use ipnet::{IpNet, Ipv4Net};
use privnet_sys::link;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoVxlan, LinkAttribute, LinkFlags,
    LinkInfo, LinkMessage,
};
use rtnetlink::{Handle, LinkBridgePort, LinkUnspec};

pub use privnet_sys::link::{LinkError, err, set_up};

/// What `ensure` needs to know about an existing link.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkState {
    /// Interface index in its namespace.
    pub index: u32,
    /// `IFLA_INFO_KIND` (`bridge`, `vxlan`, `veth`, …), if any.
    pub kind: Option<String>,
    /// MTU.
    pub mtu: u32,
    /// Hardware address.
    pub mac: Vec<u8>,
    /// Administratively up.
    pub up: bool,
    /// Index of the bridge it is enslaved to.
    pub controller: Option<u32>,
    /// VXLAN: (VNI, local address, destination port, learning).
    pub vxlan: Option<(u32, Option<Ipv4Addr>, u16, bool)>,
    /// Bridge port learning flag, when enslaved to a bridge.
    pub port_learning: Option<bool>,
    /// Bridge port `neigh_suppress` flag, when enslaved to a bridge.
    pub port_neigh_suppress: Option<bool>,
    /// VXLAN: index of the underlay device (`dev …`) in the namespace that created it.
    pub vxlan_lower: Option<u32>,
}

fn parse(msg: &LinkMessage) -> LinkState {
    let mut state = LinkState {
        index: msg.header.index,
        up: msg.header.flags.contains(LinkFlags::Up),
        ..LinkState::default()
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::Mtu(m) => state.mtu = *m,
            LinkAttribute::Address(a) => state.mac = a.clone(),
            LinkAttribute::Controller(c) => state.controller = Some(*c),
            LinkAttribute::LinkInfo(infos) => parse_info(infos, &mut state),
            _ => {}
        }
    }
    state
}

fn parse_info(infos: &[LinkInfo], state: &mut LinkState) {
    for info in infos {
        match info {
            LinkInfo::Kind(kind) => state.kind = Some(kind_name(kind)),
            LinkInfo::Data(InfoData::Vxlan(v)) => {
                let (mut vni, mut local, mut port, mut learning) = (0, None, 0, true);
                for i in v {
                    match i {
                        InfoVxlan::Id(id) => vni = *id,
                        InfoVxlan::Local(ip) => local = Some(*ip),
                        InfoVxlan::Port(p) => port = *p,
                        InfoVxlan::Learning(l) => learning = *l,
                        InfoVxlan::Link(l) => state.vxlan_lower = Some(*l),
                        _ => {}
                    }
                }
                state.vxlan = Some((vni, local, port, learning));
            }
            LinkInfo::PortData(InfoPortData::BridgePort(p)) => {
                state.port_learning = p.iter().find_map(|i| match i {
                    InfoBridgePort::Learning(l) => Some(*l),
                    _ => None,
                });
                state.port_neigh_suppress = p.iter().find_map(|i| match i {
                    InfoBridgePort::NeighSupress(l) => Some(*l),
                    _ => None,
                });
            }
            _ => {}
        }
    }
}

fn kind_name(kind: &InfoKind) -> String {
    match kind {
        InfoKind::Bridge => "bridge".into(),
        InfoKind::Vxlan => "vxlan".into(),
        InfoKind::Veth => "veth".into(),
        InfoKind::Wireguard => "wireguard".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// `ip -d link show <name>`: `None` when there is no such device.
pub async fn get(handle: &Handle, name: &str) -> Result<Option<LinkState>, LinkError> {
    Ok(link::get(handle, name).await?.as_ref().map(parse))
}

/// `ip -d link show`: name and state of every device of the namespace.
pub async fn all(handle: &Handle) -> Result<Vec<(String, LinkState)>, LinkError> {
    let mut stream = handle.link().get().execute();
    let mut out = Vec::new();
    while let Some(msg) = stream.try_next().await.map_err(err("list", "links"))? {
        let name = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        });
        out.push((name.unwrap_or_default(), parse(&msg)));
    }
    Ok(out)
}

/// `ip -d link show type vxlan`: name and state of every VXLAN device of the namespace.
pub async fn vxlans(handle: &Handle) -> Result<Vec<(String, LinkState)>, LinkError> {
    let mut links = all(handle).await?;
    links.retain(|(_, state)| state.kind.as_deref() == Some("vxlan"));
    Ok(links)
}

/// Whether a netlink request failed with `errno`.
pub fn failed_with(e: &LinkError, errno: nix::errno::Errno) -> bool {
    e.errno() == Some(errno as i32)
}

/// `ip link set <index> mtu <mtu>`.
pub async fn set_mtu(handle: &Handle, index: u32, mtu: u32) -> Result<(), LinkError> {
    let msg = LinkUnspec::new_with_index(index).mtu(mtu).build();
    link::set(handle, msg, format!("set mtu of {index}")).await
}

/// `ip link set <index> address <mac>`.
pub async fn set_mac(handle: &Handle, index: u32, mac: [u8; 6]) -> Result<(), LinkError> {
    let msg = LinkUnspec::new_with_index(index)
        .address(mac.to_vec())
        .build();
    link::set(handle, msg, format!("set address of {index}")).await
}

/// `ip link set <index> master <bridge>`.
pub async fn set_controller(handle: &Handle, index: u32, bridge: u32) -> Result<(), LinkError> {
    let msg = LinkUnspec::new_with_index(index).controller(bridge).build();
    link::set(handle, msg, format!("enslave {index}")).await
}

/// `bridge link set dev <index> learning off neigh_suppress on`: the
/// overlay port of a network's bridge. The agent writes every FDB entry
/// behind it, and the bridge answers ARP for the remote endpoints it holds
/// neighbour entries for instead of sending the request across the mesh
/// (see [`super::arp_answers`]).
pub async fn set_overlay_port(handle: &Handle, index: u32) -> Result<(), LinkError> {
    let msg = LinkBridgePort::new(index)
        .learning(false)
        .neigh_suppress(true)
        .build();
    handle
        .link()
        .set_port(msg)
        .execute()
        .await
        .map_err(err("set learning and neigh_suppress of", index))
}

/// `ip link set <index> netns <fd>`.
pub async fn move_to_netns(handle: &Handle, index: u32, ns_fd: i32) -> Result<(), LinkError> {
    let msg = LinkUnspec::new_with_index(index).setns_by_fd(ns_fd).build();
    link::set(handle, msg, format!("move to netns {index}")).await
}

/// `ip link del <index>`.
pub async fn delete(handle: &Handle, index: u32) -> Result<(), LinkError> {
    link::delete(handle, index).await.map(drop)
}

/// `ip -4 addr show dev <index>`.
pub async fn ipv4_addresses(handle: &Handle, index: u32) -> Result<Vec<Ipv4Net>, LinkError> {
    Ok(link::addresses(handle, index)
        .await?
        .into_iter()
        .filter_map(|a| match a {
            IpNet::V4(v4) => Some(v4),
            IpNet::V6(_) => None,
        })
        .collect())
}

/// Makes `want` the only IPv4 address of the device (`ip addr add/del`), touching nothing
/// when it already is.
pub async fn ensure_only_ipv4(handle: &Handle, index: u32, want: Ipv4Net) -> Result<(), LinkError> {
    let have = ipv4_addresses(handle, index).await?;
    for stale in have.iter().filter(|a| **a != want) {
        let mut stream = handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(msg) = stream
            .try_next()
            .await
            .map_err(err("list addresses of", index))?
        {
            let matches = msg.header.prefix_len == stale.prefix_len()
                && msg.attributes.iter().any(|a| matches!(a, AddressAttribute::Address(IpAddr::V4(ip)) if *ip == stale.addr()));
            if matches {
                handle
                    .address()
                    .del(msg)
                    .execute()
                    .await
                    .map_err(err("delete address", stale.to_string()))?;
            }
        }
    }
    if !have.contains(&want) {
        handle
            .address()
            .add(index, IpAddr::V4(want.addr()), want.prefix_len())
            .execute()
            .await
            .map_err(err("add address", want.to_string()))?;
    }
    Ok(())
}
