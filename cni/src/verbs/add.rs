//! ADD: reserve via the agent, wire the veth pair, return the result. Any
//! failure after the reservation rolls everything back (see [`Rollback`]).

use std::path::Path;

use serde_json::Value;

use super::add_result::build_add_result;
use super::rollback::{Rollback, Undo};
use crate::env::validate_ifname;
use crate::error::CniError;
use crate::link::{VethSpec, configure_container_end, create_veth, link_by_name};
use crate::netns::{Netns, NetnsError};
use crate::plugin::Invocation;
use crate::port::{FORWARD_TIMEOUT, wait_until_forwarding};
use crate::spec::{CniResult, SpecVersion};
use privnet_core::mac::parse_mac;
use privnet_core::rpc::{AttachRequest, Attachment, NetworkSelector, Request, Response, Workload};

/// A workload key from the network config's `args.cni` block (CNI
/// conventions), used when `CNI_ARGS` does not carry it: a runtime such as
/// podman can then be given one conflist per application.
fn conf_arg(inv: &Invocation, key: &str) -> Option<Value> {
    inv.conf.args.as_ref()?.get("cni")?.get(key).cloned()
}

/// The Attach request for an invocation (pure).
pub fn attach_request(inv: &Invocation) -> Request {
    let args = &inv.env.args;
    let text = |key: &str| conf_arg(inv, key).and_then(|v| v.as_str().map(str::to_string));
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
            application_id: args
                .application_id
                .clone()
                .or_else(|| text("privnet.io/application")),
            process_type: args
                .process_type
                .clone()
                .or_else(|| text("privnet.io/process-type")),
            container_number: args.container_number.or_else(|| {
                conf_arg(inv, "privnet.io/container-number")
                    .and_then(|v| v.as_u64())
                    .and_then(|n| u32::try_from(n).ok())
            }),
        },
        answer_early: true,
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
    let started = std::time::Instant::now();
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
    let socket = client.socket().to_path_buf();
    let (attachment, mut port_ready) =
        match client.call_with_retry_keeping(&attach_request(inv)).await {
            // The agent installs the port's guard meanwhile: its final
            // answer is read once the veth is wired.
            Ok((Response::Wire(a), pending)) => (*a, Some(pending)),
            // An agent without early answers: the guard is in place already.
            Ok((Response::Attached(a), _)) => (*a, None),
            Ok((other, _)) => {
                return Err(CniError::Internal(format!(
                    "agent answered Attach with {other:?}"
                )));
            }
            // Chained: not privnet's pod; the primary's result stands as it is.
            Err(e) if inv.conf.chained && e.is_not_admitted() => {
                return Ok(pass_through(prev, inv.version));
            }
            Err(e) => return Err(e.into_cni(client.socket())),
        };
    let answered = started.elapsed();
    let mut rollback = Rollback::new(inv.logger.clone());
    rollback.push(Undo::Release {
        client,
        key: inv.key(),
    });
    let waited = wire(&container, &attachment, ifname, &mut rollback).await?;
    let wired = started.elapsed();
    if let Some(pending) = port_ready.as_mut() {
        // An error here was undone by the agent; the rollback deletes the veth.
        match pending.read().await {
            Ok(Response::PortReady) => {}
            Ok(other) => {
                return Err(CniError::Internal(format!(
                    "agent answered Attach with {other:?} after the wiring"
                )));
            }
            Err(e) => return Err(e.into_cni(&socket)),
        }
    }
    rollback.disarm();
    // Where an ADD's time goes (debug): up to the agent's answer, then the
    // wiring, of which the wait for the port to forward.
    inv.logger.log(
        crate::log::LogLevel::Debug,
        &format!(
            "ADD {}: agent answered after {answered:?}, port {} forwards after {wired:?} (waited {waited:?}), guarded after {:?}",
            inv.key().container_id,
            attachment.host_ifname,
            started.elapsed(),
        ),
    );
    let result = build_add_result(prev, &attachment, ifname, &netns_path.display().to_string());
    Ok(result.to_value(inv.version))
}

/// The result of a chained ADD that leaves the pod alone: the previous
/// plugin's result in the caller's version (an empty one if there was none).
pub fn pass_through(prev: Option<CniResult>, version: SpecVersion) -> Value {
    prev.unwrap_or_default().to_value(version)
}

/// Kernel side of ADD; registers an undo for each thing it creates. Returns
/// once the container's bridge port forwards, with how long that took after
/// the wiring (see [`crate::port`]).
async fn wire(
    container: &Netns,
    att: &Attachment,
    ifname: &str,
    rollback: &mut Rollback,
) -> Result<std::time::Duration, CniError> {
    let bad = |what: String| CniError::Internal(format!("agent attachment unusable: {what}"));
    let mac = parse_mac(&att.mac).map_err(|_| bad(format!("mac {:?}", att.mac)))?;
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
    wait_until_forwarding(
        &network.handle,
        &att.host_ifname,
        &att.network_netns,
        FORWARD_TIMEOUT,
    )
    .await
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::log::Logger;
    use crate::spec::NetConf;

    fn invocation(conf: &str, cni_args: &str) -> Invocation {
        let env: HashMap<String, String> = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth1"),
            ("CNI_ARGS", cni_args),
            ("CNI_PATH", "/opt/cni/bin"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (conf, version) = NetConf::parse(conf.as_bytes()).unwrap();
        Invocation {
            env: crate::env::parse_env(&env).unwrap(),
            conf,
            version,
            logger: Logger::new(conf_level(), None),
        }
    }

    fn conf_level() -> crate::spec::config::LogLevel {
        crate::spec::config::LogLevel::default()
    }

    fn workload(req: Request) -> Workload {
        match req {
            Request::Attach(a) => a.workload,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn workload_comes_from_cni_args_then_the_config_args_block() {
        let conf = r#"{"cniVersion":"1.1.0","name":"n","type":"privnet-cni","network":"pn-1",
            "args":{"cni":{"privnet.io/application":"from-conf","privnet.io/process-type":"worker","privnet.io/container-number":4}}}"#;
        let w = workload(attach_request(&invocation(conf, "")));
        assert_eq!(w.application_id.as_deref(), Some("from-conf"));
        assert_eq!(w.process_type.as_deref(), Some("worker"));
        assert_eq!(w.container_number, Some(4));
        let w = workload(attach_request(&invocation(
            conf,
            "PRIVNET_APPLICATION_ID=from-env",
        )));
        assert_eq!(
            w.application_id.as_deref(),
            Some("from-env"),
            "CNI_ARGS wins"
        );
        assert_eq!(w.process_type.as_deref(), Some("worker"));
    }
}
