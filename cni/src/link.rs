//! Link and address operations (rtnetlink), each naming its iproute2
//! equivalent; the generic ones come from `privnet_sys::link`, MAC text from
//! `privnet_core::mac`.

use std::net::IpAddr;

use ipnet::Ipv4Net;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth};

use privnet_core::mac::format_mac;
use privnet_sys::link;

use crate::netns::Netns;

impl From<LinkError> for crate::error::CniError {
    fn from(e: LinkError) -> Self {
        let source = match e.errno() {
            Some(errno) => std::io::Error::from_raw_os_error(errno),
            None => std::io::Error::other(e.source.to_string()),
        };
        crate::error::CniError::Io {
            action: e.action,
            source,
        }
    }
}

pub use privnet_sys::link::LinkError;

fn fail(action: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    let action = action.into();
    move |source| LinkError { action, source }
}

/// What we need to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSummary {
    /// ifindex.
    pub index: u32,
    /// Name.
    pub name: String,
    /// MAC, lowercase `aa:bb:…`.
    pub mac: Option<String>,
    /// MTU.
    pub mtu: Option<u32>,
    /// ifindex of the bridge it is enslaved to.
    pub controller: Option<u32>,
    /// Administratively up.
    pub up: bool,
}

impl LinkSummary {
    /// Extracts the summary from a kernel link message.
    pub fn from_message(msg: &LinkMessage) -> LinkSummary {
        let mut s = LinkSummary {
            index: msg.header.index,
            name: String::new(),
            mac: None,
            mtu: None,
            controller: None,
            up: msg.header.flags.contains(LinkFlags::Up),
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => s.name = n.clone(),
                LinkAttribute::Address(a) => s.mac = Some(format_mac(a)),
                LinkAttribute::Mtu(m) => s.mtu = Some(*m),
                LinkAttribute::Controller(c) => s.controller = Some(*c),
                _ => {}
            }
        }
        s
    }
}

/// `ip link show dev <name>`; `None` when it does not exist.
pub async fn link_by_name(handle: &Handle, name: &str) -> Result<Option<LinkSummary>, LinkError> {
    Ok(link::get(handle, name)
        .await?
        .as_ref()
        .map(LinkSummary::from_message))
}

/// What to create for one attachment.
#[derive(Debug, Clone)]
pub struct VethSpec<'a> {
    /// Host end name (in the network namespace).
    pub host_ifname: &'a str,
    /// Bridge ifindex (in the network namespace).
    pub bridge_index: u32,
    /// Container end name (final name, created directly in the container).
    pub container_ifname: &'a str,
    /// Container end MAC.
    pub container_mac: [u8; 6],
    /// MTU of both ends.
    pub mtu: u32,
}

/// Creates the pair in one request, equivalent to
/// `ip -n <net> link add <host> mtu M master <bridge> up type veth
///  peer name <ifname> address <mac> mtu M netns <container>`.
///
/// The peer is born inside the container namespace under its final name, so
/// it never exists (even briefly) in a namespace where that name could
/// collide; a temporary name plus rename is therefore unnecessary. The host
/// end is enslaved and up from the start; the peer cannot be brought up in
/// the same request (the kernel opens it before the pair is linked:
/// `ENOTCONN`), see [`configure_container_end`].
pub async fn create_veth(
    network: &Netns,
    container: &Netns,
    spec: &VethSpec<'_>,
) -> Result<(), LinkError> {
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(spec.container_ifname.to_string())
        .address(spec.container_mac.to_vec())
        .mtu(spec.mtu)
        .setns_by_fd(container.fd())
        .build();
    let msg = LinkVeth::new(spec.host_ifname, spec.container_ifname)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .mtu(spec.mtu)
        .controller(spec.bridge_index)
        .up()
        .build();
    network
        .handle
        .link()
        .add(msg)
        .execute()
        .await
        .map_err(fail(format!(
            "create veth {} (peer {})",
            spec.host_ifname, spec.container_ifname
        )))
}

/// `ip link set <ifname> up && ip addr add <addr> dev <ifname>`: the kernel
/// then installs the connected subnet route; nothing else is touched. Up
/// first: the pair gets carrier then, and the kernel's link-watch work that
/// lets the bridge port forward ([`crate::port`]) runs while the address is
/// being set rather than after.
pub async fn configure_container_end(
    handle: &Handle,
    index: u32,
    address: Ipv4Net,
) -> Result<(), LinkError> {
    link::set_up(handle, index).await?;
    handle
        .address()
        .add(index, IpAddr::V4(address.addr()), address.prefix_len())
        .execute()
        .await
        .map_err(fail(format!("add address {address}")))
}

/// `ip link del dev <name>`; a missing link is success (idempotent).
pub async fn delete_link_by_name(handle: &Handle, name: &str) -> Result<bool, LinkError> {
    let Some(found) = link_by_name(handle, name).await? else {
        return Ok(false);
    };
    link::delete(handle, found.index).await
}

/// `ip addr show dev <index>`: the addresses with their prefix.
pub use link::addresses;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reads_attributes() {
        let mut msg = LinkMessage::default();
        msg.header.index = 7;
        msg.header.flags = LinkFlags::Up;
        msg.attributes = vec![
            LinkAttribute::IfName("eth1".into()),
            LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]),
            LinkAttribute::Mtu(1370),
            LinkAttribute::Controller(3),
        ];
        let s = LinkSummary::from_message(&msg);
        assert_eq!(
            s,
            LinkSummary {
                index: 7,
                name: "eth1".into(),
                mac: Some("02:00:00:00:00:01".into()),
                mtu: Some(1370),
                controller: Some(3),
                up: true
            }
        );
    }
}
