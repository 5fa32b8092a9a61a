//! DEL: idempotent and best effort on the kernel side.
//!
//! A missing netns, link, `prevResult` or reservation is never an error. An
//! unreachable agent *is* (code 11): the link is deleted anyway, but the
//! reservation would leak if we reported success, and the runtime retries a
//! failed DEL while it forgets a successful one.

use std::path::Path;

use crate::error::CniError;
use crate::link::delete_link_by_name;
use crate::log::LogLevel;
use crate::netns::Netns;
use crate::plugin::Invocation;
use privnet_core::rpc::{Request, Response};

/// Runs DEL.
pub async fn del(inv: &Invocation) -> Result<(), CniError> {
    let client = inv.client();
    let key = inv.key();
    // Chained, every pod of the node comes through here: an interface of
    // the same name that the agent never attached (another plugin's) is
    // left alone.
    if inv.conf.chained
        && let Err(e) = client.call(&Request::Check(key.clone())).await
        && e.is_not_found()
    {
        return Ok(());
    }
    let container = match &inv.env.netns {
        Some(path) => Netns::open_if_present(path).unwrap_or_else(|e| {
            inv.logger
                .log(LogLevel::Warn, &format!("DEL: treating netns as gone: {e}"));
            None
        }),
        None => None,
    };
    match &container {
        // `ip -n <container> link del <ifname>` also removes the host end.
        Some(ns) => {
            delete_link_by_name(&ns.handle, &key.ifname).await?;
        }
        // The container side is gone (its veth end with it, normally); make
        // sure no host end lingers in the network namespace.
        None => {
            if let Ok(Response::Attached(att)) = client.call(&Request::Check(key.clone())).await
                && let Ok(Some(net)) = Netns::open_if_present(Path::new(&att.network_netns))
            {
                delete_link_by_name(&net.handle, &att.host_ifname).await?;
            }
        }
    }
    match client.call_with_retry(&Request::Release(key)).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into_cni(client.socket())),
    }
}
