//! Link and address operations (rtnetlink), each naming its iproute2
//! equivalent. Pure helpers (MAC parsing, link summaries) are tested here.

use std::net::IpAddr;

use futures::TryStreamExt;
use ipnet::{IpNet, Ipv4Net};
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth};

use crate::netns::Netns;

/// Failures of one netlink operation.
#[derive(Debug, thiserror::Error)]
#[error("failed to {action}: {source}")]
pub struct LinkError {
    /// What was being done.
    pub action: String,
    /// rtnetlink error.
    #[source]
    pub source: rtnetlink::Error,
}

impl LinkError {
    /// The kernel errno, if the kernel refused.
    pub fn errno(&self) -> Option<i32> {
        match &self.source {
            rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
            _ => None,
        }
    }
}

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

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut out {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Formats bytes as lowercase `aa:bb:…`.
pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// `ip link show dev <name>`; `None` when it does not exist.
pub async fn link_by_name(handle: &Handle, name: &str) -> Result<Option<LinkSummary>, LinkError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(msg) => Ok(msg.as_ref().map(LinkSummary::from_message)),
        Err(rtnetlink::Error::NetlinkError(m)) if -m.raw_code() == nix::libc::ENODEV => Ok(None),
        Err(e) => Err(fail(format!("look up link {name}"))(e)),
    }
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
/// end is enslaved and up from the start. The container end stays down until
/// its address is set ([`configure_container_end`]).
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

/// `ip addr add <addr> dev <ifname> && ip link set <ifname> up`: the kernel
/// then installs the connected subnet route; nothing else is touched.
pub async fn configure_container_end(
    handle: &Handle,
    index: u32,
    address: Ipv4Net,
) -> Result<(), LinkError> {
    handle
        .address()
        .add(index, IpAddr::V4(address.addr()), address.prefix_len())
        .execute()
        .await
        .map_err(fail(format!("add address {address}")))?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(fail("set the container interface up"))
}

/// `ip link del dev <name>`; a missing link is success (idempotent).
pub async fn delete_link_by_name(handle: &Handle, name: &str) -> Result<bool, LinkError> {
    let Some(link) = link_by_name(handle, name).await? else {
        return Ok(false);
    };
    match handle.link().del(link.index).execute().await {
        Ok(()) => Ok(true),
        Err(rtnetlink::Error::NetlinkError(m)) if -m.raw_code() == nix::libc::ENODEV => Ok(false),
        Err(e) => Err(fail(format!("delete link {name}"))(e)),
    }
}

/// `ip addr show dev <index>`: the addresses with their prefix.
pub async fn addresses(handle: &Handle, index: u32) -> Result<Vec<IpNet>, LinkError> {
    let msgs: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(fail("list addresses"))?;
    Ok(msgs
        .iter()
        .filter(|m| m.header.index == index)
        .filter_map(|m| {
            m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) | AddressAttribute::Address(ip) => {
                    IpNet::new(*ip, m.header.prefix_len).ok()
                }
                _ => None,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let mac = parse_mac("02:AB:cd:00:01:ff").unwrap();
        assert_eq!(mac, [0x02, 0xab, 0xcd, 0x00, 0x01, 0xff]);
        assert_eq!(format_mac(&mac), "02:ab:cd:00:01:ff");
        for bad in [
            "",
            "02:ab:cd:00:01",
            "02:ab:cd:00:01:ff:00",
            "0g:ab:cd:00:01:ff",
            "2:ab:cd:00:01:ff1",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

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
