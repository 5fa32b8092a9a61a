//! The rtnetlink helpers both the CNI plugin and the agent use, each naming
//! its iproute2 equivalent. Callers read what they need from the kernel's
//! [`LinkMessage`] themselves.

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::{Handle, LinkUnspec};

/// One failed netlink operation.
#[derive(Debug, thiserror::Error)]
#[error("failed to {action}")]
pub struct LinkError {
    /// What was being done, with the device concerned (`delete link eth1`).
    pub action: String,
    /// The rtnetlink error.
    #[source]
    pub source: rtnetlink::Error,
}

impl LinkError {
    /// The kernel errno, if the kernel refused.
    pub fn errno(&self) -> Option<i32> {
        errno(&self.source)
    }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

/// Wraps an rtnetlink error with what was being done to `target`.
pub fn err(
    action: &str,
    target: impl std::fmt::Display,
) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    let action = format!("{action} {target}");
    move |source| LinkError { action, source }
}

/// `ip -d link show dev <name>`: `None` when there is no such device.
pub async fn get(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, LinkError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(msg) => Ok(msg),
        Err(e) if errno(&e) == Some(nix::libc::ENODEV) => Ok(None),
        Err(e) => Err(err("look up link", name)(e)),
    }
}

/// `ip link set …`: one property change built by the caller; `what` names
/// it in the error (`set mtu of 7`).
pub async fn set(
    handle: &Handle,
    msg: LinkMessage,
    what: impl std::fmt::Display,
) -> Result<(), LinkError> {
    handle
        .link()
        .set(msg)
        .execute()
        .await
        .map_err(|source| LinkError {
            action: what.to_string(),
            source,
        })
}

/// `ip link set <index> up`.
pub async fn set_up(handle: &Handle, index: u32) -> Result<(), LinkError> {
    let msg = LinkUnspec::new_with_index(index).up().build();
    set(handle, msg, format!("set up {index}")).await
}

/// `ip link del <index>`; `false` when it was already gone.
pub async fn delete(handle: &Handle, index: u32) -> Result<bool, LinkError> {
    match handle.link().del(index).execute().await {
        Ok(()) => Ok(true),
        Err(e) if errno(&e) == Some(nix::libc::ENODEV) => Ok(false),
        Err(e) => Err(err("delete link", index)(e)),
    }
}

/// `ip addr show dev <index>`: the interface's own addresses with their prefix.
pub async fn addresses(handle: &Handle, index: u32) -> Result<Vec<IpNet>, LinkError> {
    let msgs: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(err("list addresses of link", index))?;
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
