//! ADD: reserve via the agent, wire the veth pair, return the result. Any
//! failure after the reservation rolls everything back (see [`Rollback`]).

use std::path::Path;

use serde_json::Value;

use super::add_result::build_add_result;
use super::rollback::{Rollback, Undo};
use crate::env::validate_ifname;
use crate::error::CniError;
use crate::link::{VethSpec, configure_container_end, create_veth, link_by_name, parse_mac};
use crate::netns::{Netns, NetnsError};
use crate::plugin::Invocation;
use crate::rpc::{AttachRequest, Attachment, NetworkSelector, Request, Response, Workload};

/// The Attach request for an invocation (pure).
pub fn attach_request(inv: &Invocation) -> Request {
    let args = &inv.env.args;
    Request::Attach(AttachRequest {
        key: inv.key(),
        netns: inv
            .env
            .netns
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        network: NetworkSelector {
            network_id: inv.conf.network.clone(),
            pod_namespace: args.pod_namespace.clone(),
            pod_name: args.pod_name.clone(),
        },
        workload: Workload {
            application_id: args.application_id.clone(),
            process_type: args.process_type.clone(),
            container_number: args.container_number,
        },
    })
}

/// Maps a container-namespace failure: the runtime gave us a bad `CNI_NETNS`.
pub fn container_netns_error(path: &Path, e: NetnsError) -> CniError {
    match e {
        NetnsError::Socket { source, .. } => {
            CniError::io(format!("open netlink in {}", path.display()), source)
        }
        e => CniError::env("CNI_NETNS", path.display().to_string(), e.to_string()),
    }
}

/// Runs ADD.
pub async fn add(inv: &Invocation) -> Result<Value, CniError> {
    let netns_path = inv.env.netns.clone().unwrap_or_default();
    let ifname = inv.env.ifname();
    let prev = inv.conf.prev_result()?;
    let container = Netns::open(&netns_path).map_err(|e| container_netns_error(&netns_path, e))?;
    if link_by_name(&container.handle, ifname).await?.is_some() {
        return Err(CniError::InterfaceExists {
            ifname: ifname.into(),
            netns: netns_path.display().to_string(),
        });
    }
    let client = inv.client();
    let attachment = match client.call_with_retry(&attach_request(inv)).await {
        Ok(Response::Attached(a)) => *a,
        Ok(other) => {
            return Err(CniError::Internal(format!(
                "agent answered Attach with {other:?}"
            )));
        }
        Err(e) => return Err(e.into_cni(client.socket())),
    };
    let mut rollback = Rollback::new(inv.logger.clone());
    rollback.push(Undo::Release {
        client,
        key: inv.key(),
    });
    wire(&container, &attachment, ifname, &mut rollback).await?;
    rollback.disarm();
    let result = build_add_result(prev, &attachment, ifname, &netns_path.display().to_string());
    Ok(result.to_value(inv.version))
}

/// Kernel side of ADD; registers an undo for each thing it creates.
async fn wire(
    container: &Netns,
    att: &Attachment,
    ifname: &str,
    rollback: &mut Rollback,
) -> Result<(), CniError> {
    let bad = |what: String| CniError::Internal(format!("agent attachment unusable: {what}"));
    let mac = parse_mac(&att.mac).ok_or_else(|| bad(format!("mac {:?}", att.mac)))?;
    validate_ifname(&att.host_ifname).map_err(|e| bad(e.to_string()))?;
    let network_path = Path::new(&att.network_netns);
    let network = Netns::open(network_path).map_err(|e| bad(e.to_string()))?;
    let bridge = link_by_name(&network.handle, &att.bridge)
        .await?
        .ok_or_else(|| {
            bad(format!(
                "bridge {:?} not found in {}",
                att.bridge, att.network_netns
            ))
        })?;
    let spec = VethSpec {
        host_ifname: &att.host_ifname,
        bridge_index: bridge.index,
        container_ifname: ifname,
        container_mac: mac,
        mtu: att.mtu,
    };
    if let Err(e) = create_veth(&network, container, &spec).await {
        if e.errno() != Some(nix::libc::EEXIST) {
            return Err(e.into());
        }
        // Someone else holds one of the names: report which, touch nothing.
        return Err(
            if link_by_name(&network.handle, &att.host_ifname)
                .await?
                .is_some()
            {
                CniError::InterfaceExists {
                    ifname: att.host_ifname.clone(),
                    netns: att.network_netns.clone(),
                }
            } else {
                CniError::InterfaceExists {
                    ifname: ifname.into(),
                    netns: container.path().display().to_string(),
                }
            },
        );
    }
    rollback.push(Undo::DeleteLink {
        netns: network_path.to_path_buf(),
        ifname: att.host_ifname.clone(),
    });
    let link = link_by_name(&container.handle, ifname)
        .await?
        .ok_or_else(|| {
            CniError::Internal(format!(
                "{ifname} vanished from the container after creation"
            ))
        })?;
    configure_container_end(&container.handle, link.index, att.address).await?;
    Ok(())
}
