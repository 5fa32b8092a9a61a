//! CHECK: the recorded attachment, `prevResult` and the kernel must agree.

use std::path::Path;

use ipnet::IpNet;

use crate::error::CniError;
use crate::link::{LinkSummary, addresses, link_by_name};
use crate::netns::Netns;
use crate::plugin::Invocation;
use crate::spec::CniResult;
use privnet_core::rpc::{Attachment, Request, Response};

fn mismatch(what: impl Into<String>) -> CniError {
    CniError::CheckMismatch { what: what.into() }
}

/// `prevResult` must list our interface (in `netns`) and its address.
pub fn check_prev_result(
    prev: &CniResult,
    att: &Attachment,
    ifname: &str,
    netns: &str,
) -> Result<(), CniError> {
    let (index, iface) = prev
        .interfaces
        .iter()
        .enumerate()
        .find(|(_, i)| i.name == ifname && i.sandbox.as_deref() == Some(netns))
        .ok_or_else(|| mismatch(format!("prevResult has no interface {ifname} in {netns}")))?;
    if let Some(mac) = &iface.mac
        && !mac.eq_ignore_ascii_case(&att.mac)
    {
        return Err(mismatch(format!(
            "prevResult mac {mac} != attached {}",
            att.mac
        )));
    }
    let want = IpNet::V4(att.address);
    if !prev
        .ips
        .iter()
        .any(|ip| ip.interface == Some(index) && ip.address == want)
    {
        return Err(mismatch(format!(
            "prevResult has no ip {want} on interface {index}"
        )));
    }
    Ok(())
}

/// The container end must carry the attachment's MAC, MTU and address.
pub fn check_container_link(
    link: &LinkSummary,
    addrs: &[IpNet],
    att: &Attachment,
) -> Result<(), CniError> {
    if !link
        .mac
        .as_deref()
        .is_some_and(|m| m.eq_ignore_ascii_case(&att.mac))
    {
        return Err(mismatch(format!(
            "{} mac {:?} != attached {}",
            link.name, link.mac, att.mac
        )));
    }
    if link.mtu != Some(att.mtu) {
        return Err(mismatch(format!(
            "{} mtu {:?} != attached {}",
            link.name, link.mtu, att.mtu
        )));
    }
    if !addrs.contains(&IpNet::V4(att.address)) {
        return Err(mismatch(format!(
            "{} lacks address {} (has {addrs:?})",
            link.name, att.address
        )));
    }
    Ok(())
}

/// The host end must exist, be up and be enslaved to the bridge.
pub fn check_host_link(
    host: &LinkSummary,
    bridge: &LinkSummary,
    att: &Attachment,
) -> Result<(), CniError> {
    if host.controller != Some(bridge.index) {
        return Err(mismatch(format!(
            "{} is not on bridge {}",
            host.name, att.bridge
        )));
    }
    if !host.up {
        return Err(mismatch(format!("{} is down", host.name)));
    }
    if host.mtu != Some(att.mtu) {
        return Err(mismatch(format!(
            "{} mtu {:?} != attached {}",
            host.name, host.mtu, att.mtu
        )));
    }
    Ok(())
}

/// Whether `prev` lists an interface named `ifname` (in any namespace).
pub fn lists_interface(prev: &CniResult, ifname: &str) -> bool {
    prev.interfaces.iter().any(|i| i.name == ifname)
}

/// Runs CHECK.
pub async fn check(inv: &Invocation) -> Result<(), CniError> {
    let prev = inv
        .conf
        .prev_result()?
        .ok_or_else(|| CniError::config("prevResult", "CHECK requires prevResult"))?;
    let key = inv.key();
    let netns_path = inv.env.netns.clone().unwrap_or_default();
    let netns_str = netns_path.display().to_string();
    let client = inv.client();
    let att = match client.call(&Request::Check(key.clone())).await {
        Ok(Response::Attached(a)) => *a,
        Ok(other) => {
            return Err(CniError::Internal(format!(
                "agent answered Check with {other:?}"
            )));
        }
        // Chained: a pod privnet never attached is fine as long as nothing
        // claims it has our interface.
        Err(e) if inv.conf.chained && e.is_not_found() && !lists_interface(&prev, &key.ifname) => {
            return Ok(());
        }
        Err(e) => return Err(e.into_cni(client.socket())),
    };
    check_prev_result(&prev, &att, &key.ifname, &netns_str)?;
    let container =
        Netns::open(&netns_path).map_err(|e| mismatch(format!("container netns: {e}")))?;
    let link = link_by_name(&container.handle, &key.ifname)
        .await?
        .ok_or_else(|| mismatch(format!("no interface {} in {netns_str}", key.ifname)))?;
    let addrs = addresses(&container.handle, link.index).await?;
    check_container_link(&link, &addrs, &att)?;
    let network = Netns::open(Path::new(&att.network_netns))
        .map_err(|e| mismatch(format!("network netns: {e}")))?;
    let bridge = link_by_name(&network.handle, &att.bridge)
        .await?
        .ok_or_else(|| mismatch(format!("no bridge {} in {}", att.bridge, att.network_netns)))?;
    let host = link_by_name(&network.handle, &att.host_ifname)
        .await?
        .ok_or_else(|| {
            mismatch(format!(
                "no host end {} in {}",
                att.host_ifname, att.network_netns
            ))
        })?;
    check_host_link(&host, &bridge, &att)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verbs::add_result::build_add_result;
    use crate::verbs::add_result::tests::attachment;

    fn link(mac: &str, mtu: u32) -> LinkSummary {
        LinkSummary {
            index: 5,
            name: "eth1".into(),
            mac: Some(mac.into()),
            mtu: Some(mtu),
            controller: None,
            up: true,
        }
    }

    #[test]
    fn prev_result_from_add_passes_and_tampering_fails() {
        let att = attachment();
        let prev = build_add_result(None, &att, "eth1", "/n");
        check_prev_result(&prev, &att, "eth1", "/n").unwrap();
        assert_eq!(
            check_prev_result(&prev, &att, "eth2", "/n")
                .unwrap_err()
                .code(),
            103
        );
        assert_eq!(
            check_prev_result(&prev, &att, "eth1", "/other")
                .unwrap_err()
                .code(),
            103
        );
        let mut other = att.clone();
        other.address = "10.240.0.8/22".parse().unwrap();
        assert_eq!(
            check_prev_result(&prev, &other, "eth1", "/n")
                .unwrap_err()
                .code(),
            103
        );
    }

    #[test]
    fn container_link_checks() {
        let att = attachment();
        let addrs = [IpNet::V4(att.address)];
        check_container_link(&link("02:aa:00:00:00:07", 1370), &addrs, &att).unwrap();
        assert_eq!(
            check_container_link(&link("02:aa:00:00:00:08", 1370), &addrs, &att)
                .unwrap_err()
                .code(),
            103
        );
        assert_eq!(
            check_container_link(&link("02:aa:00:00:00:07", 1500), &addrs, &att)
                .unwrap_err()
                .code(),
            103
        );
        assert_eq!(
            check_container_link(&link("02:aa:00:00:00:07", 1370), &[], &att)
                .unwrap_err()
                .code(),
            103
        );
    }

    #[test]
    fn host_link_checks() {
        let att = attachment();
        let bridge = LinkSummary {
            index: 2,
            name: "br0".into(),
            mac: None,
            mtu: Some(1370),
            controller: None,
            up: true,
        };
        let mut host = LinkSummary {
            index: 9,
            name: "pv".into(),
            mac: None,
            mtu: Some(1370),
            controller: Some(2),
            up: true,
        };
        check_host_link(&host, &bridge, &att).unwrap();
        host.controller = Some(3);
        assert_eq!(
            check_host_link(&host, &bridge, &att).unwrap_err().code(),
            103
        );
        host.controller = Some(2);
        host.up = false;
        assert_eq!(
            check_host_link(&host, &bridge, &att).unwrap_err().code(),
            103
        );
    }
}
